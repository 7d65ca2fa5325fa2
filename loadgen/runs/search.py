"""``model = "search"``: a capacity search, step by step (the IO around :mod:`loadgen.runs.capacity`).

The endpoint and the shards stay up for the whole search; each step is one Locust process
running the scenario's workload as the open model (:mod:`loadgen.locust.openmodel`) at the
step's rate: a warm-up stage, then the judged hold (``step``), both at that rate. Its files
go to ``steps/NN-RATE/`` in the run folder (``locust.log``, ``caller.json``, Locust's CSVs).

**The window.** A step is judged on what happened between the end of its warm-up and the end
of its Locust process (the hold, plus the grace in which its last arrivals end), by differencing
cumulative snapshots: the engine's (taken by this process) and the callers' (``caller.json``,
which the step's Locust rewrites every 2 s). The window opens at the first caller file written
after the warm-up; the engine's snapshot is taken when that file is seen (polled every 50 ms
while it is due), so both views open within a poll of each other. The warm-up is a whole number
of report intervals, so that the window opens right after it. A fresh Locust process per step means the
callers' statistics start from zero at every step: nothing of an earlier step leaks into a
later one on the callers' side, which is where the ``latency.*`` gates (the right SLO) read.
Rates (``calls_per_s``, the throughput) are per second of the window's arrivals: their number
at the step's rate (the open model offers exactly that rate, whenever its schedule began), so
the calls that end in the grace after the hold count for it. Before the next step, calls still
in flight get ``stop_timeout`` to end.

**Early stop.** Every 2 s the window so far is checked (:func:`~loadgen.runs.capacity.broken`):
an ``abort_on_fail`` gate failing, a dropped arrival or calls in flight at the executors' limit
end the step at once, failed.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from loadgen.children import die_with_parent_term
from loadgen.core.caller import CALLER_FILE_INTERVAL, CallerFile, FunctionChecks
from loadgen.core.counters import ARRIVALS, DROPPED, LATE, CounterKind
from loadgen.core.stats import Snapshot, merge_snapshots
from loadgen.core.units import format_latency
from loadgen.runs.capacity import CapacityResult, CapacitySearch, StepVerdict, broken, judged, knee_table
from loadgen.runs.console import caller_interval, print_failures, progress_line
from loadgen.runs.gates import (
    Gate,
    GateResult,
    abort_check,
    accounting_problems,
    evaluate,
    exit_code,
    implicit_gates,
)
from loadgen.runs.locust_process import caller_file, locust_command, locust_totals, stop_locust
from loadgen.runs.metrics import LocustTotals, Metrics
from loadgen.runs.results import write_html_report, write_summary
from loadgen.runs.results.folder import append_progress, mark_complete
from loadgen.runs.results.series import interval_record
from loadgen.runs.results.summary import histogram_summary
from loadgen.runs.results.verdicts import write_gates_json, write_junit
from loadgen.runs.scenario import Scenario, Stage, scenario_to_dict

__all__ = [
    "SearchRecord",
    "capacity_gate",
    "finish_search",
    "in_flight_limit",
    "print_knee_table",
    "rate_floors",
    "run_search",
    "step_gates",
    "step_scenario",
    "warmup_seconds",
    "window_seconds",
]

STEP_POLL = 0.25
WINDOW_POLL = 0.05  # while the report that opens a step's window is due
PROGRESS_SECONDS = 2.0
STEP_STARTUP = 30.0  # seconds a step's Locust may take to start before the step counts as broken


class Engine(Protocol):
    """What a search needs of the run's shards."""

    def snapshot(self) -> Snapshot: ...

    def notices(self) -> list[str]:
        """What happened to the shards since the last call (a dead one is restarted)."""
        ...


@dataclass
class SearchRecord:
    """A finished (or interrupted) search: what was found, and the statistics of all its steps."""

    result: CapacityResult
    series: list[tuple[float, Snapshot]] = field(default_factory=list)
    caller_series: list[tuple[float, Snapshot]] = field(default_factory=list)
    """The callers' statistics of every step so far, cumulative (each step's processes by their own names)."""
    callers: Snapshot | None = None
    checks: dict[str, FunctionChecks] | None = None
    locust: LocustTotals | None = None
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False


