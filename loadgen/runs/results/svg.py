"""Charts for ``report.html``: hand-written inline SVG (no plotting library), and the ones a run's time series draws."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from loadgen.runs.metrics import format_value

__all__ = ["PERCENTILE_AXIS", "RATE_AXIS", "TIME_AXIS", "Line", "XAxis", "run_charts", "svg_chart"]


_PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F", "#444444")


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    points: Sequence[tuple[float, float | None]]
    dashed: bool = False


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = max(span, 1e-12) / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * magnitude * (1 + 1e-9):
            return m * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _seconds_text(seconds: float) -> str:
    if seconds < 60 or seconds % 60:
        if seconds >= 60:
            return f"{int(seconds // 60)}m{seconds % 60:g}s"
        return f"{seconds:g}s"
    if seconds < 3600 or seconds % 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def _time_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / step <= 8:
            return float(step)
    return _nice_step(span, 8)


def _number_text(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


@dataclass(frozen=True)
class XAxis:
    """What a chart's x values are: where each goes across (*position*: ``(x, x_max)`` → 0..1), the
    *ticks* (``x_max`` → ``[(x, label)]``), the *label* of a hover column, and the axis *title*."""

    position: Callable[[float, float], float]
    ticks: Callable[[float], list[tuple[float, str]]]
    label: Callable[[float], str]
    title: str = ""


def _time_ticks(x_max: float) -> list[tuple[float, str]]:
    step = _time_step(x_max)
    return [(i * step, _seconds_text(i * step)) for i in range(int(x_max / step * (1 + 1e-9)) + 1)]


TIME_AXIS: Final = XAxis(lambda x, x_max: x / x_max, _time_ticks, lambda x: f"t = {_seconds_text(round(x, 1))}")
"""Seconds since the start (the charts over time)."""


def _linear_ticks(x_max: float) -> list[tuple[float, str]]:
    step = _nice_step(x_max)
    return [(i * step, _number_text(i * step)) for i in range(int(x_max / step * (1 + 1e-9)) + 1)]


RATE_AXIS: Final = XAxis(
    lambda x, x_max: x / x_max, _linear_ticks, lambda x: f"offered {x:g} calls/s", "offered rate, calls/s"
)
"""An offered arrival rate (the capacity search's knee charts)."""


def _nines(q: float) -> float:
    """How far into the tail percentile *q* is: log10(1 / (1 - q/100)) (p90 → 1, p99 → 2, p99.9 → 3)."""
    return math.log10(1.0 / max(1.0 - q / 100.0, 1e-12))


def _percentile_ticks(q_max: float) -> list[tuple[float, str]]:
    ticks = [(0.0, "0%")]
    nines = 1
    while nines <= _nines(q_max) + 1e-9:
        q = 100.0 * (1.0 - 10.0**-nines)
        ticks.append((q, f"{round(q, nines):g}%"))
        nines += 1
    return ticks


PERCENTILE_AXIS: Final = XAxis(
    lambda q, q_max: _nines(q) / max(_nines(q_max), 1e-9),
    _percentile_ticks,
    lambda q: f"p{q:.4g}",
    "percentile (log scale: 1/(1 - q))",
)
"""Percentiles, log-scaled as HdrHistogram's percentile-distribution plots draw them."""


def svg_chart(
    title: str,
    lines: Sequence[Line],
    *,
    y_label: str,
    y_text: Callable[[float], str] = _number_text,
    hover_text: Callable[[float], str] | None = None,
    width: int = 880,
    height: int = 260,
    x_axis: XAxis = TIME_AXIS,
) -> str:
    """A line chart as an inline ``<svg>``: *x_axis* across (default: time in s), *y_label* up; gaps
    where a value is None.

    Hovering over a column shows every line's value there (SVG ``<title>``, no script).
    """
    hover = hover_text or y_text
    left, right, top, bottom = 64, 16, 34, 46 if x_axis.title else 34
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for line in lines for x, _ in line.points]
    ys = [y for line in lines for _, y in line.points if y is not None]
    x_max = max(xs, default=1.0) or 1.0
    y_top = max(ys, default=0.0)
    y_step = _nice_step(y_top * 1.05 if y_top > 0 else 1.0)
    y_max = y_step * max(math.ceil(y_top * 1.05 / y_step), 1) if y_top > 0 else y_step * 5

    def px(x: float) -> float:
        return left + plot_w * x_axis.position(x, x_max)

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_max)

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{html.escape(title)}">',
        f"<title>{html.escape(title)}</title>",
        f'<text class="chart-title" x="{left}" y="18">{html.escape(title)}</text>',
    ]
    # Grid and y labels.
    tick = 0.0
    while tick <= y_max * (1 + 1e-9):
        gy = py(tick)
        out.append(f'<line class="grid" x1="{left}" y1="{gy:.1f}" x2="{width - right}" y2="{gy:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{y_text(tick)}</text>')
        tick += y_step
    out.append(
        f'<text class="axis-label" transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)"'
        f' text-anchor="middle">{html.escape(y_label)}</text>'
    )
    # x ticks.
    for tick, text in x_axis.ticks(x_max):
        x = px(tick)
        out.append(f'<line class="xtick" x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 17}" text-anchor="middle">{html.escape(text)}</text>'
        )
    if x_axis.title:
        out.append(
            f'<text class="axis-label" x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
            f"{html.escape(x_axis.title)}</text>"
        )
    out.append(f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}"/>')
    if not ys:
        out.append(
            f'<text class="empty" x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle">'
            "no data</text>"
        )
    # Lines, with gaps.
    for line in lines:
        parts: list[str] = []
        pen_down = False
        for x, y in line.points:
            if y is None:
                pen_down = False
                continue
            parts.append(f"{'L' if pen_down else 'M'}{px(x):.1f} {py(y):.1f}")
            pen_down = True
        if not parts:
            continue
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        out.append(
            f'<path class="line" d="{" ".join(parts)}" stroke="{line.color}"{dash}>'
            f"<title>{html.escape(line.label)}</title></path>"
        )
        if len(line.points) <= 120:  # markers where they stay readable
            for x, y in line.points:
                if y is not None:
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{line.color}"/>')
    # Hover columns: one per x, listing every line's value.
    columns = sorted({x for line in lines for x, _ in line.points})
    by_x = [dict(line.points) for line in lines]
    for i, x in enumerate(columns):
        x0 = (px(columns[i - 1]) + px(x)) / 2 if i else left
        x1 = (px(x) + px(columns[i + 1])) / 2 if i + 1 < len(columns) else px(x_max)
        values = []
        for line, lookup in zip(lines, by_x, strict=True):
            value = lookup.get(x)
            values.append(f"{line.label}: {'—' if value is None else hover(value)}")
        label = html.escape(f"{x_axis.label(x)}\n" + "\n".join(values))
        out.append(
            f'<rect class="hover" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1):.1f}" height="{plot_h}">'
            f"<title>{label}</title></rect>"
        )
    # Legend, top right.
    x = width - right
    for line in reversed(lines):
        text_w = 8 * len(line.label) + 4  # generous: 12px text, capitals included
        x -= text_w + 22
        out.append(f'<rect x="{x}" y="10" width="14" height="4" fill="{line.color}"/>')
        out.append(f'<text class="legend" x="{x + 18}" y="16">{html.escape(line.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _ms_tick(us: float) -> str:
    """An axis tick in ms (``1k`` for 1000): a tick label, not a latency (:func:`format_value` is that)."""
    return _number_text(us / 1000)


def run_charts(series: Sequence[Mapping[str, Any]]) -> list[str]:
    records = [r for r in series if "error" not in r]
    if not records:
        return []
    t = [float(r["t"]) for r in records]

    def pts(values: Iterable[float | None]) -> list[tuple[float, float | None]]:
        return list(zip(t, values, strict=True))

    charts = []
    callers = any("latency_us" in r for r in records)
    if callers:
        caller_lines = [
            Line(name, color, pts(r.get("latency_us", {}).get(name) for r in records))
            for name, color in (("p50", _PALETTE[2]), ("p90", _PALETTE[1]), ("p99", _PALETTE[3]), ("max", _PALETTE[5]))
        ]
        caller_lines.append(
            Line("engine e2e p99", _PALETTE[7], pts(r["e2e_us"].get("p99") for r in records), dashed=True)
        )
        charts.append(
            svg_chart(
                "Latency as callers saw it, from the intended start (calls whose result came in the interval);"
                " dashed: the engine's e2e p99 (accepted → end)",
                caller_lines,
                y_label="ms",
                y_text=_ms_tick,
                hover_text=lambda us: format_value("latency", us),
            )
        )
    latency_lines = [
        Line(name, color, pts(r["e2e_us"].get(name) for r in records))
        for name, color in (("p50", _PALETTE[2]), ("p90", _PALETTE[1]), ("p99", _PALETTE[3]))
    ]
    charts.append(
        svg_chart(
            "Engine end-to-end latency per interval (root calls that ended in it, from their acceptance)",
            latency_lines,
            y_label="ms",
            y_text=_ms_tick,
            hover_text=lambda us: format_value("latency", us),
        )
    )
    throughput = [Line("completed/s", _PALETTE[0], pts(r["completed_per_s"] for r in records))]
    if any(r["failed_per_s"] for r in records):
        throughput.append(Line("failed/s", _PALETTE[3], pts(r["failed_per_s"] for r in records)))
    throughput.append(Line("accepted/s", _PALETTE[7], pts(r["accepted_per_s"] for r in records), dashed=True))
    charts.append(
        svg_chart("Throughput: calls per second", throughput, y_label="calls/s", hover_text=lambda v: f"{v:.1f}/s")
    )
    statuses = sorted({status for r in records for status in r["retries_per_s"]})
    retry_lines = [
        Line(status, _PALETTE[(i + 1) % len(_PALETTE)], pts(r["retries_per_s"].get(status, 0.0) for r in records))
        for i, status in enumerate(statuses)
    ]
    charts.append(
        svg_chart("Retries per second, by status", retry_lines, y_label="retries/s", hover_text=lambda v: f"{v:.1f}/s")
    )
    if callers:
        lag_lines = [
            Line("arrival/task lag p99", _PALETTE[3], pts(r.get("lag_us", {}).get("p99") for r in records)),
            Line("event loop lag p99", _PALETTE[1], pts(r.get("loop_lag_us", {}).get("p99") for r in records)),
            Line(
                "event loop lag max",
                _PALETTE[5],
                pts(r.get("loop_lag_us", {}).get("max") for r in records),
                dashed=True,
            ),
        ]
        charts.append(
            svg_chart(
                "Load generator lag: how far behind schedule the Locust processes ran",
                lag_lines,
                y_label="ms",
                y_text=_ms_tick,
                hover_text=lambda us: format_value("latency", us),
            )
        )
        if any(r.get("late_per_s") or r.get("dropped_per_s") for r in records):
            arrivals = [
                Line("late/s", _PALETTE[1], pts(r.get("late_per_s") for r in records)),
                Line("dropped/s", _PALETTE[3], pts(r.get("dropped_per_s") for r in records)),
            ]
            charts.append(
                svg_chart(
                    "Late and dropped arrivals per second", arrivals, y_label="/s", hover_text=lambda v: f"{v:.1f}/s"
                )
            )
    if any(r["in_flight"] for r in records):
        flight = [Line("in flight", _PALETTE[4], pts(float(r["in_flight"]) for r in records))]
        charts.append(
            svg_chart("Root calls in flight in the engine", flight, y_label="calls", hover_text=lambda v: f"{v:.0f}")
        )
    return charts
