"""The callers' latency reports merge exactly: the latest report of each process of the current test counts."""

from __future__ import annotations

from loadgen.core.counters import ARRIVALS, DROPPED
from loadgen.core.stats import Snapshot
from loadgen.core.stats.caller import CallerReport, LatestReports, caller_recorder, outcome_of


def _process(name: str, values_ms: list[float], arrivals: int) -> tuple[object, list[Snapshot]]:
    """A process recording *values_ms* one by one, with a cumulative snapshot after each."""
    recorder = caller_recorder(name)
    snapshots = []
    for value in values_ms:
        recorder.record("latency", "echo", "completed", value / 1000.0)
        recorder.count(ARRIVALS, arrivals)
        snapshots.append(recorder.snapshot())
    return recorder, snapshots


def _report(name: str, test: int, seq: int, snapshot: Snapshot, final: bool = False) -> CallerReport:
    return CallerReport.from_json(CallerReport(name, test, seq, snapshot, final).to_json())  # through the wire form


def test_the_merge_is_exact_whatever_order_duplicates_losses_and_earlier_tests() -> None:
    a_values = [1.0, 2.0, 3.0, 250.0]
    b_values = [5.0, 7.0, 2000.0]
    _, a = _process("locust-0", a_values, 1)
    _, b = _process("locust-1", b_values, 2)
    _, old = _process("locust-0", [99_000.0], 50)
    reports = LatestReports()
    reports.start(2)
    assert not reports.offer("w0", _report("locust-0", 1, 9, old[0]))  # an earlier test: ignored
    assert reports.offer("w0", _report("locust-0", 2, 2, a[2]))
    assert not reports.offer("w0", _report("locust-0", 2, 1, a[1]))  # out of order: older
    assert not reports.offer("w0", _report("locust-0", 2, 2, a[2]))  # duplicated
    assert reports.offer("w1", _report("locust-1", 2, 0, b[0]))  # w1's reports 1 was lost
    assert reports.offer("w1", _report("locust-1", 2, 2, b[2], final=True))
    assert not reports.offer("w1", _report("locust-1", 2, 3, b[2]))  # after the final: a non-final is stale
    assert reports.missing_final(["w0", "w1"]) == ["w0"]  # w0 died before its final: its report #2 counts
    merged = reports.merged()
    histogram = merged.histogram("latency", ("echo", "completed"))
    one = caller_recorder("all")
    for value in a_values[:3] + b_values:
        one.record("latency", "echo", "completed", value / 1000.0)
    expected = one.snapshot().histogram("latency", ("echo", "completed"))
    assert (histogram.count, histogram.sum, histogram.min, histogram.max) == (6, expected.sum, 1000, 2_000_000)
    assert histogram.percentiles((50.0, 90.0, 99.0)) == expected.percentiles((50.0, 90.0, 99.0))
    assert merged.counters[ARRIVALS] == 3 * 1 + 3 * 2
    assert merged.counters[DROPPED] == 0
    assert merged.shards == ["locust-0", "locust-1"]


def test_processes_with_one_name_are_kept_apart_and_a_new_test_starts_empty() -> None:
    _, a = _process("locust", [1.0], 1)
    _, b = _process("locust", [2.0], 1)
    reports = LatestReports()
    reports.start(1)
    reports.offer("x", _report("locust", 1, 0, a[0]))
    reports.offer("y", _report("locust", 1, 0, b[0]))
    assert reports.merged().shards == ["locust", "locust@y"]
    assert reports.merged().histogram("latency", ("echo", "completed")).count == 2
    reports.start(2)
    assert reports.merged().histograms == {}


def test_outcomes_of_final_statuses() -> None:
    assert [outcome_of(s) for s in ("OK", "TIMEOUT", "PERMANENT_ERROR", "CANCELLED")] == [
        "completed",
        "expired",
        "failed",
        "cancelled",
    ]


def test_the_oldest_wait_of_a_merge_is_the_longest_of_any_process() -> None:
    from loadgen.core.stats.caller import GAUGE_OLDEST_WAITING, GAUGE_WAITING, oldest_waiting_us

    reports = LatestReports()
    reports.start(1)
    for client, (waiting, oldest) in {"a": (3, 1_200_000), "b": (5, 40_000)}.items():
        recorder = caller_recorder(f"locust-{client}")
        recorder.set_gauge(GAUGE_WAITING, waiting)
        recorder.set_gauge(GAUGE_OLDEST_WAITING, oldest)
        reports.offer(client, _report(f"locust-{client}", 1, 0, recorder.snapshot()))
    merged = reports.merged()
    assert merged.gauges[GAUGE_WAITING] == 8 and oldest_waiting_us(merged) == 1_200_000
    assert oldest_waiting_us(Snapshot.empty()) == 0
