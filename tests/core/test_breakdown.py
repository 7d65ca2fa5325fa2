"""Where a root call's time goes: the scheduler splits accepted → end into queue, attempts, backoff and
children, exactly, and counts resumes, children and coroutine state per resume."""

from __future__ import annotations

import random

import pytest

from loadgen.core.scheduler import Breakdown, CallFinished, Resumed, RetryPolicy, RunAttempt, Scheduler
from loadgen.pb import call_pb2, exit_pb2, function_pb2, poll_pb2
from loadgen.pb import status_pb2 as st

T0 = 1_700_000_000.0


def ok() -> function_pb2.RunResponse:
    return function_pb2.RunResponse(status=st.STATUS_OK, exit=exit_pb2.Exit(result=call_pb2.CallResult()))


def fan_out(n: int, state: bytes) -> function_pb2.RunResponse:
    calls = [call_pb2.Call(function="child", correlation_id=i) for i in range(n)]
    return function_pb2.RunResponse(status=st.STATUS_OK, poll=poll_pb2.Poll(coroutine_state=state, calls=calls))


def attempts_of(actions: list[object]) -> list[RunAttempt]:
    return [a for a in actions if isinstance(a, RunAttempt)]


def the_end(actions: list[object]) -> CallFinished:
    (done,) = [a for a in actions if isinstance(a, CallFinished) and a.root]
    return done


def phases(end: CallFinished) -> Breakdown:
    assert end.breakdown is not None
    return end.breakdown


def test_queue_attempts_backoff_and_children_are_each_phase_and_add_up() -> None:
    scheduler = Scheduler(retry_policy=RetryPolicy(base_delay=1.0, max_delay=1.0), rng=random.Random(3))
    (root,), actions = scheduler.submit([call_pb2.Call(function="parent")], T0)
    (first,) = attempts_of(actions)
    scheduler.sent(root, first.attempt, 0.25)  # waited 0.25 s for a stream
    actions = scheduler.on_response(root, first.attempt, function_pb2.RunResponse(status=st.STATUS_THROTTLED), T0 + 1.0)
    retry_at = scheduler.next_deadline()
    assert retry_at is not None and T0 + 1.5 <= retry_at <= T0 + 2.0
    (second,) = attempts_of(scheduler.advance(retry_at))
    scheduler.sent(root, second.attempt)  # sent at once
    actions = scheduler.on_response(root, second.attempt, fan_out(2, b"x" * 40), retry_at + 0.5)
    children = attempts_of(actions)
    for child in children:
        scheduler.sent(child.dispatch_id, child.attempt)
    early = scheduler.on_response(children[0].dispatch_id, children[0].attempt, ok(), retry_at + 1.5)
    assert not [a for a in early if not isinstance(a, CallFinished) or a.root]  # the parent waits for both
    actions = scheduler.on_response(children[1].dispatch_id, children[1].attempt, ok(), retry_at + 3.5)
    (resumed,) = [a for a in actions if isinstance(a, Resumed)]
    assert (resumed.dispatch_id, resumed.function, resumed.state_bytes) == (root, "parent", 40)
    (third,) = [a for a in attempts_of(actions) if a.dispatch_id == root]
    scheduler.sent(root, third.attempt, 0.5)
    end = the_end(scheduler.on_response(root, third.attempt, ok(), retry_at + 4.25))

    assert phases(end).queue == pytest.approx(0.25 + 0.5)
    assert phases(end).attempts == pytest.approx(0.75 + 0.5 + 0.25)
    assert phases(end).backoff == pytest.approx(retry_at - (T0 + 1.0))
    assert phases(end).children == pytest.approx(3.0)
    total = phases(end).queue + phases(end).attempts + phases(end).backoff + phases(end).children
    assert total == pytest.approx(end.finished_at - end.accepted_at, abs=1e-9)
    assert (phases(end).resumes, phases(end).child_calls, end.attempts) == (1, 2, 3)


def test_a_call_that_expires_queued_counts_its_wait_as_queue_and_one_waiting_for_children_as_children() -> None:
    scheduler = Scheduler(default_expiration=2.0)
    (queued, parent), actions = scheduler.submit([call_pb2.Call(function="q"), call_pb2.Call(function="p")], T0)
    parent_attempt = attempts_of(actions)[1]
    scheduler.sent(parent, parent_attempt.attempt)
    scheduler.on_response(parent, parent_attempt.attempt, fan_out(1, b""), T0 + 0.5)  # the child never answers
    ended = {a.dispatch_id: a for a in scheduler.advance(T0 + 2.0) if isinstance(a, CallFinished) and a.root}
    queue_wait, parent_wait = phases(ended[queued]), phases(ended[parent])
    assert (queue_wait.queue, queue_wait.attempts) == (pytest.approx(2.0), 0.0)
    assert (parent_wait.attempts, parent_wait.children) == (pytest.approx(0.5), pytest.approx(1.5))
    assert parent_wait.child_calls == 1 and parent_wait.resumes == 0


def test_a_driver_that_never_says_an_attempt_was_sent_sees_it_all_as_attempts() -> None:
    scheduler = Scheduler()
    (root,), actions = scheduler.submit([call_pb2.Call(function="f")], T0)
    end = the_end(scheduler.on_response(root, attempts_of(actions)[0].attempt, ok(), T0 + 0.125))
    assert phases(end)[:4] == (0.0, 0.125, 0.0, 0.0)
