"""Admission control with a real shard: over its caps a batch is rejected whole on every ingress (gRPC
RESOURCE_EXHAUSTED with the shard, the number and the setting in its message and a pushback trailer;
Connect 429 ``resource_exhausted`` with Retry-After; a Session group answered with code 8 and a
retry-after), a Wait beyond ``max_waits`` too, and the shard's accounting keeps offered = accepted +
rejected."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine

from loadgen.core.admission import MAX_PUSHBACK_MS, MIN_PUSHBACK_MS
from loadgen.engine.client import EngineClient
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, session_pb2, session_pb2_grpc
from loadgen.protocol import values
from loadgen.protocol.constants import PUSHBACK_TRAILER

pytestmark = pytest.mark.system

API_KEY = "admission-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
HELD = 256 * 1024
SLEEPERS = 15


@pytest.fixture(scope="module")
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    setup = quick_engine(
        endpoint_url,
        signing_key,
        API_KEY,
        shards=1,
        connect_port=0,
        max_calls_in_flight=20,
        max_held_bytes=HELD,
        max_waits=3,
    )
    with Supervisor(setup) as supervisor:
        yield supervisor


def sleep_call(ms: int) -> call_pb2.Call:
    return call_pb2.Call(function="sleep", input=values.encode({"ms": ms}))  # type: ignore[arg-type]


def test_over_its_caps_a_shard_rejects_whole_batches_on_every_ingress_with_a_pushback(engine: Supervisor) -> None:
    (address,) = engine.shard_addresses
    with grpc.insecure_channel(address) as channel:  # closed after: a later test of this process forks
        over_the_caps(engine, address, channel)


def over_the_caps(engine: Supervisor, address: str, channel: grpc.Channel) -> None:
    stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
    sleepers = stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[sleep_call(4000)] * SLEEPERS), metadata=AUTH)
    assert len(sleepers.dispatch_ids) == SLEEPERS

    with pytest.raises(grpc.RpcError) as raised:  # 15 + 10 > 20 calls in flight
        stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[sleep_call(10)] * 10), metadata=AUTH)
    error = raised.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        "shard 0 is full: 15 calls in flight, at most 20 (max_calls_in_flight); none of the 10 calls was accepted"
    )
    pushback = int(dict(error.trailing_metadata())[PUSHBACK_TRAILER])
    assert MIN_PUSHBACK_MS <= pushback <= MAX_PUSHBACK_MS

    big = call_pb2.Call(function="echo", input=values.encode("x" * HELD))  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as raised:  # one call, but its input alone is above max_held_bytes
        stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[big]), metadata=AUTH)
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "(max_held_bytes); the call was not accepted" in raised.value.details()

    assert engine.connect_url is not None
    reply = httpx.post(
        engine.connect_url + "/dispatch.sdk.v1.DispatchService/Dispatch",
        content=dispatch_pb2.DispatchRequest(calls=[sleep_call(10)] * 6).SerializeToString(),
        headers={"content-type": "application/proto", "authorization": f"Bearer {API_KEY}"},
    )
    assert reply.status_code == 429 and reply.json()["code"] == "resource_exhausted"
    assert "none of the 6 calls was accepted" in reply.json()["message"] and reply.headers["retry-after"] == "1"

    group = session_pb2.Group(group=7, calls=[sleep_call(10)] * 6, answer=True)
    session = session_pb2_grpc.CallsStub(channel)
    messages = list(session.Session(iter([session_pb2.SessionRequest(groups=[group])]), metadata=AUTH, timeout=20))
    (answer,) = [a for m in messages for a in m.answers]
    assert answer.group == 7 and answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "max_calls_in_flight" in answer.message and MIN_PUSHBACK_MS <= answer.retry_after_ms <= MAX_PUSHBACK_MS

    # The groups of one message, as one by one: 15 + 3 fit, 18 + 3 do not, 18 + 2 do.
    groups = [session_pb2.Group(group=g, calls=[sleep_call(10)] * n, answer=True) for g, n in ((8, 3), (9, 3), (10, 2))]
    messages = list(session.Session(iter([session_pb2.SessionRequest(groups=groups)]), metadata=AUTH, timeout=20))
    answers = {a.group: a for m in messages for a in m.answers}
    assert answers[8].code == 0 and len(answers[8].dispatch_ids) == 3
    assert answers[9].code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and not answers[9].dispatch_ids
    assert "18 calls in flight" in answers[9].message
    assert answers[10].code == 0 and len(answers[10].dispatch_ids) == 2

    waits = [
        stub.Wait.future(dispatch_pb2.WaitRequest(dispatch_id=i), metadata=AUTH, timeout=20)
        for i in sleepers.dispatch_ids[:3]
    ]
    deadline = time.monotonic() + 10
    refused: grpc.RpcError | None = None
    while refused is None and time.monotonic() < deadline:  # until the shard holds the three Waits
        try:
            stub.Wait(dispatch_pb2.WaitRequest(dispatch_id=sleepers.dispatch_ids[3]), metadata=AUTH, timeout=0.2)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                refused = exc
    assert refused is not None, "a fourth Wait was never refused"
    assert "3 Wait RPCs pending, at most 3 (max_waits)" in refused.details()
    assert all(w.result().dispatch_id for w in waits)  # the Waits held open still answer

    with EngineClient(API_KEY) as client:
        stats = client.merged_stats(engine.shard_addresses)
    accounting = stats.accounting()
    assert accounting.accepted == SLEEPERS + 3 + 2
    assert accounting.rejected == 10 + 1 + 6 + 6 + 3 and accounting.offered == accounting.accepted + accounting.rejected
    assert stats.counters["rejected/calls_in_flight"] == 25 and stats.counters["rejected/held_bytes"] == 1
    assert accounting.balanced
