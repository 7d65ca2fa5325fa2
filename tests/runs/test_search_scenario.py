"""Scenario files for capacity searches: ``model = "search"``, ``[load.search]``, ``--find-capacity``,
and the open-model step a search runs at each rate."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadgen.runs.capacity import SearchSettings
from loadgen.runs.run import RunOptions, _apply_overrides
from loadgen.runs.scenario import (
    ScenarioError,
    Stage,
    default_scenario,
    load_scenario,
    loads_scenario,
    parse_scenario,
    scenario_to_dict,
)
from loadgen.runs.search import in_flight_limit, rate_floors, step_gates, step_scenario, warmup_seconds, window_seconds

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_model_search_alone_takes_every_default() -> None:
    scenario = loads_scenario('[load]\nmodel = "search"\n')
    assert scenario.load.model == "search"
    assert scenario.load.search == SearchSettings()
    defaults = SearchSettings()
    assert (defaults.start_rate, defaults.precision, defaults.step, defaults.warmup) == (10.0, 0.05, 10.0, 4.0)
    assert defaults.min_capacity is None and defaults.abort_in_flight is None
    assert parse_scenario(scenario_to_dict(scenario), "again.toml") == scenario


def test_every_search_key() -> None:
    scenario = loads_scenario(
        """
[load]
model = "search"
max_in_flight = 300
stop_timeout = "2s"

