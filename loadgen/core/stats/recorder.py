"""Recording: the live statistics of one shard (:class:`ShardStats`), on its hot path.

Not thread-safe: record from one thread (the event loop). Durations are in seconds, rounded to
the nearest µs and clamped to 0 .. :data:`~loadgen.core.stats.hdr.HIGHEST_US`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from loadgen.core.counters import (
    ACCEPTED,
    ATTEMPTS,
    CANCELLED,
    CLAMPED,
    COMPLETED,
    EVICTED,
    EXPIRED,
    LOST,
    OFFERED,
    Counter,
    failed,
    rejected,
    retries,
)
from loadgen.core.stats.hdr import (
    _HALF_MAG,
    _SHIFT,
    _SUB_MASK,
    HIGHEST_US,
    HistogramSnapshot,
    _encode,
    _new_histogram,
)
from loadgen.core.stats.snapshot import (
    BREAKDOWN_PARTS,
    GAUGE_IN_FLIGHT,
    GAUGE_OPEN_CONNECTIONS,
    OUTCOMES,
    FailureKey,
    FailureTally,
    Family,
    HistKey,
    Key,
    ShardSummary,
    Snapshot,
)

if TYPE_CHECKING:  # the scheduler's type, by shape; the recorder needs nothing of the scheduler at run time
    from loadgen.core.scheduler import Breakdown

__all__ = ["SAMPLE_CHARS", "CallRecorder", "ShardStats"]


class CallRecorder(Protocol):
    """:meth:`ShardStats.call_recorder`'s bound recorder: a call's duration, and its breakdown if given."""

    def __call__(self, seconds: float, breakdown: Breakdown | None = None, /) -> None: ...


SAMPLE_CHARS: Final = 300
_OUTCOME_COUNTERS: Final = {"completed": COMPLETED, "expired": EXPIRED, "cancelled": CANCELLED}


class _Series:
    """One live histogram: an ``HdrHistogram``'s counts plus exact count, sum, min and max.

    Only ``hist.counts`` is kept up to date; the histogram's own total/min/max are not.
    """

    __slots__ = ("cached", "clamped", "count", "counts", "hist", "max", "min", "sum")

    def __init__(self) -> None:
        self.hist: Any = _new_histogram()
        self.counts: Any = self.hist.counts
        self.count = 0
        self.sum = 0
        self.min = HIGHEST_US
        self.max = 0
        self.clamped = 0
        self.cached: HistogramSnapshot | None = None

    def record(self, seconds: float) -> None:
        if seconds == 0.0:  # the usual queue time: bucket 0 (index 0), nothing to round or clamp
            self.counts[0] += 1
            self.count += 1
            self.min = 0
            return
        us = int(seconds * 1_000_000.0 + 0.5)
        if not 0 <= us <= HIGHEST_US:
            us = 0 if us < 0 else HIGHEST_US
            self.clamped += 1
        bucket = (us | _SUB_MASK).bit_length() - _SHIFT
        self.counts[(bucket << _HALF_MAG) + (us >> bucket)] += 1
        self.count += 1
        self.sum += us
        if us > self.max:
            self.max = us
        if us < self.min:
            self.min = us

    def snapshot(self) -> HistogramSnapshot:
        cached = self.cached
        if cached is None or cached.count != self.count:
            low = self.min if self.count else 0
            cached = self.cached = HistogramSnapshot(
                self.count, self.sum, low, self.max, _encode(self.counts, self.count, low, self.max)
            )
        return cached


class _Shape:
    """One function's breakdown histograms (:meth:`ShardStats.record_breakdown`). A value above 0 is
    recorded as it comes; the zeros (most calls have no backoff, no children, no queue) are not: each
    histogram's count of zeros is the calls less the values it has, added to it by :meth:`settle`."""

    __slots__ = ("calls", "series")

    def __init__(self, series: tuple[_Series, ...]) -> None:
        self.calls = 0
        self.series = series

    def add(
        self, queue: float, attempts: float, backoff: float, children_wait: float, resumes: int, children: int
    ) -> None:
        """One root call's breakdown (see :meth:`ShardStats.record_breakdown`)."""
        self.calls += 1
        queue_s, attempts_s, backoff_s, children_wait_s, resumes_s, children_s = self.series
        if queue > 0:
            queue_s.record(queue)
        if attempts > 0:
            attempts_s.record(attempts)
        if backoff > 0:
            backoff_s.record(backoff)
        if children_wait > 0:
            children_wait_s.record(children_wait)
        if resumes > 0:
            resumes_s.record(resumes / 1_000_000)  # a count, recorded as that many µs
        if children > 0:
            children_s.record(children / 1_000_000)

    def settle(self) -> None:
        """Add the zeros not recorded yet (before a snapshot)."""
        calls = self.calls
        for series in self.series:
            zeros = calls - series.count
            if zeros > 0:
                series.counts[0] += zeros  # the bucket of 0
                series.count = calls
                series.min = 0


