"""A capacity search in the results: the ``capacity`` object of summary.json, the knee table and charts
in report.html and the terminal, the capacity gate; and each function's HDR percentile-distribution chart."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from loadgen.core.stats import HistogramSnapshot, ShardStats, Snapshot
from loadgen.runs.capacity import CapacitySearch, SearchSettings, judged, knee_table
from loadgen.runs.gates import evaluate, parse_gate
from loadgen.runs.results import build_summary, render_html
from loadgen.runs.results.curves import distribution_charts, knee_charts, percentile_curve
from loadgen.runs.results.svg import PERCENTILE_AXIS, RATE_AXIS, TIME_AXIS
from loadgen.runs.scenario import loads_scenario
from loadgen.runs.search import capacity_gate, print_knee_table

START = datetime(2026, 12, 1, 22, 0, 0, tzinfo=UTC)
GATE = parse_gate("latency.p99", "< 50ms")


def step_snapshots(rate: float) -> tuple[Snapshot, Snapshot]:
    """An engine and a callers' snapshot of a step at *rate*: latency grows past 100/s (the knee)."""
    engine, callers = ShardStats("shard-0"), ShardStats("locust")
    slow = max(1.0, rate / 100.0) ** 3
    for n in range(200):
        seconds = (0.002 + 0.0001 * (n % 50)) * slow
        engine.count_accepted()
        engine.record_call("echo", "completed", "OK", seconds * 0.8)
        engine.record_attempt("echo", "OK", seconds * 0.5)
        callers.record("latency", "echo", "completed", seconds)
    return engine.snapshot(), callers.snapshot()


def searched(capacity: float = 130.0, settings: SearchSettings | None = None) -> dict[str, object]:
    """The ``capacity`` document of a search whose steps are judged by GATE on made-up statistics."""
    state = CapacitySearch(settings or SearchSettings(start_rate=25, precision=0.1))
    while (rate := state.next_rate()) is not None:
        engine, callers = step_snapshots(rate)
        results = evaluate([GATE], engine, 10.0, caller=callers)
        if rate > capacity:  # beyond the made-up knee, whatever the histogram says
            results = evaluate([parse_gate("latency.p99", "< 1us")], engine, 10.0, caller=callers)
        hist = callers.histograms[("latency", "echo", "completed")]
        measured = {
            "throughput": min(rate, capacity * 1.1),
            "latency_us": {
                "count": hist.count,
                **{f"p{q:g}": v for q, v in hist.percentiles([50, 90, 99, 99.9]).items()},
            },
        }
        state.record(judged(rate, results, measured))
    return state.result().to_json()


