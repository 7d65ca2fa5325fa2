"""Fault servers: endpoints that misbehave on purpose, over HTTP/1.1 or HTTP/2 (raw frames), on 127.0.0.1.

One asyncio loop in a daemon thread (:class:`FaultLoop`) hosts every server. A
:class:`FaultServer` listens on a port of its own, speaks one protocol, decodes each
request's ``RunRequest``, counts the requests per dispatch id, and asks its
*behaviour* (``Request -> Reply``) what to do. A call of the function ``probe`` is
always answered normally, so a test can check that an origin still works after a fault.

* HTTP/1.1 servers hang up without a byte on the HTTP/2 preface, which makes the
  engine's pool (``--http auto``) fall back to HTTP/1.1 for the origin.
* HTTP/2 servers write frames by hand (HPACK through ``hpack.Encoder``), honour the
  client's flow-control windows and frame size, and can reset streams, send GOAWAY
  in the middle of a response, or break the framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import hpack
from google.protobuf.message import DecodeError

from loadgen.pb import call_pb2, exit_pb2, function_pb2, status_pb2

__all__ = [
    "HUGE_BODY_BYTES",
    "FaultLoop",
    "FaultServer",
    "Reply",
    "Request",
    "always",
    "by_function",
    "first",
    "huge_body",
    "ok_body",
]

T = TypeVar("T")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_INITIAL_WINDOW_SIZE, _MAX_FRAME_SIZE = 0x4, 0x5
_WINDOW_WAIT = 10.0  # seconds a response waits for flow-control credit before the server gives up on it

HUGE_BODY_BYTES = 20_000_000

H1_GARBAGE = b"SSH-2.0-OpenSSH_9.6 garbage instead of an HTTP response\r\n\r\n"
H2_GARBAGE = b"this is not an HTTP/2 frame, just text on the wire\r\n"


@dataclass(frozen=True)
class Request:
    """A complete request as the behaviour sees it; *nth* counts this dispatch id's requests here (1, 2, ...)."""

    function: str
    dispatch_id: str
    nth: int
    run: function_pb2.RunRequest


@dataclass(frozen=True)
class Reply:
    """What the server does with a request.

    * ``respond``: status, content type and body (``None``: a ``RunResponse`` that exits with
      the request's input). ``length`` is the announced Content-Length; when it is larger than
      the body, the body is truncated: ``then="close"`` closes the connection after it (HTTP/2:
      without END_STREAM), ``then="finish"`` (HTTP/2 only) ends the stream as if it were whole.
    * ``close`` / ``reset``: close the connection right after reading the request (FIN, or RST
      with ``SO_LINGER`` 0).
    * ``garbage``: write bytes that are not HTTP (HTTP/1.1) or not frames (HTTP/2).
    * ``rst_stream`` (HTTP/2): RST_STREAM with ``code``; with ``partial`` bytes of the response
      sent first (headers and part of the body).
    * ``goaway`` (HTTP/2): GOAWAY with ``code`` and last stream id this stream (``"this"``) or
      the one before (``"before"``: this stream was not processed); with ``partial`` bytes of
      the response sent first; ``then="close"`` closes the connection, ``"finish"`` sends the rest.

    ``delay`` seconds pass before any of it.
    """

    kind: Literal["respond", "close", "reset", "garbage", "rst_stream", "goaway"] = "respond"
    status: int = 200
    body: bytes | None = None
    content_type: str = "application/proto"
    length: int | None = None
    delay: float = 0.0
    code: int = 0
    partial: int | None = None
    last_stream: Literal["this", "before"] = "this"
    then: Literal["close", "finish"] = "close"


Behaviour = Callable[[Request], Reply]
OK = Reply()


def always(reply: Reply | Behaviour) -> Behaviour:
    """Every request gets *reply* (or what it says)."""
    return first(1 << 62, reply)


def first(n: int, reply: Reply | Behaviour, then: Reply = OK) -> Behaviour:
    """The first *n* requests of each dispatch id get *reply* (or what it says), the later ones *then*."""

    def behaviour(request: Request) -> Reply:
        if request.nth > n:
            return then
        return reply if isinstance(reply, Reply) else reply(request)

    return behaviour


def by_function(table: dict[str, Behaviour]) -> Behaviour:
    """Dispatch on the request's function name."""
    return lambda request: table[request.function](request)


def ok_body(run: function_pb2.RunRequest) -> bytes:
    """A ``RunResponse`` that exits with the request's input as output."""
    result = call_pb2.CallResult(output=run.input)
    return function_pb2.RunResponse(status=status_pb2.STATUS_OK, exit=exit_pb2.Exit(result=result)).SerializeToString()


@functools.cache
def huge_body() -> bytes:
    """About 20 MB that look like a ``RunResponse`` (status, exit, a 20 MB output) but end too early."""
    output = call_pb2.CallResult(output={"type_url": "type.googleapis.com/google.protobuf.BytesValue"})
    output.output.value = b"\x5a" * HUGE_BODY_BYTES
    whole = function_pb2.RunResponse(status=status_pb2.STATUS_OK, exit=exit_pb2.Exit(result=output)).SerializeToString()
    return whole[:-1000]


