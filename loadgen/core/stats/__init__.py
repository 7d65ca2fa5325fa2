"""Statistics of a load test: HDR latency histograms (µs) and counters, per shard, merged exactly.

A pure module: no IO and no clock reads. Callers measure durations themselves
and pass them in seconds.

Each shard process owns one :class:`ShardStats` and records into it on the hot
path (``record_*`` / ``count_*`` / ``set_gauge``). Once a second or so it takes
a :meth:`ShardStats.snapshot`, an immutable :class:`Snapshot`, and ships
:meth:`Snapshot.to_bytes` to whoever aggregates. The aggregator decodes them
with :meth:`Snapshot.from_bytes` and adds them up with :meth:`Snapshot.merge`
or :func:`merge_snapshots`. Merging is exact: histogram bucket counts, totals,
sums, minima and maxima combine without any loss, so percentiles of the merge
are the percentiles of one histogram that had recorded every value. The reverse,
:meth:`Snapshot.minus`, turns two cumulative snapshots into the statistics of the
interval between them (bucket counts exact as well).

Latency families, each keyed by a pair of names:

* ``rpc``: (RPC name, ``"ok"`` / ``"error"``), by :meth:`ShardStats.record_rpc`;
* ``attempt``: (function, status name such as ``"OK"`` or ``"TCP_ERROR"``), by
  :meth:`ShardStats.record_attempt`;
* ``e2e``: (function, ``"completed"`` / ``"failed"`` / ``"expired"``), from a root
  call's acceptance to its end, by :meth:`ShardStats.record_call`.

Counters (cumulative, summed by a merge): ``accepted``, ``completed``,
``failed/<STATUS>``, ``expired``, ``attempts`` (derived from the ``attempt``
histograms), ``retries/<STATUS>``, ``lost`` and, only when it happened,
``clamped`` (values outside the histogram range, recorded at its edge).
Gauges (current values, also summed by a merge): ``in_flight`` and
``open_connections``.

Failures by (kind, function, status), with a count and the first message seen
(:meth:`ShardStats.record_failure`, :attr:`Snapshot.failures`): kind ``attempt`` (an
endpoint attempt that did not answer OK, retried or not), ``failed`` or ``expired`` (a root
call that ended so). Counts merge exactly; the sample of a merge is the first shard's (in
name order) that has one. This is what Locust's failures tab is to requests. Root calls balance:
``accepted == completed + failed + expired + in_flight + lost``
(:meth:`Snapshot.accounting`).

Histograms are ``hdrh`` (HdrHistogram) counts over 1 µs .. 1 hour at 3
significant digits: values under 2,048 µs keep 1 µs resolution, larger ones
0.1 %. A snapshot carries each histogram in the standard HdrHistogram V2
compressed base64 form (``"HISTFAAA..."``, readable by ``HdrHistogram.decode``
and the Java/C tools) plus its exact count, sum, min and max.

Costs (``python -m loadgen.bench.stats``): recording inlines hdrh's bucket
index instead of calling ``HdrHistogram.record_value``. ``hdrh``'s ``encode()``
spends most of its time in zlib at level 6 and its ``decode()`` in building a
fresh histogram, so with ``hdrh``'s C codec at hand this module writes the same
format with zlib level 0 (about 2x larger, 4x cheaper), re-encodes only the
histograms that changed since the last snapshot, and decodes straight into
counts arrays. Without that codec it falls back to hdrh's public API (slower,
same results).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import struct
import sys
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from typing import Any, Final, Literal, TypeVar, cast

import orjson
from hdrh import codec as _hdr_codec
from hdrh.histogram import HdrHistogram

from loadgen.core.counters import (
    ACCEPTED,
    ATTEMPTS,
    CLAMPED,
    COMPLETED,
    EXPIRED,
    LOST,
    Counter,
    CounterKind,
    by_status,
    failed,
    parse_counters,
    retries,
    total,
)
from loadgen.core.units import format_latency

__all__ = [
    "DEFAULT_PERCENTILES",
    "FAILURE_KINDS",
    "FAMILIES",
    "GAUGE_IN_FLIGHT",
    "GAUGE_OPEN_CONNECTIONS",
    "HIGHEST_US",
    "LOWEST_US",
    "SIGNIFICANT_FIGURES",
    "Accounting",
    "FailureKey",
    "FailureTally",
    "Family",
    "HistKey",
    "HistogramSnapshot",
    "Key",
    "LatencySummary",
    "ShardStats",
    "ShardSummary",
    "Snapshot",
    "bucket_range",
    "counts_index",
    "merge_snapshots",
]

Family = Literal["rpc", "attempt", "e2e"]
FAMILIES: Final[tuple[Family, ...]] = ("rpc", "attempt", "e2e")
Key = tuple[str, str]
HistKey = tuple[Family, str, str]
FailureKey = tuple[str, str, str]  # (kind, function, status)
FAILURE_KINDS: Final[tuple[str, ...]] = ("attempt", "failed", "expired")
SAMPLE_CHARS: Final = 300

LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES: Final = 3

GAUGE_IN_FLIGHT: Final = "in_flight"
GAUGE_OPEN_CONNECTIONS: Final = "open_connections"

OUTCOMES: Final = frozenset({"completed", "failed", "expired"})
_OUTCOME_COUNTERS: Final = {"completed": COMPLETED, "expired": EXPIRED}
K = TypeVar("K")
FORMAT: Final = "loadgen.stats/1"
DEFAULT_PERCENTILES: Final[tuple[float, ...]] = (50.0, 90.0, 99.0, 99.9)


def _new_histogram() -> Any:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


# Bucket geometry, taken from hdrh itself so the inlined index below is its index.
_PROTO = _new_histogram()
_COUNTS_LEN: Final[int] = _PROTO.counts_len
_HALF_MAG: Final[int] = _PROTO.sub_bucket_half_count_magnitude
_HALF: Final[int] = 1 << _HALF_MAG
_SUB_MASK: Final[int] = _PROTO.sub_bucket_mask
_SHIFT: Final[int] = _HALF_MAG + 1
if _PROTO.unit_magnitude != 0 or _PROTO.word_size != 8:  # pragma: no cover - fixed by the constants above
    raise ImportError("loadgen.core.stats expects a 1 µs unit and 64-bit counters")
del _PROTO
_COUNTS_TYPE: Any = ctypes.c_uint64 * _COUNTS_LEN  # the layout of HdrHistogram.counts


def counts_index(us: int) -> int:
    """Index in the counts array of the bucket holding *us* (0 ≤ us ≤ :data:`HIGHEST_US`).

    The same as ``HdrHistogram.get_counts_array_index`` for our geometry, without
    its method calls: ``bucket = bit_length(us | mask) - (half_mag + 1)``, then
    ``(bucket << half_mag) + (us >> bucket)``.
    """
    bucket = (us | _SUB_MASK).bit_length() - _SHIFT
    return (bucket << _HALF_MAG) + (us >> bucket)


def _prefix(counts: Any, length: int) -> list[int]:
    """``counts[:length]`` as a list (twice as fast as slicing the ctypes array)."""
    return memoryview(counts).cast("B").cast("Q")[:length].tolist()


def bucket_range(index: int) -> tuple[int, int]:
    """Lowest and highest µs value of the bucket at *index* (``HdrHistogram``'s equivalent values)."""
    bucket = (index >> _HALF_MAG) - 1
    sub = (index & (_HALF - 1)) + _HALF
    if bucket < 0:
        return index, index
    low = sub << bucket
    return low, low + (1 << bucket) - 1


# ---------------------------------------------------------------------------------------------
# The wire form of one histogram: HdrHistogram V2, compressed, base64.
#   external header  >II  cookie 0x1c849314, length of the zlib stream
#   zlib( payload header >IIIIQQd  cookie 0x1c849313, varint length, normalizing offset,
#         significant figures, lowest, highest, conversion ratio; then ZigZag LEB128 counts
#         with runs of zeros as negative numbers )
# ---------------------------------------------------------------------------------------------
_EXT = struct.Struct(">II")
_PAYLOAD = struct.Struct(">IIIIQQd")
_COMPRESSION_COOKIE: Final = 0x1C849304 | 0x10
_ENCODING_COOKIE: Final = 0x1C849303 | 0x10
_BYTE_ORDER: Final = sys.byteorder  # of the counts arrays, which are native uint64
_ZLIB_LEVEL: Final = 0  # stored blocks: still a valid zlib stream, ~10x cheaper than level 6 here

# hdrh's C codec (pyhdrh), re-exported by hdrh.codec. Without it, fall back to hdrh's public API.
_c_encode: Any = getattr(_hdr_codec, "encode", None)
_c_decode: Any = getattr(_hdr_codec, "decode", None)
_c_add: Any = getattr(_hdr_codec, "add_array", None)
_FAST: bool = (
    _c_encode is not None
    and _c_decode is not None
    and _c_add is not None
    and getattr(_hdr_codec, "payload_header_size", None) == _PAYLOAD.size
)


def _to_histogram(counts: Any, count: int, low: int, high: int) -> Any:
    """A new ``HdrHistogram`` holding a copy of *counts*."""
    hist = _new_histogram()
    ctypes.memmove(hist.counts, counts, ctypes.sizeof(hist.counts))
    if count:
        hist.total_count, hist.min_value, hist.max_value = count, low, high
    return hist


def _encode(counts: Any, count: int, low: int, high: int) -> str:
    """*counts* (``HdrHistogram.counts`` or a :data:`_COUNTS_TYPE`) in the V2 compressed base64 form."""
    if not _FAST:
        return cast(bytes, _to_histogram(counts, count, low, high).encode()).decode("ascii")
    relevant = counts_index(high) + 1 if count else 0
    capacity = relevant * 9 + 16
    buffer = ctypes.create_string_buffer(capacity)
    size = _c_encode(ctypes.addressof(counts), relevant, 8, ctypes.addressof(buffer), capacity)
    header = _PAYLOAD.pack(_ENCODING_COOKIE, size, 0, SIGNIFICANT_FIGURES, LOWEST_US, HIGHEST_US, 1.0)
    stream = zlib.compress(header + ctypes.string_at(buffer, size), _ZLIB_LEVEL)
    return base64.b64encode(_EXT.pack(_COMPRESSION_COOKIE, len(stream)) + stream).decode("ascii")


def _add_counts(dst: Any, src: Any, length: int) -> None:
    """``dst[:length] += src[:length]``."""
    if _FAST:
        _c_add(ctypes.addressof(dst), ctypes.addressof(src), length, 8)
    else:
        for i, c in enumerate(_prefix(src, length)):
            if c:
                dst[i] += c


class _Decoder:
    """Adds encoded histograms into counts arrays through one reusable scratch buffer."""

    def __init__(self) -> None:
        self._scratch: Any = None

    def add(self, acc: Any, hist: HistogramSnapshot, first: bool) -> None:
        """Add the counts of *hist* to *acc*, checking them against its exact metadata.

        *first*: *acc* is still all zeros, so decode into it directly.
        """
        if not hist.count:
            return
        if _FAST:
            self._add_fast(acc, hist, first)
            return
        try:
            other = HdrHistogram.decode(hist.hdr.encode("ascii"))
        except Exception as exc:  # hdrh raises bare cookie/length/zlib errors
            raise ValueError(f"undecodable HDR histogram: {exc}") from exc
        low, high = other.get_min_value(), other.get_max_value()
        _check(hist, other.get_total_count(), other.get_counts_array_index(low), other.get_counts_array_index(high))
        _add_counts(acc, other.counts, counts_index(hist.max) + 1)

    def _add_fast(self, acc: Any, hist: HistogramSnapshot, first: bool) -> None:
        try:
            raw = base64.b64decode(hist.hdr, validate=True)
            cookie, length = _EXT.unpack_from(raw)
            payload = zlib.decompress(raw[_EXT.size :])
            p_cookie, _, offset, figures, lowest, highest, _ = _PAYLOAD.unpack_from(payload)
        except (binascii.Error, struct.error, zlib.error) as exc:
            raise ValueError(f"undecodable HDR histogram: {exc}") from exc
        if cookie != _COMPRESSION_COOKIE or length != len(raw) - _EXT.size or p_cookie != _ENCODING_COOKIE:
            raise ValueError("not an HdrHistogram V2 compressed histogram")
        if (offset, figures, lowest, highest) != (0, SIGNIFICANT_FIGURES, LOWEST_US, HIGHEST_US):
            raise ValueError(f"HDR histogram range {lowest}..{highest}/{figures} differs from ours")
        if first:
            target = acc
        else:
            if self._scratch is None:
                self._scratch = _COUNTS_TYPE()
            target = self._scratch
        result = _c_decode(payload, _PAYLOAD.size, ctypes.addressof(target), _COUNTS_LEN, 8)
        top = result["max_nonzero_index"]
        if not first and top >= 0:
            _add_counts(acc, target, top + 1)
            ctypes.memset(target, 0, (top + 1) * ctypes.sizeof(ctypes.c_uint64))
        _check(hist, result["total"], result["min_nonzero_index"], top)


def _check(hist: HistogramSnapshot, total: int, low_index: int, high_index: int) -> None:
    """Decoded counts must agree with the exact metadata."""
    if total != hist.count:
        raise ValueError(f"HDR histogram holds {total} values, metadata says {hist.count}")
    if (low_index, high_index) != (counts_index(hist.min), counts_index(hist.max)):
        raise ValueError(f"HDR histogram buckets do not match its min {hist.min} / max {hist.max}")


# ---------------------------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Count, exact mean/min/max and HDR percentiles of one histogram, all in µs."""

    count: int
    mean: float
    min: int
    max: int
    percentiles: Mapping[float, float]


@dataclass(frozen=True, slots=True, eq=False)
class HistogramSnapshot:
    """One histogram, frozen: exact count, sum, min and max (µs) and the HDR counts (``hdr``).

    Two snapshots are equal when their counts and exact metadata are equal; ``hdr``
    strings from different encoders may differ for the same counts.
    """

    count: int
    sum: int
    min: int
    max: int
    hdr: str
    _counts: Any = field(default=None, repr=False)  # the decoded counts array, filled lazily; read-only

    @property
    def mean(self) -> float:
        """Exact mean in µs (0.0 when empty)."""
        return self.sum / self.count if self.count else 0.0

    def _decoded(self) -> Any:
        if self._counts is None:
            counts = _COUNTS_TYPE()
            _Decoder().add(counts, self, first=True)
            object.__setattr__(self, "_counts", counts)
        return self._counts

    def histogram(self) -> Any:
        """A new ``hdrh`` ``HdrHistogram`` with these counts (for hdrh's own reports and logs)."""
        return _to_histogram(self._decoded(), self.count, self.min, self.max)

    def counts(self) -> dict[int, int]:
        """Non-zero buckets: ``{counts index: count}`` (for exact comparisons)."""
        if not self.count:
            return {}
        return {i: c for i, c in enumerate(_prefix(self._decoded(), counts_index(self.max) + 1)) if c}

    def percentiles(self, qs: Iterable[float] = DEFAULT_PERCENTILES) -> dict[float, float]:
        """``{q: value in µs}`` at each percentile *q*, as HdrHistogram computes it, clamped to [min, max].

        The value is the highest of the bucket where the cumulative count first reaches
        ``round(q% of count)`` (the lowest, for q = 0), so it is exact below 2,048 µs and
        within 0.1 % above.
        """
        wanted = [float(q) for q in qs]
        for q in wanted:
            if not 0.0 <= q <= 100.0:
                raise ValueError(f"percentile {q} is not within 0..100")
        if not self.count:
            return dict.fromkeys(wanted, 0.0)
        cumulative = list(accumulate(_prefix(self._decoded(), counts_index(self.max) + 1)))
        out: dict[float, float] = {}
        for q in wanted:
            target = max(int(q * self.count / 100 + 0.5), 1)  # HdrHistogram's rounding
            low, high = bucket_range(bisect_left(cumulative, target))
            out[q] = float(min(max(high if q else low, self.min), self.max))
        return out

    def summary(self, qs: Iterable[float] = DEFAULT_PERCENTILES) -> LatencySummary:
        """Count, mean, min, max and percentiles, in µs."""
        return LatencySummary(self.count, self.mean, self.min, self.max, self.percentiles(qs))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HistogramSnapshot):
            return NotImplemented
        if (self.count, self.sum, self.min, self.max) != (other.count, other.sum, other.min, other.max):
            return False
        return self.hdr == other.hdr or self.counts() == other.counts()

    def __hash__(self) -> int:
        return hash((self.count, self.sum, self.min, self.max))

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum, "min": self.min, "max": self.max, "hdr": self.hdr}

    @classmethod
    def from_json(cls, data: Any) -> HistogramSnapshot:
        if not isinstance(data, dict):
            raise ValueError(f"histogram must be an object, not {type(data).__name__}")
        try:
            count, total, low, high, hdr = data["count"], data["sum"], data["min"], data["max"], data["hdr"]
        except KeyError as exc:
            raise ValueError(f"histogram lacks {exc}") from exc
        if not all(type(v) is int and v >= 0 for v in (count, total, low, high)) or not isinstance(hdr, str):
            raise ValueError("histogram count/sum/min/max must be non-negative integers and hdr a string")
        if count and not low <= high <= HIGHEST_US:
            raise ValueError(f"histogram min {low} / max {high} out of order or range")
        return cls(count, total, low, high, hdr)


