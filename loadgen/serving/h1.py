"""The HTTP/1.1 server loop on h11, for any :class:`Responder`: one request at a time per connection.

* Keep-alive; pipelined requests wait in h11's buffer and are answered in order.
* ``Expect: 100-continue`` is honoured.
* A body above ``Limits.max_body`` (announced by ``Content-Length`` or as it arrives) is
  answered ``Limits.too_large`` at once, then the connection closes; a malformed request gets
  ``Limits.bad_request``, then the connection closes. Closing after such an answer half-closes
  first and reads (and drops) what the client still sends for up to ``LINGER_SECONDS``, so the
  client reads the answer instead of a TCP reset.
* Timeouts, when ``Limits`` sets them: ``header_timeout`` for a request's head (from its first
  byte, or from the connection's start), ``body_timeout`` for its body, ``idle_timeout`` between
  requests of a keep-alive connection. A head or body too slow is answered ``Limits.timed_out``
  (408) and the connection closes; an idle one just closes. Nothing runs while a responder works.
* :class:`ConnectionGate`: at most ``cap`` connections of one server; one more is answered
  ``503`` and closed, and the gate's ``on_full`` hears of it once per episode.
* A responder answers a :class:`Reply` (sent after its ``delay``, without blocking the loop) or
  an awaitable of one (reading pauses until it is done; a connection lost meanwhile cancels it).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, cast

import h11

from loadgen.protocol.connect import JSON_CONTENT_TYPE, error_body, http_status_of

__all__ = [
    "LINGER_SECONDS",
    "ConnectionGate",
    "H1Handler",
    "H1Protocol",
    "Handler",
    "Headers",
    "Limits",
    "Reply",
    "Responder",
    "ServerProtocol",
    "error_reply",
    "header",
    "no_delay",
]

log = logging.getLogger("loadgen.serving")

Headers = Sequence[tuple[bytes, bytes]]
_NO_HEADERS: tuple[tuple[bytes, bytes], ...] = ()
_REASONS: Final = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_JSON: Final = JSON_CONTENT_TYPE.encode()
LINGER_SECONDS: Final = 2.0
"""How long a connection closed after an early answer keeps reading (and dropping) the client's bytes."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response, sent after ``delay`` seconds."""

    status: int
    content_type: bytes
    body: bytes
    delay: float = 0.0
    headers: tuple[tuple[bytes, bytes], ...] = _NO_HEADERS


def error_reply(
    code: str, message: str, status: int | None = None, headers: tuple[tuple[bytes, bytes], ...] = _NO_HEADERS
) -> Reply:
    """A Connect error (``{"code", "message"}`` JSON); the HTTP status is the code's unless given."""
    return Reply(http_status_of(code) if status is None else status, _JSON, error_body(code, message), 0.0, headers)


INTERNAL_ERROR: Final = error_reply("internal", "internal server error")


