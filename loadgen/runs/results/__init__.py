"""The results folder of a run: ``summary.json`` (every statistic) and ``report.html`` (for people).

Layout: ``results/<UTC timestamp>-<scenario>/`` (:func:`new_run_dir`) holding

* ``summary.json`` (:func:`write_summary`): the format is ``loadgen.summary/1``, a JSON object with
  ``scenario`` (as :func:`loadgen.runs.scenario.scenario_to_dict` gives it, secrets redacted),
  ``started``/``ended`` (ISO 8601 UTC), ``duration_s``, ``versions``, ``exit_code``,
  ``latency_us`` (``{family: {key1: {key2: {count, mean, min, p50, p90, p99, p99.9, max}}}}``,
  µs), ``functions`` (per function: calls by outcome, calls/s, attempts by status, e2e latency
  over all outcomes; with the callers' checks also ``checked``, ``wrong``, ``unfinished`` and
  ``wrong_samples``), ``rates``, ``counters`` (with ``wrong`` and ``unfinished`` from the
  checks), ``gauges``, ``errors`` (the failures table: kind, function, status, count and the
  first message, most frequent first), ``checks`` (per function as :mod:`loadgen.core.caller`
  counts them, and ``samples`` of wrong results: function, expected, got), ``shards`` (each
  shard's counters, gauges and accounting), ``accounting``, ``gates`` (``{"passed", "results"}``), ``locust``
  (Locust's totals), ``locust_csv`` (Locust's CSV files in the folder), ``series`` (one record
  per interval of the time series, see :func:`time_series`), ``snapshot`` (the final
  :class:`~loadgen.core.stats.Snapshot` itself, HDR histograms included), ``capacity`` (a capacity
  search's result: ``rate`` found, ``failed_gate``, ``steps[]`` with each step's rate, verdict,
  throughput and latency; ``null`` for other runs, see :mod:`loadgen.runs.capacity`) and ``extra``;
* ``report.html`` (:func:`write_html_report`): one self-contained page, no network: a verdict,
  the gates, charts (inline SVG, drawn here: no plotting library) of latency percentiles,
  throughput, retries and calls in flight over time, each function's latency distribution
  (percentile against latency, :mod:`.curves`), per-function and per-shard tables, the
  accounting, links to Locust's CSVs and the scenario; for a capacity search, first the
  capacity, its knee charts and the table of its steps;
* Locust's own CSVs (``*_stats.csv``, ``*_stats_history.csv``, ``*_failures.csv``, ...) when
  Locust wrote them there;
* ``progress.jsonl``: one :func:`~loadgen.runs.results.series.interval_record` per progress
  interval, appended as the run goes, and ``incomplete`` (:mod:`.folder`) until ``summary.json``
  is written: what a run killed outright leaves.

Pure apart from the files named above: :func:`build_summary`, :func:`time_series` and
:func:`render_html` do no IO. One module per job: :mod:`.folder`, :mod:`.summary`, :mod:`.series`,
:mod:`.svg`, :mod:`.html`, :mod:`.verdicts` (``gates.json``, ``junit.xml``).
"""

from loadgen.runs.results.folder import new_run_dir, versions
from loadgen.runs.results.html import REPORT_FILE, render_html, write_html_report
from loadgen.runs.results.series import time_series
from loadgen.runs.results.summary import (
    SUMMARY_FILE,
    SUMMARY_FORMAT,
    build_summary,
    errors_table,
    histogram_summary,
    write_summary,
)

__all__ = [
    "REPORT_FILE",
    "SUMMARY_FILE",
    "SUMMARY_FORMAT",
    "build_summary",
    "errors_table",
    "histogram_summary",
    "new_run_dir",
    "render_html",
    "time_series",
    "versions",
    "write_html_report",
    "write_summary",
]