def warmup_seconds(scenario: Scenario) -> float:
    """The warm-up of each step: ``warmup`` rounded up to a whole number of the callers' report
    intervals, so that the window opens with a report (2 s: 3 s of warm-up are 4)."""
    warmup = scenario.load.search.warmup
    return math.ceil(warmup / CALLER_FILE_INTERVAL - 1e-9) * CALLER_FILE_INTERVAL


def step_scenario(scenario: Scenario, rate: float) -> Scenario:
    """The open-model scenario of one step at *rate*: warm-up then the judged hold, at that rate."""
    search, warmup = scenario.load.search, warmup_seconds(scenario)
    stages = ((Stage(warmup, rate),) if warmup > 0 else ()) + (Stage(search.step, rate),)
    load = replace(scenario.load, model="open", stages=stages, duration=warmup + search.step)
    return replace(scenario, load=load)


def rate_floors(scenario: Scenario) -> tuple[Gate, ...]:
    """The scenario's gates that set a lower bound on a rate (``calls_per_s > 50``): a step offering
    less cannot pass them, so a search does not judge steps by them (``min_capacity`` is its floor)."""
    return tuple(g for g in scenario.gates if g.metric.kind == "rate" and g.condition.op in (">", ">="))


def step_gates(scenario: Scenario) -> tuple[Gate, ...]:
    """The gates that judge each step: the scenario's but its :func:`rate_floors`, else the implicit
    ones (without Locust's totals, which cover the warm-up too)."""
    if scenario.gates:
        floors = rate_floors(scenario)
        return tuple(gate for gate in scenario.gates if gate not in floors)
    return implicit_gates(with_locust=False, remote=scenario.remote is not None, with_caller=True)


def in_flight_limit(scenario: Scenario) -> int:
    """Calls in flight at which a step breaks: ``abort_in_flight``, else what the load generator's
    executors (``max_in_flight``) keep in flight when every one of them waits (times the largest batch)."""
    explicit = scenario.load.search.abort_in_flight
    return explicit or scenario.load.max_in_flight * max((item.batch for item in scenario.workload), default=1)


@dataclass
class _Window:
    """A step's window so far: where it opened (engine and callers) and when."""

    engine: Snapshot
    caller: Snapshot
    opened: float  # time.monotonic()


class _Step:
    """One step under way: its Locust process, its window, its early-stop checks."""

    def __init__(
        self, index: int, rate: float, scenario: Scenario, engine: Engine, run_dir: Path, env: Mapping[str, str]
    ) -> None:
        self.index, self.rate, self.scenario, self.engine = index, rate, scenario, engine
        self.open = step_scenario(scenario, rate)
        self.run_dir = run_dir
        self.prefix = f"step{index}/"  # of its Locust processes' names in the search's callers' statistics
        self.folder = run_dir / "steps" / f"{index:02d}-{rate:g}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.window: _Window | None = None
        self.broke: tuple[str, str] | None = None
        self.broken_at: tuple[Snapshot, CallerFile] | None = None  # the engine and the callers when it broke
        self.gates = step_gates(scenario)
        self.limit = in_flight_limit(scenario)
        scenario_json = self.folder / "scenario.json"
        scenario_json.write_bytes(orjson.dumps(scenario_to_dict(self.open), option=orjson.OPT_INDENT_2))
        self.log = (self.folder / "locust.log").open("wb")
        self.process = subprocess.Popen(
            locust_command(self.open, False, 0, self.folder),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=dict(env) | {"LOADGEN_SCENARIO_JSON": str(scenario_json)},
            start_new_session=True,
            preexec_fn=die_with_parent_term,
        )
        self.started = time.monotonic()

    def close(self) -> None:
        stop_locust(self.process)
        self.log.close()

    def poll(self, caller: CallerFile | None) -> float:
        """Open the window with the first callers' report after the warm-up. Returns how long to wait
        before the next poll (:data:`WINDOW_POLL` while that report is due, else :data:`STEP_POLL`)."""
        now = time.monotonic()
        if self.window is not None:
            return STEP_POLL
        if caller is None or caller.started_at is None or caller.written_at is None or caller.latency is None:
            return STEP_POLL
        opens = caller.started_at + warmup_seconds(self.scenario)
        if caller.written_at >= opens - 0.05:
            self.window = _Window(self.engine.snapshot(), caller.latency, now)
            return STEP_POLL
        return WINDOW_POLL if time.time() >= opens - 0.1 else STEP_POLL

    def check(self, snapshot: Snapshot, caller: CallerFile | None) -> None:
        """Stop the step at once when it clearly breaks (:func:`broken`)."""
        if self.window is None or self.broke is not None or caller is None or caller.latency is None:
            return
        engine = snapshot.minus(self.window.engine)
        try:
            callers = caller.latency.minus(self.window.caller)
        except ValueError:
            return
        elapsed = time.monotonic() - self.window.opened
        failing = abort_check(self.gates, engine, elapsed, checks=caller.checks, caller=callers)
        dropped = callers.counters.get(DROPPED, 0)
        self.broke = broken(failing, dropped, snapshot.accounting().in_flight, self.limit)
        if self.broke is not None:  # judged on the window up to now, not on the step's teardown
            self.broken_at = (snapshot, caller)
            print(f"loadgen run: step {self.index} at {self.rate:g}/s breaks: {self.broke[1]}", file=sys.stderr)
            self.process.terminate()

    def verdict(self, final: Snapshot, caller: CallerFile | None) -> StepVerdict | None:
        """The step's verdict on its window (``None``: it never got past its warm-up)."""
        window = self.window
        if self.broken_at is not None:
            final, caller = self.broken_at
        if window is None or caller is None or caller.latency is None:
            return None
        engine = final.minus(window.engine)
        try:
            callers = caller.latency.minus(window.caller)
        except ValueError:
            return None
        seconds = window_seconds(self.rate, callers.counters.get(ARRIVALS, 0), time.monotonic() - window.opened)
        results = evaluate(self.gates, engine, seconds, locust_totals(self.folder), caller.checks, callers)
        measured = _measured(engine, callers, seconds)
        if self.broke is not None:
            check, message = self.broke
            return StepVerdict(self.rate, False, check, message, True, measured, tuple(results))
        return judged(self.rate, results, measured)


