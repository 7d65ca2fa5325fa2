"""How faults on the way to an endpoint map to Dispatch statuses: one table for every client.

The mapping follows the Python SDK's own (dispatch/status.py) where one exists. HTTP
statuses (:data:`HTTP_STATUS`): 429 → THROTTLED, 401 → UNAUTHENTICATED, 403 →
PERMISSION_DENIED, 408 → TIMEOUT, 400 → INVALID_ARGUMENT, 404 → NOT_FOUND, 501 →
PERMANENT_ERROR, other 5xx → TEMPORARY_ERROR (retried), any other status → PERMANENT_ERROR.
Faults below HTTP (:data:`FAULT_STATUS`): a refused, reset or lost connection (or a body
cut short) → TCP_ERROR, no answer in time → TIMEOUT, bytes that are not HTTP or an HTTP/2
protocol violation → HTTP_ERROR, TLS → TLS_ERROR, name resolution → DNS_ERROR, a bad endpoint
URL → INVALID_ARGUMENT, a body that is no ``RunResponse`` → INVALID_RESPONSE, any other
transport failure → TEMPORARY_ERROR.

A new kind of fault is one :class:`Fault` member and its line in :data:`FAULT_STATUS`; the
connection that meets it raises ``fault(Fault.X, message)``.
"""

from __future__ import annotations

import enum
from typing import Final

from loadgen.pb import status_pb2 as status
from loadgen.protocol.connect import error_message

__all__ = [
    "FAULT_STATUS",
    "HTTP_STATUS",
    "AttemptError",
    "Fault",
    "describe_http_error",
    "fault",
    "status_for_http",
    "too_large_message",
]


class Fault(enum.Enum):
    """What went wrong on the way to an endpoint, below the endpoint's own answer."""

    CONNECTION = "connection"  # refused, reset, closed or lost; a body cut short; a stream reset
    TIMEOUT = "timeout"  # no connection, slot or answer in time
    PROTOCOL = "protocol"  # not HTTP at all, a malformed HTTP/1.1 response, an HTTP/2 protocol violation
    TLS = "tls"  # the TLS handshake or session failed
    DNS = "dns"  # the host name does not resolve
    BAD_URL = "bad_url"  # the endpoint URL cannot be used
    UNDECODABLE = "undecodable"  # a 2xx body that is no RunResponse
    TOO_LARGE = "too_large"  # a response body above the pool's max_response_bytes (not retried)
    OTHER = "other"  # any other transport failure (retried)


FAULT_STATUS: Final[dict[Fault, int]] = {
    Fault.CONNECTION: status.STATUS_TCP_ERROR,
    Fault.TIMEOUT: status.STATUS_TIMEOUT,
    Fault.PROTOCOL: status.STATUS_HTTP_ERROR,
    Fault.TLS: status.STATUS_TLS_ERROR,
    Fault.DNS: status.STATUS_DNS_ERROR,
    Fault.BAD_URL: status.STATUS_INVALID_ARGUMENT,
    Fault.UNDECODABLE: status.STATUS_INVALID_RESPONSE,
    Fault.TOO_LARGE: status.STATUS_INVALID_RESPONSE,
    Fault.OTHER: status.STATUS_TEMPORARY_ERROR,
}

HTTP_STATUS: Final[dict[int, int]] = {
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


def fault(kind: Fault, message: str) -> AttemptError:
    """The :class:`AttemptError` of a fault of *kind*."""
    return AttemptError(FAULT_STATUS[kind], message)


def too_large_message(size: int | None, limit: int) -> str:
    """What an attempt whose response body is too large says (*size*: as announced; ``None``: seen growing)."""
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return f"response body of {what}, above the {limit} bytes loadgen takes (max_response_bytes)"


def status_for_http(code: int) -> int:
    """The Dispatch status for a non-2xx HTTP status code."""
    if code in HTTP_STATUS:
        return HTTP_STATUS[code]
    if 500 <= code < 600:
        return status.STATUS_TEMPORARY_ERROR
    if 200 <= code < 300:
        return status.STATUS_OK
    return status.STATUS_PERMANENT_ERROR


def describe_http_error(code: int, body: bytes, limit: int = 200) -> str:
    """``HTTP 403: invalid signature`` from a Connect JSON error body, else a body excerpt."""
    detail = error_message(body, limit)
    return f"HTTP {code}: {detail}" if detail else f"HTTP {code}"
