"""Property tests of the scheduler: random interleavings of responses, faults, polls and time."""

from __future__ import annotations

import random

from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.core.scheduler import CallFinished, RetryPolicy, RunAttempt, Scheduler
from loadgen.pb import call_pb2, exit_pb2, function_pb2, poll_pb2
from loadgen.pb import status_pb2 as stat

T0 = 1_000_000.0
STATUSES = [
    stat.STATUS_OK,
    stat.STATUS_TEMPORARY_ERROR,
    stat.STATUS_THROTTLED,
    stat.STATUS_PERMANENT_ERROR,
    stat.STATUS_INVALID_ARGUMENT,
    stat.STATUS_TCP_ERROR,
]


def response_for(data: st.DataObject, depth: int) -> function_pb2.RunResponse:
    kind = data.draw(st.sampled_from(["exit", "exit", "status", "tail", "poll"] if depth < 3 else ["exit", "status"]))
    if kind == "exit":
        return function_pb2.RunResponse(status=stat.STATUS_OK, exit=exit_pb2.Exit(result=call_pb2.CallResult()))
    if kind == "status":
        return function_pb2.RunResponse(status=data.draw(st.sampled_from(STATUSES)))
    if kind == "tail":
        code = data.draw(st.sampled_from([stat.STATUS_OK, stat.STATUS_TEMPORARY_ERROR]))
        return function_pb2.RunResponse(status=code, exit=exit_pb2.Exit(tail_call=call_pb2.Call(function="tail")))
    children = [call_pb2.Call(function="child", correlation_id=i) for i in range(data.draw(st.integers(0, 3)))]
    poll = poll_pb2.Poll(coroutine_state=b"s", calls=children)
    poll.min_results = data.draw(st.integers(0, 3))
    poll.max_results = data.draw(st.integers(0, 3))
    if data.draw(st.booleans()):
        poll.max_wait.CopyFrom(Duration(nanos=data.draw(st.integers(0, 500_000_000))))
    return function_pb2.RunResponse(status=stat.STATUS_OK, poll=poll)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), roots=st.integers(1, 4), seed=st.integers(0, 2**32))
def test_random_interleavings_keep_the_invariants(data: st.DataObject, roots: int, seed: int) -> None:
    scheduler = Scheduler(
        retry_policy=RetryPolicy(base_delay=0.05, max_delay=0.2), default_expiration=5.0, rng=random.Random(seed)
    )
    now = T0
    calls = [call_pb2.Call(function="root", correlation_id=i) for i in range(roots)]
    root_ids, actions = scheduler.submit(calls, now)
    pending: list[RunAttempt] = []
    depth: dict[str, int] = dict.fromkeys(root_ids, 0)
    ended: dict[str, int] = {}
    delivered: dict[str, set[str]] = {}
    resent: dict[int, bytes] = {}

    def absorb(new: list[object]) -> None:
        for action in new:
            if isinstance(action, RunAttempt):
                request = action.request
                assert request.dispatch_id == action.dispatch_id
                assert request.root_dispatch_id in depth or request.root_dispatch_id == action.dispatch_id
                if request.parent_dispatch_id:
                    depth.setdefault(action.dispatch_id, depth[request.parent_dispatch_id] + 1)
                if request.WhichOneof("directive") == "poll_result" and id(action.body) not in resent:
                    resent[id(action.body)] = action.body  # kept alive: a retry sends the very same bytes again
                    seen = delivered.setdefault(action.dispatch_id, set())
                    for result in request.poll_result.results:
                        assert result.dispatch_id not in seen, "a child result was delivered twice"
                        seen.add(result.dispatch_id)
                pending.append(action)
            elif isinstance(action, CallFinished):
                ended[action.dispatch_id] = ended.get(action.dispatch_id, 0) + 1
                assert ended[action.dispatch_id] == 1, "a call ended twice"
                assert (action.breakdown is None) == (not action.root)
                if action.breakdown is not None:
                    parts = action.breakdown[:4]
                    assert min(parts) >= 0
                    assert abs(sum(parts) - (action.finished_at - action.accepted_at)) < 1e-6, "the phases add up"
        counters = scheduler.counters
        assert counters.accepted == counters.completed + sum(counters.failed.values()) + counters.expired + (
            counters.in_flight
        )
        assert counters.in_flight >= 0

    absorb(list(actions))
    for _ in range(data.draw(st.integers(0, 60))):
        step = data.draw(st.sampled_from(["respond", "respond", "fail", "time", "stale", "sent"]))
        if step == "time" or not pending:
            now += data.draw(st.floats(0.0, 1.0))
            absorb(list(scheduler.advance(now)))
            continue
        attempt = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
        if step == "respond":
            absorb(
                list(
                    scheduler.on_response(
                        attempt.dispatch_id, attempt.attempt, response_for(data, depth.get(attempt.dispatch_id, 0)), now
                    )
                )
            )
        elif step == "fail":
            code = data.draw(st.sampled_from(STATUSES[1:]))
            absorb(list(scheduler.on_failure(attempt.dispatch_id, attempt.attempt, code, "fault", now)))
        elif step == "sent":  # it left after waiting for a stream for a while
            waited = data.draw(st.floats(0.0, 0.5))
            now += waited
            scheduler.sent(attempt.dispatch_id, attempt.attempt, waited)
            pending.append(attempt)
        else:
            assert scheduler.on_response(attempt.dispatch_id, attempt.attempt + 7, response_for(data, 9), now) == []
            pending.append(attempt)
    now += 10.0  # past every deadline
    absorb(list(scheduler.advance(now)))
    assert scheduler.live_calls == 0 and scheduler.next_deadline() is None
    assert all(ended.get(dispatch_id) == 1 for dispatch_id in root_ids)
    assert scheduler.counters.in_flight == 0
