"""Pass/fail gates on a run's statistics, k6 style: ``"e2e.p99" = "< 250ms"``.

A pure module, except for the two writers at the end (:func:`write_gates_json`,
:func:`write_junit`), which write the one file they are given.

A gate is a *metric* and a *condition*. Scenario files (:mod:`loadgen.runs.scenario`)
declare them under ``[gates]``; :func:`evaluate` checks them against the engine's
merged :class:`~loadgen.core.stats.Snapshot` at the end of a run, and
:func:`abort_check` checks the ``abort_on_fail`` ones during the run.

Metrics
-------
A metric is a name with an optional scope in braces: ``e2e.p99``,
``e2e.p99{function=echo}``, ``attempts{function=fail,status=TEMPORARY_ERROR}``.
Latencies are in µs internally; ratios are fractions; rates are per second of
the run (the *duration_s* given to :func:`evaluate`).

========================================  =======  ==================================================
metric                                    kind     value
========================================  =======  ==================================================
``e2e.STAT``                              latency  root calls, accepted → end (all outcomes unless
                                                   scoped); scope ``function``, ``outcome``
                                                   (``completed``/``failed``/``expired``)
``attempt.STAT``                          latency  endpoint attempts; scope ``function``, ``status``
``rpc.STAT``                              latency  ingress RPCs, the ``Dispatch`` RPC unless scoped;
                                                   scope ``rpc`` (``Dispatch``, ``Wait``, ``*`` for
                                                   all), ``status`` (``ok``/``error``)
``accepted``, ``lost``, ``in_flight``     count    root calls accepted / lost with a dead shard /
                                                   still in flight (gauge)
``completed``, ``expired``                count    root calls; scope ``function``
``failed``                                count    root calls; scope ``function`` or ``status``
``attempts``                              count    endpoint attempts; scope ``function``, ``status``
``retries``                               count    attempts that were retried; scope ``status``
``retries.ratio``                         ratio    retries / attempts; scope ``status`` (of the retry)
``failed.ratio``                          ratio    (failed + expired + lost) / accepted; scoped by
                                                   ``function``: (failed + expired) / ended calls
``rpc.fail_ratio``                        ratio    failed requests / requests as the load generator
                                                   saw them (Locust's totals) when given, else the
                                                   engine's failed / all ``Dispatch`` RPCs; scoped
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
``locust.requests``, ``locust.failures``  count    Locust's request totals
``locust.fail_ratio``                     ratio    Locust's failures / requests
``locust.rps``                            rate     Locust's requests per second
========================================  =======  ==================================================

Without caller checks (no ``caller.json``), ``wrong``, ``wrong.ratio`` and ``unfinished`` have no data.

Implicit gates
--------------
A scenario without ``[gates]`` is judged by :func:`implicit_gates`: no root call failed,
expired, was lost, was wrong or was still in flight when the run ended, and Locust saw no
failed request. Their results say they are implicit (``GateResult.implicit``).

``STAT`` is ``pNN`` (any percentile 0..100: ``p50``, ``p90``, ``p95``, ``p99``,
``p99.9``, ``p99.99``), ``mean``, ``min``, ``max`` (latencies) or ``count`` (a count).

A metric without data (nothing recorded in its scope, a ratio over zero, Locust
metrics without Locust totals) has the value NaN, and its gate fails with "no data".

Conditions
----------
``OP NUMBER[UNIT]`` with OP one of ``<``, ``<=``, ``>``, ``>=``, ``==``. Latencies
need a unit: ``us``/``µs``, ``ms`` or ``s`` (``"< 250ms"``). Ratios take a fraction
or a percentage (``"< 0.01"``, ``"< 1%"``). Counts and rates take plain numbers
(``"> 500"``, ``"== 0"``).

Exit codes
----------
:data:`EXIT_OK` (0) every gate passed, :data:`EXIT_GATE_FAILED` (1) a gate failed,
:data:`EXIT_USAGE` (2) usage or scenario error, :data:`EXIT_RUN_FAILED` (3) the run
itself failed (accounting unbalanced, crash, nothing ran); see :func:`exit_code`.
"""

from __future__ import annotations

import math
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from loadgen.core.caller import FunctionChecks
from loadgen.core.counters import CounterKind, failed
from loadgen.core.counters import retries as retries_of
from loadgen.core.stats import HistKey, HistogramSnapshot, Snapshot, merge_snapshots
from loadgen.core.text import suggest
from loadgen.core.units import format_latency

