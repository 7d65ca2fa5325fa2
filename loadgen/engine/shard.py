"""One shard: a worker process serving the Dispatch API on uvloop.

A shard runs a grpc.aio server (:mod:`.ingress_grpc`, and the Session stream of :mod:`.session`)
on the shared address (``SO_REUSEPORT``: every shard listens on the same port) and on a private
port of its own (for Wait forwarding, stats, and clients that spread load over shards
themselves), its session socket (:mod:`.session_socket`, on a free port of the same host,
offered by ``Calls/SessionSocket``), an optional Connect ingress
(:mod:`.ingress_connect`), the dispatcher, and a pool of HTTP/2 connections to the endpoint.
It talks to its supervisor over a pipe with the messages of :mod:`.control`.

When the pipe closes (the supervisor died) or the parent exits, the shard exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import grpc.aio

from loadgen.allocator import heap_use, pin_mmap_threshold
from loadgen.children import die_with_parent
from loadgen.core.scheduler import RetryPolicy
from loadgen.core.stats import ShardStats, Snapshot
from loadgen.core.units import format_size
from loadgen.engine.client import EngineUnavailable
from loadgen.engine.control import Drain, Drained, Peers, Ready, SnapshotReply, SnapshotRequest
from loadgen.engine.dispatcher import AsyncDispatcher
from loadgen.engine.frontend import Peer, ShardFrontend, id_prefix
from loadgen.engine.ingress_grpc import add_servicers, grpc_options
from loadgen.engine.ledger import Ledger, LedgerHandle
from loadgen.engine.limits import (
    CONNECT_CONNECTIONS,
    SESSION_SOCKETS,
    DescriptorWatch,
    grpc_cap_supported,
    raise_fd_limit,
    shard_cap,
)
from loadgen.engine.session import add_session
from loadgen.engine.session_socket import SessionSocketServer
from loadgen.engine.settings import EngineSetup
from loadgen.protocol.keys import load_private_key
from loadgen.protocol.signing import Signer
from loadgen.transport import EndpointPool

__all__ = ["ShardConfig", "run_shard"]

log = logging.getLogger("loadgen.shard")


@dataclass(frozen=True)
class ShardConfig:
    """Everything a shard process needs (sent through the pipe, never on a command line)."""

    index: int
    epoch: int
    setup: EngineSetup
    port: int  # the shared gRPC port, bound by the supervisor
    connect_port: int  # the shared Connect port (0: no Connect ingress)
    ledger: LedgerHandle  # the supervisor's ledger, handed over as the shard process is spawned
    ledger_rows: int
    private_port: int = 0  # this shard's own port, bound by the supervisor, the same for every incarnation


class ShardProcess:
    """The running shard inside its process."""

    def __init__(self, config: ShardConfig, conn: Connection) -> None:
        self.config = config
        self.conn = conn
        setup, settings = config.setup, config.setup.settings
        signer = Signer(load_private_key(setup.signing_key)) if setup.signing_key else None
        self.pool = EndpointPool(
            signer,
            connections=settings.connections,
            max_streams=settings.max_streams,
            timeout=settings.request_timeout,
            protocol=settings.http,
            max_response_bytes=settings.max_response_bytes,
        )
        self.stats = ShardStats(f"shard-{config.index}")
        self.dispatcher = AsyncDispatcher(
            self.pool,
            self.stats,
            endpoint_url=setup.endpoint_url,
            id_prefix=id_prefix(config.index, config.epoch),
            retry_policy=RetryPolicy(base_delay=settings.backoff, max_delay=settings.max_backoff),
            default_expiration=settings.expiration,
            max_attempts_in_flight=settings.connections * settings.max_streams,
            result_retention=settings.result_retention,
            result_retention_bytes=settings.result_retention_bytes,
            max_poll_calls=settings.max_poll_calls,
            max_result_bytes=settings.max_result_bytes,
            chaos=settings.chaos if settings.chaos.active else None,
        )
        self.frontend = ShardFrontend(
            self.dispatcher,
            Ledger(config.ledger_rows, config.ledger),
            index=config.index,
            epoch=config.epoch,
            api_key=setup.api_key,
            max_message_bytes=settings.max_message_bytes,
            admission=settings.admission,
            result_limits=(
                f"{settings.result_retention:,} results or {format_size(settings.result_retention_bytes)}"
                " (result_retention, result_retention_bytes)"
            ),
        )
        self._done = asyncio.Event()
        self._draining: asyncio.Future[None] | None = None
        self.descriptors: DescriptorWatch | None = None

    def snapshot(self) -> Snapshot:
        if self.descriptors is not None:
            self.stats.set_gauge("open_descriptors", self.descriptors.check())
        self.stats.set_gauge("in_flight", self.dispatcher.in_flight)
        self.stats.set_gauge("open_connections", self.pool.open_connections)
        self.stats.set_gauge("retained_results", self.dispatcher.retained_results[0])
        self.stats.set_gauge("retained_bytes", self.dispatcher.retained_results[1])
        self.stats.set_gauge("queued_attempts", self.dispatcher.queued_attempts)
        self.stats.set_gauge("queue_age_ms", int(self.dispatcher.oldest_queued(time.perf_counter()) * 1000))
        self.stats.set_gauge("busy_streams", self.dispatcher.busy_streams)
        self.stats.set_gauge("streams", self.dispatcher.streams)
        self.stats.set_gauge("pool_saturated_ms", int(self.dispatcher.saturated_seconds() * 1000))
        self.stats.set_gauge("held_bytes", self.dispatcher.held_bytes)
        self.stats.set_gauge("waits", self.frontend.waits)
        self.stats.set_gauge("python_blocks", sys.getallocatedblocks())
        heap = heap_use()
        if heap is not None:
            self.stats.set_gauge("malloc_in_use_bytes", heap.in_use)
            self.stats.set_gauge("malloc_free_bytes", heap.free)
        return self.stats.snapshot()

    async def merged_snapshot(self) -> Snapshot:
        """This shard's snapshot with every peer's merged in (peers that do not answer are skipped)."""
        snapshot = self.snapshot()
        for index, peer in sorted(self.frontend.peers.items()):
            if index == self.config.index:
                continue
            try:
                snapshot = snapshot.merge(await self.frontend.peers_client.stats(peer.address, local=True))
            except EngineUnavailable:
                continue
        return snapshot

    async def run(self) -> None:
        config = self.config
        host = config.setup.host
        settings = config.setup.settings
        fd_limit = raise_fd_limit()
        own = (
            settings.connections
            + settings.shard_count
            + SESSION_SOCKETS
            + (CONNECT_CONNECTIONS if config.connect_port else 0)
        )
        cap = shard_cap(settings.max_connections, fd_limit, own)
        if not grpc_cap_supported():
            log.warning("shard %d: grpcio %s does not enforce max_connections", config.index, grpc.__version__)
        server = grpc.aio.server(options=grpc_options(settings.max_message_bytes, cap))
        add_servicers(server, self.frontend, self)
        sessions = add_session(server, self.frontend)
        bracketed = f"[{host}]" if ":" in host else host
        if server.add_insecure_port(f"{bracketed}:{config.port}") == 0:
            raise OSError(f"shard {config.index} cannot listen on {host}:{config.port}")
        private_port = server.add_insecure_port(f"127.0.0.1:{config.private_port}")
        if private_port == 0:
            raise OSError(f"shard {config.index} cannot listen on 127.0.0.1:{config.private_port}")
        await server.start()
        socket_server = SessionSocketServer(
            self.frontend, max_message_bytes=settings.max_message_bytes, max_sessions=SESSION_SOCKETS
        )
        sessions.socket_port = await socket_server.start(host)
        connect_server = None
        if config.connect_port:
            from loadgen.engine.ingress_connect import start_connect_ingress

            connect_server = await start_connect_ingress(
                self.frontend, host, config.connect_port, config.setup.settings.max_message_bytes
            )
        self.descriptors = DescriptorWatch(config.index, cap, fd_limit)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_control)
        self.conn.send(Ready(f"127.0.0.1:{private_port}"))
        await self._done.wait()
        loop.remove_reader(self.conn.fileno())
        if connect_server is not None:
            connect_server.close()
        socket_server.close()
        await server.stop(grace=0.5)
        await self.frontend.close()
        await self.pool.aclose()
        self.frontend.ledger.close()

    def _on_control(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self._done.set()  # the supervisor is gone
            return
        if isinstance(message, Peers):
            self.frontend.set_peers({index: Peer(address, epoch) for index, (address, epoch) in message.peers.items()})
        elif isinstance(message, SnapshotRequest):
            self.conn.send(SnapshotReply(self.snapshot().to_bytes(), message.seq))
        elif isinstance(message, Drain):
            self._draining = asyncio.ensure_future(self._drain(message.seconds, message.reason))

    async def _drain(self, timeout: float, reason: str) -> None:
        self.frontend.draining = True
        cancelled = await self.dispatcher.drain(timeout, reason)
        self.conn.send(Drained(self.snapshot().to_bytes(), cancelled))
        self._done.set()


def run_shard(config: ShardConfig, conn: Connection, parent_pid: int) -> None:
    """Entry point of a shard process."""
    die_with_parent()
    pin_mmap_threshold()
    if os.getppid() != parent_pid:
        return  # the parent died before we could ask to die with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import uvloop

    uvloop.install()
    asyncio.run(ShardProcess(config, conn).run())