def _merge_histograms(parts: Sequence[HistogramSnapshot]) -> HistogramSnapshot:
    """The exact sum of *parts* (at least one); each is decoded once, the sum encoded once."""
    nonempty = [p for p in parts if p.count]
    if len(nonempty) <= 1:
        return nonempty[0] if nonempty else parts[0]
    acc = _COUNTS_TYPE()
    decoder = _Decoder()
    for i, part in enumerate(nonempty):
        if part._counts is not None:
            _add_counts(acc, part._counts, counts_index(part.max) + 1)
        else:
            decoder.add(acc, part, first=i == 0)
    count = sum(p.count for p in nonempty)
    low = min(p.min for p in nonempty)
    high = max(p.max for p in nonempty)
    return HistogramSnapshot(count, sum(p.sum for p in nonempty), low, high, _encode(acc, count, low, high), acc)


def _extreme_indexes(raw: bytes) -> tuple[int, int]:
    """Indexes of the first and last non-zero 64-bit counts in *raw* (some count must be non-zero)."""
    first = len(raw) - len(raw.lstrip(b"\0"))
    last = len(raw.rstrip(b"\0")) - 1
    return first // 8, last // 8


def _subtract_histograms(later: HistogramSnapshot, earlier: HistogramSnapshot, what: str) -> HistogramSnapshot | None:
    """The values *later* holds beyond *earlier* (an earlier state of the same histogram); None if none.

    Bucket counts, count and sum are exact. The minimum (maximum) is exact when *later*'s is
    below (above) *earlier*'s, since it was then recorded in between; otherwise it is the edge
    of the lowest (highest) non-empty bucket of the difference, clamped to *later*'s, which is
    within the histogram's resolution (1 µs under 2,048 µs, 0.1 % above).
    """
    if not earlier.count:
        return later if later.count else None
    count, total = later.count - earlier.count, later.sum - earlier.sum
    if count < 0 or total < 0 or earlier.min < later.min or earlier.max > later.max:
        raise ValueError(f"{what}: not an earlier state of this histogram (it has more values or a wider range)")
    if not count:
        if total:
            raise ValueError(f"{what}: same count but a different sum: not an earlier state of this histogram")
        return None
    length = counts_index(later.max) + 1
    size = length * 8
    # Every bucket of *later* is >= the same bucket of *earlier*, so subtracting the arrays read
    # as two big integers subtracts bucket by bucket (no borrow crosses a bucket) at C speed.
    # A bucket that went down would borrow, which the total below detects.
    big = int.from_bytes(memoryview(later._decoded()).cast("B")[:size], _BYTE_ORDER)
    small = int.from_bytes(memoryview(earlier._decoded()).cast("B")[:size], _BYTE_ORDER)
    if big < small:
        raise ValueError(f"{what}: a bucket count went down: not an earlier state of this histogram")
    raw = (big - small).to_bytes(size, _BYTE_ORDER)
    counts = _COUNTS_TYPE()
    ctypes.memmove(counts, raw, size)
    if sum(memoryview(counts).cast("B").cast("Q")[:length]) != count:
        raise ValueError(f"{what}: a bucket count went down: not an earlier state of this histogram")
    first, last = _extreme_indexes(raw)
    low = later.min if later.min < earlier.min else max(bucket_range(first)[0], later.min)
    high = later.max if later.max > earlier.max else min(bucket_range(last)[1], later.max)
    return HistogramSnapshot(count, total, low, high, _encode(counts, count, low, high), counts)


