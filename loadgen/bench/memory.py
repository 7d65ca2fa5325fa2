"""Memory per pending call: ``python -m loadgen.bench.memory [--quick]``.

What "pending" means here: ``--calls`` (100,000) root calls accepted and not
finished because the endpoint is slow. Every call is ``sleep`` {"ms": 120000}
on the real reference endpoint (a separate process). One shard with the
engine's default pool (2 connections x 100 streams) puts 200 of them on the
wire, where they sleep at the endpoint; the other 99,800 wait in the shard's
endpoint pool for a stream slot. Each pending call holds what the engine
keeps for it in that state: its scheduler record, ``RunRequest`` and expiry
timer, its attempt task, its signature headers and its place in the pool's
queue. The request timeout (600 s) and expiration (900 s) are raised so that
nothing times out while it is measured. A blackhole endpoint would measure the
same state with 0 instead of 200 calls on the wire, so the real endpoint is used.

Steps: start the endpoint and one shard; run 1,000 ``echo`` calls to warm up
(connections open, code paths loaded); read the shard's RSS (``VmRSS`` of
``/proc/PID/status``); dispatch the calls from a client process (batches of
1,000, 4 RPCs in flight); wait until the shard has started every attempt;
read RSS and report ``(after - before) / calls``. Then it holds them for
``--hold`` seconds and reports the shard's CPU meanwhile (work done just to
keep calls waiting), and drains the engine (``Supervisor.drain``: pending calls
end as expired) and reports how long that took and the final accounting.

The same calls are then held by the old mock, dispatch-py 0.7.1's
``DispatchService`` + ``DispatchServer`` in ``.venv-sdk`` (if present), which
only appends each accepted call to a list while its single dispatch thread
works on one call at a time: the same measurement of its process's RSS.

Memory is not a time, so one run of each is made; the CPU while holding is
indicative. Prints a table and writes ``results/bench/memory.json``. Linux only.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
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
    render_table,
    rss_bytes,
    sdk_python,
    shard_pids,
    start_engine,
    wait_until,
    write_report,
)

_SLEEP: dict[str, Any] = {"ms": 120_000}
_WARMUP = 1_000


@dataclass
class Holder:
    server: str
    calls: int
    accepted: int
    rss_before_mb: float
    rss_after_mb: float
    bytes_per_call: float
    accept_seconds: float
    accept_cpu_us_per_call: float
    hold_seconds: float
    hold_cpu_percent: float
    drain_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


def _mb(n: int) -> float:
    return round(n / 1e6, 1)


def _dispatch(address: str, function: str, params: dict[str, Any], calls: int, timeout: float) -> tuple[int, float]:
    """Dispatch *calls* from a client process (batches of 1,000, 4 in flight): (accepted, wall seconds)."""
    spec = LoadSpec(
        targets=(address,),
        api_key=API_KEY,
        function=function,
        params=params,
        calls=calls,
        batch=min(1_000, calls),
        concurrency=4,
        timeout=timeout,
    )
    with LoadClient(spec) as client:
        client.ready(timeout)
        started = time.perf_counter()
        client.go()
        result = client.result(timeout)
    if result.errors:
        print(f"  dispatch: {result.failed} calls failed, e.g. {result.errors[0]}", file=sys.stderr)
    return result.calls, time.perf_counter() - started


def _quiet(pid: int, timeout: float, window: float = 0.5, busy: float = 0.25) -> bool:
    """Wait until *pid* used less than *busy* of a core over *window* seconds (its backlog is worked off)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < busy * window:
            return True
    return False


