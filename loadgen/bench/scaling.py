"""Whole-engine throughput, 1 shard against 2: ``python -m loadgen.bench.scaling [--quick]``.

Three kinds of process, each measured on its own: the reference endpoint
(``python -m loadgen.endpoint``, verifying signatures), the engine's shard
processes, and a load-generating client (grpc.aio on uvloop). The load is a
closed loop of ``echo`` calls: ``--concurrency`` workers, each dispatches one
call, waits for its result with loadgen's ``Wait`` RPC, and starts the next,
until ``--calls`` calls are done. So at most ``--concurrency`` calls are in
flight, and every call costs a shard two RPCs plus one endpoint round trip.
Workers are spread over the shards' own addresses (``--via shards``,
balanced, no ``Wait`` forwarding) or over the shared ``SO_REUSEPORT`` address
with one connection per 4 workers (``--via shared``: the kernel picks a
shard per connection, as for independent clients).

Both engines run side by side for the whole benchmark, with one endpoint; runs
alternate 1-2, 2-1, ... for ``--repeat`` rounds and medians are reported. For
each run: completed calls per second of wall time and per CPU-second of all
shard processes, and CPU µs per call of the shards, the endpoint and the
client (utime + stime from ``/proc/PID/stat``; the client's own
``process_time``). On a 2-core machine the four processes compete for two
cores, so wall-clock throughput cannot double; CPU per call is the fair
comparison. Prints a table and writes ``results/bench/scaling.json``. Linux only.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadgen.bench._client import LoadClient, LoadSpec
from loadgen.bench._procs import (
    API_KEY,
    KeyPair,
    ReferenceEndpoint,
    check_linux,
    cpu_seconds,
    engine_idle,
    ledger_rows,
    median,
    render_table,
    shard_pids,
    start_engine,
    wait_until,
    write_report,
)
from loadgen.engine.supervisor import Supervisor

SHARD_COUNTS = (1, 2)


@dataclass
class Run:
    shards: int
    round: int
    completed: int
    failed: int
    wall_seconds: float
    calls_per_wall_second: float
    shard_cpu_seconds: list[float]
    calls_per_shard_cpu_second: float
    shard_cpu_us_per_call: float
    endpoint_cpu_us_per_call: float
    client_cpu_us_per_call: float
    total_cpu_us_per_call: float
    cores_busy: float
    calls_per_shard: list[int]


def targets(supervisor: Supervisor, via: str, concurrency: int) -> tuple[str, ...]:
    if via == "shards":
        return tuple(supervisor.shard_addresses)
    shared = supervisor.url.removeprefix("http://")
    return (shared,) * max(1, concurrency // 4)


def measure(supervisor: Supervisor, endpoint: ReferenceEndpoint, args: argparse.Namespace, round_: int) -> Run:
    shards = supervisor.shards
    spec = LoadSpec(
        targets=targets(supervisor, args.via, args.concurrency),
        api_key=API_KEY,
        function="echo",
        params={"message": "hello"},
        calls=args.calls,
        concurrency=args.concurrency,
        closed=True,
        warmup=min(args.calls // 5, 500),
        timeout=args.timeout,
    )
    pids = shard_pids(supervisor)
    with LoadClient(spec) as client:
        client.ready(args.timeout)
        rows_before = ledger_rows(supervisor)
        shard_before = [cpu_seconds(pid) for pid in pids]
        endpoint_before = cpu_seconds(endpoint.pid)
        started = time.perf_counter()
        client.go()
        result = client.result(args.timeout + 60)
        wall = time.perf_counter() - started
        shard_cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, shard_before, strict=True)]
        endpoint_cpu = cpu_seconds(endpoint.pid) - endpoint_before
        rows_after = ledger_rows(supervisor)
    if result.errors:
        print(f"  {shards} shard(s): {result.failed} calls failed, e.g. {result.errors[0]}", file=sys.stderr)
    done = result.calls
    total_shard = sum(shard_cpu)
    per_call = 1e6 / done if done else float("nan")
    return Run(
        shards=shards,
        round=round_,
        completed=done,
        failed=result.failed,
        wall_seconds=round(wall, 3),
        calls_per_wall_second=round(done / wall, 1),
        shard_cpu_seconds=[round(c, 2) for c in shard_cpu],
        calls_per_shard_cpu_second=round(done / total_shard, 1) if total_shard else float("inf"),
        shard_cpu_us_per_call=round(total_shard * per_call, 1),
        endpoint_cpu_us_per_call=round(endpoint_cpu * per_call, 1),
        client_cpu_us_per_call=round(result.cpu * per_call, 1),
        total_cpu_us_per_call=round((total_shard + endpoint_cpu + result.cpu) * per_call, 1),
        cores_busy=round((total_shard + endpoint_cpu + result.cpu) / wall, 2),
        calls_per_shard=[after[1] - before[1] for before, after in zip(rows_before, rows_after, strict=True)],
    )


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base: dict[str, float] = {}
    for shards in SHARD_COUNTS:
        mine = [r for r in runs if r.shards == shards]
        row: dict[str, Any] = {"shards": shards, "runs": len(mine), "failed": sum(r.failed for r in mine)}
        for name in (
            "calls_per_wall_second",
            "calls_per_shard_cpu_second",
            "shard_cpu_us_per_call",
            "endpoint_cpu_us_per_call",
            "client_cpu_us_per_call",
            "total_cpu_us_per_call",
            "cores_busy",
        ):
            row[name] = round(median(getattr(r, name) for r in mine), 2)
        row["runs_calls_per_wall_second"] = [r.calls_per_wall_second for r in mine]
        row["runs_calls_per_shard_cpu_second"] = [r.calls_per_shard_cpu_second for r in mine]
        row["calls_per_shard_last_run"] = mine[-1].calls_per_shard
        if shards == SHARD_COUNTS[0]:
            base = {k: v for k, v in row.items() if isinstance(v, float)}
        row["ratio_wall_vs_1"] = round(row["calls_per_wall_second"] / base["calls_per_wall_second"], 3)
        row["ratio_shard_cpu_vs_1"] = round(row["calls_per_shard_cpu_second"] / base["calls_per_shard_cpu_second"], 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.scaling", description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (< 60 s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each runs 1 and 2 shards); medians reported")
    parser.add_argument("--calls", type=int, default=5_000, help="calls per run")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight (closed-loop workers)")
    parser.add_argument("--via", choices=("shards", "shared"), default="shards", help="which addresses to load")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound of every wait, seconds")
    parser.add_argument("--output", type=Path, default=Path("results/bench/scaling.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.calls = 1, 1_500
    if args.repeat < 1 or args.calls < 100 or args.concurrency < 2:
        parser.error("need --repeat >= 1, --calls >= 100, --concurrency >= 2")
    check_linux()

    keys = KeyPair.generate()
    runs: list[Run] = []
    with ReferenceEndpoint(keys.public) as endpoint:
        engines = {n: start_engine(endpoint.url, keys.private, n) for n in SHARD_COUNTS}
        try:
            for round_ in range(args.repeat):
                for shards in SHARD_COUNTS if round_ % 2 == 0 else SHARD_COUNTS[::-1]:
                    run = measure(engines[shards], endpoint, args, round_)
                    runs.append(run)
                    print(
                        f"  round {round_ + 1}: {shards} shard(s): {run.calls_per_wall_second:>7.0f} calls/s, "
                        f"{run.calls_per_shard_cpu_second:>7.0f} calls/shard-CPU-s, calls per shard "
                        f"{run.calls_per_shard}, cores busy {run.cores_busy:.2f}",
                        flush=True,
                    )
            for engine in engines.values():
                wait_until(functools.partial(engine_idle, engine), 30)
                engine.drain(10)
        finally:
            for engine in engines.values():
                engine.close()
    rows = summarize(runs)
    print()
    print(
        render_table(
            [
                "shards",
                "calls/s",
                "vs 1",
                "calls/shard-CPU-s",
                "vs 1",
                "shards µs/call",
                "endpoint µs/call",
                "client µs/call",
                "total µs/call",
                "cores busy",
                "runs calls/s",
            ],
            [
                [
                    r["shards"],
                    f"{r['calls_per_wall_second']:.0f}",
                    f"{r['ratio_wall_vs_1']:.3f}",
                    f"{r['calls_per_shard_cpu_second']:.0f}",
                    f"{r['ratio_shard_cpu_vs_1']:.3f}",
                    f"{r['shard_cpu_us_per_call']:.0f}",
                    f"{r['endpoint_cpu_us_per_call']:.0f}",
                    f"{r['client_cpu_us_per_call']:.0f}",
                    f"{r['total_cpu_us_per_call']:.0f}",
                    f"{r['cores_busy']:.2f}",
                    " ".join(f"{v:.0f}" for v in r["runs_calls_per_wall_second"]),
                ]
                for r in rows
            ],
        )
    )
    print(
        f"closed loop: {args.concurrency} calls in flight, Dispatch + Wait per echo call, via {args.via}; "
        "µs/call: CPU per completed call of each process kind; vs 1: ratio to 1 shard"
    )
    write_report(
        args.output,
        "scaling",
        sys.argv[1:] if argv is None else argv,
        {
            "settings": {
                "repeat": args.repeat,
                "calls": args.calls,
                "concurrency": args.concurrency,
                "via": args.via,
                "function": "echo",
            },
            "summary": rows,
            "runs": [asdict(r) for r in runs],
        },
    )
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
