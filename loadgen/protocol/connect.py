"""The Connect protocol's error shape: ``{"code": ..., "message": ...}`` as JSON, and its HTTP statuses.

One copy for every server that answers errors (the reference endpoint, the Connect ingress)
and every client that reads them (the endpoint transports).
"""

from __future__ import annotations

from typing import Final

import orjson

__all__ = ["CONNECT_HTTP_STATUS", "JSON_CONTENT_TYPE", "error_body", "error_message", "http_status_of"]

JSON_CONTENT_TYPE: Final = "application/json"

CONNECT_HTTP_STATUS: Final[dict[str, int]] = {
    "invalid_argument": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "resource_exhausted": 429,
    "unavailable": 503,
    "deadline_exceeded": 504,
    "internal": 500,
}
"""The HTTP status a Connect error code is answered with (the codes loadgen's servers use)."""


def http_status_of(code: str) -> int:
    """The HTTP status of Connect error *code* (500 for a code not in the table)."""
    return CONNECT_HTTP_STATUS.get(code, 500)


def error_body(code: str, message: str) -> bytes:
    """The JSON body of a Connect error."""
    return orjson.dumps({"code": code, "message": message})


def error_message(body: bytes, limit: int = 200) -> str:
    """The ``message`` of a Connect error body, else an excerpt of the body as text ("" for none)."""
    detail = ""
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            detail = parsed["message"]
    except orjson.JSONDecodeError:
        detail = body[:limit].decode("utf-8", "replace").strip()
    return detail[:limit]
