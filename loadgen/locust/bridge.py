"""The stats bridge: the shards' own statistics inside Locust, polled every ~2 s.

Runs only where Locust aggregates (the master, or the local runner); workers just generate
load. At each poll it asks the shards for their merged :class:`~loadgen.core.stats.Snapshot`
(the ``loadgen.v1.Shard/Stats`` RPC with ``local=false``: the shard that answers merges
its peers) and:

* **feeds Locust's standard statistics** with what is new since the previous poll, as
  entries of their own, so they show in the table, the CSV files and the HTML report:

  ========================  ===========================  ==========================================
  ``request_type``          ``name``                     values
  ========================  ===========================  ==========================================
  ``e2e``                   ``"<function> <outcome>"``   each root call, accepted → terminal;
                                                         ``failed``/``expired``/``cancelled``
                                                         count as failures
  ``attempt``               ``"<function> <STATUS>"``    each endpoint attempt; non-``OK`` fail
  ``retry``                 ``"<STATUS>"``               retries by status (counts, no latency)
  ========================  ===========================  ==========================================

  The new values are the difference of the HDR histograms' bucket counts since the last
  poll. Each bucket is added to the Locust entry as *count* requests at the bucket's value,
  through ``StatsEntry.extend`` (how a Locust master adds up its workers): request and
  failure counts, sums, min and max are exact, Locust's own percentiles see every value at
  its bucket's µs value (then round it as they always do), and requests per second are
  spread over the seconds since the previous poll. These entries are not added to
  Locust's "Aggregated" row, which stays the total of Locust's own requests, and they never
  reach ``runner.errors`` (so they do not change Locust's exit code: gates decide).
* **keeps the shards' data**: :attr:`StatsBridge.latest` (the newest cumulative snapshot),
  :attr:`StatsBridge.baseline` (the one taken when the test started),
  :meth:`StatsBridge.run_snapshot` (``latest.minus(baseline)``: this run alone) and
  :attr:`StatsBridge.history` (``(unix time, Snapshot)`` of every poll since then, thinned
  to at most :data:`HISTORY_LIMIT` points). Percentiles for reports come from these exactly
  merged µs histograms, never from Locust's rounded buckets.

Why the feed does not use ``Snapshot.minus`` between polls: a merged snapshot may lack a
peer that did not answer in time, and ``minus`` (rightly) refuses a later snapshot with
fewer values. The feed keeps, per histogram bucket, the highest count already fed, and
feeds only counts above it, from the bucket counts of :meth:`HistogramSnapshot.counts`
(:class:`~loadgen.core.stats.delta.HistogramDelta`); the web tab uses the same dict-based
differences against the baseline, computed once per poll.

Shards of ``loadgen worker`` machines (a master of a distributed ``loadgen run``): *source* gives the
merged snapshot their reports make (:mod:`.cluster`), instead of a poll.

Shards on several machines: give every shard address; the bridge groups them by host and
asks one address per host for that host's merged snapshot, then merges the hosts (shard
names become ``host/shard-N``). A poll that fails is logged and skipped; a snapshot that
lacks a shard for a moment (a peer that did not answer) never makes values count twice:
only bucket counts above the highest already fed are new.

The end of a run: at ``test_stop`` the bridge polls once; when Locust quits it waits up to
``--dispatch-settle`` seconds for the calls still in flight to end, polls a last time, and
(with ``--csv``) lets Locust's CSV writer run once more so the files hold the final numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent  # type: ignore[import-untyped]
import gevent.lock  # type: ignore[import-untyped]
import locust.stats
from locust.stats import RequestStats, StatsEntry

import loadgen.locust._gevent  # noqa: F401  # gRPC cooperates with gevent before any channel exists
from loadgen.core.counters import Counter, CounterKind
from loadgen.core.stats import GAUGE_IN_FLIGHT, HistKey, Snapshot, bucket_range, merge_snapshots
from loadgen.core.stats.delta import HistogramDelta
from loadgen.core.stats.fleet import labelled
from loadgen.engine.client import EngineClient, EngineUnavailable
from loadgen.locust.channels import channel
from loadgen.locust.dispatched import dispatched
from loadgen.locust.options import DEFAULT_SETTLE, DEFAULT_STATS_INTERVAL, group_by_host

__all__ = ["HISTORY_LIMIT", "BridgeError", "HistogramDelta", "StatsBridge", "feed_entry"]

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 720
FAILED_OUTCOMES = frozenset({"failed", "expired", "cancelled"})


class BridgeError(RuntimeError):
    """The shards' statistics could not be fetched."""


