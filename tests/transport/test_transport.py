"""``loadgen.transport.EndpointPool`` over real sockets on 127.0.0.1.

Servers: the reference endpoint (h2c and HTTP/1.1, signatures verified),
hypercorn (h2c, GOAWAY after a few requests, its own flow control), uvicorn
(HTTP/1.1 only), and small fault servers written here: a scripted HTTP/2 server
on the ``h2`` state machine, raw byte scripts, and a tiny HTTP/1.1 server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import random
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from loadgen.endpoint.server import start_endpoint
from loadgen.pb import function_pb2, status_pb2
from loadgen.protocol import values
from loadgen.protocol.constants import RUN_PATH
from loadgen.protocol.signing import SignedRequest, Signer, verify_request
from loadgen.transport import EndpointPool
from loadgen.transport.base import Connection, Target
from loadgen.transport.faults import AttemptError
from loadgen.transport.frames import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PREFACE,
    PRIORITY_FLAG,
    SETTINGS,
    encode_header_block_prefix,
    encode_int,
    encode_literal,
    encode_signature_fields,
    encode_table_size_update,
    frame_header,
    goaway_frame,
)
from loadgen.transport.h1conn import ResponseError, ResponseParser, ResponseTooLarge
from loadgen.transport.h2conn import MAX_STREAM_ID, H2Connection
from loadgen.transport.hpackdec import HeaderBlockError, StatusDecoder

T = TypeVar("T")

KEY = Ed25519PrivateKey.generate()
SIGNER = Signer(KEY)
LOOPS = ["asyncio", "uvloop"]

TCP_ERROR = status_pb2.STATUS_TCP_ERROR
TIMEOUT = status_pb2.STATUS_TIMEOUT
HTTP_ERROR = status_pb2.STATUS_HTTP_ERROR
TEMPORARY_ERROR = status_pb2.STATUS_TEMPORARY_ERROR


def run(coro: Coroutine[Any, Any, T], loop: str = "asyncio", limit: float = 60.0) -> T:
    """Run *coro* on a fresh loop of the given kind, bounded by *limit* seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, limit)

    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bounded())


