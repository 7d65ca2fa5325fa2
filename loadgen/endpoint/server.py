"""The reference endpoint's asyncio server: HTTP/1.1 (h11) and h2c (h2) on one port.

Each connection is one :class:`asyncio.Protocol`. The first bytes decide the
protocol: the HTTP/2 connection preface (``PRI * HTTP/2.0...``) selects h2c
with prior knowledge, anything else HTTP/1.1. Upgrade from HTTP/1.1 (``h2c``
``Upgrade`` header) is not supported.

Only ``POST /dispatch.sdk.v1.FunctionService/Run`` is served (the query string
is ignored). The checks run in the order of the SDK's FastAPI endpoint:

1. route: another path → 404, another method on the path → 405 (``Allow: POST``);
2. body size: more than 16,000,000 bytes → 400 ``content length is too large``
   (as the SDK's stdlib endpoint). The 400 is sent as soon as the limit is known to
   be exceeded; HTTP/1.1 then closes the connection, HTTP/2 resets the stream
   with NO_ERROR after its response;
3. signature, when a verification key is configured (:func:`loadgen.protocol.signing.verify_request`,
   authority from ``:authority`` or ``Host``) → 403/401 with the verifier's message;
4. protobuf parse → **400** ``invalid_argument`` ``malformed RunRequest: ...``. This deliberately
   differs from the SDK, which answers 500 ``text/plain`` ``Internal Server Error``;
5. function name / lookup → 400 ``function is required`` / 404 ``function 'X' does not exist``;
6. execution: 200 ``application/proto`` with the raw ``RunResponse``. A function that raises
   unexpectedly → 500 ``internal`` ``function 'X' fatal error``.

Every error body is Connect JSON ``{"code": ..., "message": ...}`` with
``Content-Type: application/json``. That includes 404 (``not_found``) and 405
(``unimplemented``), where FastAPI would answer ``{"detail": ...}``. Any
request Content-Type is accepted.

HTTP/1.1 is the shared server loop of :mod:`loadgen.serving.h1` (keep-alive, pipelined requests
answered in order, ``Expect: 100-continue`` honoured). HTTP/2: MAX_CONCURRENT_STREAMS 1000, received data
acknowledged as it arrives, response bodies sent as the peer's flow-control
windows allow, RST_STREAM cancels a pending reply, and a client GOAWAY closes
the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import signal
import sys
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes, Settings

from loadgen.endpoint.functions import ReferenceFunctions, RequestRejected
from loadgen.pb import function_pb2
from loadgen.protocol.constants import PROTO_CONTENT_TYPE, RUN_PATH
from loadgen.protocol.signing import SignatureError, SignedRequest, verify_request
from loadgen.serving.h1 import H1Handler, Headers, Limits, Reply, ServerProtocol, error_reply, header

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONCURRENT_STREAMS",
    "EndpointHandle",
    "serve_forever",
    "start_endpoint",
]

log = logging.getLogger("loadgen.endpoint")

MAX_BODY_BYTES = 16_000_000
MAX_CONCURRENT_STREAMS = 1000
_RUN_PATH_BYTES = RUN_PATH.encode()
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_WINDOW = 1 << 24  # receive window, per stream and for the connection
_PROTO = PROTO_CONTENT_TYPE.encode()
_STATUS_BYTES = {s.value: str(s.value).encode() for s in http.HTTPStatus}
_ALLOW_POST = ((b"allow", b"POST"),)


_NOT_FOUND = error_reply("not_found", "Not Found")
_METHOD_NOT_ALLOWED = error_reply("unimplemented", "Method Not Allowed", 405, _ALLOW_POST)
_TOO_LARGE = error_reply("invalid_argument", "content length is too large")
_BAD_REQUEST = error_reply("invalid_argument", "malformed HTTP request")
_LIMITS = Limits(max_body=MAX_BODY_BYTES, too_large=_TOO_LARGE, bad_request=_BAD_REQUEST)


class _App:
    """Routing, verification, parsing and execution, shared by both protocols."""

    __slots__ = ("functions", "key")

    def __init__(self, functions: ReferenceFunctions, key: Ed25519PublicKey | None) -> None:
        self.functions = functions
        self.key = key

    def route(self, method: bytes, target: bytes) -> Reply | None:
        """The reply for a request that will not reach the function (wrong path or method), if any."""
        path = target.partition(b"?")[0]
        if path != _RUN_PATH_BYTES:
            return _NOT_FOUND
        if method != b"POST":
            return _METHOD_NOT_ALLOWED
        return None

    def respond(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> Reply:
        """A complete HTTP/1.1 request's reply (the :class:`~loadgen.serving.h1.Responder` of the H1 loop)."""
        return self.route(method, target) or self.handle(target, None, headers, body)

    def handle(
        self,
        target: bytes,
        authority: bytes | None,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> Reply:
        """Answer a routed ``POST`` to the Run path."""
        if self.key is not None:
            rejected = self._verify(target, authority, headers, body)
            if rejected is not None:
                return rejected
        try:
            request = function_pb2.RunRequest.FromString(body)
        except DecodeError as exc:
            return error_reply("invalid_argument", f"malformed RunRequest: {exc}")
        try:
            outcome = self.functions.execute(request)
            payload = outcome.response.SerializeToString()
        except RequestRejected as exc:
            return error_reply(exc.code, exc.message, exc.http_status)
        except Exception:
            log.exception("function %r raised", request.function)
            return error_reply("internal", f"function '{request.function}' fatal error")
        return Reply(200, _PROTO, payload, outcome.delay)

    def _verify(
        self,
        target: bytes,
        authority: bytes | None,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> Reply | None:
        assert self.key is not None
        fields: dict[str, str] = {}
        host = None
        for raw_name, raw_value in headers:
            if raw_name[:1] == b":":
                continue
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == "host":
                host = value
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        path, _, query = target.decode("latin-1").partition("?")
        signed = SignedRequest(
            method="POST",
            path=path,
            authority=authority.decode("latin-1") if authority is not None else (host or ""),
            headers=fields,
            body=body,
            query=query,
        )
        try:
            verify_request(signed, self.key)
        except SignatureError as exc:
            return error_reply(exc.code, exc.message, exc.http_status)
        return None


class _Connection(ServerProtocol):
    """One client connection; sniffs the protocol, then delegates to an HTTP/1.1 or h2 handler."""

    def __init__(self, server: _ServerState) -> None:
        super().__init__()
        self._server = server
        self._sniffed = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        handler = self._handler
        if handler is not None:
            handler.receive(data)
            return
        data = self._sniffed + data
        if len(data) < len(_H2_PREFACE) and _H2_PREFACE.startswith(data):
            self._sniffed = data
            return
        self._sniffed = b""
        assert self._transport is not None
        if data.startswith(_H2_PREFACE):
            handler = _H2Handler(self._transport, self._server.app)
        else:
            handler = H1Handler(self._transport, self._server.app, _LIMITS)
        self._handler = handler
        handler.receive(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        super().connection_lost(exc)


class _Stream:
    """One HTTP/2 request being received, or one reply waiting (for its delay or for window)."""

    __slots__ = ("authority", "body", "closed", "headers", "method", "offset", "reply", "size", "target", "timer")

    def __init__(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.method = b""
        self.target = b""
        self.authority: bytes | None = None
        for name, value in headers:
            if name[:1] != b":":
                break
            if name == b":method":
                self.method = value
            elif name == b":path":
                self.target = value
            elif name == b":authority":
                self.authority = value
        self.body: list[bytes] = []
        self.size = 0
        self.closed = False  # a reply has been started (or the stream is gone): ignore further data
        self.reply: Reply | None = None  # body still to send (flow control), from offset
        self.offset = 0
        self.timer: asyncio.TimerHandle | None = None


class _H2Handler:
    """HTTP/2 with prior knowledge, on the ``h2`` state machine."""

    __slots__ = ("_app", "_closed", "_conn", "_streams", "_transport", "_waiting")

    def __init__(self, transport: asyncio.Transport, app: _App) -> None:
        self._transport = transport
        self._app = app
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            # h2's inbound checks cost ~20% of a request; we only compare :path to a constant and hand
            # header values to the signature verifier, which parses them strictly.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        conn = H2Connection(config)
        # These take effect at once rather than when the client acknowledges them, which is only
        # safe because every value is at or above the protocol default: never lower one here.
        conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: _H2_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(_H2_WINDOW - 65535)
        self._conn = conn
        self._streams: dict[int, _Stream] = {}
        self._waiting: set[int] = set()  # streams with a reply blocked on flow control
        self._closed = False

    def receive(self, data: bytes) -> None:
        if self._closed:
            return
        conn = self._conn
        try:
            events = conn.receive_data(data)
        except H2ProtocolError:
            self._flush()
            self._close()
            return
        streams = self._streams
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                assert isinstance(event, DataReceived)
                sid = event.stream_id
                conn.acknowledge_received_data(event.flow_controlled_length, sid)
                stream = streams.get(sid)
                if stream is None or stream.closed or event.data is None:
                    continue
                stream.size += len(event.data)
                if stream.size > MAX_BODY_BYTES:
                    self._reject(sid, stream, _TOO_LARGE)
                else:
                    stream.body.append(event.data)
            elif kind is RequestReceived:
                assert isinstance(event, RequestReceived)
                self._request(event)
            elif kind is StreamEnded:
                assert isinstance(event, StreamEnded)
                stream = streams.get(event.stream_id)
                if stream is not None and not stream.closed:
                    self._end(event.stream_id, stream)
            elif kind is WindowUpdated:
                assert isinstance(event, WindowUpdated)
                if self._waiting:
                    self._resume(event.stream_id)
            elif kind is StreamReset:
                assert isinstance(event, StreamReset)
                self._forget(event.stream_id)
            elif kind is RemoteSettingsChanged:
                if self._waiting:
                    self._resume(0)
            elif kind is ConnectionTerminated:
                self._flush()
                self._close()
                return
        self._flush()

    def eof(self) -> bool:
        self._close()
        return False

    def lost(self) -> None:
        self._closed = True
        for stream in self._streams.values():
            if stream.timer is not None:
                stream.timer.cancel()
        self._streams.clear()
        self._waiting.clear()

    def shutdown(self) -> None:
        if not self._closed:
            with contextlib.suppress(H2ProtocolError):
                self._conn.close_connection()
            self._flush()
        self._close()

    def _close(self) -> None:
        self.lost()
        self._transport.close()

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            self._transport.write(data)

    def _request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        assert sid is not None and event.headers is not None
        stream = _Stream(event.headers)  # bytes headers: header_encoding=None
        self._streams[sid] = stream
        reply = self._app.route(stream.method, stream.target)
        if reply is not None:
            stream.reply = reply  # answered once the request ends
            return
        length = header(stream.headers, b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            self._reject(sid, stream, _TOO_LARGE)

    def _end(self, sid: int, stream: _Stream) -> None:
        reply = stream.reply
        if reply is None:
            body = b"".join(stream.body) if len(stream.body) != 1 else stream.body[0]
            reply = self._app.handle(stream.target, stream.authority, stream.headers, body)
        stream.body = []
        stream.closed = True
        if reply.delay > 0:
            stream.timer = asyncio.get_running_loop().call_later(reply.delay, self._delayed, sid, reply)
        else:
            self._reply(sid, stream, reply)

    def _delayed(self, sid: int, reply: Reply) -> None:
        stream = self._streams.get(sid)
        if stream is None or self._closed:
            return
        stream.timer = None
        self._reply(sid, stream, reply)
        self._flush()

    def _reject(self, sid: int, stream: _Stream, reply: Reply) -> None:
        """Answer before the request body has fully arrived, then ask the client to stop (RST NO_ERROR)."""
        stream.closed = True
        stream.body = []
        self._reply(sid, stream, reply)
        if sid not in self._waiting:  # the whole reply went out: the rest of the request is not wanted
            with contextlib.suppress(H2ProtocolError):
                self._conn.reset_stream(sid, ErrorCodes.NO_ERROR)

    def _reply(self, sid: int, stream: _Stream, reply: Reply) -> None:
        body = reply.body
        headers = [
            (b":status", _STATUS_BYTES[reply.status]),
            (b"content-type", reply.content_type),
            (b"content-length", str(len(body)).encode()),
            *reply.headers,
        ]
        try:
            self._conn.send_headers(sid, headers, end_stream=not body)
        except H2ProtocolError:  # the stream closed meanwhile
            self._forget(sid)
            return
        if not body:
            self._streams.pop(sid, None)
            return
        stream.reply = reply
        stream.offset = 0
        self._send_body(sid, stream)

    def _send_body(self, sid: int, stream: _Stream) -> None:
        """Send as much of the pending body as the windows allow; park the rest."""
        reply = stream.reply
        assert reply is not None
        body = reply.body
        total = len(body)
        offset = stream.offset
        conn = self._conn
        try:
            frame = conn.max_outbound_frame_size
            while offset < total:
                window = conn.local_flow_control_window(sid)
                if window <= 0:
                    stream.offset = offset
                    self._waiting.add(sid)
                    return
                size = min(window, frame, total - offset)
                end = offset + size
                chunk = body if size == total else memoryview(body)[offset:end]
                conn.send_data(sid, chunk, end_stream=end == total)
                offset = end
        except H2ProtocolError:  # stream reset or closed while we were sending
            self._forget(sid)
            return
        self._waiting.discard(sid)
        self._streams.pop(sid, None)

    def _resume(self, sid: int) -> None:
        targets = list(self._waiting) if sid == 0 else ([sid] if sid in self._waiting else [])
        for stream_id in targets:
            stream = self._streams.get(stream_id)
            if stream is None:
                self._waiting.discard(stream_id)
            else:
                self._send_body(stream_id, stream)

    def _forget(self, sid: int) -> None:
        stream = self._streams.pop(sid, None)
        self._waiting.discard(sid)
        if stream is not None and stream.timer is not None:
            stream.timer.cancel()


class _ServerState:
    __slots__ = ("app", "connections")

    def __init__(self, app: _App) -> None:
        self.app = app
        self.connections: set[_Connection] = set()


class EndpointHandle:
    """A running reference endpoint: ``.host``, ``.port``, ``.url``, ``await close()``."""

    def __init__(self, server: asyncio.Server, state: _ServerState, host: str, port: int) -> None:
        self._server = server
        self._state = state
        self.host = host
        self.port = port
        self.functions = state.app.functions

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def verifying(self) -> bool:
        """Whether requests must carry a valid signature."""
        return self._state.app.key is not None

    async def close(self) -> None:
        """Stop accepting, close every connection (GOAWAY on HTTP/2), cancel pending replies."""
        self._server.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        await self._server.wait_closed()

    async def __aenter__(self) -> EndpointHandle:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_endpoint(
    host: str = "127.0.0.1",
    port: int = 8000,
    verification_key: Ed25519PublicKey | None = None,
    *,
    functions: ReferenceFunctions | None = None,
) -> EndpointHandle:
    """Bind and start serving on the running loop; ``port=0`` picks a free port (see ``.port``)."""
    state = _ServerState(_App(functions or ReferenceFunctions(), verification_key))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(state), host, port, backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()
    return EndpointHandle(server, state, host, int(bound[1]))


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8000,
    verification_key: Ed25519PublicKey | None = None,
    *,
    seed: int | None = None,
    functions: ReferenceFunctions | None = None,
) -> None:
    """Run the endpoint on uvloop until SIGINT or SIGTERM, then close it and return."""
    import uvloop

    async def main() -> None:
        served = functions or ReferenceFunctions(seed=seed)
        handle = await start_endpoint(host, port, verification_key, functions=served)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(f"loadgen endpoint listening on {handle.url} (HTTP/1.1 and h2c)", flush=True)
        if verification_key is None:
            print(
                "warning: request signature verification is disabled "
                "(no verification key, DISPATCH_VERIFICATION_KEY unset)",
                file=sys.stderr,
                flush=True,
            )
        try:
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await handle.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
