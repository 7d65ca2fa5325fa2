"""Calls accepted per shard CPU-second: ``python -m loadgen.bench.ingress [--quick]``.

A client process (grpc.aio on uvloop, ``--concurrency`` Dispatch RPCs in
flight) sends the same ``Dispatch`` requests, of 1 and of 100 calls, to three
servers, each in its own process, and the server process's CPU (``utime +
stime`` of ``/proc/PID/stat``, every thread) is divided into the calls it
accepted:

* **bare**: a grpc.aio server on uvloop with the same proto and gRPC options as
  a shard, whose ``Dispatch`` only returns N fresh ids (no auth, no validation,
  no state). The floor of Python gRPC ingress.
* **loadgen accept**: one shard whose calls are ``sleep`` 60 s on the
  reference endpoint. A shard cannot accept a call without starting it, so
  this is the honest accept-only cost: authenticate, validate, id, scheduler
  state and expiry timer, the ``RunRequest``, the attempt task, the
  signature, and a place in the endpoint pool's queue (the first 200 go on
  the wire and then sleep; nothing completes while it is measured). A fresh
  engine per run, so queues do not pile up across runs.
* **loadgen complete**: one shard running ``echo`` calls on the reference
  endpoint, CPU counted until every accepted call has completed: the whole
  per-call cost of a shard (ingress + egress + completion), for scale.

The endpoint is always a separate process, and its CPU is never counted here.
Runs are interleaved: each round runs every server at both batch sizes, in a
rotated order; the median of ``--repeat`` rounds is reported with every run.
Prints a table and writes ``results/bench/ingress.json``. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from loadgen.bench._client import LoadClient, LoadResult, LoadSpec
from loadgen.bench._procs import (
    API_KEY,
    KeyPair,
    ReferenceEndpoint,
    check_linux,
    cpu_seconds,
    engine_idle,
    median,
    render_table,
    shard_pids,
    start_engine,
    wait_until,
    write_report,
)
from loadgen.engine.supervisor import Supervisor

_CONTEXT = multiprocessing.get_context("spawn")
_PARAMS: dict[str, Any] = {"ms": 60_000}  # the same request bytes for every server
_SETTLE = 0.2  # seconds after the last answer before CPU is read: work the server scheduled late
TARGETS = ("bare", "loadgen accept", "loadgen complete")
BATCHES = (1, 100)


# ----------------------------------------------------------------------------- the bare server


def _serve_bare(conn: Connection) -> None:
    """Process entry: a grpc.aio Dispatch server that only returns ids; stops when *conn* closes."""
    import grpc.aio
    import uvloop

    from loadgen.engine.ingress_grpc import grpc_options
    from loadgen.engine.settings import EngineSettings
    from loadgen.pb import dispatch_pb2, dispatch_pb2_grpc

    class Bare(dispatch_pb2_grpc.DispatchServiceServicer):
        def __init__(self) -> None:
            self.next = 1

        async def Dispatch(self, request: Any, context: Any) -> Any:
            first = self.next
            self.next = first + len(request.calls)
            return dispatch_pb2.DispatchResponse(dispatch_ids=[f"{i:032x}" for i in range(first, self.next)])

    async def main() -> None:
        options = grpc_options(EngineSettings().max_message_bytes)
        server = grpc.aio.server(options=[o for o in options if o[0] != "grpc.so_reuseport"])
        dispatch_pb2_grpc.add_DispatchServiceServicer_to_server(Bare(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        closed = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), closed.set)
        conn.send(port)
        await closed.wait()
        await server.stop(0)

    uvloop.install()
    asyncio.run(main())


class BareServer:
    def __init__(self) -> None:
        self._conn, theirs = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(target=_serve_bare, args=(theirs,), name="bench-bare-grpc", daemon=True)
        self.process.start()
        theirs.close()
        if not self._conn.poll(30):
            self.close()
            raise RuntimeError("the bare gRPC server did not start")
        self.address = f"127.0.0.1:{self._conn.recv()}"
        assert self.process.pid is not None
        self.pids = [self.process.pid]

    def settle(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        self._conn.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class EngineTarget:
    def __init__(self, supervisor: Supervisor, complete: bool) -> None:
        self.supervisor = supervisor
        self.address = supervisor.shard_addresses[0]
        self.pids = shard_pids(supervisor)
        self.complete = complete

    def settle(self, timeout: float) -> bool:
        """With *complete*: wait until every accepted call ended."""
        if not self.complete:
            return True
        return wait_until(lambda: engine_idle(self.supervisor), timeout)

    def close(self) -> None:
        self.supervisor.close()


Target = BareServer | EngineTarget


# ----------------------------------------------------------------------------- measuring


@dataclass
class Run:
    target: str
    batch: int
    round: int
    accepted: int
    failed: int
    server_cpu_seconds: float
    calls_per_cpu_second: float
    server_cpu_us_per_call: float
    wall_seconds: float
    client_cpu_us_per_call: float


def measure(target: Target, name: str, batch: int, calls: int, args: argparse.Namespace, round_: int) -> Run:
    function = "sleep" if name == "loadgen accept" else "echo"
    spec = LoadSpec(
        targets=(target.address,),
        api_key=API_KEY,
        function=function,
        params=_PARAMS,
        calls=calls,
        batch=batch,
        concurrency=args.concurrency,
        warmup=min(calls // 5, 10 * batch * args.concurrency),
        timeout=args.timeout,
    )
    with LoadClient(spec) as client:
        client.ready(args.timeout)
        if not target.settle(args.timeout):
            raise RuntimeError(f"{name}: warm-up calls did not finish")
        before = sum(cpu_seconds(pid) for pid in target.pids)
        started = time.perf_counter()
        client.go()
        result: LoadResult = client.result(args.timeout)
        if not target.settle(args.timeout):
            raise RuntimeError(f"{name}: calls did not finish within {args.timeout:.0f} s")
        wall = time.perf_counter() - started
        time.sleep(_SETTLE)
        cpu = sum(cpu_seconds(pid) for pid in target.pids) - before
    if result.errors:
        print(f"  {name} batch {batch}: {result.failed} calls failed, e.g. {result.errors[0]}", file=sys.stderr)
    return Run(
        target=name,
        batch=batch,
        round=round_,
        accepted=result.calls,
        failed=result.failed,
        server_cpu_seconds=round(cpu, 3),
        calls_per_cpu_second=round(result.calls / cpu, 1) if cpu > 0 else float("inf"),
        server_cpu_us_per_call=round(cpu / result.calls * 1e6, 2) if result.calls else float("nan"),
        wall_seconds=round(wall, 3),
        client_cpu_us_per_call=round(result.cpu / result.calls * 1e6, 2) if result.calls else float("nan"),
    )


def signing_cost_us(keys: KeyPair, n: int = 2_000) -> float:
    """CPU µs of one ``Signer.headers`` call on an echo-sized body, median of 3 in this process."""
    from loadgen.pb import function_pb2
    from loadgen.protocol import values
    from loadgen.protocol.constants import RUN_CONTENT_TYPE, RUN_PATH
    from loadgen.protocol.keys import load_private_key
    from loadgen.protocol.signing import Signer

    signer = Signer(load_private_key(keys.private))
    body = function_pb2.RunRequest(
        function="echo", input=values.encode(_PARAMS), dispatch_id="0" * 32, root_dispatch_id="0" * 32
    ).SerializeToString()
    samples = []
    for _ in range(3):
        started = time.process_time()
        for _ in range(n):
            signer.headers(
                method="POST", path=RUN_PATH, authority="127.0.0.1:8000", content_type=RUN_CONTENT_TYPE, body=body
            )
        samples.append((time.process_time() - started) / n * 1e6)
    return round(median(samples), 2)


def one_round(args: argparse.Namespace, keys: KeyPair, endpoint: ReferenceEndpoint, round_: int) -> list[Run]:
    runs: list[Run] = []
    order = TARGETS[round_ % 3 :] + TARGETS[: round_ % 3]
    for name in order:
        for batch in BATCHES if round_ % 2 == 0 else BATCHES[::-1]:
            calls = args.calls_1 if batch == 1 else args.calls_100
            if name == "bare" and batch > 1:
                calls *= args.bare_factor  # ~60x cheaper per call: more calls for a measurable CPU time
            target: Target
            if name == "bare":
                target = BareServer()
            else:
                engine = start_engine(
                    endpoint.url, keys.private, 1, request_timeout=max(120.0, args.timeout), expiration=600.0
                )
                target = EngineTarget(engine, complete=name == "loadgen complete")
            try:
                run = measure(target, name, batch, calls, args, round_)
            finally:
                target.close()
            runs.append(run)
            print(
                f"  round {round_ + 1}: {name:<17} batch {batch:>3}: {run.calls_per_cpu_second:>9.0f} calls/CPU-s"
                f"  ({run.server_cpu_seconds:.2f} CPU-s, {run.wall_seconds:.2f} s wall)",
                flush=True,
            )
    return runs


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch in BATCHES:
        bare = median(r.calls_per_cpu_second for r in runs if r.target == "bare" and r.batch == batch)
        for name in TARGETS:
            mine = [r for r in runs if r.target == name and r.batch == batch]
            rate = median(r.calls_per_cpu_second for r in mine)
            rows.append(
                {
                    "target": name,
                    "batch": batch,
                    "calls_per_run": mine[0].accepted + mine[0].failed,
                    "calls_per_cpu_second": round(rate, 1),
                    "server_cpu_us_per_call": round(1e6 / rate, 2) if rate else None,
                    "ratio_vs_bare": round(rate / bare, 3) if bare else None,
                    "client_cpu_us_per_call": round(median(r.client_cpu_us_per_call for r in mine), 2),
                    "runs_calls_per_cpu_second": [r.calls_per_cpu_second for r in mine],
                    "failed": sum(r.failed for r in mine),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.ingress", description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (< 60 s)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--calls-1", type=int, default=3_000, help="calls per run with batches of 1")
    parser.add_argument("--calls-100", type=int, default=20_000, help="calls per run with batches of 100")
    parser.add_argument(
        "--bare-factor", type=int, default=20, help="the bare server gets this many times --calls-100 (default 20)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="Dispatch RPCs in flight")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound of every wait, seconds")
    parser.add_argument("--output", type=Path, default=Path("results/bench/ingress.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.calls_1, args.calls_100 = 1, 1_000, 5_000
    if args.repeat < 1 or args.calls_1 < 10 or args.calls_100 < 1000 or args.concurrency < 1:
        parser.error("need --repeat >= 1, --calls-1 >= 10, --calls-100 >= 1000, --concurrency >= 1")
    check_linux()

    keys = KeyPair.generate()
    sign_us = signing_cost_us(keys)
    runs: list[Run] = []
    with ReferenceEndpoint(keys.public) as endpoint:
        for round_ in range(args.repeat):
            runs.extend(one_round(args, keys, endpoint, round_))
    rows = summarize(runs)
    print()
    print(
        render_table(
            ["server", "batch", "calls/run", "calls/CPU-s", "CPU µs/call", "vs bare", "client µs/call", "runs"],
            [
                [
                    r["target"],
                    r["batch"],
                    r["calls_per_run"],
                    f"{r['calls_per_cpu_second']:.0f}",
                    f"{r['server_cpu_us_per_call']:.1f}",
                    f"{r['ratio_vs_bare']:.3f}",
                    f"{r['client_cpu_us_per_call']:.1f}",
                    " ".join(f"{v:.0f}" for v in r["runs_calls_per_cpu_second"]),
                ]
                for r in rows
            ],
        )
    )
    print(
        f"for reference: Signer.headers (Content-Digest + Ed25519) costs {sign_us:.1f} µs per call in this process; "
        "a shard signs each attempt when it sends it (loadgen accept: up to the pool's capacity)"
    )
    print(
        "calls/CPU-s: calls accepted per CPU-second of the server process (loadgen complete: accepted and run to "
        "completion); vs bare: ratio of calls/CPU-s, loadgen / bare"
    )
    write_report(
        args.output,
        "ingress",
        sys.argv[1:] if argv is None else argv,
        {
            "settings": {
                "repeat": args.repeat,
                "calls_1": args.calls_1,
                "calls_100": args.calls_100,
                "bare_factor": args.bare_factor,
                "concurrency": args.concurrency,
                "settle_seconds": _SETTLE,
                "sign_us_in_process": sign_us,
            },
            "summary": rows,
            "runs": [asdict(r) for r in runs],
        },
    )
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
