"""``loadgen compare``: relative changes of latency percentiles and throughput between two runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadgen.core.stats import ShardStats, Snapshot
from loadgen.runs.compare import (
    CompareError,
    compare_main,
    compare_summaries,
    format_table,
    load_summary,
    parse_percentiles,
    parse_threshold,
)
from loadgen.runs.results import build_summary, write_summary
from loadgen.runs.scenario import default_scenario

START = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)


def snapshot(echo_scale: float = 1.0, fanout_calls: int = 400, seed: int = 2, extra: str | None = None) -> Snapshot:
    rnd = random.Random(seed)
    shard = ShardStats("shard-0")
    for function, calls, scale in (("echo", 1000, echo_scale), ("fanout", fanout_calls, 1.0)):
        for _ in range(calls):
            us = int(rnd.randrange(500, 1500) * scale)
            shard.count_accepted()
            shard.record_call(function, "completed", "OK", us / 1e6)
            shard.record_attempt(function, "OK", us / 2e6)
            shard.record_rpc("Dispatch", True, 100e-6)
    if extra:
        shard.count_accepted(5)
        for _ in range(5):
            shard.record_call(extra, "failed", "PERMANENT_ERROR", 0.01)
    return shard.snapshot()


def summary(snap: Snapshot, duration: float = 10.0) -> dict[str, Any]:
    return build_summary(
        snapshot=snap,
        started=START,
        ended=START + timedelta(seconds=duration),
        scenario=default_scenario(),
        duration_s=duration,
    )


BASE = summary(snapshot())


def rows_by(comparison: Any) -> dict[tuple[str, str], Any]:
    return {(row.metric, row.key): row for row in comparison.rows}


def test_same_run_has_no_regression() -> None:
    comparison = compare_summaries(BASE, BASE)
    assert comparison.regressions == [] and comparison.exit_code == 0
    assert all(row.change == 0 for row in comparison.rows)
    assert ("e2e p99", "echo completed") in rows_by(comparison)
    assert ("calls/s", "all") in rows_by(comparison) and ("calls/s", "fanout") in rows_by(comparison)
    assert ("rpc p50", "Dispatch ok") in rows_by(comparison)


def test_slower_latency_and_lower_throughput_are_regressions() -> None:
    current = summary(snapshot(echo_scale=1.5), duration=12.0)  # echo 50% slower; 1400 calls in 12 s, not 10 s
    comparison = compare_summaries(BASE, current, max_regression=0.10)
    rows = rows_by(comparison)
    echo = rows[("e2e p99", "echo completed")]
    assert echo.verdict == "REGRESSION" and echo.change == pytest.approx(0.5, abs=0.01)
    assert rows[("attempt p50", "echo OK")].verdict == "REGRESSION"
    assert rows[("e2e p50", "fanout completed")].verdict == "ok"
    throughput = rows[("calls/s", "all")]
    assert throughput.verdict == "REGRESSION" and throughput.change == pytest.approx(10 / 12 - 1)
    assert comparison.exit_code == 1
    # The other way round: faster, more throughput.
    improved = rows_by(compare_summaries(current, BASE))
    assert improved[("e2e p99", "echo completed")].verdict == "improved"
    assert improved[("calls/s", "all")].verdict == "improved"
    # A looser threshold lets the throughput pass.
    loose = rows_by(compare_summaries(BASE, current, max_regression=0.25))
    assert loose[("calls/s", "all")].verdict == "ok" and loose[("e2e p99", "echo completed")].verdict == "REGRESSION"


def test_few_samples_and_one_sided_rows_are_not_judged() -> None:
    current = summary(snapshot(fanout_calls=50, extra="payload"))
    comparison = compare_summaries(BASE, current, min_count=100)
    rows = rows_by(comparison)
    assert rows[("e2e p99", "fanout completed")].verdict == "few samples"
    assert rows[("calls/s", "fanout")].verdict == "few samples"
    assert rows[("e2e p50", "payload failed")].verdict == "current only"
    assert rows[("e2e p50", "payload failed")].baseline is None
    assert rows[("calls/s", "payload")].verdict == "current only"
    assert rows_by(compare_summaries(current, BASE))[("e2e p50", "payload failed")].verdict == "baseline only"


def test_percentiles_and_families() -> None:
    comparison = compare_summaries(BASE, BASE, percentiles=(75.0, 99.9), families=("e2e",))
    metrics = {row.metric for row in comparison.rows}
    assert metrics == {"calls/s", "e2e p75", "e2e p99.9"}
    without_hdr = {k: v for k, v in BASE.items() if k != "snapshot"}
    assert {row.metric for row in compare_summaries(without_hdr, without_hdr).rows} >= {"e2e p50", "rpc p99"}
    with pytest.raises(CompareError, match="no p75"):
        compare_summaries(without_hdr, without_hdr, percentiles=(75.0,))


def test_table() -> None:
    current = summary(snapshot(echo_scale=1.5), duration=12.0)
    text = format_table(compare_summaries(BASE, current, max_regression=0.1))
    lines = text.splitlines()
    assert lines[0].startswith("baseline: ") and lines[1].startswith("current:  ")
    assert any(line.split()[:3] == ["e2e", "p99", "echo"] and "REGRESSION" in line for line in lines)
    assert "regression(s) beyond 10%" in lines[-1]
    assert "no regression beyond 10%" in format_table(compare_summaries(BASE, BASE))


def test_thresholds_and_percentiles_parse() -> None:
    assert parse_threshold("10%") == pytest.approx(0.1) and parse_threshold("0.25") == 0.25
    for bad in ("ten", "-5%", "inf", ""):
        with pytest.raises(CompareError):
            parse_threshold(bad)
    assert parse_percentiles("p50, p99.9,75") == (50.0, 99.9, 75.0)
    for bad in ("p101", "median", ""):
        with pytest.raises(CompareError):
            parse_percentiles(bad)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def write_run(root: Path, name: str, snap: Snapshot, duration: float = 10.0) -> Path:
    folder = root / name
    folder.mkdir()
    write_summary(folder, snapshot=snap, started=START, ended=START + timedelta(seconds=duration))
    return folder


def test_compare_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", snapshot())
    slow = write_run(tmp_path, "slow", snapshot(echo_scale=1.3))
    assert compare_main([str(base), str(base / "summary.json")]) == 0
    assert "no regression beyond 10%" in capsys.readouterr().out
    out_json = tmp_path / "cmp.json"
    assert compare_main([str(base), str(slow), "--max-regression", "10%", "--json", str(out_json)]) == 1
    output = capsys.readouterr().out
    assert "REGRESSION" in output and "e2e p99" in output
    data = orjson.loads(out_json.read_bytes())
    assert data["regressions"] > 0 and data["max_regression"] == pytest.approx(0.1)
    assert compare_main([str(base), str(slow), "--max-regression", "50%"]) == 0
    assert compare_main([str(base), str(slow), "--families", "rpc", "--percentiles", "p50"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "cannot read it"),
        (lambda d: (d / "x.json").write_text("{nope") and d / "x.json", "not JSON"),
        (lambda d: (d / "y.json").write_text('{"format": "other"}') and d / "y.json", "not a loadgen run summary"),
    ],
)
def test_compare_main_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, message: str
) -> None:
    base = write_run(tmp_path, "base", snapshot())
    bad = make(tmp_path)
    assert compare_main([str(base), str(bad)]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(CompareError, match=message):
        load_summary(bad)


def test_compare_main_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", snapshot())
    assert compare_main([str(base)]) == 2  # argparse: the current run is missing
    assert compare_main([str(base), str(base), "--max-regression", "lots"]) == 2
    assert compare_main([str(base), str(base), "--families", "e2e,nope"]) == 2
    assert compare_main([str(base), str(base), "--min-count", "-1"]) == 2
    assert compare_main(["--help"]) == 0
    assert "--max-regression" in capsys.readouterr().out
