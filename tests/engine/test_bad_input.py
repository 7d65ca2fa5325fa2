"""Bad input at every door of a real engine: 2 shard processes, the reference endpoint, gRPC and Connect.

Each rejection must be a clear error and must change nothing: the shards' accounting
counters (accepted, completed, failed, expired, in flight, lost, attempts) are the same
after it, and a normal call still completes. Bad key material for ``loadgen serve``,
``loadgen endpoint`` and scenario files must end the command with exit code 2 and a
message that names where the key came from and never echoes it.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine

from loadgen.engine.frontend import owner_of
from loadgen.engine.settings import EngineSetup
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, shard_pb2, shard_pb2_grpc
from loadgen.protocol import values
from loadgen.protocol.keys import private_key_base64

pytestmark = pytest.mark.system

API_KEY = "bad-input-api-key-7f3a9c"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
DISPATCH = "/dispatch.sdk.v1.DispatchService/Dispatch"
WAIT = "/dispatch.sdk.v1.DispatchService/Wait"
BEARER = f"Bearer {API_KEY}"
PROTO = {"content-type": "application/proto", "authorization": BEARER}  # Connect ingress headers
TEXT = {"content-type": "text/plain", "authorization": BEARER}


# -- the engine ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    with Supervisor(quick_engine(endpoint_url, signing_key, API_KEY, connect_port=0)) as supervisor:
        yield supervisor


@pytest.fixture(scope="module")
def channels(engine: Supervisor) -> Iterator[dict[str, grpc.Channel]]:
    """One channel per address: ``shared``, ``shard0``, ``shard1``."""
    addresses = {"shared": engine.url.removeprefix("http://")}
    addresses.update({f"shard{i}": address for i, address in enumerate(engine.shard_addresses)})
    opened = {name: grpc.insecure_channel(address) for name, address in addresses.items()}
    yield opened
    for channel in opened.values():
        channel.close()


def stub(channel: grpc.Channel) -> dispatch_pb2_grpc.DispatchServiceStub:
    return dispatch_pb2_grpc.DispatchServiceStub(channel)


@dataclass(frozen=True)
class Counters:
    accepted: int
    completed: int
    failed: int
    expired: int
    in_flight: int
    lost: int
    attempts: int


def counters(engine: Supervisor) -> Counters:
    snapshot = engine.snapshot()
    a = snapshot.accounting()
    return Counters(a.accepted, a.completed, a.failed, a.expired, a.in_flight, a.lost, snapshot.counter("attempts"))


def echo_call(params: dict[str, object] | None = None, **fields: object) -> call_pb2.Call:
    return call_pb2.Call(function="echo", input=values.encode(params or {}), **fields)  # type: ignore[arg-type]


def dispatch_ok(target: dispatch_pb2_grpc.DispatchServiceStub, calls: list[call_pb2.Call]) -> list[str]:
    return list(target.Dispatch(dispatch_pb2.DispatchRequest(calls=calls), metadata=AUTH, timeout=30).dispatch_ids)


def wait_status(
    target: dispatch_pb2_grpc.DispatchServiceStub, dispatch_id: str, timeout: float = 30
) -> tuple[call_pb2.CallResult, str]:
    result, call = target.Wait.with_call(
        dispatch_pb2.WaitRequest(dispatch_id=dispatch_id), metadata=AUTH, timeout=timeout
    )
    return result, dict(call.trailing_metadata())["loadgen-status"]


def normal_call_works(channels: dict[str, grpc.Channel]) -> None:
    target = stub(channels["shared"])
    (dispatch_id,) = dispatch_ok(target, [echo_call({"still": "works"})])
    result, status = wait_status(target, dispatch_id)
    assert status == "STATUS_OK"
    assert values.decode(result.output) == {"still": "works"}


@contextmanager
def nothing_changes(engine: Supervisor, channels: dict[str, grpc.Channel]) -> Iterator[None]:
    """The block's bad input must leave the accounting as it was; then a normal call must work."""
    before = counters(engine)
    assert before.in_flight == 0, f"calls left in flight by an earlier test: {before}"
    yield
    after = counters(engine)
    assert after == before, f"bad input changed the engine: {before} -> {after}"
    normal_call_works(channels)


