"""An HTTP/1.1 keep-alive client connection on an asyncio Protocol: one request at a time.

The response parser is small and strict where it matters for framing: the
status line must be ``HTTP/1.x NNN``; the body is delimited by
``Transfer-Encoding: chunked`` (chunk extensions and trailers skipped), else by
``Content-Length`` (conflicting values are an error), else by the close of the
connection; 1xx responses are skipped; 204 and 304 have no body.
``Connection: close`` (and HTTP/1.0 without ``keep-alive``) closes the
connection after the response.

A request sent on a reused connection that closes before a single response
byte arrives is reported as not processed (the pool resends it once on a new
connection): that is the keep-alive race where the server closed an idle
connection just as the request left.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Final, cast

from loadgen.transport.base import (
    MAX_RESPONSE_HEAD,
    RETRY_UNPROCESSED,
    Connection,
    Exchange,
    Owner,
    Result,
    SignatureHeaders,
    Target,
)
from loadgen.transport.faults import (
    FAULT_STATUS,
    AttemptError,
    Fault,
    describe_http_error,
    fault,
    status_for_http,
    too_large_message,
)

__all__ = ["H1Connection", "ResponseParser"]

_TCP_ERROR: Final = FAULT_STATUS[Fault.CONNECTION]
_HTTP_ERROR: Final = FAULT_STATUS[Fault.PROTOCOL]
_TIMEOUT: Final = FAULT_STATUS[Fault.TIMEOUT]
_LARGE_BODY: Final = 64 * 1024  # bodies at least this large are written separately rather than copied

# Parser states.
_HEAD: Final = 0
_BODY: Final = 1
_CHUNK_SIZE: Final = 2
_CHUNK_DATA: Final = 3
_CHUNK_END: Final = 4
_TRAILERS: Final = 5
_UNTIL_CLOSE: Final = 6
_DONE: Final = 7


class ResponseError(Exception):
    """The bytes are not a valid HTTP/1.x response."""


class ResponseTooLarge(ResponseError):
    """The response's body is larger than the parser takes."""


