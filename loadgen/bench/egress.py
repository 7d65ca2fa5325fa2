"""Client CPU per signed RunRequest round trip: ``python -m loadgen.bench.egress [--requests N]``.

One run measures, against one reference endpoint started as a subprocess
(``python -m loadgen.endpoint --port 0`` with signature verification on):

a. the crypto floor: build the ``RunRequest``, serialize it, ``Content-Digest`` and
   Ed25519 signature (``Signer.headers``), no IO;
b. :class:`loadgen.transport.EndpointPool` over h2c on uvloop (and, for reference,
   on the stock asyncio loop);
c. a minimal client on the ``h2`` library's state machine (written below);
d. ``httpx.AsyncClient(http2=True)``;
e. ``h2load`` sending one fixed pre-signed body (if installed), its own CPU from
   the resource usage of the reaped child (``os.times``).

The reference endpoint (Python, verifying every signature) is slower than the
clients, so in (b)-(e) the clients idle between response batches. When
``nghttpd`` (Debian ``nghttp2-server``) is installed, (b*) and (c*) repeat (b)
and (c) against it, answering every POST with one fixed ``RunResponse`` in a few
µs: there the client is the bottleneck, which is its CPU per request at
saturation (requests are still signed; nothing verifies them).

Clients (b) to (d) do the same work per request: build and serialize an echo
``RunRequest``, sign it, POST it, parse the ``RunResponse``. Each keeps the same
number of requests in flight (``--concurrency``, 64 by default: 2 connections
where the client has a choice; ``h2load -c 2 -m 32``). CPU is the client
process's ``time.process_time()`` delta over the measured requests (after a
warm-up), divided by the requests completed; the endpoint's CPU per request is
read from ``/proc/PID/stat`` too. Every run is bounded by its request count and
by ``--time-limit`` seconds. With 2+ CPUs the servers are pinned to the last CPU
and the clients to the others. Each client runs ``--repeat`` times, interleaved, and
the median run is reported with every run's value. Prints a table and writes
JSON (default ``results/bench/egress.json``). Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.bench._procs import cpu_seconds
from loadgen.endpoint.process import EndpointProcess as ReferenceEndpointProcess
from loadgen.pb import function_pb2, status_pb2
from loadgen.protocol import values
from loadgen.protocol.constants import RUN_CONTENT_TYPE, RUN_PATH
from loadgen.protocol.keys import public_key_base64
from loadgen.protocol.signing import Signer
from loadgen.transport import EndpointPool

CONTENT_TYPE = RUN_CONTENT_TYPE
Send = Callable[[bytes], Awaitable[bytes]]


@dataclass
class Row:
    """One measured client."""

    key: str
    client: str
    requests: int
    failed: int
    cpu_us_per_request: float
    wall_seconds: float
    requests_per_second: float
    endpoint_cpu_us_per_request: float | None
    notes: str = ""
    ratio_vs_pool: float | None = field(default=None)
    cpu_us_per_request_runs: list[float] = field(default_factory=list)


def _median_row(runs: list[Row]) -> Row:
    """The run with the median client CPU per request, carrying every run's value."""
    ordered = sorted(runs, key=lambda row: row.cpu_us_per_request)
    row = ordered[(len(ordered) - 1) // 2]
    row.cpu_us_per_request_runs = [round(run.cpu_us_per_request, 1) for run in runs]
    return row


class ServerProcess:
    """A server subprocess: ``url``, its CPU time so far, ``close()``."""

    process: subprocess.Popen[str]
    url: str

    @property
    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class EndpointProcess(ServerProcess):
    """The reference endpoint (:class:`loadgen.endpoint.process.EndpointProcess`), verifying signatures."""

    def __init__(self, verification_key: str, cpu: int | None) -> None:
        self._endpoint = ReferenceEndpointProcess(verification_key, stderr=subprocess.DEVNULL, cpu=cpu, timeout=30.0)
        self.url = self._endpoint.start()
        assert self._endpoint.process is not None
        self.process = self._endpoint.process


class NghttpdProcess(ServerProcess):
    """``nghttpd`` (nghttp2-server, C) answering every POST to the Run path with one fixed ``RunResponse``.

    It costs a few µs per request, so the client, not the server, is the bottleneck: the client's CPU
    per request at saturation. It does not verify signatures (the clients still sign every request).
    """

    def __init__(self, exe: str, cpu: int | None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="loadgen-egress-")
        path = Path(self._dir.name) / RUN_PATH.lstrip("/")
        path.parent.mkdir(parents=True)
        response = function_pb2.RunResponse(status=status_pb2.STATUS_OK)
        response.exit.result.output.CopyFrom(_INPUT)
        path.write_bytes(response.SerializeToString())
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [exe, "--no-tls", "-d", self._dir.name, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    raise RuntimeError("nghttpd did not start") from None
                time.sleep(0.02)
        if cpu is not None:
            os.sched_setaffinity(self.process.pid, {cpu})

    def close(self) -> None:
        super().close()
        self._dir.cleanup()


# -- the per-request work every client does ----------------------------------------------------------

_INPUTS = [values.encode(b"x" * (32 + n)) for n in range(997)]
_INPUT = _INPUTS[32]


def build_body(i: int) -> bytes:
    """An echo ``RunRequest`` with a per-request dispatch id, serialized.

    The input's size cycles through 997 values (32 to 1028 bytes), so responses differ in length the
    way real ones do: most ``content-length`` values are new to the HPACK table, literals the client
    must decode into it.
    """
    request = function_pb2.RunRequest(function="echo", dispatch_id=f"{i:032x}", root_dispatch_id=f"{i:032x}")
    request.input.CopyFrom(_INPUTS[i % 997])
    return request.SerializeToString()


def check_response(data: bytes) -> None:
    response = function_pb2.RunResponse.FromString(data)
    if response.status != 1:
        raise RuntimeError(f"unexpected RunResponse status {response.status}")


def crypto_floor(signer: Signer, authority: str, n: int) -> Row:
    """(a) protobuf encode + Content-Digest + Ed25519, no IO."""
    for i in range(200):
        signer.headers(method="POST", path=RUN_PATH, authority=authority, content_type=CONTENT_TYPE, body=build_body(i))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        signer.headers(method="POST", path=RUN_PATH, authority=authority, content_type=CONTENT_TYPE, body=build_body(i))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return Row("a", "crypto floor (encode + digest + sign)", n, 0, cpu / n * 1e6, wall, n / wall, None)


async def drive(send: Send, requests: int, concurrency: int, time_limit: float) -> tuple[int, int]:
    """Send up to *requests* from *concurrency* workers, for at most *time_limit* s: (done, failed)."""
    counter = itertools.count()
    stop_at = time.monotonic() + time_limit
    done = failed = 0

    async def worker() -> None:
        nonlocal done, failed
        while time.monotonic() < stop_at:
            i = next(counter)
            if i >= requests:
                return
            try:
                check_response(await send(build_body(i)))
                done += 1
            except Exception:  # counted and shown in the table's "fail" column
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, failed


async def measured(
    key: str,
    name: str,
    send: Send,
    endpoint: ServerProcess,
    args: argparse.Namespace,
    requests: int,
    notes: str = "",
) -> Row:
    await drive(send, min(args.warmup, requests), args.concurrency, args.time_limit)
    ep0 = endpoint.cpu_seconds
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done, failed = await drive(send, requests, args.concurrency, args.time_limit)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    ep = endpoint.cpu_seconds - ep0
    n = max(done, 1)
    return Row(key, name, done, failed, cpu / n * 1e6, wall, done / wall, ep / n * 1e6, notes)


# -- (b) EndpointPool ----------------------------------------------------------------------------------


async def run_pool(key: str, name: str, endpoint: ServerProcess, signer: Signer, args: argparse.Namespace) -> Row:
    pool = EndpointPool(signer, connections=2, max_streams=100, protocol="h2")
    url = endpoint.url

    def send(body: bytes) -> Awaitable[bytes]:
        return pool.post_run(url, body)

    try:
        return await measured(key, name, send, endpoint, args, args.requests, "connections=2, max_streams=100")
    finally:
        await pool.aclose()


# -- (c) a minimal client on the h2 state machine -------------------------------------------------------


class _H2LibProtocol(asyncio.Protocol):
    """The straightforward way to write an asyncio HTTP/2 client with the ``h2`` library."""

    def __init__(self) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection

        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[asyncio.Future[bytes], list[bytes], list[int]]] = {}
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.window = asyncio.Event()  # set when the server opens a flow-control window

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        from h2.events import (
            DataReceived,
            RemoteSettingsChanged,
            ResponseReceived,
            StreamEnded,
            StreamReset,
            WindowUpdated,
        )

        for event in self.conn.receive_data(data):
            if isinstance(event, ResponseReceived):
                entry = self.streams.get(event.stream_id)
                if entry is not None:
                    entry[2].append(int(dict(event.headers)[b":status"]))
            elif isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                entry = self.streams.get(event.stream_id)
                if entry is not None:
                    entry[1].append(event.data)
            elif isinstance(event, StreamEnded):
                entry = self.streams.pop(event.stream_id, None)
                if entry is not None:
                    fut, chunks, status = entry
                    if status and status[0] == 200:
                        fut.set_result(b"".join(chunks))
                    else:
                        fut.set_exception(RuntimeError(f"HTTP {status}"))
            elif isinstance(event, WindowUpdated | RemoteSettingsChanged):
                self.window.set()
            elif isinstance(event, StreamReset):
                entry = self.streams.pop(event.stream_id, None)
                if entry is not None:
                    entry[0].set_exception(RuntimeError("stream reset"))
        data_out = self.conn.data_to_send()
        if data_out and self.transport is not None:
            self.transport.write(data_out)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut, _, _ in self.streams.values():
            if not fut.done():
                fut.set_exception(RuntimeError("connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)
        self.window.set()

    async def post(self, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        conn = self.conn
        sid = conn.get_next_available_stream_id()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.streams[sid] = (fut, [], [])
        conn.send_headers(sid, headers)
        assert self.transport is not None
        while conn.local_flow_control_window(sid) < len(body):  # bodies here are below MAX_FRAME_SIZE
            self.transport.write(conn.data_to_send())
            self.window.clear()
            await self.window.wait()
            if self.lost.done():
                raise RuntimeError("connection lost")
        conn.send_data(sid, body, end_stream=True)
        self.transport.write(conn.data_to_send())
        return await fut


async def run_h2lib(
    endpoint: ServerProcess,
    signer: Signer,
    args: argparse.Namespace,
    key: str = "c",
    name: str = "h2 library state machine (minimal client)",
) -> Row:
    parts = urlsplit(endpoint.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    authority = parts.netloc
    loop = asyncio.get_running_loop()
    protocols = []
    for _ in range(2):
        _, protocol = await loop.create_connection(_H2LibProtocol, host, port)
        protocols.append(protocol)
    turn = itertools.count()
    fixed = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", RUN_PATH.encode()),
        (b":authority", authority.encode()),
        (b"content-type", CONTENT_TYPE.encode()),
    ]

    def send(body: bytes) -> Awaitable[bytes]:
        signed = signer.headers(method="POST", path=RUN_PATH, authority=authority, content_type=CONTENT_TYPE, body=body)
        headers = fixed + [(name.lower().encode(), value.encode()) for name, value in signed.items()]
        return protocols[next(turn) & 1].post(headers, body)

    try:
        return await measured(key, name, send, endpoint, args, args.requests)
    finally:
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        await asyncio.wait([protocol.lost for protocol in protocols], timeout=5)


# -- (d) httpx ------------------------------------------------------------------------------------------


async def run_httpx(endpoint: ServerProcess, signer: Signer, args: argparse.Namespace) -> Row:
    import httpx

    url = endpoint.url + RUN_PATH
    authority = urlsplit(endpoint.url).netloc
    client = httpx.AsyncClient(http1=False, http2=True, timeout=30)

    async def send(body: bytes) -> bytes:
        signed = signer.headers(method="POST", path=RUN_PATH, authority=authority, content_type=CONTENT_TYPE, body=body)
        signed["Content-Type"] = CONTENT_TYPE
        response = await client.post(url, content=body, headers=signed)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
        return response.content

    sniffio = importlib.util.find_spec("sniffio") is not None
    notes = f"httpx {importlib.metadata.version('httpx')}, sniffio {'installed' if sniffio else 'missing'}"
    try:
        return await measured("d", "httpx.AsyncClient(http2=True)", send, endpoint, args, args.httpx_requests, notes)
    finally:
        await client.aclose()


# -- (e) h2load ---------------------------------------------------------------------------------------------


def run_h2load(endpoint: ServerProcess, signer: Signer, args: argparse.Namespace) -> Row | None:
    exe = shutil.which("h2load")
    if exe is None or args.h2load_requests <= 0:
        return None
    authority = urlsplit(endpoint.url).netloc
    body = build_body(1)
    signed = signer.headers(method="POST", path=RUN_PATH, authority=authority, content_type=CONTENT_TYPE, body=body)
    streams = max(1, args.concurrency // 2)
    with tempfile.NamedTemporaryFile(prefix="loadgen-egress-", suffix=".bin") as body_file:
        body_file.write(body)
        body_file.flush()
        command = [exe, "-c", "2", "-m", str(streams), "-d", body_file.name, "-H", f"content-type: {CONTENT_TYPE}"]
        for name, value in signed.items():
            command += ["-H", f"{name.lower()}: {value}"]
        url = endpoint.url + RUN_PATH

        def once(n: int) -> tuple[str, float]:
            start = time.perf_counter()
            done = subprocess.run(
                [*command, "-n", str(n), url], capture_output=True, text=True, timeout=args.time_limit + 30, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(f"h2load failed:\n{done.stdout}\n{done.stderr}")
            return done.stdout, time.perf_counter() - start

        once(min(args.warmup, args.h2load_requests))
        before = os.times()  # children_*: CPU of the reaped h2load processes
        ep0 = endpoint.cpu_seconds
        out, wall = once(args.h2load_requests)
        ep = endpoint.cpu_seconds - ep0
        after = os.times()
    cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    match = re.search(r"status codes: (\d+) 2xx", out)
    ok = int(match.group(1)) if match else 0
    n = max(ok, 1)
    return Row(
        "e",
        "h2load (fixed pre-signed body)",
        ok,
        args.h2load_requests - ok,
        cpu / n * 1e6,
        wall,
        ok / wall,
        ep / n * 1e6,
        f"-c 2 -m {streams}; CPU of the h2load process (rusage of the reaped child)",
    )


# -- main --------------------------------------------------------------------------------------------------


def _table(rows: Sequence[Row]) -> str:
    lines = [
        f"{'':2} {'client':44} {'requests':>8} {'fail':>5} {'client µs/req':>14} {'x pool':>7} "
        f"{'req/s':>8} {'endpoint µs/req':>15}",
    ]
    for row in rows:
        ratio = f"{row.ratio_vs_pool:.2f}" if row.ratio_vs_pool is not None else "-"
        endpoint = f"{row.endpoint_cpu_us_per_request:.0f}" if row.endpoint_cpu_us_per_request is not None else "-"
        lines.append(
            f"{row.key:2} {row.client:44} {row.requests:8d} {row.failed:5d} {row.cpu_us_per_request:14.1f} "
            f"{ratio:>7} {row.requests_per_second:8.0f} {endpoint:>15}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.egress", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="measured requests per client (default 20000)")
    parser.add_argument("--httpx-requests", type=int, default=None, help="for httpx (default: requests / 5)")
    parser.add_argument("--h2load-requests", type=int, default=None, help="for h2load (default: requests; 0 skips)")
    parser.add_argument("--warmup", type=int, default=1000, help="unmeasured requests before each run (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per run at most (default 60)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per client, median reported (default 3)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin endpoint and client CPUs")
    parser.add_argument("--no-nghttpd", dest="nghttpd", action="store_false", help="skip the nghttpd rows")
    parser.add_argument("--skip-asyncio", action="store_true", help="skip the pool on the stock asyncio loop")
    parser.add_argument("--out", default="results/bench/egress.json", help="JSON output path")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.httpx_requests is None:
        args.httpx_requests = max(1, args.requests // 5)
    if args.h2load_requests is None:
        args.h2load_requests = args.requests
    import uvloop

    load_at_start = os.getloadavg()
    key = Ed25519PrivateKey.generate()
    signer = Signer(key)
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin and len(cpus) >= 2
    endpoint = EndpointProcess(public_key_base64(key.public_key()), cpus[-1] if pin else None)
    nghttpd_exe = shutil.which("nghttpd") if args.nghttpd else None
    nghttpd = NghttpdProcess(nghttpd_exe, cpus[-1] if pin else None) if nghttpd_exe else None
    if pin:
        os.sched_setaffinity(0, set(cpus[:-1]))
    runs: dict[str, list[Row]] = {}
    try:
        authority = urlsplit(endpoint.url).netloc
        print(f"endpoint {endpoint.url} (pid {endpoint.process.pid})", file=sys.stderr, flush=True)

        def on_uvloop(coro: Awaitable[Row]) -> Row:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                row: Row = runner.run(cast(Any, coro))
                return row

        clients: list[Callable[[], Row | None]] = [
            lambda: crypto_floor(signer, authority, args.requests),
            lambda: on_uvloop(run_pool("b", "EndpointPool h2c (uvloop)", endpoint, signer, args)),
        ]
        if not args.skip_asyncio:
            clients.append(
                lambda: asyncio.run(run_pool("b'", "EndpointPool h2c (asyncio loop)", endpoint, signer, args))
            )
        clients.append(lambda: on_uvloop(run_h2lib(endpoint, signer, args)))
        if args.httpx_requests > 0:
            clients.append(lambda: on_uvloop(run_httpx(endpoint, signer, args)))
        clients.append(lambda: run_h2load(endpoint, signer, args))
        if nghttpd is not None:
            server = nghttpd
            clients.append(
                lambda: on_uvloop(run_pool("b*", "EndpointPool h2c (uvloop), nghttpd", server, signer, args))
            )
            clients.append(lambda: on_uvloop(run_h2lib(server, signer, args, "c*", "h2 library client, nghttpd")))
        for repeat in range(args.repeat):  # interleaved, so that noise spreads over every client
            for client in clients:
                row = client()
                if row is not None:
                    runs.setdefault(row.key, []).append(row)
                    print(
                        f"run {repeat + 1}/{args.repeat} {row.key:2} {row.client}: {row.cpu_us_per_request:.1f} µs/req",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        endpoint.close()
        if nghttpd is not None:
            nghttpd.close()
    rows = [_median_row(group) for group in runs.values()]
    pool_cpu = rows[1].cpu_us_per_request
    for row in rows:
        row.ratio_vs_pool = row.cpu_us_per_request / pool_cpu if pool_cpu else None
    print(_table(rows))
    report = {
        "benchmark": "egress",
        "command": "python -m loadgen.bench.egress " + " ".join(sys.argv[1:] if argv is None else argv),
        "unit": "client CPU µs per signed echo RunRequest round trip",
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "requests": args.requests,
        "pinned": pin,
        "python": platform.python_version(),
        "uvloop": importlib.metadata.version("uvloop"),
        "cpus": len(cpus),
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": os.getloadavg(),
        "rows": [asdict(row) for row in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
