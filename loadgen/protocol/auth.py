"""API-key authentication of the Dispatch API: ``authorization: Bearer <key>``, in constant time, never echoed."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

__all__ = ["authorization_error", "bearer", "expected_authorization"]


def bearer(api_key: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata a client sends with *api_key*."""
    return (("authorization", f"Bearer {api_key}"),)


def expected_authorization(api_key: str) -> bytes:
    """The exact ``authorization`` value a client must send."""
    return f"Bearer {api_key}".encode()


def authorization_error(metadata: Iterable[tuple[str, str | bytes]] | None, expected: bytes) -> str | None:
    """``None`` when *metadata* carries the expected ``authorization``; else what is wrong (no key in it)."""
    given: str | bytes | None = None
    for key, value in metadata or ():
        if key.lower() == "authorization":
            given = value
    if given is None:
        return "missing authorization header"
    raw = given.encode() if isinstance(given, str) else bytes(given)
    if not hmac.compare_digest(raw, expected):
        return "invalid authorization header (expected 'Bearer <api key>')"
    return None