def window_seconds(rate: float, arrivals: int, elapsed: float) -> float:
    """How long a step's window offered load: the arrivals in it at the step's rate (the open model
    offers exactly *rate* a second, whenever its schedule started), else the *elapsed* time."""
    return arrivals / rate if arrivals > 0 and rate > 0 else max(elapsed, 1e-3)


def _succeeded(callers: Snapshot) -> int:
    """Calls that succeeded as their callers saw them: completed (waited for) or accepted (not waited for)."""
    return sum(
        hist.count
        for (family, _, outcome), hist in callers.histograms.items()
        if family == "latency" and outcome in ("completed", "accepted")
    )


def _measured(engine: Snapshot, callers: Snapshot, seconds: float) -> dict[str, Any]:
    """A step's numbers for the reports over *seconds*: the throughput (calls that succeeded, counted
    where the arrivals are: by the callers), latencies, what went wrong."""
    metrics = Metrics(engine, seconds, caller=callers)
    counters = callers.counters
    return {
        "seconds": round(seconds, 3),
        "arrivals": counters.get(ARRIVALS, 0),
        "throughput": _succeeded(callers) / seconds,
        "completed": engine.counter(CounterKind.COMPLETED),
        "failed": engine.counter(CounterKind.FAILED) + engine.counter(CounterKind.EXPIRED),
        "late": counters.get(LATE, 0),
        "dropped": counters.get(DROPPED, 0),
        "in_flight": engine.accounting().in_flight,
        "latency_us": histogram_summary(metrics.histogram("latency")),
        "e2e_us": histogram_summary(metrics.histogram("e2e")),
    }


def _verdict_line(index: int, verdict: StepVerdict) -> str:
    m = verdict.measured
    p99 = (m.get("latency_us") or {}).get("p99")
    shown = f"  latency p99 {format_latency(p99, 'ms', 1)} ms" if p99 else ""
    mark = "PASS" if verdict.passed else "FAIL"
    why = "" if verdict.passed else f": {verdict.failed_gate}{' (stopped early)' if verdict.aborted else ''}"
    return (
        f"loadgen run: step {index} at {verdict.rate:g} calls/s {mark}{why}"
        f"  throughput {float(m.get('throughput', 0.0)):.0f}/s{shown}"
        + ("" if verdict.passed else f"  [{verdict.message}]")
    )