async def until(condition: Callable[[], object], limit: float = 5.0) -> None:
    """Wait (polling the loop) until *condition()* is true; fail after *limit* seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def echo_body(payload: bytes = b"hi", dispatch_id: str = "d1") -> bytes:
    request = function_pb2.RunRequest(function="echo", dispatch_id=dispatch_id)
    request.input.CopyFrom(values.encode(payload))
    return request.SerializeToString()


def run_body(function: str, params: dict[str, Any]) -> bytes:
    request = function_pb2.RunRequest(function=function, dispatch_id="d1")
    request.input.CopyFrom(values.encode(params))
    return request.SerializeToString()


def echoed(data: bytes) -> bytes:
    response = function_pb2.RunResponse.FromString(data)
    assert response.status == status_pb2.STATUS_OK, response
    decoded = values.decode(response.exit.result.output)
    assert isinstance(decoded, bytes)
    return decoded


async def expect_error(awaitable: Awaitable[object], code: int) -> AttemptError:
    with pytest.raises(AttemptError) as info:
        await awaitable
    assert info.value.code == code, info.value.message
    return info.value


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a scripted HTTP/2 server on the h2 state machine --------------------------------------------------

Handler = Callable[["H2ServerConn", int, dict[bytes, bytes], bytes], None]


class H2Server:
    """HTTP/2 server whose *handler* decides what happens to each complete request."""

    def __init__(
        self,
        handler: Handler,
        settings: dict[Any, int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.settings = settings or {}
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[tuple[int, dict[bytes, bytes], bytes]] = []
        self.resets: list[tuple[int, int]] = []
        self.pings_acked = 0
        self.max_open = 0
        self.conns: list[H2ServerConn] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> H2Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: H2ServerConn(self), "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self.conns):
            conn.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


class H2ServerConn(asyncio.Protocol):
    def __init__(self, server: H2Server) -> None:
        self.server = server
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[dict[bytes, bytes], list[bytes]]] = {}
        self.sending: dict[int, tuple[memoryview, int]] = {}
        self.open = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        self.server.connections += 1
        self.server.conns.append(self)
        self.h2.initiate_connection()
        if self.server.settings:  # pending until acked, as RFC 9113 has it
            self.h2.update_settings(self.server.settings)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        with contextlib.suppress(ValueError):
            self.server.conns.remove(self)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                assert event.stream_id is not None and event.headers is not None
                self.streams[event.stream_id] = ({bytes(k): bytes(v) for k, v in event.headers}, [])
                self.open += 1
                self.server.max_open = max(self.server.max_open, self.open)
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None and event.data is not None
                self.streams[event.stream_id][1].append(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                assert event.stream_id is not None
                headers, chunks = self.streams[event.stream_id]
                body = b"".join(chunks)
                self.server.requests.append((event.stream_id, headers, body))
                self.server.handler(self, event.stream_id, headers, body)
            elif isinstance(event, h2.events.StreamReset):
                assert event.stream_id is not None
                self.server.resets.append((event.stream_id, int(event.error_code or 0)))
                self.open -= 1
                self.sending.pop(event.stream_id, None)
            elif isinstance(event, h2.events.PingAckReceived):
                self.server.pings_acked += 1
            elif isinstance(event, h2.events.WindowUpdated):
                self.pump()
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def respond(
        self,
        sid: int,
        status: int = 200,
        body: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
        pad: int = 0,
    ) -> None:
        fields = [(b":status", str(status).encode()), (b"content-type", b"application/proto"), *headers]
        self.h2.send_headers(sid, fields, end_stream=not body)
        if not body:
            self.open -= 1
        else:
            self.sending[sid] = (memoryview(body), pad)
            self.pump()
        self.flush()

    def pump(self) -> None:
        for sid in list(self.sending):
            view, pad = self.sending[sid]
            while view:
                window = self.h2.local_flow_control_window(sid) - pad - (1 if pad else 0)
                size = min(window, self.h2.max_outbound_frame_size - pad - 1, len(view))
                if size <= 0:
                    break
                self.h2.send_data(sid, view[:size].tobytes(), end_stream=size == len(view), pad_length=pad or None)
                view = view[size:]
            if view:
                self.sending[sid] = (view, pad)
            else:
                del self.sending[sid]
                self.open -= 1
        self.flush()

    def reset(self, sid: int, code: int) -> None:
        self.h2.reset_stream(sid, code)
        self.open -= 1
        self.flush()

    def goaway(self, last_stream_id: int) -> None:
        self.h2.close_connection(last_stream_id=last_stream_id)
        self.flush()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def answer(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    """Reply 200 with the request body."""
    conn.respond(sid, 200, body)


# -- servers written with plain bytes ------------------------------------------------------------------


async def serve_raw(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> asyncio.Server:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(guarded, "127.0.0.1", 0)


def raw_url(server: asyncio.Server) -> str:
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def read_h2_request(reader: asyncio.StreamReader) -> list[tuple[int, int, int, bytes]]:
    """Read the client preface and frames until a stream ends; return the frames."""
    assert await reader.readexactly(len(PREFACE)) == PREFACE
    frames = []
    while True:
        head = await reader.readexactly(9)
        type_length, flags, sid = struct.unpack(">LBL", head)
        payload = await reader.readexactly(type_length >> 8)
        frames.append((type_length & 0xFF, flags, sid, payload))
        if type_length & 0xFF in (HEADERS, DATA) and flags & END_STREAM:
            return frames


async def read_h1_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return lines[0], headers, body


def server_settings() -> bytes:
    return frame_header(0, SETTINGS, 0, 0)


# -- TLS material ---------------------------------------------------------------------------------------


def tls_contexts(tmp_path: Path, alpn: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (server context with *alpn*, client context trusting it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    if alpn:
        server.set_alpn_protocols(alpn)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


# == encoding units ========================================================================================


def test_header_block_decodes_to_the_signed_fields() -> None:
    prefix = encode_header_block_prefix("http", RUN_PATH.encode(), b"127.0.0.1:8000", b"application/grpc+proto")
    signed = SIGNER.headers(
        method="POST", path=RUN_PATH, authority="127.0.0.1:8000", content_type="application/grpc+proto", body=b"x"
    )
    block = encode_signature_fields(
        prefix,
        signed["Content-Digest"].encode(),
        signed["Signature-Input"].encode(),
        signed["Signature"].encode(),
    )
    fields = list(hpack.Decoder().decode(block, raw=True))
    assert fields == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", RUN_PATH.encode()),
        (b":authority", b"127.0.0.1:8000"),
        (b"content-type", b"application/grpc+proto"),
        (b"content-digest", signed["Content-Digest"].encode()),
        (b"signature-input", signed["Signature-Input"].encode()),
        (b"signature", signed["Signature"].encode()),
    ]
    long_path = b"/" + b"p" * 300
    prefix = encode_header_block_prefix("https", long_path, b"h", b"t")
    block = encode_signature_fields(prefix, b"d" * 200, b"i" * 127, b"s" * 5000)
    fields = list(hpack.Decoder().decode(block, raw=True))
    assert fields[1] == (b":scheme", b"https") and fields[2] == (b":path", long_path)
    assert [len(v) for _, v in fields[5:]] == [200, 127, 5000]


def test_first_block_of_a_connection_indexes_the_target_constants() -> None:
    target = Target(("http", "127.0.0.1", 8000), RUN_PATH, "127.0.0.1:8000", "application/grpc+proto")
    expected = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", RUN_PATH.encode()),
        (b":authority", b"127.0.0.1:8000"),
        (b"content-type", b"application/grpc+proto"),
    ]
    decoder = hpack.Decoder()
    assert decoder.decode(target.h2_insert, raw=True) == expected
    assert decoder.header_table._current_size == target.h2_table_size
    for _ in range(3):
        assert decoder.decode(target.h2_indexed, raw=True) == expected
        assert decoder.decode(target.h2_prefix, raw=True) == expected  # literals leave the table alone
    assert len(target.h2_indexed) == 5
    decoder.max_allowed_table_size = 0  # the server lowered SETTINGS_HEADER_TABLE_SIZE
    assert decoder.decode(encode_table_size_update(0) + target.h2_prefix, raw=True) == expected


def test_status_decoder_keeps_the_table_as_hpack_does() -> None:
    rng = random.Random(7)
    encoder = hpack.Encoder()
    reference = hpack.Decoder()
    ours = StatusDecoder()
    names = [b"content-type", b"content-length", b"date", b"x-custom", b"server", b"grpc-status"]
    for _ in range(3000):
        if rng.random() < 0.03:
            encoder.header_table_size = rng.choice([0, 64, 256, 1024, 4096])  # emits a table size update
        headers: list[tuple[bytes, bytes]] = [(b":status", str(rng.choice([200, 204, 404, 503])).encode())]
        for _ in range(rng.randrange(5)):
            value = bytes(rng.randrange(32, 127) for _ in range(rng.choice([0, 1, 4, 30, 200])))
            field = (rng.choice(names), value)
            headers.append(hpack.NeverIndexedHeaderTuple(*field) if rng.random() < 0.1 else field)
        if rng.random() < 0.2:
            headers.reverse()  # :status need not come first for the decoder
        block = encoder.encode(headers, huffman=rng.random() < 0.7)
        before = list(reference.header_table.dynamic_entries)
        _assert_decodes_as_hpack(ours, reference, block)
        if list(reference.header_table.dynamic_entries) == before:  # repeating it keeps step with the encoder
            _assert_decodes_as_hpack(ours, reference, block)
    assert StatusDecoder().decode(b"\x0f\x10\x02ab") == -1  # content-type: ab, no :status
    for bad in (
        b"\x80",
        b"\xbe",
        b"\xff\xff\xff\xff\xff\xff",
        b"\x40\x05ab",
        b"\x3f\xe2\x1f",  # a table size update to 4097
        b"\x88\x20",
        b"\x04\x85",
    ):
        with pytest.raises(HeaderBlockError):
            StatusDecoder().decode(bad)


def _assert_decodes_as_hpack(ours: StatusDecoder, reference: hpack.Decoder, block: bytes) -> None:
    fields = reference.decode(block, raw=True)
    statuses = [value for name, value in fields if name == b":status"]
    lengths = [value for name, value in fields if name == b"content-length" and value.isdigit() and len(value) < 16]
    status = ours.decode(block)
    assert status == (int(statuses[0]) if statuses else -1)
    assert ours.content_length == (int(lengths[-1]) if lengths else -1)
    assert ours.entries == list(reference.header_table.dynamic_entries)
    assert ours.table_size == reference.header_table._current_size


def _literal_indexed(name: bytes, value: bytes) -> bytes:
    """A literal field with incremental indexing and a new name (it enters the dynamic table)."""
    return b"\x40" + bytes((len(name),)) + name + bytes((len(value),)) + value


def test_status_decoder_remembers_blocks_only_while_the_table_stays_the_same() -> None:
    ours, reference = StatusDecoder(), hpack.Decoder()
    newest, second = bytes((0x80 | 62,)), bytes((0x80 | 63,))  # indexed fields: the two newest table entries
    steady = b"\x88" + encode_literal(31, b"application/proto") + encode_literal(28, b"90")  # leaves the table
    inserting = _literal_indexed(b":status", b"204") + _literal_indexed(b"content-length", b"11")
    for block in (steady, steady, inserting, inserting, newest, second, newest, steady, second):
        _assert_decodes_as_hpack(ours, reference, block)  # inserts are never remembered; the indices move
    _assert_decodes_as_hpack(ours, reference, _literal_indexed(b"content-length", b"12"))  # a changed table
    for block in (newest, second, steady, newest):
        _assert_decodes_as_hpack(ours, reference, block)
    # evictions: a 100-byte table holds two of these entries (48 and 42 bytes), a third evicts the oldest
    for block in (
        encode_table_size_update(100),
        _literal_indexed(b"content-length", b"11"),
        _literal_indexed(b":status", b"204"),
        second,
        newest,
        second,
    ):
        _assert_decodes_as_hpack(ours, reference, block)
    for block in (_literal_indexed(b"x-c", b"3"), second, newest, second):
        _assert_decodes_as_hpack(ours, reference, block)  # index 63 is ":status: 204" now
    # a size update empties the table: what was remembered for an index must not survive it
    sized = encode_table_size_update(0) + b"\x88"
    for block in (sized, sized, steady):
        _assert_decodes_as_hpack(ours, reference, block)
    for block in (newest, second):
        with pytest.raises(HeaderBlockError):
            ours.decode(block)
    _assert_decodes_as_hpack(ours, reference, encode_table_size_update(4096) + _literal_indexed(b":status", b"500"))
    _assert_decodes_as_hpack(ours, reference, newest)


def test_status_decoder_memo_is_bounded_and_survives_many_distinct_blocks() -> None:
    ours, reference = StatusDecoder(), hpack.Decoder()
    blocks = [b"\x88" + encode_literal(28, str(n).encode()) for n in range(200)]
    for block in blocks + blocks[::-1] + blocks:
        _assert_decodes_as_hpack(ours, reference, block)
        assert len(ours._memo) <= 64  # a server varying its blocks costs no more memory than a steady one


@pytest.mark.parametrize(("value", "bits"), [(0, 7), (126, 7), (127, 7), (128, 7), (300, 5), (2**20, 4)])
def test_hpack_integers(value: int, bits: int) -> None:
    encoded = encode_int(value, bits)
    assert hpack.hpack.decode_integer(encoded, bits) == (value, len(encoded))


CHUNKED = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX: y\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n"
)


def test_response_parser_handles_any_split() -> None:
    for size in (1, 2, 3, 7, len(CHUNKED)):
        parser = ResponseParser()
        chunks = [CHUNKED[i : i + size] for i in range(0, len(CHUNKED), size)]
        results = [parser.feed(chunk) for chunk in chunks]
        assert results[-1] and not any(results[:-1])
        assert parser.status == 200 and parser.body() == b"hello world" and parser.keep_alive
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.0 503 Busy\r\nContent-Length: 4\r\n\r\nbusyEXTRA")
    assert (parser.status, parser.body(), parser.keep_alive, bytes(parser.buffer)) == (503, b"busy", False, b"EXTRA")
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil")
    assert not parser.feed(b" close")
    assert parser.until_close and parser.body() == b"until close"
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 204 No Content\r\n\r\n") and parser.body() == b""


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_response_parser_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ResponseError):
        ResponseParser().feed(data)


# == the reference endpoint ==================================================================================


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("protocol", ["h2", "auto", "http/1.1"])
def test_reference_endpoint_verifies_signed_requests(protocol: str, loop: str) -> None:
    async def main() -> None:
        endpoint = await start_endpoint("127.0.0.1", 0, KEY.public_key())
        pool = EndpointPool(SIGNER, protocol=protocol)  # type: ignore[arg-type]
        wrong = EndpointPool(Signer(Ed25519PrivateKey.generate()), protocol=protocol)  # type: ignore[arg-type]
        try:
            assert echoed(await pool.post_run(endpoint.url, echo_body(b"hello"))) == b"hello"
            results = await asyncio.gather(*(pool.post_run(endpoint.url, echo_body(b"%d" % i)) for i in range(50)))
            assert [echoed(r) for r in results] == [b"%d" % i for i in range(50)]
            assert 1 <= pool.open_connections <= 2
            error = await expect_error(wrong.post_run(endpoint.url, echo_body()), status_pb2.STATUS_PERMISSION_DENIED)
            assert error.message == "HTTP 403: invalid signature"
            unknown = run_body("no_such_function", {})
            await expect_error(pool.post_run(endpoint.url, unknown), status_pb2.STATUS_NOT_FOUND)
            # a path prefix in the URL is kept: the endpoint only serves the bare path
            await expect_error(pool.post_run(endpoint.url + "/api/", echo_body()), status_pb2.STATUS_NOT_FOUND)
            assert echoed(await pool.post_run(endpoint.url + "/", echo_body(b"slash"))) == b"slash"
        finally:
            await pool.aclose()
            await wrong.aclose()
            await endpoint.close()
        assert pool.open_connections == 0

    run(main(), loop)


def test_unsigned_pool_is_rejected_by_a_verifying_endpoint() -> None:
    async def main() -> None:
        endpoint = await start_endpoint("127.0.0.1", 0, KEY.public_key())
        async with EndpointPool(None) as pool:
            error = await expect_error(pool.post_run(endpoint.url, echo_body()), status_pb2.STATUS_PERMISSION_DENIED)
            assert "Signature-Input" in error.message
        await endpoint.close()

    run(main())


def test_signed_authority_and_content_type_match_what_is_sent() -> None:
    """The signature covers exactly the :authority / Host and content-type that go on the wire."""

    seen: list[dict[bytes, bytes]] = []

    def capture(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        seen.append(headers)
        conn.respond(sid, 200, body)

    async def main() -> None:
        async with H2Server(capture) as server:
            url = f"http://LocalHost:{server.port}/Prefix/"
            async with EndpointPool(SIGNER, protocol="h2", content_type="application/proto") as pool:
                assert await pool.post_run(url, b"body") == b"body"
        headers = seen[0]
        assert headers[b":authority"] == f"localhost:{server.port}".encode()
        assert headers[b":path"] == b"/Prefix" + RUN_PATH.encode()
        assert headers[b":method"] == b"POST" and headers[b":scheme"] == b"http"
        request = SignedRequest(
            method="POST",
            path=headers[b":path"].decode(),
            authority=headers[b":authority"].decode(),
            headers={k.decode(): v.decode() for k, v in headers.items() if not k.startswith(b":")},
            body=b"body",
        )
        verify_request(request, KEY.public_key())
        assert request.headers["content-type"] == "application/proto"

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_many_concurrent_streams_respect_the_limits(loop: str) -> None:
    def later(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        asyncio.get_running_loop().call_later(0.002, conn.respond, sid, 200, body)

    async def main() -> None:
        endpoint = await start_endpoint("127.0.0.1", 0, KEY.public_key())
        async with EndpointPool(SIGNER, connections=2, max_streams=50) as pool:
            bodies = [echo_body(b"%d" % i, dispatch_id=str(i)) for i in range(500)]
            results = await asyncio.gather(*(pool.post_run(endpoint.url, body) for body in bodies))
            assert [echoed(r) for r in results] == [b"%d" % i for i in range(500)]
            assert pool.open_connections == 2
        await endpoint.close()
        async with H2Server(later) as server, EndpointPool(SIGNER, connections=2, max_streams=50) as pool:
            results = await asyncio.gather(*(pool.post_run(server.url, b"%d" % i) for i in range(500)))
            assert results == [b"%d" % i for i in range(500)]
            assert server.connections == 2
            assert 25 <= server.max_open <= 50
        # the server's SETTINGS_MAX_CONCURRENT_STREAMS is lower than max_streams
        settings = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 7}
        async with H2Server(later, settings) as server, EndpointPool(SIGNER, connections=1, max_streams=50) as pool:
            await pool.post_run(server.url, b"first")  # learn the server's limit
            results = await asyncio.gather(*(pool.post_run(server.url, b"%d" % i) for i in range(100)))
            assert results == [b"%d" % i for i in range(100)]
            assert server.max_open <= 7 and not server.resets

    run(main(), loop)


@pytest.mark.parametrize("protocol", ["h2", "http/1.1"])
def test_large_bodies_both_ways(protocol: str) -> None:
    async def main() -> None:
        endpoint = await start_endpoint("127.0.0.1", 0, KEY.public_key())
        async with EndpointPool(SIGNER, protocol=protocol) as pool:  # type: ignore[arg-type]
            payload = bytes(range(256)) * (5 * 1024 * 1024 // 256)
            results = await asyncio.gather(*(pool.post_run(endpoint.url, echo_body(payload)) for _ in range(3)))
            assert all(echoed(r) == payload for r in results)
            big = await pool.post_run(endpoint.url, run_body("payload", {"bytes": 12_000_000}))
            assert len(echoed(big)) == 12_000_000
            assert echoed(await pool.post_run(endpoint.url, echo_body(b"small"))) == b"small"
        await endpoint.close()

    run(main(), "uvloop")


@pytest.mark.parametrize("protocol", ["h2", "http/1.1"])
def test_a_response_above_max_response_bytes_fails_its_attempt_and_the_pool_keeps_serving(protocol: str) -> None:
    async def main() -> None:
        endpoint = await start_endpoint("127.0.0.1", 0, KEY.public_key())
        pool = EndpointPool(SIGNER, protocol=protocol, max_response_bytes=1_000_000)  # type: ignore[arg-type]
        async with pool:
            too_large = pool.post_run(endpoint.url, run_body("payload", {"bytes": 2_000_000}))
            error = await expect_error(too_large, status_pb2.STATUS_INVALID_RESPONSE)
            assert "above the 1000000 bytes loadgen takes (max_response_bytes)" in error.message
            assert len(echoed(await pool.post_run(endpoint.url, run_body("payload", {"bytes": 900_000})))) == 900_000
        await endpoint.close()

    run(main(), "uvloop")


def test_an_h2_response_growing_past_max_response_bytes_is_cancelled_and_the_connection_serves_on() -> None:
    def answer(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        conn.respond(sid, 200, b"x" * 300_000 if body == b"big" else b"small")  # no content-length

    async def main() -> None:
        async with H2Server(answer) as server, EndpointPool(SIGNER, connections=1, max_response_bytes=100_000) as pool:
            error = await expect_error(pool.post_run(server.url, b"big"), status_pb2.STATUS_INVALID_RESPONSE)
            assert error.message == (
                "response body of more than 100000 bytes, above the 100000 bytes loadgen takes (max_response_bytes)"
            )
            assert await pool.post_run(server.url, b"next") == b"small"
            assert server.connections == 1  # the stream was cancelled, not the connection

    run(main(), "uvloop")


def test_response_parser_bounds_chunked_and_until_close_bodies() -> None:
    parser = ResponseParser(max_body=10)
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    with pytest.raises(ResponseTooLarge, match="above the 10 bytes"):
        parser.feed(b"6\r\n")
    parser = ResponseParser(max_body=10)
    assert not parser.feed(b"HTTP/1.0 200 OK\r\n\r\n0123456789")
    with pytest.raises(ResponseTooLarge):
        parser.feed(b"!")
    with pytest.raises(ResponseTooLarge, match="response body of 11 bytes"):
        ResponseParser(max_body=10).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")


@pytest.mark.parametrize("size", [0, 100, 1000])
def test_server_shrinking_the_hpack_table(size: int) -> None:
    settings = {h2.settings.SettingCodes.HEADER_TABLE_SIZE: size}

    async def main() -> None:
        async with H2Server(answer, settings) as server, EndpointPool(SIGNER, connections=1) as pool:
            for i in range(3):
                results = await asyncio.gather(*(pool.post_run(server.url, b"%d" % j) for j in range(20)))
                assert results == [b"%d" % j for j in range(20)], i
            assert server.connections == 1

    run(main())


def test_small_flow_control_windows() -> None:
    """A server with 1 KiB stream windows and 16 KiB frames: bodies go out as WINDOW_UPDATEs arrive."""
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024}

    async def main() -> None:
        async with H2Server(answer, settings) as server, EndpointPool(SIGNER, protocol="h2") as pool:
            bodies = [bytes([i]) * (100_000 + i) for i in range(5)]
            results = await asyncio.gather(*(pool.post_run(server.url, body) for body in bodies))
            assert results == bodies

    run(main())


# == HTTP/1.1 servers and the "auto" fallback ===================================================================


async def _h1_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if body.startswith(b"size:"):
        out = b"z" * int(body[5:])
    elif body == b"fail":
        await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"overloaded"})
        return
    else:
        out = b"%d:%s:%s" % (len(body), hashlib.sha256(body).hexdigest().encode(), scope["http_version"].encode())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": out})


def _summary(body: bytes, version: str) -> bytes:
    return b"%d:%s:%s" % (len(body), hashlib.sha256(body).hexdigest().encode(), version.encode())


@contextlib.asynccontextmanager
async def uvicorn_server() -> Any:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_h1_app, log_level="warning", lifespan="off", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or task.done(), 10)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_auto_falls_back_to_http11_against_uvicorn(loop: str) -> None:
    async def main() -> None:
        async with uvicorn_server() as url, EndpointPool(SIGNER, connections=3) as pool:
            first = await asyncio.gather(*(pool.post_run(url, b"x" * i) for i in range(10)))
            assert first == [_summary(b"x" * i, "1.1") for i in range(10)]
            assert pool.open_connections <= 3
            results = await asyncio.gather(*(pool.post_run(url, b"y%d" % i) for i in range(60)))
            assert results == [_summary(b"y%d" % i, "1.1") for i in range(60)]
            assert 1 <= pool.open_connections <= 3
            big = b"b" * 3_000_000
            assert await pool.post_run(url, big) == _summary(big, "1.1")
            assert await pool.post_run(url, b"size:2000000") == b"z" * 2_000_000
            error = await expect_error(pool.post_run(url, b"fail"), TEMPORARY_ERROR)
            assert error.message == "HTTP 503: overloaded"
        # forcing h2 against an HTTP/1.1 server is a clean protocol error
        async with uvicorn_server() as url, EndpointPool(SIGNER, protocol="h2") as pool:
            await expect_error(pool.post_run(url, b"x"), HTTP_ERROR)

    run(main(), loop)


def test_auto_falls_back_when_the_server_hangs_up_on_the_preface() -> None:
    """A tiny HTTP/1.1 server that closes on anything but HTTP/1.x; chunked and close-delimited replies."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            first = await reader.readline()
            if not first.startswith(b"POST "):
                return  # the h2 preface: hang up without a word
            _, headers, body = await read_h1_request_rest(reader, first)
            assert headers[b"host"].startswith(b"127.0.0.1:")
            if body == b"chunked":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            elif body == b"close":
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end")
                await writer.drain()
                return
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async def main() -> None:
        server = await serve_raw(handle)
        url = raw_url(server)
        async with EndpointPool(SIGNER, connections=1) as pool:
            assert await pool.post_run(url, b"one") == b"one"
            assert await pool.post_run(url, b"chunked") == b"abcde"
            assert await pool.post_run(url, b"two") == b"two"
            assert len(connections) == 2  # the h2c attempt, then one keep-alive HTTP/1.1 connection
            assert await pool.post_run(url, b"close") == b"to the end"
            assert await pool.post_run(url, b"three") == b"three"
            assert len(connections) == 3
        server.close()

    run(main())


