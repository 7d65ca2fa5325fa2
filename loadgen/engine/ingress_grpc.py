"""The gRPC ingress of a shard: ``DispatchService`` (Dispatch, Wait) and ``loadgen.v1.Shard/Stats`` on grpc.aio.

Thin: each RPC is the :class:`ShardFrontend`'s answer in gRPC's form (an :class:`ApiError`
becomes the status of the same name; the final status and outcome of a ``Wait`` travel in the
trailing metadata), timed into the shard's ``rpc`` statistics. Every answer is recorded, whatever
ends it: an RPC that did not answer OK is also a failure of kind ``rpc`` under its gRPC code
(``NOT_FOUND``, ``UNAUTHENTICATED``, ``CANCELLED`` when the client went away or
``DEADLINE_EXCEEDED`` when its deadline passed first), with the first message seen.

gRPC core keeps the RPCs that arrived before Python asked for them in a queue; past
``grpc.server.max_pending_requests`` (1,000 by default) it drops new ones at random, and all past
the hard limit (3,000), as CANCELLED without a word and before any handler runs: a burst of
``Wait`` RPCs on one connection lost 6-30% so. Both limits are :data:`PENDING_REQUESTS` here,
so a shard takes a burst as large as a client sends.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final, Protocol

import grpc
import grpc.aio

from loadgen.core.stats import ShardStats, Snapshot
from loadgen.engine.frontend import ApiError, ShardFrontend, deadline_of
from loadgen.pb import dispatch_pb2, dispatch_pb2_grpc, shard_pb2, shard_pb2_grpc
from loadgen.protocol.constants import PUSHBACK_TRAILER

__all__ = ["PENDING_REQUESTS", "StatsSource", "add_servicers", "grpc_code", "grpc_options", "pushback"]

PENDING_REQUESTS: Final = 20_000
"""RPCs gRPC core may hold before Python picks them up (both its soft and its hard limit)."""


HANDSHAKE_TIMEOUT_MS: Final = 10_000
"""A new connection's HTTP/2 handshake, at most (an idle TCP connection is closed after it)."""
IDLE_TIMEOUT_MS: Final = 300_000
"""A connection without an RPC for this long is closed (GOAWAY)."""
KEEPALIVE_MS: Final = (60_000, 20_000)
"""The shard pings a quiet connection after the first, and closes it when no answer comes within the second."""


def grpc_options(max_message_bytes: int, max_connections: int | None = None) -> list[tuple[str, Any]]:
    """A shard's gRPC server options: the shared port, messages up to *max_message_bytes* each way,
    room for bursts (:data:`PENDING_REQUESTS`), timeouts and keepalive, at most *max_connections*."""
    options: list[tuple[str, Any]] = [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.server.max_pending_requests", PENDING_REQUESTS),
        ("grpc.server.max_pending_requests_hard_limit", PENDING_REQUESTS),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_connection_idle_ms", IDLE_TIMEOUT_MS),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS[0]),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_MS[1]),
    ]
    if max_connections is not None:
        options.append(("grpc.max_allowed_incoming_connections", max_connections))
    return options


def grpc_code(code: str) -> grpc.StatusCode:
    """The gRPC status code of an :class:`ApiError` code name (UNKNOWN for a name gRPC does not have)."""
    return getattr(grpc.StatusCode, code.upper(), grpc.StatusCode.UNKNOWN)


def pushback(exc: ApiError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata of an error: the pushback of a rejection by admission control, else nothing."""
    return () if exc.retry_after_ms is None else ((PUSHBACK_TRAILER, str(exc.retry_after_ms)),)


class StatsSource(Protocol):
    """What the Stats RPC reads: this shard's snapshot, and every reachable shard's merged into it."""

    def snapshot(self) -> Snapshot: ...

    async def merged_snapshot(self) -> Snapshot: ...


class _Answered:
    """``async with _Answered(rpc, context, stats):`` around a handler's work: however the handler leaves
    (answered, an :class:`ApiError` aborted with its code and pushback, cancelled or past its deadline),
    the RPC is recorded with its code, and a non-OK one also as a failure of kind ``rpc``."""

    __slots__ = ("context", "rpc", "started", "stats")

    def __init__(self, rpc: str, context: grpc.aio.ServicerContext[Any, Any], stats: ShardStats) -> None:
        self.rpc, self.context, self.stats = rpc, context, stats
        self.started = time.perf_counter()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> bool:
        if kind is None:
            self.stats.record_rpc(self.rpc, True, time.perf_counter() - self.started)
            return False
        if isinstance(exc, ApiError):
            self._failed(exc.code.upper(), exc.message)
            await self.context.abort(grpc_code(exc.code), exc.message, pushback(exc))
        elif isinstance(exc, asyncio.CancelledError):
            remaining = self.context.time_remaining()
            if remaining is not None and remaining <= 0:
                self._failed("DEADLINE_EXCEEDED", "the RPC's deadline passed before it was answered")
            else:
                self._failed("CANCELLED", "the client cancelled the RPC before it was answered")
        else:
            self._failed("UNKNOWN", "the handler failed")
        return False

    def _failed(self, code: str, message: str) -> None:
        self.stats.record_rpc(self.rpc, False, time.perf_counter() - self.started)
        self.stats.record_failure("rpc", self.rpc, code, message)


class _DispatchServicer(dispatch_pb2_grpc.DispatchServiceServicer):
    def __init__(self, frontend: ShardFrontend) -> None:
        self.frontend = frontend
        self.stats = frontend.stats

    async def Dispatch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with _Answered("Dispatch", context, self.stats):
            self.frontend.authenticate(context.invocation_metadata())
            ids = self.frontend.dispatch(request.calls)
        return dispatch_pb2.DispatchResponse(dispatch_ids=ids)

    async def Wait(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        timeout = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else None
        async with _Answered("Wait", context, self.stats):
            self.frontend.authenticate(context.invocation_metadata())
            timeout = deadline_of(timeout, context.time_remaining())
            waited = await self.frontend.wait(request.dispatch_id, timeout)
            context.set_trailing_metadata(waited.trailers())
        return waited.result


class _StatsServicer(shard_pb2_grpc.ShardServicer):
    def __init__(self, frontend: ShardFrontend, source: StatsSource) -> None:
        self.frontend = frontend
        self.source = source

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            self.frontend.authenticate(context.invocation_metadata())
        except ApiError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        snapshot = self.source.snapshot() if request.local else await self.source.merged_snapshot()
        return shard_pb2.StatsResponse(snapshot=snapshot.to_bytes())


def add_servicers(server: grpc.aio.Server, frontend: ShardFrontend, source: StatsSource) -> None:
    """Serve the Dispatch API and the Stats RPC of one shard on *server*."""
    dispatch_pb2_grpc.add_DispatchServiceServicer_to_server(_DispatchServicer(frontend), server)
    shard_pb2_grpc.add_ShardServicer_to_server(_StatsServicer(frontend, source), server)
