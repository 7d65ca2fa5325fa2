"""loadgen against the old mock it replaces: ``python -m loadgen.bench.oldmock [--quick]``.

The same workload through three Dispatch services: ``--calls`` (2,000) ``echo``
calls dispatched through the Dispatch gRPC API by a client process (grpc.aio
on uvloop, ``--concurrency`` RPCs in flight, batches of 1 and of 100 calls per
RPC), timed from the first RPC until the service has finished every call:

* **old mock**: dispatch-py 0.7.1's ``dispatch.test.DispatchService`` +
  ``DispatchServer`` + ``EndpointClient`` in ``.venv-sdk``, as its own process
  (``_oldmock_runner.py``). It has no ``Wait`` RPC, so the runner counts root
  calls whose response ended them (OK, ``exit``, no tail call) and the benchmark
  asks it when the count is reached;
* **loadgen, 1 shard** and **loadgen, 2 shards**: the engine ``loadgen serve``
  runs (``Supervisor`` with the default ``EngineOptions``); completion is read
  from its shared-memory ledger (``ended == accepted``), which costs the shards
  nothing. With 2 shards the client spreads its RPCs over both shards' addresses.

All three sign with the same key, and one reference endpoint (a separate
process) verifies every request. Reported per service: wall time, calls/s,
CPU µs per call of the service process(es), of the endpoint and of the client,
and the ratios loadgen / old mock. The services run side by side, runs are
interleaved in a rotated order for ``--repeat`` rounds, medians are reported.
Prints a table and writes ``results/bench/oldmock.json``. Linux only.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadgen.bench._client import LoadClient, LoadSpec
from loadgen.bench._procs import (
    API_KEY,
    KeyPair,
    OldMock,
    ReferenceEndpoint,
    check_linux,
    cpu_seconds,
    engine_progress,
    median,
    render_table,
    sdk_python,
    shard_pids,
    start_engine,
    wait_until,
    write_report,
)
from loadgen.engine.supervisor import Supervisor

OLD = "old mock"
BATCHES = (1, 100)


class Service:
    """One Dispatch service under test: where to send calls, whose CPU to count, when calls are done."""

    def __init__(self, name: str, mock: OldMock | None = None, engine: Supervisor | None = None) -> None:
        self.name = name
        self.mock = mock
        self.engine = engine
        self.sent = 0  # calls dispatched to it so far (warm-ups included)
        if mock is not None:
            self.targets: tuple[str, ...] = (mock.address,)
            self.pids = [mock.pid]
        else:
            assert engine is not None
            self.targets = tuple(engine.shard_addresses)
            self.pids = shard_pids(engine)

    def finish(self, timeout: float) -> int:
        """Wait until every call sent so far has ended; return how many have."""
        if self.mock is not None:
            completed, _ = self.mock.wait_completed(self.sent, idle_timeout=timeout)
            return completed
        assert self.engine is not None
        engine = self.engine
        wait_until(lambda: engine_progress(engine)[1] >= self.sent, timeout, interval=0.002)
        return engine_progress(engine)[1]


@dataclass
class Run:
    service: str
    batch: int
    round: int
    calls: int
    completed: int
    wall_seconds: float
    calls_per_second: float
    service_cpu_us_per_call: float
    endpoint_cpu_us_per_call: float
    client_cpu_us_per_call: float


def measure(service: Service, endpoint: ReferenceEndpoint, batch: int, args: argparse.Namespace, round_: int) -> Run:
    warmup = max(batch, min(200, args.calls // 10))
    spec = LoadSpec(
        targets=service.targets,
        api_key=API_KEY,
        function="echo",
        params={"message": "hello"},
        calls=args.calls,
        batch=batch,
        concurrency=args.concurrency,
        warmup=warmup,
        timeout=args.timeout,
    )
    with LoadClient(spec) as client:
        client.ready(args.timeout)
        service.sent += warmup
        base = service.finish(args.timeout)
        if base < service.sent:
            raise RuntimeError(f"{service.name}: warm-up calls did not finish ({base}/{service.sent})")
        service_before = sum(cpu_seconds(pid) for pid in service.pids)
        endpoint_before = cpu_seconds(endpoint.pid)
        started = time.perf_counter()
        client.go()
        result = client.result(args.timeout * 10)
        service.sent += result.calls
        completed = service.finish(args.timeout) - base
        wall = time.perf_counter() - started
        service_cpu = sum(cpu_seconds(pid) for pid in service.pids) - service_before
        endpoint_cpu = cpu_seconds(endpoint.pid) - endpoint_before
    if result.errors:
        print(f"  {service.name}: {result.failed} calls not accepted, e.g. {result.errors[0]}", file=sys.stderr)
    if completed < args.calls:
        print(f"  {service.name}: only {completed} of {args.calls} calls finished", file=sys.stderr)
    per_call = 1e6 / completed if completed else float("nan")
    return Run(
        service=service.name,
        batch=batch,
        round=round_,
        calls=args.calls,
        completed=completed,
        wall_seconds=round(wall, 3),
        calls_per_second=round(completed / wall, 1),
        service_cpu_us_per_call=round(service_cpu * per_call, 1),
        endpoint_cpu_us_per_call=round(endpoint_cpu * per_call, 1),
        client_cpu_us_per_call=round(result.cpu * per_call, 1),
    )


def summarize(runs: list[Run], names: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch in BATCHES:
        old: dict[str, float] = {}
        for name in names:
            mine = [r for r in runs if r.service == name and r.batch == batch]
            row: dict[str, Any] = {"service": name, "batch": batch, "runs": len(mine)}
            for key in (
                "wall_seconds",
                "calls_per_second",
                "service_cpu_us_per_call",
                "endpoint_cpu_us_per_call",
                "client_cpu_us_per_call",
            ):
                row[key] = round(median(getattr(r, key) for r in mine), 2)
            row["incomplete_runs"] = sum(r.completed < r.calls for r in mine)
            row["runs_calls_per_second"] = [r.calls_per_second for r in mine]
            row["runs_service_cpu_us_per_call"] = [r.service_cpu_us_per_call for r in mine]
            if name == OLD:
                old = row
            if old:
                row["calls_per_second_vs_old"] = round(row["calls_per_second"] / old["calls_per_second"], 2)
                row["service_cpu_per_call_vs_old"] = round(
                    row["service_cpu_us_per_call"] / old["service_cpu_us_per_call"], 3
                )
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.oldmock", description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 500 calls (< 60 s)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--calls", type=int, default=2_000, help="echo calls per run")
    parser.add_argument("--concurrency", type=int, default=8, help="Dispatch RPCs in flight")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up when no call finished for this long")
    parser.add_argument("--no-oldmock", action="store_true", help="loadgen only (no .venv-sdk needed)")
    parser.add_argument("--output", type=Path, default=Path("results/bench/oldmock.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.calls = 1, 500
    if args.repeat < 1 or args.calls < 100 or args.concurrency < 1:
        parser.error("need --repeat >= 1, --calls >= 100, --concurrency >= 1")
    check_linux()
    python = None if args.no_oldmock else sdk_python()
    if python is None and not args.no_oldmock:
        print("no .venv-sdk (bash tests/interop/setup_sdk_venv.sh): running loadgen only", file=sys.stderr)

    keys = KeyPair.generate()
    runs: list[Run] = []
    services: list[Service] = []
    mock: OldMock | None = None
    engines: list[Supervisor] = []
    with ReferenceEndpoint(keys.public) as endpoint:
        try:
            if python is not None:
                mock = OldMock(python, endpoint.url, keys)
                services.append(Service(OLD, mock=mock))
            for shards in (1, 2):
                engines.append(start_engine(endpoint.url, keys.private, shards))
                services.append(Service(f"loadgen, {shards} shard{'s' if shards > 1 else ''}", engine=engines[-1]))
            for round_ in range(args.repeat):
                for batch in BATCHES if round_ % 2 == 0 else BATCHES[::-1]:
                    shift = round_ % len(services)
                    for service in services[shift:] + services[:shift]:
                        run = measure(service, endpoint, batch, args, round_)
                        runs.append(run)
                        print(
                            f"  round {round_ + 1}: {service.name:<17} batch {batch:>3}: {run.wall_seconds:6.2f} s, "
                            f"{run.calls_per_second:7.0f} calls/s, service {run.service_cpu_us_per_call:7.0f} µs/call",
                            flush=True,
                        )
        finally:
            if mock is not None:
                mock.close()
            for engine in engines:
                engine.close()
    rows = summarize(runs, [s.name for s in services])
    print()
    print(
        render_table(
            [
                "service",
                "batch",
                "wall s",
                "calls/s",
                "vs old",
                "service µs/call",
                "vs old",
                "endpoint µs/call",
                "client µs/call",
                "runs calls/s",
            ],
            [
                [
                    r["service"],
                    r["batch"],
                    f"{r['wall_seconds']:.2f}",
                    f"{r['calls_per_second']:.0f}",
                    f"{r['calls_per_second_vs_old']:.2f}" if "calls_per_second_vs_old" in r else "-",
                    f"{r['service_cpu_us_per_call']:.0f}",
                    f"{r['service_cpu_per_call_vs_old']:.3f}" if "service_cpu_per_call_vs_old" in r else "-",
                    f"{r['endpoint_cpu_us_per_call']:.0f}",
                    f"{r['client_cpu_us_per_call']:.0f}",
                    " ".join(f"{v:.0f}" for v in r["runs_calls_per_second"]),
                ]
                for r in rows
            ],
        )
    )
    print(
        f"{args.calls} echo calls per run, {args.concurrency} Dispatch RPCs in flight; wall: first RPC to last call "
        "finished; service µs/call: CPU of the service process(es) per call; vs old: loadgen / old mock"
    )
    write_report(
        args.output,
        "oldmock",
        sys.argv[1:] if argv is None else argv,
        {
            "settings": {
                "repeat": args.repeat,
                "calls": args.calls,
                "concurrency": args.concurrency,
                "batches": list(BATCHES),
                "function": "echo",
                "old_mock": "dispatch-py 0.7.1" if python is not None else None,
            },
            "summary": rows,
            "runs": [asdict(r) for r in runs],
        },
    )
    return 0 if all(r["incomplete_runs"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
