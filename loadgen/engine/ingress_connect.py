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
answered; other errors use the Connect JSON shape ``{"code", "message"}``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

import grpc
import h11
import orjson
from google.protobuf.message import DecodeError

from loadgen.engine.frontend import ApiError
from loadgen.pb import dispatch_pb2

if TYPE_CHECKING:
    from loadgen.engine.shard import ShardProcess

__all__ = ["start_connect_ingress"]

_PREFIX = "/dispatch.sdk.v1.DispatchService/"
_MAX_BODY = 64 * 1024 * 1024
_RAW_ID = re.compile(rb"^[0-9a-f]{32}\s*$")
_CONNECT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: ("invalid_argument", 400),
    grpc.StatusCode.NOT_FOUND: ("not_found", 404),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("deadline_exceeded", 504),
    grpc.StatusCode.UNAVAILABLE: ("unavailable", 503),
    grpc.StatusCode.UNAUTHENTICATED: ("unauthenticated", 401),
    grpc.StatusCode.PERMISSION_DENIED: ("permission_denied", 403),
}


class _Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = [("content-type", content_type), ("content-length", str(len(body)))] + (extra or [])


def _error(code: grpc.StatusCode, message: str) -> _Reply:
    name, http_status = _CONNECT_CODES.get(code, ("internal", 500))
    return _Reply(http_status, orjson.dumps({"code": name, "message": message}), "application/json")


async def _handle(shard: ShardProcess, method: str, path: str, headers: dict[str, str], body: bytes) -> _Reply:
    if not path.startswith(_PREFIX) or path[len(_PREFIX) :] not in ("Dispatch", "Wait"):
        return _error(grpc.StatusCode.NOT_FOUND, f"no such procedure: {path[:100]}")
    if method != "POST":
        return _Reply(405, orjson.dumps({"code": "unimplemented", "message": "use POST"}), "application/json")
    rpc = path[len(_PREFIX) :]
    started = time.perf_counter()
    metadata = [("authorization", headers.get("authorization", ""))] if "authorization" in headers else []
    try:
        shard.frontend.authenticate(metadata)
    except ApiError:
        shard.stats.record_rpc(rpc, False, time.perf_counter() - started)
        text = "missing authentication token" if not metadata else "invalid authentication token"
        return _Reply(401, text.encode(), "text/plain; charset=utf-8")
    try:
        reply = await (_dispatch(shard, headers, body) if rpc == "Dispatch" else _wait(shard, headers, body, metadata))
    except ApiError as exc:
        shard.stats.record_rpc(rpc, False, time.perf_counter() - started)
        return _error(exc.code, exc.message)
    shard.stats.record_rpc(rpc, True, time.perf_counter() - started)
    return reply


async def _dispatch(shard: ShardProcess, headers: dict[str, str], body: bytes) -> _Reply:
    content_type = headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/proto":
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "Content-Type must be application/proto")
    try:
        request = dispatch_pb2.DispatchRequest.FromString(body)
    except DecodeError as exc:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed DispatchRequest: {exc}") from None
    ids = shard.frontend.dispatch(request.calls)
    shard.ledger.add_accepted(shard.config.index, len(ids))
    response = dispatch_pb2.DispatchResponse(dispatch_ids=ids)
    return _Reply(200, response.SerializeToString(), "application/proto")


async def _wait(shard: ShardProcess, headers: dict[str, str], body: bytes, metadata: list[tuple[str, str]]) -> _Reply:
    content_type = headers.get("content-type", "").split(";")[0].strip()
    timeout: float | None = None
    if _RAW_ID.match(body):  # dispatch-py 0.8 sends the bare id, even as application/proto
        dispatch_id = body.decode()
    elif content_type == "application/proto":
        try:
            request = dispatch_pb2.WaitRequest.FromString(body)
        except DecodeError as exc:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed WaitRequest: {exc}") from None
        dispatch_id = request.dispatch_id
        if request.HasField("timeout"):
            timeout = request.timeout.ToTimedelta().total_seconds()
    else:
        dispatch_id = body.decode("utf-8", "replace").strip()
    budget = headers.get("connect-timeout-ms")
    if budget is not None and budget.isdigit():
        limit = int(budget) / 1000
        timeout = limit if timeout is None else min(timeout, limit)
    answer = await shard.frontend.wait(dispatch_id, timeout, metadata)
    return _Reply(200, answer.result.SerializeToString(), "application/proto", [("loadgen-status", answer.status)])


async def _serve_connection(shard: ShardProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    return
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                body = bytearray()
                while True:
                    part = connection.next_event()
                    if part is h11.NEED_DATA:
                        data = await reader.read(65536)
                        if not data:
                            return
                        connection.receive_data(data)
                    elif isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > _MAX_BODY:
                            reply = _error(grpc.StatusCode.INVALID_ARGUMENT, "request body too large")
                            await _send(connection, writer, reply)
                            return
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return
                reply = await _handle(shard, event.method.decode(), event.target.decode(), headers, bytes(body))
                await _send(connection, writer, reply)
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return
            else:
                return
    except (h11.RemoteProtocolError, ConnectionError):
        return
    finally:
        writer.close()


async def _send(connection: h11.Connection, writer: asyncio.StreamWriter, reply: _Reply) -> None:
    writer.write(connection.send(h11.Response(status_code=reply.status, headers=reply.headers)) or b"")
    writer.write(connection.send(h11.Data(data=reply.body)) or b"")
    writer.write(connection.send(h11.EndOfMessage()) or b"")
    await writer.drain()


async def start_connect_ingress(shard: ShardProcess, host: str, port: int) -> asyncio.Server:
    """Serve the Connect ingress on ``host:port``, shared with the other shards (``SO_REUSEPORT``)."""
    return await asyncio.start_server(
        lambda reader, writer: _serve_connection(shard, reader, writer), host, port, reuse_port=True
    )
