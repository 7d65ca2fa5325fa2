"""The reference endpoint's HTTP/2 server (loadgen.endpoint.h2) frame by frame, on a raw socket."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import hpack
import pytest

from loadgen.endpoint.h2 import MAX_CONCURRENT_STREAMS, RequestDecoder
from loadgen.pb import function_pb2
from loadgen.protocol import values
from loadgen.protocol.constants import RUN_PATH
from loadgen.transport.frames import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCode,
    frame_header,
    ping_frame,
    settings_frame,
    window_update_frame,
)
from tests.endpoint.test_endpoint import KEY, ServerThread, run_request, signed_headers

Frame = tuple[int, int, int, bytes]  # type, flags, stream id, payload


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    running = ServerThread(KEY.public_key())
    yield running
    running.close()


class RawClient:
    """Frames in, frames out; response header blocks decoded with the hpack library."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.sock.sendall(PREFACE + settings_frame({}) + window_update_frame(0, 1 << 24))

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def frame(self) -> Frame | None:
        """The next frame, or ``None`` once the server closed the connection."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.buf += data
        length = int.from_bytes(self.buf[:3], "big")
        kind, flags = self.buf[3], self.buf[4]
        sid = struct.unpack(">L", self.buf[5:9])[0] & 0x7FFFFFFF
        payload = self.buf[9 : 9 + length]
        self.buf = self.buf[9 + length :]
        return kind, flags, sid, payload

    def until(self, kind: int, sid: int | None = None) -> Frame:
        while True:
            frame = self.frame()
            assert frame is not None, "connection closed"
            if frame[0] == kind and (sid is None or frame[2] == sid):
                return frame

    def block(self, body: bytes, *, extra: list[tuple[str, str]] | None = None) -> bytes:
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{self.server.port}")]
        headers += [(":path", RUN_PATH)]
        headers += [(k.lower(), v) for k, v in signed_headers(self.server, body).items()]
        return bytes(self.encoder.encode(headers + (extra or [])))

    def response(self, sid: int) -> tuple[dict[bytes, bytes], bytes]:
        """The headers and body of stream *sid*'s response (other streams' frames are dropped)."""
        headers: dict[bytes, bytes] = {}
        body = b""
        while True:
            frame = self.frame()
            assert frame is not None, "connection closed"
            kind, flags, frame_sid, payload = frame
            if frame_sid != sid:
                if kind == HEADERS:  # keep the HPACK table in step
                    self.decoder.decode(payload, raw=True)
                continue
            assert kind != RST_STREAM, f"stream reset: {payload.hex()}"
            if kind == HEADERS:
                headers = dict(self.decoder.decode(payload, raw=True))  # type: ignore[arg-type]
            elif kind == DATA:
                body += payload
            if flags & END_STREAM:
                return headers, body

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(server: ServerThread) -> Iterator[RawClient]:
    raw = RawClient(server)
    yield raw
    raw.close()


def echoed(body: bytes) -> object:
    return values.decode(function_pb2.RunResponse.FromString(body).exit.result.output)


def test_server_preface_and_ping(client: RawClient) -> None:
    _, flags, sid, payload = client.until(SETTINGS)
    assert sid == 0 and not flags
    settings = dict(struct.unpack(">HL", payload[i : i + 6]) for i in range(0, len(payload), 6))
    assert settings[0x3] == MAX_CONCURRENT_STREAMS
    client.send(ping_frame(b"12345678"))
    _, flags, _, payload = client.until(PING)
    assert flags == 0x1 and payload == b"12345678"


def test_padded_prioritised_headers_continuation_and_padded_data(client: RawClient) -> None:
    body = run_request("echo", {"x": 1})
    block = client.block(body)
    first, rest = block[:10], block[10:]
    headers_payload = bytes([3]) + struct.pack(">LB", 0, 15) + first + b"\0\0\0"
    data_payload = bytes([4]) + body + b"\0\0\0\0"
    client.send(
        frame_header(len(headers_payload), HEADERS, PADDED | PRIORITY_FLAG, 1) + headers_payload,
        frame_header(len(rest), CONTINUATION, END_HEADERS, 1) + rest,
        frame_header(len(data_payload), DATA, PADDED | END_STREAM, 1) + data_payload,
    )
    headers, answer = client.response(1)
    assert headers[b":status"] == b"200"
    assert echoed(answer) == {"x": 1}


def test_trailers_end_the_request(client: RawClient) -> None:
    body = run_request("echo", {"t": True})
    block = client.block(body)
    trailers = bytes(client.encoder.encode([("x-trailer", "1")]))
    client.send(
        frame_header(len(block), HEADERS, END_HEADERS, 1) + block,
        frame_header(len(body), DATA, 0, 1) + body,
        frame_header(len(trailers), HEADERS, END_HEADERS | END_STREAM, 1) + trailers,
    )
    headers, answer = client.response(1)
    assert headers[b":status"] == b"200"
    assert echoed(answer) == {"t": True}


def test_streams_beyond_the_limit_are_refused(client: RawClient) -> None:
    sleeping = run_request("sleep", {"ms": 60_000})
    frames = []
    for i in range(MAX_CONCURRENT_STREAMS + 1):
        block = client.block(sleeping)
        frames.append(frame_header(len(block), HEADERS, END_HEADERS, 2 * i + 1) + block)
        frames.append(frame_header(len(sleeping), DATA, END_STREAM, 2 * i + 1) + sleeping)
    client.send(*frames)
    last = 2 * MAX_CONCURRENT_STREAMS + 1
    _, _, _, payload = client.until(RST_STREAM, last)
    assert struct.unpack(">L", payload)[0] == ErrorCode.REFUSED_STREAM


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (frame_header(8, PING, 0, 1) + bytes(8), ErrorCode.PROTOCOL_ERROR),  # PING on a stream
        (frame_header(4, WINDOW_UPDATE, 0, 0) + bytes(4), ErrorCode.PROTOCOL_ERROR),  # zero increment
        (frame_header(4, WINDOW_UPDATE, 0, 0) + struct.pack(">L", (1 << 31) - 1), ErrorCode.FLOW_CONTROL_ERROR),
        (frame_header(5, SETTINGS, 0, 0) + bytes(5), ErrorCode.FRAME_SIZE_ERROR),
        (frame_header(20000, DATA, 0, 1), ErrorCode.FRAME_SIZE_ERROR),  # known from the frame header
        (frame_header(3, DATA, 0, 7) + bytes(3), ErrorCode.PROTOCOL_ERROR),  # DATA on an idle stream
        (frame_header(2, HEADERS, END_HEADERS, 2) + b"\x82\x86", ErrorCode.PROTOCOL_ERROR),  # even stream id
        (frame_header(1, HEADERS, END_HEADERS, 1) + b"\xff", ErrorCode.COMPRESSION_ERROR),  # truncated HPACK
        (frame_header(2, CONTINUATION, END_HEADERS, 1) + b"\x82\x86", ErrorCode.PROTOCOL_ERROR),
    ],
)
def test_protocol_violations_answer_goaway(client: RawClient, frame: bytes, code: int) -> None:
    client.until(SETTINGS)
    client.send(frame)
    _, _, _, payload = client.until(GOAWAY)
    assert struct.unpack(">LL", payload[:8])[1] == code
    while client.frame() is not None:  # then the server closes
        pass


def test_a_larger_initial_window_releases_a_parked_body(server: ServerThread) -> None:
    client = RawClient.__new__(RawClient)
    client.server = server
    client.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    client.encoder, client.decoder, client.buf = hpack.Encoder(), hpack.Decoder(), b""
    try:
        client.send(PREFACE + settings_frame({0x4: 100}) + window_update_frame(0, 1 << 20))
        body = run_request("payload", {"bytes": 1000})
        block = client.block(body)
        client.send(frame_header(len(block), HEADERS, END_HEADERS, 1) + block)
        client.send(frame_header(len(body), DATA, END_STREAM, 1) + body)
        _, _, _, first = client.until(DATA, 1)
        assert len(first) == 100  # one stream window
        client.send(settings_frame({0x4: 1 << 20}))
        _, answer = client.response(1)
        full = first + answer
        assert echoed(full) == bytes(1000)
    finally:
        client.close()


def test_request_decoder_keeps_the_table_and_separates_pseudo_headers() -> None:
    encoder = hpack.Encoder()
    decoder = RequestDecoder()
    fields = [(":method", "POST"), (":path", "/p?q"), (":authority", "h:1"), ("x-a", "1"), ("x-b", "two")]
    for _ in range(3):  # the second and third blocks use the dynamic table the first filled
        method, path, authority, headers, size = decoder.request(bytes(encoder.encode(fields)))
        assert (method, path, authority) == (b"POST", b"/p?q", b"h:1")
        assert headers == [(b"x-a", b"1"), (b"x-b", b"two")]
        assert size == sum(len(k) + len(v) + 32 for k, v in fields)
