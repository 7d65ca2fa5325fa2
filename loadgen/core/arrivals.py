"""Arrival schedules of the open model: stages of a target rate → intended arrival times.

Pure (no Locust, no gevent): importable anywhere. See :mod:`loadgen.locust.openmodel`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ArrivalSchedule", "Stage"]


@dataclass(frozen=True)
class Stage:
    """*duration* seconds at *rate* arrivals per second (ramping linearly from the previous rate if *ramp*)."""

    duration: float
    rate: float
    ramp: bool = False

    def __post_init__(self) -> None:
        if not self.duration > 0 or not self.rate >= 0 or math.isinf(self.rate):
            raise ValueError(f"a stage needs duration > 0 and a finite rate >= 0, not {self}")


class ArrivalSchedule:
    """Intended arrival times (seconds from the start) of one process's share of *stages*.

    The cumulative number of arrivals of all processes, ``C(t)``, is the integral of the
    rate. Process *index* of *count* takes the arrivals where ``C(t)`` reaches
    ``k·count + index`` (evenly spaced), or draws its gaps in ``C`` from an exponential
    distribution of mean *count* (Poisson at ``rate / count``). Arrivals fall in
    ``[0, duration)``: evenly spaced, all processes together make ``ceil(C(duration))``.
    """

    def __init__(
        self, stages: Sequence[Stage], index: int = 0, count: int = 1, poisson: bool = False, seed: int | None = None
    ) -> None:
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"process {index} of {count}?")
        self._segments: list[tuple[float, float, float, float, float]] = []  # start, duration, r0, r1, C(start)
        start = cumulative = previous = 0.0
        for stage in stages:
            r0 = previous if stage.ramp else stage.rate
            self._segments.append((start, stage.duration, r0, stage.rate, cumulative))
            cumulative += (r0 + stage.rate) / 2 * stage.duration
            start += stage.duration
            previous = stage.rate
        self.duration = start
        self.total = cumulative  # C(end): expected arrivals of all processes
        self._count = count
        self._poisson = poisson
        self._random = random.Random(seed)
        self._next = float(index) if not poisson else self._gap()
        self._segment = 0

    def _gap(self) -> float:
        return self._random.expovariate(1.0) * self._count

    def __iter__(self) -> ArrivalSchedule:
        return self

    def __next__(self) -> float:
        """The next intended time; ``StopIteration`` after the last stage."""
        target = self._next
        while self._segment < len(self._segments):
            start, duration, r0, r1, c0 = self._segments[self._segment]
            c1 = c0 + (r0 + r1) / 2 * duration
            if target < c1:
                offset = _solve(target - c0, r0, (r1 - r0) / duration)
                self._next = target + (self._gap() if self._poisson else self._count)
                return start + min(offset, duration)
            self._segment += 1
        raise StopIteration


def _solve(arrivals: float, r0: float, slope: float) -> float:
    """The time *s* ≥ 0 at which ``r0·s + slope·s²/2`` reaches *arrivals* (stable quadratic root)."""
    if arrivals <= 0:
        return 0.0
    root = math.sqrt(max(r0 * r0 + 2.0 * slope * arrivals, 0.0))
    denominator = r0 + root
    return 2.0 * arrivals / denominator if denominator > 0 else 0.0
