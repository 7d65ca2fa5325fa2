"""Capacity search, the pure part: which arrival rate to try next, when to stop, what was found.

``[load] model = "search"`` (or ``loadgen run --find-capacity``) runs the scenario's workload as
steps of the open model, one arrival rate per step, and judges each step by the scenario's
gates on that step's window alone. :class:`CapacitySearch` decides the rates:

1. **Doubling.** The first step offers ``start_rate``; each step that passes doubles the rate
   (never above ``max_rate``, the ceiling) until a step fails. A pass at the ceiling ends the
   search: the capacity is at least ``max_rate``.
2. **Halving.** When the very first step fails, the rate halves until a step passes (never
   below ``min_rate``; a failure there ends the search: no rate passed).
3. **Bisection.** Between the highest passing rate and the lowest failing one, the midpoint,
   until they are within ``precision`` of the passing one (``high - low <= precision * low``).
4. **Retries.** With ``retries`` > 0, a failing step is run again at the same rate, up to that
   many times; the rate fails only if every try fails (one pass is a pass), so that a noisy
   machine's hiccup does not set the capacity.
5. **Limits.** At most ``max_steps`` steps.

The capacity is the highest rate that passed; ``failed_gate`` is the gate that failed at the
lowest failing rate above it. A step that clearly breaks ends early (:func:`broken`): an
``abort_on_fail`` gate failed on its window, an arrival was dropped, or the calls in flight
reached the ceiling of the load generator's executors; it counts as a failed step.

No IO: :mod:`loadgen.runs.search` runs the steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from loadgen.core.units import format_latency
from loadgen.runs.gates import GateResult

__all__ = [
    "STOP_REASONS",
    "CapacityResult",
    "CapacitySearch",
    "SearchSettings",
    "StepVerdict",
    "broken",
    "judged",
    "knee_table",
]

StopReason = Literal["precision", "ceiling", "floor", "max_steps", "interrupted", "run_failed"]
STOP_REASONS: Final[Mapping[str, str]] = {
    "precision": "the highest passing and the lowest failing rate are within the precision",
    "ceiling": "the step at max_rate passed: the capacity is at least max_rate",
    "floor": "the step at min_rate failed: no rate passed",
    "max_steps": "max_steps steps were run",
    "interrupted": "the search was interrupted",
    "run_failed": "a step could not be run",
}


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """``[load.search]``: every key has a default, so ``model = "search"`` alone works.

    Rates are arrival rates in calls per second (for all Locust processes together);
    ``step`` and ``warmup`` are seconds; ``precision`` a fraction (0.05: 5%);
    ``abort_in_flight`` ``None`` means the load's ``max_in_flight`` (its executors).
    """

    start_rate: float = 10.0
    max_rate: float = 100_000.0
    min_rate: float = 1.0
    precision: float = 0.05
    step: float = 10.0
    warmup: float = 4.0
    max_steps: int = 20
    min_capacity: float | None = None
    abort_in_flight: int | None = None
    retries: int = 0
    """A failing step is run again up to this many times; its rate fails only if every try fails."""

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.start_rate <= self.max_rate or math.isinf(self.max_rate):
            raise ValueError(f"need 0 < min_rate <= start_rate <= max_rate < inf, not {self}")
        if not 0 < self.precision < 1:
            raise ValueError(f"precision must be between 0 and 1 (exclusive), not {self.precision}")
        if not self.step > 0 or not self.warmup >= 0 or self.max_steps < 1 or self.retries < 0:
            raise ValueError(f"need step > 0, warmup >= 0, max_steps >= 1 and retries >= 0, not {self}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """One judged step: its offered *rate*, whether its gates passed, and what it measured.

    ``failed_gate`` is the first gate that failed (``"latency.p99 < 50ms"``) or, for a step cut
    short, the check that broke it; ``message`` says why in words; ``aborted`` is set when the
    step ended early. ``measured`` holds the step's numbers (throughput, latency percentiles, ...)
    for the reports, ``gates`` every gate's result on the step's window.
    """

    rate: float
    passed: bool
    failed_gate: str | None = None
    message: str = ""
    aborted: bool = False
    measured: Mapping[str, Any] = field(default_factory=dict)
    gates: Sequence[GateResult] = ()

    def to_json(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "rate": self.rate,
            "verdict": "pass" if self.passed else "fail",
            "passed": self.passed,
            "failed_gate": self.failed_gate,
            "message": self.message,
            "aborted": self.aborted,
            **self.measured,
            "gates": [result.to_json() for result in self.gates],
        }


def judged(rate: float, results: Sequence[GateResult], measured: Mapping[str, Any] | None = None) -> StepVerdict:
    """The verdict of a step that ran its whole window: passed when every gate passed."""
    failing = [result for result in results if not result.passed]
    if not failing:
        return StepVerdict(rate, True, None, "every gate passed", False, dict(measured or {}), tuple(results))
    first = failing[0]
    return StepVerdict(
        rate, False, f"{first.metric} {first.condition}", first.message, False, dict(measured or {}), tuple(results)
    )


def broken(
    abort_failures: Sequence[GateResult], dropped: int, in_flight: int, in_flight_limit: int
) -> tuple[str, str] | None:
    """Whether a step under way clearly breaks: ``(check, message)``, or ``None`` to go on.

    *abort_failures* are the ``abort_on_fail`` gates failing on the step's window so far
    (:func:`~loadgen.runs.gates.abort_check`), *dropped* the arrivals dropped in it, *in_flight*
    the calls in flight now and *in_flight_limit* the most the load generator can keep in flight.
    """
    if abort_failures:
        first = abort_failures[0]
        return f"{first.metric} {first.condition}", f"abort_on_fail gate failed: {first.message}"
    if dropped > 0:
        return "dropped == 0", f"{dropped} arrival(s) dropped: the load generator could not keep the schedule"
    if in_flight >= in_flight_limit:
        return (
            f"in_flight < {in_flight_limit}",
            f"{in_flight} calls in flight, the load generator's limit (max_in_flight {in_flight_limit}):"
            " arrivals queue up, the endpoint does not keep up",
        )
    return None


@dataclass(frozen=True, slots=True)
class CapacityResult:
    """What a search found: ``rate`` the highest passing rate (``None``: none passed), the lowest
    failing step above it (``failed``), why the search stopped, and whether ``min_capacity`` is met."""

    rate: float | None
    failed: StepVerdict | None
    stop: StopReason
    steps: tuple[StepVerdict, ...]
    settings: SearchSettings

    @property
    def meets_minimum(self) -> bool:
        """A rate passed, and it is at least ``min_capacity`` when one is set."""
        if self.rate is None:
            return False
        minimum = self.settings.min_capacity
        return minimum is None or self.rate >= minimum

    @property
    def failed_gate(self) -> str | None:
        return self.failed.failed_gate if self.failed is not None else None

    def text(self) -> str:
        """One sentence for people: the capacity, and what broke above it."""
        if self.rate is None:
            lowest = min((s.rate for s in self.steps), default=self.settings.start_rate)
            why = f": {self.failed.message}" if self.failed is not None else ""
            return f"no rate passed (the lowest tried, {lowest:g} calls/s, failed{why})"
        found = f"capacity {self.rate:g} calls/s"
        if self.failed is None:
            return f"{found} (the highest rate tried; {STOP_REASONS[self.stop]})"
        return f"{found}; at {self.failed.rate:g} calls/s {self.failed.failed_gate} failed: {self.failed.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "failed_gate": self.failed_gate,
            "failed_rate": self.failed.rate if self.failed is not None else None,
            "failed_message": self.failed.message if self.failed is not None else None,
            "stop": self.stop,
            "stop_text": STOP_REASONS[self.stop],
            "min_capacity": self.settings.min_capacity,
            "meets_min_capacity": self.meets_minimum,
            "text": self.text(),
            "settings": self.settings.to_json(),
            "steps": [step.to_json(i + 1) for i, step in enumerate(self.steps)],
        }


class CapacitySearch:
    """The search's state: :meth:`next_rate` the rate of the next step (``None``: done), :meth:`record`
    a step's verdict, :meth:`result` what was found (see the module's documentation)."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.steps: list[StepVerdict] = []
        self._stop: StopReason | None = None

    @property
    def low(self) -> float | None:
        """The highest rate that passed below the lowest failing one."""
        high = self.high
        passed = [s.rate for s in self.steps if s.passed and (high is None or s.rate < high)]
        return max(passed, default=None)

    @property
    def high(self) -> float | None:
        """The lowest rate that failed (every one of its ``1 + retries`` tries)."""
        passed = {s.rate for s in self.steps if s.passed}
        tries = 1 + self.settings.retries
        failed = [s.rate for s in self.steps if not s.passed and s.rate not in passed]
        return min((rate for rate in failed if failed.count(rate) >= tries), default=None)

    def _retry(self) -> float | None:
        """The last step's rate when it failed and has tries left (no try at that rate passed)."""
        last = self.steps[-1]
        if last.passed or any(s.passed for s in self.steps if s.rate == last.rate):
            return None
        failures = sum(1 for s in self.steps if s.rate == last.rate and not s.passed)
        return last.rate if failures < 1 + self.settings.retries else None

    def stop(self, reason: StopReason) -> None:
        """End the search now (interrupted, or a step could not run)."""
        self._stop = reason

    def record(self, verdict: StepVerdict) -> None:
        self.steps.append(verdict)

    def next_rate(self) -> float | None:
        """The next step's rate, or ``None`` when the search is over (:meth:`result` says why)."""
        if self._stop is not None:
            return None
        s = self.settings
        if not self.steps:
            return s.start_rate
        again = self._retry()
        if again is not None:
            return self._next(again)
        low, high = self.low, self.high
        if high is None:  # everything passed: double, up to the ceiling
            assert low is not None
            if low >= s.max_rate:
                return self._done("ceiling")
            return self._next(min(low * 2, s.max_rate))
        if low is None:  # everything failed: halve, down to the floor
            if high <= s.min_rate:
                return self._done("floor")
            return self._next(max(high / 2, s.min_rate))
        if high - low <= s.precision * low:
            return self._done("precision")
        return self._next((low + high) / 2)

    def _next(self, rate: float) -> float | None:
        if len(self.steps) >= self.settings.max_steps:
            return self._done("max_steps")
        return rate

    def _done(self, reason: StopReason) -> float | None:
        self._stop = reason
        return None

    def result(self) -> CapacityResult:
        """What the steps so far found (call once :meth:`next_rate` returned ``None``)."""
        low, high = self.low, self.high
        failed = None
        if high is not None:
            failed = [s for s in self.steps if not s.passed and s.rate == high][-1]
        stop = self._stop or "max_steps"
        return CapacityResult(low, failed, stop, tuple(self.steps), self.settings)


def knee_table(steps: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The steps of a ``capacity`` document, by rate: offered rate, verdict, throughput, latency
    percentiles (callers, ms), the gate that failed. The first row is the header."""
    rows = [["step", "rate/s", "verdict", "throughput/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "failed gate"]]
    for step in sorted(steps, key=lambda s: (float(s["rate"]), int(s["index"]))):
        latency = step.get("latency_us") or {}

        def ms(key: str, latency: Mapping[str, Any] = latency) -> str:
            value = latency.get(key)
            return "-" if not latency.get("count") or value is None else format_latency(float(value), "ms", 1)

        verdict = str(step["verdict"]) + (" (early)" if step.get("aborted") else "")
        throughput = step.get("throughput")
        rows.append(
            [
                str(step["index"]),
                f"{float(step['rate']):g}",
                verdict,
                "-" if throughput is None or math.isnan(float(throughput)) else f"{float(throughput):.1f}",
                ms("p50"),
                ms("p90"),
                ms("p99"),
                ms("p99.9"),
                step.get("failed_gate") or "",
            ]
        )
    return rows
