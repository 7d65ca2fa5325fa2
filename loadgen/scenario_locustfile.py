"""The locustfile ``loadgen run`` hands to Locust: user classes built from a scenario.

``loadgen run`` writes the resolved scenario (secrets redacted) to a JSON file and
points ``$LOADGEN_SCENARIO_JSON`` at it; the shard addresses and API key travel in
``$LOADGEN_ADDRESSES`` and ``$DISPATCH_API_KEY``. The closed model becomes a
:class:`DispatchUser` whose tasks are the workload items, weighted; the open model an
:class:`OpenModelUser` whose arrivals pick a workload item by weight.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import orjson
from locust import constant

from loadgen.locust import DispatchUser, OpenModelUser, Stage
from loadgen.scenario import Scenario, WorkItem, parse_redacted

__all__ = ["build_user_class"]


def _perform(user: Any, item: WorkItem) -> None:
    """One workload item: a Dispatch of ``batch`` calls, then (if ``wait``) a Wait for each."""
    payload = item.call_input()
    if not item.wait:
        user.dispatch(item.function, payload, batch=item.batch)
        return
    ids = user.dispatch(item.function, payload, batch=item.batch)
    for dispatch_id in ids:
        user.wait_for(dispatch_id, function=item.function)


def _task(item: WorkItem) -> Any:
    def task(user: Any) -> None:
        _perform(user, item)

    task.__name__ = f"call_{item.function}"
    return task


def build_user_class(scenario: Scenario) -> type:
    """The Locust user class that plays *scenario*'s workload under its load model."""
    workload = list(scenario.workload)
    if scenario.load.model == "open":
        weights = [item.weight for item in workload]

        class ScenarioArrivals(OpenModelUser):
            stages = tuple(Stage(s.duration, s.rate, s.ramp) for s in scenario.load.stages)

            def arrival(self) -> None:
                _perform(self, random.choices(workload, weights)[0])

        return ScenarioArrivals

    class ScenarioUser(DispatchUser):
        wait_time = constant(0)
        tasks = [_task(item) for item in workload for _ in range(max(1, round(item.weight * 10)))]

    return ScenarioUser


def _load() -> Scenario:
    path = os.environ.get("LOADGEN_SCENARIO_JSON")
    if not path:
        raise RuntimeError("LOADGEN_SCENARIO_JSON is not set: this locustfile is run by 'loadgen run'")
    return parse_redacted(orjson.loads(Path(path).read_bytes()), path, Path(path).parent)


User = build_user_class(_load())