def rpc_error(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


# -- malformed protobuf over gRPC -----------------------------------------------------------------------

GARBAGE = {
    "random bytes": b"\xff\xff\xff",
    "truncated field": b"\x0a\x05ab",
    "bad wire type": b"\x0b",
    "length past the end": b"\x0a\xff\xff\xff\xff\x0f",
    "invalid UTF-8 function": b"\x0a\x04\x1a\x02\xff\xfe",
    "valid message then garbage": dispatch_pb2.DispatchRequest(calls=[echo_call()]).SerializeToString() + b"\xff",
}


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE))
def test_malformed_dispatch_protobuf_is_an_error(
    engine: Supervisor, channels: dict[str, grpc.Channel], garbage: bytes
) -> None:
    raw = channels["shared"].unary_unary(
        DISPATCH, request_serializer=None, response_deserializer=dispatch_pb2.DispatchResponse.FromString
    )
    with nothing_changes(engine, channels):
        error = rpc_error(raw, garbage, metadata=AUTH, timeout=10)
    # grpc.aio reports an undecodable request as UNKNOWN; the details say what happened (protobuf 5 and
    # later also name the message type).
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    assert "Error parsing message" in (error.details() or "")


def test_message_of_unknown_fields_is_an_empty_batch(engine: Supervisor, channels: dict[str, grpc.Channel]) -> None:
    """Bytes that decode (as unknown fields only): a batch with no calls, or with an empty function."""
    raw = channels["shared"].unary_unary(
        DISPATCH, request_serializer=None, response_deserializer=dispatch_pb2.DispatchResponse.FromString
    )
    with nothing_changes(engine, channels):
        for garbage, expected in [(b"", "no calls"), (b"\x10\x01", "no calls"), (b"\x0a\x03\x0a\x01\xff", "calls[0]")]:
            error = rpc_error(raw, garbage, metadata=AUTH, timeout=10)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert expected in (error.details() or "")


def test_malformed_wait_protobuf_is_an_error(engine: Supervisor, channels: dict[str, grpc.Channel]) -> None:
    raw = channels["shard1"].unary_unary(
        WAIT, request_serializer=None, response_deserializer=call_pb2.CallResult.FromString
    )
    with nothing_changes(engine, channels):
        error = rpc_error(raw, b"\x0a\xff\xff\xff\xff\x0f", metadata=AUTH, timeout=10)
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    assert "Error parsing message" in (error.details() or "")


# -- validation of a batch: function names, endpoints, size ---------------------------------------------

BAD_FUNCTIONS = ["", "1echo", "echo-x", "echo x", "écho", "a/b", "echo;rm", "<lambda>", ".hidden", "echo\t", "\necho"]


@pytest.mark.parametrize("function", BAD_FUNCTIONS)
def test_invalid_function_name_rejects_the_whole_batch(
    engine: Supervisor, channels: dict[str, grpc.Channel], function: str
) -> None:
    calls = [echo_call(), echo_call(), call_pb2.Call(function=function, input=values.encode({}))]
    with nothing_changes(engine, channels):
        error = rpc_error(stub(channels["shared"]).Dispatch, dispatch_pb2.DispatchRequest(calls=calls), metadata=AUTH)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "calls[2].function" in (error.details() or "")
    assert "^[a-zA-Z_][a-zA-Z0-9_<>.]*$" in (error.details() or "")


