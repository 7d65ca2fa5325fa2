"""The session socket of a shard: the Session (``proto/loadgen/v1/session.proto``) on a plain TCP connection.

The same session as the ``Calls/Session`` stream of :mod:`.session` (the same state, group
acceptance and messages), framed as ``Calls/SessionSocket`` documents: a 4-byte big-endian
length, then one message; the client's first frame a ``SessionOpen``, then
``SessionRequest`` frames and a half-close; the shard's frames ``SessionResponse`` messages,
the header first, an ``end`` last. Each connection is one :class:`asyncio.Protocol` on the
shard's event loop, with no gRPC between the bytes and the session, so a message costs a
parse or a serialization and a socket write.

* **Group commit, no timer.** Whatever was queued (answers, results) in one turn of the event
  loop goes out in one message at the end of that turn; while the kernel's send buffer is
  full (the transport paused writing), results gather and go out when it drains.
* **Back-pressure.** While :data:`~.session.MAX_UNWRITTEN` results wait, the connection is
  not read (the client's sends block), as for the stream.
* **Limits.** A frame larger than the shard's ``max_message_bytes`` ends the session with
  ``RESOURCE_EXHAUSTED``; the ``SessionOpen`` must come within :data:`OPEN_TIMEOUT_S` and
  be at most :data:`MAX_OPEN_BYTES`; a session with nothing in flight and no frame for
  :data:`IDLE_TIMEOUT_S` is ended; at most *max_sessions* connections at once (more are
  ended with ``RESOURCE_EXHAUSTED``); TCP keepalive finds peers that vanished.
* **The end.** As the stream's: ``end`` with code 0 once the client half-closed and every
  streamed call's result was written; a connection lost before that keeps the results not
  written for ``Wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Final, TypeVar, cast

import grpc
from google.protobuf.message import DecodeError, Message

from loadgen.core.counters import sessions
from loadgen.engine.frontend import ApiError, ShardFrontend
from loadgen.engine.ingress_grpc import grpc_code
from loadgen.engine.session import (
    Delivered,
    SessionState,
    accept_groups,
    next_message,
    retain_unwritten,
    session_header,
)
from loadgen.pb import session_pb2
from loadgen.protocol.framing import FrameTooLarge, frame, take_frames

__all__ = ["IDLE_TIMEOUT_S", "MAX_OPEN_BYTES", "OPEN_TIMEOUT_S", "SessionSocketServer"]

log = logging.getLogger("loadgen.shard")

OPEN_TIMEOUT_S: Final = 10.0
"""A new connection's ``SessionOpen`` must arrive within this (else the connection is closed)."""
MAX_OPEN_BYTES: Final = 64 << 10
"""The largest ``SessionOpen`` frame taken."""
IDLE_TIMEOUT_S: Final = 300.0
"""A session with nothing in flight and no frame read for this long is ended (UNAVAILABLE)."""
KEEPALIVE_S: Final = (60, 20, 3)
"""TCP keepalive: first probe after 60 s of silence, then every 20 s, the peer declared gone after 3."""
_Message = TypeVar("_Message", bound=Message)
_LOOPBACK_OR_ANY: Final = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::", ""})


