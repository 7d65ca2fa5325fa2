"""Cost of recording and shipping statistics: ``python -m loadgen.bench.stats``.

Measures, in ``--repeat`` interleaved rounds (the best and the median are reported):

* the hot path, ns per call over the same pre-generated events and the same loop:
  ``ShardStats.record_attempt`` / ``record_rpc`` / ``record_call`` / ``record_breakdown``, a Locust process's
  caller-side ``latency`` record (alone, and with the two clock reads a call costs) against a bare
  ``HdrHistogram.record_value`` (the floor a wrapper around hdrh could reach) and an
  empty function call (the loop and call overhead alone);
* the per-second shard work with ``--keys`` histograms of ``--values`` values each:
  ``snapshot()`` + ``to_bytes()`` when every histogram changed since the last
  snapshot (steady load) and when none did (idle), against encoding the same
  histograms with hdrh's own ``HdrHistogram.encode()``;
* the aggregator's work for ``--shards`` such shards: ``from_bytes`` + merge, against
  the same merge done with hdrh's public API (``decode``, ``add``, ``encode``), and with
  the module's fallback (used when hdrh's C codec is missing);
* ``table()`` of the merged snapshot (percentiles of every histogram).

Times are CPU time of this process (``time.process_time_ns``), so other load on the
machine counts less. Prints a table and writes JSON (default ``results/bench/stats.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from loadgen.core.scheduler import Breakdown
from loadgen.core.stats import HIGHEST_US, LOWEST_US, SIGNIFICANT_FIGURES, ShardStats, Snapshot, merge_snapshots
from loadgen.core.stats import hdr as stats
from loadgen.core.stats.caller import caller_recorder

Event = tuple[str, str, float, int]
_clock = time.process_time_ns  # CPU time of this process: other processes on the machine do not count


def _events(n: int, keys: Sequence[tuple[str, str]], rnd: random.Random) -> list[Event]:
    """*n* (function, status, seconds, µs) tuples with log-normal latencies around 1 ms."""
    out: list[Event] = []
    for _ in range(n):
        function, status = keys[rnd.randrange(len(keys))]
        seconds = rnd.lognormvariate(-7.0, 1.2)
        out.append((function, status, seconds, int(seconds * 1e6 + 0.5)))
    return out


class _HotPath:
    """The hot-path candidates, each with its own long-lived recorder (steady state: keys exist)."""

    def __init__(self) -> None:
        self.hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self.shard = ShardStats("bench")
        self.caller = caller_recorder("locust-bench")

    def round(self, events: list[Event]) -> dict[str, float]:
        """ns per call of each candidate over *events*."""

        def noop(_: int) -> None:
            return None

        record_value, record_attempt = self.hist.record_value, self.shard.record_attempt
        record_rpc, record_call = self.shard.record_rpc, self.shard.record_call
        result: dict[str, float] = {}
        n = len(events)

        start = _clock()
        for _f, _s, _sec, us in events:
            noop(us)
        result["empty call (loop overhead)"] = (_clock() - start) / n

        start = _clock()
        for _f, _s, _sec, us in events:
            record_value(us)
        result["HdrHistogram.record_value"] = (_clock() - start) / n

        start = _clock()
        for f, s, sec, _us in events:
            record_attempt(f, s, sec)
        result["ShardStats.record_attempt"] = (_clock() - start) / n

        start = _clock()
        for _f, s, sec, _us in events:
            record_rpc("Dispatch", s == "OK", sec)
        result["ShardStats.record_rpc"] = (_clock() - start) / n

        start = _clock()
        for f, s, sec, _us in events:
            record_call(f, "completed" if s == "OK" else "failed", s, sec)
        result["ShardStats.record_call"] = (_clock() - start) / n

        record_breakdown = self.shard.record_breakdown
        start = _clock()
        for f, _s, sec, _us in events:  # a root call that spent its time in attempts only (most do)
            record_breakdown(f, 0.0, sec, 0.0, 0.0, 0, 0)
        result["ShardStats.record_breakdown (attempts only)"] = (_clock() - start) / n

        start = _clock()
        for f, _s, sec, us in events:  # one that also queued, waited for children and was resumed
            record_breakdown(f, sec, sec, 0.0, sec, 1, us & 7)
        result["ShardStats.record_breakdown (queue, attempts, children)"] = (_clock() - start) / n

        bound = self.shard.call_recorder("echo", "completed", "OK")  # the shard's way: one recorder per key
        ends = [(sec, Breakdown(0.0, sec, 0.0, 0.0, 0, 0)) for _f, _s, sec, _us in events]  # as the scheduler's
        start = _clock()
        for sec, breakdown in ends:  # a call's end and its breakdown (attempts only) in one call
            bound(sec, breakdown)
        result["ShardStats.call_recorder bound, with breakdown"] = (_clock() - start) / n

        queue = self.shard.recorder("queue", "echo", "attempt")
        start = _clock()
        for _f, _s, _sec, _us in events:  # the usual queue time: 0
            queue(0.0)
        result["ShardStats.recorder bound, a 0"] = (_clock() - start) / n

        record = self.caller.record
        start = _clock()
        for f, s, sec, _us in events:
            record("latency", f, "completed" if s == "OK" else "failed", sec)
        result["caller latency: record"] = (_clock() - start) / n

        monotonic = time.monotonic
        start = _clock()
        for f, s, _sec, _us in events:  # what DispatchUser does per call: its intended start, its end
            issued = monotonic()
            record("latency", f, "completed" if s == "OK" else "failed", monotonic() - issued)
        result["caller latency: 2 clock reads + record"] = (_clock() - start) / n
        return result


def _keys(count: int) -> list[tuple[str, str]]:
    functions = [f"function_{i}" for i in range(max(1, count // 4))]
    statuses = ["OK", "TEMPORARY_ERROR", "TCP_ERROR", "TIMEOUT"]
    return [(f, s) for f in functions for s in statuses][:count]


def _loaded_shard(name: str, keys: Sequence[tuple[str, str]], per_key: int, rnd: random.Random) -> ShardStats:
    shard = ShardStats(name)
    for function, status in keys:
        for _ in range(per_key):
            shard.record_attempt(function, status, rnd.lognormvariate(-7.0, 1.2))
    return shard


def _time(action: Callable[[], Any], inner: int) -> float:
    """CPU µs per call of *action*, over *inner* calls."""
    start = _clock()
    for _ in range(inner):
        action()
    return (_clock() - start) / inner / 1000


class _PerSecond:
    """Shards loaded with ``values`` values in each of ``keys`` histograms, and the work done on them."""

    def __init__(self, args: argparse.Namespace, rnd: random.Random) -> None:
        self.keys = _keys(args.keys)
        self.shards = [_loaded_shard(f"shard-{i}", self.keys, args.values, rnd) for i in range(args.shards)]
        self.inner = args.inner
        self.payloads = [s.snapshot().to_bytes() for s in self.shards]
        self.blobs = [[h.hdr for h in s.snapshot().histograms.values()] for s in self.shards]

    def aggregate(self) -> Snapshot:
        return merge_snapshots(Snapshot.from_bytes(p) for p in self.payloads)

    def round(self) -> dict[str, float]:
        """µs per call of each operation."""
        shard, keys, inner, n = self.shards[0], self.keys, self.inner, len(self.shards)
        result: dict[str, float] = {}

        def changed() -> bytes:
            for function, status in keys:  # one new value per histogram: each one must be re-encoded
                shard.record_attempt(function, status, 0.001)
            return shard.snapshot().to_bytes()

        result["snapshot+to_bytes, all keys changed"] = _time(changed, inner)
        result["snapshot+to_bytes, nothing changed"] = _time(lambda: shard.snapshot().to_bytes(), inner)
        series = list(shard._attempt.values())

        def hdrh_encode() -> None:
            for s in series:
                s.hist.total_count, s.hist.min_value, s.hist.max_value = s.count, s.min, s.max
                s.hist.encode()

        result["hdrh encode() of every key"] = _time(hdrh_encode, inner)
        one = series[0]
        result["one histogram: our encode"] = _time(
            lambda: stats._encode(one.counts, one.count, one.min, one.max), inner
        )
        result["one histogram: hdrh encode()"] = _time(one.hist.encode, inner)
        blob = self.blobs[0][0]
        result["one histogram: hdrh decode()"] = _time(lambda: HdrHistogram.decode(blob), inner)
        result[f"from_bytes+merge of {n} shards"] = _time(self.aggregate, inner)

        def hdrh_aggregate() -> None:  # the same work with hdrh's public API: decode, add, encode
            for k in range(len(self.blobs[0])):
                acc = HdrHistogram.decode(self.blobs[0][k])
                for shard_blobs in self.blobs[1:]:
                    acc.add(HdrHistogram.decode(shard_blobs[k]))
                acc.encode()

        result[f"hdrh decode+add+encode of {n} shards"] = _time(hdrh_aggregate, inner)
        stats._FAST = False
        try:
            result[f"from_bytes+merge of {n} shards, fallback"] = _time(self.aggregate, max(1, inner // 4))
        finally:
            stats._FAST = True
        merged = self.aggregate()
        result["table() of the merge (cold)"] = _time(lambda: self.aggregate().table(), max(1, inner // 4))
        result["table() of the merge (decoded)"] = _time(merged.table, inner)
        return result

    def sizes(self) -> dict[str, int]:
        one = self.shards[0]._attempt[self.keys[0]]
        return {
            "shard snapshot bytes": len(self.payloads[0]),
            "merged snapshot bytes": len(self.aggregate().to_bytes()),
            "hdrh encode() bytes, one histogram": len(one.hist.encode()),
            "our encoding bytes, one histogram": len(stats._encode(one.counts, one.count, one.min, one.max)),
        }


def _summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "best": min(r[name] for r in runs),
            "median": statistics.median(r[name] for r in runs),
            "runs": [round(r[name], 1) for r in runs],
        }
        for name in runs[0]
    }


def _print(rows: dict[str, dict[str, Any]], unit: str, baseline: str, label: str) -> dict[str, dict[str, float]]:
    """Print best and median with their ratios to *baseline*; return the ratios."""
    base = rows[baseline]
    ratios = {
        name: {"best": row["best"] / base["best"], "median": row["median"] / base["median"]}
        for name, row in rows.items()
    }
    print(f"{'':<48}{'best ' + unit:>12}{'median':>10}   {'vs ' + label + ' (best, median)'}")
    for name, row in rows.items():
        ratio = ratios[name]
        print(f"{name:<48}{row['best']:>12.0f}{row['median']:>10.0f}   {ratio['best']:>6.2f}x {ratio['median']:>6.2f}x")
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.stats", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="hot-path calls per round")
    parser.add_argument("--keys", type=int, default=20, help="histograms per shard")
    parser.add_argument("--values", type=int, default=20_000, help="values recorded per histogram beforehand")
    parser.add_argument("--shards", type=int, default=4, help="shards merged by the aggregator")
    parser.add_argument("--inner", type=int, default=20, help="calls per timing of the per-second work")
    parser.add_argument("--repeat", type=int, default=11, help="rounds; the best and the median are reported")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("results/bench/stats.json"))
    args = parser.parse_args(argv)
    if min(args.events, args.keys, args.values, args.shards, args.inner, args.repeat) < 1:
        parser.error("every count must be at least 1")

    rnd = random.Random(args.seed)
    events = _events(args.events, _keys(args.keys), rnd)
    hot_path = _HotPath()
    hot_path.round(events)  # warm-up: creates every key
    hot = _summarize([hot_path.round(events) for _ in range(args.repeat)])
    per_second = _PerSecond(args, rnd)
    per_second.round()  # warm-up
    work = _summarize([per_second.round() for _ in range(args.repeat)])
    sizes = per_second.sizes()

    print(f"hot path: CPU ns per call, {args.repeat} rounds of {args.events} calls over {args.keys} keys")
    hot_ratios = _print(hot, "ns", "HdrHistogram.record_value", "record_value")
    print()
    print(
        f"per-second work: CPU µs per call, {args.keys} histograms x {args.values} values per shard,"
        f" {args.shards} shards, {args.repeat} rounds"
    )
    work_ratios = _print(work, "µs", "hdrh encode() of every key", "hdrh encode() x keys")
    print()
    for name, size in sizes.items():
        print(f"{name:<48}{size:>12}")

    report = {
        "benchmark": "stats",
        "created": int(time.time()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "clock": "time.process_time_ns",
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "hot_path_ns_per_call": hot,
        "hot_path_ratio_vs_record_value": hot_ratios,
        "per_second_us_per_call": work,
        "per_second_ratio_vs_hdrh_encode_all_keys": work_ratios,
        "sizes_bytes": sizes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
