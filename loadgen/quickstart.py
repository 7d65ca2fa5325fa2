"""``loadgen run``: reference endpoint + Dispatch service + a burst of calls + a summary.

Everything runs on 127.0.0.1: the reference endpoint in a child process, the
service and its gRPC server in this one. Calls go in through real gRPC
``Dispatch`` RPCs; results are read back when every call is terminal.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from loadgen import values
from loadgen.api import CallOutcome
from loadgen.client import EndpointClient
from loadgen.keys import generate_private_key, public_key_base64
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.scheduler import Outcome, RetryPolicy
from loadgen.server import DispatchServer
from loadgen.service import DispatchService

EXIT_OK, EXIT_RUN_FAILED = 0, 3


@dataclass(frozen=True)
class WorkItem:
    """One kind of call in the quickstart mix."""

    function: str
    params: dict[str, values.Encodable]
    weight: int


MIX = (
    WorkItem("echo", {"message": "hello"}, 50),
    WorkItem("sleep", {"ms": 5}, 15),
    WorkItem("fanout", {"n": 3}, 15),
    WorkItem("chain", {"depth": 3}, 10),
    WorkItem("fail", {"status": "TEMPORARY_ERROR", "times": 2}, 10),
)


@contextmanager
def reference_endpoint(verification_key: str, timeout: float = 20.0) -> Iterator[str]:
    """Run ``python -m loadgen.endpoint`` on a free port; yield its URL; stop it after."""
    command = [sys.executable, "-m", "loadgen.endpoint", "--port", "0", "--verification-key", verification_key]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = _read_endpoint_url(process, timeout)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_endpoint_url(process: subprocess.Popen[str], timeout: float) -> str:
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if "listening on " in line:
                found.append(line.split("listening on ", 1)[1].split()[0])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise RuntimeError(f"the reference endpoint did not start within {timeout:.0f}s (exit code {process.poll()})")
    return found[0]


def _calls(total: int) -> Iterator[call_pb2.Call]:
    weighted = [item for item in MIX for _ in range(item.weight)]
    for index in range(total):
        item = weighted[(index * 37) % len(weighted)]
        yield call_pb2.Call(function=item.function, input=values.encode(item.params))


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def _progress(done: int, total: int, started: float, final: bool = False) -> None:
    elapsed = time.monotonic() - started
    line = f"  {done}/{total} calls finished, {elapsed:5.1f}s"
    end = "\n" if final or not sys.stderr.isatty() else ""
    print(("\r" if sys.stderr.isatty() else "") + line, end=end, file=sys.stderr, flush=True)


def run_quickstart(calls: int = 2000, concurrency: int = 16, batch: int = 10, timeout: float = 120.0) -> int:
    """Run the quickstart burst and print a summary; return the exit code."""
    if calls < 1 or batch < 1 or concurrency < 1:
        print("loadgen run: --calls, --batch and --concurrency must be at least 1", file=sys.stderr)
        return 2
    signing_key = generate_private_key()
    api_key = secrets.token_hex(16)
    print("loadgen run: starting the reference endpoint and the Dispatch service on 127.0.0.1", file=sys.stderr)
    with reference_endpoint(public_key_base64(signing_key.public_key())) as endpoint_url:
        client = EndpointClient.from_url(endpoint_url, signing_key)
        service = DispatchService(
            client, api_key=api_key, concurrency=concurrency, retry_policy=RetryPolicy(base_delay=0.01)
        )
        with service, DispatchServer(service) as server:
            print(f"loadgen run: endpoint {endpoint_url}, Dispatch API {server.url}", file=sys.stderr)
            print(f"loadgen run: dispatching {calls} calls in batches of {batch}", file=sys.stderr)
            started = time.monotonic()
            ids, rpc_seconds = _dispatch_all(server.url, api_key, calls, batch)
            outcomes = _wait_all(service, ids, started, timeout)
            elapsed = time.monotonic() - started
        client.close()
    _print_summary(outcomes, len(ids), rpc_seconds, elapsed, service)
    complete = len(outcomes) == len(ids) and service.counters.in_flight == 0
    return EXIT_OK if complete else EXIT_RUN_FAILED


def _dispatch_all(url: str, api_key: str, total: int, batch: int) -> tuple[list[str], list[float]]:
    target = url.removeprefix("http://")
    metadata = (("authorization", f"Bearer {api_key}"),)
    all_calls = list(_calls(total))
    batches = [all_calls[i : i + batch] for i in range(0, total, batch)]
    with grpc.insecure_channel(target) as channel:
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)

        def send(chunk: list[call_pb2.Call]) -> tuple[list[str], float]:
            begin = time.perf_counter()
            response = stub.Dispatch(dispatch_pb2.DispatchRequest(calls=chunk), metadata=metadata, timeout=30)
            return list(response.dispatch_ids), time.perf_counter() - begin

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(send, batches))
    ids = list(itertools.chain.from_iterable(r[0] for r in results))
    return ids, [r[1] for r in results]


def _wait_all(service: DispatchService, ids: list[str], started: float, timeout: float) -> dict[str, CallOutcome]:
    deadline = started + timeout
    counters = service.counters
    while counters.in_flight and time.monotonic() < deadline:
        _progress(counters.accepted - counters.in_flight, len(ids), started)
        time.sleep(0.25)
    _progress(counters.accepted - counters.in_flight, len(ids), started, final=True)
    if counters.in_flight:
        print(f"loadgen run: gave up after {timeout:.0f}s", file=sys.stderr)
    outcomes: dict[str, CallOutcome] = {}
    for dispatch_id in ids:
        try:
            outcomes[dispatch_id] = service.outcome(dispatch_id, timeout=0)
        except TimeoutError:
            continue
    return outcomes


def _print_summary(
    outcomes: dict[str, CallOutcome], accepted: int, rpc_seconds: list[float], elapsed: float, service: DispatchService
) -> None:
    by_function: dict[str, list[CallOutcome]] = defaultdict(list)
    for outcome in outcomes.values():
        by_function[outcome.function].append(outcome)
    print()
    header = f"{'function':<10} {'calls':>6} {'ok':>6} {'failed':>6} {'expired':>7} {'p50 ms':>8} {'p90 ms':>8} "
    header += f"{'p99 ms':>8} {'attempts':>9}"
    print(header)
    print("-" * len(header))
    for function in sorted(by_function):
        rows = by_function[function]
        latencies = sorted((o.finished_at - o.accepted_at) * 1000 for o in rows)
        kinds = Counter(o.outcome for o in rows)
        print(
            f"{function:<10} {len(rows):>6} {kinds[Outcome.COMPLETED]:>6} {kinds[Outcome.FAILED]:>6} "
            f"{kinds[Outcome.EXPIRED]:>7} {_percentile(latencies, 0.5):>8.2f} {_percentile(latencies, 0.9):>8.2f} "
            f"{_percentile(latencies, 0.99):>8.2f} {sum(o.attempts for o in rows) / len(rows):>9.2f}"
        )
    counters = service.counters
    rpcs = sorted(s * 1000 for s in rpc_seconds)
    print()
    print(
        f"calls: accepted {accepted}, completed {counters.completed}, failed {sum(counters.failed.values())}, "
        f"expired {counters.expired}, in flight {counters.in_flight}"
    )
    if counters.failed:
        print("failed by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counters.failed.items())))
    retries = ", ".join(f"{k} {v}" for k, v in sorted(counters.retries.items())) or "none"
    print(f"attempts: {counters.attempts} (retries: {retries})")
    print(f"Dispatch RPC: {len(rpcs)} RPCs, p50 {_percentile(rpcs, 0.5):.2f} ms, p99 {_percentile(rpcs, 0.99):.2f} ms")
    print(f"throughput: {len(outcomes) / elapsed:.0f} calls/s over {elapsed:.1f}s")
    unbalanced = accepted - len(outcomes)
    if unbalanced:
        print(f"accounting: {unbalanced} calls did not finish", file=sys.stderr)
