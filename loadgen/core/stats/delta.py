"""``HistogramDelta``: the values an HDR histogram gained between two cumulative snapshots.

Pure (no Locust, no gevent): importable anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loadgen.core.stats import DEFAULT_PERCENTILES, HistogramSnapshot, bucket_range

__all__ = ["HistogramDelta"]


@dataclass(frozen=True, slots=True)
class HistogramDelta:
    """The values one histogram gained between two snapshots: HDR buckets ``{counts index: count}``, µs.

    ``min``/``max`` are exact when the newer snapshot's min/max were reached after the older
    one, else the bounds of the lowest/highest bucket that gained values (exact below 2,048 µs,
    within 0.1 % above).
    """

    count: int
    sum: int
    min: int
    max: int
    buckets: Mapping[int, int]

    @classmethod
    def empty(cls) -> HistogramDelta:
        return cls(0, 0, 0, 0, {})

    @classmethod
    def between(
        cls, new: HistogramSnapshot, old: HistogramSnapshot | None, old_counts: Mapping[int, int] | None = None
    ) -> HistogramDelta:
        """``new - old`` (*old_counts*: ``old.counts()``, if already known)."""
        if old is None or not old.count:
            return cls(new.count, new.sum, new.min, new.max, new.counts())
        before = old.counts() if old_counts is None else old_counts
        buckets = {i: c - before.get(i, 0) for i, c in new.counts().items() if c > before.get(i, 0)}
        return cls.from_buckets(buckets, max(new.sum - old.sum, 0), new, old.min, old.max)

    @classmethod
    def from_buckets(
        cls, buckets: dict[int, int], total: int, new: HistogramSnapshot, old_min: int, old_max: int
    ) -> HistogramDelta:
        """A delta of *buckets* (gained by *new*, whose earlier min/max were *old_min*/*old_max*)."""
        if not buckets:
            return cls.empty()
        low = new.min if new.min < old_min else max(bucket_range(min(buckets))[0], new.min)
        high = new.max if new.max > old_max else min(bucket_range(max(buckets))[1], new.max)
        return cls(sum(buckets.values()), total, low, max(high, low), buckets)

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def plus(self, other: HistogramDelta) -> HistogramDelta:
        """The sum of two deltas (of different keys, e.g. a function's outcomes)."""
        if not other.count:
            return self
        if not self.count:
            return other
        buckets = dict(self.buckets)
        for i, c in other.buckets.items():
            buckets[i] = buckets.get(i, 0) + c
        return HistogramDelta(
            self.count + other.count, self.sum + other.sum, min(self.min, other.min), max(self.max, other.max), buckets
        )

    def percentiles(self, qs: Iterable[float] = DEFAULT_PERCENTILES) -> dict[float, float]:
        """``{q: µs}``, computed as :meth:`loadgen.core.stats.HistogramSnapshot.percentiles` does."""
        wanted = [float(q) for q in qs]
        if not self.count:
            return dict.fromkeys(wanted, 0.0)
        items = sorted(self.buckets.items())
        out: dict[float, float] = {}
        for q in wanted:
            target = max(int(q * self.count / 100 + 0.5), 1)
            seen = 0
            index = items[-1][0]
            for i, c in items:
                seen += c
                if seen >= target:
                    index = i
                    break
            low, high = bucket_range(index)
            out[q] = float(min(max(high if q else low, self.min), self.max))
        return out
