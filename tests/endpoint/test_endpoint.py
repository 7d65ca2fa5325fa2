"""The reference endpoint over real sockets: HTTP/1.1 and h2c, signatures, §5 error replies."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import orjson
import pytest
import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from loadgen.endpoint.functions import ReferenceFunctions
from loadgen.endpoint.server import EndpointHandle, start_endpoint
from loadgen.pb import function_pb2, status_pb2
from loadgen.protocol import values
from loadgen.protocol.constants import RUN_PATH
from loadgen.protocol.keys import public_key_base64
from loadgen.protocol.signing import Signer

KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("0ecafbc9a94763276652e49779f0ae9001e8d994a6d440f6a72190625c217a21")
)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


class Exploding(ReferenceFunctions):
    """Adds a function that raises, to reach the 500 path."""

    def execute(self, request: function_pb2.RunRequest):  # type: ignore[no-untyped-def]
        if request.function == "explode":
            raise RuntimeError("kaboom")
        return super().execute(request)


class ServerThread:
    """A reference endpoint on its own uvloop loop in a background thread."""

    def __init__(self, key: Ed25519PublicKey | None) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_endpoint("127.0.0.1", 0, key, functions=Exploding(seed=3)), self.loop
        )
        self.handle: EndpointHandle = future.result(10)
        self.port = self.handle.port
        self.url = self.handle.url + RUN_PATH

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.handle.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def signed_server() -> Iterator[ServerThread]:
    server = ServerThread(KEY.public_key())
    yield server
    server.close()


@pytest.fixture(scope="module")
def open_server() -> Iterator[ServerThread]:
    server = ServerThread(None)
    yield server
    server.close()


@pytest.fixture(params=["http1", "h2c"])
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    http2 = request.param == "h2c"
    with httpx.Client(http1=not http2, http2=http2, timeout=10) as c:
        yield c


def run_request(function: str, params: object = None, dispatch_id: str = "") -> bytes:
    request = function_pb2.RunRequest(function=function, dispatch_id=dispatch_id)
    request.input.CopyFrom(values.encode({} if params is None else params))  # type: ignore[arg-type]
    return request.SerializeToString()


def signed_headers(
    server: ServerThread,
    body: bytes,
    *,
    key: Ed25519PrivateKey = KEY,
    created: int | None = None,
    content_type: str = "application/proto",
) -> dict[str, str]:
    headers = Signer(key).headers(
        method="POST",
        path=RUN_PATH,
        authority=f"127.0.0.1:{server.port}",
        content_type=content_type,
        body=body,
        created=created,
    )
    return {"Content-Type": content_type, **headers}


def post(client: httpx.Client, server: ServerThread, body: bytes, **kwargs: object) -> httpx.Response:
    return client.post(server.url, content=body, headers=signed_headers(server, body, **kwargs))  # type: ignore[arg-type]


def ok_response(response: httpx.Response) -> function_pb2.RunResponse:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/proto"
    return function_pb2.RunResponse.FromString(response.content)


def connect_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = orjson.loads(response.content)
    assert payload["code"] == code
    return str(payload["message"])


# -- signed requests over both protocols -------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/proto", "application/grpc+proto", "text/plain"])
def test_signed_echo(
    client: httpx.Client, signed_server: ServerThread, content_type: str, request: pytest.FixtureRequest
) -> None:
    body = run_request("echo", {"hello": "world"}, "d-echo")
    response = post(client, signed_server, body, content_type=content_type)
    expected_version = "HTTP/1.1" if request.node.callspec.params["client"] == "http1" else "HTTP/2"
    assert response.http_version == expected_version
    run = ok_response(response)
    assert run.status == status_pb2.STATUS_OK
    assert values.decode(run.exit.result.output) == {"hello": "world"}


def test_keep_alive_reuses_one_connection(signed_server: ServerThread) -> None:
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=1)) as c:
        for i in range(20):
            assert ok_response(post(c, signed_server, run_request("echo", {"i": i}))).status == status_pb2.STATUS_OK


def test_query_string_is_not_covered(signed_server: ServerThread) -> None:
    body = run_request("echo", {"q": 1})
    with httpx.Client(timeout=10) as c:
        response = c.post(signed_server.url + "?x=1", content=body, headers=signed_headers(signed_server, body))
    assert ok_response(response).status == status_pb2.STATUS_OK


# -- §5 error rows ------------------------------------------------------------------------------------


def test_unsigned_is_403(client: httpx.Client, signed_server: ServerThread) -> None:
    response = client.post(signed_server.url, content=run_request("echo"))
    message = connect_error(response, 403, "permission_denied")
    assert message == 'Expected "Signature-Input" header field to be present'


def test_wrong_key_is_403(client: httpx.Client, signed_server: ServerThread) -> None:
    response = post(client, signed_server, run_request("echo"), key=OTHER_KEY)
    assert connect_error(response, 403, "permission_denied") == "invalid signature"


def test_stale_signature_is_403(client: httpx.Client, signed_server: ServerThread) -> None:
    response = post(client, signed_server, run_request("echo"), created=int(time.time()) - 400)
    assert connect_error(response, 403, "permission_denied") == "Signature age exceeds maximum allowable age 0:05:00"


def test_future_signature_is_403(client: httpx.Client, signed_server: ServerThread) -> None:
    response = post(client, signed_server, run_request("echo"), created=int(time.time()) + 60)
    assert "in the future" in connect_error(response, 403, "permission_denied")


def test_wrong_digest_is_403(client: httpx.Client, signed_server: ServerThread) -> None:
    body = run_request("echo", {"a": 1})
    headers = signed_headers(signed_server, body)
    response = client.post(signed_server.url, content=run_request("echo", {"a": 2}), headers=headers)
    message = connect_error(response, 403, "permission_denied")
    assert message == "digest of the request body does not match the Content-Digest header"


def test_empty_function_is_400(client: httpx.Client, signed_server: ServerThread) -> None:
    for body in (b"", run_request("")):
        response = post(client, signed_server, body)
        assert connect_error(response, 400, "invalid_argument") == "function is required"


def test_unknown_function_is_404(client: httpx.Client, signed_server: ServerThread) -> None:
    response = post(client, signed_server, run_request("missing"))
    assert connect_error(response, 404, "not_found") == "function 'missing' does not exist"


def test_malformed_protobuf_is_400(client: httpx.Client, signed_server: ServerThread) -> None:
    response = post(client, signed_server, b"\xff\xff\xff\xff")
    assert connect_error(response, 400, "invalid_argument").startswith("malformed RunRequest: ")


def test_signature_is_checked_before_parsing(client: httpx.Client, signed_server: ServerThread) -> None:
    response = client.post(signed_server.url, content=b"\xff\xff\xff\xff")
    connect_error(response, 403, "permission_denied")


def test_function_crash_is_500(client: httpx.Client, signed_server: ServerThread) -> None:
    response = post(client, signed_server, run_request("explode"))
    assert connect_error(response, 500, "internal") == "function 'explode' fatal error"


def test_get_is_405_and_other_paths_404(client: httpx.Client, signed_server: ServerThread) -> None:
    response = client.get(signed_server.url)
    connect_error(response, 405, "unimplemented")
    assert response.headers["allow"] == "POST"
    connect_error(client.post(signed_server.handle.url + "/dispatch.sdk.v1.FunctionService/Other"), 404, "not_found")
    connect_error(client.get(signed_server.handle.url + "/"), 404, "not_found")


def test_no_key_means_no_verification(client: httpx.Client, open_server: ServerThread) -> None:
    response = client.post(open_server.url, content=run_request("echo", {"x": 1}))
    assert values.decode(ok_response(response).exit.result.output) == {"x": 1}
    assert not open_server.handle.verifying


# -- the built-in functions over the wire -------------------------------------------------------------


def test_sleep_waits(client: httpx.Client, signed_server: ServerThread) -> None:
    start = time.monotonic()
    run = ok_response(post(client, signed_server, run_request("sleep", {"ms": 150})))
    assert time.monotonic() - start >= 0.15
    assert values.decode(run.exit.result.output) == {"ms": 150}


def test_fail_then_succeed(client: httpx.Client, signed_server: ServerThread, request: pytest.FixtureRequest) -> None:
    dispatch_id = f"fail-{request.node.name}"
    body = run_request("fail", {"status": "THROTTLED", "times": 2}, dispatch_id)
    statuses = [ok_response(post(client, signed_server, body)).status for _ in range(3)]
    assert statuses == [status_pb2.STATUS_THROTTLED, status_pb2.STATUS_THROTTLED, status_pb2.STATUS_OK]


def test_fanout_round_trip(client: httpx.Client, signed_server: ServerThread) -> None:
    first = ok_response(post(client, signed_server, run_request("fanout", {"n": 2, "input": {"v": 1}})))
    assert len(first.poll.calls) == 2
    resume = function_pb2.RunRequest(function="fanout")
    resume.poll_result.coroutine_state = first.poll.coroutine_state
    for call in first.poll.calls:
        child = ok_response(
            post(
                client,
                signed_server,
                function_pb2.RunRequest(function=call.function, input=call.input).SerializeToString(),
            )
        )
        resume.poll_result.results.add(correlation_id=call.correlation_id, output=child.exit.result.output)
    done = ok_response(post(client, signed_server, resume.SerializeToString()))
    assert values.decode(done.exit.result.output) == {"results": [{"v": 1}, {"v": 1}], "errors": 0}


def test_chain_and_payload(client: httpx.Client, signed_server: ServerThread) -> None:
    run = ok_response(post(client, signed_server, run_request("chain", {"depth": 1})))
    assert run.exit.tail_call.function == "chain"
    assert values.decode(run.exit.tail_call.input) == {"depth": 0}
    run = ok_response(post(client, signed_server, run_request("payload", {"bytes": 100_000})))
    assert values.decode(run.exit.result.output) == bytes(100_000)


def test_five_megabyte_payload(client: httpx.Client, signed_server: ServerThread) -> None:
    run = ok_response(post(client, signed_server, run_request("payload", {"bytes": 5_000_000})))
    assert values.decode(run.exit.result.output) == bytes(5_000_000)


def test_large_request_body(client: httpx.Client, signed_server: ServerThread) -> None:
    big = function_pb2.RunRequest(function="echo", input=values.encode(b"x" * 3_000_000)).SerializeToString()
    run = ok_response(post(client, signed_server, big))
    assert len(run.exit.result.output.value) > 3_000_000


# -- HTTP/2 details on a raw h2 client ------------------------------------------------------------------


@dataclass
class StreamResult:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None


class RawH2:
    """A minimal blocking h2c client for the protocol-level tests."""

    def __init__(self, server: ServerThread, settings: dict[int, int] | None = None, auto_ack: bool = True) -> None:
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.auto_ack = auto_ack
        self.streams: dict[int, StreamResult] = {}
        self.remote_settings: dict[int, int] = {}
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, body: bytes, *, sign: bool = True, method: bytes = b"POST") -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", f"127.0.0.1:{self.server.port}".encode()),
            (b":path", RUN_PATH.encode()),
        ]
        if sign:
            headers += [(k.lower().encode(), v.encode()) for k, v in signed_headers(self.server, body).items()]
        self.conn.send_headers(sid, headers, end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.streams[sid] = StreamResult()
        self.flush()
        return sid

    def pump(self, until: object, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not until():  # type: ignore[operator]
            assert time.monotonic() < deadline, "timed out"
            if self.closed:
                raise AssertionError("connection closed")
            data = self.sock.recv(1 << 20)
            if not data:
                self.closed = True
                continue
            for event in self.conn.receive_data(data):
                self.on_event(event)
            self.flush()

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self.streams[event.stream_id].headers = dict(event.headers)  # type: ignore[arg-type]
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            self.streams[event.stream_id].body += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.streams[event.stream_id].reset = event.error_code
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings.update({k: v.new_value for k, v in event.changed_settings.items()})

    def close(self) -> None:
        self.sock.close()


def test_h2_settings_and_concurrent_streams(signed_server: ServerThread) -> None:
    client = RawH2(signed_server)
    try:
        sleeper = client.request(run_request("sleep", {"ms": 60_000}))
        sids = [client.request(run_request("echo", {"i": i})) for i in range(200)]
        client.pump(lambda: all(client.streams[s].ended for s in sids))
        assert client.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] >= 1000
        for i, sid in enumerate(sids):
            result = client.streams[sid]
            assert result.headers[b":status"] == b"200"
            run = function_pb2.RunResponse.FromString(bytes(result.body))
            assert values.decode(run.exit.result.output) == {"i": i}
        # The sleeping stream has not answered and did not block the others; cancel it.
        assert not client.streams[sleeper].headers
        client.conn.reset_stream(sleeper)
        client.flush()
        # A later short sleep is answered once its timer fires; the reset stream stays silent.
        last = client.request(run_request("sleep", {"ms": 20}))
        client.pump(lambda: client.streams[last].ended)
        assert not client.streams[sleeper].headers
    finally:
        client.close()


def test_h2_reset_pending_reply_is_dropped(signed_server: ServerThread) -> None:
    client = RawH2(signed_server)
    try:
        first = client.request(run_request("sleep", {"ms": 30}))
        client.conn.reset_stream(first)
        client.flush()
        second = client.request(run_request("sleep", {"ms": 60}))
        client.pump(lambda: client.streams[second].ended)
        assert not client.streams[first].headers
    finally:
        client.close()


def test_h2_respects_small_client_windows(signed_server: ServerThread) -> None:
    client = RawH2(signed_server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}, auto_ack=False)
    try:
        sid = client.request(run_request("payload", {"bytes": 50_000}))

        def consumed() -> bool:
            return len(client.streams[sid].body) >= 1000 or client.streams[sid].ended

        client.pump(consumed)
        assert len(client.streams[sid].body) == 1000  # exactly one window, then the server waits
        client.auto_ack = True
        client.conn.acknowledge_received_data(1000, sid)
        client.flush()
        client.pump(lambda: client.streams[sid].ended)
        run = function_pb2.RunResponse.FromString(bytes(client.streams[sid].body))
        assert values.decode(run.exit.result.output) == bytes(50_000)
    finally:
        client.close()


def test_h2_five_megabyte_payload_with_default_windows(signed_server: ServerThread) -> None:
    client = RawH2(signed_server)  # 65,535-byte windows, acknowledged as data arrives
    try:
        sids = [client.request(run_request("payload", {"bytes": 5_000_000})) for _ in range(2)]
        client.pump(lambda: all(client.streams[s].ended for s in sids), timeout=30)
        for sid in sids:
            run = function_pb2.RunResponse.FromString(bytes(client.streams[sid].body))
            assert values.decode(run.exit.result.output) == bytes(5_000_000)
    finally:
        client.close()


def test_h2_client_goaway_closes_connection(signed_server: ServerThread) -> None:
    client = RawH2(signed_server)
    try:
        sid = client.request(run_request("echo"))
        client.pump(lambda: client.streams[sid].ended)
        client.conn.close_connection()
        client.flush()
        assert client.sock.recv(1 << 16) == b""  # the server closes its side
    finally:
        client.close()


def test_h2_too_large_content_length(signed_server: ServerThread) -> None:
    client = RawH2(signed_server)
    try:
        sid = client.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", f"127.0.0.1:{signed_server.port}".encode()),
            (b":path", RUN_PATH.encode()),
            (b"content-length", b"16000001"),
        ]
        client.conn.send_headers(sid, headers)
        client.streams[sid] = StreamResult()
        client.flush()
        client.pump(lambda: client.streams[sid].ended or client.streams[sid].reset is not None)
        assert client.streams[sid].headers[b":status"] == b"400"
        assert orjson.loads(bytes(client.streams[sid].body))["message"] == "content length is too large"
        # The connection stays usable.
        other = client.request(run_request("echo"))
        client.pump(lambda: client.streams[other].ended)
        assert client.streams[other].headers[b":status"] == b"200"
    finally:
        client.close()


# -- HTTP/1.1 details on a raw socket ----------------------------------------------------------------------


def read_http1_response(reader: socket.SocketIO | object) -> tuple[int, dict[str, str], bytes]:
    file = reader  # a buffered binary file from socket.makefile("rb")
    status_line = file.readline()  # type: ignore[attr-defined]
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = file.readline().rstrip(b"\r\n")  # type: ignore[attr-defined]
        if not line:
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = file.read(int(headers.get("content-length", "0")))  # type: ignore[attr-defined]
    return status, headers, body


def http1_request(server: ServerThread, body: bytes, extra: str = "") -> bytes:
    headers = signed_headers(server, body)
    lines = [f"POST {RUN_PATH} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_http1_pipelining_keeps_order(signed_server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", signed_server.port), timeout=10) as sock:
        sock.sendall(
            http1_request(signed_server, run_request("sleep", {"ms": 50}))
            + http1_request(signed_server, run_request("echo", {"second": True}))
            + http1_request(signed_server, run_request("echo", {"third": True}))
        )
        reader = sock.makefile("rb")
        outputs = []
        for _ in range(3):
            status, _, body = read_http1_response(reader)
            assert status == 200
            outputs.append(values.decode(function_pb2.RunResponse.FromString(body).exit.result.output))
        assert outputs == [{"ms": 50}, {"second": True}, {"third": True}]


def test_http1_expect_100_continue(signed_server: ServerThread) -> None:
    body = run_request("echo", {"c": 1})
    request = http1_request(signed_server, body, "Expect: 100-continue")
    head, _, _ = request.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", signed_server.port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n")
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 100")
        assert reader.readline() == b"\r\n"
        sock.sendall(body)
        status, _, payload = read_http1_response(reader)
        assert status == 200
        assert values.decode(function_pb2.RunResponse.FromString(payload).exit.result.output) == {"c": 1}


def test_http1_too_large_content_length(signed_server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", signed_server.port), timeout=10) as sock:
        sock.sendall(f"POST {RUN_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 16000001\r\n\r\n".encode())
        reader = sock.makefile("rb")
        status, headers, body = read_http1_response(reader)
        assert status == 400
        assert headers["connection"] == "close"
        assert orjson.loads(body) == {"code": "invalid_argument", "message": "content length is too large"}
        assert reader.read() == b""


def test_http1_garbage_is_400(signed_server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", signed_server.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reader = sock.makefile("rb")
        status, _, _ = read_http1_response(reader)
        assert status == 400
        assert reader.read() == b""


@pytest.mark.system
def test_close_drops_open_connections() -> None:
    server = ServerThread(None)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(http1_request(server, run_request("sleep", {"ms": 60_000})))
        server.close()
        assert sock.recv(1024) == b""


# -- the command line ----------------------------------------------------------------------------------------


def spawn(*args: str, env_key: str | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("DISPATCH_VERIFICATION_KEY", None)
    if env_key is not None:
        env["DISPATCH_VERIFICATION_KEY"] = env_key
    return subprocess.Popen(
        [sys.executable, "-m", "loadgen.endpoint", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(process: subprocess.Popen[str], timeout: float = 20) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    assert selector.select(timeout), "no output from the endpoint"
    return process.stdout.readline().strip()


@pytest.mark.system
def test_cli_serves_until_sigterm() -> None:
    process = spawn(env_key=public_key_base64(KEY.public_key()))
    try:
        line = first_line(process)
        assert line.startswith("loadgen endpoint listening on http://127.0.0.1:")
        assert line.endswith(" (HTTP/1.1 and h2c)")
        url = line.split()[4]
        with httpx.Client(timeout=10) as c:
            assert c.post(url + RUN_PATH, content=run_request("echo")).status_code == 403
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "disabled" not in stderr
        assert public_key_base64(KEY.public_key()) not in stderr
    finally:
        process.kill()
        process.communicate()


@pytest.mark.system
def test_cli_warns_when_verification_is_off() -> None:
    process = spawn()
    try:
        first_line(process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "verification is disabled" in stderr
    finally:
        process.kill()
        process.communicate()


@pytest.mark.system
@pytest.mark.parametrize(
    ("args", "env_key", "expected"),
    [
        ((), "", "empty value"),
        (("--verification-key", ""), None, "empty value"),
        (("--verification-key", "c2VjcmV0LW5vdC1hLWtleQ=="), None, "expected 32 raw bytes"),
        ((), "!!!secret-garbage!!!", "not base64"),
    ],
)
def test_cli_rejects_bad_keys(args: tuple[str, ...], env_key: str | None, expected: str) -> None:
    process = spawn(*args, env_key=env_key)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert expected in stderr
    for secret in ("c2VjcmV0LW5vdC1hLWtleQ==", "secret-garbage"):
        assert secret not in stderr


def test_http1_chunked_body_and_head(signed_server: ServerThread) -> None:
    body = run_request("echo", {"chunked": True})
    signed = signed_headers(signed_server, body)
    head = [f"POST {RUN_PATH} HTTP/1.1", f"Host: 127.0.0.1:{signed_server.port}", "Transfer-Encoding: chunked"]
    head += [f"{k}: {v}" for k, v in signed.items()]
    half = len(body) // 2
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:half], body[half:]))
    with socket.create_connection(("127.0.0.1", signed_server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + chunks + b"0\r\n\r\n")
        sock.sendall(f"HEAD {RUN_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reader = sock.makefile("rb")
        status, _, payload = read_http1_response(reader)
        assert status == 200
        assert values.decode(function_pb2.RunResponse.FromString(payload).exit.result.output) == {"chunked": True}
        assert reader.readline().startswith(b"HTTP/1.1 405 ")
        rest = reader.read()  # headers only (no body for HEAD), then the server closes
        assert b"allow: POST" in rest
        assert rest.endswith(b"\r\n\r\n")