def _shard_base(name: str) -> str:
    """A shard's name without the ``#k`` that :func:`merge_snapshots` gives to crashed incarnations."""
    base, sep, number = name.rpartition("#")
    return base if sep and number.isdigit() else name


@dataclass(frozen=True, slots=True)
class FailureTally:
    """How often one kind of failure happened, and the first message seen for it."""

    count: int
    sample: str = ""


@dataclass(frozen=True, slots=True)
class ShardSummary:
    """One shard's counters, gauges and failure tallies in a snapshot.

    ``seq`` numbers the shard's snapshots (0, 1, ...) so a receiver can drop stale
    ones; ``crashed`` is set by :meth:`Snapshot.mark_lost`.
    """

    seq: int
    counters: Mapping[Counter, int]
    gauges: Mapping[str, int]
    crashed: bool = False
    failures: Mapping[FailureKey, FailureTally] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "seq": self.seq,
            "crashed": self.crashed,
            "counters": {str(key): value for key, value in self.counters.items()},
            "gauges": self.gauges,
        }
        if self.failures:
            data["failures"] = [[*key, tally.count, tally.sample] for key, tally in sorted(self.failures.items())]
        return data

    @classmethod
    def from_json(cls, data: Any) -> ShardSummary:
        if not isinstance(data, dict):
            raise ValueError("shard summary must be an object")
        seq, crashed = data.get("seq"), data.get("crashed", False)
        if type(seq) is not int or type(crashed) is not bool:
            raise ValueError("shard seq must be an integer and crashed a boolean")
        return cls(
            seq,
            parse_counters(_int_map(data.get("counters"), "counters")),
            _int_map(data.get("gauges"), "gauges"),
            crashed,
            _failures_from_json(data.get("failures", [])),
        )


