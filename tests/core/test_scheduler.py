"""The pure scheduler: events in, actions out, no sockets and no clock."""

from __future__ import annotations

import random

import pytest
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.wrappers_pb2 import StringValue

from loadgen.core.scheduler import (
    Action,
    CallFinished,
    Outcome,
    PollRefused,
    RetryPolicy,
    RetryScheduled,
    RunAttempt,
    Scheduler,
)
from loadgen.pb import call_pb2, exit_pb2, function_pb2, poll_pb2
from loadgen.pb import status_pb2 as st

T0 = 1_700_000_000.0


def text(value: str) -> Any:
    packed = Any()
    packed.Pack(StringValue(value=value))
    return packed


def call(function: str = "f", correlation_id: int = 0, expiration: float | None = None) -> call_pb2.Call:
    spec = call_pb2.Call(function=function, input=text(function), correlation_id=correlation_id)
    if expiration is not None:
        spec.expiration.FromNanoseconds(int(expiration * 1e9))
    return spec


def exit_ok(value: str = "done", code: int = st.STATUS_OK) -> function_pb2.RunResponse:
    return function_pb2.RunResponse(status=code, exit=exit_pb2.Exit(result=call_pb2.CallResult(output=text(value))))


def status_only(code: int) -> function_pb2.RunResponse:
    return function_pb2.RunResponse(status=code)


def poll(*children: call_pb2.Call, state: bytes = b"S", **limits: object) -> function_pb2.RunResponse:
    p = poll_pb2.Poll(coroutine_state=state, calls=children)
    for key, value in limits.items():
        if key == "max_wait":
            p.max_wait.CopyFrom(Duration(nanos=int(float(value) * 1e9)))  # type: ignore[arg-type]
        else:
            setattr(p, key, value)
    return function_pb2.RunResponse(status=st.STATUS_OK, poll=p)


def attempts(actions: list[Action]) -> list[RunAttempt]:
    return [a for a in actions if isinstance(a, RunAttempt)]


def finished(actions: list[Action]) -> list[CallFinished]:
    return [a for a in actions if isinstance(a, CallFinished)]


def only_attempt(actions: list[Action]) -> RunAttempt:
    (attempt,) = attempts(actions)
    return attempt


@pytest.fixture
def scheduler() -> Scheduler:
    return Scheduler(rng=random.Random(7))


def test_ids_and_times(scheduler: Scheduler) -> None:
    ids, actions = scheduler.submit([call("a"), call("b", expiration=5)], T0, default_endpoint="http://e")
    assert ids == ["0" * 31 + "1", "0" * 31 + "2"]
    first, second = attempts(actions)
    assert first.endpoint == "http://e"
    request = first.request
    assert (request.dispatch_id, request.root_dispatch_id, request.parent_dispatch_id) == (ids[0], ids[0], "")
    assert request.function == "a" and request.input == text("a")
    assert request.creation_time.ToNanoseconds() == int(T0 * 1e9)
    assert request.expiration_time.ToNanoseconds() == int((T0 + 60) * 1e9)
    assert second.request.expiration_time.ToNanoseconds() == int((T0 + 5) * 1e9)


def test_request_bytes_are_the_protobuf_encoding_of_the_request(scheduler: Scheduler) -> None:
    now = T0 + 0.123_456_7
    (root,), actions = scheduler.submit([call("parent", expiration=2.5)], now)
    sent = only_attempt(actions)
    expected = function_pb2.RunRequest(function="parent", input=text("parent"), dispatch_id=root, root_dispatch_id=root)
    expected.creation_time.FromNanoseconds(int(now * 1e9))
    expected.expiration_time.FromNanoseconds(int((now + 2.5) * 1e9))
    assert sent.body == expected.SerializeToString()
    (child,) = attempts(scheduler.on_response(root, sent.attempt, poll(call_pb2.Call(function="c")), now))
    expected = function_pb2.RunRequest(
        function="c", dispatch_id=child.dispatch_id, parent_dispatch_id=root, root_dispatch_id=root
    )
    expected.input.SetInParent()
    expected.creation_time.FromNanoseconds(int(now * 1e9))
    expected.expiration_time.FromNanoseconds(int((now + 2.5) * 1e9))
    assert child.body == expected.SerializeToString()


