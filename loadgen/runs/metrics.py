"""The metrics a gate can judge, and their values from a run's statistics (pure).

A metric is a name with an optional scope in braces: ``latency.p99``,
``latency.p99{function=echo}``, ``attempts{function=fail,status=TEMPORARY_ERROR}``.
Latencies are in µs internally; ratios are fractions; rates are per second of
the run (the *duration_s* given to :func:`evaluate`).

========================================  =======  ==================================================
metric                                    kind     value
========================================  =======  ==================================================
``latency.STAT``                          latency  calls as their callers saw them: from the
                                                   intended start (open model: the scheduled
                                                   arrival; closed: the moment the user issued
                                                   the call) to the result as the caller received
                                                   it, recorded by every Locust process; scope
                                                   ``function``, ``outcome`` (``completed``/
                                                   ``failed``/``expired``/``cancelled``, ``rejected``:
                                                   the dispatch failed, ``accepted``: not waited for)
``engine.e2e.STAT``                       latency  root calls in the engine, accepted → end (all
                                                   outcomes unless scoped): leaves out any time
                                                   before a shard accepted the call; scope
                                                   ``function``, ``outcome`` (``completed``/
                                                   ``failed``/``expired``/``cancelled``)
``e2e.STAT``                              latency  the same as ``engine.e2e.STAT`` (its old name; its
                                                   gate messages say so)
``lag.STAT``                              latency  how far behind schedule the load generator ran:
                                                   an arrival's start - its intended time (open), a
                                                   task's first call - its due time (closed); scope
                                                   ``user``, ``kind`` (``arrival``/``task``)
``loop_lag.STAT``                         latency  how late each Locust process's event loop ran a
                                                   50 ms timer (a busy CPU); scope ``process``
``attempt.STAT``                          latency  endpoint attempts; scope ``function``, ``status``
``queue.STAT``                            latency  how long attempts waited in a shard for a stream to
                                                   the endpoint; scope ``function``, ``kind``
                                                   (``attempt``)
``breakdown.PART.STAT``                   latency  where root calls' engine time (accepted → end) went,
                                                   per call: PART ``queue`` (attempts waiting in the
                                                   shard for a stream), ``attempts`` (attempts in
                                                   progress at the endpoint), ``backoff`` (waiting
                                                   before retries), ``children`` (waiting in polls for
                                                   child calls); the four add up to ``engine.e2e``;
                                                   scope ``function``
``resumes.STAT``                          count    times a root call was resumed with a poll result;
                                                   scope ``function``
``children.STAT``                         count    child calls a root call's polls started (its own,
                                                   not its children's); scope ``function``
``state_bytes.STAT``                      count    bytes of coroutine state per resume (any call);
                                                   scope ``function`` (the call resumed)
``rpc.STAT``                              latency  ingress RPCs; unless scoped, how batches were
                                                   accepted: ``Dispatch`` RPCs and ``Session``
                                                   groups; scope ``rpc`` (``Dispatch``, ``Session``,
                                                   ``Wait``, ``*`` for all), ``status`` (``ok``/``error``)
``accepted``, ``lost``, ``in_flight``     count    root calls accepted / lost with a dead shard /
                                                   still in flight (gauge)
``offered``, ``rejected``                 count    root calls offered to admission control / turned
                                                   away by a full shard (RESOURCE_EXHAUSTED);
                                                   ``rejected`` scope ``reason`` (``calls_in_flight``,
                                                   ``held_bytes``)
``rejected.ratio``                        ratio    rejected / offered
``pool.busy_ratio``                       ratio    share of the run during which every stream to the
                                                   endpoint was busy and attempts waited for one
                                                   (the worst shard): 0.8 or more, the pool was the
                                                   bottleneck
``completed``, ``expired``                count    root calls; scope ``function``
``cancelled``                             count    root calls ended by the end of the run (or a
                                                   drain) before they finished; scope ``function``
``failed``                                count    root calls; scope ``function`` or ``status``
``attempts``                              count    endpoint attempts; scope ``function``, ``status``
``retries``                               count    attempts that were retried; scope ``status``
``retries.ratio``                         ratio    retries / attempts; scope ``status`` (of the retry)
``failed.ratio``                          ratio    (failed + expired + lost) / accepted; scoped by
                                                   ``function``: (failed + expired) / ended calls
``rpc.fail_ratio``                        ratio    failed requests / requests as the load generator
                                                   saw them (Locust's totals) when given, else the
                                                   engine's failed / all Dispatch RPCs and Session
                                                   groups; scoped
                                                   by ``rpc``: always the engine's view
``calls_per_s``                           rate     completed root calls per second; scope ``function``
``accepted_per_s``                        rate     accepted root calls per second
``attempts_per_s``                        rate     attempts per second; scope ``function``, ``status``
``wrong``                                 count    completed calls whose output differed from the
                                                   workload's ``expect``, as the callers checked them
                                                   (:mod:`loadgen.core.caller`); scope ``function``
``wrong.ratio``                           ratio    wrong / completed calls checked; scope ``function``
``unfinished``                            count    waits cut short by the end of the run; scope
                                                   ``function``
``arrivals``, ``late``, ``dropped``       count    open-model arrivals started or dropped, late
                                                   ones (``late_after``), dropped ones
                                                   (``max_lateness``), over the Locust processes
``late_per_s``, ``dropped_per_s``         rate     late / dropped arrivals per second
``dropped.ratio``                         ratio    dropped / arrivals
``locust.requests``, ``locust.failures``  count    Locust's request totals
``locust.fail_ratio``                     ratio    Locust's failures / requests
``locust.rps``                            rate     Locust's requests per second
========================================  =======  ==================================================

Without caller checks (no ``caller.json``), ``wrong``, ``wrong.ratio`` and ``unfinished`` have no data;
without the callers' statistics (:mod:`loadgen.core.stats.caller`), neither have ``latency``, ``lag``,
``loop_lag``, ``arrivals``, ``late``, ``dropped`` and their rates.

Which to gate on: ``latency.*`` is what a caller waits; ``engine.e2e.*`` cannot see a stalled or
saturated shard before it accepts a call, a full queue in front of it, or a load generator that
fell behind (coordinated omission), so it reads low exactly when things go wrong. The difference
of the two says where the time went.

``STAT`` is ``pNN`` (any percentile 0..100: ``p50``, ``p90``, ``p95``, ``p99``,
``p99.9``, ``p99.99``), ``mean``, ``min``, ``max`` (latencies) or ``count`` (a count).

A metric without data (nothing recorded in its scope, a ratio over zero, Locust
metrics without Locust totals) has the value NaN, and its gate fails with "no data".

A new metric is one entry in :data:`_SIMPLE` (its kind and scope labels) and its value in
:meth:`Metrics._simple`; the gates, the scenario parser and ``--help`` follow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from loadgen.core.caller import FunctionChecks
from loadgen.core.counters import ARRIVALS, DROPPED, LATE, CounterKind, failed
from loadgen.core.counters import rejected as rejected_for
from loadgen.core.counters import retries as retries_of
from loadgen.core.stats import Family, HistKey, HistogramSnapshot, Snapshot, merge_snapshots
from loadgen.core.stats.caller import CALLER_OUTCOMES
from loadgen.core.stats.snapshot import BREAKDOWN_PARTS
from loadgen.core.text import suggest
from loadgen.core.units import format_latency

__all__ = [
    "ALIASES",
    "DISPATCHING_RPCS",
    "METRIC_NAMES",
    "GateSyntaxError",
    "LocustTotals",
    "Metric",
    "MetricKind",
    "Metrics",
    "PoolUsage",
    "format_value",
    "metrics_from",
    "parse_metric",
    "pool_usage",
]

MetricKind = Literal["latency", "ratio", "rate", "count"]

# Latency families: the scope labels each takes, and what they select in the histogram key.
_FAMILY_LABELS: Final[dict[str, tuple[str, ...]]] = {
    "latency": ("function", "outcome"),
    "engine.e2e": ("function", "outcome"),
    "e2e": ("function", "outcome"),
    "attempt": ("function", "status"),
    "queue": ("function", "kind"),
    "rpc": ("rpc", "status"),
    "lag": ("user", "kind"),
    "loop_lag": ("process", "kind"),
    **{f"breakdown.{part}": ("function",) for part in BREAKDOWN_PARTS},
    "resumes": ("function",),
    "children": ("function",),
    "state_bytes": ("function",),
}
# The histogram family each metric family reads, and whether it is the callers' (else the engine's).
_SOURCES: Final[dict[str, tuple[Family, bool]]] = {
    "latency": ("latency", True),
    "engine.e2e": ("e2e", False),
    "e2e": ("e2e", False),
    "attempt": ("attempt", False),
    "queue": ("queue", False),
    "rpc": ("rpc", False),
    "lag": ("lag", True),
    "loop_lag": ("loop_lag", True),
    **{f"breakdown.{part}": ("breakdown", False) for part in BREAKDOWN_PARTS},
    "resumes": ("resumes", False),
    "children": ("children", False),
    "state_bytes": ("state_bytes", False),
}
_FIXED_PART: Final[dict[str, str]] = {f"breakdown.{part}": part for part in BREAKDOWN_PARTS}
"""Families that read one second key part of their histograms (``breakdown.backoff``: ``backoff``)."""
_COUNT_FAMILIES: Final = frozenset(("resumes", "children", "state_bytes"))
"""Families whose values are counts or sizes, not µs."""
_BY_LENGTH: Final = sorted(_FAMILY_LABELS, key=len, reverse=True)
ALIASES: Final[dict[str, str]] = {"e2e": "engine.e2e"}
"""Old family names, and the name of what they measure."""
DISPATCHING_RPCS: Final = frozenset(("Dispatch", "Session"))
"""The ``rpc`` keys an unscoped ``rpc.*`` metric covers: a batch accepted by a Dispatch RPC or as a Session group."""
_LATENCY_STATS: Final = ("mean", "min", "max", "count")
_OUTCOMES: Final = ("completed", "failed", "expired", "cancelled")
_CALLER_OUTCOMES: Final = CALLER_OUTCOMES

# Every other metric: kind and the scope labels it takes.
POOL_BOTTLENECK: Final = 0.8
"""Every stream was busy this share of the run or more (on some shard): the pool was the bottleneck."""


@dataclass(frozen=True)
class PoolUsage:
    """The endpoint pool of the worst shard: its streams, and the share of the run they were all busy."""

    streams: int
    busy_ratio: float

    @property
    def bottleneck(self) -> bool:
        return self.busy_ratio >= POOL_BOTTLENECK

    def to_json(self) -> dict[str, object]:
        return {"streams": self.streams, "busy_ratio": round(self.busy_ratio, 4), "bottleneck": self.bottleneck}


def pool_usage(snapshot: Snapshot, duration_s: float) -> PoolUsage | None:
    """How busy the shards' endpoint pools were (None when the shards do not report it)."""
    shards = [summary.gauges for summary in snapshot.per_shard.values() if "streams" in summary.gauges]
    if not shards or duration_s <= 0:
        return None
    busy = max(gauges.get("pool_saturated_ms", 0) for gauges in shards) / 1000 / duration_s
    return PoolUsage(max(gauges["streams"] for gauges in shards), min(busy, 1.0))


