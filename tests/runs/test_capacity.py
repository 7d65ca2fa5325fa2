"""The capacity search's stepping and stopping, as pure logic: doubling, halving, bisection to the
precision, the ceiling, the floor, max_steps, early breaks and min_capacity."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadgen.runs.capacity import CapacityResult, CapacitySearch, SearchSettings, StepVerdict, broken, judged
from loadgen.runs.gates import GateResult


def fail_at(capacity: float) -> Callable[[float], bool]:
    """An endpoint that passes every step up to *capacity* calls/s and fails above."""
    return lambda rate: rate <= capacity


def search(settings: SearchSettings, passes: Callable[[float], bool]) -> CapacityResult:
    state = CapacitySearch(settings)
    while (rate := state.next_rate()) is not None:
        ok = passes(rate)
        state.record(StepVerdict(rate, ok, None if ok else "latency.p99 < 50ms", "" if ok else "too slow"))
        assert len(state.steps) <= settings.max_steps
    return state.result()


def rates(result: CapacityResult) -> list[float]:
    return [step.rate for step in result.steps]


def test_doubles_until_a_step_fails_then_bisects_to_the_precision() -> None:
    result = search(SearchSettings(start_rate=10, precision=0.05), fail_at(300))
    assert rates(result)[:6] == [10, 20, 40, 80, 160, 320]  # doubling, 320 is the first failure
    assert rates(result)[6:8] == [240, 280]  # then the midpoints of [160, 320], [240, 320]
    assert result.stop == "precision"
    assert result.rate is not None and result.rate <= 300 < result.failed.rate  # type: ignore[union-attr]
    assert result.failed.rate - result.rate <= 0.05 * result.rate  # type: ignore[union-attr]
    assert result.rate == max(s.rate for s in result.steps if s.passed)
    assert result.failed_gate == "latency.p99 < 50ms"
    assert result.meets_minimum


@pytest.mark.parametrize("capacity", [1.5, 7, 10, 33.3, 99, 1000, 4321, 65_000])
@pytest.mark.parametrize("precision", [0.01, 0.05, 0.2])
def test_the_found_rate_is_within_the_precision_below_the_true_capacity(capacity: float, precision: float) -> None:
    settings = SearchSettings(start_rate=10, precision=precision, max_steps=60)
    result = search(settings, fail_at(capacity))
    assert result.stop == "precision"
    assert result.rate is not None and result.failed is not None
    assert result.rate <= capacity < result.failed.rate
    assert result.failed.rate - result.rate <= precision * result.rate
    assert capacity - result.rate <= precision * result.rate


def test_a_pass_at_the_ceiling_ends_the_search_with_the_ceiling_as_capacity() -> None:
    result = search(SearchSettings(start_rate=100, max_rate=700), fail_at(10_000))
    assert rates(result) == [100, 200, 400, 700]  # the last doubling is clamped to max_rate
    assert result.stop == "ceiling"
    assert result.rate == 700 and result.failed is None and result.failed_gate is None
    assert "at least max_rate" in result.to_json()["stop_text"]


def test_a_failure_at_the_ceiling_bisects_below_it() -> None:
    result = search(SearchSettings(start_rate=100, max_rate=700, precision=0.05), fail_at(650))
    assert rates(result)[:4] == [100, 200, 400, 700]
    assert rates(result)[4] == 550
    assert result.rate is not None and result.rate <= 650 < result.failed.rate <= 700  # type: ignore[union-attr]


def test_a_failing_first_step_halves_until_a_step_passes_then_bisects() -> None:
    result = search(SearchSettings(start_rate=100, precision=0.05), fail_at(30))
    assert rates(result)[:3] == [100, 50, 25]
    assert rates(result)[3] == 37.5  # between 25 (passed) and 50 (failed)
    assert result.stop == "precision"
    assert result.rate is not None and result.rate <= 30 < result.failed.rate  # type: ignore[union-attr]


def test_nothing_passes_down_to_the_floor() -> None:
    result = search(SearchSettings(start_rate=10, min_rate=2), lambda rate: False)
    assert rates(result) == [10, 5, 2.5, 2]  # halving, clamped to min_rate
    assert result.stop == "floor"
    assert result.rate is None and result.failed is not None and result.failed.rate == 2
    assert not result.meets_minimum
    assert result.text().startswith("no rate passed (the lowest tried, 2 calls/s, failed")
    assert result.to_json()["rate"] is None


def test_a_first_step_at_the_floor_that_fails_ends_at_once() -> None:
    result = search(SearchSettings(start_rate=1, min_rate=1), lambda rate: False)
    assert rates(result) == [1]
    assert result.stop == "floor"


def test_max_steps_bounds_the_search_and_keeps_what_it_found() -> None:
    result = search(SearchSettings(start_rate=1, max_steps=5), fail_at(1e9))
    assert rates(result) == [1, 2, 4, 8, 16]
    assert result.stop == "max_steps"
    assert result.rate == 16 and result.failed is None
    bisecting = search(SearchSettings(start_rate=10, precision=0.001, max_steps=7), fail_at(55))
    assert len(bisecting.steps) == 7 and bisecting.stop == "max_steps"
    assert bisecting.rate is not None and bisecting.rate <= 55 < bisecting.failed.rate  # type: ignore[union-attr]


def test_min_capacity_is_met_or_not() -> None:
    assert search(SearchSettings(start_rate=10, min_capacity=200), fail_at(300)).meets_minimum
    low = search(SearchSettings(start_rate=10, min_capacity=400), fail_at(300))
    assert low.rate is not None and not low.meets_minimum
    assert low.to_json()["meets_min_capacity"] is False


def test_the_capacity_is_the_highest_pass_below_the_lowest_failure() -> None:
    state = CapacitySearch(SearchSettings(start_rate=10))
    for rate, ok in ((10, True), (20, True), (40, False), (30, True), (35, False)):
        assert state.next_rate() == rate
        state.record(StepVerdict(rate, ok))
    assert (state.low, state.high) == (30, 35)
    assert state.next_rate() == 32.5


def test_an_interrupted_search_reports_what_it_had() -> None:
    state = CapacitySearch(SearchSettings(start_rate=10))
    state.record(StepVerdict(10, True))
    state.stop("interrupted")
    assert state.next_rate() is None
    result = state.result()
    assert result.stop == "interrupted" and result.rate == 10


def test_an_early_broken_step_counts_as_a_failure_with_its_check() -> None:
    gate = GateResult("latency.p99", "< 50ms", 90_000.0, False, "latency.p99 = 90ms, expected < 50ms", "latency")
    assert broken([gate], dropped=0, in_flight=0, in_flight_limit=100) == (
        "latency.p99 < 50ms",
        "abort_on_fail gate failed: latency.p99 = 90ms, expected < 50ms",
    )
    check, message = broken([], dropped=3, in_flight=0, in_flight_limit=100) or ("", "")
    assert check == "dropped == 0" and "3 arrival(s) dropped" in message
    check, message = broken([], dropped=0, in_flight=100, in_flight_limit=100) or ("", "")
    assert check == "in_flight < 100" and "100 calls in flight" in message
    assert broken([], dropped=0, in_flight=99, in_flight_limit=100) is None


def test_a_step_passes_only_when_every_gate_passes_and_names_the_first_that_failed() -> None:
    ok = GateResult("dropped", "== 0", 0.0, True, "dropped = 0 (== 0): passed")
    slow = GateResult("latency.p99", "< 50ms", 90_000.0, False, "latency.p99 = 90ms, expected < 50ms", "latency")
    errors = GateResult("failed.ratio", "< 1%", 0.5, False, "failed.ratio = 50%, expected < 1%", "ratio")
    passed = judged(10, [ok], {"throughput": 9.9})
    assert passed.passed and passed.failed_gate is None and passed.measured["throughput"] == 9.9
    failed = judged(20, [ok, slow, errors])
    assert not failed.passed and failed.failed_gate == "latency.p99 < 50ms"
    assert failed.message == "latency.p99 = 90ms, expected < 50ms"
    document = failed.to_json(2)
    assert document["verdict"] == "fail" and document["index"] == 2 and len(document["gates"]) == 3
    assert judged(5, []).passed  # no gate: nothing failed


@pytest.mark.parametrize(
    "changes",
    [
        {"start_rate": 0},
        {"min_rate": 20, "start_rate": 10},
        {"start_rate": 10, "max_rate": 5},
        {"max_rate": float("inf")},
        {"precision": 0},
        {"precision": 1},
        {"step": 0},
        {"warmup": -1},
        {"max_steps": 0},
    ],
)
def test_settings_that_cannot_search_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SearchSettings(**changes)  # type: ignore[arg-type]


def hiccups() -> Callable[[float], bool]:
    """True capacity 300, but every first try at a rate over 100 fails (a noisy machine)."""
    tries: dict[float, int] = {}

    def passes(rate: float) -> bool:
        tries[rate] = tries.get(rate, 0) + 1
        return rate <= 300 and (rate <= 100 or tries[rate] > 1)

    return passes


def test_retries_run_a_failing_step_again_and_one_pass_is_a_pass() -> None:
    result = search(SearchSettings(start_rate=100, precision=0.05, retries=1, max_steps=40), hiccups())
    assert rates(result)[:5] == [100, 200, 200, 400, 400]  # 200 failed once, then passed; 400 failed twice
    assert result.rate is not None and result.rate <= 300 < result.failed.rate  # type: ignore[union-attr]
    assert result.failed.rate - result.rate <= 0.05 * result.rate  # type: ignore[union-attr]
    without = search(SearchSettings(start_rate=100, precision=0.05, max_steps=40), hiccups())
    assert without.rate == 100 and rates(without)[:2] == [100, 200]  # without retries the first hiccup decides


def test_a_rate_fails_only_when_every_try_failed() -> None:
    state = CapacitySearch(SearchSettings(start_rate=10, retries=2))
    state.record(StepVerdict(10, True))
    state.record(StepVerdict(20, False))
    assert state.high is None and state.next_rate() == 20
    state.record(StepVerdict(20, False))
    assert state.next_rate() == 20
    state.record(StepVerdict(20, False))
    assert state.high == 20 and state.next_rate() == 15
    result = CapacitySearch(SearchSettings(start_rate=10, retries=1))
    result.record(StepVerdict(10, False, "latency.p99 < 1ms", "first"))
    result.record(StepVerdict(10, False, "latency.p99 < 1ms", "second"))
    assert result.next_rate() == 5
    assert result.result().failed.message == "second"  # type: ignore[union-attr]
