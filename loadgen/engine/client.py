"""The one client of running shards: their statistics (``loadgen.v1.Shard/Stats``) and ``Wait``.

:class:`EngineClient` blocks (``loadgen run``, ``loadgen stats``, the Locust bridge, where
gRPC runs on gevent once :mod:`loadgen.locust` set it up); :class:`AsyncEngineClient` runs on
asyncio (a shard merging its peers' statistics, and forwarding a ``Wait`` to the shard that
owns the call). Both speak the same requests and read the same answers through the functions
below, authenticate with the API key, keep one channel per address, and raise
:class:`EngineUnavailable` when a shard does not answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from loadgen.core.stats import Snapshot, merge_snapshots
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, shard_pb2, shard_pb2_grpc
from loadgen.protocol.auth import bearer
from loadgen.protocol.constants import OUTCOME_TRAILER, STATUS_TRAILER

__all__ = [
    "AsyncEngineClient",
    "EngineClient",
    "EngineUnavailable",
    "WaitAnswer",
    "final_status",
    "rpc_error",
    "wait_answer",
]


class EngineUnavailable(RuntimeError):
    """A shard did not answer: ``code`` is the gRPC status code (``None`` when there was none)."""

    def __init__(self, code: grpc.StatusCode | None, details: str) -> None:
        super().__init__(f"{code.name if code is not None else 'UNKNOWN'}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class WaitAnswer:
    """A terminal call's result, final status name (``STATUS_…``) and outcome (``completed``, ...; ``""``: not said)."""

    result: call_pb2.CallResult
    status: str
    outcome: str = ""

    @property
    def short_status(self) -> str:
        """The status without ``STATUS_`` (``OK``, ``PERMANENT_ERROR``, ...), ``CANCELLED`` for a call a
        drain ended (on the wire ``STATUS_TIMEOUT``, the SDKs' only status for it: the outcome says so)."""
        if self.outcome == "cancelled":
            return "CANCELLED"
        return self.status.removeprefix("STATUS_") or "UNSPECIFIED"

    def trailers(self) -> tuple[tuple[str, str], ...]:
        """The ``Wait`` answer's trailing metadata: :data:`STATUS_TRAILER` and :data:`OUTCOME_TRAILER`."""
        if not self.outcome:
            return ((STATUS_TRAILER, self.status),)
        return ((STATUS_TRAILER, self.status), (OUTCOME_TRAILER, self.outcome))


