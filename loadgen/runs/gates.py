"""Pass/fail gates on a run's statistics, k6 style: ``"latency.p99" = "< 250ms"``.

A pure module, except for the two writers at the end (:func:`write_gates_json`,
:func:`write_junit`), which write the one file they are given.

A gate is a *metric* and a *condition*. Scenario files (:mod:`loadgen.runs.scenario`)
declare them under ``[gates]``; :func:`evaluate` checks them against the engine's
merged :class:`~loadgen.core.stats.Snapshot` at the end of a run, and
:func:`abort_check` checks the ``abort_on_fail`` ones during the run.
A gate is a *metric* (:mod:`loadgen.runs.metrics`) and a *condition*. Scenario files
(:mod:`loadgen.runs.scenario`) declare them under ``[gates]``; :func:`evaluate` checks them
against the engine's merged :class:`~loadgen.core.stats.Snapshot` at the end of a run, and
:func:`abort_check` checks the ``abort_on_fail`` ones during the run. The CI files
(``gates.json``, JUnit XML) are written by :mod:`loadgen.runs.results.verdicts`.

Implicit gates
--------------
A scenario without ``[gates]`` is judged by :func:`implicit_gates`: no root call failed,
expired, was cancelled by the end of the run, was lost, rejected (a full shard) or wrong (shards run elsewhere: or was
still in flight when the run ended), and Locust saw no failed request; with the callers'
statistics, also that no open-model arrival was dropped. Their results say they are implicit
(``GateResult.implicit``).

Old names
---------
``e2e.*`` is read as ``engine.e2e.*`` (accepted → end, in the engine); its messages say so
and name ``latency.*``, what callers saw.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from loadgen.core.caller import FunctionChecks
from loadgen.core.stats import Snapshot
from loadgen.runs.metrics import (
    ALIASES,
    GateSyntaxError,
    LocustTotals,
    Metric,
    MetricKind,
    Metrics,
    format_value,
    parse_metric,
)

__all__ = [
    "EXIT_GATE_FAILED",
    "EXIT_OK",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "IMPLICIT_GATES",
    "Condition",
    "Gate",
    "GateResult",
    "abort_check",
    "accounting_problems",
    "evaluate",
    "exit_code",
    "implicit_gates",
    "parse_condition",
    "parse_gate",
]

EXIT_OK: Final = 0
EXIT_GATE_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_RUN_FAILED: Final = 3

Op = Literal["<", "<=", ">", ">=", "=="]

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
_CONDITION = re.compile(
    r"\s*(<=|>=|==|<|>)\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(us|µs|μs|ms|s|%)?\s*",
)
_LATENCY_UNITS: Final[dict[str, float]] = {"us": 1.0, "µs": 1.0, "μs": 1.0, "ms": 1_000.0, "s": 1_000_000.0}


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
    ("cancelled", "== 0"),
    ("lost", "== 0"),
    ("rejected", "== 0"),
    ("wrong", "== 0"),
    ("in_flight", "== 0"),
    ("locust.failures", "== 0"),
)


CALLER_IMPLICIT_GATES: Final[tuple[tuple[str, str], ...]] = (("dropped", "== 0"),)


def implicit_gates(with_locust: bool = True, remote: bool = False, with_caller: bool = False) -> tuple[Gate, ...]:
    """The gates of a scenario without ``[gates]``: nothing failed, expired, was cancelled, lost, rejected or wrong,
    (*with_locust*) Locust counted no failed request and (*with_caller*, the callers' statistics are
    there) no open-model arrival was dropped. Local shards cancel what is left at the end, so
    ``in_flight == 0`` is judged only for shards run elsewhere (*remote*), which keep it running."""
    return tuple(
        Gate(parsed.metric, parsed.condition, implicit=True)
        for metric, condition in IMPLICIT_GATES + (CALLER_IMPLICIT_GATES if with_caller else ())
        if with_locust or not metric.startswith("locust.")
        if remote or metric != "in_flight"
        for parsed in (parse_gate(metric, condition),)
    )


def _alias_note(metric: Metric) -> str:
    """For an old family name: what it is read as, and what to gate on instead."""
    new = ALIASES.get(metric.family)
    if new is None:
        return ""
    read_as = new + str(metric).removeprefix(metric.family)
    return (
        f" [{metric.family}.{metric.stat} is the engine's view (accepted → end, excludes time before"
        f" acceptance); read as {read_as}; gate on latency.{metric.stat} for what callers see]"
    )


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
    note = _alias_note(gate.metric)
    if math.isnan(value):
        message = f"{tag}{gate.metric}: no data (nothing was recorded in its scope), expected {gate.condition}{note}"
        return GateResult(
            str(gate.metric), str(gate.condition), None, False, message, kind, gate.abort_on_fail, implicit=implicit
        )
    passed = gate.condition.holds(value)
    shown = _shown(kind, value, gate.condition.text)
    message = (
        f"{tag}{gate.metric} = {shown} ({gate.condition}): passed{note}"
        if passed
        else f"{tag}{gate.metric} = {shown}, expected {gate.condition}{note}"
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
    caller: Snapshot | None = None,
) -> list[GateResult]:
    """Judge every gate against *snapshot* (the engine's final statistics, *duration_s* long), *checks*
    and *caller* (the callers' statistics)."""
    metrics = Metrics(snapshot, duration_s, locust, checks, caller)
    return [_judge(gate, metrics) for gate in gates]


def abort_check(
    gates: Iterable[Gate],
    snapshot: Snapshot,
    elapsed_s: float,
    locust: LocustTotals | None = None,
    checks: Mapping[str, FunctionChecks] | None = None,
    caller: Snapshot | None = None,
) -> list[GateResult]:
    """During a run: the ``abort_on_fail`` gates, past their ``delay``, that fail on the data so far.

    *snapshot* is cumulative since the start, *elapsed_s* the time since then. A gate
    without data yet does not abort. A non-empty result means: stop the run.
    """
    metrics = Metrics(snapshot, elapsed_s, locust, checks, caller)
    failing = []
    for gate in gates:
        if gate.abort_on_fail and elapsed_s >= gate.delay:
            result = _judge(gate, metrics)
            if result.observed is not None and not result.passed:
                failing.append(result)
    return failing


def accounting_problems(final: Snapshot) -> list[str]:
    """What in *final* (a run's last snapshot) makes the run itself failed: an accounting that does
    not balance, or no call accepted at all."""
    accounting = final.accounting()
    problems = []
    if not accounting.balanced:
        problems.append(f"the accounting does not balance: {accounting}")
    if accounting.accepted == 0:
        problems.append("no call was accepted: nothing ran")
    return problems


def exit_code(results: Iterable[GateResult], *, run_failed: bool = False) -> int:
    """:data:`EXIT_RUN_FAILED` if *run_failed*, else :data:`EXIT_GATE_FAILED` if a gate failed, else 0."""
    if run_failed:
        return EXIT_RUN_FAILED
    return EXIT_OK if all(result.passed for result in results) else EXIT_GATE_FAILED
