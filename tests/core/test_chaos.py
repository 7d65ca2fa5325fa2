"""Orchestrator faults on purpose in the pure scheduler: delayed, reordered and partial child results,
each counted, and every call still ends once with every child result delivered once."""

from __future__ import annotations

import random

import pytest

from loadgen.core.chaos import Chaos
from loadgen.core.scheduler import Action, CallFinished, ChaosInjected, RunAttempt, Scheduler
from loadgen.pb import call_pb2, exit_pb2, function_pb2, poll_pb2
from loadgen.pb import status_pb2 as st

T0 = 1_700_000_000.0


def ok(tag: int) -> function_pb2.RunResponse:
    result = call_pb2.CallResult()
    result.output.value = bytes([tag])
    return function_pb2.RunResponse(status=st.STATUS_OK, exit=exit_pb2.Exit(result=result))


def fan_out(n: int) -> function_pb2.RunResponse:
    calls = [call_pb2.Call(function="child", correlation_id=i) for i in range(n)]
    return function_pb2.RunResponse(status=st.STATUS_OK, poll=poll_pb2.Poll(coroutine_state=b"s", calls=calls))


def attempts(actions: list[Action]) -> list[RunAttempt]:
    return [a for a in actions if isinstance(a, RunAttempt)]


def injected(actions: list[Action]) -> list[str]:
    return [a.kind for a in actions if isinstance(a, ChaosInjected)]


def start(scheduler: Scheduler, n: int) -> tuple[str, list[RunAttempt]]:
    (root,), actions = scheduler.submit([call_pb2.Call(function="parent")], T0)
    children = attempts(scheduler.on_response(root, attempts(actions)[0].attempt, fan_out(n), T0))
    return root, children


def answer_children(scheduler: Scheduler, children: list[RunAttempt], now: float) -> list[Action]:
    out: list[Action] = []
    for index, child in enumerate(children):
        out += scheduler.on_response(child.dispatch_id, child.attempt, ok(index), now)
    return out


def test_a_delayed_child_result_reaches_its_parent_late_and_the_wait_counts_as_children() -> None:
    scheduler = Scheduler(chaos=Chaos(delay_rate=1.0, delay=0.5), rng=random.Random(1))
    root, children = start(scheduler, 2)
    actions = answer_children(scheduler, children, T0 + 0.1)
    assert injected(actions) == ["delayed", "delayed"]
    assert not [a for a in attempts(actions) if a.dispatch_id == root]  # the parent has nothing yet
    assert scheduler.next_deadline() == pytest.approx(T0 + 0.6)
    (resume,) = [a for a in attempts(scheduler.advance(T0 + 0.6)) if a.dispatch_id == root]
    assert len(resume.request.poll_result.results) == 2
    (end,) = [a for a in scheduler.on_response(root, resume.attempt, ok(9), T0 + 0.7) if isinstance(a, CallFinished)]
    assert end.breakdown is not None
    assert end.breakdown.children == pytest.approx(0.6, abs=1e-6) and end.breakdown.attempts == pytest.approx(
        0.1, abs=1e-6
    )


def test_a_reordered_resume_carries_the_same_results_in_another_order() -> None:
    scheduler = Scheduler(chaos=Chaos(reorder_rate=1.0), rng=random.Random(2))
    root, children = start(scheduler, 4)
    actions = answer_children(scheduler, children, T0 + 0.1)
    (resume,) = [a for a in attempts(actions) if a.dispatch_id == root]
    order = [r.correlation_id for r in resume.request.poll_result.results]
    assert sorted(order) == [0, 1, 2, 3] and order != [0, 1, 2, 3]
    assert injected(actions) == ["reordered"]


def test_a_partial_resume_carries_some_results_and_the_rest_come_with_the_next_poll() -> None:
    scheduler = Scheduler(chaos=Chaos(partial_rate=1.0), rng=random.Random(3))
    root, children = start(scheduler, 3)
    actions = answer_children(scheduler, children, T0 + 0.1)
    assert injected(actions) == ["partial"]
    seen: list[int] = []
    while True:
        (resume,) = [a for a in attempts(actions) if a.dispatch_id == root]
        got = [r.correlation_id for r in resume.request.poll_result.results]
        assert got, "every resume carries at least one result"
        seen += got
        if len(seen) == 3:
            break
        actions = scheduler.on_response(root, resume.attempt, function_pb2.RunResponse(poll=poll_pb2.Poll()), T0 + 1)
    assert sorted(seen) == [0, 1, 2]  # each result delivered once
    ended = [a for a in scheduler.on_response(root, resume.attempt, ok(9), T0 + 2) if isinstance(a, CallFinished)]
    assert ended and ended[0].breakdown is not None and ended[0].breakdown.resumes >= 2
    assert scheduler.counters.completed == 1 and scheduler.live_calls == 0


def test_a_parent_that_ends_while_results_are_delayed_keeps_nothing() -> None:
    scheduler = Scheduler(chaos=Chaos(delay_rate=1.0, delay=5.0), default_expiration=1.0)
    root, children = start(scheduler, 2)
    answer_children(scheduler, children, T0 + 0.1)
    ended = [a for a in scheduler.advance(T0 + 1.0) if isinstance(a, CallFinished)]
    assert [a.dispatch_id for a in ended] == [root]
    assert scheduler.advance(T0 + 6.0) == [] and scheduler.live_calls == 0 and not scheduler._late


def test_without_chaos_nothing_is_injected() -> None:
    scheduler = Scheduler(chaos=Chaos(duplicate_rate=1.0))  # duplicates are the driver's, not the scheduler's
    _, children = start(scheduler, 3)
    assert injected(answer_children(scheduler, children, T0 + 0.1)) == []
    with pytest.raises(ValueError, match="from 0 to 1"):
        Chaos(delay_rate=1.5)
