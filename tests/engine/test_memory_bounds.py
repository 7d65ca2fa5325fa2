"""Memory bounded by bytes, with real shards and the reference endpoint: results kept for ``Wait`` by
count and bytes (oldest evicted first, a clear NOT_FOUND for an evicted id), a result too large to
deliver failing as ResultTooLarge through its owner and through a peer, a forwarded ``Wait`` taking
what the shard's own server may send, a response above ``max_response_bytes``, a poll asking for too
many children."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine

from loadgen.engine.client import EngineClient
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.protocol import values

pytestmark = pytest.mark.system

API_KEY = "memory-bounds-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
MIB = 1024 * 1024
BIG = 32 * MIB  # what the test's client channels take


@pytest.fixture(scope="module")
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    setup = quick_engine(
        endpoint_url,
        signing_key,
        API_KEY,
        max_message_bytes=8 * MIB,
        result_retention_bytes=10 * MIB,
        max_response_bytes=12 * MIB,
        max_poll_calls=5,
    )
    with Supervisor(setup) as supervisor:
        yield supervisor


def stub(address: str) -> dispatch_pb2_grpc.DispatchServiceStub:
    options = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]
    return dispatch_pb2_grpc.DispatchServiceStub(grpc.insecure_channel(address, options=options))


def dispatch(target: dispatch_pb2_grpc.DispatchServiceStub, function: str, params: dict[str, object]) -> str:
    call = call_pb2.Call(function=function, input=values.encode(params))  # type: ignore[arg-type]
    (dispatch_id,) = target.Dispatch(dispatch_pb2.DispatchRequest(calls=[call]), metadata=AUTH).dispatch_ids
    return str(dispatch_id)


def wait(target: dispatch_pb2_grpc.DispatchServiceStub, dispatch_id: str) -> tuple[call_pb2.CallResult, str]:
    request = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
    result, call = target.Wait.with_call(request, metadata=AUTH, timeout=30)
    return result, dict(call.trailing_metadata())["loadgen-status"]


def test_a_result_too_large_to_deliver_fails_as_result_too_large_via_its_owner_and_a_peer(engine: Supervisor) -> None:
    owner, peer = (stub(address) for address in engine.shard_addresses)
    too_large = dispatch(owner, "payload", {"bytes": 9_000_000})  # above 8 MiB less 1 KiB
    fits = dispatch(owner, "payload", {"bytes": 6_000_000})  # above gRPC's default 4 MB of a peer channel
    for target in (owner, peer):
        result, status = wait(target, too_large)
        assert status == "STATUS_INVALID_RESPONSE" and result.error.type == "ResultTooLarge"
        assert "with a result of 9,0" in result.error.message and "above the 8,387,584 bytes" in result.error.message
        result, status = wait(target, fits)
        assert status == "STATUS_OK" and len(values.decode(result.output)) == 6_000_000  # type: ignore[arg-type]
    final = EngineClient(API_KEY).merged_stats(engine.shard_addresses)
    assert final.counters.get("failed/INVALID_RESPONSE", 0) >= 1


def test_results_are_bounded_by_bytes_and_an_evicted_id_says_so(engine: Supervisor) -> None:
    address = engine.shard_addresses[0]
    target = stub(address)
    first = dispatch(target, "payload", {"bytes": 4_000_000})
    wait(target, first)
    for _ in range(2):  # 12 MB more: above the 10 MiB kept, so the oldest go
        wait(target, dispatch(target, "payload", {"bytes": 4_000_000}))
    with pytest.raises(grpc.RpcError) as info:
        wait(target, first)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert "the result of this call was evicted: shard 0 keeps its latest 100,000 results or 10MiB" in str(
        info.value.details()
    )
    with pytest.raises(grpc.RpcError) as info:
        wait(target, first[:8] + "f" * 24)
    assert info.value.details() == "unknown dispatch id: shard 0 never issued it"
    snapshot = EngineClient(API_KEY).stats(address, local=True)
    assert 0 < snapshot.gauges["retained_bytes"] <= 10 * MIB and snapshot.counters.get("evicted", 0) >= 1


def test_a_response_above_max_response_bytes_fails_the_call_without_retries(engine: Supervisor) -> None:
    target = stub(engine.shard_addresses[1])
    result, status = wait(target, dispatch(target, "payload", {"bytes": 13_000_000}))
    assert status == "STATUS_INVALID_RESPONSE"
    assert "above the 12582912 bytes loadgen takes (max_response_bytes)" in result.error.message


def test_a_poll_asking_for_more_children_than_allowed_is_resumed_with_an_error(engine: Supervisor) -> None:
    target = stub(engine.shard_addresses[0])
    result, status = wait(target, dispatch(target, "fanout", {"n": 6}))
    assert status == "STATUS_PERMANENT_ERROR"
    assert result.error.type == "TooManyCalls"
    assert result.error.message == "asked for 6 calls; at most 5 per poll (max_poll_calls)"
    result, status = wait(target, dispatch(target, "fanout", {"n": 5}))
    assert status == "STATUS_OK"
    snapshot = EngineClient(API_KEY).stats(engine.shard_addresses[0], local=True)
    assert snapshot.failures[("poll", "fanout", "INVALID_ARGUMENT")].count >= 1
