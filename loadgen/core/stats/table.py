"""A snapshot as a text table for people (``loadgen serve``'s final statistics, ``loadgen stats``, ``loadgen run``)."""

from __future__ import annotations

from collections.abc import Sequence

from loadgen.core.counters import CounterKind
from loadgen.core.stats.hdr import DEFAULT_PERCENTILES
from loadgen.core.stats.snapshot import FAMILIES, Snapshot
from loadgen.core.units import format_latency

__all__ = ["render"]


def render(self: Snapshot, qs: Sequence[float] = DEFAULT_PERCENTILES) -> str:
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
    lines = [f"shards: {len(self.per_shard)} ({', '.join(_shard_labels(self)) or 'none'})"]
    if len(rows) > 1:
        lines.append("latency in ms")
        for row in rows:
            left = [cell.ljust(w) for cell, w in zip(row[:3], widths[:3], strict=True)]
            right = [cell.rjust(w) for cell, w in zip(row[3:], widths[3:], strict=True)]
            lines.append("  ".join(left + right).rstrip())
    else:
        lines.append("no latencies recorded")
    lines.append("counters: " + _counter_line(self))
    lines.append("gauges: " + ("  ".join(f"{k} {v}" for k, v in sorted(self.gauges.items())) or "none"))
    lines.append("accounting: " + str(self.accounting()))
    return "\n".join(lines)

def _shard_labels(self: Snapshot) -> list[str]:
    return [name + (" (crashed)" if self.per_shard[name].crashed else "") for name in self.shards]

def _counter_line(self: Snapshot) -> str:
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
