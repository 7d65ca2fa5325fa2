"""Snapshots: one or more shards' statistics at one moment, immutable, merged and subtracted exactly.

The wire form (:meth:`Snapshot.to_bytes`, format ``loadgen.stats/1``) is also what ``summary.json``
keeps and ``loadgen compare`` reads back; counters travel as their text (:mod:`loadgen.core.counters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal, TypeVar, cast

import orjson

from loadgen.core.counters import (
    ACCEPTED,
    CANCELLED,
    COMPLETED,
    EXPIRED,
    LOST,
    OFFERED,
    Counter,
    CounterKind,
    by_status,
    failed,
    parse_counters,
    total,
)
from loadgen.core.counters import rejected as rejected_for
from loadgen.core.stats.hdr import (
    DEFAULT_PERCENTILES,
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    HistogramSnapshot,
    _merge_histograms,
    _subtract_histograms,
)

__all__ = [
    "BREAKDOWN_PARTS",
    "CALLER_FAMILIES",
    "ENGINE_FAMILIES",
    "FAILURE_KINDS",
    "FAMILIES",
    "FORMAT",
    "GAUGE_IN_FLIGHT",
    "GAUGE_OPEN_CONNECTIONS",
    "OUTCOMES",
    "SHAPE_FAMILIES",
    "Accounting",
    "FailureKey",
    "FailureTally",
    "Family",
    "HistKey",
    "Key",
    "ShardSummary",
    "Snapshot",
    "merge_snapshots",
]

Family = Literal[
    "rpc", "attempt", "queue", "e2e", "latency", "lag", "loop_lag", "breakdown", "resumes", "children", "state_bytes"
]
FAMILIES: Final[tuple[Family, ...]] = ("rpc", "attempt", "queue", "e2e", "latency", "lag", "loop_lag")
"""The latency families (µs) that tables, ``summary.json``'s ``latency_us`` and ``loadgen compare`` show."""
ENGINE_FAMILIES: Final[tuple[Family, ...]] = ("rpc", "attempt", "queue", "e2e")
"""What shards record; the others are the callers' (:mod:`loadgen.core.stats.caller`)."""
SHAPE_FAMILIES: Final[tuple[Family, ...]] = ("breakdown", "resumes", "children", "state_bytes")
"""Where root calls' time went (µs, by function and :data:`BREAKDOWN_PARTS`), resumes and children per
root call (counts, by function and ``call``), coroutine state per resume (bytes, by function and ``resume``)."""
BREAKDOWN_PARTS: Final = ("queue", "attempts", "backoff", "children")
"""The phases a root call's accepted → end time is split into (:mod:`loadgen.core.scheduler`)."""
_KNOWN_FAMILIES: Final = frozenset((*FAMILIES, *SHAPE_FAMILIES))
CALLER_FAMILIES: Final[tuple[Family, ...]] = ("latency", "lag", "loop_lag")
Key = tuple[str, str]
HistKey = tuple[Family, str, str]
FailureKey = tuple[str, str, str]  # (kind, function, status)
FAILURE_KINDS: Final[tuple[str, ...]] = ("attempt", "failed", "expired", "cancelled", "poll")
GAUGE_IN_FLIGHT: Final = "in_flight"
GAUGE_OPEN_CONNECTIONS: Final = "open_connections"
OUTCOMES: Final = frozenset({"completed", "failed", "expired", "cancelled"})
FORMAT: Final = "loadgen.stats/1"
K = TypeVar("K")


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
    """Root calls: ``accepted`` should equal ``completed + failed + expired + cancelled + in_flight + lost``."""

    accepted: int
    completed: int
    failed: int
    expired: int
    in_flight: int
    lost: int
    cancelled: int = 0
    offered: int = 0
    rejected: int = 0

    @property
    def admission_balanced(self) -> bool:
        """``offered == accepted + rejected`` (true of an engine without admission counters too)."""
        return not self.offered or self.offered == self.accepted + self.rejected

    @property
    def accounted(self) -> int:
        return self.completed + self.failed + self.expired + self.cancelled + self.in_flight + self.lost

    @property
    def difference(self) -> int:
        """``accepted - accounted``: > 0 calls vanished, < 0 calls ended that were never accepted."""
        return self.accepted - self.accounted

    @property
    def balanced(self) -> bool:
        return self.difference == 0 and self.admission_balanced

    def __str__(self) -> str:
        verdict = "balanced" if self.balanced else f"UNBALANCED by {self.difference:+d}"
        admitted = ""
        if self.offered:
            admitted = f"offered {self.offered} = accepted {self.accepted} + rejected {self.rejected}" + (
                "; " if self.admission_balanced else " (UNBALANCED); "
            )
        return admitted + (
            f"accepted {self.accepted} = completed {self.completed} + failed {self.failed}"
            f" + expired {self.expired} + cancelled {self.cancelled} + in_flight {self.in_flight}"
            f" + lost {self.lost}: {verdict}"
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
            cancelled=counters.get(CANCELLED, 0),
            offered=counters.get(OFFERED, 0),
            rejected=total(counters, CounterKind.REJECTED),
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

    def mark_lost(
        self,
        shard: str,
        accepted: int | None = None,
        ended: tuple[int, int, int, int] | None = None,
        rejected: int | None = None,
    ) -> Snapshot:
        """*shard* died after this snapshot: a copy where it is final (``crashed``).

        Every root call it accepted and did not end is ``lost``: ``accepted`` (by default
        its own counter; pass a larger count kept outside the process, such as a ledger,
        to include calls accepted after this snapshot) minus completed, failed, expired and cancelled.
        *ended* = ``(completed, failed, expired, cancelled)`` from such a ledger counts the calls that
        ended after this snapshot too (failures it did not see by status go under
        ``failed/UNKNOWN``). *rejected* from such a ledger counts the calls rejected after it (those
        not seen by reason go under ``rejected/unknown``), and ``offered`` becomes accepted + rejected.
        Its gauges become 0. A restarted shard may report under the same name: a merge keeps crashed
        shards apart (see :func:`merge_snapshots`).
        """
        summary = self.per_shard[shard]
        counters = dict(summary.counters)
        if accepted is not None:
            if accepted < counters.get(ACCEPTED, 0):
                raise ValueError(f"{shard} accepted {counters.get(ACCEPTED, 0)} calls, not {accepted}")
            counters[ACCEPTED] = accepted
        if ended is not None:
            completed, failed_calls, expired, cancelled = ended
            counters[COMPLETED] = max(counters.get(COMPLETED, 0), completed)
            counters[EXPIRED] = max(counters.get(EXPIRED, 0), expired)
            counters[CANCELLED] = max(counters.get(CANCELLED, 0), cancelled)
            seen_failed = total(counters, CounterKind.FAILED)
            if failed_calls > seen_failed:
                unknown = failed("UNKNOWN")
                counters[unknown] = counters.get(unknown, 0) + failed_calls - seen_failed
        ended_total = (
            counters.get(COMPLETED, 0)
            + counters.get(EXPIRED, 0)
            + counters.get(CANCELLED, 0)
            + total(counters, CounterKind.FAILED)
        )
        counters[LOST] = max(counters.get(ACCEPTED, 0) - ended_total, 0)  # an excess of ended calls stays visible
        seen_rejected = total(counters, CounterKind.REJECTED)
        if rejected is not None and rejected > seen_rejected:
            unknown_reason = rejected_for("unknown")
            counters[unknown_reason] = counters.get(unknown_reason, 0) + rejected - seen_rejected
        if OFFERED in counters or (rejected or 0) > 0:  # admission counted here: it balances again
            counters[OFFERED] = counters.get(ACCEPTED, 0) + total(counters, CounterKind.REJECTED)
        per_shard = dict(self.per_shard)
        per_shard[shard] = ShardSummary(
            summary.seq, counters, dict.fromkeys(summary.gauges, 0), crashed=True, failures=summary.failures
        )
        return Snapshot(per_shard, self.histograms)

    def retired(
        self,
        accepted: int | None = None,
        ended: tuple[int, int, int, int] | None = None,
        rejected: int | None = None,
    ) -> Snapshot:
        """:meth:`mark_lost` for the one shard of this snapshot."""
        if len(self.per_shard) != 1:
            raise ValueError(f"retired() needs a snapshot of one shard, not {len(self.per_shard)}")
        return self.mark_lost(next(iter(self.per_shard)), accepted, ended, rejected)

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
            if family not in _KNOWN_FAMILIES or not isinstance(by_a, dict):
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
        """A human-readable table: latencies in ms (µs resolution), counters, gauges, accounting
        (:func:`loadgen.core.stats.table.render`)."""
        from loadgen.core.stats.table import render

        return render(self, qs)


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
