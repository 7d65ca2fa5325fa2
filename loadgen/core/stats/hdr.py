"""HDR histograms: the bucket geometry (1 µs .. 1 hour, 3 significant digits), the V2 compressed wire
form of one histogram, frozen histograms (:class:`HistogramSnapshot`), their exact sums and differences.

See :mod:`loadgen.core.stats` for the costs and why the codec is written here.
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
from itertools import accumulate
from typing import Any, Final, cast

from hdrh import codec as _hdr_codec
from hdrh.histogram import HdrHistogram

__all__ = [
    "DEFAULT_PERCENTILES",
    "HIGHEST_US",
    "LOWEST_US",
    "SIGNIFICANT_FIGURES",
    "HistogramSnapshot",
    "LatencySummary",
    "bucket_range",
    "counts_index",
]

LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES: Final = 3
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