def _failures_from_json(data: Any) -> dict[FailureKey, FailureTally]:
    if not isinstance(data, list):
        raise ValueError("shard failures must be a list")
    out: dict[FailureKey, FailureTally] = {}
    for row in data:
        if (
            not isinstance(row, list)
            or len(row) != 5
            or not all(isinstance(part, str) for part in row[:3])
            or type(row[3]) is not int
            or row[3] < 0
            or not isinstance(row[4], str)
        ):
            raise ValueError("a shard failure is [kind, function, status, count, sample]")
        out[(row[0], row[1], row[2])] = FailureTally(row[3], row[4])
    return out


def _add_failures(total: dict[FailureKey, FailureTally], part: Mapping[FailureKey, FailureTally]) -> None:
    for key, tally in part.items():
        have = total.get(key)
        if have is None:
            total[key] = tally
        else:
            total[key] = FailureTally(have.count + tally.count, have.sample or tally.sample)


def _int_map(data: Any, what: str) -> dict[str, int]:
    if not isinstance(data, dict) or not all(type(v) is int for v in data.values()):
        raise ValueError(f"{what} must map names to integers")
    return data


def _add_into(total: dict[K, int], part: Mapping[K, int]) -> None:
    for name, value in part.items():
        total[name] = total.get(name, 0) + value


