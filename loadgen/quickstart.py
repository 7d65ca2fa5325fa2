"""``loadgen run``: reference endpoint + sharded engine + a closed-loop burst + a summary.

Everything runs on 127.0.0.1: the reference endpoint in a child process, the
shards in theirs, and *concurrency* driver threads here, each dispatching one
call at a time through the shared gRPC address and waiting for its result
with ``Wait``. The summary is the engine's own merged statistics (end-to-end,
per attempt, per RPC, at microsecond resolution) and its accounting.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from loadgen import values
from loadgen.keys import generate_private_key, private_key_base64, public_key_base64
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.supervisor import EngineOptions, ShardFailed, Supervisor

EXIT_OK, EXIT_USAGE, EXIT_RUN_FAILED = 0, 2, 3


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
        yield _read_endpoint_url(process, timeout)
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


def _mix() -> list[call_pb2.Call]:
    """The weighted mix, one ``Call`` per weight unit, interleaved."""
    weighted = [item for item in MIX for _ in range(item.weight)]
    order = sorted(range(len(weighted)), key=lambda i: (i * 37) % len(weighted))
    return [call_pb2.Call(function=weighted[i].function, input=values.encode(weighted[i].params)) for i in order]


class _Driver:
    """Closed-loop load: each thread dispatches one call, waits for it, and repeats."""

    def __init__(self, url: str, api_key: str, total: int, deadline: float) -> None:
        self._channel = grpc.insecure_channel(url.removeprefix("http://"))
        self._stub = dispatch_pb2_grpc.DispatchServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        self._mix = _mix()
        self._lock = threading.Lock()
        self._next = 0
        self.total = total
        self.deadline = deadline
        self.finished = 0
        self.not_ok = 0
        self.errors: list[str] = []

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.total or time.monotonic() >= self.deadline:
                return None
            self._next += 1
            return self._next - 1

    def run_thread(self) -> None:
        while (index := self._take()) is not None:
            call = self._mix[index % len(self._mix)]
            try:
                reply = self._stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[call]), metadata=self._metadata)
                remaining = max(1.0, self.deadline - time.monotonic())
                _, rpc = self._stub.Wait.with_call(
                    dispatch_pb2.WaitRequest(dispatch_id=reply.dispatch_ids[0]),
                    metadata=self._metadata,
                    timeout=remaining,
                )
                ok = dict(rpc.trailing_metadata() or ()).get("loadgen-status") == "STATUS_OK"
            except grpc.RpcError as exc:
                with self._lock:
                    self.errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            with self._lock:
                self.finished += 1
                self.not_ok += not ok

    def close(self) -> None:
        self._channel.close()


def _progress(driver: _Driver, started: float, final: bool = False) -> None:
    tty = sys.stderr.isatty()
    line = f"  {driver.finished}/{driver.total} calls finished, {time.monotonic() - started:5.1f}s"
    print(("\r" if tty else "") + line, end="\n" if final or not tty else "", file=sys.stderr, flush=True)


def run_quickstart(calls: int = 2000, concurrency: int = 32, shards: int = 2, timeout: float = 120.0) -> int:
    """Run the quickstart and print a summary; return the exit code (0 ok, 3 the run failed)."""
    if calls < 1 or concurrency < 1 or shards < 1:
        print("loadgen run: --calls, --concurrency and --shards must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    signing_key = generate_private_key()
    api_key = secrets.token_hex(16)
    print(f"loadgen run: starting the reference endpoint and {shards} shard(s) on 127.0.0.1", file=sys.stderr)
    with reference_endpoint(public_key_base64(signing_key.public_key())) as endpoint_url:
        options = EngineOptions(
            endpoint_url=endpoint_url,
            api_key=api_key,
            signing_key=private_key_base64(signing_key),
            shards=shards,
            port=0,
            backoff=0.01,
            max_backoff=0.1,
        )
        supervisor = Supervisor(options)
        try:
            supervisor.start()
        except ShardFailed as exc:
            print(f"loadgen run: {exc}", file=sys.stderr)
            return EXIT_RUN_FAILED
        try:
            print(f"loadgen run: endpoint {endpoint_url}, Dispatch API {supervisor.url}", file=sys.stderr)
            print(f"loadgen run: {calls} calls, {concurrency} in flight", file=sys.stderr)
            started = time.monotonic()
            driver = _Driver(supervisor.url, api_key, calls, started + timeout)
            threads = [threading.Thread(target=driver.run_thread, daemon=True) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            while alive := [thread for thread in threads if thread.is_alive()]:
                alive[0].join(1.0)
                _progress(driver, started)
            elapsed = time.monotonic() - started
            _progress(driver, started, final=True)
            driver.close()
            final = supervisor.drain(5.0)
        finally:
            supervisor.close()
    print()
    print(final.table())
    print()
    print(f"throughput: {driver.finished / elapsed:.0f} calls/s over {elapsed:.1f}s ({concurrency} in flight)")
    if driver.errors:
        print(f"RPC errors: {len(driver.errors)} (first: {driver.errors[0]})", file=sys.stderr)
    accounting = final.accounting()
    complete = driver.finished == calls and not driver.errors and accounting.balanced
    if not complete:
        print(f"loadgen run: the run did not complete: {accounting}", file=sys.stderr)
    return EXIT_OK if complete else EXIT_RUN_FAILED
