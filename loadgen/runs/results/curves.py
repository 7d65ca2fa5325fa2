"""Charts for ``report.html`` whose x axis is not time: a capacity search's knee (latency and throughput
against the offered rate) and each function's latency distribution (percentile against latency,
log-scaled as HdrHistogram's plots draw it). Pure: summary documents in, SVG text out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from loadgen.core.stats import HistogramSnapshot, Snapshot
from loadgen.runs.metrics import Metrics, format_value
from loadgen.runs.results.svg import _PALETTE, PERCENTILE_AXIS, RATE_AXIS, Line, _ms_tick, svg_chart

__all__ = ["distribution_charts", "knee_charts", "percentile_curve"]

POINTS_PER_DECADE: Final = 12
"""Points of a distribution curve per "nine" (p0-p90, p90-p99, ...)."""


def knee_charts(capacity: Mapping[str, Any]) -> list[str]:
    """Latency percentiles (as callers saw them) and throughput against the offered rate, one point
    per rate tried (by rate): where latency turns up and throughput stops following the offered rate is
    the knee. Dashed in the throughput chart: throughput = offered rate."""
    by_rate: dict[float, Mapping[str, Any]] = {}
    for step in capacity.get("steps", []):  # a rate tried again (retries): its pass, else its last try
        rate = float(step["rate"])
        if rate not in by_rate or step.get("passed") or not by_rate[rate].get("passed"):
            by_rate[rate] = step
    steps = [by_rate[rate] for rate in sorted(by_rate)]
    if not steps:
        return []

    def latency(step: Mapping[str, Any], key: str) -> float | None:
        summary = step.get("latency_us") or {}
        return float(summary[key]) if summary.get("count") and summary.get(key) is not None else None

    rates = [float(step["rate"]) for step in steps]
    lines = [
        Line(key, color, [(rate, latency(step, key)) for rate, step in zip(rates, steps, strict=True)])
        for key, color in (("p50", _PALETTE[2]), ("p90", _PALETTE[1]), ("p99", _PALETTE[3]), ("p99.9", _PALETTE[5]))
    ]
    found = capacity.get("rate")
    title = "Latency against offered rate (callers, one point per step)"
    if found is not None:
        title += f"; capacity {float(found):g} calls/s"
    charts = [
        svg_chart(
            title,
            lines,
            y_label="ms",
            y_text=_ms_tick,
            hover_text=lambda us: format_value("latency", us),
            x_axis=RATE_AXIS,
        )
    ]
    throughput = [
        Line("throughput", _PALETTE[0], [(r, _number(s.get("throughput"))) for r, s in zip(rates, steps, strict=True)]),
        Line("offered", _PALETTE[7], [(rate, rate) for rate in rates], dashed=True),
    ]
    charts.append(
        svg_chart(
            "Throughput against offered rate (dashed: = offered)",
            throughput,
            y_label="calls/s",
            hover_text=lambda v: f"{v:.1f}/s",
            x_axis=RATE_AXIS,
        )
    )
    return charts


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def percentile_curve(hist: HistogramSnapshot) -> list[tuple[float, float]]:
    """``(percentile, latency µs)`` from p0 into the tail, evenly spaced in "nines" (log of 1/(1-q)),
    as far as the histogram's count resolves (1 - q >= 1/count), and the maximum at the end."""
    if not hist.count:
        return []
    deepest = 1.0 - 1.0 / hist.count if hist.count > 1 else 0.0
    qs: list[float] = []
    k = 0
    while True:
        q = 1.0 - 10.0 ** (-k / POINTS_PER_DECADE)
        if q > deepest:
            break
        qs.append(q * 100.0)
        k += 1
    values = hist.percentiles(qs)
    curve = [(q, values[q]) for q in qs]
    tail_q = 100.0 * (1.0 - 1.0 / (2 * hist.count))  # the maximum, drawn half a call beyond the deepest point
    curve.append((tail_q, float(hist.max)))
    return curve


def distribution_charts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Per function: ``(function, chart)`` of its latency distribution: the callers' latency (when
    recorded), the engine's end-to-end time and the endpoint attempts, each as percentile → latency."""
    try:
        engine = Snapshot.from_json(summary["snapshot"]) if summary.get("snapshot") else None
        callers_json = (summary.get("callers") or {}).get("snapshot")
        callers = Snapshot.from_json(callers_json) if callers_json else None
    except ValueError:
        return []
    if engine is None:
        return []
    metrics = Metrics(engine, 1.0, caller=callers)
    names = sorted({a for f, a, _ in engine.histograms if f in ("e2e", "attempt")})
    charts = []
    for name in names:
        scope = (("function", name),)
        sources: Sequence[tuple[str, str, str]] = (
            ("latency", "callers' latency", _PALETTE[3]),
            ("e2e", "engine e2e", _PALETTE[0]),
            ("attempt", "attempts", _PALETTE[2]),
        )
        lines = []
        for family, label, color in sources:
            hist = metrics.histogram(family, scope)
            if hist is not None and hist.count:
                points: list[tuple[float, float | None]] = list(percentile_curve(hist))
                lines.append(Line(label, color, points))
        if not lines:
            continue
        charts.append(
            (
                name,
                svg_chart(
                    f"{name}: latency by percentile",
                    lines,
                    y_label="ms",
                    y_text=_ms_tick,
                    hover_text=lambda us: format_value("latency", us),
                    x_axis=PERCENTILE_AXIS,
                ),
            )
        )
    return charts
