"""The locustfile ``loadgen run`` hands to Locust: user classes built from a scenario.

``loadgen run`` writes the resolved scenario (secrets redacted) to a JSON file and
points ``$LOADGEN_SCENARIO_JSON`` at it; the shard addresses and API key travel in
``$LOADGEN_ADDRESSES`` and ``$DISPATCH_API_KEY``. The closed model becomes a
:class:`DispatchUser` whose tasks are the workload items, weighted; the open model an
:class:`OpenModelUser` whose arrivals pick a workload item by weight, with the scenario's
``stop_timeout`` as its grace. Inputs are encoded once per workload item, by the target's SDK
codec; each waited result is checked against the item's ``expect``.

Under ``loadgen worker`` (``$LOADGEN_WORKER_CHANNEL_FD`` set) there is no scenario file: the user
classes are placeholders, idle, until the master's configuration arrives and its scenario's
classes take their place (:mod:`loadgen.runs.worker_locust`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import any_pb2
from locust import constant

from loadgen.locust import DispatchUser, OpenModelUser, Stage
from loadgen.protocol.codecs import get_codec
from loadgen.runs import worker_locust
from loadgen.runs.scenario import Scenario, WorkItem, parse_redacted
from loadgen.runs.worker_channel import channel_from_env

__all__ = ["build_user_class"]


def _perform(user: Any, item: WorkItem, payload: any_pb2.Any) -> None:
    """One workload item: ``batch`` calls dispatched together, and (if ``wait``) each one's result, checked."""
    if item.wait:
        user.call_batch(item.function, payload, item.batch, expect=item.expect)
    else:
        user.dispatch(item.function, payload, batch=item.batch)


def _task(item: WorkItem, payload: any_pb2.Any) -> Any:
    def task(user: Any) -> None:
        _perform(user, item, payload)

    task.__name__ = f"call_{item.function}"
    return task


def build_user_class(scenario: Scenario) -> type:
    """The Locust user class that plays *scenario*'s workload under its load model."""
    workload = list(scenario.workload)
    codec = get_codec(scenario.target.sdk)
    payloads = [codec.encode(item.call()) for item in workload]  # checked when the scenario was parsed
    if scenario.load.model == "open":
        weights = [item.weight for item in workload]
        indexes = range(len(workload))

        class ScenarioArrivals(OpenModelUser):
            sdk = scenario.target.sdk
            stages = tuple(Stage(s.duration, s.rate, s.ramp) for s in scenario.load.stages)
            grace = scenario.load.stop_timeout

            def arrival(self) -> None:
                index = random.choices(indexes, weights)[0]
                _perform(self, workload[index], payloads[index])

        return ScenarioArrivals

    class ScenarioUser(DispatchUser):
        sdk = scenario.target.sdk
        wait_time = constant(0)
        tasks = [
            _task(item, payload)
            for item, payload in zip(workload, payloads, strict=True)
            for _ in range(max(1, round(item.weight * 10)))
        ]

    return ScenarioUser


def _load() -> Scenario:
    path = os.environ.get("LOADGEN_SCENARIO_JSON")
    if not path:
        raise RuntimeError("LOADGEN_SCENARIO_JSON is not set: this locustfile is run by 'loadgen run'")
    return parse_redacted(orjson.loads(Path(path).read_bytes()), path, Path(path).parent)


_worker_channel = channel_from_env()
if _worker_channel is None:
    User = build_user_class(_load())
else:  # a 'loadgen worker': the scenario comes from the master (see loadgen.runs.worker_locust)
    ScenarioUser, ScenarioArrivals = worker_locust.serve(_worker_channel, build_user_class)