def _frame(kind: int, flags: int, sid: int, payload: bytes | memoryview = b"") -> bytes:
    return struct.pack(">L", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">L", sid) + bytes(payload)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Whatever"


class FaultServer:
    """One misbehaving endpoint on its own port (see the module docstring)."""

    def __init__(self, behaviour: Behaviour, protocol: Literal["h1", "h2"], keep_alive: bool = True) -> None:
        self.behaviour = behaviour
        self.protocol = protocol
        self.keep_alive = keep_alive  # HTTP/1.1: False answers every request with Connection: close
        self.connections = 0
        self._counts: Counter[str] = Counter()
        self._functions: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []  # exceptions in the server's own code (a test bug if any)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, dispatch_id: str) -> int:
        """Complete requests received for *dispatch_id*."""
        with self._lock:
            return self._counts[dispatch_id]

    def requests_of(self, function: str) -> int:
        """Complete requests received for *function*."""
        with self._lock:
            return self._functions[function]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass  # the client went away (or the server stops)
        except Exception as exc:
            self.errors.append(exc)

    def decide(self, body: bytes) -> tuple[Request, Reply]:
        try:
            run = function_pb2.RunRequest.FromString(body)
        except DecodeError:
            run = function_pb2.RunRequest(function="<undecodable>")
        with self._lock:
            self._counts[run.dispatch_id] += 1
            self._functions[run.function] += 1
            nth = self._counts[run.dispatch_id]
        request = Request(run.function, run.dispatch_id, nth, run)
        if run.function == "probe":
            return request, OK
        return request, self.behaviour(request)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if self.protocol == "h1":
                await self._serve_h1(reader, writer)
            else:
                await _H2ServerConnection(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self._writers.discard(writer)
            writer.close()

    # -- HTTP/1.1 ---------------------------------------------------------------------------------------

    async def _serve_h1(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            if head.startswith(b"PRI * HTTP/2.0"):
                return  # hang up without a byte: the pool falls back to HTTP/1.1 for this origin
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            request, reply = self.decide(await reader.readexactly(length))
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if not await self._reply_h1(writer, request, reply):
                return

    async def _reply_h1(self, writer: asyncio.StreamWriter, request: Request, reply: Reply) -> bool:
        """Act on *reply*; False once the connection is done."""
        if reply.kind == "close":
            return False
        if reply.kind == "reset":
            _abort(writer)
            return False
        if reply.kind == "garbage":
            writer.write(H1_GARBAGE)
            await writer.drain()
            return False
        if reply.kind != "respond":
            raise ValueError(f"{reply.kind} is not an HTTP/1.1 fault")
        body = ok_body(request.run) if reply.body is None else reply.body
        length = len(body) if reply.length is None else reply.length
        truncated = length > len(body)
        keep = self.keep_alive and not truncated
        head = f"HTTP/1.1 {reply.status} {_phrase(reply.status)}\r\nContent-Type: {reply.content_type}\r\n"
        head += f"Content-Length: {length}\r\n" + ("" if keep or truncated else "Connection: close\r\n") + "\r\n"
        writer.write(head.encode())
        writer.write(body[:length])
        await writer.drain()
        return keep


class _H2ServerConnection:
    """The server side of one HTTP/2 connection, frame by frame."""

    def __init__(self, server: FaultServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.bodies: dict[int, list[bytes]] = {}
        self.windows: dict[int, int] = {}  # send windows of open streams
        self.connection_window = 65535
        self.initial_window = 65535
        self.max_frame = 16384
        self.credit = asyncio.Event()
        self.cancelled: set[int] = set()
        self.goaway_last: int | None = None
        self.closed = False

    def send(self, kind: int, flags: int, sid: int, payload: bytes | memoryview = b"") -> None:
        if not self.closed:
            self.writer.write(_frame(kind, flags, sid, payload))

    def close(self) -> None:
        self.closed = True
        self.writer.close()

    async def run(self) -> None:
        if await self.reader.readexactly(len(PREFACE)) != PREFACE:
            return
        self.send(_SETTINGS, 0, 0)
        while not self.closed:
            head = await self.reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = await self.reader.readexactly(length)
            if kind == _HEADERS:
                self.bodies[sid] = []
                self.windows[sid] = self.initial_window
                if flags & _END_STREAM:
                    self.server.spawn(self.handle(sid, b""))
            elif kind == _DATA:
                if flags & _PADDED and payload:
                    payload = payload[1 : len(payload) - payload[0]]
                if length:
                    self.send(_WINDOW_UPDATE, 0, 0, struct.pack(">L", length))
                if sid in self.bodies:
                    self.bodies[sid].append(payload)
                    if flags & _END_STREAM:
                        self.server.spawn(self.handle(sid, b"".join(self.bodies.pop(sid))))
            elif kind == _SETTINGS and not flags & _ACK:
                for at in range(0, length - length % 6, 6):
                    ident, value = struct.unpack_from(">HL", payload, at)
                    if ident == _INITIAL_WINDOW_SIZE:
                        delta = value - self.initial_window
                        self.initial_window = value
                        for open_sid in self.windows:
                            self.windows[open_sid] += delta
                        self.credit.set()
                    elif ident == _MAX_FRAME_SIZE:
                        self.max_frame = value
                self.send(_SETTINGS, _ACK, 0)
            elif kind == _WINDOW_UPDATE:
                increment = struct.unpack(">L", payload)[0] & 0x7FFFFFFF
                if sid == 0:
                    self.connection_window += increment
                elif sid in self.windows:
                    self.windows[sid] += increment
                self.credit.set()
            elif kind == _PING and not flags & _ACK:
                self.send(_PING, _ACK, 0, payload)
            elif kind == _RST_STREAM:
                self.cancelled.add(sid)
                self.bodies.pop(sid, None)
                self.windows.pop(sid, None)
            elif kind == _GOAWAY:
                return

    def headers(self, sid: int, reply: Reply, length: int, end_stream: bool) -> None:
        fields = [(":status", str(reply.status)), ("content-type", reply.content_type)]
        fields.append(("content-length", str(length)))
        block = self.encoder.encode(fields)  # encoded and written in one step: the HPACK state stays in order
        self.send(_HEADERS, _END_HEADERS | (_END_STREAM if end_stream else 0), sid, block)

    async def data(self, sid: int, data: bytes, end_stream: bool) -> None:
        """Send *data* as DATA frames within the client's windows (END_STREAM on the last one if asked)."""
        view = memoryview(data)
        offset, total = 0, len(data)
        if not total and end_stream:
            self.send(_DATA, _END_STREAM, sid)
        while offset < total:
            if self.closed or sid in self.cancelled:
                return
            room = min(self.connection_window, self.windows.get(sid, 0), self.max_frame, total - offset)
            if room <= 0:
                self.credit.clear()
                await asyncio.wait_for(self.credit.wait(), _WINDOW_WAIT)
                continue
            last = offset + room == total
            self.send(_DATA, _END_STREAM if last and end_stream else 0, sid, view[offset : offset + room])
            self.connection_window -= room
            self.windows[sid] -= room
            offset += room
            if self.writer.transport.get_write_buffer_size() > 1 << 20:
                await self.writer.drain()

    async def handle(self, sid: int, body: bytes) -> None:
        request, reply = self.server.decide(body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if self.closed or sid in self.cancelled or (self.goaway_last is not None and sid > self.goaway_last):
            return  # reset by the client, or above our GOAWAY's last stream id: never processed
        kind = reply.kind
        if kind == "close":
            self.close()
        elif kind == "reset":
            self.closed = True
            _abort(self.writer)
        elif kind == "garbage":
            self.writer.write(H2_GARBAGE)
        elif kind == "respond":
            data = ok_body(request.run) if reply.body is None else reply.body
            length = len(data) if reply.length is None else reply.length
            if length <= len(data):
                self.headers(sid, reply, length, end_stream=not length)
                await self.data(sid, data[:length], end_stream=True)
            elif reply.then == "finish":  # content-length larger than the DATA frames, yet END_STREAM
                self.headers(sid, reply, length, end_stream=False)
                await self.data(sid, data, end_stream=True)
            else:  # part of the body, then the connection goes away
                self.headers(sid, reply, length, end_stream=False)
                await self.data(sid, data, end_stream=False)
                await self.writer.drain()
                self.close()
        elif kind == "rst_stream":
            if reply.partial is not None:
                data = ok_body(request.run)
                self.headers(sid, reply, len(data), end_stream=False)
                await self.data(sid, data[: reply.partial], end_stream=False)
            self.send(_RST_STREAM, 0, sid, struct.pack(">L", reply.code))
        elif kind == "goaway":
            data = ok_body(request.run)
            if reply.partial is not None:
                self.headers(sid, reply, len(data), end_stream=False)
                await self.data(sid, data[: reply.partial], end_stream=False)
            last = sid if reply.last_stream == "this" else max(sid - 2, 0)
            self.goaway_last = last
            self.send(_GOAWAY, 0, 0, struct.pack(">LL", last, reply.code))
            if reply.then == "close":
                await self.writer.drain()
                self.close()
            elif reply.partial is not None and last >= sid:
                await self.data(sid, data[reply.partial :], end_stream=True)
            elif last >= sid:
                self.headers(sid, reply, len(data), end_stream=False)
                await self.data(sid, data, end_stream=True)


class FaultLoop:
    """An asyncio loop in a daemon thread that hosts fault servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-servers", daemon=True)
        self.servers: list[FaultServer] = []

    def __enter__(self) -> FaultLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                self.call(server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run *coro* on the loop; its result within *timeout* seconds."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, behaviour: Behaviour, protocol: Literal["h1", "h2"], keep_alive: bool = True) -> FaultServer:
        """A new server listening on a free port."""
        server = FaultServer(behaviour, protocol, keep_alive)
        self.call(server.start())
        self.servers.append(server)
        return server