def hold(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return round((cpu_seconds(pid) - before) / seconds * 100, 1)


def measure_loadgen(args: argparse.Namespace, keys: KeyPair, endpoint: ReferenceEndpoint) -> Holder:
    engine = start_engine(endpoint.url, keys.private, 1, request_timeout=600.0, expiration=900.0)
    notes: list[str] = []
    try:
        (pid,) = shard_pids(engine)
        address = engine.shard_addresses[0]
        _dispatch(address, "echo", {"message": "warm-up"}, _WARMUP, args.timeout)
        wait_until(lambda: engine_progress(engine)[1] >= _WARMUP, args.timeout)
        _quiet(pid, args.timeout)
        before = rss_bytes(pid)
        cpu_before = cpu_seconds(pid)
        accepted, accept_wall = _dispatch(address, "sleep", _SLEEP, args.calls, args.timeout)
        # the attempt tasks run (and sign) right after each batch is accepted; wait for that backlog to clear
        if not _quiet(pid, 30.0, busy=0.6):
            notes.append("the shard never went quiet after accepting (CPU below 60% of a core)")
        accept_cpu = cpu_seconds(pid) - cpu_before
        after = rss_bytes(pid)
        snapshot = engine.snapshot()
        in_flight = snapshot.gauges.get("in_flight", 0)
        if in_flight != accepted:
            notes.append(f"in_flight gauge {in_flight} != accepted {accepted}")
        notes.append(f"open connections: {snapshot.gauges.get('open_connections', 0)}")
        hold_cpu = hold(pid, args.hold)
        after = max(after, rss_bytes(pid))
        started = time.perf_counter()
        final = engine.drain(args.drain_timeout)
        drain_seconds = time.perf_counter() - started
        accounting = final.accounting()
        notes.append(f"after drain: {accounting}")
    finally:
        engine.close()
    return Holder(
        server="loadgen, 1 shard",
        calls=args.calls,
        accepted=accepted,
        rss_before_mb=_mb(before),
        rss_after_mb=_mb(after),
        bytes_per_call=round((after - before) / max(accepted, 1)),
        accept_seconds=round(accept_wall, 2),
        accept_cpu_us_per_call=round(accept_cpu / max(accepted, 1) * 1e6, 1),
        hold_seconds=args.hold,
        hold_cpu_percent=hold_cpu,
        drain_seconds=round(drain_seconds, 2),
        notes=notes,
    )


def measure_oldmock(args: argparse.Namespace, keys: KeyPair, endpoint: ReferenceEndpoint, python: Path) -> Holder:
    notes = [
        "dispatch thread started (as `with service:`); it sends one call at a time, its httpx client gives up "
        "after 5 s and the mock re-queues the call, so all but one call stay in service.queue"
    ]
    with OldMock(python, endpoint.url, keys) as mock:
        warm = min(_WARMUP, 200)  # the old mock is slow; 200 calls are enough to load its code paths
        _dispatch(mock.address, "echo", {"message": "warm-up"}, warm, args.timeout)
        completed, _ = mock.wait_completed(warm, idle_timeout=30)
        if completed < warm:
            notes.append(f"warm-up: only {completed}/{warm} completed")
        _quiet(mock.pid, args.timeout)
        before = rss_bytes(mock.pid)
        cpu_before = cpu_seconds(mock.pid)
        accepted, accept_wall = _dispatch(mock.address, "sleep", _SLEEP, args.calls, args.timeout)
        _quiet(mock.pid, 30.0, busy=0.6)
        accept_cpu = cpu_seconds(mock.pid) - cpu_before
        after = rss_bytes(mock.pid)
        _, queued = mock.counts()
        notes.append(f"service.queue holds {queued} calls")
        hold_cpu = hold(mock.pid, args.hold)
        after = max(after, rss_bytes(mock.pid))
    return Holder(
        server="old mock (dispatch-py 0.7.1)",
        calls=args.calls,
        accepted=accepted,
        rss_before_mb=_mb(before),
        rss_after_mb=_mb(after),
        bytes_per_call=round((after - before) / max(accepted, 1)),
        accept_seconds=round(accept_wall, 2),
        accept_cpu_us_per_call=round(accept_cpu / max(accepted, 1) * 1e6, 1),
        hold_seconds=args.hold,
        hold_cpu_percent=hold_cpu,
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.memory", description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 calls, shorter hold (< 60 s)")
    parser.add_argument("--calls", type=int, default=100_000, help="pending calls to hold")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them while the CPU is read")
    parser.add_argument("--drain-timeout", type=float, default=0.5, help="Supervisor.drain timeout, seconds")
    parser.add_argument("--no-oldmock", action="store_true", help="skip the old mock")
    parser.add_argument("--timeout", type=float, default=180.0, help="bound of every wait, seconds")
    parser.add_argument("--output", type=Path, default=Path("results/bench/memory.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.hold = 20_000, 3.0
    if args.calls < 1_000 or args.hold <= 0:
        parser.error("need --calls >= 1000 and --hold > 0")
    check_linux()

    keys = KeyPair.generate()
    holders: list[Holder] = []
    python = None if args.no_oldmock else sdk_python()
    if python is None and not args.no_oldmock:
        print("no .venv-sdk (bash tests/interop/setup_sdk_venv.sh): skipping the old mock", file=sys.stderr)
    with ReferenceEndpoint(keys.public) as endpoint:
        holders.append(measure_loadgen(args, keys, endpoint))
        print(f"  loadgen: {holders[-1].bytes_per_call:.0f} bytes per pending call", flush=True)
        if python is not None:
            holders.append(measure_oldmock(args, keys, endpoint, python))
            print(f"  old mock: {holders[-1].bytes_per_call:.0f} bytes per pending call", flush=True)
    print()
    print(
        render_table(
            [
                "server",
                "pending",
                "RSS before MB",
                "RSS after MB",
                "bytes/call",
                "accept s",
                "accept CPU µs/call",
                "CPU % holding",
                "drain s",
            ],
            [
                [
                    h.server,
                    h.accepted,
                    f"{h.rss_before_mb:.1f}",
                    f"{h.rss_after_mb:.1f}",
                    f"{h.bytes_per_call:.0f}",
                    f"{h.accept_seconds:.2f}",
                    f"{h.accept_cpu_us_per_call:.1f}",
                    f"{h.hold_cpu_percent:.1f}",
                    "-" if h.drain_seconds is None else f"{h.drain_seconds:.2f}",
                ]
                for h in holders
            ],
        )
    )
    if len(holders) == 2:
        ratio = holders[0].bytes_per_call / holders[1].bytes_per_call if holders[1].bytes_per_call else float("nan")
        print(f"bytes per pending call, loadgen / old mock: {ratio:.2f}")
    for h in holders:
        for note in h.notes:
            print(f"  {h.server}: {note}")
    write_report(
        args.output,
        "memory",
        sys.argv[1:] if argv is None else argv,
        {
            "settings": {
                "calls": args.calls,
                "function": "sleep",
                "params": _SLEEP,
                "hold_seconds": args.hold,
                "drain_timeout": args.drain_timeout,
                "engine": {"connections": 2, "max_streams": 100, "request_timeout": 600.0},
            },
            "holders": [asdict(h) for h in holders],
            "ratio_bytes_loadgen_vs_oldmock": (
                round(holders[0].bytes_per_call / holders[1].bytes_per_call, 3)
                if len(holders) == 2 and holders[1].bytes_per_call
                else None
            ),
        },
    )
    return 0 if all(h.accepted == h.calls for h in holders) else 1


if __name__ == "__main__":
    sys.exit(main())