def test_an_expiration_past_what_a_timestamp_holds_is_refused() -> None:
    spec = call_pb2.Call(function="f")
    spec.expiration.FromSeconds(315_576_000_000)  # the largest Duration: ~10,000 years, past year 9999
    with pytest.raises(ValueError, match="Timestamp is not valid"):
        Scheduler().submit([spec], T0)


def test_id_prefix_names_the_shard() -> None:
    ids, _ = Scheduler(id_prefix="03").submit([call()], T0)
    assert ids == ["03" + "0" * 29 + "1"]


def test_exit_completes_root(scheduler: Scheduler) -> None:
    (dispatch_id,), actions = scheduler.submit([call(correlation_id=9)], T0)
    attempt = only_attempt(actions)
    (done,) = finished(scheduler.on_response(dispatch_id, attempt.attempt, exit_ok("r"), T0 + 1))
    assert done.root and done.outcome is Outcome.COMPLETED and done.status == st.STATUS_OK
    assert done.result.output == text("r")
    assert done.result.dispatch_id == dispatch_id and done.result.correlation_id == 9
    assert scheduler.counters.completed == 1 and scheduler.counters.in_flight == 0
    assert scheduler.live_calls == 0


def test_tail_call_is_followed_even_with_retryable_status(scheduler: Scheduler) -> None:
    (dispatch_id,), actions = scheduler.submit([call("start")], T0)
    attempt = only_attempt(actions)
    reset = function_pb2.RunResponse(
        status=st.STATUS_TEMPORARY_ERROR, exit=exit_pb2.Exit(tail_call=call_pb2.Call(function="next", input=text("x")))
    )
    follow = only_attempt(scheduler.on_response(dispatch_id, attempt.attempt, reset, T0))
    assert follow.request.function == "next" and follow.request.input == text("x")
    assert follow.request.dispatch_id == dispatch_id == follow.request.root_dispatch_id
    (done,) = finished(scheduler.on_response(dispatch_id, follow.attempt, exit_ok(), T0))
    assert done.outcome is Outcome.COMPLETED and done.attempts == 2


def test_retry_backoff_grows_with_jitter_then_succeeds() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=10, factor=2)
    scheduler = Scheduler(retry_policy=policy, rng=random.Random(1))
    (dispatch_id,), actions = scheduler.submit([call()], T0)
    attempt = only_attempt(actions)
    now = T0
    for number in range(1, 5):
        actions = scheduler.on_response(dispatch_id, attempt.attempt, status_only(st.STATUS_TEMPORARY_ERROR), now)
        (retry,) = actions
        assert isinstance(retry, RetryScheduled) and retry.status == st.STATUS_TEMPORARY_ERROR
        ceiling = 0.1 * 2 ** (number - 1)
        assert ceiling / 2 <= retry.delay <= ceiling
        assert scheduler.next_deadline() == pytest.approx(now + retry.delay)
        assert scheduler.advance(now + retry.delay / 2) == []
        now += retry.delay
        attempt = only_attempt(scheduler.advance(now))
        assert attempt.attempt == number + 1
    (done,) = finished(scheduler.on_response(dispatch_id, attempt.attempt, exit_ok(), now))
    assert done.attempts == 5
    assert scheduler.counters.retries == {"TEMPORARY_ERROR": 4}


def test_retries_are_bounded_by_expiration() -> None:
    scheduler = Scheduler(retry_policy=RetryPolicy(base_delay=1, max_delay=1), rng=random.Random(0))
    (dispatch_id,), actions = scheduler.submit([call(expiration=2.5)], T0)
    attempt, now, outcome = only_attempt(actions), T0, None
    for _ in range(10):
        actions = scheduler.on_response(dispatch_id, attempt.attempt, status_only(st.STATUS_THROTTLED), now)
        done = finished(actions)
        if done:
            outcome = done[0]
            break
        now = scheduler.next_deadline() or now
        attempt = only_attempt(scheduler.advance(now))
    assert outcome is not None and outcome.outcome is Outcome.EXPIRED and outcome.status == st.STATUS_TIMEOUT
    assert "THROTTLED" in outcome.result.error.message
    assert outcome.finished_at < T0 + 2.5
    assert scheduler.counters.expired == 1


