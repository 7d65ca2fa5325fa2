"""Engine-side helpers of the fault tests: gRPC clients, bounded polling, processes, memory."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from loadgen.bench._procs import rss_bytes
from loadgen.core.stats import Snapshot
from loadgen.endpoint.process import EndpointProcess
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.protocol import values

__all__ = [
    "Client",
    "attempts_of",
    "endpoint_process",
    "port_outside_ephemeral_range",
    "rss_bytes",
    "shard_pids",
    "until",
]


def until(condition: Callable[[], object], limit: float, what: str, every: float = 0.02) -> Any:
    """Poll *condition* until it returns something true (returned), for at most *limit* seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g} s: {what}")
        time.sleep(every)


class Client:
    """A gRPC client of the shards (Dispatch and Wait), with the API key."""

    def __init__(self, address: str, api_key: str) -> None:
        self.channel = grpc.insecure_channel(address.removeprefix("http://"))
        self.stub = dispatch_pb2_grpc.DispatchServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),)

    def close(self) -> None:
        self.channel.close()

    def dispatch(
        self,
        function: str,
        params: values.Encodable = None,
        *,
        count: int = 1,
        endpoint: str = "",
        expiration: float | None = None,
        timeout: float = 15,
    ) -> list[str]:
        call = call_pb2.Call(
            function=function, input=values.encode({} if params is None else params), endpoint=endpoint
        )
        if expiration is not None:
            call.expiration.FromNanoseconds(int(expiration * 1e9))
        return self.dispatch_calls([call] * count, timeout=timeout)

    def dispatch_calls(self, calls: list[call_pb2.Call], timeout: float = 15) -> list[str]:
        request = dispatch_pb2.DispatchRequest(calls=calls)
        return list(self.stub.Dispatch(request, metadata=self.metadata, timeout=timeout).dispatch_ids)

    def wait(self, dispatch_id: str, timeout: float = 30) -> tuple[call_pb2.CallResult, str]:
        """The call's ``CallResult`` once terminal, and its final status (the ``loadgen-status`` trailer)."""
        request = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
        request.timeout.FromNanoseconds(int(timeout * 1e9))
        result, call = self.stub.Wait.with_call(request, metadata=self.metadata, timeout=timeout + 5)
        return result, dict(call.trailing_metadata())["loadgen-status"]

    def call(self, function: str, params: values.Encodable = None, **options: Any) -> tuple[call_pb2.CallResult, str]:
        """Dispatch one call and wait for it."""
        (dispatch_id,) = self.dispatch(function, params, **options)
        return self.wait(dispatch_id)


def attempts_of(snapshot: Snapshot, function: str) -> dict[str, int]:
    """``{status: attempts}`` of *function* (every attempt, by how it ended)."""
    return {
        status: snapshot.histogram("attempt", (name, status)).count
        for name, status in snapshot.keys("attempt")
        if name == function
    }


def shard_pids(supervisor: Supervisor) -> list[int]:
    pids = [slot.process.pid for _, slot in sorted(supervisor._slots.items())]
    assert all(pid is not None for pid in pids)
    return [pid for pid in pids if pid is not None]


def port_outside_ephemeral_range() -> int:
    """A free port below the kernel's ephemeral range, so no outgoing connection can take it meanwhile
    (nor connect to itself while nobody listens there)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, max(20001, low - 1))
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


@contextmanager
def endpoint_process(port: int, verification_key: str) -> Iterator[EndpointProcess]:
    """The reference endpoint on a fixed *port*, which a test can kill and start again."""
    endpoint = EndpointProcess(verification_key, port=port, timeout=30)
    try:
        endpoint.start()
        yield endpoint
    finally:
        endpoint.stop()
