"""The reference endpoint's HTTP/2 server side (h2c with prior knowledge, RFC 9113), hand-written.

Frames are parsed in place from the bytes ``data_received`` gets (only an incomplete tail is
kept) and everything one call produces goes out in one ``transport.write``. Frame layout,
constants and frame builders are :mod:`loadgen.transport.frames`'; request header blocks are
decoded by :class:`RequestDecoder` on :class:`~loadgen.transport.hpackdec.StatusDecoder`'s
table. Response header blocks never touch the dynamic table: indexed ``:status`` where the
static table has it, other fields literals without indexing, no Huffman coding.

Implemented: the SETTINGS exchange (MAX_CONCURRENT_STREAMS 1000, 16 MiB stream windows, a
16 MiB connection window, MAX_HEADER_LIST_SIZE 64 KiB), SETTINGS and PING acks; received data
acknowledged (WINDOW_UPDATE) once half a window is consumed; response bodies sent as the peer's
windows and MAX_FRAME_SIZE allow, parked until WINDOW_UPDATE or a larger INITIAL_WINDOW_SIZE;
HEADERS + CONTINUATION, PADDED and PRIORITY flags, trailers (ignored); a stream beyond
MAX_CONCURRENT_STREAMS is refused (RST_STREAM REFUSED_STREAM); a client RST_STREAM cancels its
pending reply; a client GOAWAY or EOF closes the connection. A protocol violation answers GOAWAY
with its error code, then closes; :meth:`H2Handler.shutdown` sends GOAWAY NO_ERROR.
"""

from __future__ import annotations

import asyncio
import http
import struct
from collections.abc import Sequence
from typing import Final, Protocol

from loadgen.serving.h1 import Headers, Limits, Reply
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
    encode_literal,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)
from loadgen.transport.hpackdec import HeaderBlockError, StatusDecoder

__all__ = ["MAX_CONCURRENT_STREAMS", "MAX_HEADER_LIST_SIZE", "H2App", "H2Handler", "RequestDecoder"]

MAX_CONCURRENT_STREAMS: Final = 1000
MAX_HEADER_LIST_SIZE: Final = 65536
WINDOW: Final = 1 << 24
"""Our receive window, per stream (SETTINGS_INITIAL_WINDOW_SIZE) and for the connection."""
_MAX_FRAME: Final = 16384  # our SETTINGS_MAX_FRAME_SIZE: the protocol default
_MAX_BLOCK: Final = 4 * MAX_HEADER_LIST_SIZE  # a header block (HEADERS + CONTINUATION) larger than this is refused
_MAX_WINDOW: Final = (1 << 31) - 1
_UPDATE_AT: Final = WINDOW // 2

_unpack_header = FRAME_HEADER.unpack_from
_pack_header = FRAME_HEADER.pack
_unpack_u32 = struct.Struct(">L").unpack_from
_unpack_setting = struct.Struct(">HL").unpack_from

_SERVER_PREAMBLE: Final = settings_frame(
    {
        Setting.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
        Setting.INITIAL_WINDOW_SIZE: WINDOW,
        Setting.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
    }
) + window_update_frame(0, WINDOW - 65535)
_SETTINGS_ACK: Final = settings_frame({}, ack=True)

# Static-table indices (RFC 7541 Appendix A).
_STATIC_STATUS: Final = {200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}
_STATUS_NAME: Final = 8
_CONTENT_LENGTH: Final = 28
_CONTENT_TYPE: Final = 31
_STATUS_FIELD: Final = {
    s.value: bytes((0x80 | _STATIC_STATUS[s.value],))
    if s.value in _STATIC_STATUS
    else encode_literal(_STATUS_NAME, str(s.value).encode())
    for s in http.HTTPStatus
}
_LENGTH_FIELDS: Final = [encode_literal(_CONTENT_LENGTH, str(n).encode()) for n in range(1024)]

_METHOD: Final = b":method"
_PATH: Final = b":path"
_AUTHORITY: Final = b":authority"