def test_max_attempts_fails_with_last_status() -> None:
    scheduler = Scheduler(retry_policy=RetryPolicy(base_delay=0, max_attempts=2))
    (dispatch_id,), actions = scheduler.submit([call()], T0)
    attempt = only_attempt(actions)
    attempt = only_attempt(scheduler.on_failure(dispatch_id, attempt.attempt, st.STATUS_TCP_ERROR, "reset", T0))
    (done,) = finished(scheduler.on_failure(dispatch_id, attempt.attempt, st.STATUS_TCP_ERROR, "reset", T0))
    assert done.outcome is Outcome.FAILED and done.status == st.STATUS_TCP_ERROR
    assert scheduler.counters.failed == {"TCP_ERROR": 1}


def test_non_retryable_status_fails_once(scheduler: Scheduler) -> None:
    (dispatch_id,), actions = scheduler.submit([call()], T0)
    attempt = only_attempt(actions)
    actions = scheduler.on_failure(dispatch_id, attempt.attempt, st.STATUS_PERMISSION_DENIED, "HTTP 403: nope", T0)
    (done,) = actions
    assert isinstance(done, CallFinished) and done.outcome is Outcome.FAILED
    assert (done.result.error.type, done.result.error.message) == ("PERMISSION_DENIED", "HTTP 403: nope")


def test_endpoint_error_is_kept_opaque(scheduler: Scheduler) -> None:
    (dispatch_id,), actions = scheduler.submit([call()], T0)
    attempt = only_attempt(actions)
    response = function_pb2.RunResponse(status=st.STATUS_PERMANENT_ERROR)
    response.exit.result.error.type = "ValueError"
    response.exit.result.error.value = b"\x80\x04not-importable-pickle"
    (done,) = finished(scheduler.on_response(dispatch_id, attempt.attempt, response, T0))
    assert done.result.error.type == "ValueError"
    assert done.result.error.value == b"\x80\x04not-importable-pickle"


def test_poll_fans_out_and_resumes_with_all_results(scheduler: Scheduler) -> None:
    (root,), actions = scheduler.submit([call("parent")], T0)
    attempt = only_attempt(actions)
    children = attempts(scheduler.on_response(root, attempt.attempt, poll(call("c", 1), call("c", 2)), T0))
    assert [c.request.parent_dispatch_id for c in children] == [root, root]
    assert [c.request.root_dispatch_id for c in children] == [root, root]
    assert len({c.dispatch_id for c in children} | {root}) == 3
    assert attempts(scheduler.on_response(children[1].dispatch_id, 1, exit_ok("two"), T0)) == []
    actions = scheduler.on_response(children[0].dispatch_id, 1, exit_ok("one"), T0)
    resume = only_attempt(actions)
    assert resume.dispatch_id == root and resume.request.function == "parent"
    results = resume.request.poll_result.results
    assert [r.correlation_id for r in results] == [2, 1]
    assert [r.dispatch_id for r in results] == [children[1].dispatch_id, children[0].dispatch_id]
    assert resume.request.poll_result.coroutine_state == b"S"
    (done,) = finished(scheduler.on_response(root, resume.attempt, exit_ok(), T0))
    assert done.root and scheduler.counters.completed == 1 and scheduler.live_calls == 0


def test_typed_coroutine_state_is_carried(scheduler: Scheduler) -> None:
    (root,), actions = scheduler.submit([call()], T0)
    response = poll(call("c"))
    response.poll.typed_coroutine_state.CopyFrom(text("typed"))
    (child,) = attempts(scheduler.on_response(root, only_attempt(actions).attempt, response, T0))
    resume = only_attempt(scheduler.on_response(child.dispatch_id, 1, exit_ok(), T0))
    assert resume.request.poll_result.WhichOneof("state") == "typed_coroutine_state"
    assert resume.request.poll_result.typed_coroutine_state == text("typed")


