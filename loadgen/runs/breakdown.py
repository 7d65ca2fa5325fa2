"""Where root calls' time went, per function (pure): the engine's phases of accepted → end, resumes and
children per call, coroutine state per resume, from a snapshot's ``breakdown``, ``resumes``, ``children``
and ``state_bytes`` histograms (:mod:`loadgen.core.scheduler` defines the phases).

Each root call's four phases add up to its own ``e2e`` time (each rounded to the µs), so per function
the phases' means add up to the mean ``e2e`` time; :attr:`FunctionBreakdown.gap` says how far they are
apart (a fraction of the mean ``e2e``), which ``summary.json`` and the report show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadgen.core.stats import HistogramSnapshot, Snapshot
from loadgen.core.stats.snapshot import BREAKDOWN_PARTS
from loadgen.core.units import format_latency
from loadgen.runs.metrics import Metrics

__all__ = ["FunctionBreakdown", "breakdown_lines", "breakdowns", "breakdowns_json"]

_QS = (50.0, 90.0, 99.0)


@dataclass(frozen=True, slots=True)
class FunctionBreakdown:
    """One function's root calls: their e2e histogram, one histogram per phase, and the call shape."""

    function: str
    e2e: HistogramSnapshot
    parts: Mapping[str, HistogramSnapshot]
    resumes: HistogramSnapshot | None
    children: HistogramSnapshot | None
    state_bytes: HistogramSnapshot | None

    @property
    def calls(self) -> int:
        return self.e2e.count

    def mean(self, part: str) -> float:
        """The mean µs per root call in *part*."""
        hist = self.parts.get(part)
        return hist.mean if hist is not None and hist.count else 0.0

    @property
    def phases_mean(self) -> float:
        """The sum of the phases' means (µs): should equal the mean e2e time."""
        return sum(self.mean(part) for part in BREAKDOWN_PARTS)

    @property
    def gap(self) -> float:
        """``|phases_mean - e2e mean| / e2e mean`` (0 when the e2e mean is 0)."""
        total = self.e2e.mean
        return abs(self.phases_mean - total) / total if total > 0 else 0.0

    def share(self, part: str) -> float:
        """*part*'s fraction of the mean e2e time."""
        total = self.e2e.mean
        return self.mean(part) / total if total > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "e2e_mean_us": self.e2e.mean,
            "phases_mean_us": self.phases_mean,
            "gap": self.gap,
            "phases": {part: _stats(self.parts.get(part)) | {"share": self.share(part)} for part in BREAKDOWN_PARTS},
            "resumes": _stats(self.resumes),
            "children": _stats(self.children),
            "state_bytes": _stats(self.state_bytes),
        }


def _stats(hist: HistogramSnapshot | None) -> dict[str, Any]:
    if hist is None or not hist.count:
        return {"count": 0, "mean": 0.0, **{f"p{q:g}": 0.0 for q in _QS}, "max": 0}
    values = hist.percentiles(_QS)
    return {"count": hist.count, "mean": hist.mean, **{f"p{q:g}": values[q] for q in _QS}, "max": hist.max}


def breakdowns(snapshot: Snapshot) -> list[FunctionBreakdown]:
    """Per function with root calls whose phases were recorded, by name."""
    metrics = Metrics(snapshot, 1.0)
    names = sorted({a for f, a, _ in snapshot.histograms if f == "breakdown"})
    out = []
    for name in names:
        scope = (("function", name),)
        e2e = metrics.histogram("e2e", scope)
        if e2e is None:
            continue
        parts = {part: h for part in BREAKDOWN_PARTS if (h := snapshot.histograms.get(("breakdown", name, part)))}
        out.append(
            FunctionBreakdown(
                name,
                e2e,
                parts,
                metrics.histogram("resumes", scope),
                metrics.histogram("children", scope),
                metrics.histogram("state_bytes", scope),
            )
        )
    return out


def breakdowns_json(snapshot: Snapshot) -> dict[str, Any]:
    """``summary.json``'s ``breakdown``: ``{function: FunctionBreakdown.to_json()}``."""
    return {b.function: b.to_json() for b in breakdowns(snapshot)}


def breakdown_lines(snapshot: Snapshot) -> list[str]:
    """The terminal's view: per function, the mean root call and the share of each phase in it."""
    lines = []
    for b in breakdowns(snapshot):
        shares = " + ".join(
            f"{part} {format_latency(b.mean(part))} ({100 * b.share(part):.0f}%)"
            for part in BREAKDOWN_PARTS
            if b.mean(part) > 0
        )
        extra = ""
        if b.resumes is not None and b.resumes.max:
            extra = f"; resumes {b.resumes.mean:.2g}/call, children {b.children.mean if b.children else 0:.2g}/call"
        lines.append(f"  {b.function}: {format_latency(b.e2e.mean)} = {shares or 'nothing'}{extra}")
    return lines