@dataclass(frozen=True, slots=True)
class Accounting:
    """Root calls: ``accepted`` should equal ``completed + failed + expired + in_flight + lost``."""

    accepted: int
    completed: int
    failed: int
    expired: int
    in_flight: int
    lost: int

    @property
    def accounted(self) -> int:
        return self.completed + self.failed + self.expired + self.in_flight + self.lost

    @property
    def difference(self) -> int:
        """``accepted - accounted``: > 0 calls vanished, < 0 calls ended that were never accepted."""
        return self.accepted - self.accounted

    @property
    def balanced(self) -> bool:
        return self.difference == 0

    def __str__(self) -> str:
        verdict = "balanced" if self.balanced else f"UNBALANCED by {self.difference:+d}"
        return (
            f"accepted {self.accepted} = completed {self.completed} + failed {self.failed}"
            f" + expired {self.expired} + in_flight {self.in_flight} + lost {self.lost}: {verdict}"
        )


@dataclass(frozen=True)
class Snapshot:
    """Statistics of one or more shards at one moment; immutable.

    ``per_shard`` keeps each shard's counters and gauges; ``histograms`` maps
    ``(family, key part 1, key part 2)`` to the merged histogram. Merged
    ``counters`` and ``gauges`` are sums over shards.
    """

    per_shard: Mapping[str, ShardSummary] = field(default_factory=dict)
    histograms: Mapping[HistKey, HistogramSnapshot] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot of no shard: the identity of :meth:`merge`."""
        return cls()

    @property
    def shards(self) -> list[str]:
        """Names of the shards included, sorted."""
        return sorted(self.per_shard)

    @cached_property
    def counters(self) -> Mapping[Counter, int]:
        """Counters summed over shards (:mod:`loadgen.core.counters`: ``failed/<STATUS>``, ...)."""
        total: dict[Counter, int] = {}
        for summary in self.per_shard.values():
            _add_into(total, summary.counters)
        return total

    @cached_property
    def gauges(self) -> Mapping[str, int]:
        """Gauges summed over shards."""
        total: dict[str, int] = {}
        for summary in self.per_shard.values():
            _add_into(total, summary.gauges)
        return total

    @cached_property
    def failures(self) -> Mapping[FailureKey, FailureTally]:
        """Failure tallies summed over shards (the sample: the first shard's, in name order, that has one)."""
        total: dict[FailureKey, FailureTally] = {}
        for name in self.shards:
            _add_failures(total, self.per_shard[name].failures)
        return total

    def top_failure(self, kinds: Iterable[str] = FAILURE_KINDS) -> tuple[FailureKey, FailureTally] | None:
        """The most frequent failure of *kinds* (ties: the first key in order), or ``None``."""
        wanted = set(kinds)
        best: tuple[FailureKey, FailureTally] | None = None
        for key, tally in sorted(self.failures.items()):
            if key[0] in wanted and tally.count and (best is None or tally.count > best[1].count):
                best = (key, tally)
        return best

    def counter(self, kind: CounterKind | str) -> int:
        """The counters of *kind*, all statuses included (``counter(CounterKind.FAILED)``, or ``"failed"``)."""
        return total(self.counters, kind if isinstance(kind, CounterKind) else CounterKind(kind))

    def breakdown(self, kind: CounterKind | str) -> dict[str, int]:
        """``{status: value}`` of the counters of *kind* (``breakdown(CounterKind.RETRIES)``)."""
        return by_status(self.counters, kind if isinstance(kind, CounterKind) else CounterKind(kind))

    def keys(self, family: Family) -> list[Key]:
        """Keys recorded in *family*, sorted."""
        return sorted((a, b) for f, a, b in self.histograms if f == family)

    def histogram(self, family: Family, key: Key) -> HistogramSnapshot:
        """The histogram of *family* / *key*; ``KeyError`` if nothing was recorded there."""
        try:
            return self.histograms[(family, key[0], key[1])]
        except KeyError:
            raise KeyError(f"no {family} histogram for {key}") from None

    def percentiles(self, family: Family, key: Key, qs: Iterable[float] = DEFAULT_PERCENTILES) -> dict[float, float]:
        """``{q: µs}`` for *family* / *key* (see :meth:`HistogramSnapshot.percentiles`)."""
        return self.histogram(family, key).percentiles(qs)

    def accounting(self, shard: str | None = None) -> Accounting:
        """Root-call accounting of the whole snapshot, or of one *shard*."""
        if shard is None:
            counters, gauges = self.counters, self.gauges
        else:
            counters, gauges = self.per_shard[shard].counters, self.per_shard[shard].gauges
        return Accounting(
            accepted=counters.get(ACCEPTED, 0),
            completed=counters.get(COMPLETED, 0),
            failed=total(counters, CounterKind.FAILED),
            expired=counters.get(EXPIRED, 0),
            in_flight=gauges.get(GAUGE_IN_FLIGHT, 0),
            lost=counters.get(LOST, 0),
        )

    def merge(self, other: Snapshot) -> Snapshot:
        """Exact sum of two snapshots of disjoint shard sets (see :func:`merge_snapshots`)."""
        return merge_snapshots((self, other))

    def minus(self, earlier: Snapshot) -> Snapshot:
        """What was recorded after *earlier*, an earlier cumulative snapshot of the same shards.

        Histograms: the exact bucket-by-bucket difference, with exact count and sum; the
        minimum and maximum are exact when this snapshot's extreme was recorded after
        *earlier*, otherwise the edge of the extreme non-empty bucket of the difference
        (within the histogram's resolution). Keys without new values are left out, so
        ``a.merge(b).minus(a)`` has the histograms and counters of ``b``.

        Counters: this snapshot's minus *earlier*'s, per shard. Gauges are current values,
        not cumulative: the difference keeps this snapshot's. Shards are matched by name,
        with the crashed incarnations that :func:`merge_snapshots` keeps as ``name#k``
        counted with ``name`` (a shard restarted in between is one shard in the difference,
        named ``name`` and marked ``crashed`` if an incarnation crashed in between).

        ``ValueError`` if *earlier* is not an earlier state of these shards: a counter or
        a bucket count that went down, a histogram or a shard that disappeared.
        """
        groups: dict[str, list[str]] = {}
        for name in self.shards:
            groups.setdefault(_shard_base(name), []).append(name)
        earlier_groups: dict[str, list[str]] = {}
        for name in earlier.shards:
            earlier_groups.setdefault(_shard_base(name), []).append(name)
        missing = sorted(set(earlier_groups) - set(groups))
        if missing:
            raise ValueError(f"shard {missing[0]!r} is in the earlier snapshot only: not an earlier snapshot")
        per_shard: dict[str, ShardSummary] = {}
        for base, names in groups.items():
            later_parts = [self.per_shard[name] for name in names]
            earlier_parts = [earlier.per_shard[name] for name in earlier_groups.get(base, [])]
            counters: dict[Counter, int] = {}
            gauges: dict[str, int] = {}
            failures: dict[FailureKey, FailureTally] = {}
            for part in later_parts:
                _add_into(counters, part.counters)
                _add_into(gauges, part.gauges)
                _add_failures(failures, part.failures)
            for part in earlier_parts:
                for counter, value in part.counters.items():
                    left = counters.get(counter, 0) - value
                    if left < 0:
                        raise ValueError(f"counter {counter!r} of shard {base!r} went down: not an earlier snapshot")
                    counters[counter] = left
                for key, tally in part.failures.items():
                    have = failures.get(key)
                    left = (have.count if have is not None else 0) - tally.count
                    if left < 0:
                        raise ValueError(f"failure count {key} of shard {base!r} went down: not an earlier snapshot")
                    if left:
                        failures[key] = FailureTally(left, have.sample if have is not None else "")
                    else:
                        failures.pop(key, None)
            crashed_now = sum(part.crashed for part in later_parts)
            crashed = crashed_now > sum(part.crashed for part in earlier_parts) or (
                base in self.per_shard and self.per_shard[base].crashed
            )
            name = names[0] if len(names) == 1 else base
            seq = max(part.seq for part in later_parts)
            per_shard[name] = ShardSummary(seq, counters, gauges, crashed, failures)
        gone = sorted(set(earlier.histograms) - set(self.histograms))
        if gone:
            raise ValueError(f"histogram {gone[0]} is in the earlier snapshot only: not an earlier snapshot")
        histograms: dict[HistKey, HistogramSnapshot] = {}
        for key, hist in self.histograms.items():
            before = earlier.histograms.get(key)
            diff = hist if before is None else _subtract_histograms(hist, before, "/".join(key))
            if diff is not None and diff.count:
                histograms[key] = diff
        return Snapshot(per_shard, histograms)

    def mark_lost(self, shard: str, accepted: int | None = None, ended: tuple[int, int, int] | None = None) -> Snapshot:
        """*shard* died after this snapshot: a copy where it is final (``crashed``).

        Every root call it accepted and did not end is ``lost``: ``accepted`` (by default
        its own counter; pass a larger count kept outside the process, such as a ledger,
        to include calls accepted after this snapshot) minus completed, failed and expired.
        *ended* = ``(completed, failed, expired)`` from such a ledger counts the calls that
        ended after this snapshot too (failures it did not see by status go under
        ``failed/UNKNOWN``). Its gauges become 0. A restarted shard may report under the same
        name: a merge keeps crashed shards apart (see :func:`merge_snapshots`).
        """
        summary = self.per_shard[shard]
        counters = dict(summary.counters)
        if accepted is not None:
            if accepted < counters.get(ACCEPTED, 0):
                raise ValueError(f"{shard} accepted {counters.get(ACCEPTED, 0)} calls, not {accepted}")
            counters[ACCEPTED] = accepted
        if ended is not None:
            completed, failed_calls, expired = ended
            counters[COMPLETED] = max(counters.get(COMPLETED, 0), completed)
            counters[EXPIRED] = max(counters.get(EXPIRED, 0), expired)
            seen_failed = total(counters, CounterKind.FAILED)
            if failed_calls > seen_failed:
                unknown = failed("UNKNOWN")
                counters[unknown] = counters.get(unknown, 0) + failed_calls - seen_failed
        ended_total = counters.get(COMPLETED, 0) + counters.get(EXPIRED, 0) + total(counters, CounterKind.FAILED)
        counters[LOST] = max(counters.get(ACCEPTED, 0) - ended_total, 0)  # an excess of ended calls stays visible
        per_shard = dict(self.per_shard)
        per_shard[shard] = ShardSummary(
            summary.seq, counters, dict.fromkeys(summary.gauges, 0), crashed=True, failures=summary.failures
        )
        return Snapshot(per_shard, self.histograms)

    def retired(self, accepted: int | None = None, ended: tuple[int, int, int] | None = None) -> Snapshot:
        """:meth:`mark_lost` for the one shard of this snapshot."""
        if len(self.per_shard) != 1:
            raise ValueError(f"retired() needs a snapshot of one shard, not {len(self.per_shard)}")
        return self.mark_lost(next(iter(self.per_shard)), accepted, ended)

    # -- serialization ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the form :meth:`to_bytes` writes)."""
        histograms: dict[str, dict[str, dict[str, Any]]] = {}
        for (family, a, b), hist in sorted(self.histograms.items()):
            histograms.setdefault(family, {}).setdefault(a, {})[b] = hist.to_json()
        return {
            "format": FORMAT,
            "hdr": [LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES],
            "shards": {name: self.per_shard[name].to_json() for name in self.shards},
            "histograms": histograms,
        }

    def to_bytes(self) -> bytes:
        """The snapshot as JSON bytes (orjson)."""
        return orjson.dumps(self.to_json())

    @classmethod
    def from_json(cls, data: Any) -> Snapshot:
        """Inverse of :meth:`to_json`; ``ValueError`` on anything else."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} snapshot")
        if data.get("hdr") != [LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES]:
            raise ValueError(f"snapshot histograms use range {data.get('hdr')}, not ours")
        shards, families = data.get("shards"), data.get("histograms")
        if not isinstance(shards, dict) or not isinstance(families, dict):
            raise ValueError("snapshot shards and histograms must be objects")
        per_shard = {str(name): ShardSummary.from_json(value) for name, value in shards.items()}
        histograms: dict[HistKey, HistogramSnapshot] = {}
        for family, by_a in families.items():
            if family not in FAMILIES or not isinstance(by_a, dict):
                raise ValueError(f"unknown histogram family {family!r}")
            for a, by_b in by_a.items():
                if not isinstance(by_b, dict):
                    raise ValueError(f"histograms of {family}/{a} must be an object")
                for b, hist in by_b.items():
                    histograms[(cast(Family, family), a, b)] = HistogramSnapshot.from_json(hist)
        return cls(per_shard, histograms)

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Inverse of :meth:`to_bytes`; ``ValueError`` on anything else."""
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"snapshot is not JSON: {exc}") from exc
        return cls.from_json(parsed)

    # -- presentation -------------------------------------------------------------------------

    def table(self, qs: Sequence[float] = DEFAULT_PERCENTILES) -> str:
        """A human-readable table: latencies in ms (µs resolution), counters, gauges, accounting."""
        qs = [float(q) for q in qs]
        head = ["family", "key", "", "count", "mean"] + [f"p{q:g}" for q in qs] + ["max"]
        rows = [head]
        for family in FAMILIES:
            for a, b in self.keys(family):
                s = self.histograms[(family, a, b)].summary(qs)
                values = [s.mean, *(s.percentiles[q] for q in qs), float(s.max)]
                rows.append([family, a, b, str(s.count), *(format_latency(v, "ms") for v in values)])
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [f"shards: {len(self.per_shard)} ({', '.join(self._shard_labels()) or 'none'})"]
        if len(rows) > 1:
            lines.append("latency in ms")
            for row in rows:
                left = [cell.ljust(w) for cell, w in zip(row[:3], widths[:3], strict=True)]
                right = [cell.rjust(w) for cell, w in zip(row[3:], widths[3:], strict=True)]
                lines.append("  ".join(left + right).rstrip())
        else:
            lines.append("no latencies recorded")
        lines.append("counters: " + self._counter_line())
        lines.append("gauges: " + ("  ".join(f"{k} {v}" for k, v in sorted(self.gauges.items())) or "none"))
        lines.append("accounting: " + str(self.accounting()))
        return "\n".join(lines)

    def _shard_labels(self) -> list[str]:
        return [name + (" (crashed)" if self.per_shard[name].crashed else "") for name in self.shards]

    def _counter_line(self) -> str:
        parts: list[str] = []
        present = {key.kind for key in self.counters}
        for kind in CounterKind:  # in the order of their definition: accepted, completed, failed, ...
            if kind not in present:
                continue
            labelled = self.breakdown(kind)
            text = f"{kind.value} {self.counter(kind)}"
            if labelled:
                text += " (" + ", ".join(f"{k} {v}" for k, v in labelled.items()) + ")"
            parts.append(text)
        return "  ".join(parts) or "none"


