"""What the pool and its connections share: targets, the connection base class, the owner interface.

A connection is an :class:`asyncio.Protocol`. The pool *reserves* a slot on it
(``active += 1``) before calling :meth:`Connection.submit`; the connection
frees the slot itself when the exchange ends, and tells its owner (the pool's
per-origin state) through the :class:`Owner` callbacks.

An exchange's future resolves to the response body (``bytes``, 2xx only), to
an ``int`` retry reason (the request was certainly not processed: the pool
sends it again), or to an :class:`~loadgen.transport.faults.AttemptError`.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from loadgen.transport.faults import AttemptError
from loadgen.transport.frames import (
    encode_header_block_insert,
    encode_header_block_prefix,
    header_entries_size,
    indexed_header_block_prefix,
)

__all__ = [
    "MAX_RESPONSE_HEAD",
    "RETRY_REFUSED",
    "RETRY_UNPROCESSED",
    "Connection",
    "Exchange",
    "Owner",
    "Result",
    "SignatureHeaders",
    "Target",
]

RETRY_UNPROCESSED: Final = 0
"""Retry reason: the request never reached the server's application (GOAWAY, unsent, stale keep-alive)."""
RETRY_REFUSED: Final = 1
"""Retry reason: the server refused the stream (RST_STREAM REFUSED_STREAM)."""

MAX_RESPONSE_HEAD: Final = 256 * 1024
"""Largest response header section accepted (HTTP/1.1 head, HTTP/2 header block), in bytes."""

Result = bytes | int
"""What an exchange's future resolves to: the 2xx body, or a retry reason."""

SignatureHeaders = tuple[bytes, bytes, bytes]
"""The values of ``Content-Digest``, ``Signature-Input`` and ``Signature`` (``TargetSigner.sign()``)."""


class Target:
    """One endpoint URL, parsed once: where to connect and the request's constant parts."""

    __slots__ = ("authority", "h1_head", "h2_indexed", "h2_insert", "h2_prefix", "h2_table_size", "key", "path")

    def __init__(self, key: tuple[str, str, int], path: str, authority: str, content_type: str) -> None:
        scheme = key[0]
        raw_path, raw_authority, raw_type = path.encode(), authority.encode(), content_type.encode()
        self.key = key  # the origin: (scheme, host, port)
        self.path = path  # ":path" and "@path"
        self.authority = authority  # ":authority", "Host" and "@authority"
        # HPACK prefixes (:method, :scheme, :path, :authority, content-type): literals; literals that
        # insert into the dynamic table; the indexed form valid after the insert (see frames.py)
        self.h2_prefix = encode_header_block_prefix(scheme, raw_path, raw_authority, raw_type)
        self.h2_insert = encode_header_block_insert(scheme, raw_path, raw_authority, raw_type)
        self.h2_indexed = indexed_header_block_prefix(scheme)
        self.h2_table_size = header_entries_size(raw_path, raw_authority, raw_type)
        self.h1_head = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\n".encode()


class Exchange:
    """One request on one connection: its future and its deadline (``loop.time()`` seconds)."""

    __slots__ = ("deadline", "fut")

    def __init__(self, fut: asyncio.Future[Result], deadline: float) -> None:
        self.fut = fut
        self.deadline = deadline


class Owner(Protocol):
    """The per-origin state a connection reports to."""

    def on_ready(self, conn: Connection) -> None:
        """The connection accepts requests now."""

    def on_capacity(self, conn: Connection) -> None:
        """A slot was freed, or the connection's limit grew."""

    def on_unusable(self, conn: Connection) -> None:
        """The connection takes no new requests (GOAWAY, stream ids exhausted, closing); it may still drain."""

    def on_goaway(self, conn: Connection, code: int) -> None:
        """The server sent its first GOAWAY on *conn*."""

    def on_fallback(self, conn: Connection) -> None:
        """An h2c attempt found an HTTP/1.x server; the connection is closing."""

    def on_lost(self, conn: Connection, error: AttemptError) -> None:
        """The transport is gone; *error* says why (used when the connection never became ready)."""


class Connection(asyncio.Protocol):
    """Base of the HTTP/2 and HTTP/1.1 client connections.

    ``active`` counts reserved slots and open exchanges, ``limit`` the slots the
    connection offers; ``usable`` is false once it takes no new requests.
    """

    __slots__ = ("active", "closed", "limit", "owner", "ready", "usable")

    def __init__(self, owner: Owner, limit: int) -> None:
        self.owner = owner
        self.active = 0
        self.limit = limit
        self.usable = False
        self.ready = False
        self.closed = False

    def submit(self, target: Target, signature: SignatureHeaders | None, body: bytes, deadline: float) -> Exchange:
        """Send one request in a slot reserved by the caller; await ``.fut`` of the result."""
        raise NotImplementedError

    def cancel(self, exchange: Exchange) -> None:
        """The caller stopped waiting for *exchange* (task cancelled): abandon it and free its slot."""
        raise NotImplementedError

    def expire(self, now: float, timeout: float) -> None:
        """Fail the exchanges whose deadline is at or before *now* with TIMEOUT."""
        raise NotImplementedError

    def shutdown(self, message: str) -> None:
        """Close now, failing open exchanges with TCP_ERROR and *message*."""
        raise NotImplementedError

    def wait_closed(self) -> asyncio.Future[None]:
        """A future done once the transport is gone."""
        raise NotImplementedError