class _Connection(asyncio.Protocol):
    """One session socket: reads frames into groups, writes the session's messages."""

    def __init__(self, server: SessionSocketServer) -> None:
        self.server = server
        self.frontend = server.frontend
        self.transport: asyncio.Transport | None = None
        self.session = SessionState(self._wake)
        self.buffer = bytearray()
        self.opened = False
        self.ended = False
        self.paused_writing = False
        self.paused_reading = False
        self.flush_scheduled = False
        self.writing: list[Delivered] = []
        self.loop = asyncio.get_running_loop()
        self.last_read = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one in all but its class
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _tune(sock)
        if not self.server.admit(self):
            limit = self.server.max_sessions
            self._end(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the shard serves at most {limit} session sockets")
            return
        self.timer = self.loop.call_later(OPEN_TIMEOUT_S, self._open_timed_out)

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        self.last_read = self.loop.time()
        buffer = self.buffer
        buffer += data
        try:
            if not self.opened:
                for body in take_frames(buffer, MAX_OPEN_BYTES, most=1):
                    self._open(body)
                if not self.opened:
                    return
            for body in take_frames(buffer, self.server.max_message_bytes):
                self._groups(body)
                if self.ended:
                    return
        except FrameTooLarge as exc:
            self._end(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            return
        if self.session.full and not self.paused_reading:
            self.paused_reading = True
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if not self.opened:
            self._end(grpc.StatusCode.INVALID_ARGUMENT, "the connection ended before its SessionOpen")
            return False
        if self.buffer:
            self._end(
                grpc.StatusCode.INVALID_ARGUMENT, f"the connection ended inside a frame ({len(self.buffer)} bytes)"
            )
            return False
        self.session.closed = True
        self._wake()
        return True  # keep the connection open to write the rest

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
        self.server.forget(self)
        retain_unwritten(self.frontend, self.session, self.writing)
        self.writing = []

    # -- the session ----------------------------------------------------------------------------

    def _parse(self, kind: type[_Message], body: bytes) -> _Message | None:
        """*body* as a *kind* message; None once a malformed one ended the session (INVALID_ARGUMENT)."""
        try:
            return kind.FromString(body)
        except DecodeError as exc:
            self._end(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {kind.__name__}: {exc}")
            return None

    def _open(self, body: bytes) -> None:
        opened = self._parse(session_pb2.SessionOpen, body)
        if opened is None:
            return
        try:
            self.frontend.authenticate((("authorization", opened.authorization),))
        except ApiError as exc:
            self._end(grpc_code(exc.code), exc.message)
            return
        self.opened = True
        self.frontend.stats.count(sessions("socket"))
        self._write(session_header(self.frontend))
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(IDLE_TIMEOUT_S, self._check_idle)

    def _groups(self, body: bytes) -> None:
        request = self._parse(session_pb2.SessionRequest, body)
        if request is None:
            return
        accept_groups(self.frontend, self.session, request.groups)

    def _wake(self) -> None:
        if not self.flush_scheduled and not self.ended:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what is queued (unless the send buffer is full); end the session once it is finished."""
        self.flush_scheduled = False
        session = self.session
        if self.ended or not self.opened:
            return
        while session.pending and not self.paused_writing:
            message = next_message(session, self.writing)
            self._write(message)
            self.writing.clear()
        if self.paused_reading and not session.full:
            self.paused_reading = False
            assert self.transport is not None
            self.transport.resume_reading()
        if session.finished:
            self._end(None, "")

    def _write(self, message: session_pb2.SessionResponse) -> None:
        assert self.transport is not None
        self.transport.write(frame(message.SerializeToString()))

    def _end(self, code: grpc.StatusCode | None, message: str) -> None:
        """Write the session's ``end`` (code 0 when *code* is None) and close the connection."""
        if self.ended:
            return
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
        if code is not None:
            log.info("session socket ended: %s %s", code.name, message)
        end = session_pb2.SessionEnd(code=0 if code is None else code.value[0], message=message)
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # the transport is closing already
                self._write(session_pb2.SessionResponse(end=end))
            self.transport.close()

    def _open_timed_out(self) -> None:
        if not self.opened:
            self._end(grpc.StatusCode.DEADLINE_EXCEEDED, f"no SessionOpen within {OPEN_TIMEOUT_S:g} s")

    def _check_idle(self) -> None:
        idle = self.loop.time() - self.last_read
        session = self.session
        if session.quiet and idle >= IDLE_TIMEOUT_S:
            self._end(grpc.StatusCode.UNAVAILABLE, f"the session was idle for {IDLE_TIMEOUT_S:g} s")
            return
        self.timer = self.loop.call_later(max(1.0, IDLE_TIMEOUT_S - idle), self._check_idle)

    def stop(self) -> None:
        """The shard stops: write what is queued, then end the session (UNAVAILABLE unless it was finished)."""
        if self.ended:
            return
        self.paused_writing = False  # the transport buffers what the socket does not take; close() sends it
        self._flush()
        self._end(grpc.StatusCode.UNAVAILABLE, "the shard stopped")


def _tune(sock: socket.socket) -> None:
    """No Nagle delay (a message is written when it is complete), and TCP keepalive."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle, interval, count = KEEPALIVE_S
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


class SessionSocketServer:
    """The session socket listener of one shard."""

    def __init__(self, frontend: ShardFrontend, *, max_message_bytes: int, max_sessions: int) -> None:
        self.frontend = frontend
        self.max_message_bytes = max_message_bytes
        self.max_sessions = max_sessions
        self.connections: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []

    async def start(self, host: str) -> int:
        """Listen on a free port of *host*, and on the same port of 127.0.0.1 (where the shard's private
        gRPC address is) when *host* is neither that nor a wildcard and the port is free there; return it."""
        loop = asyncio.get_running_loop()
        first = await loop.create_server(lambda: _Connection(self), host, 0, backlog=128)
        self._servers.append(first)
        port = int(first.sockets[0].getsockname()[1])
        if host not in _LOOPBACK_OR_ANY:
            try:
                self._servers.append(
                    await loop.create_server(lambda: _Connection(self), "127.0.0.1", port, backlog=128)
                )
            except OSError as exc:
                log.info("session socket: not on 127.0.0.1:%d too (%s)", port, exc)
        return port

    def admit(self, connection: _Connection) -> bool:
        if len(self.connections) >= self.max_sessions:
            return False
        self.connections.add(connection)
        return True

    def forget(self, connection: _Connection) -> None:
        self.connections.discard(connection)

    def close(self) -> None:
        """Stop listening, and end every session: what it queued is written first (the connections
        close once their buffers are sent, while the shard's gRPC server stops)."""
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.stop()
