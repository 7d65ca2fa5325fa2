"""The whole-system benchmark reads ``loadgen run``'s own progress lines: they must keep parsing."""

from __future__ import annotations

from loadgen.bench.system import _LOST, _PROGRESS
from loadgen.core.stats import ShardStats
from loadgen.runs.console import progress_line


def test_the_benchmark_parses_the_progress_line_with_and_without_failures() -> None:
    stats = ShardStats("shard-0")
    stats.count_accepted(120)
    for _ in range(100):
        stats.record_call("echo", "completed", "OK", 0.001)
    stats.set_gauge("in_flight", 13)
    clean = progress_line(8.0, 20.0, stats.snapshot(), 2.0, stats.snapshot())
    for _ in range(7):
        stats.record_call("fail", "failed", "PERMANENT_ERROR", 0.001)
    failing = progress_line(10.0, 20.0, stats.snapshot(), 2.0, stats.snapshot())
    assert "failed 7" in failing
    for line, elapsed in ((clean, 8), (failing, 10)):
        found = _PROGRESS.search(line)
        assert found is not None, line
        assert (int(found["elapsed"]), int(found["in_flight"]), int(found["accepted"])) == (elapsed, 13, 120)
        lost = _LOST.search(line[found.end() :])
        assert lost is not None and lost[1] == "0"


def test_the_progress_line_shows_rejections_and_queue_time_and_the_pool_line_its_hint() -> None:
    from loadgen.runs.console import pool_text

    stats = ShardStats("shard-0")
    stats.count_admission(150)
    stats.count_accepted(100)
    stats.count_admission(50, "calls_in_flight")
    stats.record("queue", "echo", "attempt", 0.25)
    stats.set_gauge("in_flight", 100)
    stats.set_gauge("streams", 200)
    stats.set_gauge("pool_saturated_ms", 9_000)
    line = progress_line(8.0, 20.0, stats.snapshot(), 2.0, stats.snapshot())
    assert "accepted 100  rejected 50" in line and "queue p99 250" in line
    found = _PROGRESS.search(line)
    assert found is not None and int(found["accepted"]) == 100, line
    assert pool_text(stats.snapshot(), 10.0) == (
        "pool: 200 streams per shard to the endpoint; every stream busy 90% of the run (worst shard): "
        "the pool was the bottleneck; raise engine.connections / max_streams"
    )
    assert pool_text(stats.snapshot(), 100.0).endswith("busy 9% of the run")


def test_a_round_whose_gates_failed_says_what_failed_them() -> None:
    from loadgen.bench.system import SystemRun, _why_not_passed

    passed = SystemRun("batched", "session", 0, 0, accounting={"rejected": 0}, gates_passed=True)
    assert _why_not_passed(passed) == ""
    rejected = SystemRun(
        "batched", "session", 1, 1, accounting={"rejected": 1260, "lost": 0}, locust_failures=63, gates_passed=False
    )
    assert _why_not_passed(rejected) == " (gates failed: rejected 1260, Locust failures 63)"
    unexplained = SystemRun("waited", "session", 0, 1, accounting={}, gates_passed=False)
    assert _why_not_passed(unexplained) == " (gates failed: see the run)"
