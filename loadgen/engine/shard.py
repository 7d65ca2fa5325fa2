"""One shard: a worker process serving the Dispatch API on uvloop.

A shard runs a grpc.aio server on the shared address (``SO_REUSEPORT``: every
shard listens on the same port) and on a private port of its own (for Wait
forwarding, stats, and clients that spread load over shards themselves), an
optional Connect ingress, the scheduler core, and a pool of HTTP/2
connections to the endpoint. It talks to its supervisor over a pipe:

* shard → supervisor: ``{"ready": private_address}``, ``{"snapshot": bytes}``,
  ``{"drained": bytes, "expired": n}``;
* supervisor → shard: ``{"peers": {index: (address, epoch)}}``,
  ``{"snapshot": None}``, ``{"drain": seconds, "expire": bool}`` (without ``expire``, or
  true, the calls still in flight after *seconds* expire; false: they stay in flight, reported).

When the pipe closes (the supervisor died) or the parent exits, the shard exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import grpc
import grpc.aio

from loadgen.children import die_with_parent
from loadgen.core.scheduler import RetryPolicy
from loadgen.core.stats import ShardStats, Snapshot
from loadgen.engine.dispatcher import AsyncDispatcher
from loadgen.engine.frontend import ApiError, Peer, ShardFrontend, deadline_of, id_prefix
from loadgen.engine.ledger import Ledger
from loadgen.pb import dispatch_pb2, dispatch_pb2_grpc, shard_pb2, shard_pb2_grpc
from loadgen.protocol.auth import expected_authorization
from loadgen.protocol.keys import load_private_key
from loadgen.protocol.signing import Signer
from loadgen.transport import EndpointPool

__all__ = ["ShardConfig", "run_shard"]

_GRPC_OPTIONS = [
    ("grpc.so_reuseport", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class ShardConfig:
    """Everything a shard process needs (sent through the pipe, never on a command line)."""

    index: int
    epoch: int
    endpoint_url: str
    api_key: str
    signing_key: str | None  # base64 seed or PEM; None sends unsigned requests
    host: str
    port: int
    connect_port: int
    ledger_path: str
    ledger_rows: int
    default_expiration: float = 60.0
    backoff: float = 0.05
    max_backoff: float = 2.0
    connections: int = 2
    max_streams: int = 100
    request_timeout: float = 30.0
    protocol: str = "auto"
    result_retention: int = 100_000


class _DispatchServicer(dispatch_pb2_grpc.DispatchServiceServicer):
    def __init__(self, frontend: ShardFrontend, stats: ShardStats, ledger: Ledger, index: int) -> None:
        self.frontend = frontend
        self.stats = stats
        self.ledger = ledger
        self.index = index

    async def Dispatch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        try:
            self.frontend.authenticate(context.invocation_metadata())
            ids = self.frontend.dispatch(request.calls)
        except ApiError as exc:
            self.stats.record_rpc("Dispatch", False, time.perf_counter() - started)
            await context.abort(exc.code, exc.message)
        self.ledger.add_accepted(self.index, len(ids))
        self.stats.record_rpc("Dispatch", True, time.perf_counter() - started)
        return dispatch_pb2.DispatchResponse(dispatch_ids=ids)

    async def Wait(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        metadata = tuple(context.invocation_metadata() or ())
        timeout = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else None
        try:
            self.frontend.authenticate(metadata)
            timeout = deadline_of(timeout, context.time_remaining())
            answer = await self.frontend.wait(request.dispatch_id, timeout, metadata)
        except ApiError as exc:
            self.stats.record_rpc("Wait", False, time.perf_counter() - started)
            await context.abort(exc.code, exc.message)
        context.set_trailing_metadata((("loadgen-status", answer.status),))
        self.stats.record_rpc("Wait", True, time.perf_counter() - started)
        return answer.result


class _StatsServicer(shard_pb2_grpc.ShardServicer):
    def __init__(self, shard: ShardProcess) -> None:
        self.shard = shard

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        metadata = tuple(context.invocation_metadata() or ())
        try:
            self.shard.frontend.authenticate(metadata)
        except ApiError as exc:
            await context.abort(exc.code, exc.message)
        snapshot = self.shard.snapshot()
        if not request.local:
            snapshot = await self.shard.merge_peers(snapshot, metadata)
        return shard_pb2.StatsResponse(snapshot=snapshot.to_bytes())


class ShardProcess:
    """The running shard inside its process."""

    def __init__(self, config: ShardConfig, conn: Connection) -> None:
        self.config = config
        self.conn = conn
        signer = Signer(load_private_key(config.signing_key)) if config.signing_key else None
        self.pool = EndpointPool(
            signer,
            connections=config.connections,
            max_streams=config.max_streams,
            timeout=config.request_timeout,
            protocol=config.protocol,  # type: ignore[arg-type]
        )
        self.stats = ShardStats(f"shard-{config.index}")
        self.ledger = Ledger(config.ledger_rows, config.ledger_path)
        self.dispatcher = AsyncDispatcher(
            self.pool,
            self.stats,
            endpoint_url=config.endpoint_url,
            id_prefix=id_prefix(config.index, config.epoch),
            retry_policy=RetryPolicy(base_delay=config.backoff, max_delay=config.max_backoff),
            default_expiration=config.default_expiration,
            on_root_finished=lambda outcome: self.ledger.add_ended(config.index, outcome.value),
            max_attempts_in_flight=config.connections * config.max_streams,
            result_retention=config.result_retention,
        )
        self.frontend = ShardFrontend(
            self.dispatcher,
            index=config.index,
            epoch=config.epoch,
            expected_auth=expected_authorization(config.api_key),
        )
        self._peers: dict[int, Peer] = {}
        self._done = asyncio.Event()
        self._draining: asyncio.Future[None] | None = None

    def snapshot(self) -> Snapshot:
        self.stats.set_gauge("in_flight", self.dispatcher.in_flight)
        self.stats.set_gauge("open_connections", self.pool.open_connections)
        return self.stats.snapshot()

    async def merge_peers(self, snapshot: Snapshot, metadata: tuple[tuple[str, str | bytes], ...]) -> Snapshot:
        """Merge every peer's local snapshot into *snapshot* (peers that do not answer are skipped)."""
        forwarded = [(k, v) for k, v in metadata if k.lower() == "authorization"]
        for index, peer in sorted(self._peers.items()):
            if index == self.config.index:
                continue
            async with grpc.aio.insecure_channel(peer.address) as channel:
                stub = shard_pb2_grpc.ShardStub(channel)
                try:
                    reply = await stub.Stats(shard_pb2.StatsRequest(local=True), metadata=forwarded, timeout=5)
                except grpc.aio.AioRpcError:
                    continue
            snapshot = snapshot.merge(Snapshot.from_bytes(reply.snapshot))
        return snapshot

    async def run(self) -> None:
        config = self.config
        server = grpc.aio.server(options=_GRPC_OPTIONS)
        dispatch_pb2_grpc.add_DispatchServiceServicer_to_server(
            _DispatchServicer(self.frontend, self.stats, self.ledger, config.index), server
        )
        shard_pb2_grpc.add_ShardServicer_to_server(_StatsServicer(self), server)
        host = f"[{config.host}]" if ":" in config.host else config.host
        if server.add_insecure_port(f"{host}:{config.port}") == 0:
            raise OSError(f"shard {config.index} cannot listen on {config.host}:{config.port}")
        private_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        connect_server = None
        if config.connect_port:
            from loadgen.engine.ingress_connect import start_connect_ingress

            connect_server = await start_connect_ingress(self, config.host, config.connect_port)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_control)
        self.conn.send({"ready": f"127.0.0.1:{private_port}"})
        await self._done.wait()
        loop.remove_reader(self.conn.fileno())
        if connect_server is not None:
            connect_server.close()
        await server.stop(grace=0.5)
        await self.frontend.close()
        await self.pool.aclose()
        self.ledger.close()

    def _on_control(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self._done.set()  # the supervisor is gone
            return
        if "peers" in message:
            self._peers = {index: Peer(address, epoch) for index, (address, epoch) in message["peers"].items()}
            self.frontend.set_peers(self._peers)
        elif "snapshot" in message:
            self.conn.send({"snapshot": self.snapshot().to_bytes()})
        elif "drain" in message:
            expire = bool(message.get("expire", True))
            self._draining = asyncio.ensure_future(self._drain(float(message["drain"]), expire))

    async def _drain(self, timeout: float, expire: bool) -> None:
        self.frontend.draining = True
        expired = await self.dispatcher.drain(timeout, expire_rest=expire)
        self.conn.send({"drained": self.snapshot().to_bytes(), "expired": expired})
        self._done.set()


def run_shard(config: ShardConfig, conn: Connection, parent_pid: int) -> None:
    """Entry point of a shard process."""
    die_with_parent()
    if os.getppid() != parent_pid:
        return  # the parent died before we could ask to die with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import uvloop

    uvloop.install()
    asyncio.run(ShardProcess(config, conn).run())