class ResponseParser:
    """Incremental HTTP/1.x response parser for one response at a time.

    Feed bytes with :meth:`feed`; it returns True once a response is complete,
    then read ``status``, ``body()`` and ``keep_alive``, and call :meth:`reset`
    before the next response. Bytes past the end of the response stay in
    ``buffer``.
    """

    __slots__ = ("_parts", "_received", "_remaining", "buffer", "keep_alive", "max_body", "state", "status")

    def __init__(self, max_body: int | None = None) -> None:
        self.buffer = bytearray()
        self.max_body = max_body
        """The largest body taken; beyond it :meth:`feed` raises :class:`ResponseTooLarge`."""
        self._received = 0  # body bytes announced by chunk sizes, or read until the close
        self._parts: list[bytes] = []
        self._remaining = 0
        self.state = _HEAD
        self.status = 0
        self.keep_alive = True

    def reset(self) -> None:
        """Get ready for the next response."""
        self._parts = []
        self._remaining = 0
        self._received = 0
        self.state = _HEAD
        self.status = 0
        self.keep_alive = True

    def _count(self, size: int) -> None:
        self._received += size
        if self.max_body is not None and self._received > self.max_body:
            raise ResponseTooLarge(too_large_message(None, self.max_body))

    @property
    def until_close(self) -> bool:
        """The body is delimited by the end of the connection."""
        return self.state == _UNTIL_CLOSE

    def body(self) -> bytes:
        """The body received so far (the whole body once complete)."""
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def feed(self, data: bytes) -> bool:
        """Add bytes; True once the response is complete. Raises :class:`ResponseError`."""
        buf = self.buffer
        buf += data
        while True:
            state = self.state
            if state == _BODY:
                if len(buf) < self._remaining:
                    self._remaining -= len(buf)
                    self._parts.append(bytes(buf))
                    buf.clear()
                    return False
                self._parts.append(bytes(buf[: self._remaining]))
                del buf[: self._remaining]
                self.state = _DONE
                return True
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_RESPONSE_HEAD:
                        raise ResponseError("response head too large")
                    return False
                head = bytes(buf[:end])
                del buf[: end + 4]
                if self._head(head):
                    return True
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 4096:
                        raise ResponseError("chunk size line too long")
                    return False
                line = bytes(buf[:end]).partition(b";")[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ResponseError(f"bad chunk size {line[:40]!r}") from None
                if size < 0:
                    raise ResponseError("negative chunk size")
                if size == 0:
                    self.state = _TRAILERS
                else:
                    self._count(size)
                    self._remaining = size
                    self.state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                if not buf:
                    return False
                take = min(len(buf), self._remaining)
                self._parts.append(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return False
                self.state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return False
                if buf[:2] != b"\r\n":
                    raise ResponseError("chunk not followed by CRLF")
                del buf[:2]
                self.state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_RESPONSE_HEAD:
                        raise ResponseError("trailers too large")
                    return False
                del buf[: end + 2]
                if end == 0:
                    self.state = _DONE
                    return True
            elif state == _UNTIL_CLOSE:
                if buf:
                    self._count(len(buf))
                    self._parts.append(bytes(buf))
                    buf.clear()
                return False
            else:  # _DONE: bytes after a complete response stay buffered
                return True

    def _head(self, head: bytes) -> bool:
        """Parse a status line and headers; True if the response has no body (it is complete)."""
        lines = head.split(b"\r\n")
        line = lines[0]
        if not line.startswith(b"HTTP/1.") or len(line) < 12 or line[8:9] != b" " or line[12:13] not in (b"", b" "):
            raise ResponseError(f"bad status line {line[:60]!r}")
        code = line[9:12]
        if not code.isdigit():
            raise ResponseError(f"bad status code {code!r}")
        status = int(code)
        keep_alive = line[7:8] != b"0"  # HTTP/1.0 closes unless asked otherwise
        length: int | None = None
        transfer: bytes | None = None
        for field in lines[1:]:
            name, sep, value = field.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t"):
                raise ResponseError(f"bad header line {field[:60]!r}")
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if not value.isdigit():
                    raise ResponseError(f"bad Content-Length {value[:40]!r}")
                number = int(value)
                if length is not None and length != number:
                    raise ResponseError("conflicting Content-Length values")
                length = number
            elif name == b"transfer-encoding":
                transfer = value.lower() if transfer is None else transfer + b"," + value.lower()
            elif name == b"connection":
                tokens = {token.strip() for token in value.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        if 100 <= status < 200:
            if status == 101:
                raise ResponseError("unexpected 101 Switching Protocols")
            return False  # informational: the real response follows
        self.status = status
        self.keep_alive = keep_alive
        self._parts = []
        self._received = 0
        if length is not None and self.max_body is not None and length > self.max_body:
            raise ResponseTooLarge(too_large_message(length, self.max_body))
        if status in (204, 304):
            self.state = _DONE
            return True
        if transfer is not None:
            if transfer.rsplit(b",", 1)[-1].strip() == b"chunked":
                self.state = _CHUNK_SIZE
            else:
                self.state = _UNTIL_CLOSE
                self.keep_alive = False
            return False
        if length is None:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False
            return False
        if length == 0:
            self._parts = [b""]
            self.state = _DONE
            return True
        self._remaining = length
        self.state = _BODY
        return False


class H1Connection(Connection):
    """One HTTP/1.1 keep-alive connection; ``limit`` is 1."""

    __slots__ = ("_closed_fut", "_exchange", "_loop", "_parser", "_received", "_transport", "reused")

    def __init__(self, owner: Owner, loop: asyncio.AbstractEventLoop, max_response: int | None = None) -> None:
        super().__init__(owner, 1)
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._closed_fut: asyncio.Future[None] = loop.create_future()
        self._exchange: Exchange | None = None
        self._parser = ResponseParser(max_response)
        self._received = False
        self.reused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ready = True
        self.usable = True
        self.owner.on_ready(self)

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None:  # bytes nobody asked for: the connection can't be trusted any more
            self._close()
            return
        self._received = True
        parser = self._parser
        try:
            complete = parser.feed(data)
        except ResponseTooLarge as exc:
            self._finish(exc=fault(Fault.TOO_LARGE, str(exc)))
            return
        except ResponseError as exc:
            self._finish(exc=AttemptError(_HTTP_ERROR, f"malformed HTTP/1.1 response: {exc}"))
            return
        if complete:
            self._finish()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if self.usable:
            self.usable = False
            self.owner.on_unusable(self)
        exchange = self._exchange
        error = AttemptError(_TCP_ERROR, f"connection lost: {exc}" if exc is not None else "connection closed")
        if exchange is not None:
            self._exchange = None
            self.active -= 1
            fut = exchange.fut
            if not fut.done():
                if self._parser.until_close and not was_closed:
                    self._resolve(fut, self._parser.status, self._parser.body())
                elif not self._received and self.reused and not was_closed:
                    fut.set_result(RETRY_UNPROCESSED)
                else:
                    fut.set_exception(error)
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)
        self.owner.on_lost(self, error)

    def submit(self, target: Target, signature: SignatureHeaders | None, body: bytes, deadline: float) -> Exchange:
        """Write ``POST`` *body* to *target* (the slot is already reserved)."""
        fut: asyncio.Future[Result] = self._loop.create_future()
        exchange = Exchange(fut, deadline)
        transport = self._transport
        if not self.usable or self._exchange is not None or transport is None:
            fut.set_result(RETRY_UNPROCESSED)
            self.active -= 1
            return exchange
        self._exchange = exchange
        self._received = False
        self._parser.reset()
        if signature is None:
            head = target.h1_head + b"Content-Length: %d\r\n\r\n" % len(body)
        else:
            digest, signature_input, signature_value = signature
            head = b"".join(
                (
                    target.h1_head,
                    b"Content-Length: %d\r\nContent-Digest: " % len(body),
                    digest,
                    b"\r\nSignature-Input: ",
                    signature_input,
                    b"\r\nSignature: ",
                    signature_value,
                    b"\r\n\r\n",
                )
            )
        if len(body) < _LARGE_BODY:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
        return exchange

    def cancel(self, exchange: Exchange) -> None:
        if exchange is self._exchange:
            self._exchange = None
            self.active -= 1
            self._close()

    def expire(self, now: float, timeout: float) -> None:
        exchange = self._exchange
        if exchange is not None and exchange.deadline <= now:
            self._finish(exc=AttemptError(_TIMEOUT, f"no response within {timeout:g} s"))

    def shutdown(self, message: str) -> None:
        if self._exchange is not None:
            self._finish(exc=AttemptError(_TCP_ERROR, message))
        self._close()

    def wait_closed(self) -> asyncio.Future[None]:
        return self._closed_fut

    # -- internals -----------------------------------------------------------------------------

    def _resolve(self, fut: asyncio.Future[Result], status: int, body: bytes) -> None:
        if 200 <= status < 300:
            fut.set_result(body)
        else:
            fut.set_exception(AttemptError(status_for_http(status), describe_http_error(status, body)))

    def _finish(self, exc: AttemptError | None = None) -> None:
        """End the current exchange: with the parsed response, or failed with *exc* (then close)."""
        exchange = self._exchange
        assert exchange is not None
        self._exchange = None
        parser = self._parser
        fut = exchange.fut
        if not fut.done():
            if exc is not None:
                fut.set_exception(exc)
            else:
                self._resolve(fut, parser.status, parser.body())
        self.reused = True
        self.active -= 1
        if exc is not None or not parser.keep_alive or parser.buffer:
            self._close()
        elif self.usable:
            self.owner.on_capacity(self)

    def _close(self) -> None:
        if self.usable:
            self.usable = False
            self.owner.on_unusable(self)
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.close()
