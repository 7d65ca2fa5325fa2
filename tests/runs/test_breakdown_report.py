"""The breakdown of root calls' time as gate metrics, in summary.json and in report.html (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loadgen.core.stats import ShardStats, Snapshot, merge_snapshots
from loadgen.runs.breakdown import breakdowns
from loadgen.runs.gates import evaluate, parse_gate
from loadgen.runs.metrics import Metrics, parse_metric
from loadgen.runs.results.html import render_html
from loadgen.runs.results.summary import build_summary


def _shard(name: str, calls: list[tuple[float, float, float, float, int, int]], states: list[int]) -> Snapshot:
    stats = ShardStats(name)
    stats.count_accepted(len(calls))
    for queue, attempts, backoff, children, resumes, started in calls:
        stats.record_call("fanout", "completed", "OK", queue + attempts + backoff + children)
        stats.record_breakdown("fanout", queue, attempts, backoff, children, resumes, started)
    for size in states:
        stats.record_state("fanout", size)
    return stats.snapshot()


@pytest.fixture
def snapshot() -> Snapshot:
    one = _shard("shard-0", [(0.001, 0.010, 0.0, 0.030, 1, 3)] * 99, [100] * 99)
    two = _shard("shard-1", [(0.002, 0.020, 0.400, 0.050, 2, 7)], [5000, 64])
    back = Snapshot.from_bytes(merge_snapshots([one, two]).to_bytes())  # the wire form keeps them
    return back


def test_the_breakdown_is_gate_metrics_merged_exactly_across_shards(snapshot: Snapshot) -> None:
    metrics = Metrics(snapshot, 1.0)
    assert metrics("breakdown.backoff.max") == 400_000
    assert metrics("breakdown.backoff.p50") == 0 == metrics("breakdown.backoff.min")
    assert metrics("breakdown.backoff.count") == 100  # the zeros are counted too
    assert metrics("breakdown.attempts.p50{function=fanout}") == pytest.approx(10_000, rel=1e-3)
    assert metrics("breakdown.queue.count") == 100
    assert metrics("breakdown.children.p99") == pytest.approx(30_000, rel=1e-3)
    assert (metrics("resumes.max"), metrics("resumes.p50"), metrics("children.max")) == (2, 1, 7)
    assert (metrics("state_bytes.max"), metrics("state_bytes.count")) == (5000, 101)
    assert parse_metric("resumes.p99").kind == "count" and parse_metric("state_bytes.max").kind == "count"
    assert parse_metric("breakdown.backoff.p99").kind == "latency"
    gates = [
        parse_gate(m, c)
        for m, c in (("resumes.p99", "<= 1"), ("resumes.max", "<= 1"), ("breakdown.backoff.p99", "< 1ms"))
    ]
    assert [r.passed for r in evaluate(gates, snapshot, 1.0)] == [True, False, True]
    with pytest.raises(ValueError, match="unknown scope label"):
        parse_metric("breakdown.queue.p99{status=OK}")


def test_the_phases_add_up_to_the_e2e_time_per_function_and_show_in_the_report(snapshot: Snapshot) -> None:
    (fanout,) = breakdowns(snapshot)
    assert fanout.calls == 100 and fanout.gap < 0.001
    assert fanout.share("children") == pytest.approx((99 * 30 + 50) / (99 * 41 + 472), rel=1e-3)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    summary = build_summary(snapshot=snapshot, started=moment, ended=moment)
    entry = summary["breakdown"]["fanout"]
    assert entry["phases"]["backoff"]["max"] == 400_000 and entry["state_bytes"]["max"] == 5000
    assert sum(part["mean"] for part in entry["phases"].values()) == pytest.approx(entry["e2e_mean_us"], rel=1e-3)
    page = render_html(summary)
    assert "Where the time went" in page and 'class="stack"' in page and "state bytes p99/max" in page


def test_zeros_are_counted_in_every_snapshot_and_the_differences_stay_exact() -> None:
    stats = ShardStats("shard-0")
    stats.record_breakdown("f", 0.0, 0.001, 0.0, 0.0, 0, 0)
    first = stats.snapshot()
    stats.record_breakdown("f", 0.0, 0.002, 0.5, 0.0, 0, 0)
    stats.record_breakdown("f", 0.0, 0.003, 0.0, 0.0, 2, 0)
    later = stats.snapshot()
    for family, part, count in (("breakdown", "backoff", 3), ("breakdown", "queue", 3), ("resumes", "call", 3)):
        assert later.histogram(family, ("f", part)).count == count  # type: ignore[arg-type]
    interval = later.minus(first)
    backoff = interval.histogram("breakdown", ("f", "backoff"))
    assert (backoff.count, backoff.min, backoff.max) == (2, 0, 500_000)
    assert interval.histogram("resumes", ("f", "call")).percentiles([50.0, 100.0]) == {50.0: 0.0, 100.0: 2.0}
