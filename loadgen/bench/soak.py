"""Soak: is memory flat under steady load? ``python -m loadgen.bench.soak [--minutes 10] [--quick]``.

Steady load for a bounded time (``--minutes``, default 10; ``--quick``: 1 minute) against
two shards and the reference endpoint (verifying signatures), each in its own process:
a client process (grpc.aio on uvloop) runs a closed loop of ``--concurrency`` workers,
each dispatching one call and waiting for it with ``Wait`` (every other worker waits
through the other shard, so ``Wait`` forwarding is exercised too), with the mix of
``scenarios/soak.toml`` plus a ``fail`` that fails once (retries): ``echo`` with a 1 KiB
input, ``sleep`` 20 ms, ``fanout`` of 3, ``chain`` of 3, ``payload`` of 4 KiB.

Every ``--interval`` seconds it samples the resident set size (``VmRSS`` of
``/proc/PID/status``) of every process (each shard, this process, which is the
supervisor and driver, the endpoint and the client) and the engine's accounting
(merged shard snapshot: completed, failed, in flight, attempts, connections), and asks
the supervisor for the shards' health (a restart is reported and fails the run).

At the end: a table of RSS over time per process, and for each process the RSS after
warm-up (the first ``--warmup`` seconds, default max(20 s, 20% of the run), are left out),
its least-squares slopes in MB per minute (after warm-up, and over the last third), and a
verdict: RSS saw-tooths by tens of MB under load, so the verdict compares the middle and the
last third of the run after warm-up instead of trusting a slope: ``growing`` when both the
median and the high-water mark rose by more than ``--flat`` MB per minute between them (at
least 1% of the RSS) and the last third still slopes upward, ``falling`` when both fell by
more, else ``flat``. Growth that stops (a
bounded table filling up) is so told from growth that goes on. Shards keep the results of
the last 100,000 root calls each (``result_retention``, for ``Wait``), so a shard's RSS grows, by design, until it holds
that many; while a shard is below that bound its verdict says so, with the memory per
retained result, instead of calling the growth a leak; once full, it should be flat. Each
shard's count of Python objects (``python_blocks``) is sampled too: RSS growing while it stays
flat is the C allocator, not a leak of objects (see :mod:`loadgen.allocator`).
Writes ``results/bench/soak.json``. Exit code 0 when no call failed, no shard restarted
and the accounting balanced (memory is reported, not gated). Linux only.

``--overload`` (``--quick``: 1 minute): far more than the endpoint can take, with the engine's
default admission caps. Closed-loop workers dispatch without waiting (``wait = false``), mixing
batches of 100 small echo calls, single calls with a 1 MB input, and batches of 10 fan-outs of
10; a worker a full shard rejects (RESOURCE_EXHAUSTED) sleeps the pushback it was given. Samples
add the engine's offered / rejected calls, the calls' bytes held and the queued attempts. It
passes (exit 0) when every shard stayed under ``--max-rss`` MB (default 512), every rejection was
a RESOURCE_EXHAUSTED with a pushback, offered = accepted + rejected and accepted = completed +
failed + expired + cancelled + lost after the drain, no shard restarted, and (runs of 5 minutes
or more) no shard's RSS was still growing from the middle to the last third.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from loadgen.bench._procs import (
    API_KEY,
    KeyPair,
    ReferenceEndpoint,
    check_linux,
    engine_idle,
    render_table,
    rss_bytes,
    shard_pids,
    start_engine,
    wait_until,
    write_report,
)
from loadgen.core.counters import CounterKind
from loadgen.engine.supervisor import Supervisor

__all__ = ["main"]

_CONTEXT = multiprocessing.get_context("spawn")
RESULT_RETENTION = 100_000  # AsyncDispatcher's default: root results kept per shard for Wait
MB = 1024 * 1024

# (function, weight, input): scenarios/soak.toml's mix, plus a call that fails once and is retried
MIX: tuple[tuple[str, int, dict[str, Any]], ...] = (
    ("echo", 55, {"padding": "x" * 1024}),
    ("sleep", 20, {"ms": 20}),
    ("fanout", 10, {"n": 3}),
    ("chain", 5, {"depth": 3}),
    ("payload", 5, {"bytes": 4096}),
    ("fail", 5, {"status": "TEMPORARY_ERROR", "times": 1}),
)

# --overload: (function, weight, input, calls per Dispatch)
OVERLOAD_MIX: tuple[tuple[str, int, Any, int], ...] = (
    ("echo", 80, {"padding": "x" * 64}, 100),
    ("echo", 10, "x" * (1024 * 1024), 1),
    ("fanout", 10, {"n": 10}, 10),
)
MAX_RSS_MB = 512.0


# -- the client process ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    targets: tuple[str, ...]  # the shards' own addresses
    api_key: str
    seconds: float
    concurrency: int
    seed: int
    timeout: float = 60.0
    overload: bool = False


@dataclass
class ClientResult:
    ok: int = 0
    failed: int = 0
    rpc_errors: int = 0
    by_function: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    offered: int = 0  # --overload: calls dispatched, accepted or rejected
    rejected: int = 0  # --overload: calls a full shard rejected (RESOURCE_EXHAUSTED)
    rejected_without_pushback: int = 0
    pushback_s: float = 0.0  # --overload: seconds the workers slept as the shards asked


async def _closed_loop(spec: ClientSpec) -> ClientResult:
    import grpc.aio

    from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
    from loadgen.protocol import values
    from loadgen.protocol.constants import STATUS_TRAILER

    result = ClientResult()
    metadata = (("authorization", f"Bearer {spec.api_key}"),)
    requests = [
        (name, weight, dispatch_pb2.DispatchRequest(calls=[call_pb2.Call(function=name, input=values.encode(params))]))
        for name, weight, params in MIX
    ]
    weights = [weight for _, weight, _ in requests]
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * MB)]
    channels = [grpc.aio.insecure_channel(target, options=options) for target in spec.targets]
    stubs = [dispatch_pb2_grpc.DispatchServiceStub(channel) for channel in channels]
    deadline = time.monotonic() + spec.seconds

    def note(error: str) -> None:
        if len(result.errors) < 5:
            result.errors.append(error[:300])

    async def worker(index: int) -> None:
        rng = random.Random(spec.seed * 1000 + index)
        sender = stubs[index % len(stubs)]
        waiter = stubs[(index + index % 2) % len(stubs)]  # odd workers wait through the other shard
        while time.monotonic() < deadline:
            name, _, request = rng.choices(requests, weights)[0]
            try:
                (dispatch_id,) = (await sender.Dispatch(request, metadata=metadata, timeout=spec.timeout)).dispatch_ids
                wait = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
                wait.timeout.FromSeconds(int(spec.timeout))
                pending = waiter.Wait(wait, metadata=metadata, timeout=spec.timeout + 5)
                await pending
                status = dict(await pending.trailing_metadata()).get(STATUS_TRAILER)
            except grpc.aio.AioRpcError as exc:
                result.rpc_errors += 1
                note(f"{name}: {exc.code().name}: {exc.details()}")
                continue
            result.by_function[name] = result.by_function.get(name, 0) + 1
            if status == "STATUS_OK":
                result.ok += 1
            else:
                result.failed += 1
                note(f"{name} ended {status}")

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(i) for i in range(spec.concurrency)))
    finally:
        for channel in channels:
            await channel.close()
    result.seconds = time.monotonic() - started
    return result


async def _overload_loop(spec: ClientSpec) -> ClientResult:
    """Dispatch without waiting, as fast as the shards take it; back off by the pushback when rejected."""
    import grpc
    import grpc.aio

    from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
    from loadgen.protocol import values
    from loadgen.protocol.constants import PUSHBACK_TRAILER

    result = ClientResult()
    metadata = (("authorization", f"Bearer {spec.api_key}"),)
    requests = [
        (name, count, dispatch_pb2.DispatchRequest(calls=[call_pb2.Call(function=name, input=encoded)] * count))
        for name, _, value, count in OVERLOAD_MIX
        for encoded in (values.encode(value),)
    ]
    weights = [weight for _, weight, _, _ in OVERLOAD_MIX]
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 64 * MB)]
    channels = [grpc.aio.insecure_channel(target, options=options) for target in spec.targets]
    stubs = [dispatch_pb2_grpc.DispatchServiceStub(channel) for channel in channels]
    deadline = time.monotonic() + spec.seconds

    async def worker(index: int) -> None:
        rng = random.Random(spec.seed * 1000 + index)
        stub = stubs[index % len(stubs)]
        while time.monotonic() < deadline:
            name, count, request = rng.choices(requests, weights)[0]
            result.offered += count
            try:
                await stub.Dispatch(request, metadata=metadata, timeout=spec.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    result.rpc_errors += 1
                    if len(result.errors) < 5:
                        result.errors.append(f"{name}: {exc.code().name}: {exc.details()}"[:300])
                    await asyncio.sleep(0.1)  # a shard down (restarting): do not spin on it
                    continue
                result.rejected += count
                pushback = dict(exc.trailing_metadata() or ()).get(PUSHBACK_TRAILER)
                if pushback is None:
                    result.rejected_without_pushback += count
                    continue
                seconds = min(int(pushback) / 1000, max(0.0, deadline - time.monotonic()))
                result.pushback_s += seconds
                await asyncio.sleep(seconds)
                continue
            result.ok += count
            result.by_function[name] = result.by_function.get(name, 0) + count

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(i) for i in range(spec.concurrency)))
    finally:
        for channel in channels:
            await channel.close()
    result.seconds = time.monotonic() - started
    return result


def _client_main(spec: ClientSpec, conn: Connection) -> None:
    import uvloop

    try:
        uvloop.install()
        conn.send({"result": asyncio.run(_overload_loop(spec) if spec.overload else _closed_loop(spec))})
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


# -- sampling -------------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mb: dict[str, float]
    completed: int
    failed: int
    expired: int
    in_flight: int
    attempts: int
    retries: int
    open_connections: int
    ended_per_shard: dict[str, int]  # root calls ended (completed, failed, expired) by each shard
    offered: int = 0
    rejected: int = 0
    held_mb: float = 0.0  # bytes the calls in flight hold (the admission estimate), all shards
    queued_attempts: int = 0
    python_blocks: dict[str, int] = field(default_factory=dict)  # per shard: objects Python allocated
    malloc_mb: dict[str, tuple[float, float]] = field(default_factory=dict)  # per shard: C heap (in use, free)


def _rss_mb(pid: int) -> float:
    try:
        return round(rss_bytes(pid) / MB, 2)
    except (OSError, RuntimeError):
        return float("nan")


def _sample(t: float, processes: dict[str, int], supervisor: Supervisor) -> Sample:
    rss = {name: _rss_mb(pid) for name, pid in processes.items()}
    snapshot = supervisor.snapshot()
    accounting = snapshot.accounting()
    ended = {}
    blocks = {}
    heaps = {}
    for shard in snapshot.shards:
        own = snapshot.accounting(shard)
        ended[shard] = own.completed + own.failed + own.expired + own.cancelled
        gauges = snapshot.per_shard[shard].gauges
        blocks[shard] = gauges.get("python_blocks", 0)
        heaps[shard] = (
            round(gauges.get("malloc_in_use_bytes", 0) / MB, 1),
            round(gauges.get("malloc_free_bytes", 0) / MB, 1),
        )
    return Sample(
        t=round(t, 2),
        rss_mb=rss,
        completed=accounting.completed,
        failed=accounting.failed,
        expired=accounting.expired,
        in_flight=accounting.in_flight,
        attempts=snapshot.counter(CounterKind.ATTEMPTS),
        retries=snapshot.counter(CounterKind.RETRIES),
        open_connections=snapshot.gauges.get("open_connections", 0),
        ended_per_shard=ended,
        offered=accounting.offered,
        rejected=accounting.rejected,
        held_mb=round(snapshot.gauges.get("held_bytes", 0) / MB, 1),
        queued_attempts=snapshot.gauges.get("queued_attempts", 0),
        python_blocks=blocks,
        malloc_mb=heaps,
    )


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute."""
    points = [(t, v) for t, v in points if v == v]  # drop NaN
    if len(points) < 2:
        return float("nan")
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return float("nan")
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 60