def test_min_and_max_results(scheduler: Scheduler) -> None:
    (root,), actions = scheduler.submit([call()], T0)
    fanout = poll(call("c", 1), call("c", 2), call("c", 3), min_results=2, max_results=1)
    kids = attempts(scheduler.on_response(root, only_attempt(actions).attempt, fanout, T0))
    assert attempts(scheduler.on_response(kids[0].dispatch_id, 1, exit_ok(), T0)) == []
    resume = only_attempt(scheduler.on_response(kids[1].dispatch_id, 1, exit_ok(), T0))
    assert [r.correlation_id for r in resume.request.poll_result.results] == [1]
    scheduler.on_response(kids[2].dispatch_id, 1, exit_ok(), T0)  # arrives while the parent runs
    again = poll(min_results=2, max_results=5)
    resume = only_attempt(scheduler.on_response(root, resume.attempt, again, T0))
    assert [r.correlation_id for r in resume.request.poll_result.results] == [2, 3]


def test_max_wait_resumes_with_what_is_ready(scheduler: Scheduler) -> None:
    (root,), actions = scheduler.submit([call()], T0)
    slow = poll(call("c", 1), call("c", 2), max_wait=0.5)
    kids = attempts(scheduler.on_response(root, only_attempt(actions).attempt, slow, T0))
    assert attempts(scheduler.on_response(kids[0].dispatch_id, 1, exit_ok(), T0 + 0.1)) == []
    assert scheduler.advance(T0 + 0.4) == []
    resume = only_attempt(scheduler.advance(T0 + 0.5))
    assert [r.correlation_id for r in resume.request.poll_result.results] == [1]


def test_child_failure_is_delivered_to_parent(scheduler: Scheduler) -> None:
    (root,), actions = scheduler.submit([call()], T0)
    (kid,) = attempts(scheduler.on_response(root, only_attempt(actions).attempt, poll(call("c", 5)), T0))
    resume = only_attempt(scheduler.on_failure(kid.dispatch_id, 1, st.STATUS_NOT_FOUND, "HTTP 404", T0))
    (result,) = resume.request.poll_result.results
    assert result.correlation_id == 5 and result.error.type == "NOT_FOUND"


def test_expiry_ignores_late_responses_and_children_inherit_deadline(scheduler: Scheduler) -> None:
    (root,), actions = scheduler.submit([call(expiration=1)], T0)
    (kid,) = attempts(scheduler.on_response(root, only_attempt(actions).attempt, poll(call("c", expiration=30)), T0))
    assert kid.request.expiration_time.ToNanoseconds() == int((T0 + 1) * 1e9)
    ended = finished(scheduler.advance(T0 + 1))
    assert {e.dispatch_id for e in ended} == {root, kid.dispatch_id}
    assert all(e.outcome is Outcome.EXPIRED for e in ended)
    assert scheduler.on_response(kid.dispatch_id, 1, exit_ok(), T0 + 2) == []
    assert scheduler.counters.expired == 1 and scheduler.counters.in_flight == 0
    assert scheduler.next_deadline() is None


def test_unknown_and_stale_attempts_are_ignored(scheduler: Scheduler) -> None:
    (dispatch_id,), actions = scheduler.submit([call()], T0)
    attempt = only_attempt(actions)
    assert scheduler.on_response("nope", 1, exit_ok(), T0) == []
    assert scheduler.on_response(dispatch_id, attempt.attempt + 1, exit_ok(), T0) == []
    assert finished(scheduler.on_response(dispatch_id, attempt.attempt, exit_ok(), T0))
    assert scheduler.on_response(dispatch_id, attempt.attempt, exit_ok(), T0) == []


def test_cancel_all_accounts_for_everything(scheduler: Scheduler) -> None:
    scheduler.submit([call(), call()], T0)
    assert scheduler.counters.in_flight == 2
    ended = finished(scheduler.cancel_all(T0, "the run ended before the call finished"))
    assert len(ended) == 2 and scheduler.counters.in_flight == 0
    assert scheduler.counters.cancelled == 2 and scheduler.counters.expired == 0
    assert {(e.outcome, e.status) for e in ended} == {(Outcome.CANCELLED, st.STATUS_TIMEOUT)}
    error = ended[0].result.error
    assert (error.type, error.message) == ("CANCELLED", "the run ended before the call finished")


