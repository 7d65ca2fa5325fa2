"""CPU per request of the reference endpoint: ``python -m loadgen.bench.endpoint``.

The endpoint runs as a subprocess (``python -m loadgen.endpoint``), once with
signature verification and once without. It is driven with signed ``echo``
requests. A signature stays valid for 5 minutes, so the body is signed once per
run and the same signed body and headers are sent again and again:

* ``h2load`` (nghttp2-client) over h2c sends the fixed body: ``-n`` requests,
  ``-c`` connections, ``-m`` concurrent streams per connection;
* an ``httpx`` HTTP/1.1 client sends requests one after another on a
  keep-alive connection.

For each run, the endpoint's CPU time (user + system, from ``/proc/PID/stat``)
is read before and after, and divided by the number of successful requests.
With ``--pin`` the endpoint is pinned to the last CPU and the clients to the
others. Each client runs ``--repeat`` times (after a warm-up) and the median is reported
with every run's value. The results are printed as a table and written as JSON
(default ``results/bench/endpoint.json``). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from loadgen.bench._procs import TICKS, cpu_seconds
from loadgen.endpoint.process import EndpointProcess
from loadgen.pb import function_pb2
from loadgen.protocol import values
from loadgen.protocol.constants import PROTO_CONTENT_TYPE, RUN_PATH
from loadgen.protocol.keys import generate_private_key, public_key_base64
from loadgen.protocol.signing import Signer

CONTENT_TYPE = PROTO_CONTENT_TYPE


@dataclass
class Row:
    """One measured run."""

    verification: bool
    client: str
    protocol: str
    requests: int
    succeeded: int
    endpoint_cpu_seconds: float
    cpu_us_per_request: float
    cpu_us_per_request_runs: list[float]
    wall_seconds: float
    requests_per_second: float
    settings: str


class Endpoint(EndpointProcess):
    """The reference endpoint (:class:`~loadgen.endpoint.process.EndpointProcess`), with its port and base URL."""

    def __init__(self, verification_key: str | None, cpu: int | None = None) -> None:
        super().__init__(verification_key, stderr=subprocess.DEVNULL, cpu=cpu, timeout=30.0)
        self.base_url = self.start()
        self.port = int(self.base_url.rsplit(":", 1)[1])

    def close(self) -> None:
        self.stop()


def signed_request(signer: Signer, port: int) -> tuple[bytes, dict[str, str]]:
    request = function_pb2.RunRequest(
        function="echo",
        input=values.encode({"hello": "world", "n": 42}),
        dispatch_id="00000000000000000000000000000001",
        root_dispatch_id="00000000000000000000000000000001",
    )
    body = request.SerializeToString()
    headers = signer.headers(
        method="POST", path=RUN_PATH, authority=f"127.0.0.1:{port}", content_type=CONTENT_TYPE, body=body
    )
    return body, {"content-type": CONTENT_TYPE, **{k.lower(): v for k, v in headers.items()}}


def check(endpoint: Endpoint, body: bytes, headers: dict[str, str]) -> None:
    """Fail fast if the pre-signed request is not answered 200 over both protocols."""
    for http2 in (False, True):
        with httpx.Client(http1=not http2, http2=http2, timeout=10) as client:
            response = client.post(endpoint.base_url + RUN_PATH, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"sanity request failed ({'h2c' if http2 else 'HTTP/1.1'}): {response.text}")


def run_h2load(
    endpoint: Endpoint,
    body_path: str,
    headers: dict[str, str],
    requests: int,
    connections: int,
    streams: int,
) -> tuple[int, float]:
    """Run h2load; return (succeeded 2xx responses, wall seconds)."""
    command = ["h2load", "-n", str(requests), "-c", str(connections), "-m", str(streams), "-d", body_path]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(endpoint.base_url + RUN_PATH)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - start
    match = re.search(r"status codes: (\d+) 2xx", done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"h2load failed:\n{done.stdout}\n{done.stderr}")
    return int(match.group(1)), wall


def run_httpx_http1(endpoint: Endpoint, body: bytes, headers: dict[str, str], requests: int) -> tuple[int, float]:
    """Sequential keep-alive HTTP/1.1 requests; return (succeeded, wall seconds)."""
    ok = 0
    url = endpoint.base_url + RUN_PATH
    with httpx.Client(timeout=10) as client:
        start = time.perf_counter()
        for _ in range(requests):
            if client.post(url, content=body, headers=headers).status_code == 200:
                ok += 1
        wall = time.perf_counter() - start
    return ok, wall


def measure(args: argparse.Namespace, verification: bool, signer: Signer, public_key: str) -> list[Row]:
    """Start one endpoint, then run each client ``args.repeat`` times against it."""
    rows: list[Row] = []
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin and len(cpus) >= 2
    endpoint = Endpoint(public_key if verification else None, cpus[-1] if pin else None)
    if pin:  # keep the clients (h2load inherits this) off the endpoint's CPU
        os.sched_setaffinity(0, set(cpus[:-1]))
    try:
        body, headers = signed_request(signer, endpoint.port)
        check(endpoint, body, headers)
        if shutil.which("h2load") and args.h2load_requests > 0:
            with tempfile.NamedTemporaryFile(prefix="loadgen-bench-", suffix=".bin") as body_file:
                body_file.write(body)
                body_file.flush()
                run_h2load(endpoint, body_file.name, headers, args.warmup, 1, args.streams)
                runs = []
                for _ in range(args.repeat):
                    body, headers = signed_request(signer, endpoint.port)  # re-signed: valid for 5 minutes
                    before = cpu_seconds(endpoint.pid)
                    ok, wall = run_h2load(
                        endpoint, body_file.name, headers, args.h2load_requests, args.connections, args.streams
                    )
                    runs.append((ok, cpu_seconds(endpoint.pid) - before, wall))
            settings = f"-c {args.connections} -m {args.streams}"
            rows.append(_row(verification, "h2load", "h2c", args.h2load_requests, runs, settings))
        elif args.h2load_requests > 0:
            print("h2load not found (apt-get install -y nghttp2-client): skipping the h2c runs", file=sys.stderr)
        if args.http1_requests > 0:
            run_httpx_http1(endpoint, body, headers, min(args.warmup, args.http1_requests))
            runs = []
            for _ in range(args.repeat):
                body, headers = signed_request(signer, endpoint.port)
                before = cpu_seconds(endpoint.pid)
                ok, wall = run_httpx_http1(endpoint, body, headers, args.http1_requests)
                runs.append((ok, cpu_seconds(endpoint.pid) - before, wall))
            rows.append(_row(verification, "httpx", "HTTP/1.1", args.http1_requests, runs, "sequential, keep-alive"))
    finally:
        endpoint.close()
        if pin:
            os.sched_setaffinity(0, set(cpus))
    return rows


def _row(
    verification: bool, client: str, protocol: str, requests: int, runs: list[tuple[int, float, float]], settings: str
) -> Row:
    """Summarise repeated runs of (succeeded, endpoint CPU seconds, wall seconds): the median run counts."""
    per_request = [cpu / ok * 1e6 if ok else float("nan") for ok, cpu, _ in runs]
    ok, cpu, wall = sorted(runs, key=lambda run: run[1] / run[0] if run[0] else float("inf"))[len(runs) // 2]
    return Row(
        verification=verification,
        client=client,
        protocol=protocol,
        requests=requests,
        succeeded=min(run[0] for run in runs),
        endpoint_cpu_seconds=round(cpu, 3),
        cpu_us_per_request=round(statistics.median(per_request), 1),
        cpu_us_per_request_runs=[round(value, 1) for value in per_request],
        wall_seconds=round(wall, 3),
        requests_per_second=round(ok / wall, 1) if wall > 0 else 0.0,
        settings=settings,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.endpoint", description=__doc__.split("\n")[0])
    parser.add_argument("--h2load-requests", type=int, default=20_000, help="requests per h2load run (0: skip)")
    parser.add_argument("--http1-requests", type=int, default=2_000, help="requests per HTTP/1.1 run (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per client; the median is reported")
    parser.add_argument("--connections", type=int, default=1, help="h2load connections (-c)")
    parser.add_argument("--streams", type=int, default=32, help="h2load concurrent streams per connection (-m)")
    parser.add_argument("--warmup", type=int, default=1_000, help="warm-up requests before each measured run")
    parser.add_argument(
        "--pin", action="store_true", help="pin the endpoint to the last CPU and the clients to the other CPUs"
    )
    parser.add_argument("--output", type=Path, default=Path("results/bench/endpoint.json"))
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not Path("/proc/self/stat").exists():
        parser.error("this benchmark reads /proc/PID/stat: Linux only")

    private_key = generate_private_key()
    signer = Signer(private_key)
    public_key = public_key_base64(private_key.public_key())
    rows: list[Row] = []
    for verification in (True, False):
        rows.extend(measure(args, verification, signer, public_key))

    header = (
        f"{'verification':<13}{'client':<8}{'protocol':<10}{'requests':>9}{'ok':>9}"
        f"{'CPU µs/req':>12}{'req/s':>10}  runs (µs/req)"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{'on' if row.verification else 'off':<13}{row.client:<8}{row.protocol:<10}{row.requests:>9}"
            f"{row.succeeded:>9}{row.cpu_us_per_request:>12.1f}{row.requests_per_second:>10.0f}  "
            + " ".join(f"{value:.0f}" for value in row.cpu_us_per_request_runs)
        )
    report = {
        "benchmark": "endpoint",
        "function": "echo",
        "created": int(time.time()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "clock_ticks_per_second": TICKS,
        "pinned": args.pin and len(os.sched_getaffinity(0)) >= 2,
        "command": " ".join(["python -m loadgen.bench.endpoint", *(sys.argv[1:] if argv is None else argv)]),
        "rows": [asdict(row) for row in rows],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(row.succeeded == row.requests for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