_SIMPLE: Final[dict[str, tuple[MetricKind, tuple[str, ...]]]] = {
    "accepted": ("count", ()),
    "offered": ("count", ()),
    "rejected": ("count", ("reason",)),
    "rejected.ratio": ("ratio", ()),
    "pool.busy_ratio": ("ratio", ()),
    "completed": ("count", ("function",)),
    "failed": ("count", ("function", "status")),
    "expired": ("count", ("function",)),
    "cancelled": ("count", ("function",)),
    "lost": ("count", ()),
    "in_flight": ("count", ()),
    "attempts": ("count", ("function", "status")),
    "retries": ("count", ("status",)),
    "retries.ratio": ("ratio", ("status",)),
    "failed.ratio": ("ratio", ("function",)),
    "rpc.fail_ratio": ("ratio", ("rpc",)),
    "calls_per_s": ("rate", ("function",)),
    "accepted_per_s": ("rate", ()),
    "attempts_per_s": ("rate", ("function", "status")),
    "wrong": ("count", ("function",)),
    "wrong.ratio": ("ratio", ("function",)),
    "unfinished": ("count", ("function",)),
    "arrivals": ("count", ()),
    "late": ("count", ()),
    "dropped": ("count", ()),
    "late_per_s": ("rate", ()),
    "dropped_per_s": ("rate", ()),
    "dropped.ratio": ("ratio", ()),
    "locust.requests": ("count", ()),
    "locust.failures": ("count", ()),
    "locust.fail_ratio": ("ratio", ()),
    "locust.rps": ("rate", ()),
}

