"""The reference endpoint's asyncio server: HTTP/1.1 (h11) and h2c (:mod:`loadgen.endpoint.h2`) on one port.

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
answered in order, ``Expect: 100-continue`` honoured). HTTP/2 is :mod:`loadgen.endpoint.h2`:
MAX_CONCURRENT_STREAMS 1000, received data acknowledged as it arrives, response bodies sent as
the peer's flow-control windows allow, RST_STREAM cancels a pending reply, a client GOAWAY closes
the connection, and a protocol violation answers GOAWAY with its error code.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from loadgen.endpoint.functions import ReferenceFunctions, RequestRejected
from loadgen.endpoint.h2 import MAX_CONCURRENT_STREAMS, H2Handler
from loadgen.pb import function_pb2
from loadgen.protocol.constants import PROTO_CONTENT_TYPE, RUN_PATH
from loadgen.protocol.signing import SignatureError, SignedRequest, verify_request
from loadgen.serving.h1 import H1Handler, Headers, Limits, Reply, ServerProtocol, error_reply
from loadgen.transport.frames import PREFACE

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONCURRENT_STREAMS",
    "EndpointHandle",
    "serve_forever",
    "start_endpoint",
]

log = logging.getLogger("loadgen.endpoint")

MAX_BODY_BYTES = 16_000_000
_RUN_PATH_BYTES = RUN_PATH.encode()
_H2_PREFACE = PREFACE
_PROTO = PROTO_CONTENT_TYPE.encode()
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
            handler = H2Handler(self._transport, self._server.app, _LIMITS)
        else:
            handler = H1Handler(self._transport, self._server.app, _LIMITS)
        self._handler = handler
        handler.receive(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        super().connection_lost(exc)


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