async def read_h1_request_rest(reader: asyncio.StreamReader, first: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    rest = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in rest[:-4].split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return first, headers, body


def test_http11_server_closing_mid_request_is_a_tcp_error() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_h1_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async def main() -> None:
        server = await serve_raw(handle)
        async with EndpointPool(SIGNER, protocol="http/1.1") as pool:
            await expect_error(pool.post_run(raw_url(server), b"x"), TCP_ERROR)
        server.close()

    run(main())


def test_http11_stale_keep_alive_is_resent_on_a_new_connection() -> None:
    """The server closes a kept-alive connection just as the next request arrives: resent once, transparently."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        first = len(connections) == 1
        for n in range(1000):
            _, _, body = await read_h1_request(reader)
            if first and n == 1:
                return  # hang up without a byte
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async def main() -> None:
        server = await serve_raw(handle)
        async with EndpointPool(SIGNER, protocol="http/1.1", connections=1) as pool:
            assert await pool.post_run(raw_url(server), b"one") == b"one"
            assert await pool.post_run(raw_url(server), b"two") == b"two"
            assert len(connections) == 2
        server.close()

    run(main())


def test_http11_garbage_is_a_clean_error() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_h1_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def main() -> None:
        server = await serve_raw(handle)
        async with EndpointPool(SIGNER, protocol="http/1.1", timeout=5) as pool:
            start = time.monotonic()
            error = await expect_error(pool.post_run(raw_url(server), b"x"), HTTP_ERROR)
            assert "malformed HTTP/1.1 response" in error.message and time.monotonic() - start < 2
        server.close()

    run(main())


# == hypercorn ===================================================================================================


@contextlib.asynccontextmanager
async def hypercorn_server(max_requests: int) -> Any:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.keep_alive_max_requests = max_requests
    config.loglevel = "WARNING"
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(_h1_app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await task


@pytest.mark.parametrize("loop", LOOPS)
def test_hypercorn_goaway_after_a_few_requests(loop: str) -> None:
    async def main() -> None:
        async with hypercorn_server(5) as url, EndpointPool(SIGNER, protocol="h2") as pool:
            for i in range(10):  # one after another
                assert await pool.post_run(url, b"s%d" % i) == _summary(b"s%d" % i, "2")
            # the 6th request made hypercorn send GOAWAY: from then on connections carry 5 streams each
            (origin,) = pool._origins.values()
            assert (origin.budget, origin.budget_confirmed) == (5, True)
            results = await asyncio.gather(*(pool.post_run(url, b"c%d" % i) for i in range(50)))
            assert results == [_summary(b"c%d" % i, "2") for i in range(50)]
            body = b"q" * 5_000_000  # hypercorn keeps 64 KiB windows: send-side flow control
            assert await pool.post_run(url, body) == _summary(body, "2")
            assert await pool.post_run(url, b"size:3000000") == b"z" * 3_000_000

    run(main(), loop)


def test_connection_cap_holds_while_connections_drain_after_goaway() -> None:
    async def main() -> None:
        async with hypercorn_server(20) as url, EndpointPool(SIGNER, protocol="h2", connections=2) as pool:
            most = 0

            async def watch() -> None:
                nonlocal most
                while True:
                    most = max(most, pool.open_connections)
                    await asyncio.sleep(0)

            watcher = asyncio.ensure_future(watch())
            try:
                results = await asyncio.gather(*(pool.post_run(url, b"b%d" % i) for i in range(100)))
            finally:
                watcher.cancel()
            assert results == [_summary(b"b%d" % i, "2") for i in range(100)]
            assert most <= 2, f"{most} connections were open at once with connections=2"

    run(main())


# == HTTP/2 faults ===============================================================================================


def test_rst_stream_from_server_is_a_tcp_error() -> None:
    def reset(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if body == b"reset":
            conn.reset(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        else:
            conn.respond(sid, 200, body)

    async def main() -> None:
        async with H2Server(reset) as server, EndpointPool(SIGNER) as pool:
            error = await expect_error(pool.post_run(server.url, b"reset"), TCP_ERROR)
            assert "INTERNAL_ERROR" in error.message
            assert await pool.post_run(server.url, b"fine") == b"fine"  # the connection lives on
            assert server.connections == 1

    run(main())


def test_refused_stream_is_retried_once() -> None:
    refused: set[bytes] = set()

    def refuse(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if body == b"always" or body not in refused:
            refused.add(body)
            conn.reset(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        else:
            conn.respond(sid, 200, body)

    async def main() -> None:
        async with H2Server(refuse) as server, EndpointPool(SIGNER) as pool:
            assert await pool.post_run(server.url, b"once") == b"once"
            assert [body for _, _, body in server.requests] == [b"once", b"once"]
            error = await expect_error(pool.post_run(server.url, b"always"), TCP_ERROR)
            assert "REFUSED_STREAM" in error.message
            assert [body for _, _, body in server.requests].count(b"always") == 2

    run(main())


def test_goaway_retries_unprocessed_streams_on_a_new_connection() -> None:
    """GOAWAY(last_stream_id = the first of three streams), then the answer to that stream: it completes on
    the draining connection, the two streams above last_stream_id are resent on a new connection."""
    doomed: list[H2ServerConn] = []
    held: list[tuple[int, bytes]] = []

    def goaway_at_three(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if conn not in doomed:
            conn.respond(sid, 200, body)
            return
        held.append((sid, body))
        if len(held) == 3:
            first_sid, first_body = held[0]
            assert conn.transport is not None
            conn.transport.write(goaway_frame(first_sid, 0))  # behind the h2 state machine's back
            conn.respond(first_sid, 200, first_body)

    async def main() -> None:
        async with H2Server(goaway_at_three) as server, EndpointPool(SIGNER, connections=1) as pool:
            assert await pool.post_run(server.url, b"warm") == b"warm"
            doomed.append(server.conns[0])
            results = await asyncio.gather(*(pool.post_run(server.url, b"%d" % i) for i in range(3)))
            assert results == [b"0", b"1", b"2"]
            # the two streams above last_stream_id went to new connections, each carrying as many streams as
            # the old one answered before its GOAWAY (1: the budget the pool learns), so 1 + 2
            assert server.connections == 3
            assert sorted(body for _, body in held) == [b"0", b"1", b"2"]
            assert sum(body in (b"0", b"1", b"2") for _, _, body in server.requests) == 5  # 3 + 2 resent
            await until(lambda: pool.open_connections <= 1)  # the old one drained and closed

    run(main())


def test_server_closing_mid_request_is_a_tcp_error_then_reconnects() -> None:
    def drop(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if body == b"drop":
            conn.close()
        else:
            conn.respond(sid, 200, body)

    async def main() -> None:
        async with H2Server(drop) as server, EndpointPool(SIGNER) as pool:
            assert await pool.post_run(server.url, b"a") == b"a"
            outcomes = await asyncio.gather(
                pool.post_run(server.url, b"drop"), pool.post_run(server.url, b"drop"), return_exceptions=True
            )
            assert all(isinstance(o, AttemptError) and o.code == TCP_ERROR for o in outcomes), outcomes
            assert await pool.post_run(server.url, b"b") == b"b"  # reconnects on demand

    run(main())


def test_server_that_never_answers_times_out_and_gets_a_cancel() -> None:
    def silent(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if body != b"silent":
            conn.respond(sid, 200, body)

    async def main() -> None:
        async with H2Server(silent) as server, EndpointPool(SIGNER, timeout=0.4, connections=1, max_streams=1) as pool:
            start = time.monotonic()
            outcomes = await asyncio.gather(
                pool.post_run(server.url, b"silent"), pool.post_run(server.url, b"queued"), return_exceptions=True
            )
            elapsed = time.monotonic() - start
            assert all(isinstance(o, AttemptError) and o.code == TIMEOUT for o in outcomes), outcomes
            assert 0.4 <= elapsed < 1.0
            await until(lambda: server.resets)
            assert server.resets[0][1] == h2.errors.ErrorCodes.CANCEL
            assert await pool.post_run(server.url, b"after") == b"after"

    run(main())


def test_server_that_never_answers_over_http11_times_out() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_h1_request(reader)
        await reader.read()  # until the client gives up

    async def main() -> None:
        server = await serve_raw(handle)
        async with EndpointPool(SIGNER, timeout=0.3, protocol="http/1.1") as pool:
            start = time.monotonic()
            await expect_error(pool.post_run(raw_url(server), b"x"), TIMEOUT)
            assert 0.3 <= time.monotonic() - start < 0.9
        server.close()

    run(main())


def test_503_is_a_temporary_error() -> None:
    def busy(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        conn.respond(sid, 503, b'{"code":"unavailable","message":"try later"}')

    async def main() -> None:
        async with H2Server(busy) as server, EndpointPool(SIGNER) as pool:
            error = await expect_error(pool.post_run(server.url, b"x"), TEMPORARY_ERROR)
            assert error.message == "HTTP 503: try later"

    run(main())


@pytest.mark.parametrize("protocol", ["h2", "auto"])
@pytest.mark.parametrize(
    "garbage",
    [
        b"this is not HTTP/2, not even close\r\n",
        server_settings() + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"x" * 100,
        server_settings() + frame_header(4, HEADERS, END_HEADERS, 1) + b"\xff\xff\xff\xff",
    ],
    ids=["text", "huge-frame", "bad-hpack"],
)
def test_garbage_instead_of_frames_is_a_clean_error(garbage: bytes, protocol: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(PREFACE))
        writer.write(garbage)
        await writer.drain()
        await reader.read()

    async def main() -> None:
        server = await serve_raw(handle)
        async with EndpointPool(SIGNER, timeout=5, protocol=protocol) as pool:  # type: ignore[arg-type]
            start = time.monotonic()
            await expect_error(pool.post_run(raw_url(server), b"x"), HTTP_ERROR)
            assert time.monotonic() - start < 2
        server.close()

    run(main())


def test_hand_made_frames_padding_priority_continuation_trailers_ping() -> None:
    """Frames the h2 library rarely sends: padded and prioritised HEADERS, CONTINUATION, 1xx, trailers."""
    encoder = hpack.Encoder()
    ping_acks: list[bytes] = []

    def headers_frames(sid: int, fields: list[tuple[bytes, bytes]], end_stream: bool) -> bytes:
        block = encoder.encode(fields)
        half = len(block) // 2
        flags = PADDED | PRIORITY_FLAG | (END_STREAM if end_stream else 0)
        payload = b"\x03" + b"\x00\x00\x00\x00\x10" + block[:half] + b"\x00" * 3
        return (
            frame_header(len(payload), HEADERS, flags, sid)
            + payload
            + frame_header(len(block) - half, 0x9, END_HEADERS, sid)
            + block[half:]
        )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(server_settings())
        frames = await read_h2_request(reader)
        sid = frames[-1][2]
        body = b"padded body"
        writer.write(
            frame_header(8, 0x6, 0, 0)
            + b"pingpong"  # PING: the client must ack it
            + frame_header(3, 0xFA, 0, 0)
            + b"???"  # an unknown frame type: ignored
            + headers_frames(sid, [(b":status", b"103"), (b"link", b"</x>")], False)
            + headers_frames(sid, [(b":status", b"200"), (b"x-big", b"v" * 30000)], False)
            + frame_header(len(body) + 5, DATA, PADDED, sid)
            + b"\x04"
            + body
            + b"\x00" * 4
            + frame_header(4, DATA, 0, sid)
            + b"more"
            + headers_frames(sid, [(b"grpc-status", b"0")], True)
        )
        await writer.drain()
        while True:  # the client's frames after the request: SETTINGS ack, eventually the PING ack
            type_length, flags, _ = struct.unpack(">LBL", await reader.readexactly(9))
            payload = await reader.readexactly(type_length >> 8)
            if type_length & 0xFF == 0x6 and flags & 0x1:
                ping_acks.append(payload)
                return

    async def main() -> None:
        server = await serve_raw(handle)
        async with EndpointPool(SIGNER, protocol="h2") as pool:
            assert await pool.post_run(raw_url(server), b"x") == b"padded bodymore"
            await until(lambda: ping_acks)
            assert ping_acks == [b"pingpong"]
        server.close()

    run(main())


def test_ping_from_server_is_acked() -> None:
    async def main() -> None:
        async with H2Server(answer) as server, EndpointPool(SIGNER) as pool:
            assert await pool.post_run(server.url, b"x") == b"x"
            conn = server.conns[0]
            conn.h2.ping(b"12345678")
            conn.flush()
            await until(lambda: server.pings_acked == 1)

    run(main())


def test_stream_ids_running_out_moves_to_a_new_connection() -> None:
    async def main() -> None:
        async with H2Server(answer) as server, EndpointPool(SIGNER, connections=1) as pool:
            assert await pool.post_run(server.url, b"a") == b"a"
            (conn,) = pool._open
            assert isinstance(conn, H2Connection)
            conn.next_sid = MAX_STREAM_ID - 4  # two more streams on this connection
            server.conns[0].h2.highest_inbound_stream_id = MAX_STREAM_ID - 6
            results = await asyncio.gather(*(pool.post_run(server.url, b"%d" % i) for i in range(6)))
            assert results == [b"%d" % i for i in range(6)]
            assert server.connections == 2
            await until(lambda: pool.open_connections == 1)

    run(main())


def test_cancelled_request_resets_its_stream_and_frees_the_slot() -> None:
    def silent(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if body != b"silent":
            conn.respond(sid, 200, body)

    async def main() -> None:
        async with H2Server(silent) as server, EndpointPool(SIGNER, connections=1, max_streams=1) as pool:
            task = asyncio.create_task(pool.post_run(server.url, b"silent"))
            await until(lambda: server.requests)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await pool.post_run(server.url, b"next") == b"next"
            await until(lambda: server.resets)
            assert server.resets[0][1] == h2.errors.ErrorCodes.CANCEL

    run(main())


def test_aclose_fails_pending_requests() -> None:
    def silent(conn: H2ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
        pass

    async def main() -> None:
        async with H2Server(silent) as server:
            pool = EndpointPool(SIGNER, connections=1, max_streams=2)
            tasks = [asyncio.create_task(pool.post_run(server.url, b"%d" % i)) for i in range(4)]
            await until(lambda: len(server.requests) == 2)
            await pool.aclose()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(o, AttemptError) and o.code == TCP_ERROR for o in outcomes), outcomes
            assert pool.open_connections == 0
            with pytest.raises(RuntimeError):
                await pool.post_run(server.url, b"late")

    run(main())


# == connecting =====================================================================================================


@pytest.mark.parametrize("protocol", ["auto", "h2", "http/1.1"])
def test_refused_connection_is_a_tcp_error(protocol: str) -> None:
    async def main() -> None:
        async with EndpointPool(SIGNER, protocol=protocol) as pool:  # type: ignore[arg-type]
            url = f"http://127.0.0.1:{free_port()}"
            outcomes = await asyncio.gather(*(pool.post_run(url, b"x") for _ in range(5)), return_exceptions=True)
            assert all(isinstance(o, AttemptError) and o.code == TCP_ERROR for o in outcomes), outcomes
            assert pool.open_connections == 0

    run(main())


def test_dns_failure_and_bad_urls() -> None:
    async def main() -> None:
        async with EndpointPool(SIGNER) as pool:
            await expect_error(pool.post_run("http://no-such-host.invalid", b"x"), status_pb2.STATUS_DNS_ERROR)
            for url in ("ftp://127.0.0.1", "http://", "http://127.0.0.1:99999", "127.0.0.1:80"):
                await expect_error(pool.post_run(url, b"x"), status_pb2.STATUS_INVALID_ARGUMENT)

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_with_alpn(tmp_path: Path, loop: str) -> None:
    async def main() -> None:
        server_h2, client = tls_contexts(tmp_path, ["h2"])
        async with H2Server(answer, ssl_context=server_h2) as server:
            async with EndpointPool(SIGNER, ssl_context=client) as pool:
                assert await pool.post_run(server.url, b"over tls") == b"over tls"
                assert server.requests[0][1][b":scheme"] == b"https"
            async with EndpointPool(SIGNER) as untrusting:  # the default context does not trust it
                await expect_error(untrusting.post_run(server.url, b"x"), status_pb2.STATUS_TLS_ERROR)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                _, _, body = await read_h1_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body) + 3, b"h1:" + body))
                await writer.drain()

        for alpn in (["http/1.1"], []):  # an HTTP/1.1 server that answers ALPN, and one that ignores it
            server_h1, client = tls_contexts(tmp_path, alpn)
            h1_server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_h1)
            url = f"https://127.0.0.1:{h1_server.sockets[0].getsockname()[1]}"
            async with EndpointPool(SIGNER, ssl_context=client) as pool:
                assert await pool.post_run(url, b"a") == b"h1:a"
                assert await pool.post_run(url, b"b") == b"h1:b"
                assert pool.open_connections == 1
            forced = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))  # the pool sets its ALPN
            async with EndpointPool(SIGNER, ssl_context=forced, protocol="http/1.1") as pool:
                assert await pool.post_run(url, b"c") == b"h1:c"
            h1_server.close()

    run(main(), loop)


def test_open_connections_counts_per_origin() -> None:
    async def main() -> None:
        async with H2Server(answer) as one, H2Server(answer) as two, EndpointPool(SIGNER, connections=1) as pool:
            await asyncio.gather(pool.post_run(one.url, b"1"), pool.post_run(two.url, b"2"))
            assert pool.open_connections == 2
            busy: list[Connection] = list(pool._open)
            assert all(conn.active == 0 for conn in busy)

    run(main())


def test_constructor_validates() -> None:
    for kwargs in ({"connections": 0}, {"max_streams": 0}, {"timeout": 0}, {"protocol": "h3"}):
        with pytest.raises(ValueError):
            EndpointPool(SIGNER, **kwargs)