#: Every metric name (latency percentiles shown as p50/p90/p95/p99/p99.9), for help and suggestions.
METRIC_NAMES: Final[tuple[str, ...]] = (
    *(
        f"{family}.{stat}"
        for family in _FAMILY_LABELS
        for stat in ("p50", "p90", "p95", "p99", "p99.9", "mean", "min", "max", "count")
    ),
    *_SIMPLE,
)

_PERCENTILE = re.compile(r"p(\d{1,3}(?:\.\d+)?)")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_<>.*:-]+")


class GateSyntaxError(ValueError):
    """A metric name, scope or condition that cannot be parsed; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Metric:
    """A parsed metric: ``name`` (``"e2e.p99"``), ``kind`` and its scope ``labels`` (sorted pairs).

    For latency metrics ``family`` is ``"latency"``, ``"engine.e2e"``, ``"e2e"``, ``"attempt"``,
    ``"rpc"``, ``"lag"`` or ``"loop_lag"`` and ``stat`` the part after it (``"p99"``, ``"mean"``,
    ...); both are ``""`` for other metrics.
    """

    name: str
    kind: MetricKind
    labels: tuple[tuple[str, str], ...] = ()
    family: str = ""
    stat: str = ""

    def label(self, name: str) -> str | None:
        """The value of scope label *name*, or None."""
        for key, value in self.labels:
            if key == name:
                return value
        return None

    @property
    def percentile(self) -> float | None:
        """The percentile of a ``pNN`` stat, else None."""
        match = _PERCENTILE.fullmatch(self.stat)
        return float(match.group(1)) if match else None

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        return self.name + "{" + ",".join(f"{k}={v}" for k, v in self.labels) + "}"


def _normalize_label(name: str, value: str, family: str) -> str:
    if name == "status" and family == "rpc":
        value = value.lower()
        if value not in ("ok", "error"):
            raise GateSyntaxError(f"rpc scope status must be 'ok' or 'error', got {value!r}")
        return value
    if name == "status":
        return value.upper().removeprefix("STATUS_")
    if name == "outcome":
        value = value.lower()
        allowed = _CALLER_OUTCOMES if family == "latency" else _OUTCOMES
        if value not in allowed:
            raise GateSyntaxError(
                f"outcome must be one of {', '.join(allowed)}, got {value!r}{suggest(value, allowed)}"
            )
    return value


def _parse_labels(text: str, allowed: tuple[str, ...], metric: str, family: str) -> tuple[tuple[str, str], ...]:
    labels: dict[str, str] = {}
    for part in text.split(","):
        name, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not name or not value:
            raise GateSyntaxError(f"{metric}: a scope is {{label=value,...}}, got {{{text}}}")
        if name not in allowed:
            if not allowed:
                raise GateSyntaxError(f"{metric} takes no scope, got {{{text}}}")
            raise GateSyntaxError(
                f"{metric}: unknown scope label {name!r}{suggest(name, allowed)}; it takes {', '.join(allowed)}"
            )
        if name in labels:
            raise GateSyntaxError(f"{metric}: scope label {name!r} given twice")
        if not _LABEL_VALUE.fullmatch(value):
            raise GateSyntaxError(f"{metric}: scope {name}={value!r} is not a valid name")
        labels[name] = _normalize_label(name, value, family)
    return tuple(sorted(labels.items()))


def parse_metric(text: str) -> Metric:
    """Parse ``NAME`` or ``NAME{label=value,...}``; :class:`GateSyntaxError` if it is not a metric."""
    if not isinstance(text, str):
        raise GateSyntaxError(f"a metric name must be a string, got {type(text).__name__}")
    stripped = text.strip()
    scope = ""
    if "{" in stripped:
        stripped, _, rest = stripped.partition("{")
        if not rest.endswith("}") or "{" in rest[:-1] or "}" in rest[:-1]:
            raise GateSyntaxError(f"{text!r}: a scope is written {{label=value,...}} at the end of the metric")
        scope = rest[:-1]
        stripped = stripped.strip()
    family = next((f for f in _BY_LENGTH if stripped.startswith(f + ".")), "")
    stat = stripped[len(family) + 1 :] if family else ""
    if family and stripped not in _SIMPLE:
        match = _PERCENTILE.fullmatch(stat)
        if match:
            if not 0.0 <= float(match.group(1)) <= 100.0:
                raise GateSyntaxError(f"{stripped}: a percentile is between p0 and p100")
        elif stat not in _LATENCY_STATS:
            raise GateSyntaxError(
                f"{stripped}: unknown statistic {stat!r}{suggest(stat, ('p50', 'p99', 'p99.9', *_LATENCY_STATS))};"
                " expected pNN (p50, p99, p99.9, ...), mean, min, max or count"
            )
        labels = _parse_labels(scope, _FAMILY_LABELS[family], stripped, family) if scope else ()
        kind: MetricKind = "count" if stat == "count" or family in _COUNT_FAMILIES else "latency"
        return Metric(stripped, kind, labels, family, stat)
    if stripped not in _SIMPLE:
        raise GateSyntaxError(f"unknown metric {stripped!r}{suggest(stripped, METRIC_NAMES)}")
    kind, allowed = _SIMPLE[stripped]
    labels = _parse_labels(scope, allowed, stripped, "") if scope else ()
    if stripped == "failed" and len(labels) > 1:
        raise GateSyntaxError("failed: scope it by function or by status, not both")
    return Metric(stripped, kind, labels)


@dataclass(frozen=True, slots=True)
class LocustTotals:
    """Locust's aggregated request totals for the run (its "Aggregated" stats row)."""

    requests: int
    failures: int

    def to_json(self) -> dict[str, int]:
        return {"requests": self.requests, "failures": self.failures}


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


