"""Connect ingress: the Dispatch API as dispatch-py 0.8 calls it (HTTP/1.1, Connect unary).

``POST /dispatch.sdk.v1.DispatchService/Dispatch`` with ``Content-Type:
application/proto``, ``Authorization: Bearer <key>`` and the raw
``DispatchRequest`` answers the raw ``DispatchResponse``.
``POST /dispatch.sdk.v1.DispatchService/Wait`` takes a ``WaitRequest``
(``application/proto``) or, as the 0.8 SDK sends it, the bare dispatch id
(whatever the content type: a serialized ``WaitRequest`` never looks like
32 hex digits), and answers the ``CallResult`` (final status in the
``Loadgen-Status`` header); ``Connect-Timeout-Ms`` bounds the wait.
Authentication failures are HTTP 401 with a text body, as the 0.8 mock
answered; other errors use the Connect JSON shape ``{"code", "message"}``
(:mod:`loadgen.protocol.connect`). The HTTP/1.1 loop is :mod:`loadgen.serving.h1`'s.

Bounds: a body above ``max_message_bytes`` is answered ``resource_exhausted`` (429) on its
``Content-Length``, before it is read, and the client reads that answer (no reset); a head
slower than :data:`HEADER_TIMEOUT` or a body slower than :data:`BODY_TIMEOUT` is answered 408;
an idle keep-alive connection closes after :data:`IDLE_TIMEOUT`; past :data:`MAX_CONNECTIONS`
open connections a new one is answered 503 and closed, with a log line when the cap is reached.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Final

from google.protobuf.message import DecodeError

from loadgen.engine.frontend import ApiError, ShardFrontend
from loadgen.engine.limits import CONNECT_CONNECTIONS
from loadgen.pb import dispatch_pb2
from loadgen.protocol.connect import error_body
from loadgen.protocol.constants import DISPATCH_SERVICE, PROTO_CONTENT_TYPE
from loadgen.serving.h1 import ConnectionGate, H1Protocol, Headers, Limits, Reply, error_reply

__all__ = ["BODY_TIMEOUT", "HEADER_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONNECTIONS", "start_connect_ingress"]

HEADER_TIMEOUT: Final = 10.0
"""Seconds a request's head may take to arrive (from its first byte, or from the connection's start)."""
BODY_TIMEOUT: Final = 30.0
"""Seconds a request's body may take to arrive after its head."""
IDLE_TIMEOUT: Final = 60.0
"""Seconds a keep-alive connection may stay idle between requests."""
MAX_CONNECTIONS: Final = CONNECT_CONNECTIONS

log = logging.getLogger("loadgen.shard")

_RAW_ID = re.compile(rb"^[0-9a-f]{32}\s*$")
_PROTO: Final = PROTO_CONTENT_TYPE.encode()
_TEXT: Final = b"text/plain; charset=utf-8"


def _limits(max_body: int) -> Limits:
    return Limits(
        max_body=max_body,
        too_large=error_reply(
            "resource_exhausted", f"request body too large: at most {max_body} bytes (max_message_bytes)"
        ),
        bad_request=error_reply("invalid_argument", "malformed HTTP request"),
        max_head=64 * 1024,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        timed_out=error_reply(
            "deadline_exceeded",
            f"request not received in time (its head within {HEADER_TIMEOUT:g}s, its body within {BODY_TIMEOUT:g}s)",
            408,
        ),
    )