def summary_with(capacity: dict[str, object] | None) -> dict[str, object]:
    engine, callers = step_snapshots(50)
    scenario = loads_scenario('[load]\nmodel = "search"\n[[workload]]\nfunction = "echo"\n')
    return build_summary(
        snapshot=engine,
        started=START,
        ended=START + timedelta(seconds=60),
        scenario=scenario,
        gates=evaluate([GATE], engine, 60.0, caller=callers),
        caller=callers,
        duration_s=60.0,
        exit_code=0,
        capacity=capacity,
    )


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in ("meta", "br", "rect", "line", "circle", "path", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("rect", "line", "circle", "path"):
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def test_the_capacity_object_names_the_rate_the_failed_gate_and_every_step() -> None:
    capacity = searched()
    steps = capacity["steps"]
    assert isinstance(steps, list) and len(steps) >= 4
    passing = [s["rate"] for s in steps if s["verdict"] == "pass"]
    assert capacity["rate"] == max(passing) <= 130
    assert capacity["failed_gate"] == "latency.p99 < 1us"
    assert capacity["failed_rate"] > 130 and capacity["stop"] == "precision"
    assert all({"index", "rate", "verdict", "passed", "throughput", "latency_us", "gates"} <= set(s) for s in steps)
    summary = summary_with(capacity)
    assert summary["capacity"] == capacity
    assert summary_with(None)["capacity"] is None


def test_the_knee_table_is_by_rate_with_percentiles_and_the_failed_gate() -> None:
    rows = knee_table(searched()["steps"])  # type: ignore[arg-type]
    assert rows[0][:3] == ["step", "rate/s", "verdict"]
    rates = [float(row[1]) for row in rows[1:]]
    assert rates == sorted(rates)
    for row in rows[1:]:
        assert row[2] in ("pass", "fail") and (row[8] == "") == (row[2] == "pass")
        assert float(row[4]) <= float(row[5]) <= float(row[6]) <= float(row[7])  # p50 <= p90 <= p99 <= p99.9 (ms)


def test_the_terminal_prints_the_knee_table(capsys: pytest.CaptureFixture[str]) -> None:
    print_knee_table(searched())
    out = capsys.readouterr().out
    assert "by offered rate" in out
    assert re.search(r"^\s+step\s+rate/s\s+verdict\s+throughput/s", out, re.M)
    assert out.count(" pass ") + out.count(" fail ") >= 4


def test_the_capacity_gate_holds_the_verdict() -> None:
    found = searched()
    state = CapacitySearch(SearchSettings(start_rate=25, precision=0.1, min_capacity=100))
    for step in found["steps"]:  # type: ignore[attr-defined]
        state.record(judged(step["rate"], [] if step["passed"] else [evaluate([GATE], *step_snapshots(1e4))[0]]))
    gate = capacity_gate(state.result())
    assert gate.passed and gate.metric == "capacity" and gate.condition == ">= 100"
    assert "min_capacity 100: met" in gate.message
    strict = CapacitySearch(SearchSettings(start_rate=25, min_capacity=1000))
    strict.record(judged(25, []))
    strict.record(judged(50, [evaluate([GATE], *step_snapshots(1e4))[0]]))
    assert not capacity_gate(strict.result()).passed
    nothing = CapacitySearch(SearchSettings(start_rate=1))
    nothing.record(judged(1, [evaluate([GATE], *step_snapshots(1e4))[0]]))
    assert nothing.next_rate() is None
    gate = capacity_gate(nothing.result())
    assert not gate.passed and gate.observed is None and "no rate passed" in gate.message


def test_the_report_shows_the_capacity_the_knee_charts_and_the_table() -> None:
    capacity = searched()
    page = render_html(summary_with(capacity))
    _Parser().feed(page)
    assert "<h2>Capacity</h2>" in page
    assert f"capacity {capacity['rate']:g} calls/s" in page
    assert "Latency against offered rate" in page and "Throughput against offered rate" in page
    assert "offered rate, calls/s" in page  # the knee charts' x axis
    assert page.count('<tr class="pass">') + page.count('<tr class="fail">') >= len(capacity["steps"])  # type: ignore[arg-type]
    assert "<h2>Capacity</h2>" not in render_html(summary_with(None))


def test_knee_charts_put_one_point_per_step_at_its_rate() -> None:
    capacity = searched()
    latency, throughput = knee_charts(capacity)
    steps = capacity["steps"]
    assert latency.count('r="2.2" fill="#D55E00"') == len(steps)  # p99 markers  # type: ignore[arg-type]
    assert "(dashed: = offered)" in throughput
    ET.fromstring(latency)
    ET.fromstring(throughput)
    assert knee_charts({"steps": []}) == []


def test_a_percentile_curve_runs_from_p0_into_the_tail_up_to_the_max() -> None:
    stats = ShardStats("s")
    for n in range(1, 10_001):
        stats.record("e2e", "echo", "completed", n / 1e6)  # 1 µs .. 10 ms, uniform
    hist: HistogramSnapshot = stats.snapshot().histograms[("e2e", "echo", "completed")]
    curve = percentile_curve(hist)
    qs = [q for q, _ in curve]
    values = [v for _, v in curve]
    assert qs[0] == 0.0 and qs == sorted(qs) and qs[-1] < 100.0
    assert values == sorted(values)
    assert values[-1] == hist.max
    assert max(qs[:-1]) <= 100 * (1 - 1 / hist.count) + 1e-9  # never deeper than the count resolves
    near_p99 = min(curve, key=lambda point: abs(point[0] - 99.0))
    assert near_p99[0] == pytest.approx(99.0, abs=1e-6) and near_p99[1] == pytest.approx(9_900, rel=0.01)
    assert percentile_curve(ShardStats("x").snapshot().histograms.get(("e2e", "a", "b")) or hist)  # non-empty
    single = ShardStats("one")
    single.record("e2e", "echo", "completed", 0.001)
    assert [v for _, v in percentile_curve(single.snapshot().histograms[("e2e", "echo", "completed")])][-1] > 0


def test_the_report_draws_a_percentile_distribution_chart_per_function() -> None:
    summary = summary_with(None)
    charts = distribution_charts(summary)
    assert [name for name, _ in charts] == ["echo"]
    chart = charts[0][1]
    assert "callers&#x27; latency" in chart and "engine e2e" in chart and "attempts" in chart
    ET.fromstring(chart)
    assert "percentile (log scale: 1/(1 - q))" in chart
    assert ">90%<" in chart and ">99%<" in chart  # ticks one "nine" apart
    page = render_html(summary)
    assert "<h2>Latency distribution</h2>" in page and "echo: latency by percentile" in page
    assert distribution_charts({"snapshot": None}) == []


def test_the_x_axes_place_values_across() -> None:
    assert TIME_AXIS.position(5, 10) == 0.5 and RATE_AXIS.position(25, 100) == 0.25
    assert PERCENTILE_AXIS.position(0, 99.9) == 0.0
    assert PERCENTILE_AXIS.position(90, 99.9) == pytest.approx(1 / 3)
    assert PERCENTILE_AXIS.position(99, 99.9) == pytest.approx(2 / 3)
    assert [text for _, text in PERCENTILE_AXIS.ticks(99.99)] == ["0%", "90%", "99%", "99.9%", "99.99%"]
    assert [text for _, text in TIME_AXIS.ticks(10)][:3] == ["0s", "2s", "4s"]
    assert [text for _, text in RATE_AXIS.ticks(1000)][-1] == "1k"
