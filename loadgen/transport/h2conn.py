"""A lean HTTP/2 client connection on an asyncio Protocol (RFC 9113), for POSTs with small bodies.

Outbound bytes of one event-loop iteration are gathered and written with one
``transport.write`` (a ``call_soon`` flush), so the many requests a burst of
responses releases share one syscall. Inbound frames are parsed in place from
the bytes ``data_received`` gets; only an incomplete tail is kept.

Implemented: the preface and SETTINGS exchange (ENABLE_PUSH=0, a 16 MiB
stream window, a 64 MiB connection window), SETTINGS/PING acks, send-side flow
control (connection and stream windows, the peer's MAX_FRAME_SIZE, bodies
parked until WINDOW_UPDATE), receive-side WINDOW_UPDATEs once half a window is
consumed, HEADERS + CONTINUATION, PADDED and PRIORITY flags, informational
responses and trailers, RST_STREAM (REFUSED_STREAM → retry), GOAWAY (streams
above ``last_stream_id`` → retry, then drain), stream id exhaustion (drain, the
pool opens a new connection), per-request deadlines (RST_STREAM CANCEL).

Response header blocks go through :class:`~loadgen.transport.hpackdec.StatusDecoder`
(the table, ``:status`` and ``content-length``), which remembers the blocks
that leave its table unchanged, so a server's repeated response block is
decoded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Final, cast

from loadgen.transport.base import (
    MAX_RESPONSE_HEAD,
    RETRY_REFUSED,
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
from loadgen.transport.frames import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCode,
    Setting,
    encode_signature_fields,
    encode_table_size_update,
    error_name,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)
from loadgen.transport.hpackdec import HeaderBlockError, StatusDecoder

__all__ = ["CONNECTION_WINDOW", "MAX_FRAME_SIZE", "MAX_STREAM_ID", "STREAM_WINDOW", "H2Connection", "H2Stream"]

STREAM_WINDOW: Final = 1 << 24
"""Our SETTINGS_INITIAL_WINDOW_SIZE: how much response body a stream may receive unacknowledged."""
CONNECTION_WINDOW: Final = 1 << 26
"""Our connection receive window (raised from 65,535 by a WINDOW_UPDATE after the preface)."""
MAX_FRAME_SIZE: Final = 1 << 18
"""Our SETTINGS_MAX_FRAME_SIZE: the largest frame payload we accept."""
MAX_STREAM_ID: Final = (1 << 31) - 1
_MAX_WINDOW: Final = (1 << 31) - 1
_PEER_DEFAULT_STREAMS: Final = 100  # assumed until the server's SETTINGS say otherwise
_GOAWAY_GRACE: Final = 1.0  # seconds of silence after a GOAWAY before open streams are given up (and resent)
_STREAM_UPDATE_AT: Final = STREAM_WINDOW // 2
_CONNECTION_UPDATE_AT: Final = CONNECTION_WINDOW // 2

_TCP_ERROR: Final = FAULT_STATUS[Fault.CONNECTION]
_HTTP_ERROR: Final = FAULT_STATUS[Fault.PROTOCOL]
_TIMEOUT: Final = FAULT_STATUS[Fault.TIMEOUT]

_unpack_header = FRAME_HEADER.unpack_from
_pack_header = FRAME_HEADER.pack
_unpack_u32 = struct.Struct(">L").unpack_from
_unpack_u32x2 = struct.Struct(">LL").unpack_from
_unpack_setting = struct.Struct(">HL").unpack_from

_CLIENT_SETTINGS = settings_frame(
    {
        Setting.ENABLE_PUSH: 0,
        Setting.MAX_CONCURRENT_STREAMS: 0,
        Setting.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
        Setting.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
    }
)
_CLIENT_PREAMBLE = PREFACE + _CLIENT_SETTINGS + window_update_frame(0, CONNECTION_WINDOW - 65535)
_SETTINGS_ACK = settings_frame({}, ack=True)


class H2Stream(Exchange):
    """One request/response exchange on an HTTP/2 connection."""

    __slots__ = (
        "body",
        "length",
        "offset",
        "parts",
        "pending",
        "received",
        "recv_unacked",
        "send_window",
        "sid",
        "status",
    )

    def __init__(self, fut: asyncio.Future[Result], deadline: float, sid: int, send_window: int) -> None:
        super().__init__(fut, deadline)
        self.sid = sid
        self.status = 0  # 0 until a final (or informational) :status arrives
        self.length = -1  # the response's content-length, -1 when it declared none
        self.body = b""
        self.parts: list[bytes] | None = None
        self.pending: bytes | None = None  # request body still to send (flow control)
        self.offset = 0
        self.send_window = send_window
        self.recv_unacked = 0
        self.received = 0  # response body bytes so far


class _Headers:
    """A header block being assembled from HEADERS + CONTINUATION frames."""

    __slots__ = ("flags", "parts", "sid", "size")

    def __init__(self, sid: int, flags: int, first: bytes) -> None:
        self.sid = sid
        self.flags = flags
        self.parts = [first]
        self.size = len(first)


class H2Connection(Connection):
    """An HTTP/2 client connection (h2c with prior knowledge, or TLS with ALPN ``h2``).

    With *await_settings* the connection is announced ready only once the
    server's first SETTINGS frame arrived, and an ``HTTP/1.x`` answer to the
    preface (or a close before any SETTINGS) is reported as a fallback.
    """

    __slots__ = (
        "_blocked",
        "_budget_left",
        "_closed_fut",
        "_concurrency",
        "_cont",
        "_decoder",
        "_error",
        "_flush_scheduled",
        "_goaway",
        "_goaway_quiet",
        "_indexed",
        "_loop",
        "_max_response",
        "_max_streams",
        "_need",
        "_out",
        "_paused",
        "_peer_initial_window",
        "_peer_max_frame",
        "_pending",
        "_pending_len",
        "_recv_unacked",
        "_require_alpn",
        "_send_window",
        "_settled",
        "_size_update",
        "_streams",
        "_table_size",
        "_transport",
        "alpn_http11",
        "answered",
        "await_settings",
        "budget_spent",
        "next_sid",
        "received_any",
        "sid_limit",
    )

    def __init__(
        self,
        owner: Owner,
        loop: asyncio.AbstractEventLoop,
        max_streams: int,
        await_settings: bool,
        stream_budget: int | None = None,
        require_alpn: bool = False,
        max_response: int | None = None,
    ) -> None:
        super().__init__(owner, min(max_streams, _PEER_DEFAULT_STREAMS))
        self._max_response = max_response
        self._loop = loop
        self._max_streams = max_streams
        self.await_settings = await_settings
        self._transport: asyncio.Transport | None = None
        self._closed_fut: asyncio.Future[None] = loop.create_future()
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._streams: dict[int, H2Stream] = {}
        self._blocked: dict[int, H2Stream] = {}  # streams with body bytes waiting for window, in order
        self.next_sid = 1
        # streams this connection may open: all ids, or the origin's learned budget (see the pool)
        self.sid_limit = MAX_STREAM_ID if stream_budget is None else min(MAX_STREAM_ID, 2 * stream_budget - 1)
        # limit = min(concurrency, streams allowed but not finished): reserved slots never outnumber the ids left
        self._concurrency = self.limit
        self._budget_left = (self.sid_limit + 1) // 2
        self.limit = min(self._concurrency, self._budget_left)
        self.budget_spent = False  # it opened sid_limit's streams and drained without a GOAWAY
        self.answered = 0  # responses completed (any status)
        self._send_window = 65535
        self._peer_initial_window = 65535
        self._peer_max_frame = 16384
        self._recv_unacked = 0
        self._decoder = StatusDecoder()
        # request HPACK state: the target whose constants sit in the server's dynamic table (None: not yet;
        # False: never on this connection), the table size the server allows, a size update to send
        self._indexed: Target | bool | None = None
        self._table_size = 4096
        self._size_update = b""
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 0
        self._cont: _Headers | None = None
        self._settled = False  # the server's first SETTINGS frame arrived
        self._goaway: int | None = None  # last_stream_id of a received GOAWAY
        self._goaway_quiet = 0.0  # loop time of the last bytes received after that GOAWAY
        self._error: AttemptError | None = None  # why we closed the connection ourselves
        self._paused = False
        self.alpn_http11 = False  # TLS negotiated something other than h2 (the pool switches protocols)
        self._require_alpn = require_alpn  # over TLS, no ALPN answer means HTTP/1.1
        self.received_any = False

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and not self.await_settings:
            alpn = ssl_object.selected_alpn_protocol()
            if alpn != "h2" and (alpn is not None or self._require_alpn):
                self.alpn_http11 = True
                return
        self._transport.write(_CLIENT_PREAMBLE)
        if not self.await_settings:
            self._become_ready()

    def data_received(self, data: bytes) -> None:
        if self._goaway is not None:
            self._goaway_quiet = self._loop.time()
        if self._pending_len:
            self._pending.append(data)
            self._pending_len += len(data)
            if self._pending_len < self._need:
                return
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_len = 0
        if not self._settled and not self._check_first_frame(data):
            return
        n = len(data)
        off = 0
        streams = self._streams
        unpack = _unpack_header
        while n - off >= 9:
            type_length, flags, sid = unpack(data, off)
            length = type_length >> 8
            if length > MAX_FRAME_SIZE:
                self._fail(ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds our MAX_FRAME_SIZE")
                return
            start = off + 9
            end = start + length
            if end > n:
                break
            frame_type = type_length & 0xFF
            sid &= 0x7FFFFFFF
            if self._cont is not None and frame_type != CONTINUATION:
                self._fail(ErrorCode.PROTOCOL_ERROR, "header block interrupted by another frame")
                return
            if frame_type == DATA:
                if sid == 0:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "DATA frame on stream 0")
                    return
                unacked = self._recv_unacked + length
                if unacked >= _CONNECTION_UPDATE_AT:
                    self._queue(window_update_frame(0, unacked))
                    unacked = 0
                self._recv_unacked = unacked
                stream = streams.get(sid)
                if stream is not None:
                    if flags & PADDED:
                        if length == 0 or data[start] >= length:
                            self._fail(ErrorCode.PROTOCOL_ERROR, "DATA padding exceeds the frame")
                            return
                        chunk = data[start + 1 : end - data[start]]
                    else:
                        chunk = data[start:end]
                    if stream.status < 200:
                        self._stream_error(stream, ErrorCode.PROTOCOL_ERROR, "DATA before the response headers")
                    elif self._max_response is not None and stream.received + len(chunk) > self._max_response:
                        self._too_large(stream, None)
                    else:
                        stream.received += len(chunk)
                        if stream.body:
                            if stream.parts is None:
                                stream.parts = [stream.body, chunk]
                            else:
                                stream.parts.append(chunk)
                        else:
                            stream.body = chunk
                        if flags & END_STREAM:
                            self._complete(stream)
                        else:
                            received = stream.recv_unacked + length
                            if received >= _STREAM_UPDATE_AT:
                                self._queue(window_update_frame(sid, received))
                                received = 0
                            stream.recv_unacked = received
            elif frame_type == HEADERS:
                if sid == 0:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "HEADERS frame on stream 0")
                    return
                p = start
                q = end
                if flags & PADDED:
                    if length == 0:
                        self._fail(ErrorCode.PROTOCOL_ERROR, "HEADERS padding exceeds the frame")
                        return
                    q -= data[p]
                    p += 1
                if flags & PRIORITY_FLAG:
                    p += 5
                if q < p:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "HEADERS padding exceeds the frame")
                    return
                block = data[p:q]
                if flags & END_HEADERS:
                    if not self._headers(sid, flags, block):
                        return
                else:
                    self._cont = _Headers(sid, flags, block)
            elif not self._control(frame_type, flags, sid, data, start, end, length):
                return
            off = end
        if self.closed:
            return
        if off < n:
            rest = data[off:] if off else data
            self._pending.append(rest)
            self._pending_len = n - off
            self._need = 9 + (unpack(rest, 0)[0] >> 8) if n - off >= 9 else 9

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.usable = False
        if self._goaway is not None:
            self._retry_unanswered()
        error = self._error
        if error is None:
            detail = f": {exc}" if exc is not None else ""
            what = "connection closed after GOAWAY" if self._goaway is not None else "connection lost"
            error = AttemptError(_TCP_ERROR, what + detail)
        self._fail_streams(error.code, error.message)
        self._out.clear()
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)
        self.owner.on_lost(self, error)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._blocked and not self.closed:
            self._resume_blocked()

    # -- the pool's side ----------------------------------------------------------------------------

    def submit(self, target: Target, signature: SignatureHeaders | None, body: bytes, deadline: float) -> H2Stream:
        """Open a stream for ``POST`` *body* to *target* (the slot is already reserved)."""
        fut: asyncio.Future[Result] = self._loop.create_future()
        sid = self.next_sid
        stream = H2Stream(fut, deadline, sid, self._peer_initial_window)
        if not self.usable:  # closed or draining since the slot was reserved: nothing was sent
            fut.set_result(RETRY_UNPROCESSED)
            self.active -= 1
            return stream
        self.next_sid = sid + 2
        self._streams[sid] = stream
        indexed = self._indexed
        if indexed is target:
            prefix = target.h2_indexed
        elif indexed is None and target.h2_table_size <= self._table_size:
            self._indexed = target
            prefix = target.h2_insert
        else:
            prefix = target.h2_prefix
        if self._size_update:
            prefix = self._size_update + prefix
            self._size_update = b""
        block = prefix if signature is None else encode_signature_fields(prefix, *signature)
        out = self._out
        size = len(block)
        if size <= self._peer_max_frame:
            out.append(_pack_header(size << 8 | HEADERS, END_HEADERS if body else END_HEADERS | END_STREAM, sid))
            out.append(block)
        else:
            self._headers_with_continuation(sid, block, not body)
        if body:
            size = len(body)
            if size <= self._send_window and size <= stream.send_window and size <= self._peer_max_frame:
                out.append(_pack_header(size << 8 | DATA, END_STREAM, sid))
                out.append(body)
                self._send_window -= size
                stream.send_window -= size
            else:
                stream.pending = body
                self._send_body(stream)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        if self.next_sid > self.sid_limit:
            self.budget_spent = self.sid_limit < MAX_STREAM_ID
            self._unusable()
        return stream

    def cancel(self, exchange: Exchange) -> None:
        stream = cast(H2Stream, exchange)
        if self._streams.pop(stream.sid, None) is not None:
            self._reset(stream, ErrorCode.CANCEL)
            self._release()

    def expire(self, now: float, timeout: float) -> None:
        if self._goaway is not None and now - self._goaway_quiet >= min(_GOAWAY_GRACE, timeout / 4):
            # Silent since its GOAWAY with streams still open: hypercorn, past keep_alive_max_requests,
            # never answers the streams it received last and keeps the connection open. Give up on it.
            self._retry_unanswered()
            self._error = AttemptError(_TCP_ERROR, "the endpoint went silent after GOAWAY")
            self._fail_streams(_TCP_ERROR, "the endpoint went silent after GOAWAY")
            self._close(goaway=None)
            return
        expired = [stream for stream in self._streams.values() if stream.deadline <= now]
        for stream in expired:
            del self._streams[stream.sid]
            self._reset(stream, ErrorCode.CANCEL)
            if not stream.fut.done():
                stream.fut.set_exception(AttemptError(_TIMEOUT, f"no response within {timeout:g} s"))
            self._release()

    def shutdown(self, message: str) -> None:
        if self.closed:
            return
        self._error = AttemptError(_TCP_ERROR, message)
        self._fail_streams(_TCP_ERROR, message)
        self._close(goaway=ErrorCode.NO_ERROR)

    def wait_closed(self) -> asyncio.Future[None]:
        return self._closed_fut

    @property
    def got_goaway(self) -> bool:
        """The server sent a GOAWAY."""
        return self._goaway is not None

    @property
    def open_streams(self) -> int:
        """Streams with a request in flight."""
        return len(self._streams)

    # -- internals -----------------------------------------------------------------------------

    def _retry_unanswered(self) -> None:
        """After a GOAWAY: resend the streams that got no response header before the connection ended.

        They are at or below last_stream_id, so they may have run; but Dispatch runs are at-least-once,
        and failing them would only make the caller retry them anyway.
        """
        unanswered = [stream for stream in self._streams.values() if stream.status == 0]
        for stream in unanswered:
            del self._streams[stream.sid]
            self._blocked.pop(stream.sid, None)
            if not stream.fut.done():
                stream.fut.set_result(RETRY_UNPROCESSED)
            self.active -= 1

    def _become_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.usable = True
            self.owner.on_ready(self)

    def _unusable(self) -> None:
        if self.usable:
            self.usable = False
            self.owner.on_unusable(self)
        if not self._streams:
            self._close(goaway=ErrorCode.NO_ERROR)

    def _queue(self, frame: bytes) -> None:
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if out and not self.closed and self._transport is not None:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            self._transport.write(data)

    def _close(self, goaway: int | None) -> None:
        """Write what is queued (and a GOAWAY), then close the transport."""
        if self.closed:
            return
        self.usable = False
        if goaway is not None:
            self._out.append(goaway_frame(0, goaway))
        self._flush()
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _fail(self, code: int, message: str) -> None:
        """A connection error caused by the server: GOAWAY, fail every stream with HTTP_ERROR, close."""
        if self.closed:
            return
        text = f"HTTP/2 protocol error ({error_name(code)}): {message}"
        self._error = AttemptError(_HTTP_ERROR, text)
        was_usable = self.usable
        self._fail_streams(_HTTP_ERROR, text)
        self._close(goaway=code)
        if was_usable:
            self.owner.on_unusable(self)

    def _fail_streams(self, code: int, message: str) -> None:
        streams = list(self._streams.values())
        self._streams.clear()
        self._blocked.clear()
        for stream in streams:
            if not stream.fut.done():
                stream.fut.set_exception(AttemptError(code, message))
        self.active -= len(streams)  # reserved slots not yet submitted stay counted until submit()

    def _stream_error(self, stream: H2Stream, code: int, message: str) -> None:
        """A stream error caused by the server: RST_STREAM, fail the request with HTTP_ERROR."""
        self._streams.pop(stream.sid, None)
        self._reset(stream, code)
        if not stream.fut.done():
            stream.fut.set_exception(AttemptError(_HTTP_ERROR, f"HTTP/2 stream error ({error_name(code)}): {message}"))
        self._release()

    def _too_large(self, stream: H2Stream, size: int | None) -> None:
        """A response body above ``max_response``: cancel the stream, fail the attempt (not retried)."""
        assert self._max_response is not None
        self._streams.pop(stream.sid, None)
        self._reset(stream, ErrorCode.CANCEL)
        if not stream.fut.done():
            stream.fut.set_exception(fault(Fault.TOO_LARGE, too_large_message(size, self._max_response)))
        self._release()

    def _reset(self, stream: H2Stream, code: int) -> None:
        self._blocked.pop(stream.sid, None)
        stream.pending = None
        self._queue(rst_stream_frame(stream.sid, code))

    def _release(self) -> None:
        self.active -= 1
        if self.sid_limit < MAX_STREAM_ID:
            self._budget_left -= 1
            self.limit = min(self._concurrency, self._budget_left)
        if self.usable:
            self.owner.on_capacity(self)
        elif not self._streams and not self.closed and self.ready:
            self._close(goaway=ErrorCode.NO_ERROR)  # drained after GOAWAY or stream id exhaustion

    def _complete(self, stream: H2Stream) -> None:
        """The server ended the stream: resolve the request with the response."""
        del self._streams[stream.sid]
        self.answered += 1
        if stream.pending is not None:  # a complete response before our whole body: stop sending it
            self._reset(stream, ErrorCode.CANCEL)
        status = stream.status
        body = stream.body if stream.parts is None else b"".join(stream.parts)
        fut = stream.fut
        if not fut.done():
            if 0 <= stream.length != len(body):  # malformed (RFC 9113 §8.1.1): as a cut HTTP/1.1 body
                message = f"response body of {len(body)} bytes, but its content-length says {stream.length}"
                fut.set_exception(AttemptError(_TCP_ERROR, message))
            elif 200 <= status < 300:
                fut.set_result(body)
            else:
                fut.set_exception(AttemptError(status_for_http(status), describe_http_error(status, body)))
        self._release()

    def _headers(self, sid: int, flags: int, block: bytes) -> bool:
        """Decode a complete header block; False if the connection failed."""
        decoder = self._decoder
        try:
            status = decoder.decode(block)
        except HeaderBlockError as exc:
            self._fail(ErrorCode.COMPRESSION_ERROR, f"undecodable header block: {exc}")
            return False
        length = decoder.content_length
        stream = self._streams.get(sid)
        if stream is None:
            if sid >= self.next_sid or not sid & 1:
                self._fail(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {sid}, which we never opened")
                return False
            return True  # a stream we reset or timed out: the block was decoded for the table's sake
        if stream.status < 200:  # response headers (or informational ones)
            if not 100 <= status < 600 or status == 101:
                self._stream_error(stream, ErrorCode.PROTOCOL_ERROR, "response without a valid :status")
                return True
            stream.status = status
            stream.length = length if status >= 200 else -1
            if self._max_response is not None and stream.length > self._max_response:
                self._too_large(stream, stream.length)
                return True
            if status < 200 and flags & END_STREAM:
                self._stream_error(stream, ErrorCode.PROTOCOL_ERROR, "stream ended after an informational response")
                return True
        if flags & END_STREAM:  # end of a header-only response, or trailers
            self._complete(stream)
        return True

    def _control(self, frame_type: int, flags: int, sid: int, data: bytes, start: int, end: int, length: int) -> bool:
        """Every frame but DATA and HEADERS; False if the connection failed."""
        if frame_type == CONTINUATION:
            cont = self._cont
            if cont is None or cont.sid != sid:
                self._fail(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without a header block in progress")
                return False
            cont.parts.append(data[start:end])
            cont.size += length
            if cont.size > MAX_RESPONSE_HEAD:
                self._fail(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
                return False
            if flags & END_HEADERS:
                self._cont = None
                return self._headers(sid, cont.flags, b"".join(cont.parts))
            return True
        if frame_type == WINDOW_UPDATE:
            if length != 4:
                self._fail(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
                return False
            increment = _unpack_u32(data, start)[0] & 0x7FFFFFFF
            if sid == 0:
                if increment == 0:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "connection WINDOW_UPDATE of 0")
                    return False
                self._send_window += increment
                if self._send_window > _MAX_WINDOW:
                    self._fail(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2**31-1")
                    return False
                if self._blocked:
                    self._resume_blocked()
                return True
            stream = self._streams.get(sid)
            if stream is not None:
                if increment == 0:
                    self._stream_error(stream, ErrorCode.PROTOCOL_ERROR, "stream WINDOW_UPDATE of 0")
                    return True
                stream.send_window += increment
                if stream.send_window > _MAX_WINDOW:
                    self._stream_error(stream, ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2**31-1")
                elif stream.pending is not None:
                    self._send_body(stream)
                    self._schedule_flush()
            return True
        if frame_type == SETTINGS:
            return self._settings(flags, sid, data, start, end, length)
        if frame_type == PING:
            if sid != 0 or length != 8:
                self._fail(ErrorCode.PROTOCOL_ERROR, "malformed PING")
                return False
            if not flags & 0x1:
                self._queue(ping_frame(data[start:end], ack=True))
            return True
        if frame_type == RST_STREAM:
            if length != 4 or sid == 0:
                self._fail(ErrorCode.PROTOCOL_ERROR, "malformed RST_STREAM")
                return False
            stream = self._streams.pop(sid, None)
            if stream is not None:
                self._blocked.pop(sid, None)
                stream.pending = None
                code = _unpack_u32(data, start)[0]
                if not stream.fut.done():
                    if code == ErrorCode.REFUSED_STREAM:
                        stream.fut.set_result(RETRY_REFUSED)
                    else:
                        stream.fut.set_exception(
                            AttemptError(_TCP_ERROR, f"stream reset by the endpoint ({error_name(code)})")
                        )
                self._release()
            return True
        if frame_type == GOAWAY:
            if sid != 0 or length < 8:
                self._fail(ErrorCode.PROTOCOL_ERROR, "malformed GOAWAY")
                return False
            self._on_goaway(*_unpack_u32x2(data, start))
            return not self.closed
        if frame_type == PUSH_PROMISE:
            self._fail(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE although we disabled push")
            return False
        if frame_type == PRIORITY:
            if length != 5:
                self._fail(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY of the wrong size")
                return False
            return True
        return True  # unknown frame types are ignored (RFC 9113 §4.1)

    def _settings(self, flags: int, sid: int, data: bytes, start: int, end: int, length: int) -> bool:
        if sid != 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
            return False
        if flags & 0x1:  # ACK
            if length:
                self._fail(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
                return False
            return True
        if length % 6:
            self._fail(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS payload not a multiple of 6")
            return False
        grew = False
        for at in range(start, end, 6):
            ident, value = _unpack_setting(data, at)
            if ident == Setting.MAX_CONCURRENT_STREAMS:
                concurrency = min(self._max_streams, value)
                grew = grew or concurrency > self._concurrency
                self._concurrency = concurrency
                self.limit = min(concurrency, self._budget_left)
            elif ident == Setting.INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    self._fail(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2**31-1")
                    return False
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                if delta:
                    for stream in self._streams.values():
                        stream.send_window += delta
                    grew = grew or delta > 0
            elif ident == Setting.MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                    return False
                self._peer_max_frame = value
            elif ident == Setting.HEADER_TABLE_SIZE:
                if value < self._table_size:  # the decoder shrinks: say so at the start of our next block
                    self._table_size = value
                    self._size_update = encode_table_size_update(value)
                    indexed = self._indexed
                    if isinstance(indexed, Target) and indexed.h2_table_size > value:
                        self._indexed = False  # our entries are evicted: literals from now on
            elif ident == Setting.ENABLE_PUSH and value > 1:
                self._fail(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH out of range")
                return False
            # MAX_HEADER_LIST_SIZE: advisory.
        self._queue(_SETTINGS_ACK)
        if not self._settled:
            self._settled = True
        if not self.ready:
            self._become_ready()
        elif grew:
            if self._blocked:
                self._resume_blocked()
            if self.usable:
                self.owner.on_capacity(self)
        return True

    def _on_goaway(self, last_stream_id: int, code: int) -> None:
        last_stream_id &= 0x7FFFFFFF
        previous = self._goaway
        if previous is not None and last_stream_id > previous:
            last_stream_id = previous  # a later GOAWAY may only lower it
        self._goaway = last_stream_id
        self._goaway_quiet = self._loop.time()
        if previous is None:
            self.owner.on_goaway(self, code)
        if code != ErrorCode.NO_ERROR:
            self._error = AttemptError(_TCP_ERROR, f"connection closed by the endpoint (GOAWAY {error_name(code)})")
        unprocessed = [stream for sid, stream in self._streams.items() if sid > last_stream_id]
        for stream in unprocessed:
            del self._streams[stream.sid]
            self._blocked.pop(stream.sid, None)
            stream.pending = None
            if not stream.fut.done():
                stream.fut.set_result(RETRY_UNPROCESSED)
            self.active -= 1
        if self.usable:
            self.usable = False
            self.owner.on_unusable(self)
        if not self._streams:
            self._close(goaway=None)

    def _check_first_frame(self, data: bytes) -> bool:
        """Before the server's SETTINGS: detect HTTP/1.x and garbage. False if the data was consumed."""
        self.received_any = True
        if len(data) < 9:  # wait for a whole frame header (or the close)
            self._pending.append(data)
            self._pending_len = len(data)
            self._need = 9
            return False
        if data[:5] == b"HTTP/":
            if self.await_settings:
                self.closed = True
                self.usable = False
                self.owner.on_fallback(self)
                if self._transport is not None:
                    self._transport.close()
            else:
                self._fail(ErrorCode.PROTOCOL_ERROR, "the endpoint answered with HTTP/1.x, not HTTP/2")
            return False
        type_length, flags, sid = _unpack_header(data, 0)
        if type_length & 0xFF != SETTINGS or flags & 0x1 or sid != 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "the endpoint did not start with a SETTINGS frame (not HTTP/2?)")
            return False
        return True

    def _headers_with_continuation(self, sid: int, block: bytes, end_stream: bool) -> None:
        limit = self._peer_max_frame
        out = self._out
        view = memoryview(block)
        first = view[:limit]
        out.append(_pack_header(len(first) << 8 | HEADERS, END_STREAM if end_stream else 0, sid))
        out.append(first)
        at = limit
        total = len(block)
        while at < total:
            chunk = view[at : at + limit]
            at += limit
            out.append(_pack_header(len(chunk) << 8 | CONTINUATION, END_HEADERS if at >= total else 0, sid))
            out.append(chunk)

    def _send_body(self, stream: H2Stream) -> None:
        """Send as much of the stream's pending body as the windows allow; park the rest."""
        body = stream.pending
        if body is None:
            return
        sid = stream.sid
        total = len(body)
        offset = stream.offset
        view = memoryview(body)
        out = self._out
        frame = self._peer_max_frame
        while offset < total:
            window = min(self._send_window, stream.send_window)
            if window <= 0 or self._paused:
                stream.offset = offset
                self._blocked[sid] = stream
                return
            end = offset + min(window, frame, total - offset)
            size = end - offset
            out.append(_pack_header(size << 8 | DATA, END_STREAM if end == total else 0, sid))
            out.append(view[offset:end])
            self._send_window -= size
            stream.send_window -= size
            offset = end
        stream.pending = None
        self._blocked.pop(sid, None)

    def _resume_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self._send_window <= 0 or self._paused:
                break
            self._send_body(stream)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._out and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