def _full_reply(index: int) -> bytes:
    """The raw answer of a connection over the cap (sent before any request is read)."""
    body = error_body("unavailable", f"shard {index} has {MAX_CONNECTIONS} Connect connections open, its cap")
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class _ConnectIngress:
    """The :class:`~loadgen.serving.h1.Responder` of the Connect routes, in front of a shard's frontend."""

    def __init__(self, frontend: ShardFrontend) -> None:
        self.frontend = frontend
        self.stats = frontend.stats

    def respond(self, method: bytes, target: bytes, raw_headers: Headers, body: bytes) -> Reply | asyncio.Future[Reply]:
        path = target.decode("latin-1")
        rpc = path[len(DISPATCH_SERVICE) :] if path.startswith(DISPATCH_SERVICE) else ""
        if rpc not in ("Dispatch", "Wait"):
            message = f"no such procedure: {path[:100]}"
            self.stats.record_failure("rpc", "(no such procedure)", "NOT_FOUND", message)
            return error_reply("not_found", message)
        if method != b"POST":
            self.stats.record_failure("rpc", rpc, "UNIMPLEMENTED", f"{method.decode('latin-1')[:10]}: use POST")
            return error_reply("unimplemented", "use POST", 405)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in raw_headers}
        return asyncio.ensure_future(self._call(rpc, headers, body))

    async def _call(self, rpc: str, headers: dict[str, str], body: bytes) -> Reply:
        started = time.perf_counter()
        metadata = [("authorization", headers.get("authorization", ""))] if "authorization" in headers else []
        try:
            self.frontend.authenticate(metadata)
        except ApiError:
            text = "missing authentication token" if not metadata else "invalid authentication token"
            self._failed(rpc, started, "UNAUTHENTICATED", text)
            return Reply(401, _TEXT, text.encode())
        try:
            reply = self._dispatch(headers, body) if rpc == "Dispatch" else await self._wait(headers, body)
        except ApiError as exc:
            self._failed(rpc, started, exc.code.upper(), exc.message)
            if exc.retry_after_ms is not None:  # admission control: 429 with Retry-After (whole seconds)
                seconds = str(max(1, -(-exc.retry_after_ms // 1000))).encode()
                return error_reply(exc.code, exc.message, headers=((b"retry-after", seconds),))
            return error_reply(exc.code, exc.message)
        except asyncio.CancelledError:  # the connection closed before the answer
            self._failed(rpc, started, "CANCELLED", "the client closed the connection before it was answered")
            raise
        self.stats.record_rpc(rpc, True, time.perf_counter() - started)
        return reply

    def _failed(self, rpc: str, started: float, code: str, message: str) -> None:
        """An answer other than OK: timed as an error, and counted under its code with the first message."""
        self.stats.record_rpc(rpc, False, time.perf_counter() - started)
        self.stats.record_failure("rpc", rpc, code, message)

    def _dispatch(self, headers: dict[str, str], body: bytes) -> Reply:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != PROTO_CONTENT_TYPE:
            raise ApiError("invalid_argument", f"Content-Type must be {PROTO_CONTENT_TYPE}")
        try:
            request = dispatch_pb2.DispatchRequest.FromString(body)
        except DecodeError as exc:
            raise ApiError("invalid_argument", f"malformed DispatchRequest: {exc}") from None
        ids = self.frontend.dispatch(request.calls)
        return Reply(200, _PROTO, dispatch_pb2.DispatchResponse(dispatch_ids=ids).SerializeToString())

    async def _wait(self, headers: dict[str, str], body: bytes) -> Reply:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        timeout: float | None = None
        if _RAW_ID.match(body):  # dispatch-py 0.8 sends the bare id, even as application/proto
            dispatch_id = body.decode()
        elif content_type == PROTO_CONTENT_TYPE:
            try:
                request = dispatch_pb2.WaitRequest.FromString(body)
            except DecodeError as exc:
                raise ApiError("invalid_argument", f"malformed WaitRequest: {exc}") from None
            dispatch_id = request.dispatch_id
            if request.HasField("timeout"):
                timeout = request.timeout.ToTimedelta().total_seconds()
        else:
            dispatch_id = body.decode("utf-8", "replace").strip()
        budget = headers.get("connect-timeout-ms")
        if budget is not None and budget.isdigit():
            limit = int(budget) / 1000
            timeout = limit if timeout is None else min(timeout, limit)
        answer = await self.frontend.wait(dispatch_id, timeout)
        trailer = tuple((key.encode(), value.encode()) for key, value in answer.trailers())
        return Reply(200, _PROTO, answer.result.SerializeToString(), headers=trailer)


async def start_connect_ingress(
    frontend: ShardFrontend, host: str, port: int, max_body: int = 16 * 1024 * 1024
) -> asyncio.Server:
    """Serve the Connect ingress on ``host:port``, shared with the other shards (``SO_REUSEPORT``);
    bodies up to *max_body* bytes."""
    ingress = _ConnectIngress(frontend)
    limits = _limits(max_body)
    index = frontend.index

    def full(count: int) -> None:
        log.warning("shard %d: %d Connect connections, at its cap; new ones are answered 503", index, count)

    gate = ConnectionGate(MAX_CONNECTIONS, _full_reply(index), full)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: H1Protocol(ingress, limits, gate), host, port, reuse_port=True)