def _trend(points: list[tuple[float, float]], flat: float) -> dict[str, Any]:
    """Whether RSS still rises from the middle to the last third of the run after warm-up.

    A shard's RSS saw-tooths by tens of MB as batches come and go, so a slope over a few minutes is
    mostly noise. Growth that goes on lifts both the typical value (the median) and the high-water mark
    (the maximum) of each third and is still rising at the end; the verdict is ``growing`` when both rose
    by more than the tolerance (``flat`` MB per minute between the thirds' centres, at least 1% of the
    RSS) and the last third's own slope is upward, ``falling`` when both fell by more and that slope is
    not upward, else ``flat``."""
    points = [(t, v) for t, v in points if v == v]
    n = len(points)
    if n < 6:
        return {"trend": "flat", "tolerance_mb": None}
    middle, last = points[n // 3 : 2 * n // 3], points[2 * n // 3 :]
    minutes = ((last[0][0] + last[-1][0]) - (middle[0][0] + middle[-1][0])) / 2 / 60
    median_middle, median_last = statistics.median(v for _, v in middle), statistics.median(v for _, v in last)
    high_middle, high_last = max(v for _, v in middle), max(v for _, v in last)
    tolerance = max(flat * minutes, 0.01 * median_middle)
    rises = (median_last - median_middle, high_last - high_middle)
    still_rising = _slope(last) > 0
    trend = (
        "growing"
        if min(rises) > tolerance and still_rising
        else "falling"
        if max(rises) < -tolerance and not still_rising
        else "flat"
    )
    return {
        "trend": trend,
        "median_mb_middle_third": round(median_middle, 1),
        "median_mb_last_third": round(median_last, 1),
        "max_mb_middle_third": round(high_middle, 1),
        "max_mb_last_third": round(high_last, 1),
        "tolerance_mb": round(tolerance, 2),
    }


def _summarize(samples: list[Sample], warmup: float, flat: float) -> list[dict[str, Any]]:
    """Per process: RSS at points of the run, slopes after warm-up and over its last third, a verdict.

    The verdict reads the last third, so growth that stops (a cache or a bounded table filling up)
    is not mistaken for a leak, and growth that goes on to the end is not averaged away."""
    after = [s for s in samples if s.t >= warmup] or samples[-2:]
    tail_start = after[0].t + (after[-1].t - after[0].t) * 2 / 3
    tail = [s for s in after if s.t >= tail_start]
    rows = []
    for name in samples[0].rss_mb:
        series = [(s.t, s.rss_mb[name]) for s in after]
        values = [v for _, v in series if v == v]
        slope = _slope(series)
        tail_slope = _slope([(s.t, s.rss_mb[name]) for s in tail])
        row: dict[str, Any] = {
            "process": name,
            "rss_mb_at_start": samples[0].rss_mb[name],
            "rss_mb_after_warmup": values[0] if values else None,
            "rss_mb_at_end": values[-1] if values else None,
            "rss_mb_min": min(values) if values else None,
            "rss_mb_max": max(values) if values else None,
            "slope_mb_per_min": round(slope, 3),
            "slope_mb_per_min_last_third": round(tail_slope, 3),
        }
        trend = _trend([(s.t, s.rss_mb[name]) for s in after], flat)
        row.update(trend)
        verdict = trend["trend"]
        if name.startswith("shard-"):
            blocks = [(s.t, float(s.python_blocks.get(name, 0))) for s in tail if s.python_blocks.get(name)]
            row["python_blocks_at_end"] = int(blocks[-1][1]) if blocks else None
            row["python_blocks_per_min_last_third"] = round(_slope(blocks)) if len(blocks) > 1 else None
            for part, label in ((0, "malloc_in_use"), (1, "malloc_free")):
                heap = _trend([(s.t, s.malloc_mb[name][part]) for s in after if name in s.malloc_mb], flat)
                row[f"{label}_mb_middle_third"] = heap.get("median_mb_middle_third")
                row[f"{label}_mb_last_third"] = heap.get("median_mb_last_third")
            retained = [(s.t, min(s.ended_per_shard.get(name, 0), RESULT_RETENTION)) for s in after]
            row["results_retained_at_end"] = retained[-1][1]
            full = [t for t, r in retained if r >= RESULT_RETENTION]
            row["retention_full_since_s"] = full[0] if full else None
            per_minute = _slope([(t, float(r)) for t, r in retained if t >= tail_start])
            if verdict == "growing" and not full and per_minute > 0:
                kb = tail_slope * 1024 / per_minute
                row["kb_per_retained_result"] = round(kb, 2)
                verdict = (
                    f"growing while result retention fills ({retained[-1][1]:,} of {RESULT_RETENTION:,}, "
                    f"{kb:.2f} KB per result): not conclusive before it is full"
                )
        row["verdict"] = verdict
        rows.append(row)
    return rows


def _table_rows(samples: list[Sample], names: list[str], limit: int = 30) -> list[list[object]]:
    step = max(1, -(-len(samples) // limit))
    chosen = samples[::step]
    if chosen[-1] is not samples[-1]:
        chosen.append(samples[-1])
    rows: list[list[object]] = []
    previous: Sample | None = None
    for sample in chosen:
        rate = ""
        if previous is not None and sample.t > previous.t:
            ended = sample.completed + sample.failed + sample.expired
            before = previous.completed + previous.failed + previous.expired
            rate = f"{(ended - before) / (sample.t - previous.t):.0f}"
        rows.append(
            [f"{sample.t:.0f}", rate, sample.in_flight, sample.completed]
            + [f"{sample.rss_mb[name]:.1f}" for name in names]
        )
        previous = sample
    return rows


# -- main -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.soak", description=doc.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration in minutes (default: 10)")
    parser.add_argument("--quick", action="store_true", help="a 1-minute soak, samples every 3 s")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default: 5)")
    parser.add_argument("--warmup", type=float, help="seconds left out of the slope (default: max(20, 20%% of run))")
    parser.add_argument("--concurrency", type=int, help="closed-loop workers (default: 16; --overload: 32)")
    parser.add_argument(
        "--overload",
        action="store_true",
        help="far more load than the endpoint takes, with the default admission caps: RSS must stay under "
        "--max-rss and every call be accounted for",
    )
    parser.add_argument("--max-rss", type=float, default=MAX_RSS_MB, help="--overload: MB per shard (default: 512)")
    parser.add_argument(
        "--flat",
        type=float,
        default=0.5,
        help="MB per minute of rise from the middle to the last third that counts as growth (default: 0.5)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the client's function mix")
    parser.add_argument(
        "--result-retention",
        type=int,
        default=100_000,
        help="results each shard keeps for Wait (default: %(default)s, the engine's; lower it so the soak "
        "runs past the point where retention is full)",
    )
    parser.add_argument("--output", type=Path, default=Path("results/bench/soak.json"))
    args = parser.parse_args(argv)
    global RESULT_RETENTION  # the analysis compares results retained with the engine's setting
    RESULT_RETENTION = args.result_retention
    if args.quick:
        args.minutes, args.interval = 1.0, 3.0
    if args.concurrency is None:
        args.concurrency = 32 if args.overload else 16
    seconds = args.minutes * 60
    if seconds < 10 or args.interval <= 0 or args.concurrency < 1:
        parser.error("need --minutes >= 1/6, --interval > 0, --concurrency >= 1")
    warmup = args.warmup if args.warmup is not None else max(20.0, 0.2 * seconds)
    if warmup >= seconds:
        parser.error("--warmup must be shorter than the run")
    check_linux()

    keys = KeyPair.generate()
    samples: list[Sample] = []
    restarts: list[tuple[float, int]] = []
    with ReferenceEndpoint(keys.public) as endpoint:
        supervisor = start_engine(
            endpoint.url, keys.private, 2, backoff=0.02, max_backoff=0.2, result_retention=args.result_retention
        )
        try:
            spec = ClientSpec(
                tuple(supervisor.shard_addresses), API_KEY, seconds, args.concurrency, args.seed, overload=args.overload
            )
            ours, theirs = _CONTEXT.Pipe()
            client = _CONTEXT.Process(target=_client_main, args=(spec, theirs), name="loadgen-soak-client", daemon=True)
            client.start()
            theirs.close()
            assert client.pid is not None
            shard_names = [f"shard-{i}" for i in range(len(shard_pids(supervisor)))]
            load = (
                "overload (Dispatch only, batches of 100 echo, 1 MB inputs, fan-outs)"
                if args.overload
                else "closed-loop load"
            )
            print(
                f"soak: {args.minutes:g} min of {load} ({args.concurrency} workers) on 2 shards and the reference "
                f"endpoint; RSS every {args.interval:g} s; warm-up {warmup:.0f} s",
                flush=True,
            )
            started = time.monotonic()
            message: dict[str, Any] | None = None
            next_sample = started
            hard_stop = started + seconds + 120  # the client ends by itself; this bounds a stuck one
            while message is None:
                now = time.monotonic()
                if now >= next_sample:
                    restarted = supervisor.check()
                    restarts += [(round(now - started, 1), index) for index in restarted]
                    processes = dict(zip(shard_names, shard_pids(supervisor), strict=True))
                    processes |= {"supervisor": os.getpid(), "endpoint": endpoint.pid, "client": client.pid}
                    sample = _sample(now - started, processes, supervisor)
                    samples.append(sample)
                    rss = "  ".join(f"{k} {v:.0f}" for k, v in sample.rss_mb.items())
                    more = (
                        f"  rejected {sample.rejected:>8}  in flight {sample.in_flight:>7}"
                        f"  held {sample.held_mb:.0f} MB  queued {sample.queued_attempts}"
                        if args.overload
                        else ""
                    )
                    print(f"  [{sample.t:5.0f}s] completed {sample.completed:>8}{more}  RSS MB: {rss}", flush=True)
                    next_sample += args.interval
                if ours.poll(max(0.0, next_sample - time.monotonic())):
                    message = ours.recv()
                elif time.monotonic() > hard_stop:
                    message = {"error": "the client did not finish in time"}
            client.join(10)
            if "error" in message:
                raise RuntimeError(f"load client: {message['error']}")
            result: ClientResult = message["result"]
            processes.pop("client")
            samples.append(_sample(time.monotonic() - started, processes | {"client": 0}, supervisor))
            if not args.overload:  # overloaded, what is left in flight is cancelled by the drain
                wait_until(lambda: engine_idle(supervisor), 30, interval=0.1)
            final = supervisor.drain(10)
        finally:
            supervisor.close()
    for name in samples[-1].rss_mb:  # the client is gone at the last sample: carry its last value
        if samples[-1].rss_mb[name] != samples[-1].rss_mb[name]:
            samples[-1].rss_mb[name] = samples[-2].rss_mb[name]

    summary = _summarize(samples, warmup, args.flat)
    names = list(samples[0].rss_mb)
    print()
    print("RSS over time (MB); calls/s: root calls ended per second since the previous row")
    print(render_table(["t (s)", "calls/s", "in flight", "completed", *names], _table_rows(samples, names)))
    print()
    print(
        render_table(
            [
                "process",
                "RSS start",
                "after warm-up",
                "end",
                "min",
                "max",
                "MB/min after warm-up",
                "MB/min last third",
                "median mid -> last",
                "verdict",
            ],
            [
                [
                    r["process"],
                    f"{r['rss_mb_at_start']:.1f}",
                    f"{r['rss_mb_after_warmup']:.1f}",
                    f"{r['rss_mb_at_end']:.1f}",
                    f"{r['rss_mb_min']:.1f}",
                    f"{r['rss_mb_max']:.1f}",
                    f"{r['slope_mb_per_min']:+.3f}",
                    f"{r['slope_mb_per_min_last_third']:+.3f}",
                    f"{r.get('median_mb_middle_third', '-')} -> {r.get('median_mb_last_third', '-')}",
                    r["verdict"],
                ]
                for r in summary
            ],
        )
    )
    accounting = final.accounting()
    calls = result.ok + result.failed
    print()
    print(
        f"client: {calls} calls in {result.seconds:.0f} s ({calls / max(result.seconds, 1e-9):.0f}/s), "
        f"{result.failed} not OK, {result.rpc_errors} RPC errors; by function {result.by_function}"
    )
    for error in result.errors:
        print(f"  e.g. {error}")
    attempts, retries = final.counter(CounterKind.ATTEMPTS), final.counter(CounterKind.RETRIES)
    print(f"engine: {accounting}; attempts {attempts}, retries {retries}")
    if args.overload:
        print(
            f"overload client: offered {result.offered}, accepted {result.ok}, rejected {result.rejected} "
            f"({result.rejected_without_pushback} without a pushback), slept {result.pushback_s:.0f} s of pushback "
            f"over {args.concurrency} workers"
        )
    if restarts:
        print(f"shard restarts (t, shard): {restarts}")
    for row in summary:
        if row.get("python_blocks_at_end"):
            print(
                f"{row['process']}: {row['python_blocks_at_end']:,} Python objects allocated at the end, "
                f"{row['python_blocks_per_min_last_third']:+,} per minute over the last third"
            )
        if row.get("malloc_in_use_mb_last_third") is not None:
            print(
                f"{row['process']}: C heap (glibc malloc, median of the middle -> last third): in use "
                f"{row['malloc_in_use_mb_middle_third']} -> {row['malloc_in_use_mb_last_third']} MB, free in its heaps "
                f"{row['malloc_free_mb_middle_third']} -> {row['malloc_free_mb_last_third']} MB"
            )
    flat = [r["process"] for r in summary if r["verdict"] == "flat"]
    print(f"flat (not rising from the middle to the last third): {', '.join(flat) or 'none'}")
    for row in summary:
        since = row.get("retention_full_since_s")
        if since is not None:
            print(f"{row['process']}: result retention full ({RESULT_RETENTION:,} results) since {since:.0f} s")

    write_report(
        args.output,
        "soak",
        sys.argv[1:] if argv is None else argv,
        {
            "settings": {
                "minutes": args.minutes,
                "interval_s": args.interval,
                "warmup_s": warmup,
                "concurrency": args.concurrency,
                "flat_mb_per_min": args.flat,
                "mix": [
                    {"function": f, "weight": w, "input": i if f != "echo" else {"padding": "1 KiB"}} for f, w, i in MIX
                ],
                "result_retention_per_shard": RESULT_RETENTION,
                "overload": args.overload,
            },
            "summary": summary,
            "client": asdict(result),
            "engine": {
                "offered": accounting.offered,
                "rejected": accounting.rejected,
                "cancelled": accounting.cancelled,
                "accepted": accounting.accepted,
                "completed": accounting.completed,
                "failed": accounting.failed,
                "expired": accounting.expired,
                "in_flight": accounting.in_flight,
                "lost": accounting.lost,
                "balanced": accounting.balanced,
                "attempts": final.counter(CounterKind.ATTEMPTS),
                "retries": final.counter(CounterKind.RETRIES),
                "restarts": restarts,
            },
            "samples": [asdict(s) for s in samples],
        },
    )
    healthy = result.failed == 0 and result.rpc_errors == 0 and accounting.balanced and not restarts
    if args.overload:
        problems = _overload_problems(summary, result, final, args.max_rss, gate_flat=args.minutes >= 5)
        problems += [f"shard {index} was restarted at {t:.0f} s" for t, index in restarts]
        for problem in problems:
            print(f"FAIL: {problem}")
        if not problems:
            print(f"PASS: every shard under {args.max_rss:g} MB, every call accounted for")
        healthy = healthy and not problems
    return 0 if healthy else 1


def _overload_problems(
    summary: list[dict[str, Any]], result: ClientResult, final: Any, max_rss: float, *, gate_flat: bool
) -> list[str]:
    """What makes an overload soak fail (empty: it passed)."""
    problems = []
    accounting = final.accounting()
    for row in summary:
        if row["process"].startswith("shard-"):
            if row["rss_mb_max"] > max_rss:
                problems.append(f"{row['process']} reached {row['rss_mb_max']:.0f} MB RSS (cap {max_rss:g})")
            if gate_flat and row["verdict"].startswith("growing"):
                problems.append(
                    f"{row['process']} RSS still growing: median {row['median_mb_middle_third']} -> "
                    f"{row['median_mb_last_third']} MB, high {row['max_mb_middle_third']} -> "
                    f"{row['max_mb_last_third']} MB "
                    f"from the middle to the last third (tolerance {row['tolerance_mb']} MB)"
                )
    if not accounting.admission_balanced:
        problems.append(
            f"offered {accounting.offered} != accepted {accounting.accepted} + rejected {accounting.rejected}"
        )
    if accounting.in_flight or accounting.difference:
        problems.append(f"calls not accounted for after the drain: {accounting}")
    if result.rejected_without_pushback:
        problems.append(f"{result.rejected_without_pushback} calls rejected without a pushback")
    if result.offered != result.ok + result.rejected and not result.rpc_errors:
        problems.append(f"client: offered {result.offered} != accepted {result.ok} + rejected {result.rejected}")
    if accounting.rejected != result.rejected or accounting.accepted != result.ok:
        problems.append(
            f"the engine counted accepted {accounting.accepted}, rejected {accounting.rejected}; the client "
            f"accepted {result.ok}, rejected {result.rejected}"
        )
    return problems


if __name__ == "__main__":
    sys.exit(main())