class ShardStats:
    """The live statistics of one shard. Not thread-safe: record from one thread (the event loop).

    Durations are in seconds, rounded to the nearest µs and clamped to
    0 .. :data:`HIGHEST_US`.
    """

    def __init__(
        self,
        shard: str,
        counters: tuple[Counter, ...] = (ACCEPTED, COMPLETED, EXPIRED, CANCELLED, LOST),
        gauges: tuple[str, ...] = (GAUGE_IN_FLIGHT, GAUGE_OPEN_CONNECTIONS),
    ) -> None:
        self.shard = shard
        self._tables: dict[Family, dict[Key, _Series]] = {"rpc": {}, "attempt": {}, "e2e": {}}
        self._rpc = self._tables["rpc"]
        self._attempt = self._tables["attempt"]
        self._e2e = self._tables["e2e"]
        self._counters: dict[Counter, int] = dict.fromkeys(counters, 0)
        self._gauges: dict[str, int] = dict.fromkeys(gauges, 0)
        self._failures: dict[FailureKey, list[Any]] = {}  # key -> [count, first message]
        self._seq = 0
        self._shapes: dict[str, _Shape] = {}  # function -> its breakdown, resumes and children histograms

    def record(self, family: Family, a: str, b: str, seconds: float) -> None:
        """A value of *seconds* in *family* under key (*a*, *b*) (any family, such as the callers' ``latency``)."""
        self.recorder(family, a, b)(seconds)

    def recorder(self, family: Family, a: str, b: str) -> Callable[[float], None]:
        """:meth:`record` for one key, bound: for a caller that records under it often (no lookups each time)."""
        table = self._tables.get(family)
        if table is None:
            table = self._tables[family] = {}
        series = table.get((a, b))
        if series is None:
            series = table[(a, b)] = _Series()
        return series.record

    def count(self, counter: Counter, n: int = 1) -> None:
        """Add *n* to *counter*."""
        self._counters[counter] = self._counters.get(counter, 0) + n

    def record_rpc(self, name: str, ok: bool, seconds: float) -> None:
        """An ingress RPC (``"Dispatch"``, ``"Wait"``, ...) took *seconds*."""
        key = (name, "ok" if ok else "error")
        series = self._rpc.get(key)
        if series is None:
            series = self._rpc[key] = _Series()
        series.record(seconds)

    def record_attempt(self, function: str, status: str, seconds: float) -> None:
        """An endpoint attempt of *function* ended with *status* (``"OK"``, ``"TCP_ERROR"``, ...)."""
        key = (function, status)
        series = self._attempt.get(key)
        if series is None:
            series = self._attempt[key] = _Series()
        series.record(seconds)

    def record_call(self, function: str, outcome: str, status: str, seconds: float) -> None:
        """A root call ended, *seconds* after it was accepted.

        *outcome*: ``"completed"``, ``"failed"`` (counted by *status*), ``"expired"`` or ``"cancelled"``.
        """
        self.call_recorder(function, outcome, status)(seconds)

    def call_recorder(self, function: str, outcome: str, status: str) -> CallRecorder:
        """:meth:`record_call` for one (*function*, *outcome*, *status*), bound: for a caller that records
        under it often (no lookups, no checks each time). Given a *breakdown* (the scheduler's
        ``Breakdown``: the six values of :meth:`record_breakdown`, in its order), it records that too."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown call outcome {outcome!r}")
        record = self.recorder("e2e", function, outcome)
        name = failed(status) if outcome == "failed" else _OUTCOME_COUNTERS[outcome]
        counters = self._counters
        add_breakdown = self._shape(function).add

        def record_call(seconds: float, breakdown: Breakdown | None = None) -> None:
            record(seconds)
            counters[name] = counters.get(name, 0) + 1
            if breakdown is not None:
                add_breakdown(*breakdown)

        return record_call

    def record_breakdown(
        self,
        function: str,
        queue: float,
        attempts: float,
        backoff: float,
        children_wait: float,
        resumes: int,
        children: int,
    ) -> None:
        """Where one root call of *function* spent its time (seconds queued for a stream, in attempts, in
        retry backoff, waiting for children), how often it was resumed and how many children it started.
        A value below 0 (a clock step) counts as 0."""
        self._shape(function).add(queue, attempts, backoff, children_wait, resumes, children)

    def _shape(self, function: str) -> _Shape:
        shape = self._shapes.get(function)
        if shape is None:
            shape = self._shapes[function] = self._new_shape(function)
        return shape

    def _new_shape(self, function: str) -> _Shape:
        keys: list[tuple[Family, str]] = [("breakdown", part) for part in BREAKDOWN_PARTS]
        keys += [("resumes", "call"), ("children", "call")]
        tables = self._tables
        series = tuple(tables.setdefault(family, {}).setdefault((function, part), _Series()) for family, part in keys)
        return _Shape(series)

    def record_state(self, function: str, size: int) -> None:
        """A call of *function* was resumed with *size* bytes of coroutine state."""
        table = self._tables.get("state_bytes")
        if table is None:
            table = self._tables["state_bytes"] = {}
        series = table.get((function, "resume"))
        if series is None:
            series = table[(function, "resume")] = _Series()
        series.record(size / 1_000_000)  # a size, recorded as that many µs

    def record_failure(self, kind: str, function: str, status: str, message: str) -> None:
        """A failure of *kind* (``attempt``, ``failed``, ``expired``, ``cancelled``): counted, the first
        *message* kept."""
        key = (kind, function, status)
        tally = self._failures.get(key)
        if tally is None:
            self._failures[key] = [1, message[:SAMPLE_CHARS]]
        else:
            tally[0] += 1

    def count_accepted(self, n: int = 1) -> None:
        """*n* root calls were accepted."""
        if n < 0:
            raise ValueError("count must be >= 0")
        self._counters[ACCEPTED] = self._counters.get(ACCEPTED, 0) + n

    def count_admission(self, offered: int, rejected_for: str = "") -> None:
        """*offered* root calls reached admission control; all of them rejected for *rejected_for* if given."""
        self._counters[OFFERED] = self._counters.get(OFFERED, 0) + offered
        if rejected_for:
            name = rejected(rejected_for)
            self._counters[name] = self._counters.get(name, 0) + offered

    def count_retry(self, status: str) -> None:
        """An attempt that ended with *status* will be retried."""
        name = retries(status)
        self._counters[name] = self._counters.get(name, 0) + 1

    def count_lost(self, n: int = 1) -> None:
        """*n* accepted root calls will never end here (for instance, lost with a crashed peer)."""
        if n < 0:
            raise ValueError("count must be >= 0")
        self._counters[LOST] = self._counters.get(LOST, 0) + n

    def count_evicted(self, n: int = 1) -> None:
        """*n* results were evicted from the shard's store for ``Wait``."""
        self._counters[EVICTED] = self._counters.get(EVICTED, 0) + n

    def set_gauge(self, name: str, value: int) -> None:
        """Set gauge *name* (:data:`GAUGE_IN_FLIGHT`, :data:`GAUGE_OPEN_CONNECTIONS`, ...)."""
        self._gauges[name] = value

    def snapshot(self) -> Snapshot:
        """An immutable copy; histograms unchanged since the last snapshot are not re-encoded."""
        for shape in self._shapes.values():
            shape.settle()
        histograms: dict[HistKey, HistogramSnapshot] = {}
        counters = dict(self._counters)
        attempts = clamped = 0
        for family, table in self._tables.items():
            for (a, b), series in table.items():
                if not series.count:
                    continue  # its first value was rejected (NaN)
                histograms[(family, a, b)] = series.snapshot()
                clamped += series.clamped
                if family == "attempt":
                    attempts += series.count
        if attempts or ACCEPTED in counters:  # an engine's snapshot, not a caller's
            counters[ATTEMPTS] = attempts
        if clamped:
            counters[CLAMPED] = clamped
        failures = {key: FailureTally(count, sample) for key, (count, sample) in self._failures.items()}
        summary = ShardSummary(self._seq, counters, dict(self._gauges), failures=failures)
        self._seq += 1
        return Snapshot({self.shard: summary}, histograms)