# ---------------------------------------------------------------------------------------------
# Feeding Locust
# ---------------------------------------------------------------------------------------------


def _spread(total: int, since: float, now: float) -> dict[int, int]:
    """*total* events over the whole seconds after *since* up to *now*: ``{second: count}``."""
    first, last = int(since) + 1, int(now)
    if last < first:
        return {int(now): total}
    seconds = range(first, last + 1)
    base, extra = divmod(total, len(seconds))
    spread = {}
    for k, second in enumerate(seconds):
        n = base + (1 if k >= len(seconds) - extra else 0)  # the remainder goes to the latest seconds
        if n:
            spread[second] = n
    return spread


def feed_entry(
    stats: RequestStats,
    method: str,
    name: str,
    delta: HistogramDelta | None,
    *,
    count: int = 0,
    failed: bool = False,
    since: float,
    now: float,
    bucket_keys: dict[int, int] | None = None,
) -> None:
    """Add *delta*'s values (or *count* values without latency) to Locust's entry (*name*, *method*).

    Goes through ``StatsEntry.extend`` as a Locust master does with its workers' entries, so
    Locust keeps its per-second counts and response-time cache right. ``stats.total`` is not
    touched. *bucket_keys* caches ``counts index → Locust response-time key`` across calls.
    """
    n = delta.count if delta is not None else count
    if n <= 0:
        return
    part = StatsEntry(stats, name, method)
    part.start_time = since
    part.last_request_timestamp = now
    part.num_requests = n
    per_second = _spread(n, since, now)
    part.num_reqs_per_sec.update(per_second)
    if failed:
        part.num_failures = n
        part.num_fail_per_sec.update(per_second)
    if delta is None:
        part.num_none_requests = n
    else:
        keys = {} if bucket_keys is None else bucket_keys
        rounding = locust.stats.bucket_response_time  # replaceable at run time, as Locust documents
        times = part.response_times
        for index, c in delta.buckets.items():
            key = keys.get(index)
            if key is None:
                low, high = bucket_range(index)
                key = keys[index] = rounding((low + (high - low) / 2) / 1000.0)
            times[key] += c
        part.total_response_time = delta.sum / 1000.0  # type: ignore[assignment]  # Locust sums floats too
        part.min_response_time = delta.min / 1000.0  # type: ignore[assignment]
        part.max_response_time = delta.max / 1000.0  # type: ignore[assignment]
    stats.entries[(name, method)].extend(part)


def _entry_of(key: HistKey) -> tuple[str, str, bool] | None:
    """Locust (method, name, failed) for a histogram key, or ``None`` if not bridged."""
    family, a, b = key
    if family == "e2e":
        return "e2e", f"{a} {b}", b in FAILED_OUTCOMES
    if family == "attempt":
        return "attempt", f"{a} {b}", b != "OK"
    return None


@dataclass
class _Fed:
    """The highest cumulative values already fed to Locust for one histogram."""

    counts: dict[int, int]
    count: int
    sum: int
    min: int
    max: int


# ---------------------------------------------------------------------------------------------
# The bridge
# ---------------------------------------------------------------------------------------------


