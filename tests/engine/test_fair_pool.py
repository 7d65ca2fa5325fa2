"""Head-of-line blocking, shortened from the overload repro: a shard with 20 streams to the endpoint and
400 calls sleeping 5 s still answers an echo at once (a fair queue per function, and a reserve of
streams no function may take); the wait shows as queue time and gauges, and a call that expires
before any stream was free says so."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine
from google.protobuf import duration_pb2

from loadgen.engine.client import EngineClient
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.protocol import values

pytestmark = pytest.mark.system

API_KEY = "fair-pool-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
STREAMS = 20


@pytest.fixture(scope="module")
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    setup = quick_engine(endpoint_url, signing_key, API_KEY, shards=1, connections=1, max_streams=STREAMS)
    with Supervisor(setup) as supervisor:
        yield supervisor


def test_an_echo_answers_at_once_behind_400_slow_calls_and_the_queue_shows(engine: Supervisor) -> None:
    (address,) = engine.shard_addresses
    with grpc.insecure_channel(address) as channel:  # closed after: a later test of this process forks
        echo_behind_slow_calls(engine, dispatch_pb2_grpc.DispatchServiceStub(channel))


def echo_behind_slow_calls(engine: Supervisor, stub: dispatch_pb2_grpc.DispatchServiceStub) -> None:
    sleep = call_pb2.Call(function="sleep", input=values.encode({"ms": 5000}))  # type: ignore[arg-type]
    stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[sleep] * 400), metadata=AUTH)
    late = call_pb2.Call(
        function="sleep", input=values.encode({"ms": 10}), expiration=duration_pb2.Duration(seconds=1)
    )  # type: ignore[arg-type]
    (late_id,) = stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[late]), metadata=AUTH).dispatch_ids

    started = time.monotonic()
    echo = call_pb2.Call(function="echo", input=values.encode("hello"))  # type: ignore[arg-type]
    (echo_id,) = stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[echo]), metadata=AUTH).dispatch_ids
    result, call = stub.Wait.with_call(dispatch_pb2.WaitRequest(dispatch_id=echo_id), metadata=AUTH, timeout=10)
    took = time.monotonic() - started
    assert dict(call.trailing_metadata())["loadgen-status"] == "STATUS_OK" and values.decode(result.output) == "hello"
    assert took < 1.0, f"the echo took {took:.2f}s behind the slow calls"

    result, call = stub.Wait.with_call(dispatch_pb2.WaitRequest(dispatch_id=late_id), metadata=AUTH, timeout=10)
    assert dict(call.trailing_metadata())["loadgen-status"] == "STATUS_TIMEOUT"
    assert f"never attempted: all {STREAMS} streams were busy" in result.error.message

    with EngineClient(API_KEY) as client:
        stats = client.merged_stats(engine.shard_addresses)
    assert stats.gauges["streams"] == STREAMS and stats.gauges["busy_streams"] == STREAMS - 2  # 2 kept for others
    assert stats.gauges["queued_attempts"] > 300 and stats.gauges["queue_age_ms"] >= 1000
    queued = stats.histogram("queue", ("sleep", "attempt"))
    assert queued.count >= STREAMS - 2 and stats.histogram("queue", ("echo", "attempt")).max < 100_000  # µs