class H2App(Protocol):
    """What answers the requests of an :class:`H2Handler`."""

    def route(self, method: bytes, target: bytes) -> Reply | None:
        """The reply of a request that will not be handled (wrong path or method), if any."""
        ...

    def handle(self, target: bytes, authority: bytes | None, headers: Headers, body: bytes) -> Reply:
        """The reply of a routed request, once its body is complete."""
        ...


class RequestDecoder(StatusDecoder):
    """Decodes request header blocks, in order, keeping the HPACK table in step with the client's encoder."""

    __slots__ = ()

    def request(self, block: bytes) -> tuple[bytes, bytes, bytes | None, list[tuple[bytes, bytes]], int]:
        """``(:method, :path, :authority, regular fields, header list size)`` of *block*.

        Raises :class:`~loadgen.transport.hpackdec.HeaderBlockError` on invalid HPACK (the
        table can no longer be trusted: a connection error).
        """
        method = path = b""
        authority: bytes | None = None
        fields: list[tuple[bytes, bytes]] = []
        size = 0
        for name, value in self.fields(block):
            size += len(name) + len(value) + 32
            if name[:1] == b":":
                if name == _METHOD:
                    method = value
                elif name == _PATH:
                    path = value
                elif name == _AUTHORITY:
                    authority = value
            else:
                fields.append((name, value))
        return method, path, authority, fields, size


class _Stream:
    """One request being received, or one reply waiting (for its delay or for window)."""

    __slots__ = (
        "authority",
        "body",
        "closed",
        "headers",
        "offset",
        "receiving",
        "reply",
        "size",
        "target",
        "timer",
        "unacked",
        "window",
    )

    def __init__(self, target: bytes, authority: bytes | None, headers: Headers, window: int) -> None:
        self.target = target
        self.authority = authority
        self.headers = headers
        self.body: list[bytes] = []
        self.size = 0
        self.unacked = 0  # body bytes received and not yet acknowledged with a WINDOW_UPDATE
        self.receiving = True  # the client has not ended its side yet
        self.closed = False  # a reply has been started: ignore further data
        self.reply: Reply | None = None  # answered once the request ends, or body still to send from offset
        self.offset = 0
        self.window = window  # the peer's window for this stream: what we may still send
        self.timer: asyncio.TimerHandle | None = None