def test_function_name_with_a_trailing_newline_is_rejected(channels: dict[str, grpc.Channel]) -> None:
    target = stub(channels["shared"])
    request = dispatch_pb2.DispatchRequest(calls=[call_pb2.Call(function="echo\n", input=values.encode({}))])
    try:
        ids = dispatch_ok(target, list(request.calls))
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        return
    statuses = [wait_status(target, dispatch_id)[1] for dispatch_id in ids]  # leave nothing in flight
    pytest.fail(f"'echo\\n' was accepted as {ids} and ended {statuses}")


def test_valid_function_names_are_accepted(channels: dict[str, grpc.Channel]) -> None:
    """Names the pattern allows pass validation (the reference endpoint then answers NOT_FOUND)."""
    target = stub(channels["shard0"])
    names = ["_", "a", "Z9", "module.function", "Klass.method.<locals>.inner", "x_<y>.z"]
    ids = dispatch_ok(target, [call_pb2.Call(function=name, input=values.encode({})) for name in names])
    assert len(ids) == len(names)
    for dispatch_id in ids:
        result, status = wait_status(target, dispatch_id)
        assert status == "STATUS_NOT_FOUND" and result.error.type, result


BAD_ENDPOINTS = {
    "ftp": ("ftp://127.0.0.1/", "must start with http://, https://"),
    "no scheme": ("127.0.0.1:8000", "must start with http://, https://"),
    "file": ("file:///etc/passwd", "must start with http://, https://"),
    "grpc": ("grpc://127.0.0.1:1", "must start with http://, https://"),
    "leading space": (" http://127.0.0.1:1", "must start with http://, https://"),
    "bridge": ("bridge://dispatch", "loadgen only reaches http:// and https://"),
    "lambda": ("arn:aws:lambda:us-east-1:123456789012:function:f", "loadgen only reaches http:// and https://"),
}


@pytest.mark.parametrize(("endpoint", "expected"), list(BAD_ENDPOINTS.values()), ids=list(BAD_ENDPOINTS))
def test_unreachable_endpoint_rejects_the_whole_batch(
    engine: Supervisor, channels: dict[str, grpc.Channel], endpoint: str, expected: str
) -> None:
    calls = [echo_call(), echo_call(endpoint=endpoint)]
    with nothing_changes(engine, channels):
        error = rpc_error(stub(channels["shared"]).Dispatch, dispatch_pb2.DispatchRequest(calls=calls), metadata=AUTH)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details.startswith("calls[1].endpoint") and expected in details


def test_empty_or_explicit_endpoint_means_the_served_endpoint(
    channels: dict[str, grpc.Channel], endpoint_url: str
) -> None:
    target = stub(channels["shard1"])
    ids = dispatch_ok(target, [echo_call({"n": 1}, endpoint=""), echo_call({"n": 2}, endpoint=endpoint_url)])
    for n, dispatch_id in enumerate(ids, 1):
        result, status = wait_status(target, dispatch_id)
        assert status == "STATUS_OK" and values.decode(result.output) == {"n": n}