class StatsBridge:
    """Polls the shards' statistics into Locust (see the module's documentation)."""

    def __init__(
        self,
        environment: Any,
        addresses: Sequence[str],
        api_key: str,
        *,
        interval: float = DEFAULT_STATS_INTERVAL,
        settle: float = DEFAULT_SETTLE,
        timeout: float = 5.0,
        source: Callable[[], bytes] | None = None,
    ) -> None:
        if not addresses and source is None:
            raise ValueError("the stats bridge needs at least one shard address")
        self.source = source
        self.environment = environment
        self.groups = group_by_host(addresses)
        self.interval = interval
        self.settle = settle
        self.timeout = timeout
        self._client = EngineClient(api_key, timeout=timeout, channel=lambda address: channel(address, "stats"))
        self._lock = gevent.lock.BoundedSemaphore()
        self._greenlet: gevent.Greenlet | None = None
        self._fed: dict[HistKey, _Fed] = {}
        self._fed_counters: dict[Counter, int] = {}
        self._baseline_counts: dict[HistKey, dict[int, int]] = {}
        self._bucket_keys: dict[int, int] = {}
        self._deltas: dict[HistKey, HistogramDelta] = {}
        self._last_feed = time.time()
        self._failing = False
        self.baseline: Snapshot = Snapshot.empty()
        """The shards' cumulative statistics when the test started."""
        self.latest: Snapshot = Snapshot.empty()
        """The newest cumulative merged snapshot (never decoded by the bridge: cheap to keep)."""
        self.history: list[tuple[float, Snapshot]] = []
        """``(time.time(), cumulative Snapshot)`` of each poll since the test started, baseline first."""
        self.dispatched: dict[str, int] = {}
        """Calls Locust had dispatched per function when :attr:`latest` was fetched (see :mod:`.dispatched`)."""
        self.polls = 0
        """Successful polls so far (changes whenever :attr:`latest` does)."""
        self.errors = 0
        """Failed polls so far."""
        self.feed_seconds = 0.0
        """CPU-ish wall time spent decoding and feeding Locust (for the curious)."""

    # ---------------------------------------------------------------- fetching

    def fetch_bytes(self) -> list[tuple[str, bytes]]:
        """Each host's merged snapshot as ``(host, bytes)``; :class:`BridgeError` if one host has no answer."""
        if self.source is not None:
            return [("", self.source())]
        parts: list[tuple[str, bytes]] = []
        for host, addresses in self.groups.items():
            last: EngineUnavailable | None = None
            for address in addresses:
                try:
                    parts.append((host, self._client.stats_bytes(address, local=False)))
                except EngineUnavailable as exc:
                    last = exc
                    continue
                break
            else:
                code = last.code if last is not None else None
                raise BridgeError(f"no shard on {host} answered Stats ({code.name if code else 'no address'})")
        return parts

    def _parse(self, parts: list[tuple[str, bytes]]) -> Snapshot:
        snapshots = [Snapshot.from_bytes(raw) for _, raw in parts]
        if len(snapshots) == 1:
            return snapshots[0]
        return merge_snapshots(labelled(snap, host) for (host, _), snap in zip(parts, snapshots, strict=True))

    def fetch(self) -> Snapshot:
        """The shards' merged cumulative snapshot, now."""
        return self._parse(self.fetch_bytes())

    # ---------------------------------------------------------------- a run

    def begin(self) -> None:
        """A test starts: take the baseline (nothing before it is fed to Locust) and poll from now on."""
        with self._lock:
            self._fed.clear()
            self._fed_counters.clear()
            self._baseline_counts.clear()
            self._deltas.clear()
            self.history = []
            try:
                parts = self.fetch_bytes()
            except BridgeError as exc:
                logger.warning("Dispatch stats bridge: no baseline (%s); counting from the shards' start", exc)
                self.baseline = Snapshot.empty()
            else:
                self.baseline = self._parse(parts)
                working = self._parse(parts)
                for key, hist in working.histograms.items():
                    counts = hist.counts()
                    self._baseline_counts[key] = counts
                    self._fed[key] = _Fed(dict(counts), hist.count, hist.sum, hist.min, hist.max)
                self._fed_counters = {k: v for k, v in working.counters.items() if k.kind is CounterKind.RETRIES}
            self.latest = self.baseline
            self.dispatched = {}
            now = time.time()
            self.history.append((now, self.baseline))
            self._last_feed = now
            self.polls += 1
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.interval)
            self.poll()

    def poll(self) -> bool:
        """Fetch, feed Locust with what is new, update :attr:`latest`/:attr:`history`. False if it failed."""
        with self._lock:
            try:
                parts = self.fetch_bytes()
            except BridgeError as exc:
                self.errors += 1
                if not self._failing:
                    logger.warning("Dispatch stats bridge: %s (will retry)", exc)
                self._failing = True
                return False
            if self._failing:
                logger.info("Dispatch stats bridge: the shards answer again")
            self._failing = False
            started = time.perf_counter()
            self.latest = self._parse(parts)
            self.dispatched = dict(dispatched.total)
            now = time.time()
            self._feed(self._parse(parts), self._last_feed, now)
            self._last_feed = now
            self.history.append((now, self.latest))
            if len(self.history) > HISTORY_LIMIT:  # thin out: keep the first, the last and every other one
                self.history = [*self.history[:-1:2], self.history[-1]]
            self.polls += 1
            self.feed_seconds += time.perf_counter() - started
            return True

    def _feed(self, snapshot: Snapshot, since: float, now: float) -> None:
        stats: RequestStats = self.environment.runner.stats
        for key, hist in snapshot.histograms.items():
            fed = self._fed.get(key)
            if fed is not None and hist.count <= fed.count and hist.sum <= fed.sum:
                continue  # nothing new (or a peer missing from this snapshot)
            counts = hist.counts()
            if fed is None:
                gained = counts
                fed = self._fed[key] = _Fed(dict(counts), hist.count, hist.sum, hist.min, hist.max)
                delta = HistogramDelta(hist.count, hist.sum, hist.min, hist.max, gained)
            else:
                gained = {i: c - fed.counts.get(i, 0) for i, c in counts.items() if c > fed.counts.get(i, 0)}
                delta = HistogramDelta.from_buckets(gained, max(hist.sum - fed.sum, 0), hist, fed.min, fed.max)
                for i in gained:
                    fed.counts[i] = counts[i]
                fed.count = max(fed.count, hist.count)
                fed.sum = max(fed.sum, hist.sum)
                fed.min = min(fed.min, hist.min)
                fed.max = max(fed.max, hist.max)
            baseline_counts = self._baseline_counts.get(key)
            if baseline_counts is None:
                self._deltas[key] = HistogramDelta(hist.count, hist.sum, hist.min, hist.max, counts)
            else:
                base = self.baseline.histograms[key]
                above = {i: c - baseline_counts.get(i, 0) for i, c in counts.items() if c > baseline_counts.get(i, 0)}
                self._deltas[key] = HistogramDelta.from_buckets(
                    above, max(hist.sum - base.sum, 0), hist, base.min, base.max
                )
            target = _entry_of(key)
            if target is not None and delta.count:
                method, name, failed = target
                feed_entry(
                    stats, method, name, delta, failed=failed, since=since, now=now, bucket_keys=self._bucket_keys
                )
        for counter, value in snapshot.counters.items():
            if counter.kind is CounterKind.RETRIES:
                new = value - self._fed_counters.get(counter, 0)
                if new > 0:
                    self._fed_counters[counter] = value
                    feed_entry(stats, "retry", counter.status, None, count=new, since=since, now=now)

    def deltas(self) -> dict[HistKey, HistogramDelta]:
        """Each histogram's values since the test started (the baseline), at µs resolution."""
        return dict(self._deltas)

    def run_snapshot(self) -> Snapshot:
        """This run's statistics: :attr:`latest` minus :attr:`baseline` (:meth:`Snapshot.minus`).

        Exact HDR buckets, counts and sums of what the shards recorded since the test started
        (gauges as of :attr:`latest`): what gates and summaries should read at the end of a
        run. ``ValueError`` if :attr:`latest` lacks a shard the baseline had (a peer that did
        not answer the last poll).
        """
        return self.latest.minus(self.baseline)

    def counters_since_start(self, shard: str | None = None) -> dict[Counter, int]:
        """Counters (all shards, or one) since the test started."""
        if shard is None:
            new, old = self.latest.counters, self.baseline.counters
        else:
            new = self.latest.per_shard[shard].counters
            base = self.baseline.per_shard.get(shard)
            old = base.counters if base is not None else {}
        return {k: v - old.get(k, 0) for k, v in new.items()}

    # ---------------------------------------------------------------- the end

    def end_of_test(self) -> None:
        """``test_stop``: one poll now (the loop goes on, so a web UI keeps updating)."""
        self.poll()

    def finish_polling(self) -> None:
        """Stop the polling greenlet (a poll under way is abandoned before it changes anything)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None

    def finish(self, csv: bool = False) -> None:
        """Locust quits: wait up to :attr:`settle` s for in-flight calls to end, poll a last time, stop polling."""
        self.finish_polling()
        deadline = time.monotonic() + self.settle
        while self.poll() and self.latest.gauges.get(GAUGE_IN_FLIGHT, 0) > 0 and time.monotonic() < deadline:
            gevent.sleep(0.2)
        if csv:  # Locust's CSV writer rewrites its files every CSV_STATS_INTERVAL_SEC: let it run once more
            gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.25)
