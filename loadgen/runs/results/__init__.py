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
  :class:`~loadgen.core.stats.Snapshot` itself, HDR histograms included) and ``extra``;
* ``report.html`` (:func:`write_html_report`): one self-contained page, no network: a verdict,
  the gates, charts (inline SVG, drawn here: no plotting library) of latency percentiles,
  throughput, retries and calls in flight over time, per-function and per-shard tables, the
  accounting, links to Locust's CSVs and the scenario;
* Locust's own CSVs (``*_stats.csv``, ``*_stats_history.csv``, ``*_failures.csv``, ...) when
  Locust wrote them there.

Pure apart from the files named above: :func:`build_summary`, :func:`time_series` and
:func:`render_html` do no IO.
"""

from __future__ import annotations

import csv
import html
import importlib.metadata
import math
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from loadgen.core.caller import FunctionChecks
from loadgen.core.counters import CounterKind, total
from loadgen.core.stats import FAMILIES, HistogramSnapshot, Snapshot
from loadgen.runs.gates import GateResult, LocustTotals, Metrics, format_value
from loadgen.runs.scenario import Scenario, scenario_to_dict

__all__ = [
    "REPORT_FILE",
    "SUMMARY_FILE",
    "SUMMARY_FORMAT",
    "build_summary",
    "histogram_summary",
    "new_run_dir",
    "render_html",
    "time_series",
    "versions",
    "write_html_report",
    "write_summary",
]

SUMMARY_FORMAT: Final = "loadgen.summary/1"
SUMMARY_FILE: Final = "summary.json"
REPORT_FILE: Final = "report.html"
PERCENTILES: Final[tuple[float, ...]] = (50.0, 90.0, 99.0, 99.9)
_SERIES_PERCENTILES: Final[tuple[float, ...]] = (50.0, 90.0, 99.0)


# ---------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return slug[:60].rstrip("-.") or "run"


def _utc(moment: datetime) -> datetime:
    """*moment* in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def new_run_dir(results_root: str | Path, scenario_name: str, now: datetime) -> Path:
    """Create and return ``results_root/<YYYYmmddTHHMMSSZ>-<scenario>/`` (``-2``, ``-3``, ... if taken).

    *now* is the run's start; a naive datetime is taken as UTC. The scenario name is reduced to
    ``[a-z0-9._-]`` for the folder name.
    """
    root = Path(results_root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{_utc(now).strftime('%Y%m%dT%H%M%SZ')}-{_slug(scenario_name)}"
    for n in range(1, 1000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{root / base}: too many runs with this name and second")


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a run depends on (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("loadgen", "locust", "grpcio", "protobuf"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


# ---------------------------------------------------------------------------------------------
# summary.json
# ---------------------------------------------------------------------------------------------


def _pkey(q: float) -> str:
    return f"p{q:g}"


def histogram_summary(hist: HistogramSnapshot | None, qs: Sequence[float] = PERCENTILES) -> dict[str, Any]:
    """``{count, mean, min, p50, ..., max}`` of *hist* in µs (zeros for None or empty)."""
    if hist is None or not hist.count:
        return {"count": 0, "mean": 0.0, "min": 0, **{_pkey(q): 0.0 for q in qs}, "max": 0}
    values = hist.percentiles(qs)
    return {
        "count": hist.count,
        "mean": hist.mean,
        "min": hist.min,
        **{_pkey(q): values[q] for q in qs},
        "max": hist.max,
    }


def _accounting_json(snapshot: Snapshot, shard: str | None = None) -> dict[str, Any]:
    acc = snapshot.accounting(shard)
    return {
        "accepted": acc.accepted,
        "completed": acc.completed,
        "failed": acc.failed,
        "expired": acc.expired,
        "in_flight": acc.in_flight,
        "lost": acc.lost,
        "difference": acc.difference,
        "balanced": acc.balanced,
        "text": str(acc),
    }


def _rate(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def _functions(
    snapshot: Snapshot, duration_s: float, checks: Mapping[str, FunctionChecks] | None = None
) -> dict[str, Any]:
    metrics = Metrics(snapshot, duration_s)
    names = sorted({a for f, a, _ in snapshot.histograms if f in ("e2e", "attempt")} | set(checks or {}))
    out: dict[str, Any] = {}
    for name in names:
        scope = (("function", name),)
        by_outcome = {
            outcome: (h.count if (h := snapshot.histograms.get(("e2e", name, outcome))) else 0)
            for outcome in ("completed", "failed", "expired")
        }
        attempts = {b: h.count for (f, a, b), h in sorted(snapshot.histograms.items()) if f == "attempt" and a == name}
        out[name] = {
            "calls": sum(by_outcome.values()),
            **by_outcome,
            "calls_per_s": _rate(by_outcome["completed"], duration_s),
            "attempts": sum(attempts.values()),
            "attempts_by_status": attempts,
            "e2e_us": histogram_summary(metrics.histogram("e2e", scope)),
            "attempt_us": histogram_summary(metrics.histogram("attempt", scope)),
        }
        if checks is not None:
            checked = checks.get(name, FunctionChecks())
            out[name].update(
                checked=checked.checked,
                wrong=checked.wrong,
                unfinished=checked.unfinished,
                wrong_samples=[sample.to_json() for sample in checked.samples],
            )
    return out


def errors_table(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The failures of *snapshot* as rows ``{kind, function, status, count, sample}``, most frequent first."""
    rows = [
        {"kind": kind, "function": function, "status": status, "count": tally.count, "sample": tally.sample}
        for (kind, function, status), tally in snapshot.failures.items()
        if tally.count
    ]
    return sorted(rows, key=lambda row: (-row["count"], row["kind"], row["function"], row["status"]))


def _checks_json(checks: Mapping[str, FunctionChecks]) -> dict[str, Any]:
    samples = [
        {"function": function, **sample.to_json()}
        for function, checked in sorted(checks.items())
        for sample in checked.samples
    ]
    return {
        "functions": {function: checked.to_json() for function, checked in sorted(checks.items())},
        "samples": samples,
    }


def _interval(t: float, dt: float, diff: Snapshot, now: Snapshot) -> dict[str, Any]:
    metrics = Metrics(diff, dt)
    e2e = metrics.histogram("e2e")
    values = e2e.percentiles(_SERIES_PERCENTILES) if e2e else {}
    functions: dict[str, Any] = {}
    for name in sorted({a for f, a, _ in diff.histograms if f == "e2e"}):
        hist = metrics.histogram("e2e", (("function", name),))
        completed = diff.histograms.get(("e2e", name, "completed"))
        p = hist.percentiles((50.0, 99.0)) if hist else {}
        functions[name] = {
            "completed_per_s": (completed.count if completed else 0) / dt,
            "p50_us": p.get(50.0),
            "p99_us": p.get(99.0),
        }
    return {
        "t": t,
        "dt": dt,
        "completed_per_s": diff.counter(CounterKind.COMPLETED) / dt,
        "accepted_per_s": diff.counter(CounterKind.ACCEPTED) / dt,
        "failed_per_s": sum(diff.counter(k) for k in (CounterKind.FAILED, CounterKind.EXPIRED, CounterKind.LOST)) / dt,
        "attempts_per_s": diff.counter(CounterKind.ATTEMPTS) / dt,
        "retries_per_s": {status: n / dt for status, n in diff.breakdown(CounterKind.RETRIES).items()},
        "e2e_us": {
            "count": e2e.count if e2e else 0,
            **{_pkey(q): values.get(q) for q in _SERIES_PERCENTILES},
            "max": e2e.max if e2e else None,
        },
        "in_flight": now.gauges.get("in_flight", 0),
        "functions": functions,
    }


def time_series(points: Sequence[tuple[float, Snapshot]]) -> list[dict[str, Any]]:
    """Per-interval statistics from cumulative snapshots taken at *t* seconds into the run.

    Each record covers ``(t - dt, t]``: rates per second (``completed_per_s``,
    ``accepted_per_s``, ``failed_per_s`` (failed + expired + lost), ``attempts_per_s``,
    ``retries_per_s`` by status), e2e latency percentiles of the calls that ended in it
    (``e2e_us``: count, p50, p90, p99, max; None without calls), calls ``in_flight`` at *t*,
    and per function ``completed_per_s``, ``p50_us``, ``p99_us``. The first interval starts at
    0 with an empty snapshot (snapshots are cumulative from the start). A snapshot that is not
    a later state of the one before (:meth:`Snapshot.minus` refuses it) gives a record with an
    ``error`` and starts over from it.
    """
    records: list[dict[str, Any]] = []
    previous_t, previous = 0.0, Snapshot.empty()
    for t, snapshot in sorted(points, key=lambda point: point[0]):
        dt = t - previous_t
        if dt <= 0:
            previous_t, previous = t, snapshot
            continue
        try:
            diff = snapshot.minus(previous)
        except ValueError as exc:
            records.append({"t": t, "dt": dt, "error": str(exc)})
        else:
            records.append(_interval(t, dt, diff, snapshot))
        previous_t, previous = t, snapshot
    return records


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_summary(
    *,
    snapshot: Snapshot,
    started: datetime,
    ended: datetime,
    scenario: Scenario | None = None,
    gates: Sequence[GateResult] = (),
    series: Sequence[tuple[float, Snapshot]] = (),
    locust: LocustTotals | None = None,
    duration_s: float | None = None,
    exit_code: int | None = None,
    locust_csv: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    checks: Mapping[str, FunctionChecks] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` document (see the module docstring); no IO.

    *snapshot* is the final merged snapshot, *series* the cumulative snapshots taken during
    the run as ``(seconds since start, snapshot)``, *duration_s* the measured length of the run
    (default: *ended* - *started*), *exit_code* what the run exits with, *checks* the callers'
    checked results per function (None: none were collected).
    """
    duration = (ended - started).total_seconds() if duration_s is None else duration_s
    latency: dict[str, Any] = {}
    for family in FAMILIES:
        for a, b in snapshot.keys(family):
            hist = snapshot.histograms[(family, a, b)]
            latency.setdefault(family, {}).setdefault(a, {})[b] = histogram_summary(hist)
    metrics = Metrics(snapshot, duration, locust, checks)
    counters: dict[str, int] = {str(key): value for key, value in snapshot.counters.items()}
    if checks is not None:
        counters["wrong"] = sum(c.wrong for c in checks.values())
        counters["unfinished"] = sum(c.unfinished for c in checks.values())
    shards = {
        name: {
            "crashed": summary.crashed,
            "seq": summary.seq,
            "counters": {str(key): value for key, value in sorted(summary.counters.items())},
            "retries": total(summary.counters, CounterKind.RETRIES),
            "gauges": dict(sorted(summary.gauges.items())),
            "accounting": _accounting_json(snapshot, name),
        }
        for name, summary in sorted(snapshot.per_shard.items())
    }
    rates = {
        name: (None if math.isnan(value := metrics(name)) else value)
        for name in ("calls_per_s", "accepted_per_s", "attempts_per_s", "retries.ratio", "failed.ratio", "wrong.ratio")
    }
    return {
        "format": SUMMARY_FORMAT,
        "scenario": scenario_to_dict(scenario) if scenario is not None else None,
        "started": _iso(started),
        "ended": _iso(ended),
        "duration_s": duration,
        "versions": versions(),
        "exit_code": exit_code,
        "rates": rates,
        "latency_us": latency,
        "functions": _functions(snapshot, duration, checks),
        "counters": dict(sorted(counters.items())),
        "gauges": dict(sorted(snapshot.gauges.items())),
        "errors": errors_table(snapshot),
        "checks": _checks_json(checks) if checks is not None else None,
        "shards": shards,
        "accounting": _accounting_json(snapshot),
        "gates": {
            "passed": all(result.passed for result in gates) if gates else None,
            "results": [result.to_json() for result in gates],
        },
        "locust": locust.to_json() if locust is not None else None,
        "locust_csv": list(locust_csv),
        "series": time_series(series),
        "snapshot": snapshot.to_json(),
        "extra": dict(extra or {}),
    }


def _csv_files(run_dir: Path) -> list[str]:
    return sorted(path.name for path in run_dir.glob("*.csv") if path.is_file())


def write_summary(
    run_dir: str | Path,
    *,
    snapshot: Snapshot,
    started: datetime,
    ended: datetime,
    scenario: Scenario | None = None,
    gates: Sequence[GateResult] = (),
    series: Sequence[tuple[float, Snapshot]] = (),
    locust: LocustTotals | None = None,
    duration_s: float | None = None,
    exit_code: int | None = None,
    extra: Mapping[str, Any] | None = None,
    checks: Mapping[str, FunctionChecks] | None = None,
) -> dict[str, Any]:
    """Write ``run_dir/summary.json`` (:func:`build_summary`, listing the CSVs found in *run_dir*); return it."""
    folder = Path(run_dir)
    summary = build_summary(
        snapshot=snapshot,
        started=started,
        ended=ended,
        scenario=scenario,
        gates=gates,
        series=series,
        locust=locust,
        duration_s=duration_s,
        exit_code=exit_code,
        locust_csv=_csv_files(folder),
        extra=extra,
        checks=checks,
    )
    data = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    (folder / SUMMARY_FILE).write_bytes(data)
    return summary


# ---------------------------------------------------------------------------------------------
# Charts: hand-written SVG
# ---------------------------------------------------------------------------------------------

_PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F", "#444444")


@dataclass(frozen=True)
class _Line:
    label: str
    color: str
    points: Sequence[tuple[float, float | None]]
    dashed: bool = False


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = max(span, 1e-12) / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * magnitude * (1 + 1e-9):
            return m * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _seconds_text(seconds: float) -> str:
    if seconds < 60 or seconds % 60:
        if seconds >= 60:
            return f"{int(seconds // 60)}m{seconds % 60:g}s"
        return f"{seconds:g}s"
    if seconds < 3600 or seconds % 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def _time_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / step <= 8:
            return float(step)
    return _nice_step(span, 8)


def _number_text(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def svg_chart(
    title: str,
    lines: Sequence[_Line],
    *,
    y_label: str,
    y_text: Callable[[float], str] = _number_text,
    hover_text: Callable[[float], str] | None = None,
    width: int = 880,
    height: int = 260,
) -> str:
    """A line chart as an inline ``<svg>``: time (s) across, *y_label* up; gaps where a value is None.

    Hovering over a column shows every line's value there (SVG ``<title>``, no script).
    """
    hover = hover_text or y_text
    left, right, top, bottom = 64, 16, 34, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for line in lines for x, _ in line.points]
    ys = [y for line in lines for _, y in line.points if y is not None]
    x_max = max(xs, default=1.0) or 1.0
    y_top = max(ys, default=0.0)
    y_step = _nice_step(y_top * 1.05 if y_top > 0 else 1.0)
    y_max = y_step * max(math.ceil(y_top * 1.05 / y_step), 1) if y_top > 0 else y_step * 5

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_max)

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{html.escape(title)}">',
        f"<title>{html.escape(title)}</title>",
        f'<text class="chart-title" x="{left}" y="18">{html.escape(title)}</text>',
    ]
    # Grid and y labels.
    tick = 0.0
    while tick <= y_max * (1 + 1e-9):
        gy = py(tick)
        out.append(f'<line class="grid" x1="{left}" y1="{gy:.1f}" x2="{width - right}" y2="{gy:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{y_text(tick)}</text>')
        tick += y_step
    out.append(
        f'<text class="axis-label" transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)"'
        f' text-anchor="middle">{html.escape(y_label)}</text>'
    )
    # x ticks.
    x_step = _time_step(x_max)
    tick = 0.0
    while tick <= x_max * (1 + 1e-9):
        x = px(tick)
        out.append(f'<line class="xtick" x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 17}" text-anchor="middle">{_seconds_text(tick)}</text>'
        )
        tick += x_step
    out.append(f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}"/>')
    if not ys:
        out.append(
            f'<text class="empty" x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle">'
            "no data</text>"
        )
    # Lines, with gaps.
    for line in lines:
        parts: list[str] = []
        pen_down = False
        for x, y in line.points:
            if y is None:
                pen_down = False
                continue
            parts.append(f"{'L' if pen_down else 'M'}{px(x):.1f} {py(y):.1f}")
            pen_down = True
        if not parts:
            continue
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        out.append(
            f'<path class="line" d="{" ".join(parts)}" stroke="{line.color}"{dash}>'
            f"<title>{html.escape(line.label)}</title></path>"
        )
        if len(line.points) <= 120:  # markers where they stay readable
            for x, y in line.points:
                if y is not None:
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{line.color}"/>')
    # Hover columns: one per x, listing every line's value.
    columns = sorted({x for line in lines for x, _ in line.points})
    by_x = [dict(line.points) for line in lines]
    for i, x in enumerate(columns):
        x0 = px((columns[i - 1] + x) / 2) if i else px(0.0) if x > 0 else left
        x1 = px((x + columns[i + 1]) / 2) if i + 1 < len(columns) else px(x_max)
        values = []
        for line, lookup in zip(lines, by_x, strict=True):
            value = lookup.get(x)
            values.append(f"{line.label}: {'—' if value is None else hover(value)}")
        label = html.escape(f"t = {_seconds_text(round(x, 1))}\n" + "\n".join(values))
        out.append(
            f'<rect class="hover" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1):.1f}" height="{plot_h}">'
            f"<title>{label}</title></rect>"
        )
    # Legend, top right.
    x = width - right
    for line in reversed(lines):
        text_w = 8 * len(line.label) + 4  # generous: 12px text, capitals included
        x -= text_w + 22
        out.append(f'<rect x="{x}" y="10" width="14" height="4" fill="{line.color}"/>')
        out.append(f'<text class="legend" x="{x + 18}" y="16">{html.escape(line.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _ms(us: float) -> str:
    return _number_text(us / 1000)


def _charts(series: Sequence[Mapping[str, Any]]) -> list[str]:
    records = [r for r in series if "error" not in r]
    if not records:
        return []
    t = [float(r["t"]) for r in records]

    def pts(values: Iterable[float | None]) -> list[tuple[float, float | None]]:
        return list(zip(t, values, strict=True))

    latency_lines = [
        _Line(name, color, pts(r["e2e_us"].get(name) for r in records))
        for name, color in (("p50", _PALETTE[2]), ("p90", _PALETTE[1]), ("p99", _PALETTE[3]))
    ]
    charts = [
        svg_chart(
            "End-to-end latency per interval (root calls that ended in it)",
            latency_lines,
            y_label="ms",
            y_text=_ms,
            hover_text=lambda us: format_value("latency", us),
        )
    ]
    throughput = [_Line("completed/s", _PALETTE[0], pts(r["completed_per_s"] for r in records))]
    if any(r["failed_per_s"] for r in records):
        throughput.append(_Line("failed/s", _PALETTE[3], pts(r["failed_per_s"] for r in records)))
    throughput.append(_Line("accepted/s", _PALETTE[7], pts(r["accepted_per_s"] for r in records), dashed=True))
    charts.append(
        svg_chart("Throughput: calls per second", throughput, y_label="calls/s", hover_text=lambda v: f"{v:.1f}/s")
    )
    statuses = sorted({status for r in records for status in r["retries_per_s"]})
    retry_lines = [
        _Line(status, _PALETTE[(i + 1) % len(_PALETTE)], pts(r["retries_per_s"].get(status, 0.0) for r in records))
        for i, status in enumerate(statuses)
    ]
    charts.append(
        svg_chart("Retries per second, by status", retry_lines, y_label="retries/s", hover_text=lambda v: f"{v:.1f}/s")
    )
    if any(r["in_flight"] for r in records):
        flight = [_Line("in flight", _PALETTE[4], pts(float(r["in_flight"]) for r in records))]
        charts.append(
            svg_chart("Root calls in flight in the engine", flight, y_label="calls", hover_text=lambda v: f"{v:.0f}")
        )
    return charts


# ---------------------------------------------------------------------------------------------
# report.html
# ---------------------------------------------------------------------------------------------

_CSS: Final = """
:root { --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --muted: #59636e; --line: #d1d9e0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; }
main { max-width: 1120px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; }
.muted { color: var(--muted); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin: 12px 0; }
.verdict { display: inline-block; font-weight: 700; padding: 4px 12px; border-radius: 16px; margin: 8px 0; }
.verdict.ok { color: var(--ok); background: var(--ok-bg); }
.verdict.bad { color: var(--bad); background: var(--bad-bg); }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 10px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tile .v { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile .k { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; font-size: 12px; color: var(--muted); }
td.n, th.n { text-align: right; }
tr.pass td { background: var(--ok-bg); } tr.fail td, tr.bad td { background: var(--bad-bg); }
tr.pass td.r { color: var(--ok); font-weight: 700; } tr.fail td.r { color: var(--bad); font-weight: 700; }
.scroll { overflow-x: auto; }
svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px;
            margin: 8px 0; font-family: inherit; }
svg .grid { stroke: #e6e9ec; } svg .axis, svg .xtick { stroke: #8c959f; }
svg .tick { font-size: 11px; fill: var(--muted); } svg .axis-label { font-size: 11px; fill: var(--muted); }
svg .chart-title { font-size: 13px; font-weight: 600; fill: #1f2328; }
svg .legend { font-size: 12px; fill: #1f2328; } svg .empty { font-size: 13px; fill: var(--muted); }
svg .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .hover { fill: transparent; } svg .hover:hover { fill: rgba(31, 35, 40, 0.06); }
.accounting { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; overflow-x: auto; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _lat(us: float | None) -> str:
    return "—" if us is None else format_value("latency", float(us))


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric_from: int = 1,
    row_class: Sequence[str] = (),
    numeric_to: int | None = None,
) -> str:
    """An HTML table; cells are already escaped. Columns *numeric_from* .. *numeric_to* are right-aligned."""
    end = len(head) if numeric_to is None else numeric_to
    cls = [(' class="n"' if numeric_from <= i < end else "") for i in range(len(head))]
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th{cls[i]}>{_e(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for index, row in enumerate(rows):
        attr = f' class="{row_class[index]}"' if index < len(row_class) and row_class[index] else ""
        out.append(f"<tr{attr}>" + "".join(f"<td{cls[i]}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _verdict(summary: Mapping[str, Any]) -> tuple[str, bool]:
    code = summary.get("exit_code")
    results = summary.get("gates", {}).get("results", [])
    failed = sum(not r.get("passed") for r in results)
    balanced = summary.get("accounting", {}).get("balanced", True)
    if code == 3 or (code is None and not balanced):
        return "RUN FAILED: the run itself did not complete (see the accounting)", False
    if code == 2:
        return "USAGE ERROR", False
    implicit = " implicit" if results and all(r.get("implicit") for r in results) else ""
    if failed:
        return f"FAILED: {failed} of {len(results)}{implicit} gates", False
    if results:
        return f"PASSED: all {len(results)}{implicit} gates", True
    return "COMPLETED (no gates)", True


def _gates_section(results: Sequence[Mapping[str, Any]]) -> str:
    if not results:
        return '<p class="muted">This scenario has no gates.</p>'
    rows, classes = [], []
    for r in results:
        passed = bool(r.get("passed"))
        rows.append(
            [
                f"<code>{_e(r.get('metric'))}</code>",
                _e(r.get("condition")),
                _e(r.get("observed_text", r.get("observed"))),
                "pass" if passed else "FAIL",
                _e(r.get("message", "")) + (" (aborts the run)" if r.get("abort_on_fail") else ""),
            ]
        )
        classes.append("pass" if passed else "fail")
    head = ["metric", "condition", "observed", "result", "detail"]
    table = _table(head, rows, numeric_from=2, row_class=classes, numeric_to=4)
    return table.replace('<td class="n">pass</td>', '<td class="n r">pass</td>').replace(
        '<td class="n">FAIL</td>', '<td class="n r">FAIL</td>'
    )


def _functions_section(functions: Mapping[str, Any]) -> str:
    if not functions:
        return '<p class="muted">No calls were recorded.</p>'
    head = ["function", "calls", "completed", "failed", "expired", "wrong", "calls/s", "attempts", "retried"]
    head += ["e2e p50", "p90", "p99", "p99.9", "max"]
    rows, classes = [], []
    for name, f in functions.items():
        e2e = f.get("e2e_us", {})
        rate = f.get("calls_per_s")
        by_status = f.get("attempts_by_status", {})
        not_ok = sum(n for status, n in by_status.items() if status != "OK")
        rows.append(
            [
                f"<code>{_e(name)}</code>",
                _e(f.get("calls", 0)),
                _e(f.get("completed", 0)),
                _e(f.get("failed", 0)),
                _e(f.get("expired", 0)),
                _e(f["wrong"]) if "wrong" in f else "—",
                "—" if rate is None else f"{rate:.1f}",
                _e(f.get("attempts", 0)),
                _e(not_ok),
                *(_lat(e2e.get(k)) if e2e.get("count") else "—" for k in ("p50", "p90", "p99", "p99.9", "max")),
            ]
        )
        bad = f.get("failed", 0) or f.get("expired", 0) or f.get("wrong", 0)
        classes.append("bad" if bad else "")
    return _table(head, rows, row_class=classes)


def _errors_section(errors: Sequence[Mapping[str, Any]]) -> str:
    if not errors:
        return '<p class="muted">No failures: every endpoint attempt answered OK.</p>'
    kinds = {"attempt": "attempt", "failed": "call failed", "expired": "call expired"}
    rows = [
        [
            _e(kinds.get(str(row.get("kind")), row.get("kind"))),
            f"<code>{_e(row.get('function'))}</code>",
            _e(row.get("status")),
            _e(row.get("count")),
            f"<code>{_e(row.get('sample', ''))}</code>",
        ]
        for row in errors
    ]
    return _table(["kind", "function", "status", "count", "first message"], rows, numeric_from=3, numeric_to=4)


def _wrong_section(checks: Mapping[str, Any] | None) -> str:
    if checks is None:
        return '<p class="muted">No results were checked.</p>'
    samples = checks.get("samples", [])
    functions = checks.get("functions", {})
    checked = sum(f.get("checked", 0) for f in functions.values())
    wrong = sum(f.get("wrong", 0) for f in functions.values())
    if not checked:
        return '<p class="muted">No workload item has an <code>expect</code>: no result was checked.</p>'
    head = f"<p>{wrong:,} of {checked:,} checked results were wrong.</p>"
    if not samples:
        return head
    rows = [
        [f"<code>{_e(s.get(key))}</code>" for key in ("function", "expected", "got")] for s in samples
    ]
    return head + _table(["function", "expected", "got"], rows, numeric_from=3)


def _latency_section(latency: Mapping[str, Any]) -> str:
    rows = []
    for family in FAMILIES:
        for a, by_b in latency.get(family, {}).items():
            for b, s in by_b.items():
                rows.append(
                    [
                        _e(family),
                        f"<code>{_e(a)}</code>",
                        _e(b),
                        _e(s["count"]),
                        *(_lat(s.get(k)) for k in ("mean", "p50", "p90", "p99", "p99.9", "max")),
                    ]
                )
    if not rows:
        return '<p class="muted">No latencies were recorded.</p>'
    return _table(["family", "key", "", "count", "mean", "p50", "p90", "p99", "p99.9", "max"], rows, numeric_from=3)


def _shards_section(shards: Mapping[str, Any]) -> str:
    if not shards:
        return '<p class="muted">No shard reported.</p>'
    rows, classes = [], []
    for name, s in shards.items():
        c, acc = s.get("counters", {}), s.get("accounting", {})
        retries = s.get("retries", 0)
        failed = acc.get("failed", 0)
        rows.append(
            [
                _e(name) + (" (crashed)" if s.get("crashed") else ""),
                _e(c.get("accepted", 0)),
                _e(c.get("completed", 0)),
                _e(failed),
                _e(c.get("expired", 0)),
                _e(c.get("lost", 0)),
                _e(c.get("attempts", 0)),
                _e(retries),
                _e(s.get("gauges", {}).get("in_flight", 0)),
                "balanced" if acc.get("balanced", True) else f"off by {acc.get('difference')}",
            ]
        )
        classes.append("" if acc.get("balanced", True) and not s.get("crashed") else "bad")
    head = ["shard", "accepted", "completed", "failed", "expired", "lost", "attempts", "retries", "in flight", ""]
    return _table(head, rows, row_class=classes)


def _locust_section(run_dir: Path | None, files: Sequence[str]) -> str:
    if not files:
        return '<p class="muted">No Locust CSV files in this folder.</p>'
    links = " · ".join(f'<a href="{_e(name)}">{_e(name)}</a>' for name in files)
    out = [f"<p>{links}</p>"]
    stats = [name for name in files if name.endswith("_stats.csv")]
    if run_dir is not None and stats:
        wanted = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "95%", "99%", "Requests/s"]
        try:
            with (run_dir / stats[0]).open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                columns = [c for c in wanted if c in (reader.fieldnames or [])]
                rows = [[_e(row.get(c, "")) for c in columns] for row in reader]
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            out.append(f'<p class="muted">{_e(stats[0])} could not be read: {_e(exc)}</p>')
        else:
            if columns:
                out.append(f'<p class="muted">From {_e(stats[0])} (response times in ms, as Locust measures them):</p>')
                out.append(_table(columns, rows, numeric_from=2))
    return "".join(out)


def _tiles(summary: Mapping[str, Any]) -> str:
    acc = summary.get("accounting", {})
    rates = summary.get("rates", {})
    e2e_all = _overall_e2e(summary)
    tiles = [
        ("completed calls", f"{acc.get('completed', 0):,}"),
        ("calls/s", "—" if rates.get("calls_per_s") is None else f"{rates['calls_per_s']:.1f}"),
        ("e2e p50", _lat(e2e_all.get("p50")) if e2e_all else "—"),
        ("e2e p99", _lat(e2e_all.get("p99")) if e2e_all else "—"),
        ("failed", "—" if rates.get("failed.ratio") is None else format_value("ratio", rates["failed.ratio"])),
        ("wrong", "—" if summary.get("checks") is None else f"{summary.get('counters', {}).get('wrong', 0):,}"),
        (
            "retries/attempts",
            "—" if rates.get("retries.ratio") is None else format_value("ratio", rates["retries.ratio"]),
        ),
        ("accounting", "balanced" if acc.get("balanced", True) else "UNBALANCED"),
    ]
    return (
        '<div class="tiles">'
        + "".join(f'<div class="tile"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in tiles)
        + "</div>"
    )


def _overall_e2e(summary: Mapping[str, Any]) -> dict[str, Any]:
    snapshot = summary.get("snapshot")
    if not snapshot:
        return {}
    try:
        hist = Metrics(Snapshot.from_json(snapshot), 1.0).histogram("e2e")
    except ValueError:
        return {}
    return histogram_summary(hist) if hist else {}


def render_html(summary: Mapping[str, Any], run_dir: Path | None = None) -> str:
    """``report.html`` for *summary* (a :func:`build_summary` document). Locust's ``*_stats.csv``
    is read from *run_dir* for a table when given."""
    scenario = summary.get("scenario") or {}
    name = scenario.get("name", "run")
    verdict, ok = _verdict(summary)
    acc = summary.get("accounting", {})
    series = summary.get("series", [])
    charts = _charts(series)
    gaps = [r for r in series if "error" in r]
    v = summary.get("versions", {})
    versions_text = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    scenario_json = orjson.dumps(scenario, option=orjson.OPT_INDENT_2).decode() if scenario else "(none)"
    counters = summary.get("counters", {})
    counter_rows = [[f"<code>{_e(k)}</code>", _e(val)] for k, val in counters.items()]
    counter_rows += [[f"<code>{_e(k)}</code> (gauge)", _e(val)] for k, val in summary.get("gauges", {}).items()]
    body = [
        "<header>",
        f"<h1>{_e(name)}</h1>",
        f'<div class="muted">{_e(scenario.get("description", ""))}</div>',
        f'<div class="verdict {"ok" if ok else "bad"}">{_e(verdict)}</div>',
        f'<div class="muted">{_e(summary.get("started", ""))} → {_e(summary.get("ended", ""))}'
        f" · {float(summary.get('duration_s') or 0):.1f} s"
        + (f" · exit code {_e(summary['exit_code'])}" if summary.get("exit_code") is not None else "")
        + "</div>",
        "</header>",
        _tiles(summary),
        "<h2>Gates</h2>",
        _gates_section(summary.get("gates", {}).get("results", [])),
        "<h2>Over time</h2>",
        *(charts or ['<p class="muted">No time series was recorded.</p>']),
        *(
            [f'<p class="muted">{len(gaps)} interval(s) could not be computed: {_e(gaps[0]["error"])}</p>']
            if gaps
            else []
        ),
        "<h2>Per function</h2>",
        '<p class="muted">calls: root calls by the function they started with; e2e: accepted → end, all'
        " outcomes. attempts: every endpoint attempt of the function, as a root, child or tail call;"
        " retried: those that did not answer OK.</p>",
        _functions_section(summary.get("functions", {})),
        "<h2>Failures</h2>",
        '<p class="muted">Endpoint attempts that did not answer OK (retried or not) and root calls that'
        " failed or expired, by function and status, with the first message seen (the endpoint's own when it"
        " sent one).</p>",
        _errors_section(summary.get("errors", [])),
        "<h2>Checked results</h2>",
        _wrong_section(summary.get("checks")),
        "<h2>Accounting</h2>",
        f'<div class="card accounting {"" if acc.get("balanced", True) else "bad"}">{_e(acc.get("text", ""))}</div>',
        "<h2>All latencies</h2>",
        '<p class="muted">rpc: Dispatch API RPCs; attempt: each endpoint attempt by status;'
        " e2e: root calls by outcome.</p>",
        _latency_section(summary.get("latency_us", {})),
        "<h2>Shards</h2>",
        _shards_section(summary.get("shards", {})),
        "<h2>Counters</h2>",
        _table(["counter", "value"], counter_rows),
        "<h2>Locust</h2>",
        (
            f"<p>requests {summary['locust']['requests']:,}, failures {summary['locust']['failures']:,}</p>"
            if summary.get("locust")
            else ""
        ),
        _locust_section(run_dir, summary.get("locust_csv", [])),
        "<h2>Scenario</h2>",
        f"<details><summary>the scenario as run</summary><pre>{_e(scenario_json)}</pre></details>",
        f'<footer>All numbers: <a href="{SUMMARY_FILE}">{SUMMARY_FILE}</a> · {_e(versions_text)}</footer>',
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(name)} · loadgen report</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_html_report(run_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write ``run_dir/report.html`` for *summary*; return its path."""
    folder = Path(run_dir)
    data = dict(summary)
    data["locust_csv"] = _csv_files(folder)
    path = folder / REPORT_FILE
    path.write_text(render_html(data, folder), encoding="utf-8")
    return path
