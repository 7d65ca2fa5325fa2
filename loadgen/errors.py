"""How faults on the way to an endpoint map to Dispatch statuses.

The mapping follows the Python SDK's own (dispatch/status.py) where one exists:
429 → THROTTLED, 401 → UNAUTHENTICATED, 403 → PERMISSION_DENIED,
408 → TIMEOUT, 400 → INVALID_ARGUMENT, 404 → NOT_FOUND, 5xx → TEMPORARY_ERROR
(retryable), other statuses → PERMANENT_ERROR; refused or reset connections →
TCP_ERROR; timeouts → TIMEOUT; an undecodable body → INVALID_RESPONSE.
"""

from __future__ import annotations

import socket
import ssl

import httpx
import orjson
from google.protobuf.message import DecodeError

from loadgen.pb import status_pb2 as status

__all__ = ["AttemptError", "classify_exception", "status_for_http"]

_HTTP_STATUS = {
    400: status.STATUS_INVALID_ARGUMENT,
    401: status.STATUS_UNAUTHENTICATED,
    403: status.STATUS_PERMISSION_DENIED,
    404: status.STATUS_NOT_FOUND,
    408: status.STATUS_TIMEOUT,
    429: status.STATUS_THROTTLED,
    501: status.STATUS_PERMANENT_ERROR,
}


class AttemptError(Exception):
    """An attempt failed with a known Dispatch status (raised by transports)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_for_http(code: int) -> int:
    """The Dispatch status for a non-2xx HTTP status code."""
    if code in _HTTP_STATUS:
        return _HTTP_STATUS[code]
    if 500 <= code < 600:
        return status.STATUS_TEMPORARY_ERROR
    if 200 <= code < 300:
        return status.STATUS_OK
    return status.STATUS_PERMANENT_ERROR


def describe_http_error(code: int, body: bytes, limit: int = 200) -> str:
    """``HTTP 403: invalid signature`` from a Connect JSON error body, else a body excerpt."""
    detail = ""
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            detail = parsed["message"]
    except orjson.JSONDecodeError:
        detail = body[:limit].decode("utf-8", "replace").strip()
    detail = detail[:limit]
    return f"HTTP {code}: {detail}" if detail else f"HTTP {code}"


def classify_exception(exc: BaseException) -> tuple[int, str] | None:
    """Map a transport or decoding exception to ``(status, message)``; ``None`` if unknown."""
    if isinstance(exc, AttemptError):
        return exc.code, exc.message
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return status_for_http(response.status_code), describe_http_error(response.status_code, response.content)
    if isinstance(exc, DecodeError):
        return status.STATUS_INVALID_RESPONSE, f"undecodable RunResponse: {exc}"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return status.STATUS_TIMEOUT, f"timed out: {type(exc).__name__}"
    if isinstance(exc, ssl.SSLError):
        return status.STATUS_TLS_ERROR, f"TLS error: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, socket.gaierror):
            return status.STATUS_DNS_ERROR, f"DNS error: {exc}"
        if isinstance(cause, ssl.SSLError):
            return status.STATUS_TLS_ERROR, f"TLS error: {exc}"
        return status.STATUS_TCP_ERROR, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return status.STATUS_INVALID_ARGUMENT, f"bad endpoint URL: {exc}"
    if isinstance(exc, httpx.TransportError):
        return status.STATUS_TEMPORARY_ERROR, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ConnectionError):
        return status.STATUS_TCP_ERROR, f"{type(exc).__name__}: {exc}"
    return None