def run_search(
    scenario: Scenario,
    engine: Engine,
    run_dir: Path,
    env: Mapping[str, str],
) -> SearchRecord:
    """Run the steps of *scenario*'s capacity search against *engine*; Ctrl-C ends it with what it found."""
    search = CapacitySearch(scenario.load.search)
    record = SearchRecord(search.result())
    began = time.monotonic()
    callers: list[Snapshot] = []
    checks: dict[str, FunctionChecks] = {}
    totals: list[LocustTotals] = []
    settings = scenario.load.search
    print(
        f"loadgen run: capacity search from {settings.start_rate:g} calls/s (up to {settings.max_rate:g}),"
        f" {warmup_seconds(scenario):g}s warm-up + {settings.step:g}s judged per step,"
        f" precision {settings.precision:.0%}",
        file=sys.stderr,
    )
    for gate in rate_floors(scenario):
        print(
            f"loadgen run: gate {gate} is not judged per step (a step offering less cannot pass it);"
            " [load.search] min_capacity sets the least capacity to find",
            file=sys.stderr,
        )
    try:
        while (rate := search.next_rate()) is not None:
            index = len(search.steps) + 1
            print(f"loadgen run: step {index}: {rate:g} calls/s", file=sys.stderr, flush=True)
            step = _Step(index, rate, scenario, engine, run_dir, env)
            try:
                _watch(step, record, began, callers)
            finally:
                step.close()
            caller = caller_file(step.folder)
            verdict = step.verdict(engine.snapshot(), caller)
            if verdict is None:
                code = step.process.returncode
                record.problems.append(
                    f"step {index} at {rate:g} calls/s ended before its warm-up was over (Locust exit code {code},"
                    f" see {step.folder / 'locust.log'})"
                )
                search.stop("run_failed")
                break
            search.record(verdict)
            print(_verdict_line(index, verdict), file=sys.stderr, flush=True)
            if caller is not None and caller.latency is not None:
                callers.append(_renamed(caller.latency, step.prefix))
                for function, checked in caller.checks.items():
                    checks.setdefault(function, FunctionChecks()).add(checked)
            step_totals = locust_totals(step.folder)
            if step_totals is not None:
                totals.append(step_totals)
            _settle(engine, scenario.load.stop_timeout)
    except KeyboardInterrupt:
        record.interrupted = True
        search.stop("interrupted")
        print("\nloadgen run: interrupted: ending the search with the steps judged so far", file=sys.stderr)
    record.result = search.result()
    record.callers = merge_snapshots(callers) if callers else None
    record.checks = checks if callers else None
    if totals:
        record.locust = LocustTotals(sum(t.requests for t in totals), sum(t.failures for t in totals))
    return record


def _watch(step: _Step, record: SearchRecord, began: float, earlier: Sequence[Snapshot]) -> None:
    """Poll a step until its Locust process ends: the window, progress lines, early stops, a late start."""
    planned = step.open.load.duration
    previous = step.engine.snapshot()
    previous_callers: Snapshot | None = None
    last_line = time.monotonic()
    deadline = step.started + STEP_STARTUP + planned + step.scenario.load.stop_timeout
    wait = STEP_POLL
    while step.process.poll() is None:
        with suppress(subprocess.TimeoutExpired):
            step.process.wait(wait)
        for notice in step.engine.notices():
            print(f"loadgen run: {notice}", file=sys.stderr)
        caller = caller_file(step.folder)
        wait = step.poll(caller)
        now = time.monotonic()
        if now - last_line >= PROGRESS_SECONDS:
            snapshot = step.engine.snapshot()
            record.series.append((now - began, snapshot))
            if caller is not None and caller.latency is not None:  # with the earlier steps' final statistics
                every = [*earlier, _renamed(caller.latency, step.prefix)]
                record.caller_series.append((now - began, merge_snapshots(every)))
            append_progress(
                step.run_dir, interval_record(now - began, now - last_line, snapshot.minus(previous), snapshot)
            )
            callers = caller.latency if caller is not None else None
            fresh = caller_interval(callers, previous_callers)
            line = progress_line(
                now - step.started, planned, snapshot.minus(previous), now - last_line, snapshot, caller, fresh
            )
            print(f"  step {step.index} at {step.rate:g}/s{line[1:]}", file=sys.stderr, flush=True)
            step.check(snapshot, caller)
            previous, last_line = snapshot, now
            previous_callers = callers or previous_callers
        if now > deadline and step.process.poll() is None:
            print(f"loadgen run: step {step.index}'s Locust did not stop in time: stopping it", file=sys.stderr)
            step.process.terminate()
            break
    with suppress(subprocess.TimeoutExpired):
        step.process.wait(20)
    step.poll(caller_file(step.folder))