def test_oversized_batch_is_rejected_whole(engine: Supervisor, channels: dict[str, grpc.Channel]) -> None:
    target = stub(channels["shared"])
    with nothing_changes(engine, channels):
        error = rpc_error(
            target.Dispatch, dispatch_pb2.DispatchRequest(calls=[echo_call()] * 10_001), metadata=AUTH, timeout=30
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "10001 calls" in (error.details() or "") and "at most 10000" in (error.details() or "")
        # 10,000 is within the limit: the same batch with one bad call is rejected for that call, not its size.
        calls = [echo_call()] * 9_999 + [call_pb2.Call(function="bad name")]
        error = rpc_error(target.Dispatch, dispatch_pb2.DispatchRequest(calls=calls), metadata=AUTH, timeout=30)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("calls[9999].function")


def test_negative_expiration_rejects_the_batch(engine: Supervisor, channels: dict[str, grpc.Channel]) -> None:
    late = echo_call()
    late.expiration.FromSeconds(-1)
    with nothing_changes(engine, channels):
        error = rpc_error(
            stub(channels["shared"]).Dispatch, dispatch_pb2.DispatchRequest(calls=[echo_call(), late]), metadata=AUTH
        )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "calls[1].expiration is negative" in (error.details() or "")


def _out_of_range_batch() -> list[call_pb2.Call]:
    """A call with a short expiration, then one whose expiration_time cannot be a protobuf Timestamp."""
    short = echo_call({"phantom": True})
    short.expiration.FromMilliseconds(200)
    huge = echo_call()
    huge.expiration.FromSeconds(315_576_000_000)  # the largest Duration: ~10,000 years, past year 9999
    return [short, huge]


def test_expiration_out_of_timestamp_range_rejects_the_batch_cleanly(
    endpoint_url: str, signing_key: Ed25519PrivateKey
) -> None:
    options = EngineSetup.create(
        endpoint_url=endpoint_url, api_key=API_KEY, signing_key=private_key_base64(signing_key), shards=1, port=0
    )
    with Supervisor(options) as supervisor, grpc.insecure_channel(supervisor.shard_addresses[0]) as channel:
        target = stub(channel)
        (before_id,) = dispatch_ok(target, [echo_call()])
        wait_status(target, before_id)
        before = counters(supervisor)
        error = rpc_error(target.Dispatch, dispatch_pb2.DispatchRequest(calls=_out_of_range_batch()), metadata=AUTH)
        (after_id,) = dispatch_ok(target, [echo_call()])
        wait_status(target, after_id)
        expected = Counters(
            before.accepted + 1,
            before.completed + 1,
            before.failed,
            before.expired,
            0,
            before.lost,
            before.attempts + 1,
        )
        # Bounded: 2 s is ten times the expiration of the first call of the rejected batch; a phantom
        # left by it expires long before, and shows as expired + 1 and in flight - 1.
        deadline = time.monotonic() + 2.0
        while (now := counters(supervisor)) == expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert now == expected, f"the rejected batch left a call behind: {before} -> {now}"
        # Every id between the two normal calls was never given to a client: it must be unknown.
        first, last = int(before_id[8:], 16), int(after_id[8:], 16)
        for counter in range(first + 1, last):
            with pytest.raises(grpc.RpcError) as unknown:
                wait_status(target, before_id[:8] + f"{counter:024x}", timeout=5)
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_connect_expiration_out_of_range_is_a_400(engine: Supervisor) -> None:
    assert engine.connect_url is not None
    body = dispatch_pb2.DispatchRequest(calls=_out_of_range_batch()[1:]).SerializeToString()
    with httpx.Client(timeout=10) as client:
        reply = client.post(engine.connect_url + DISPATCH, content=body, headers=PROTO)
    assert reply.status_code == 400 and reply.json()["code"] == "invalid_argument"


# -- authentication -------------------------------------------------------------------------------------

BAD_AUTH = {
    "missing": (),
    "wrong key": (("authorization", "Bearer not-the-key"),),
    "key prefix": (("authorization", f"Bearer {API_KEY[:-1]}"),),
    "key plus a character": (("authorization", f"Bearer {API_KEY}x"),),
    "no scheme": (("authorization", API_KEY),),
    "basic scheme": (("authorization", "Basic " + base64.b64encode(f"user:{API_KEY}".encode()).decode()),),
    "other header": (("x-api-key", API_KEY),),
}


@pytest.mark.parametrize("metadata", list(BAD_AUTH.values()), ids=list(BAD_AUTH))
def test_missing_or_wrong_api_key_is_unauthenticated(
    engine: Supervisor, channels: dict[str, grpc.Channel], metadata: tuple[tuple[str, str], ...]
) -> None:
    target = stub(channels["shard0"])
    (known,) = dispatch_ok(target, [echo_call()])
    wait_status(target, known)
    stats = shard_pb2_grpc.ShardStub(channels["shard1"])
    with nothing_changes(engine, channels):
        errors = [
            rpc_error(target.Dispatch, dispatch_pb2.DispatchRequest(calls=[echo_call()]), metadata=metadata),
            rpc_error(target.Wait, dispatch_pb2.WaitRequest(dispatch_id=known), metadata=metadata),
            rpc_error(stub(channels["shard1"]).Wait, dispatch_pb2.WaitRequest(dispatch_id=known), metadata=metadata),
            rpc_error(stats.Stats, shard_pb2.StatsRequest(), metadata=metadata),
        ]
    for error in errors:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        details = error.details() or ""
        assert "authorization" in details
        assert API_KEY not in details and API_KEY[:-1] not in details


# -- Wait for ids that are not ours, unknown, or elsewhere ----------------------------------------------

MALFORMED_IDS = ["", "zz", "g" * 32, "0" * 31, "0" * 33, "not a dispatch id at all, not even close", "é" * 32]


@pytest.mark.parametrize("dispatch_id", MALFORMED_IDS, ids=[f"id{i}" for i in range(len(MALFORMED_IDS))])
def test_wait_for_malformed_id_is_not_found(
    engine: Supervisor, channels: dict[str, grpc.Channel], dispatch_id: str
) -> None:
    with nothing_changes(engine, channels):
        error = rpc_error(
            stub(channels["shared"]).Wait, dispatch_pb2.WaitRequest(dispatch_id=dispatch_id), metadata=AUTH, timeout=10
        )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "not a loadgen dispatch id" in (error.details() or "")


def test_wait_for_unknown_ids_here_and_across_shards(engine: Supervisor, channels: dict[str, grpc.Channel]) -> None:
    ids = [dispatch_ok(stub(channels[f"shard{i}"]), [echo_call()])[0] for i in (0, 1)]
    for i, dispatch_id in enumerate(ids):
        wait_status(stub(channels[f"shard{i}"]), dispatch_id)
    assert [owner_of(i)[0] for i in ids] == [0, 1]  # type: ignore[index]
    never_issued = [dispatch_id[:8] + "f" * 24 for dispatch_id in ids]  # right shard and incarnation
    with nothing_changes(engine, channels):
        for owner, unknown in enumerate(never_issued):
            for asked in (0, 1):  # the owner itself, and the other shard (forwarded)
                error = rpc_error(
                    stub(channels[f"shard{asked}"]).Wait,
                    dispatch_pb2.WaitRequest(dispatch_id=unknown),
                    metadata=AUTH,
                    timeout=10,
                )
                assert error.code() == grpc.StatusCode.NOT_FOUND, (owner, asked)
                assert "unknown dispatch id" in (error.details() or ""), (owner, asked, error.details())
        no_such_shard = "ff" + ids[0][2:]
        error = rpc_error(
            stub(channels["shard0"]).Wait, dispatch_pb2.WaitRequest(dispatch_id=no_such_shard), metadata=AUTH
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND and "no shard 255" in (error.details() or "")
    # and the known ids are still answered by either shard
    for dispatch_id in ids:
        for asked in (0, 1):
            assert wait_status(stub(channels[f"shard{asked}"]), dispatch_id)[1] == "STATUS_OK"


def test_wait_across_shards_times_out_cleanly(engine: Supervisor, channels: dict[str, grpc.Channel]) -> None:
    (slow,) = dispatch_ok(stub(channels["shard0"]), [call_pb2.Call(function="sleep", input=values.encode({"ms": 800}))])
    request = dispatch_pb2.WaitRequest(dispatch_id=slow)
    request.timeout.FromMilliseconds(50)
    error = rpc_error(stub(channels["shard1"]).Wait, request, metadata=AUTH, timeout=10)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_status(stub(channels["shard1"]), slow)[1] == "STATUS_OK"


# -- the Connect ingress --------------------------------------------------------------------------------

GOOD_BODY = dispatch_pb2.DispatchRequest(calls=[echo_call()]).SerializeToString()


def _batch(*calls: call_pb2.Call) -> bytes:
    return dispatch_pb2.DispatchRequest(calls=calls).SerializeToString()


CONNECT_CASES = {
    "no auth": ("Dispatch", GOOD_BODY, {"content-type": "application/proto"}, 401, None),
    "wrong auth": ("Dispatch", GOOD_BODY, PROTO | {"authorization": "Bearer nope"}, 401, None),
    "key without scheme": ("Dispatch", GOOD_BODY, PROTO | {"authorization": API_KEY}, 401, None),
    "json content type": ("Dispatch", GOOD_BODY, PROTO | {"content-type": "application/json"}, 400, "invalid_argument"),
    "text content type": ("Dispatch", GOOD_BODY, TEXT, 400, "invalid_argument"),
    "grpc content type": ("Dispatch", GOOD_BODY, PROTO | {"content-type": "application/grpc"}, 400, "invalid_argument"),
    "no content type": ("Dispatch", GOOD_BODY, {"authorization": BEARER}, 400, "invalid_argument"),
    "random bytes": ("Dispatch", b"\xff\xff\xff", PROTO, 400, "invalid_argument"),
    "truncated": ("Dispatch", GOOD_BODY[:-3], PROTO, 400, "invalid_argument"),
    "invalid UTF-8": ("Dispatch", GARBAGE["invalid UTF-8 function"], PROTO, 400, "invalid_argument"),
    "empty batch": ("Dispatch", b"", PROTO, 400, "invalid_argument"),
    "bad function": ("Dispatch", _batch(echo_call(), call_pb2.Call(function="9")), PROTO, 400, "invalid_argument"),
    "bridge endpoint": ("Dispatch", _batch(echo_call(endpoint="bridge://x")), PROTO, 400, "invalid_argument"),
    "oversized batch": ("Dispatch", _batch(*[echo_call()] * 10_001), PROTO, 400, "invalid_argument"),
    "wait malformed proto": ("Wait", b"\x0a\xff\xff\xff\xff\x0f", PROTO, 400, "invalid_argument"),
    "wait malformed id": ("Wait", b"zz", TEXT, 404, "not_found"),
    "wait no auth": ("Wait", b"0" * 32, {"content-type": "text/plain"}, 401, None),
}


@pytest.mark.parametrize(
    ("rpc", "body", "headers", "status", "code"), list(CONNECT_CASES.values()), ids=list(CONNECT_CASES)
)
def test_connect_ingress_rejects_bad_requests(
    engine: Supervisor,
    channels: dict[str, grpc.Channel],
    rpc: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    assert engine.connect_url is not None
    with nothing_changes(engine, channels), httpx.Client(timeout=30) as client:
        reply = client.post(
            f"{engine.connect_url}/dispatch.sdk.v1.DispatchService/{rpc}", content=body, headers=headers
        )
    assert reply.status_code == status, reply.text
    assert API_KEY not in reply.text
    if code is None:  # authentication failures: a text body, as the 0.8 mock answered
        assert reply.text in ("missing authentication token", "invalid authentication token")
    else:
        payload = reply.json()
        assert payload["code"] == code and payload["message"], payload


def test_connect_wrong_method_and_path(engine: Supervisor, channels: dict[str, grpc.Channel]) -> None:
    assert engine.connect_url is not None
    with nothing_changes(engine, channels), httpx.Client(timeout=30) as client:
        get = client.get(engine.connect_url + DISPATCH, headers=PROTO)
        other = client.post(engine.connect_url + "/dispatch.sdk.v1.DispatchService/Cancel", headers=PROTO)
        run = client.post(engine.connect_url + "/dispatch.sdk.v1.FunctionService/Run", headers=PROTO)
    assert get.status_code == 405 and get.json()["code"] == "unimplemented"
    assert other.status_code == 404 and other.json()["code"] == "not_found"
    assert run.status_code == 404 and run.json()["code"] == "not_found"
    failures = engine.snapshot().failures  # answered, and counted under their codes
    assert failures[("rpc", "Dispatch", "UNIMPLEMENTED")].count >= 1
    assert failures[("rpc", "(no such procedure)", "NOT_FOUND")].count >= 2


def test_connect_still_serves_after_bad_requests(engine: Supervisor) -> None:
    assert engine.connect_url is not None
    with httpx.Client(timeout=30) as client:  # one connection: the bad request must not break it
        bad = client.post(engine.connect_url + DISPATCH, content=b"\xff\xff", headers=PROTO)
        good = client.post(engine.connect_url + DISPATCH, content=GOOD_BODY, headers=PROTO)
        assert bad.status_code == 400 and good.status_code == 200
        (dispatch_id,) = dispatch_pb2.DispatchResponse.FromString(good.content).dispatch_ids
        waited = client.post(engine.connect_url + WAIT, content=dispatch_id.encode(), headers=PROTO)
    assert waited.status_code == 200 and waited.headers["loadgen-status"] == "STATUS_OK"


# -- bad key material on the command line and in scenarios ----------------------------------------------


def _with_a_slash(make: Callable[[], str]) -> str:
    """A PEM whose base64 holds a '/' (most do; this makes the cases below deterministic)."""
    for _ in range(200):
        pem = make()
        if "/" in pem:
            return pem
    raise AssertionError("no PEM with a '/' in 200 tries")


def _ec_private_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _ec_public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _ed25519_public_pem() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# Each bad value carries a distinctive secret-looking part that must never be printed.
BAD_VALUES: dict[str, str] = {
    "short base64": base64.b64encode(b"SECRETSEED-too-short-for-a-key").decode(),  # no '/' in it
    "long base64": base64.b64encode(b"SECRETSEED" * 4).decode(),
    "not base64": "SECRETSEED not base64 !!",
    "PEM garbage": "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VFRC1nYXJiYWdl\n-----END PRIVATE KEY-----\n",
    "empty": "",
}
SLASHED = base64.b64encode(b"\xfb\xff\xbf" * 10 + b"\x00").decode()  # 31 bytes; '+/+/' in its base64


def _secrets_of(value: str) -> list[str]:
    """The parts of a bad value that must not appear in any output."""
    if not value:
        return []
    if "-----BEGIN" in value:
        return [line for line in value.splitlines() if line and not line.startswith("-----")]
    return [value.strip()]


@dataclass(frozen=True)
class KeyCase:
    argv: tuple[str, ...]
    env: dict[str, str]
    source: str  # what the message must name
    secret: str  # the bad value
    scenario: str | None = None  # scenario file text, written to the case's folder as case.toml


SERVE = ("serve", "http://127.0.0.1:9", "--port", "0", "--shards", "1")
RUN = ("run", "{dir}/case.toml", "--results", "{dir}/results")


def _scenario(target_key: str, value: str) -> str:
    toml_value = value.replace("\n", "\\n")
    target = f'url = "http://127.0.0.1:9"\n{target_key} = "{toml_value}"\n[[workload]]\nfunction = "echo"'
    if target_key == "verification_key":
        target = f'{target_key} = "{toml_value}"'
    return f"[target]\n{target}\n"


def _key_cases() -> dict[str, KeyCase]:
    private = BAD_VALUES | {
        "EC private key": _with_a_slash(_ec_private_pem),
        "Ed25519 public key": _with_a_slash(_ed25519_public_pem),
        "slashed base64": SLASHED,
    }
    public = BAD_VALUES | {"EC public key": _ec_public_pem(), "slashed base64": SLASHED}
    short = BAD_VALUES["short base64"]
    cases: dict[str, KeyCase] = {}
    for name, value in private.items():
        cases[f"serve --signing-key, {name}"] = KeyCase((*SERVE, f"--signing-key={value}"), {}, "--signing-key", value)
    cases["serve LOADGEN_SIGNING_KEY, short base64"] = KeyCase(
        SERVE, {"LOADGEN_SIGNING_KEY": short}, "LOADGEN_SIGNING_KEY", short
    )
    for name, value in public.items():
        cases[f"endpoint --verification-key, {name}"] = KeyCase(
            ("endpoint", "--port", "0", f"--verification-key={value}"), {}, "--verification-key", value
        )
    cases["endpoint DISPATCH_VERIFICATION_KEY, short base64"] = KeyCase(
        ("endpoint", "--port", "0"), {"DISPATCH_VERIFICATION_KEY": short}, "DISPATCH_VERIFICATION_KEY", short
    )
    for name, value in private.items():
        if not value:
            continue  # an empty string is refused as such ("expected a non-empty string")
        cases[f"scenario signing_key, {name}"] = KeyCase(
            RUN, {}, "target.signing_key", value, _scenario("signing_key", value)
        )
    cases["scenario signing_key = env:VAR, short base64"] = KeyCase(
        RUN,
        {"BAD_INPUT_TEST_KEY": short},
        "BAD_INPUT_TEST_KEY",
        short,
        _scenario("signing_key", "env:BAD_INPUT_TEST_KEY"),
    )
    for name, value in {"short base64": short, "EC public key": _with_a_slash(_ec_public_pem)}.items():
        cases[f"scenario verification_key, {name}"] = KeyCase(
            RUN, {}, "target.verification_key", value, _scenario("verification_key", value)
        )
    return cases


KEY_CASES = _key_cases()


@dataclass(frozen=True)
class Finished:
    code: int
    output: str
    folder: Path


def _prepare(case: KeyCase, folder: Path) -> list[str]:
    if case.scenario is not None:
        (folder / "case.toml").write_text(case.scenario)
    return [arg.replace("{dir}", str(folder)) for arg in case.argv]


def _run_in_process(
    case: KeyCase, folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Finished:
    """``loadgen.cli.main`` as ``python -m loadgen.cli`` runs it (``sys.exit(main())``), without a new process."""
    from loadgen import cli

    argv = _prepare(case, folder)
    monkeypatch.chdir(folder)
    for name in ("LOADGEN_SIGNING_KEY", "DISPATCH_VERIFICATION_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # `run` installs its own
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    captured = capsys.readouterr()
    return Finished(code, captured.out + captured.err, folder)


def _check_key_case(case: KeyCase, done: Finished) -> None:
    assert done.code == 2, done.output
    assert case.source in done.output, done.output
    for secret in _secrets_of(case.secret):
        assert secret not in done.output, f"the bad key is echoed: {done.output}"
    if case.scenario is not None:
        assert "case.toml" in done.output, done.output
        results = done.folder / "results"
        assert not results.exists() or not any(results.iterdir()), "a results folder for a run that never started"


@pytest.mark.parametrize("name", list(KEY_CASES))
def test_bad_key_material_exits_2_naming_the_source_not_the_key(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = KEY_CASES[name]
    _check_key_case(case, _run_in_process(case, tmp_path, monkeypatch, capsys))


def test_bad_key_material_exit_code_of_the_real_commands(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same through ``python -m loadgen.cli``, one case per command, started at once."""
    names = [
        "serve --signing-key, EC private key",
        "endpoint DISPATCH_VERIFICATION_KEY, short base64",
        "scenario signing_key, PEM garbage",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("LOADGEN_SIGNING_KEY", "DISPATCH_VERIFICATION_KEY")}
    started = []
    for name in names:
        case, folder = KEY_CASES[name], tmp_path_factory.mktemp("key")
        command = [sys.executable, "-m", "loadgen.cli", *_prepare(case, folder)]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env | case.env, cwd=folder
        )
        started.append((case, folder, process))
    for case, folder, process in started:
        try:
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        _check_key_case(case, Finished(process.returncode, output, folder))