class _ConnectionError(Exception):
    """A protocol violation: GOAWAY with *code*, then close."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class H2Handler:
    """One HTTP/2 connection (the client preface first): feed it with :meth:`receive`; it writes to *transport*.

    A request body above ``limits.max_body`` (announced by ``content-length`` or as it arrives) is
    answered ``limits.too_large`` at once, and the stream reset with NO_ERROR after that reply.
    """

    __slots__ = (
        "_app",
        "_buf",
        "_closed",
        "_cont",
        "_decoder",
        "_last_sid",
        "_max_body",
        "_out",
        "_peer_frame",
        "_peer_window",
        "_preface",
        "_recv_unacked",
        "_send_window",
        "_settled",
        "_streams",
        "_too_large",
        "_transport",
        "_waiting",
    )

    def __init__(self, transport: asyncio.Transport, app: H2App, limits: Limits) -> None:
        self._transport = transport
        self._app = app
        self._max_body = limits.max_body
        self._too_large = limits.too_large
        self._decoder = RequestDecoder()
        self._buf = b""
        self._preface = True  # the client preface is still to be read
        self._settled = False  # the client's first SETTINGS arrived
        self._closed = False
        self._cont: tuple[int, int, list[bytes]] | None = None  # a header block awaiting CONTINUATION
        self._last_sid = 0
        self._streams: dict[int, _Stream] = {}
        self._waiting: set[int] = set()  # streams whose reply is blocked on flow control
        self._send_window = 65535  # the peer's connection window
        self._peer_window = 65535  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self._peer_frame = 16384  # the peer's SETTINGS_MAX_FRAME_SIZE
        self._recv_unacked = 0
        self._out: list[bytes] = [_SERVER_PREAMBLE]

    # -- the Handler interface ---------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self._closed:
            return
        buf = self._buf + data if self._buf else data
        try:
            pos = self._frames(buf)
        except _ConnectionError as exc:
            self._fail(exc.code)
            return
        if not self._closed:
            self._buf = buf[pos:] if pos < len(buf) else b""
            self._flush()

    def eof(self) -> bool:
        self._close()
        return False

    def lost(self) -> None:
        self._closed = True
        for stream in self._streams.values():
            if stream.timer is not None:
                stream.timer.cancel()
        self._streams.clear()
        self._waiting.clear()

    def shutdown(self) -> None:
        if not self._closed:
            self._out.append(goaway_frame(self._last_sid, ErrorCode.NO_ERROR))
            self._flush()
        self._close()

    # -- connection --------------------------------------------------------------------------------

    def _close(self) -> None:
        self.lost()
        self._transport.close()

    def _fail(self, code: int) -> None:
        self._out.append(goaway_frame(self._last_sid, code))
        self._flush()
        self._close()

    def _flush(self) -> None:
        out = self._out
        if out:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def _frames(self, buf: bytes) -> int:
        """Handle every complete frame of *buf*; the offset of the first byte not used."""
        pos = 0
        if self._preface:
            if len(buf) < len(PREFACE):
                return 0
            if not buf.startswith(PREFACE):
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            self._preface = False
            pos = len(PREFACE)
        n = len(buf)
        while n - pos >= 9 and not self._closed:
            head, flags, sid = _unpack_header(buf, pos)
            length = head >> 8
            kind = head & 0xFF
            sid &= 0x7FFFFFFF
            if length > _MAX_FRAME:
                raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR)
            end = pos + 9 + length
            if end > n:
                break
            payload = buf[pos + 9 : end]
            pos = end
            if self._cont is not None and kind != CONTINUATION:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            if not self._settled and kind != SETTINGS:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            if kind == DATA:
                self._data(sid, flags, payload)
            elif kind == HEADERS:
                self._headers(sid, flags, payload)
            elif kind == WINDOW_UPDATE:
                self._window_update(sid, payload)
            elif kind == SETTINGS:
                self._settings(sid, flags, payload)
            elif kind == RST_STREAM:
                if sid == 0:
                    raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
                if length != 4:
                    raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR)
                self._forget(sid)
            elif kind == PING:
                if sid != 0:
                    raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
                if length != 8:
                    raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR)
                if not flags & 0x1:
                    self._out.append(ping_frame(payload, ack=True))
            elif kind == CONTINUATION:
                self._continuation(sid, flags, payload)
            elif kind == GOAWAY:
                self._flush()
                self._close()
            elif kind == PRIORITY:
                if sid == 0:
                    raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
                if length != 5:
                    raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR)
            elif kind == PUSH_PROMISE:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            # unknown frame types are ignored (RFC 9113 §4.1)
        return pos

    def _settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid != 0:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
        if flags & 0x1:  # ACK
            if payload:
                raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR)
            return
        if len(payload) % 6:
            raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR)
        self._settled = True
        grew = False
        for at in range(0, len(payload), 6):
            ident, value = _unpack_setting(payload, at)
            if ident == Setting.INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise _ConnectionError(ErrorCode.FLOW_CONTROL_ERROR)
                delta = value - self._peer_window
                self._peer_window = value
                if delta:
                    grew = grew or delta > 0
                    for stream in self._streams.values():
                        stream.window += delta
                        if stream.window > _MAX_WINDOW:
                            raise _ConnectionError(ErrorCode.FLOW_CONTROL_ERROR)
            elif ident == Setting.MAX_FRAME_SIZE:
                if not 16384 <= value <= (1 << 24) - 1:
                    raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
                self._peer_frame = value
            elif ident == Setting.ENABLE_PUSH and value > 1:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            # HEADER_TABLE_SIZE: our encoder never uses the dynamic table; the others do not concern a server
        self._out.append(_SETTINGS_ACK)
        if grew and self._waiting:
            self._resume(0)

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR)
        increment = _unpack_u32(payload)[0] & 0x7FFFFFFF
        if sid == 0:
            if increment == 0:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ConnectionError(ErrorCode.FLOW_CONTROL_ERROR)
            if self._waiting:
                self._resume(0)
            return
        stream = self._streams.get(sid)
        if stream is None:
            return
        if increment == 0 or stream.window + increment > _MAX_WINDOW:
            code = ErrorCode.PROTOCOL_ERROR if increment == 0 else ErrorCode.FLOW_CONTROL_ERROR
            self._reset(sid, code)
            return
        stream.window += increment
        if sid in self._waiting:
            self._send_body(sid, stream)

    # -- requests ----------------------------------------------------------------------------------

    def _headers(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0 or not sid & 1:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
        start, end = 0, len(payload)
        if flags & PADDED:
            if not payload:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            start = 1
            end -= payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
        if end < start:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
        block = payload[start:end] if start or end != len(payload) else payload
        if flags & END_HEADERS:
            self._request(sid, flags, block)
        else:
            self._cont = (sid, flags, [block])

    def _continuation(self, sid: int, flags: int, payload: bytes) -> None:
        cont = self._cont
        if cont is None or cont[0] != sid:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
        parts = cont[2]
        parts.append(payload)
        if sum(len(part) for part in parts) > _MAX_BLOCK:
            raise _ConnectionError(ErrorCode.ENHANCE_YOUR_CALM)
        if flags & END_HEADERS:
            self._cont = None
            self._request(sid, cont[1], b"".join(parts))

    def _request(self, sid: int, flags: int, block: bytes) -> None:
        """A complete header block: a new request, or a request's trailers."""
        try:
            method, target, authority, headers, size = self._decoder.request(block)
        except HeaderBlockError:
            raise _ConnectionError(ErrorCode.COMPRESSION_ERROR) from None
        if size > MAX_HEADER_LIST_SIZE:
            raise _ConnectionError(ErrorCode.ENHANCE_YOUR_CALM)
        ended = bool(flags & END_STREAM)
        if sid <= self._last_sid:
            stream = self._streams.get(sid)
            if stream is None or not stream.receiving:
                return  # a stream already closed or reset: frames in flight are ignored
            if not ended:  # trailers must end the stream
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            stream.receiving = False
            if not stream.closed:
                self._end(sid, stream)
            return
        self._last_sid = sid
        if len(self._streams) >= MAX_CONCURRENT_STREAMS:
            self._out.append(rst_stream_frame(sid, ErrorCode.REFUSED_STREAM))
            return
        stream = _Stream(target, authority, headers, self._peer_window)
        self._streams[sid] = stream
        stream.reply = self._app.route(method, target)
        if stream.reply is None:
            for name, value in headers:
                if name == b"content-length":
                    if value.isdigit() and int(value) > self._max_body:
                        self._reject(sid, stream, self._too_large)
                    break
        if ended and sid in self._streams:
            stream.receiving = False
            if not stream.closed:
                self._end(sid, stream)

    def _data(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
        flow = len(payload)
        unacked = self._recv_unacked + flow
        if unacked >= _UPDATE_AT:
            self._out.append(window_update_frame(0, unacked))
            unacked = 0
        self._recv_unacked = unacked
        stream = self._streams.get(sid)
        if stream is None or not stream.receiving:
            if sid > self._last_sid:  # DATA on an idle stream
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            return  # closed or reset meanwhile
        data = payload
        if flags & PADDED:
            if not payload or payload[0] >= flow:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR)
            data = payload[1 : flow - payload[0]]
        ended = flags & END_STREAM
        if ended:
            stream.receiving = False
        else:
            stream.unacked += flow
            if stream.unacked >= _UPDATE_AT:
                self._out.append(window_update_frame(sid, stream.unacked))
                stream.unacked = 0
        if stream.closed:
            return
        if data:
            stream.size += len(data)
            if stream.size > self._max_body:
                self._reject(sid, stream, self._too_large)
                return
            stream.body.append(data)
        if ended:
            self._end(sid, stream)

    def _end(self, sid: int, stream: _Stream) -> None:
        reply = stream.reply
        if reply is None:
            parts = stream.body
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            reply = self._app.handle(stream.target, stream.authority, stream.headers, body)
        stream.body = []
        stream.closed = True
        if reply.delay > 0:
            stream.timer = asyncio.get_running_loop().call_later(reply.delay, self._delayed, sid, reply)
        else:
            self._reply(sid, stream, reply)

    def _delayed(self, sid: int, reply: Reply) -> None:
        stream = self._streams.get(sid)
        if stream is None or self._closed:
            return
        stream.timer = None
        self._reply(sid, stream, reply)
        self._flush()

    def _reject(self, sid: int, stream: _Stream, reply: Reply) -> None:
        """Answer before the request body has fully arrived, then ask the client to stop (RST NO_ERROR)."""
        stream.closed = True
        stream.body = []
        self._reply(sid, stream, reply)
        if sid not in self._waiting and stream.receiving:  # all sent: the rest of the request is not wanted
            self._out.append(rst_stream_frame(sid, ErrorCode.NO_ERROR))

    # -- replies -----------------------------------------------------------------------------------

    def _reply(self, sid: int, stream: _Stream, reply: Reply) -> None:
        body = reply.body
        size = len(body)
        block = b"".join(
            (
                _STATUS_FIELD.get(reply.status) or encode_literal(_STATUS_NAME, str(reply.status).encode()),
                encode_literal(_CONTENT_TYPE, reply.content_type),
                _LENGTH_FIELDS[size] if size < 1024 else encode_literal(_CONTENT_LENGTH, str(size).encode()),
                *(encode_literal(name, value) for name, value in reply.headers),
            )
        )
        out = self._out
        flags = END_HEADERS if body else END_HEADERS | END_STREAM
        frame = self._peer_frame
        if len(block) <= frame:
            out.append(_pack_header(len(block) << 8 | HEADERS, flags, sid))
            out.append(block)
        else:
            self._split_block(sid, flags, block)
        if not body:
            self._done(sid)
            return
        stream.reply = reply
        stream.offset = 0
        window = stream.window
        if size <= frame and size <= window and size <= self._send_window:  # the common case: one DATA frame
            stream.window = window - size
            self._send_window -= size
            out.append(_pack_header(size << 8 | DATA, END_STREAM, sid))
            out.append(body)
            self._done(sid)
            return
        self._send_body(sid, stream)

    def _split_block(self, sid: int, flags: int, block: bytes) -> None:
        """A header block larger than the peer's frames: HEADERS, then CONTINUATION frames."""
        frame = self._peer_frame
        parts = [block[at : at + frame] for at in range(0, len(block), frame)]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            kind = HEADERS if index == 0 else CONTINUATION
            part_flags = (flags & END_STREAM if index == 0 else 0) | (END_HEADERS if last else 0)
            self._out.append(_pack_header(len(part) << 8 | kind, part_flags, sid) + part)

    def _send_body(self, sid: int, stream: _Stream) -> None:
        """Send as much of the pending body as the windows allow; park the rest."""
        reply = stream.reply
        assert reply is not None
        body = reply.body
        total = len(body)
        offset = stream.offset
        out = self._out
        frame = self._peer_frame
        while offset < total:
            window = min(stream.window, self._send_window)
            if window <= 0:
                stream.offset = offset
                self._waiting.add(sid)
                return
            size = min(window, frame, total - offset)
            end = offset + size
            out.append(_pack_header(size << 8 | DATA, END_STREAM if end == total else 0, sid))
            out.append(body[offset:end])
            stream.window -= size
            self._send_window -= size
            offset = end
        self._waiting.discard(sid)
        self._done(sid)

    def _done(self, sid: int) -> None:
        """The whole reply went out."""
        self._streams.pop(sid, None)

    def _resume(self, sid: int) -> None:
        targets: Sequence[int] = list(self._waiting) if sid == 0 else ([sid] if sid in self._waiting else [])
        for stream_id in targets:
            stream = self._streams.get(stream_id)
            if stream is None:
                self._waiting.discard(stream_id)
            else:
                self._send_body(stream_id, stream)

    def _reset(self, sid: int, code: int) -> None:
        self._out.append(rst_stream_frame(sid, code))
        self._forget(sid)

    def _forget(self, sid: int) -> None:
        stream = self._streams.pop(sid, None)
        self._waiting.discard(sid)
        if stream is not None and stream.timer is not None:
            stream.timer.cancel()