def _settle(engine: Engine, timeout: float) -> None:
    """Give the calls still in flight up to *timeout* seconds to end before the next step."""
    deadline = time.monotonic() + timeout
    while engine.snapshot().accounting().in_flight and time.monotonic() < deadline:
        time.sleep(0.1)


def _renamed(snapshot: Snapshot, prefix: str) -> Snapshot:
    """*snapshot* with its processes renamed ``prefix + name`` (steps' callers merge as distinct processes)."""
    return Snapshot({prefix + name: summary for name, summary in snapshot.per_shard.items()}, snapshot.histograms)


def capacity_gate(result: CapacityResult) -> GateResult:
    """The search's verdict as a gate (``gates.json``, JUnit, the report): the capacity found, against
    ``min_capacity`` when one is set (else: some rate passed)."""
    minimum = result.settings.min_capacity
    condition = f">= {minimum:g}" if minimum is not None else "> 0"
    observed = result.rate
    if observed is None:
        message = f"capacity: {result.text()}"
    elif minimum is None:
        message = f"capacity = {observed:g} calls/s: {result.text()}"
    else:
        met = "met" if result.meets_minimum else "not met"
        message = f"capacity = {observed:g} calls/s (min_capacity {minimum:g}: {met}): {result.text()}"
    return GateResult(
        "capacity",
        condition,
        observed,
        result.meets_minimum,
        message,
        "rate",
        observed_text=("none" if observed is None else f"{observed:g}/s"),
    )


def print_knee_table(capacity: Mapping[str, Any]) -> None:
    """The knee table on the terminal, columns aligned."""
    rows = knee_table(capacity.get("steps", []))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"capacity search: {len(rows) - 1} step(s), by offered rate; latency as callers saw it")
    for row in rows:
        cells = [cell.rjust(width) if i < 8 else cell for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        print("  " + "  ".join(cells).rstrip())


def finish_search(
    run_dir: Path, scenario: Scenario, final: Snapshot, record: SearchRecord, duration: float, started_at: datetime
) -> int:
    """The results of a search (``summary.json`` with its ``capacity``, the reports) and its exit code:
    0 when the capacity found meets ``min_capacity`` (without one: a rate passed), 1 if not, 3 when
    the search itself failed."""
    gate = capacity_gate(record.result)
    accounting = final.accounting()
    problems = record.problems + accounting_problems(final)
    code = exit_code([gate], run_failed=bool(problems))
    capacity = record.result.to_json()
    write_gates_json([gate], run_dir / "gates.json")
    write_junit([gate], run_dir / "junit.xml", f"loadgen.{scenario.name}", duration)
    summary = write_summary(
        run_dir,
        snapshot=final,
        started=started_at,
        ended=datetime.now(UTC),
        scenario=scenario,
        gates=[gate],
        series=record.series,
        caller_series=record.caller_series,
        caller=record.callers,
        locust=record.locust,
        duration_s=duration,
        exit_code=code,
        extra={"problems": problems, "aborted": False, "interrupted": record.interrupted},
        checks=record.checks,
        capacity=capacity,
    )
    mark_complete(run_dir)
    report = write_html_report(run_dir, summary)
    print()
    print_knee_table(capacity)
    print_failures(final)
    print_checks_totals(record.checks)
    print()
    print(f"accounting: {accounting}")
    print(f"capacity search stopped: {record.result.to_json()['stop_text']}")
    print(f"gate {'PASS' if gate.passed else 'FAIL'}  {gate.message}")
    for problem in problems:
        print(f"loadgen run: {problem}", file=sys.stderr)
    print(f"results: {run_dir}  (report: {report.name}, summary.json with capacity, gates.json, junit.xml, steps/)")
    return code


def print_checks_totals(checks: Mapping[str, FunctionChecks] | None) -> None:
    """Checked results over every step, when the workload checks them."""
    if not checks or not any(c.checked for c in checks.values()):
        return
    wrong = sum(c.wrong for c in checks.values())
    checked = sum(c.checked for c in checks.values())
    print(f"checked results: {checked} checked, {wrong} wrong (all steps)")
