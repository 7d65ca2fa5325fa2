"""What the seed API's endpoint client raises (httpx, protobuf), as Dispatch statuses through the transport table."""

from __future__ import annotations

import socket
import ssl

import httpx
from google.protobuf.message import DecodeError

from loadgen.transport.faults import FAULT_STATUS, AttemptError, Fault, describe_http_error, status_for_http

__all__ = ["classify_exception"]


def classify_exception(exc: BaseException) -> tuple[int, str] | None:
    """Map a transport or decoding exception to ``(status, message)``; ``None`` if unknown."""
    if isinstance(exc, AttemptError):
        return exc.code, exc.message
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return status_for_http(response.status_code), describe_http_error(response.status_code, response.content)
    if isinstance(exc, DecodeError):
        return FAULT_STATUS[Fault.UNDECODABLE], f"undecodable RunResponse: {exc}"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return FAULT_STATUS[Fault.TIMEOUT], f"timed out: {type(exc).__name__}"
    if isinstance(exc, ssl.SSLError):
        return FAULT_STATUS[Fault.TLS], f"TLS error: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, socket.gaierror):
            return FAULT_STATUS[Fault.DNS], f"DNS error: {exc}"
        if isinstance(cause, ssl.SSLError):
            return FAULT_STATUS[Fault.TLS], f"TLS error: {exc}"
        return FAULT_STATUS[Fault.CONNECTION], f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return FAULT_STATUS[Fault.BAD_URL], f"bad endpoint URL: {exc}"
    if isinstance(exc, httpx.TransportError):
        return FAULT_STATUS[Fault.OTHER], f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ConnectionError):
        return FAULT_STATUS[Fault.CONNECTION], f"{type(exc).__name__}: {exc}"
    return None
