"""The reference functions and the value encoding, without sockets."""

from __future__ import annotations

import orjson
import pytest
from google.protobuf import any_pb2, struct_pb2, wrappers_pb2

from loadgen.endpoint.catalogue import MAX_PAYLOAD_BYTES
from loadgen.endpoint.functions import ReferenceFunctions, RequestRejected
from loadgen.pb import call_pb2, error_pb2, function_pb2, poll_pb2, status_pb2
from loadgen.protocol import values

OK = status_pb2.STATUS_OK
INVALID = status_pb2.STATUS_INVALID_ARGUMENT
INCOMPATIBLE = status_pb2.STATUS_INCOMPATIBLE_STATE


def req(function: str, params: object = None, dispatch_id: str = "d1") -> function_pb2.RunRequest:
    request = function_pb2.RunRequest(function=function, dispatch_id=dispatch_id)
    request.input.CopyFrom(values.encode({} if params is None else params))  # type: ignore[arg-type]
    return request


def resume(
    function: str, state: function_pb2.RunResponse, results: list[call_pb2.CallResult]
) -> function_pb2.RunRequest:
    poll = state.poll
    request = function_pb2.RunRequest(function=function, dispatch_id="d1")
    result = request.poll_result
    if poll.HasField("typed_coroutine_state"):
        result.typed_coroutine_state.CopyFrom(poll.typed_coroutine_state)
    else:
        result.coroutine_state = poll.coroutine_state
    result.results.extend(results)
    return request


def output(response: function_pb2.RunResponse) -> object:
    assert response.status == OK, response
    assert response.WhichOneof("directive") == "exit"
    return values.decode(response.exit.result.output)


def error_of(response: function_pb2.RunResponse) -> error_pb2.Error:
    assert response.WhichOneof("directive") == "exit"
    assert response.exit.result.HasField("error")
    return response.exit.result.error


@pytest.fixture
def fns() -> ReferenceFunctions:
    return ReferenceFunctions(seed=1)


# -- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [{}, {"a": 1.5, "b": [True, None, "x", {"c": []}], "d": {}}, [], [1.0, "two"], "s", 2.5, True, False, None],
)
def test_values_round_trip(value: values.Json) -> None:
    assert values.decode(values.encode(value)) == value


def test_values_encoding_choice_and_numbers() -> None:
    assert values.encode({"n": 3}).type_url == "type.googleapis.com/google.protobuf.Struct"
    assert values.encode([1]).type_url == "type.googleapis.com/google.protobuf.Value"
    assert values.encode(b"raw").type_url == "type.googleapis.com/google.protobuf.BytesValue"
    decoded = values.decode(values.encode({"n": 3, "t": (1, 2)}))
    assert decoded == {"n": 3.0, "t": [1.0, 2.0]}
    assert isinstance(decoded, dict) and isinstance(decoded["n"], float)
    assert values.decode(values.encode(b"raw")) == b"raw"


def test_values_decode_wrappers_and_empty() -> None:
    def pack(message: object) -> any_pb2.Any:
        holder = any_pb2.Any()
        holder.Pack(message)  # type: ignore[arg-type]
        return holder

    assert values.decode(pack(wrappers_pb2.StringValue(value="hé"))) == "hé"
    assert values.decode(pack(wrappers_pb2.Int64Value(value=2**60))) == 2**60
    assert values.decode(pack(wrappers_pb2.BytesValue(value=b"\x00"))) == b"\x00"
    assert values.decode(pack(wrappers_pb2.BoolValue(value=True))) is True
    assert values.decode(pack(wrappers_pb2.DoubleValue(value=0.5))) == 0.5
    assert values.decode(pack(struct_pb2.ListValue(values=[struct_pb2.Value(string_value="a")]))) == ["a"]
    assert values.decode(any_pb2.Any()) is None


def test_values_decode_rejects_unknown_and_garbage() -> None:
    with pytest.raises(ValueError, match=r"unsupported Any type URL 'type\.googleapis\.com/x\.Y'"):
        values.decode(any_pb2.Any(type_url="type.googleapis.com/x.Y", value=b"1"))
    with pytest.raises(ValueError, match=r"malformed google\.protobuf\.Struct"):
        values.decode(any_pb2.Any(type_url=values.STRUCT_URL, value=b"\xff\xff\xff"))
    with pytest.raises(ValueError, match="BytesValue"):
        values.decode_json(values.encode(b"x"))