class Metrics:
    """Metric values of one snapshot: ``metrics("e2e.p99")`` → µs, fraction, count or rate (NaN: no data).

    *duration_s* is the run's length for the ``*_per_s`` rates; *locust* Locust's totals, if any;
    *checks* the callers' checked results per function (:mod:`loadgen.core.caller`), if any;
    *caller* the callers' merged statistics (:mod:`loadgen.core.stats.caller`), if any.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        duration_s: float,
        locust: LocustTotals | None = None,
        checks: Mapping[str, FunctionChecks] | None = None,
        caller: Snapshot | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.duration_s = duration_s
        self.locust = locust
        self.checks = checks
        self.caller = caller
        self._merged: dict[tuple[str, tuple[tuple[str, str], ...]], HistogramSnapshot | None] = {}

    def __call__(self, metric: str | Metric) -> float:
        return self.value(metric)

    def value(self, metric: str | Metric) -> float:
        """The value of *metric* (a :class:`Metric` or its text); :class:`GateSyntaxError` for an unknown one."""
        parsed = parse_metric(metric) if isinstance(metric, str) else metric
        if parsed.family:
            return self._latency(parsed)
        return float(self._simple(parsed))

    # -- latency families --------------------------------------------------------------------

    def histogram(self, family: str, labels: tuple[tuple[str, str], ...] = ()) -> HistogramSnapshot | None:
        """The merge of *family*'s histograms within scope *labels* (None: nothing recorded there)."""
        cache_key = (family, labels)
        if cache_key not in self._merged:
            source, from_caller = _SOURCES[family]
            snapshot = self.caller if from_caller else self.snapshot
            if snapshot is None:
                self._merged[cache_key] = None
                return None
            names = _FAMILY_LABELS[family]
            wanted = dict(labels)
            a_want = wanted.get(names[0])
            b_want = _FIXED_PART.get(family) or (wanted.get(names[1]) if len(names) > 1 else None)
            a_allowed: frozenset[str] | None = None if a_want in (None, "*") else frozenset((a_want,))  # rpc=*: all
            if family == "rpc" and a_want is None:
                a_allowed = DISPATCHING_RPCS
            parts = [
                hist
                for (f, a, b), hist in snapshot.histograms.items()
                if f == source and (a_allowed is None or a in a_allowed) and b_want in (None, b) and hist.count
            ]
            self._merged[cache_key] = _combine(parts)
        return self._merged[cache_key]

    def _latency(self, metric: Metric) -> float:
        hist = self.histogram(metric.family, metric.labels)
        if metric.stat == "count":
            return float(hist.count if hist else 0)
        if hist is None:
            return math.nan
        q = metric.percentile
        if q is not None:
            return hist.percentiles([q])[q]
        return {"mean": hist.mean, "min": float(hist.min), "max": float(hist.max)}[metric.stat]

    def _count(self, family: str, **labels: str) -> int:
        hist = self.histogram(family, tuple(sorted(labels.items())))
        return hist.count if hist else 0

    # -- counters, ratios, rates -------------------------------------------------------------

    def _simple(self, metric: Metric) -> float:
        snap, name = self.snapshot, metric.name
        function, status = metric.label("function"), metric.label("status")
        if name.startswith("locust."):
            return self._locust(name)
        if name in ("wrong", "wrong.ratio", "unfinished"):
            return self._checked(name, function)
        if name in ("arrivals", "late", "dropped", "late_per_s", "dropped_per_s", "dropped.ratio"):
            return self._arrivals(name)
        if name == "accepted":
            return snap.counter(CounterKind.ACCEPTED)
        if name == "offered":
            return snap.counter(CounterKind.OFFERED)
        if name == "rejected":
            reason = metric.label("reason")
            return snap.counters.get(rejected_for(reason), 0) if reason else snap.counter(CounterKind.REJECTED)
        if name == "rejected.ratio":
            return _ratio(snap.counter(CounterKind.REJECTED), snap.counter(CounterKind.OFFERED))
        if name == "pool.busy_ratio":
            usage = pool_usage(snap, self.duration_s)
            return usage.busy_ratio if usage is not None else math.nan
        if name == "lost":
            return snap.counter(CounterKind.LOST)
        if name == "in_flight":
            return snap.gauges.get("in_flight", 0)
        if name in ("completed", "expired", "cancelled"):
            return self._count("e2e", function=function, outcome=name) if function else snap.counter(name)
        if name == "failed":
            if function:
                return self._count("e2e", function=function, outcome="failed")
            return snap.counters.get(failed(status), 0) if status else snap.counter(CounterKind.FAILED)
        if name == "attempts":
            return self._attempts(function, status)
        if name == "retries":
            return snap.counters.get(retries_of(status), 0) if status else snap.counter(CounterKind.RETRIES)
        if name == "retries.ratio":
            retried = snap.counters.get(retries_of(status), 0) if status else snap.counter(CounterKind.RETRIES)
            return _ratio(retried, snap.counter(CounterKind.ATTEMPTS))
        if name == "failed.ratio":
            if function:
                ended = self._count("e2e", function=function)
                bad = self._count("e2e", function=function, outcome="failed")
                return _ratio(bad + self._count("e2e", function=function, outcome="expired"), ended)
            bad = snap.counter(CounterKind.FAILED) + snap.counter(CounterKind.EXPIRED) + snap.counter(CounterKind.LOST)
            return _ratio(bad, snap.counter(CounterKind.ACCEPTED))
        if name == "rpc.fail_ratio":
            rpc = metric.label("rpc")
            if rpc is None and self.locust is not None:
                return _ratio(self.locust.failures, self.locust.requests)
            scope = {"rpc": rpc} if rpc else {}
            errors = self._count("rpc", status="error", **scope)
            return _ratio(errors, errors + self._count("rpc", status="ok", **scope))
        if name == "calls_per_s":
            completed = self._count("e2e", function=function, outcome="completed") if function else None
            return self._rate(snap.counter(CounterKind.COMPLETED) if completed is None else completed)
        if name == "accepted_per_s":
            return self._rate(snap.counter(CounterKind.ACCEPTED))
        if name == "attempts_per_s":
            return self._rate(self._attempts(function, status))
        raise AssertionError(f"unhandled metric {name}")  # pragma: no cover - _SIMPLE lists them all

    def _attempts(self, function: str | None, status: str | None) -> int:
        if function is None and status is None:
            return self.snapshot.counter(CounterKind.ATTEMPTS)
        labels = {k: v for k, v in (("function", function), ("status", status)) if v is not None}
        return self._count("attempt", **labels)

    def _checked(self, name: str, function: str | None) -> float:
        if self.checks is None:
            return math.nan
        if function is None:
            parts = list(self.checks.values())
        else:
            parts = [self.checks[function]] if function in self.checks else []
        if name == "wrong.ratio":
            return _ratio(sum(p.wrong for p in parts), sum(p.checked for p in parts))
        return sum(p.wrong if name == "wrong" else p.unfinished for p in parts)

    def _arrivals(self, name: str) -> float:
        if self.caller is None:
            return math.nan
        counters = self.caller.counters
        arrivals, late, dropped = (counters.get(c, 0) for c in (ARRIVALS, LATE, DROPPED))
        if name == "dropped.ratio":
            return _ratio(dropped, arrivals)
        if name.endswith("_per_s"):
            return self._rate(late if name.startswith("late") else dropped)
        return {"arrivals": arrivals, "late": late, "dropped": dropped}[name]

    def _rate(self, count: float) -> float:
        return count / self.duration_s if self.duration_s > 0 else math.nan

    def _locust(self, name: str) -> float:
        if self.locust is None:
            return math.nan
        if name == "locust.requests":
            return self.locust.requests
        if name == "locust.failures":
            return self.locust.failures
        if name == "locust.fail_ratio":
            return _ratio(self.locust.failures, self.locust.requests)
        return self._rate(self.locust.requests)


def _combine(parts: Sequence[HistogramSnapshot]) -> HistogramSnapshot | None:
    """The exact merge of several histograms (through :func:`merge_snapshots`), None for none."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    key: HistKey = ("e2e", "", "")
    merged = merge_snapshots(Snapshot({}, {key: part}) for part in parts)
    return merged.histograms[key]


def metrics_from(snapshot: Snapshot, duration_s: float, locust: LocustTotals | None = None) -> Metrics:
    """A callable ``metric text → value`` over *snapshot* (see :class:`Metrics`)."""
    return Metrics(snapshot, duration_s, locust)


def format_value(kind: MetricKind, value: float) -> str:
    """*value* for people: latencies (µs) as µs/ms/s, ratios as percentages, counts and rates as numbers."""
    if math.isnan(value):
        return "no data"
    if kind == "latency":
        return format_latency(value)
    if kind == "ratio":
        return f"{value * 100:.3g}%"
    if kind == "rate":
        return f"{value:.1f}/s"
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"