[load.search]
start_rate = 20
max_rate = 800
min_rate = 2
precision = "10%"
step = "5s"
warmup = 0
max_steps = 9
min_capacity = 150
abort_in_flight = 200
retries = 2
"""
    )
    assert scenario.load.search == SearchSettings(20, 800, 2, 0.1, 5.0, 0.0, 9, 150, 200, 2)
    assert scenario.load.max_in_flight == 300 and scenario.load.stop_timeout == 2.0
    assert loads_scenario('[load]\nmodel = "search"\n[load.search]\nprecision = 0.02\n').load.search.precision == 0.02
    assert parse_scenario(scenario_to_dict(scenario), "again.toml") == scenario


def test_search_settings_beside_another_model_are_kept_for_find_capacity() -> None:
    scenario = loads_scenario(
        '[load]\nmodel = "open"\nstages = [{ duration = "1s", rate = 5 }]\n[load.search]\nstep = 2\n'
    )
    assert scenario.load.model == "open" and scenario.load.search.step == 2.0
    assert parse_scenario(scenario_to_dict(scenario), "again.toml") == scenario
    searching = _apply_overrides(scenario, RunOptions(find_capacity=True))
    assert searching.load.model == "search" and searching.load.search.step == 2.0 and not searching.load.stages
    assert _apply_overrides(scenario, RunOptions()).load.model == "open"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('model = "search"\nusers = 3', "load.users", 'not with load.model = "search"'),
        ('model = "search"\nstages = [{ duration = "1s", rate = 1 }]', "load.stages", "[load.search]"),
        ('model = "search"\nduration = "1s"', "load.duration", "not with"),
        ('model = "serach"', "load.model", "did you mean 'search'"),
        ('model = "search"\n[load.search]\nstep_rate = 3', "load.search.step_rate", "did you mean"),
        ('model = "search"\n[load.search]\nstart_rate = 0', "load.search.start_rate", "positive number"),
        ('model = "search"\n[load.search]\nstart_rate = 50\nmax_rate = 20', "load.search.start_rate", "<= max_rate"),
        ('model = "search"\n[load.search]\nmin_rate = 50', "load.search.min_rate", "min_rate <= start_rate"),
        ('model = "search"\n[load.search]\nprecision = "0%"', "load.search.precision", "between 0 and 1"),
        ('model = "search"\n[load.search]\nprecision = 1.5', "load.search.precision", "between 0 and 1"),
        ('model = "search"\n[load.search]\nprecision = "five"', "load.search.precision", "such as 0.05"),
        ('model = "search"\n[load.search]\nstep = 0', "load.search.step", "longer than 0"),
        ('model = "search"\n[load.search]\nwarmup = "-1s"', "load.search.warmup", ""),
        ('model = "search"\n[load.search]\nmax_steps = 0', "load.search.max_steps", "from 1 to 1000"),
        ('model = "search"\n[load.search]\nmin_capacity = -5', "load.search.min_capacity", "positive"),
        ('model = "search"\n[load.search]\nabort_in_flight = 0.5', "load.search.abort_in_flight", "integer"),
        ('model = "search"\nsearch = 3', "load.search", "expected a table"),
        ('model = "search"\n[load.search]\nretries = -1', "load.search.retries", "from 0 to 10"),
    ],
)
def test_broken_search_settings_name_the_key(text: str, key: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        loads_scenario("[load]\n" + text + "\n", "cap.toml")
    assert caught.value.key == key
    assert expected in caught.value.problem


def test_a_step_is_the_open_model_at_its_rate_warm_up_then_hold() -> None:
    scenario = load_scenario(SCENARIOS / "capacity.toml")
    search = scenario.load.search
    step = step_scenario(scenario, 123.0)
    assert step.load.model == "open"
    assert step.load.stages == (Stage(search.warmup, 123.0), Stage(search.step, 123.0))
    assert step.load.duration == search.warmup + search.step
    assert step.workload == scenario.workload and step.gates == scenario.gates
    no_warmup = loads_scenario('[load]\nmodel = "search"\n[load.search]\nwarmup = 0\nstep = 4\n')
    assert step_scenario(no_warmup, 7.0).load.stages == (Stage(4.0, 7.0),)
    assert parse_scenario(scenario_to_dict(step), "step.toml") == step  # what the step's Locust reads


def test_steps_are_judged_by_the_scenario_gates_else_the_implicit_ones() -> None:
    scenario = load_scenario(SCENARIOS / "capacity.toml")
    assert step_gates(scenario) == scenario.gates
    implicit = step_gates(loads_scenario('[load]\nmodel = "search"\n'))
    names = {str(gate.metric) for gate in implicit}
    assert {"failed", "expired", "lost", "wrong", "dropped"} <= names
    assert "locust.failures" not in names  # Locust's totals cover the warm-up too
    assert all(gate.implicit for gate in implicit)


@pytest.mark.parametrize(("warmup", "seconds"), [(0, 0.0), (1, 2.0), (2, 2.0), (3, 4.0), (4, 4.0), (4.5, 6.0)])
def test_the_warm_up_is_a_whole_number_of_caller_reports(warmup: float, seconds: float) -> None:
    scenario = loads_scenario(f'[load]\nmodel = "search"\n[load.search]\nwarmup = {warmup}\n')
    assert warmup_seconds(scenario) == seconds
    assert step_scenario(scenario, 5.0).load.duration == seconds + scenario.load.search.step


def test_a_lower_bound_on_a_rate_does_not_judge_steps() -> None:
    scenario = loads_scenario(
        '[load]\nmodel = "search"\n[gates]\n"calls_per_s" = "> 50"\n"accepted_per_s" = ">= 5"\n'
        '"latency.p99" = "< 1s"\n"dropped_per_s" = "< 1"\n'
    )
    assert [str(g) for g in rate_floors(scenario)] == ["calls_per_s > 50", "accepted_per_s >= 5"]
    assert [str(g) for g in step_gates(scenario)] == ["latency.p99 < 1s", "dropped_per_s < 1"]
    quickstart = _apply_overrides(default_scenario(), RunOptions(find_capacity=True))
    assert "calls_per_s > 50" not in {str(g) for g in step_gates(quickstart)}
    assert "latency.p99 < 1s" in {str(g) for g in step_gates(quickstart)}


def test_a_step_breaks_when_every_executor_waits() -> None:
    plain = loads_scenario('[load]\nmodel = "search"\nmax_in_flight = 200\n')
    assert in_flight_limit(plain) == 200
    batched = loads_scenario(
        '[load]\nmodel = "search"\nmax_in_flight = 200\n[[workload]]\nfunction = "echo"\nbatch = 10\n'
        '[[workload]]\nfunction = "sleep"\n'
    )
    assert in_flight_limit(batched) == 2000
    explicit = loads_scenario('[load]\nmodel = "search"\n[load.search]\nabort_in_flight = 50\n')
    assert in_flight_limit(explicit) == 50


def test_a_window_lasts_as_long_as_its_arrivals_at_the_step_rate() -> None:
    assert window_seconds(40.0, 76, elapsed=2.5) == 1.9  # the schedule began late: the arrivals say how long
    assert window_seconds(40.0, 0, elapsed=2.5) == 2.5  # no arrival (yet): the time that passed
    assert window_seconds(40.0, 0, elapsed=0.0) > 0
