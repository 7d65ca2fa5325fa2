"""The gRPC ingress of a shard: ``DispatchService`` (Dispatch, Wait) and ``loadgen.v1.Shard/Stats`` on grpc.aio.

Thin: each RPC is the :class:`ShardFrontend`'s answer in gRPC's form (an :class:`ApiError`
becomes the status of the same name; the final status and outcome of a ``Wait`` travel in the
trailing metadata), timed into the shard's ``rpc`` statistics.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import grpc
import grpc.aio

from loadgen.core.stats import Snapshot
from loadgen.engine.frontend import ApiError, ShardFrontend, deadline_of
from loadgen.pb import dispatch_pb2, dispatch_pb2_grpc, shard_pb2, shard_pb2_grpc

__all__ = ["StatsSource", "add_servicers", "grpc_code", "grpc_options"]


def grpc_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """A shard's gRPC server options: the shared port, and messages up to *max_message_bytes* each way."""
    return [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def grpc_code(code: str) -> grpc.StatusCode:
    """The gRPC status code of an :class:`ApiError` code name (UNKNOWN for a name gRPC does not have)."""
    return getattr(grpc.StatusCode, code.upper(), grpc.StatusCode.UNKNOWN)


class StatsSource(Protocol):
    """What the Stats RPC reads: this shard's snapshot, and every reachable shard's merged into it."""

    def snapshot(self) -> Snapshot: ...

    async def merged_snapshot(self) -> Snapshot: ...


class _DispatchServicer(dispatch_pb2_grpc.DispatchServiceServicer):
    def __init__(self, frontend: ShardFrontend) -> None:
        self.frontend = frontend
        self.stats = frontend.stats

    async def Dispatch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        try:
            self.frontend.authenticate(context.invocation_metadata())
            ids = self.frontend.dispatch(request.calls)
        except ApiError as exc:
            self.stats.record_rpc("Dispatch", False, time.perf_counter() - started)
            await context.abort(grpc_code(exc.code), exc.message)
        self.stats.record_rpc("Dispatch", True, time.perf_counter() - started)
        return dispatch_pb2.DispatchResponse(dispatch_ids=ids)

    async def Wait(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        timeout = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else None
        try:
            self.frontend.authenticate(context.invocation_metadata())
            timeout = deadline_of(timeout, context.time_remaining())
            answer = await self.frontend.wait(request.dispatch_id, timeout)
        except ApiError as exc:
            self.stats.record_rpc("Wait", False, time.perf_counter() - started)
            await context.abort(grpc_code(exc.code), exc.message)
        context.set_trailing_metadata(answer.trailers())
        self.stats.record_rpc("Wait", True, time.perf_counter() - started)
        return answer.result


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