__all__ = [
    "EXIT_GATE_FAILED",
    "EXIT_OK",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "METRIC_NAMES",
    "Condition",
    "Gate",
    "GateResult",
    "GateSyntaxError",
    "LocustTotals",
    "Metric",
    "MetricKind",
    "Metrics",
    "abort_check",
    "evaluate",
    "exit_code",
    "format_value",
    "implicit_gates",
    "metrics_from",
    "parse_condition",
    "parse_gate",
    "parse_metric",
    "write_gates_json",
    "write_junit",
]

EXIT_OK: Final = 0
EXIT_GATE_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_RUN_FAILED: Final = 3

MetricKind = Literal["latency", "ratio", "rate", "count"]
Op = Literal["<", "<=", ">", ">=", "=="]

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}

# Latency families: the scope labels each takes, and what they select in the histogram key.
_FAMILY_LABELS: Final[dict[str, tuple[str, str]]] = {
    "e2e": ("function", "outcome"),
    "attempt": ("function", "status"),
    "rpc": ("rpc", "status"),
}
_LATENCY_STATS: Final = ("mean", "min", "max", "count")
_OUTCOMES: Final = ("completed", "failed", "expired")

# Every other metric: kind and the scope labels it takes.
_SIMPLE: Final[dict[str, tuple[MetricKind, tuple[str, ...]]]] = {
    "accepted": ("count", ()),
    "completed": ("count", ("function",)),
    "failed": ("count", ("function", "status")),
    "expired": ("count", ("function",)),
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
_CONDITION = re.compile(
    r"\s*(<=|>=|==|<|>)\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(us|µs|μs|ms|s|%)?\s*",
)
_LATENCY_UNITS: Final[dict[str, float]] = {"us": 1.0, "µs": 1.0, "μs": 1.0, "ms": 1_000.0, "s": 1_000_000.0}


class GateSyntaxError(ValueError):
    """A metric name, scope or condition that cannot be parsed; the message says what was expected."""




# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    """A parsed metric: ``name`` (``"e2e.p99"``), ``kind`` and its scope ``labels`` (sorted pairs).

    For latency metrics ``family`` is ``"e2e"``/``"attempt"``/``"rpc"`` and ``stat`` the part
    after the dot (``"p99"``, ``"mean"``, ...); both are ``""`` for other metrics.
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
        if value not in _OUTCOMES:
            raise GateSyntaxError(
                f"outcome must be one of {', '.join(_OUTCOMES)}, got {value!r}{suggest(value, _OUTCOMES)}"
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
    family, dot, stat = stripped.partition(".")
    if dot and family in _FAMILY_LABELS and stripped not in _SIMPLE:
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
        kind: MetricKind = "count" if stat == "count" else "latency"
        return Metric(stripped, kind, labels, family, stat)
    if stripped not in _SIMPLE:
        raise GateSyntaxError(f"unknown metric {stripped!r}{suggest(stripped, METRIC_NAMES)}")
    kind, allowed = _SIMPLE[stripped]
    labels = _parse_labels(scope, allowed, stripped, "") if scope else ()
    if stripped == "failed" and len(labels) > 1:
        raise GateSyntaxError("failed: scope it by function or by status, not both")
    return Metric(stripped, kind, labels)


@dataclass(frozen=True, slots=True)
class Condition:
    """``op`` and ``threshold`` in the metric's internal unit (µs, fraction, plain); ``text`` as written."""

    op: Op
    threshold: float
    text: str

    def holds(self, value: float) -> bool:
        """Whether *value* satisfies the condition (never for NaN)."""
        return not math.isnan(value) and _OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return self.text


def parse_condition(text: str, kind: MetricKind = "count") -> Condition:
    """Parse ``"< 250ms"``, ``"<= 1%"``, ``"> 500"`` for a metric of *kind*; :class:`GateSyntaxError` if bad."""
    if not isinstance(text, str):
        raise GateSyntaxError(f'a condition must be a string such as "< 250ms", got {type(text).__name__}')
    match = _CONDITION.fullmatch(text)
    if match is None:
        raise GateSyntaxError(
            f'a condition is OP NUMBER[UNIT] with OP one of <, <=, >, >=, == (such as "< 250ms" or "< 1%"),'
            f" got {text!r}"
        )
    op, number, unit = match.group(1), float(match.group(2)), match.group(3) or ""
    if not math.isfinite(number):
        raise GateSyntaxError(f"a condition needs a finite number, got {text!r}")
    if kind == "latency":
        if unit not in _LATENCY_UNITS:
            raise GateSyntaxError(
                f'a latency condition needs a unit (us, µs, ms or s), such as "< 250ms"; got {text!r}'
            )
        threshold = number * _LATENCY_UNITS[unit]
    elif kind == "ratio":
        if unit and unit != "%":
            raise GateSyntaxError(
                f'a ratio condition takes a fraction or a percentage ("< 0.01", "< 1%"), got {text!r}'
            )
        threshold = number / 100.0 if unit == "%" else number
    else:
        if unit:
            raise GateSyntaxError(f'a {kind} condition takes a plain number ("> 500"), got {text!r}')
        threshold = number
    canonical = f"{op} {match.group(2)}{'µs' if unit == 'μs' else unit}"
    return Condition(op, threshold, canonical)  # type: ignore[arg-type]  # op matched one of _OPS


@dataclass(frozen=True, slots=True)
class Gate:
    """A metric, a condition, and whether failing it during the run aborts the run (after *delay* s)."""

    metric: Metric
    condition: Condition
    abort_on_fail: bool = False
    delay: float = 0.0
    implicit: bool = False
    """A gate loadgen applies because the scenario has no ``[gates]`` (:func:`implicit_gates`)."""

    def __str__(self) -> str:
        return f"{self.metric} {self.condition}"


def parse_gate(metric: str, condition: str, abort_on_fail: bool = False, delay: float = 0.0) -> Gate:
    """A :class:`Gate` from its metric and condition texts; :class:`GateSyntaxError` if either is bad."""
    parsed = parse_metric(metric)
    if not isinstance(delay, int | float) or isinstance(delay, bool) or not math.isfinite(delay) or delay < 0:
        raise GateSyntaxError(f"delay must be a non-negative number of seconds, got {delay!r}")
    return Gate(parsed, parse_condition(condition, parsed.kind), bool(abort_on_fail), float(delay))


IMPLICIT_GATES: Final[tuple[tuple[str, str], ...]] = (
    ("failed", "== 0"),
    ("expired", "== 0"),
    ("lost", "== 0"),
    ("wrong", "== 0"),
    ("in_flight", "== 0"),
    ("locust.failures", "== 0"),
)


def implicit_gates(with_locust: bool = True) -> tuple[Gate, ...]:
    """The gates of a scenario without ``[gates]``: nothing failed, expired, was lost or wrong, nothing
    was left in flight, and (*with_locust*) Locust counted no failed request."""
    return tuple(
        Gate(parsed.metric, parsed.condition, implicit=True)
        for metric, condition in IMPLICIT_GATES
        if with_locust or not metric.startswith("locust.")
        for parsed in (parse_gate(metric, condition),)
    )


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


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
    *checks* the callers' checked results per function (:mod:`loadgen.core.caller`), if any.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        duration_s: float,
        locust: LocustTotals | None = None,
        checks: Mapping[str, FunctionChecks] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.duration_s = duration_s
        self.locust = locust
        self.checks = checks
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
            first, second = _FAMILY_LABELS[family]
            wanted = dict(labels)
            if family == "rpc":
                wanted.setdefault("rpc", "Dispatch")
            a_want, b_want = wanted.get(first), wanted.get(second)
            if a_want == "*":  # rpc=*: every RPC
                a_want = None
            parts = [
                hist
                for (f, a, b), hist in self.snapshot.histograms.items()
                if f == family and a_want in (None, a) and b_want in (None, b) and hist.count
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
        if name == "accepted":
            return snap.counter(CounterKind.ACCEPTED)
        if name == "lost":
            return snap.counter(CounterKind.LOST)
        if name == "in_flight":
            return snap.gauges.get("in_flight", 0)
        if name in ("completed", "expired"):
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
            errors = self._count("rpc", rpc=rpc or "Dispatch", status="error")
            return _ratio(errors, errors + self._count("rpc", rpc=rpc or "Dispatch", status="ok"))
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


def _shown(kind: MetricKind, value: float, condition: str) -> str:
    """A ratio in the form its condition uses (fraction or percentage); anything else by :func:`format_value`."""
    if kind == "ratio" and "%" not in condition and not math.isnan(value):
        return f"{value:.4g}"
    return format_value(kind, value)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's verdict: ``observed`` is the metric's value (None: no data), ``message`` says it all."""

    metric: str
    condition: str
    observed: float | None
    passed: bool
    message: str
    kind: MetricKind = "count"
    abort_on_fail: bool = False
    observed_text: str = ""  # the observed value for people: "212ms", "0.5%", "no data"
    implicit: bool = False  # applied because the scenario has no [gates]

    def __post_init__(self) -> None:
        if not self.observed_text:
            value = math.nan if self.observed is None else self.observed
            object.__setattr__(self, "observed_text", _shown(self.kind, value, self.condition))

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "condition": self.condition,
            "observed": self.observed,
            "observed_text": self.observed_text,
            "kind": self.kind,
            "passed": self.passed,
            "abort_on_fail": self.abort_on_fail,
            "implicit": self.implicit,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateResult:
        """Inverse of :meth:`to_json` (for reports built from a ``summary.json``)."""
        observed = data.get("observed")
        return cls(
            metric=str(data["metric"]),
            condition=str(data["condition"]),
            observed=None if observed is None else float(observed),
            passed=bool(data["passed"]),
            message=str(data.get("message", "")),
            kind=data.get("kind", "count"),
            abort_on_fail=bool(data.get("abort_on_fail", False)),
            observed_text=str(data.get("observed_text", "")),
            implicit=bool(data.get("implicit", False)),
        )


def _judge(gate: Gate, metrics: Metrics) -> GateResult:
    value = metrics(gate.metric)
    kind = gate.metric.kind
    tag = "implicit gate (the scenario has no [gates]): " if gate.implicit else ""
    implicit = gate.implicit
    if math.isnan(value):
        message = f"{tag}{gate.metric}: no data (nothing was recorded in its scope), expected {gate.condition}"
        return GateResult(
            str(gate.metric), str(gate.condition), None, False, message, kind, gate.abort_on_fail, implicit=implicit
        )
    passed = gate.condition.holds(value)
    shown = _shown(kind, value, gate.condition.text)
    message = (
        f"{tag}{gate.metric} = {shown} ({gate.condition}): passed"
        if passed
        else f"{tag}{gate.metric} = {shown}, expected {gate.condition}"
    )
    return GateResult(
        str(gate.metric), str(gate.condition), value, passed, message, kind, gate.abort_on_fail, implicit=gate.implicit
    )


def evaluate(
    gates: Iterable[Gate],
    snapshot: Snapshot,
    duration_s: float,
    locust: LocustTotals | None = None,
    checks: Mapping[str, FunctionChecks] | None = None,
) -> list[GateResult]:
    """Judge every gate against *snapshot* (the run's final statistics, *duration_s* long) and *checks*."""
    metrics = Metrics(snapshot, duration_s, locust, checks)
    return [_judge(gate, metrics) for gate in gates]


def abort_check(
    gates: Iterable[Gate],
    snapshot: Snapshot,
    elapsed_s: float,
    locust: LocustTotals | None = None,
    checks: Mapping[str, FunctionChecks] | None = None,
) -> list[GateResult]:
    """During a run: the ``abort_on_fail`` gates, past their ``delay``, that fail on the data so far.

    *snapshot* is cumulative since the start, *elapsed_s* the time since then. A gate
    without data yet does not abort. A non-empty result means: stop the run.
    """
    metrics = Metrics(snapshot, elapsed_s, locust, checks)
    failing = []
    for gate in gates:
        if gate.abort_on_fail and elapsed_s >= gate.delay:
            result = _judge(gate, metrics)
            if result.observed is not None and not result.passed:
                failing.append(result)
    return failing


def exit_code(results: Iterable[GateResult], *, run_failed: bool = False) -> int:
    """:data:`EXIT_RUN_FAILED` if *run_failed*, else :data:`EXIT_GATE_FAILED` if a gate failed, else 0."""
    if run_failed:
        return EXIT_RUN_FAILED
    return EXIT_OK if all(result.passed for result in results) else EXIT_GATE_FAILED


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def write_gates_json(results: Sequence[GateResult], path: str | Path) -> None:
    """Write ``{"passed": bool, "failed": n, "gates": [...]}`` to *path*."""
    document = {
        "passed": all(result.passed for result in results),
        "failed": sum(not result.passed for result in results),
        "gates": [result.to_json() for result in results],
    }
    Path(path).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def write_junit(results: Sequence[GateResult], path: str | Path, suite_name: str, duration_s: float = 0.0) -> None:
    """Write a JUnit XML report to *path*: one ``testcase`` per gate, ``failure`` for a failed one."""
    failures = sum(not result.passed for result in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", {"name": suite_name, **counts, "time": f"{duration_s:.3f}"})
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts, "time": f"{duration_s:.3f}"})
    for result in results:
        name = ("implicit: " if result.implicit else "") + f"{result.metric} {result.condition}"
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": name, "time": "0"})
        if not result.passed:
            kind = "NoData" if result.observed is None else "GateFailed"
            failure = ET.SubElement(case, "failure", {"message": result.message, "type": kind})
            failure.text = f"{result.message}\nobserved: {result.observed_text}\ncondition: {result.condition}\n"
        out = ET.SubElement(case, "system-out")
        out.text = f"observed: {result.observed_text}"
    ET.indent(root)
    ET.ElementTree(root).write(Path(path), encoding="utf-8", xml_declaration=True)