def test_values_encode_rejects_non_json() -> None:
    with pytest.raises(TypeError):
        values.encode({"a": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="keys must be str"):
        values.encode({1: "a"})  # type: ignore[dict-item]


# -- request-level rejections and directives -------------------------------------------------------


def test_function_required_and_unknown(fns: ReferenceFunctions) -> None:
    with pytest.raises(RequestRejected) as info:
        fns.run(function_pb2.RunRequest())
    assert (info.value.http_status, info.value.code, info.value.message) == (
        400,
        "invalid_argument",
        "function is required",
    )
    with pytest.raises(RequestRejected) as info:
        fns.run(req("nope"))
    assert (info.value.http_status, info.value.code) == (404, "not_found")
    assert info.value.message == "function 'nope' does not exist"


def test_no_directive_is_invalid_argument(fns: ReferenceFunctions) -> None:
    response = fns.run(function_pb2.RunRequest(function="echo"))
    assert response.status == INVALID
    assert "no directive" in error_of(response).message


@pytest.mark.parametrize(
    "bad_input",
    [
        any_pb2.Any(type_url=values.STRUCT_URL, value=b"\xff\xff"),
        any_pb2.Any(type_url="type.googleapis.com/unknown.Type", value=b""),
        values.encode("a string, not a Struct"),
    ],
)
def test_bad_input_is_invalid_argument(fns: ReferenceFunctions, bad_input: any_pb2.Any) -> None:
    response = fns.run(function_pb2.RunRequest(function="sleep", input=bad_input))
    assert response.status == INVALID
    assert error_of(response).type == "ValueError"


def test_empty_any_and_null_mean_defaults(fns: ReferenceFunctions) -> None:
    outcome = fns.execute(function_pb2.RunRequest(function="sleep", input=any_pb2.Any()))
    assert outcome.delay == pytest.approx(0.010)
    outcome = fns.execute(function_pb2.RunRequest(function="sleep", input=values.encode(None)))
    assert outcome.delay == pytest.approx(0.010)


def test_resuming_a_function_that_never_polls(fns: ReferenceFunctions) -> None:
    request = function_pb2.RunRequest(function="echo", poll_result=poll_pb2.PollResult(coroutine_state=b"{}"))
    assert fns.run(request).status == INCOMPATIBLE


# -- echo, sleep, payload, chain -----------------------------------------------------------------


def test_echo_returns_input_unchanged(fns: ReferenceFunctions) -> None:
    for given in (values.encode({"a": [1, "b"]}), values.encode(b"\x00\x01"), any_pb2.Any(type_url="x/y", value=b"z")):
        response = fns.run(function_pb2.RunRequest(function="echo", input=given))
        assert response.status == OK
        assert response.exit.result.output == given


def test_sleep_delay_and_echo(fns: ReferenceFunctions) -> None:
    request = req("sleep", {"ms": 250})
    outcome = fns.execute(request)
    assert outcome.delay == pytest.approx(0.25)
    assert outcome.response.exit.result.output == request.input
    assert fns.execute(req("sleep", {"ms": 0})).delay == 0.0


@pytest.mark.parametrize("ms", [-1, 1.5, "10", True, 300_001])
def test_sleep_rejects_bad_ms(fns: ReferenceFunctions, ms: object) -> None:
    outcome = fns.execute(req("sleep", {"ms": ms}))
    assert outcome.response.status == INVALID
    assert outcome.delay == 0.0


def test_payload(fns: ReferenceFunctions) -> None:
    response = fns.run(req("payload", {"bytes": 1000}))
    assert output(response) == bytes(1000)
    assert output(fns.run(req("payload", {"bytes": 1000}))) == bytes(1000)  # cached path
    assert output(fns.run(req("payload"))) == bytes(1024)
    assert output(fns.run(req("payload", {"bytes": 0}))) == b""
    assert fns.run(req("payload", {"bytes": MAX_PAYLOAD_BYTES + 1})).status == INVALID


def test_chain_tail_calls_down_to_zero(fns: ReferenceFunctions) -> None:
    request = req("chain", {"depth": 3})
    hops = 0
    while True:
        response = fns.run(request)
        assert response.status == OK
        if not response.exit.HasField("tail_call"):
            break
        tail = response.exit.tail_call
        assert tail.function == "chain"
        hops += 1
        assert values.decode(tail.input) == {"depth": 3 - hops}
        request = function_pb2.RunRequest(function=tail.function, input=tail.input, dispatch_id="d1")
    assert hops == 3
    assert output(response) == {"depth": 0}
    assert fns.run(req("chain", {"depth": -1})).status == INVALID


# -- fail ------------------------------------------------------------------------------------------


def test_fail_times_per_dispatch_id(fns: ReferenceFunctions) -> None:
    params = {"status": "TEMPORARY_ERROR", "times": 2}
    for attempt in (1, 2):
        response = fns.run(req("fail", params, "a"))
        assert response.status == status_pb2.STATUS_TEMPORARY_ERROR
        error = error_of(response)
        assert error.type == "InjectedFailure"
        assert f"attempt {attempt}" in error.message
    assert "attempt 1 " in error_of(fns.run(req("fail", params, "b"))).message  # each id has its own counter
    assert output(fns.run(req("fail", params, "a"))) == {"attempts": 3.0}
    assert output(fns.run(req("fail", params, "a"))) == {"attempts": 4.0}


def test_fail_defaults_and_status_forms(fns: ReferenceFunctions) -> None:
    assert fns.run(req("fail", None, "x")).status == status_pb2.STATUS_TEMPORARY_ERROR
    assert output(fns.run(req("fail", None, "x"))) == {"attempts": 2.0}
    assert fns.run(req("fail", {"status": "status_throttled"}, "y")).status == status_pb2.STATUS_THROTTLED
    assert fns.run(req("fail", {"status": 7}, "z")).status == status_pb2.STATUS_PERMANENT_ERROR
    assert output(fns.run(req("fail", {"times": 0}, "w"))) == {"attempts": 1.0}


@pytest.mark.parametrize("status", ["OK", "UNSPECIFIED", "NOPE", 99, 1.5, None, [1]])
def test_fail_rejects_bad_status(fns: ReferenceFunctions, status: object) -> None:
    params = {"status": status} if status is not None else {"status": {}}
    assert fns.run(req("fail", params)).status == INVALID


def test_fail_rate_is_seeded(fns: ReferenceFunctions) -> None:
    def pattern(functions: ReferenceFunctions) -> list[int]:
        return [functions.run(req("fail", {"rate": 0.3}, f"id{i}")).status for i in range(500)]

    first, second = pattern(ReferenceFunctions(seed=7)), pattern(ReferenceFunctions(seed=7))
    assert first == second
    failures = sum(s != OK for s in first)
    assert 100 < failures < 200
    assert all(s == OK for s in [fns.run(req("fail", {"rate": 0}, "r")).status for _ in range(20)])
    assert all(s != OK for s in [fns.run(req("fail", {"rate": 1}, "r")).status for _ in range(20)])
    assert fns.run(req("fail", {"rate": 1.5})).status == INVALID


def test_fail_attempt_counters_are_bounded() -> None:
    fns = ReferenceFunctions(max_tracked_dispatches=3)
    for i in range(5):
        assert fns.run(req("fail", {"times": 1}, f"id{i}")).status != OK
    assert fns.tracked_dispatches() == 3
    # id0 was evicted: it starts over (fails again); id4 is remembered (succeeds).
    assert fns.run(req("fail", {"times": 1}, "id0")).status != OK
    assert fns.run(req("fail", {"times": 1}, "id4")).status == OK


# -- fanout ----------------------------------------------------------------------------------------


def result(cid: int, value: object = None, error: bool = False) -> call_pb2.CallResult:
    item = call_pb2.CallResult(correlation_id=cid)
    if error:
        item.error.CopyFrom(error_pb2.Error(type="Boom", message="child failed"))
    else:
        item.output.CopyFrom(values.encode(value))  # type: ignore[arg-type]
    return item


def test_fanout_first_run_polls_children(fns: ReferenceFunctions) -> None:
    response = fns.run(req("fanout", {"n": 3, "function": "echo", "input": {"k": "v"}}))
    assert response.status == OK
    poll = response.poll
    assert [c.correlation_id for c in poll.calls] == [0, 1, 2]
    assert {c.function for c in poll.calls} == {"echo"}
    assert {c.endpoint for c in poll.calls} == {""}
    assert all(values.decode(c.input) == {"k": "v"} for c in poll.calls)
    assert (poll.min_results, poll.max_results) == (3, 3)
    assert orjson.loads(poll.coroutine_state)["n"] == 3
    assert not poll.HasField("typed_coroutine_state")


def test_fanout_collects_all_results_in_one_resume(fns: ReferenceFunctions) -> None:
    first = fns.run(req("fanout", {"n": 3}))
    done = fns.run(resume("fanout", first, [result(2, "c"), result(0, "a"), result(1, error=True)]))
    assert output(done) == {"results": ["a", None, "c"], "errors": 1.0}


def test_fanout_partial_resumes_with_min_results(fns: ReferenceFunctions) -> None:
    first = fns.run(req("fanout", {"n": 4, "min_results": 1, "typed_state": True}))
    assert (first.poll.min_results, first.poll.max_results) == (1, 4)
    assert first.poll.HasField("typed_coroutine_state") and not first.poll.coroutine_state
    second = fns.run(resume("fanout", first, [result(3, 3), result(3, 99)]))  # duplicate ignored
    assert second.WhichOneof("directive") == "poll"
    assert len(second.poll.calls) == 0
    assert (second.poll.min_results, second.poll.max_results) == (1, 3)
    assert second.poll.HasField("typed_coroutine_state")
    third = fns.run(resume("fanout", second, [result(0, 0), result(1, 1)]))
    assert (third.poll.min_results, third.poll.max_results) == (1, 1)
    done = fns.run(resume("fanout", third, [result(2, 2)]))
    assert output(done) == {"results": [0.0, 1.0, 2.0, 3.0], "errors": 0.0}


def test_fanout_describes_non_json_outputs(fns: ReferenceFunctions) -> None:
    first = fns.run(req("fanout", {"n": 2, "function": "payload", "input": {"bytes": 5}}))
    odd = call_pb2.CallResult(correlation_id=1, output=any_pb2.Any(type_url="x/y.Z", value=b"abc"))
    bytes_result = call_pb2.CallResult(correlation_id=0, output=values.encode(bytes(5)))
    done = fns.run(resume("fanout", first, [bytes_result, odd]))
    assert output(done) == {"results": [{"bytes": 5.0}, {"type_url": "x/y.Z", "bytes": 3.0}], "errors": 0.0}


def test_fanout_zero_children(fns: ReferenceFunctions) -> None:
    assert output(fns.run(req("fanout", {"n": 0}))) == {"results": [], "errors": 0.0}


@pytest.mark.parametrize(
    "state",
    [b"", b"not json", b"[]", b'{"v": 2}', b'{"v":1,"n":"3","min":1,"r":{},"e":[]}', b"\x80\x04pickle"],
)
def test_fanout_undecodable_state_is_incompatible(fns: ReferenceFunctions, state: bytes) -> None:
    request = function_pb2.RunRequest(function="fanout", poll_result=poll_pb2.PollResult(coroutine_state=state))
    response = fns.run(request)
    assert response.status == INCOMPATIBLE
    assert error_of(response).type == "IncompatibleStateError"


def test_fanout_typed_state_of_wrong_type_is_incompatible(fns: ReferenceFunctions) -> None:
    request = function_pb2.RunRequest(function="fanout")
    request.poll_result.typed_coroutine_state.CopyFrom(values.encode({"v": 1}))
    assert fns.run(request).status == INCOMPATIBLE


def test_fanout_unknown_correlation_id_is_invalid(fns: ReferenceFunctions) -> None:
    first = fns.run(req("fanout", {"n": 2}))
    assert fns.run(resume("fanout", first, [result(7, "x")])).status == INVALID


def test_fanout_poll_error_ends_the_call(fns: ReferenceFunctions) -> None:
    first = fns.run(req("fanout", {"n": 2}))
    request = resume("fanout", first, [])
    request.poll_result.error.CopyFrom(error_pb2.Error(type="Throttled", message="not dispatched"))
    response = fns.run(request)
    assert response.status == status_pb2.STATUS_PERMANENT_ERROR
    assert error_of(response).message == "not dispatched"


@pytest.mark.parametrize("params", [{"n": -1}, {"n": 10_001}, {"function": "bad name"}, {"typed_state": 1}])
def test_fanout_rejects_bad_params(fns: ReferenceFunctions, params: dict[str, object]) -> None:
    assert fns.run(req("fanout", params)).status == INVALID


def test_failure_injection_applies_to_every_function() -> None:
    from loadgen.endpoint.functions import ReferenceFunctions as Functions

    functions = Functions(seed=3, inject_rate=0.3, inject_status=status_pb2.STATUS_THROTTLED)
    outcomes = [functions.run(function_pb2.RunRequest(function="echo", input=values.encode({}))) for _ in range(2000)]
    failed = [o for o in outcomes if o.status == status_pb2.STATUS_THROTTLED]
    assert 450 < len(failed) < 750
    assert all(o.exit.result.error.type == "InjectedFailure" for o in failed)
    assert all(o.status == status_pb2.STATUS_OK for o in outcomes if o not in failed)
    with pytest.raises(ValueError):
        Functions(inject_rate=1.5)
    with pytest.raises(ValueError):
        Functions(inject_rate=0.1, inject_status=status_pb2.STATUS_OK)
