"""What the shards injected on purpose (``[engine.chaos]``), for ``summary.json`` and the terminal (pure)."""

from __future__ import annotations

from typing import Any

from loadgen.core.chaos import CHAOS_KINDS, Chaos
from loadgen.core.counters import CounterKind
from loadgen.core.stats import Snapshot

__all__ = ["chaos_json", "chaos_text", "injected"]


def injected(snapshot: Snapshot) -> dict[str, int]:
    """``{kind: count}`` of every kind (:data:`~loadgen.core.chaos.CHAOS_KINDS`), 0 when none was injected."""
    counted = snapshot.breakdown(CounterKind.CHAOS)
    return {kind: counted.get(kind, 0) for kind in (*CHAOS_KINDS, *sorted(set(counted) - set(CHAOS_KINDS)))}


def chaos_json(snapshot: Snapshot, chaos: Chaos | None) -> dict[str, Any] | None:
    """``summary.json``'s ``chaos``: the rates asked for and the counts injected; None when chaos was off."""
    counts = injected(snapshot)
    if (chaos is None or not chaos.active) and not any(counts.values()):
        return None
    settings = (
        {
            "duplicate_rate": chaos.duplicate_rate,
            "delay_rate": chaos.delay_rate,
            "delay_s": chaos.delay,
            "reorder_rate": chaos.reorder_rate,
            "partial_rate": chaos.partial_rate,
        }
        if chaos is not None
        else None
    )
    return {"settings": settings, "injected": counts}


def chaos_text(snapshot: Snapshot, chaos: Chaos | None) -> str | None:
    """One line for the end of a run: what was injected (None when chaos was off)."""
    summary = chaos_json(snapshot, chaos)
    if summary is None:
        return None
    counts = summary["injected"]
    parts = [
        f"{counts['duplicated']:,} requests delivered twice"
        f" ({counts['duplicate_failed']:,} of the copies not answered OK)",
        f"{counts['delayed']:,} child results delayed",
        f"{counts['reordered']:,} resumes reordered",
        f"{counts['partial']:,} partial resumes",
    ]
    return "chaos injected: " + ", ".join(parts)