def test_a_poll_asking_for_more_children_than_allowed_starts_none_and_resumes_with_an_error() -> None:
    scheduler = Scheduler(rng=random.Random(7), max_poll_calls=2)
    (root,), actions = scheduler.submit([call("parent")], T0)
    attempt = only_attempt(actions)
    actions = scheduler.on_response(root, attempt.attempt, poll(call("c", 1), call("c", 2), call("c", 3)), T0)
    (refused,) = [a for a in actions if isinstance(a, PollRefused)]
    resume = only_attempt(actions)  # no child started: the caller is resumed at once
    assert resume.dispatch_id == root and scheduler.live_calls == 1
    error = resume.request.poll_result.error
    assert (error.type, error.message) == ("TooManyCalls", "asked for 3 calls; at most 2 per poll (max_poll_calls)")
    assert refused.message == error.message and resume.request.poll_result.coroutine_state == b"S"
    actions = scheduler.on_response(root, resume.attempt, poll(call("c", 1), call("c", 2)), T0)
    assert len(attempts(actions)) == 2  # at the limit: allowed


def test_a_root_result_too_large_to_deliver_fails_with_a_small_error_saying_its_size() -> None:
    scheduler = Scheduler(rng=random.Random(7), max_result_bytes=1000)
    (small, large), actions = scheduler.submit([call("f", 1), call("f", 2)], T0)
    first, second = attempts(actions)
    (done,) = finished(scheduler.on_response(small, first.attempt, exit_ok("x" * 900), T0))
    assert done.outcome is Outcome.COMPLETED and done.result_bytes == done.result.ByteSize() > 900
    (done,) = finished(scheduler.on_response(large, second.attempt, exit_ok("x" * 5000), T0))
    assert (done.outcome, done.status) == (Outcome.FAILED, st.STATUS_INVALID_RESPONSE)
    assert done.result.error.type == "ResultTooLarge" and not done.result.HasField("output")
    message = done.result.error.message
    assert "completed with a result of 5,0" in message and "above the 1,000 bytes" in message
    assert (done.result.correlation_id, done.result.dispatch_id) == (2, large)
    assert done.result_bytes == done.result.ByteSize() < 1000
    assert scheduler.counters.completed == 1 and scheduler.counters.failed == {"INVALID_RESPONSE": 1}


def test_issued_ids_are_told_from_ids_never_given() -> None:
    scheduler = Scheduler(id_prefix="00000001")
    (given,), _ = scheduler.submit([call()], T0)
    assert scheduler.issued(given)
    assert not scheduler.issued("00000001" + "f" * 24) and not scheduler.issued("00000002" + given[8:])
    assert not scheduler.issued("short") and not scheduler.issued("00000001" + "z" * 24)


def test_children_and_coroutine_states_are_counted_as_held_until_they_end(scheduler: Scheduler) -> None:
    from loadgen.core.admission import call_bytes

    (root,), actions = scheduler.submit([call("parent")], T0)
    assert scheduler.held_bytes == 0  # a root's own input is the driver's to count
    state = b"x" * 10_000
    kids = [call("c", n) for n in range(3)]
    children = attempts(scheduler.on_response(root, only_attempt(actions).attempt, poll(*kids, state=state), T0))
    held = 10_000 + sum(call_bytes(kid.input.ByteSize()) for kid in kids)
    assert scheduler.held_bytes == held
    for child in children[:2]:
        scheduler.on_response(child.dispatch_id, child.attempt, exit_ok(), T0)
    assert scheduler.held_bytes == 10_000 + call_bytes(kids[2].input.ByteSize())
    resume = only_attempt(scheduler.on_response(children[2].dispatch_id, children[2].attempt, exit_ok(), T0))
    assert scheduler.held_bytes == 10_000  # the state, until the call polls again or ends
    again = only_attempt(scheduler.on_response(root, resume.attempt, poll(call("d", 9), state=b"y" * 10), T0))
    assert scheduler.held_bytes == 10 + call_bytes(call("d", 9).input.ByteSize())
    scheduler.on_response(again.dispatch_id, again.attempt, exit_ok(), T0)
    (done,) = finished(scheduler.on_response(root, scheduler_resume(scheduler, root), exit_ok(), T0))
    assert done.root and scheduler.held_bytes == 0 and scheduler.live_calls == 0


def scheduler_resume(scheduler: Scheduler, dispatch_id: str) -> int:
    """The attempt token of *dispatch_id*'s attempt in flight."""
    return scheduler._calls[dispatch_id].attempt
