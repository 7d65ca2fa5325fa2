"""The results folder: run directories, summary.json, the time series and report.html."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadgen.core.stats import ShardStats, Snapshot, merge_snapshots
from loadgen.runs.gates import LocustTotals, evaluate, parse_gate
from loadgen.runs.results import (
    REPORT_FILE,
    SUMMARY_FILE,
    SUMMARY_FORMAT,
    build_summary,
    new_run_dir,
    render_html,
    time_series,
    write_html_report,
    write_summary,
)
from loadgen.runs.scenario import default_scenario, loads_scenario

START = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
INTERVAL = 2.0


def run_series(
    intervals: int = 6, calls: int = 200, seed: int = 1
) -> tuple[list[tuple[float, Snapshot]], list[Snapshot]]:
    """Cumulative snapshots of two shards every 2 s, and what was recorded in each interval alone."""
    rnd = random.Random(seed)
    shards = [ShardStats("shard-0"), ShardStats("shard-1")]
    series: list[tuple[float, Snapshot]] = []
    intervals_alone: list[Snapshot] = []
    for i in range(intervals):
        alone = ShardStats("alone")
        for n in range(calls):
            shard = shards[n % 2]
            us = rnd.randrange(100, 2000) * (i + 1)  # slower and slower
            function = "echo" if n % 4 else "fanout"
            for target in (shard, alone):
                target.count_accepted()
                target.record_call(function, "completed", "OK", us / 1e6)
                target.record_attempt(function, "OK", us / 2e6)
                target.record_rpc("Dispatch", True, 100e-6)
            if n % 10 == 0:
                for target in (shard, alone):
                    target.record_attempt(function, "TEMPORARY_ERROR", 300e-6)
                    target.count_retry("TEMPORARY_ERROR" if n % 20 else "THROTTLED")
        shards[0].set_gauge("in_flight", i)
        series.append((INTERVAL * (i + 1), merge_snapshots(s.snapshot() for s in shards)))
        intervals_alone.append(alone.snapshot())
    return series, intervals_alone


SERIES, ALONE = run_series()
FINAL = SERIES[-1][1]
GATES = [parse_gate("e2e.p99", "< 1s"), parse_gate("e2e.p50{function=echo}", "< 1ms")]


def summary_of(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "snapshot": FINAL,
        "started": START,
        "ended": START + timedelta(seconds=12.5),
        "scenario": default_scenario(),
        "gates": evaluate(GATES, FINAL, 12.0),
        "series": SERIES,
        "duration_s": 12.0,
        "exit_code": 1,
        "locust": LocustTotals(1200, 3),
    }
    arguments.update(overrides)
    return build_summary(**arguments)


# ---------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------


def test_a_folder_left_incomplete_by_a_run_that_is_gone_is_noticed_once(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from loadgen.runs.results.folder import mark_complete, mark_incomplete, notice_incomplete

    finished, killed, running = (new_run_dir(tmp_path, name, START) for name in ("done", "killed", "running"))
    for folder in (finished, killed, running):
        mark_incomplete(folder, START)
    mark_complete(finished)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    marker = json.loads((killed / "incomplete").read_text())
    (killed / "incomplete").write_text(json.dumps({**marker, "pid": int(dead.stdout)}))
    ((folder, what),) = notice_incomplete(tmp_path)  # not the finished one, not the one still running
    assert folder == killed and "ended before it wrote summary.json" in what and START.isoformat()[:10] in what
    assert notice_incomplete(tmp_path) == []  # said once


def test_new_run_dir(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path / "results", "Retry Storm!", START)
    assert first == tmp_path / "results" / "20261127T210000Z-retry-storm" and first.is_dir()
    assert new_run_dir(tmp_path / "results", "Retry Storm!", START).name == "20261127T210000Z-retry-storm-2"
    paris = datetime(2026, 11, 27, 22, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert new_run_dir(tmp_path, "x", paris).name == "20261127T210000Z-x"  # in UTC
    assert new_run_dir(tmp_path, "naive", datetime(2026, 1, 2, 3, 4, 5)).name == "20260102T030405Z-naive"
    assert new_run_dir(tmp_path, "../..", START).name == "20261127T210000Z-run"
    assert new_run_dir(tmp_path, "a/b\\c", START).parent == tmp_path


# ---------------------------------------------------------------------------------------------
# The time series
# ---------------------------------------------------------------------------------------------


def test_time_series_is_per_interval() -> None:
    records = time_series(SERIES)
    assert [r["t"] for r in records] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    for record, alone in zip(records, ALONE, strict=True):
        e2e = merge_snapshots(
            [Snapshot({}, {("e2e", "*", "*"): h}) for (f, _, _), h in alone.histograms.items() if f == "e2e"]
        )
        hist = e2e.histograms[("e2e", "*", "*")]
        assert record["dt"] == INTERVAL
        assert record["completed_per_s"] == 200 / INTERVAL == record["accepted_per_s"]
        assert record["attempts_per_s"] == alone.counter("attempts") / INTERVAL
        assert record["retries_per_s"] == {k: v / INTERVAL for k, v in alone.breakdown("retries").items()}
        assert record["e2e_us"]["count"] == 200
        assert record["e2e_us"]["p50"] == hist.percentiles([50])[50]
        assert record["e2e_us"]["p99"] == hist.percentiles([99])[99]
        echo = alone.histogram("e2e", ("echo", "completed"))
        assert record["functions"]["echo"]["p99_us"] == echo.percentiles([99])[99]
        assert record["functions"]["echo"]["completed_per_s"] == echo.count / INTERVAL
    assert [r["in_flight"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert records[0]["e2e_us"]["p50"] < records[-1]["e2e_us"]["p50"]  # it did get slower


def test_time_series_edge_cases() -> None:
    assert time_series([]) == []
    first = SERIES[0][1]
    records = time_series([(0.0, first), *SERIES[1:2]])  # a snapshot at 0 is the baseline
    assert len(records) == 1 and records[0]["dt"] == 4.0
    broken = time_series([SERIES[2], (8.0, SERIES[0][1]), SERIES[4]])  # not cumulative
    assert "error" in broken[1] and "error" not in broken[0] and "error" not in broken[2]
    quiet = time_series([SERIES[0], (3.0, SERIES[0][1])])
    assert quiet[1]["e2e_us"]["p50"] is None and quiet[1]["completed_per_s"] == 0


# ---------------------------------------------------------------------------------------------
# summary.json
# ---------------------------------------------------------------------------------------------


def test_write_summary(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path, "quickstart", START)
    (run_dir / "run_stats.csv").write_text("Type,Name\n", encoding="utf-8")
    scenario = replace(default_scenario(), description="<b>mine</b>")
    written = write_summary(
        run_dir,
        snapshot=FINAL,
        started=START,
        ended=START + timedelta(seconds=12.5),
        scenario=scenario,
        gates=evaluate(GATES, FINAL, 12.0),
        series=SERIES,
        locust=LocustTotals(1200, 3),
        exit_code=1,
        extra={"note": "test"},
    )
    data = orjson.loads((run_dir / SUMMARY_FILE).read_bytes())
    assert data == orjson.loads(orjson.dumps(written, option=orjson.OPT_NON_STR_KEYS))
    assert data["format"] == SUMMARY_FORMAT
    assert data["started"] == "2026-11-27T21:00:00.000Z" and data["ended"] == "2026-11-27T21:00:12.500Z"
    assert data["duration_s"] == 12.5 and data["exit_code"] == 1 and data["extra"] == {"note": "test"}
    assert set(data["versions"]) == {"python", "loadgen", "locust", "grpcio", "protobuf"}
    assert data["versions"]["python"].count(".") == 2
    assert data["scenario"]["name"] == "quickstart" and data["scenario"]["description"] == "<b>mine</b>"
    assert data["locust"] == {"requests": 1200, "failures": 3} and data["locust_csv"] == ["run_stats.csv"]
    echo = FINAL.histogram("e2e", ("echo", "completed"))
    row = data["latency_us"]["e2e"]["echo"]["completed"]
    assert row["count"] == echo.count and row["mean"] == echo.mean and row["max"] == echo.max
    assert [row[k] for k in ("p50", "p90", "p99", "p99.9")] == list(echo.percentiles([50, 90, 99, 99.9]).values())
    assert set(data["latency_us"]) == {"rpc", "attempt", "e2e"}
    assert data["counters"]["accepted"] == 1200 and data["counters"]["retries/THROTTLED"] == 60
    assert data["gauges"]["in_flight"] == 5
    assert set(data["shards"]) == {"shard-0", "shard-1"}
    assert data["shards"]["shard-0"]["accounting"]["accepted"] == 600
    assert data["accounting"]["balanced"] is False and data["accounting"]["difference"] == -5  # 5 "in flight"
    assert data["rates"]["calls_per_s"] == pytest.approx(1200 / 12.5)
    fanout = data["functions"]["fanout"]
    assert fanout["calls"] == fanout["completed"] == 300 and fanout["attempts_by_status"]["TEMPORARY_ERROR"] == 60
    assert data["gates"]["passed"] is False and len(data["gates"]["results"]) == 2
    assert len(data["series"]) == 6
    assert Snapshot.from_json(data["snapshot"]).histograms == FINAL.histograms


def test_summary_redacts_secrets() -> None:
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    scenario = loads_scenario(f'[target]\nsigning_key = "{key}"\n')
    text = orjson.dumps(summary_of(scenario=scenario)).decode()
    assert key not in text and "<redacted>" in text


# ---------------------------------------------------------------------------------------------
# report.html
# ---------------------------------------------------------------------------------------------


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_report(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path, "quickstart", START)
    (run_dir / "run_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,95%,99%,Requests/s\n"
        "grpc,Dispatch echo,1000,2,3,12,40,83.3\n,Aggregated,1200,3,3,12,40,100.0\n",
        encoding="utf-8",
    )
    (run_dir / "run_failures.csv").write_text("Method,Name,Error,Occurrences\n", encoding="utf-8")
    scenario = replace(default_scenario(), description="<script>alert(1)</script>")
    summary = write_summary(
        run_dir,
        snapshot=FINAL,
        started=START,
        ended=START + timedelta(seconds=12),
        scenario=scenario,
        gates=evaluate(GATES, FINAL, 12.0),
        series=SERIES,
        exit_code=1,
    )
    path = write_html_report(run_dir, summary)
    assert path == run_dir / REPORT_FILE
    page = path.read_text(encoding="utf-8")
    # The charts: inline SVG, each well-formed XML.
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) == 6  # latency, throughput, retries, in flight; the distribution of echo and of fanout
    for svg in svgs:
        ET.fromstring(svg)
    for title in (
        "Engine end-to-end latency per interval",
        "Throughput: calls per second",
        "Retries per second, by status",
    ):
        assert title in page
    assert ">p50<" in page and ">p99<" in page and ">TEMPORARY_ERROR<" in page and ">THROTTLED<" in page
    # The gates, coloured by verdict.
    assert page.count('<tr class="pass">') == 1 and page.count('<tr class="fail">') == 1
    assert "e2e.p50{function=echo}" in page and "FAILED: 1 of 2 gates" in page
    # Tables, Locust's CSVs, escaping, and nothing fetched from the network.
    assert "<code>fanout</code>" in page and "accepted 1200 = completed 1200" in page
    assert page.count('<tr class="bad">') == 1  # shard-0: 5 "in flight" that were never accepted
    assert '<a href="run_stats.csv">' in page and '<a href="run_failures.csv">' in page
    assert "Dispatch echo" in page and "83.3" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    parser = _Collect()
    parser.feed(page)
    tags = {tag for tag, _ in parser.tags}
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    assert not any(attrs.get("src") for _, attrs in parser.tags)
    assert all(href and "://" not in href for tag, attrs in parser.tags if tag == "a" for href in [attrs.get("href")])


def test_html_report_verdicts_and_empty_runs() -> None:
    failed_run = render_html(summary_of(exit_code=3))
    assert "RUN FAILED" in failed_run
    passed = render_html(summary_of(gates=evaluate(GATES[:1], FINAL, 12.0), exit_code=0))
    assert "PASSED: all 1 gates" in passed
    empty = build_summary(snapshot=Snapshot.empty(), started=START, ended=START, exit_code=3)
    page = render_html(empty)
    assert "No time series was recorded" in page and "This scenario has no gates" in page
    assert "No calls were recorded" in page and "<svg" not in page
    assert "No Locust CSV files" in page


def test_the_pool_size_and_its_bottleneck_hint_are_in_the_summary_the_report_and_a_gate() -> None:
    busy, idle = ShardStats("shard-0"), ShardStats("shard-1")
    for shard, saturated_ms in ((busy, 10_800), (idle, 600)):
        shard.set_gauge("streams", 200)
        shard.set_gauge("pool_saturated_ms", saturated_ms)
    snapshot = merge_snapshots([busy.snapshot(), idle.snapshot()])
    summary = summary_of(snapshot=snapshot, series=[], gates=[])
    assert summary["pool"] == {"streams": 200, "busy_ratio": 0.9, "bottleneck": True}  # the worst shard
    page = render_html(summary)
    assert "Endpoint pool: 200 streams per shard; every stream busy 90" in page
    assert "the pool was the bottleneck" in page
    (gate,) = evaluate([parse_gate("pool.busy_ratio", "< 0.5")], snapshot, 12.0)
    assert not gate.passed and gate.observed == pytest.approx(0.9)
    calm = summary_of(snapshot=idle.snapshot(), series=[], gates=[])
    assert calm["pool"]["bottleneck"] is False and "the pool was the bottleneck" not in render_html(calm)
    assert summary_of(snapshot=ShardStats("old").snapshot(), series=[], gates=[])["pool"] is None
