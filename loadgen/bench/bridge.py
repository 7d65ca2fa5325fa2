"""What feeding the shards' statistics into Locust costs: ``python -m loadgen.bench.bridge``.

Builds cumulative snapshots as the shards would report them (``--keys`` histograms, values
log-normal around 5 ms), then feeds the values gained between two polls into a fresh
Locust ``RequestStats`` two ways:

* ``events.request.fire`` once per value (what a plug-in firing one event per call would do);
* the bridge's way: decode the HDR counts, take the bucket differences, and add each bucket
  to the entry through ``StatsEntry.extend`` (:func:`loadgen.locust.bridge.feed_entry`).

Both give the same request counts; the table shows the cost per poll and per value.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from locust.event import Events
from locust.stats import RequestStats

from loadgen.core.stats import ShardStats, Snapshot
from loadgen.locust.bridge import StatsBridge


def _snapshots(keys: int, values: int, seed: int) -> tuple[Snapshot, Snapshot, list[tuple[str, float]]]:
    rng = random.Random(seed)
    stats = ShardStats("shard-0")
    for k in range(keys):
        stats.record_call(f"f{k}", "completed", "OK", rng.lognormvariate(-5.3, 0.6))
    before = stats.snapshot()
    fired: list[tuple[str, float]] = []
    for i in range(values):
        seconds = rng.lognormvariate(-5.3, 0.6)
        name = f"f{i % keys}"
        stats.record_call(name, "completed", "OK", seconds)
        fired.append((f"{name} completed", int(seconds * 1_000_000 + 0.5) / 1000.0))  # as ShardStats rounds
    after = stats.snapshot()
    return Snapshot.from_bytes(before.to_bytes()), Snapshot.from_bytes(after.to_bytes()), fired


class _Environment:
    def __init__(self) -> None:
        self.runner = self
        self.stats = RequestStats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--values", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print(f"{'values/poll':>12} {'fire: ms/poll':>14} {'µs/value':>9} {'bridge: ms/poll':>16} {'µs/value':>9}")
    for n in args.values:
        before, after, fired = _snapshots(args.keys, n, seed=n)

        events: Any = Events()  # type: ignore[no-untyped-call]
        by_fire = RequestStats()

        def on_request(request_type: str, name: str, response_time: float, response_length: int, **_: object) -> None:
            by_fire.log_request(request_type, name, response_time, response_length)  # type: ignore[arg-type]  # noqa: B023

        events.request.add_listener(on_request)
        started = time.perf_counter()
        for name, ms in fired:
            events.request.fire(
                request_type="e2e", name=name, response_time=ms, response_length=0, exception=None, context={}
            )
        fire_s = time.perf_counter() - started

        environment = _Environment()
        bridge = StatsBridge(environment, ["127.0.0.1:1"], "unused")
        now = time.time()
        bridge._feed(before, now - 2, now - 1)  # the fed marks start where the previous poll ended
        environment.stats = RequestStats()
        started = time.perf_counter()
        bridge._feed(after, now - 1, now)
        bridge_s = time.perf_counter() - started

        for key, fed in environment.stats.entries.items():  # the same numbers both ways
            one_by_one = by_fire.entries[(key[0], "e2e")]
            assert fed.num_requests == one_by_one.num_requests, key
            assert abs(fed.total_response_time - one_by_one.total_response_time) < 1e-6 * n, key
            assert (fed.min_response_time, fed.max_response_time) == (
                one_by_one.min_response_time,
                one_by_one.max_response_time,
            ), key
        assert sum(e.num_requests for e in environment.stats.entries.values()) == n
        fire = f"{fire_s * 1000:>14.1f} {fire_s / n * 1e6:>9.2f}"
        print(f"{n:>12} {fire} {bridge_s * 1000:>16.1f} {bridge_s / n * 1e6:>9.3f}")


if __name__ == "__main__":
    main()