def _free_name(name: str, taken: Mapping[str, object]) -> str:
    n = 1
    while f"{name}#{n}" in taken:
        n += 1
    return f"{name}#{n}"


def merge_snapshots(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The exact sum of *snapshots*, which must cover disjoint sets of live shards.

    A live shard in two inputs is an error (``ValueError``): successive snapshots of one
    shard are cumulative and must not be added. Crashed shards (:meth:`Snapshot.mark_lost`)
    are final words of past incarnations, so one that shares a name with another shard is
    kept as ``name#1``, ``name#2``, ...

    Histograms present in several inputs are decoded once each and encoded once;
    a histogram present in one input is carried over as is.
    """
    per_shard: dict[str, ShardSummary] = {}
    parts: dict[HistKey, list[HistogramSnapshot]] = {}
    for snapshot in snapshots:
        for name, summary in snapshot.per_shard.items():
            if name in per_shard:
                if summary.crashed:
                    name = _free_name(name, per_shard)
                elif per_shard[name].crashed:
                    per_shard[_free_name(name, per_shard)] = per_shard.pop(name)
                else:
                    raise ValueError(f"shard {name!r} is in more than one snapshot; merge each shard once")
            per_shard[name] = summary
        for key, hist in snapshot.histograms.items():
            parts.setdefault(key, []).append(hist)
    return Snapshot(per_shard, {key: _merge_histograms(hists) for key, hists in parts.items()})


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------


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


class ShardStats:
    """The live statistics of one shard. Not thread-safe: record from one thread (the event loop).

    Durations are in seconds, rounded to the nearest µs and clamped to
    0 .. :data:`HIGHEST_US`.
    """

    def __init__(self, shard: str) -> None:
        self.shard = shard
        self._rpc: dict[Key, _Series] = {}
        self._attempt: dict[Key, _Series] = {}
        self._e2e: dict[Key, _Series] = {}
        self._counters: dict[Counter, int] = {ACCEPTED: 0, COMPLETED: 0, EXPIRED: 0, LOST: 0}
        self._gauges: dict[str, int] = {GAUGE_IN_FLIGHT: 0, GAUGE_OPEN_CONNECTIONS: 0}
        self._failures: dict[FailureKey, list[Any]] = {}  # key -> [count, first message]
        self._seq = 0

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

        *outcome*: ``"completed"``, ``"failed"`` (counted by *status*) or ``"expired"``.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown call outcome {outcome!r}")
        key = (function, outcome)
        series = self._e2e.get(key)
        if series is None:
            series = self._e2e[key] = _Series()
        series.record(seconds)
        name = failed(status) if outcome == "failed" else _OUTCOME_COUNTERS[outcome]
        self._counters[name] = self._counters.get(name, 0) + 1

    def record_failure(self, kind: str, function: str, status: str, message: str) -> None:
        """A failure of *kind* (``attempt``, ``failed``, ``expired``): counted, the first *message* kept."""
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
        self._counters[ACCEPTED] += n

    def count_retry(self, status: str) -> None:
        """An attempt that ended with *status* will be retried."""
        name = retries(status)
        self._counters[name] = self._counters.get(name, 0) + 1

    def count_lost(self, n: int = 1) -> None:
        """*n* accepted root calls will never end here (for instance, lost with a crashed peer)."""
        if n < 0:
            raise ValueError("count must be >= 0")
        self._counters[LOST] += n

    def set_gauge(self, name: str, value: int) -> None:
        """Set gauge *name* (:data:`GAUGE_IN_FLIGHT`, :data:`GAUGE_OPEN_CONNECTIONS`, ...)."""
        self._gauges[name] = value

    def snapshot(self) -> Snapshot:
        """An immutable copy; histograms unchanged since the last snapshot are not re-encoded."""
        histograms: dict[HistKey, HistogramSnapshot] = {}
        counters = dict(self._counters)
        attempts = clamped = 0
        for family, table in (("rpc", self._rpc), ("attempt", self._attempt), ("e2e", self._e2e)):
            for (a, b), series in table.items():
                if not series.count:
                    continue  # its first value was rejected (NaN)
                histograms[(cast(Family, family), a, b)] = series.snapshot()
                clamped += series.clamped
                if family == "attempt":
                    attempts += series.count
        counters[ATTEMPTS] = attempts
        if clamped:
            counters[CLAMPED] = clamped
        failures = {key: FailureTally(count, sample) for key, (count, sample) in self._failures.items()}
        summary = ShardSummary(self._seq, counters, dict(self._gauges), failures=failures)
        self._seq += 1
        return Snapshot({self.shard: summary}, histograms)