class Responder(Protocol):
    """What answers a complete request."""

    def respond(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> Reply | Awaitable[Reply]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one server's requests, and what it answers when one is exceeded."""

    max_body: int
    too_large: Reply
    bad_request: Reply
    max_head: int = 16 * 1024  # h11's max_incomplete_event_size
    header_timeout: float | None = None
    body_timeout: float | None = None
    idle_timeout: float | None = None
    timed_out: Reply | None = None  # the 408 answer of a head or body too slow


class ConnectionGate:
    """Open connections of one server, at most *cap*; beyond, a connection is answered *full* and closed.

    *on_full* is called with the count when the cap is first reached, again only after the count
    fell below 90% of it (one log line per episode, not one per refused connection).
    """

    def __init__(self, cap: int, full: bytes, on_full: Callable[[int], None] | None = None) -> None:
        self.cap = cap
        self.full = full
        self.open = 0
        self.refused = 0
        self._on_full = on_full
        self._episode = False

    def enter(self) -> bool:
        """A connection opened: True if it may stay."""
        if self.open >= self.cap:
            self.refused += 1
            if not self._episode:
                self._episode = True
                if self._on_full is not None:
                    self._on_full(self.open)
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1
        if self._episode and self.open < self.cap * 0.9:
            self._episode = False


def header(headers: Headers, name: bytes) -> bytes | None:
    """The value of header *name* (lower-case bytes), or ``None``."""
    for key, value in headers:
        if key == name:
            return value
    return None


class H1Handler:
    """One HTTP/1.1 connection: feed it with :meth:`receive`; it writes replies to *transport*."""

    __slots__ = (
        "_body",
        "_busy",
        "_conn",
        "_discarding",
        "_headers",
        "_limits",
        "_method",
        "_pending",
        "_responder",
        "_size",
        "_target",
        "_timer",
        "_transport",
        "_waiting",
    )

    def __init__(self, transport: asyncio.Transport, responder: Responder, limits: Limits) -> None:
        self._transport = transport
        self._responder = responder
        self._limits = limits
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)
        self._busy = False  # a reply is pending or the connection is closing: read no more events
        self._pending: asyncio.TimerHandle | asyncio.Future[Reply] | None = None
        self._method = b""
        self._target = b""
        self._headers: Headers = ()
        self._body: list[bytes] = []
        self._size = 0
        self._discarding = False
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = ""  # what the timer waits for: "head", "idle", "body" (or nothing)
        self._arm("head", limits.header_timeout)

    def receive(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._waiting == "idle":  # the next request starts: its head has header_timeout
            self._arm("head", self._limits.header_timeout)
        try:
            self._conn.receive_data(data)
        except RuntimeError:  # data after the peer's EOF
            return
        self._process()

    def _arm(self, waiting: str, seconds: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting = waiting if seconds is not None else ""
        if seconds is not None:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        waiting, self._waiting = self._waiting, ""
        if waiting == "idle" or self._limits.timed_out is None:
            self.shutdown()
        else:
            self._fail(self._limits.timed_out)

    def eof(self) -> bool:
        if self._discarding:  # the client sent everything: close now
            self._transport.close()
            return True
        with contextlib.suppress(RuntimeError):
            self._conn.receive_data(b"")
        self._process()
        return True  # keep the transport: the handler closes it once pending replies are out

    def lost(self) -> None:
        self._busy = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def shutdown(self) -> None:
        self.lost()
        self._transport.close()

    def _process(self) -> None:
        conn = self._conn
        while not self._busy:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                self._fail(self._limits.bad_request)
                return
            kind = type(event)
            if kind is h11.Data:
                data = event.data  # type: ignore[union-attr]
                self._size += len(data)
                if self._size > self._limits.max_body:
                    self._fail(self._limits.too_large)
                    return
                self._body.append(data)
            elif kind is h11.Request:
                self._arm("body", self._limits.body_timeout)
                self._start(event)  # type: ignore[arg-type]
            elif kind is h11.EndOfMessage:
                self._arm("", None)  # the responder takes its time
                self._end()
            elif kind is h11.ConnectionClosed:
                self._busy = True
                self._transport.close()
                return
            else:  # NEED_DATA or PAUSED
                return

    def _start(self, request: h11.Request) -> None:
        self._method = request.method
        self._target = request.target
        self._headers = request.headers
        self._body = []
        self._size = 0
        length = header(request.headers, b"content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_body:
            self._fail(self._limits.too_large)
            return
        if self._conn.they_are_waiting_for_100_continue:
            self._transport.write(self._conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")

    def _end(self) -> None:
        # h11 may hand out bytearray chunks; protobuf before 5.x parses bytes only.
        only = self._body[0] if len(self._body) == 1 else None
        body = only if type(only) is bytes else b"".join(self._body)
        self._body = []
        reply = self._responder.respond(self._method, self._target, self._headers, body)
        if type(reply) is not Reply:
            self._busy = True
            self._transport.pause_reading()
            future = asyncio.ensure_future(cast(Awaitable[Reply], reply))
            self._pending = future
            future.add_done_callback(self._answered)
        elif reply.delay > 0:
            self._busy = True
            self._transport.pause_reading()
            self._pending = asyncio.get_running_loop().call_later(reply.delay, self._delayed, reply)
        else:
            self._send(reply)

    def _answered(self, future: asyncio.Future[Reply]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("request to %r failed", self._target, exc_info=exc)
        self._delayed(future.result() if exc is None else INTERNAL_ERROR)

    def _delayed(self, reply: Reply) -> None:
        self._pending = None
        if self._transport.is_closing():
            return
        self._busy = False
        self._transport.resume_reading()
        self._send(reply)
        self._process()

    def _send(self, reply: Reply, close: bool = False) -> None:
        conn = self._conn
        headers = [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode())]
        headers.extend(reply.headers)
        if close:
            headers.append((b"connection", b"close"))
        try:
            reason = _REASONS.get(reply.status, b"")
            out = conn.send(h11.Response(status_code=reply.status, headers=headers, reason=reason))
            if reply.body and self._method != b"HEAD":
                out = (out or b"") + (conn.send(h11.Data(data=reply.body)) or b"")
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            self._busy = True
            self._transport.close()
            return
        self._transport.write(out)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._arm("idle", self._limits.idle_timeout)
        else:  # MUST_CLOSE, or we answered before reading the whole request
            self._busy = True
            self._linger()

    def _fail(self, reply: Reply) -> None:
        """Answer *reply* if a response can still be sent, then close the connection (lingering)."""
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._send(reply, close=True)
        self._busy = True
        self._linger()

    def _linger(self) -> None:
        """Half-close, drop what the client still sends for up to :data:`LINGER_SECONDS`, then close:
        closing with unread bytes would reset the connection, and the client would never read the answer."""
        transport = self._transport
        if self._discarding or transport.is_closing():
            return
        if self._timer is not None:
            self._timer.cancel()
        self._discarding = True
        try:
            can_half_close = transport.can_write_eof()
            if can_half_close:
                transport.write_eof()
        except (OSError, RuntimeError):
            can_half_close = False
        if not can_half_close:
            transport.close()
            return
        self._waiting = ""
        self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Switch Nagle off on a TCP transport (replies are single writes)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Handler(Protocol):
    """What a :class:`ServerProtocol` hands a connection's events to (:class:`H1Handler`, an h2 handler)."""

    def receive(self, data: bytes) -> None: ...

    def eof(self) -> bool: ...

    def lost(self) -> None: ...

    def shutdown(self) -> None: ...


class ServerProtocol(asyncio.Protocol):
    """A server connection that hands its events to a :class:`Handler`, without Nagle, reading no more
    while the peer is slow to read what it was sent. Subclasses choose the handler."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._handler: Handler | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        no_delay(transport)

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.receive(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof() if self._handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handler is not None:
            self._handler.lost()

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def shutdown(self) -> None:
        """Close now (the handler's way: a GOAWAY first on HTTP/2)."""
        if self._handler is not None:
            self._handler.shutdown()
        elif self._transport is not None:
            self._transport.close()


class H1Protocol(ServerProtocol):
    """An HTTP/1.1-only server connection around :class:`H1Handler` (``loop.create_server(lambda: ...)``),
    counted by *gate* when given."""

    def __init__(self, responder: Responder, limits: Limits, gate: ConnectionGate | None = None) -> None:
        super().__init__()
        self._responder = responder
        self._limits = limits
        self._gate = gate
        self._entered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self._transport is not None
        gate = self._gate
        if gate is not None:
            self._entered = gate.enter()
            if not self._entered:
                self._transport.write(gate.full)
                self._transport.close()
                return
        self._handler = H1Handler(self._transport, self._responder, self._limits)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._entered and self._gate is not None:
            self._entered = False
            self._gate.leave()