def final_status(trailing: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The final status name a ``Wait`` answer carries in its trailing metadata (``STATUS_UNSPECIFIED``: none).

    Pairs, not ``dict()``: in grpcio 1.63 and earlier, grpc.aio Metadata.keys() yields (key, value) pairs.
    """
    for key, value in trailing or ():
        if key == STATUS_TRAILER:
            return value if isinstance(value, str) else value.decode()
    return "STATUS_UNSPECIFIED"


def wait_answer(result: call_pb2.CallResult, trailing: Iterable[tuple[str, str | bytes]] | None) -> WaitAnswer:
    """A ``Wait`` answer read back: *result* with the status and outcome of its trailing metadata."""
    pairs = list(trailing or ())
    outcome = ""
    for key, value in pairs:
        if key == OUTCOME_TRAILER:
            outcome = value if isinstance(value, str) else value.decode()
    return WaitAnswer(result, final_status(pairs), outcome)


def _wait_request(dispatch_id: str, timeout: float | None) -> dispatch_pb2.WaitRequest:
    request = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
    if timeout is not None:
        request.timeout.FromNanoseconds(int(timeout * 1e9))
    return request


def _rpc_timeout(timeout: float | None) -> float | None:
    """A Wait RPC's own deadline: the wait, plus time for the answer to come back."""
    return None if timeout is None else timeout + 5


def rpc_error(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    """The status code (None when the error has none) and details of a failed RPC."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return code, details or ""


def _unavailable(exc: grpc.RpcError) -> EngineUnavailable:
    return EngineUnavailable(*rpc_error(exc))


class EngineClient:
    """Blocking Stats and Wait calls to shards (see the module's documentation).

    *channel* makes the channel to an address (default: an insecure channel, kept per address
    until :meth:`close`); *timeout* bounds each Stats call.
    """

    def __init__(
        self, api_key: str, *, timeout: float = 10.0, channel: Callable[[str], grpc.Channel] | None = None
    ) -> None:
        self.timeout = timeout
        self._metadata = bearer(api_key)
        self._make = channel
        self._channels: dict[str, grpc.Channel] = {}

    def _channel(self, address: str) -> grpc.Channel:
        if self._make is not None:
            return self._make(address)
        found = self._channels.get(address)
        if found is None:
            found = self._channels[address] = grpc.insecure_channel(address.removeprefix("http://").rstrip("/"))
        return found

    def stats_bytes(self, address: str, *, local: bool = False) -> bytes:
        """The encoded snapshot of the shard at *address* (``local``) or of every shard it can reach."""
        stub = shard_pb2_grpc.ShardStub(self._channel(address))
        try:
            reply = stub.Stats(shard_pb2.StatsRequest(local=local), metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _unavailable(exc) from None
        return bytes(reply.snapshot)

    def stats(self, address: str, *, local: bool = False) -> Snapshot:
        """:meth:`stats_bytes`, decoded."""
        return Snapshot.from_bytes(self.stats_bytes(address, local=local))

    def merged_stats(self, addresses: Iterable[str]) -> Snapshot:
        """Each shard's own snapshot (``local``), merged."""
        return merge_snapshots(self.stats(address, local=True) for address in addresses)

    def wait(self, address: str, dispatch_id: str, timeout: float | None = None) -> WaitAnswer:
        """The result of call *dispatch_id* once it is terminal (asked of the shard at *address*)."""
        stub = dispatch_pb2_grpc.DispatchServiceStub(self._channel(address))
        try:
            result, call = stub.Wait.with_call(
                _wait_request(dispatch_id, timeout), metadata=self._metadata, timeout=_rpc_timeout(timeout)
            )
        except grpc.RpcError as exc:
            raise _unavailable(exc) from None
        return wait_answer(result, call.trailing_metadata())

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncEngineClient:
    """Stats and Wait calls to shards on asyncio (grpc.aio), one channel per address until :meth:`close`."""

    def __init__(self, api_key: str, *, timeout: float = 5.0, max_message_bytes: int | None = None) -> None:
        self.timeout = timeout
        self._metadata = bearer(api_key)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._options: list[tuple[str, Any]] = []
        if max_message_bytes is not None:  # a shard forwarding a Wait takes what its own server may send
            self._options = [
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ]

    def _channel(self, address: str) -> grpc.aio.Channel:
        found = self._channels.get(address)
        if found is None:
            found = self._channels[address] = grpc.aio.insecure_channel(address, options=self._options)
        return found

    async def stats(self, address: str, *, local: bool = True) -> Snapshot:
        """The snapshot of the shard at *address*."""
        stub = shard_pb2_grpc.ShardStub(self._channel(address))
        try:
            reply = await stub.Stats(shard_pb2.StatsRequest(local=local), metadata=self._metadata, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc) from None
        return Snapshot.from_bytes(reply.snapshot)

    async def wait(self, address: str, dispatch_id: str, timeout: float | None = None) -> WaitAnswer:
        """The result of call *dispatch_id* once it is terminal, from the shard at *address*."""
        stub = dispatch_pb2_grpc.DispatchServiceStub(self._channel(address))
        request = _wait_request(dispatch_id, timeout)
        call: Any = stub.Wait(request, metadata=self._metadata, timeout=_rpc_timeout(timeout))
        try:
            result = await call
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc) from None
        return wait_answer(result, trailing)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
