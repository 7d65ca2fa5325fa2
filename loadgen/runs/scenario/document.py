"""A parsed scenario back to a document in the scenario file's own schema (for ``scenario.json``), and back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadgen.protocol.codecs import NO_VALUE
from loadgen.runs.gates import Gate
from loadgen.runs.scenario.model import Scenario, SearchSettings, WorkItem
from loadgen.runs.scenario.parse import parse_scenario

__all__ = ["parse_redacted", "scenario_to_dict"]


def _gate_spec(gate: Gate) -> str | dict[str, Any]:
    if not gate.abort_on_fail and not gate.delay:
        return str(gate.condition)
    return {"condition": str(gate.condition), "abort_on_fail": gate.abort_on_fail, "delay": gate.delay}


def _work_item_dict(item: WorkItem, sdk: str) -> dict[str, Any]:
    out: dict[str, Any] = {"function": item.function, "weight": item.weight}
    if sdk == "dispatch-py":
        out.update(args=list(item.args), kwargs=item.kwargs)
    elif sdk == "reference":
        out.update(input=item.input, input_bytes=item.input_bytes)
    elif item.input is not NO_VALUE:
        out["input"] = item.input
    out.update(batch=item.batch, wait=item.wait)
    if item.checks_result:
        out["expect"] = item.expect
    return out


def _search_dict(search: SearchSettings) -> dict[str, Any]:
    return {key: value for key, value in search.to_json().items() if value is not None}


def scenario_to_dict(scenario: Scenario, *, redact_secrets: bool = True) -> dict[str, Any]:
    """*scenario* as a document in the scenario file's own schema, with every default filled in.

    Durations are numbers of seconds. Parsing the result (:func:`parse_scenario`) gives the
    same scenario back, except that with *redact_secrets* inline private keys and API keys
    read ``"<redacted>"`` (``env:VAR`` references and key file paths are kept).
    """
    t = scenario.target
    target: dict[str, Any] = {"reference": True} if t.reference else {"reference": False, "url": t.url}
    target["sdk"] = t.sdk
    if t.signing_key is not None:
        target["signing_key"] = t.signing_key.to_toml(redact_secrets)
    if t.verification_key is not None:
        target["verification_key"] = t.verification_key.to_toml(False)
    if t.inject is not None:
        target["inject"] = {"rate": t.inject.rate, "status": t.inject.status}
        if t.inject.seed is not None:
            target["inject"]["seed"] = t.inject.seed
    engine: dict[str, Any]
    if scenario.remote is not None:
        engine = {"addresses": list(scenario.remote.addresses)}
        if scenario.remote.api_key is not None:
            engine["api_key"] = scenario.remote.api_key.to_toml(redact_secrets)
    else:
        engine = scenario.engine.to_json()
    workload = [_work_item_dict(w, t.sdk) for w in scenario.workload]
    ld = scenario.load
    load: dict[str, Any] = {"model": ld.model}
    if ld.model == "closed":
        load.update(users=ld.users, spawn_rate=ld.spawn_rate, duration=ld.duration)
    elif ld.model == "search":
        load["max_in_flight"] = ld.max_in_flight
    else:
        load["stages"] = [{"duration": s.duration, "rate": s.rate, "ramp": s.ramp} for s in ld.stages]
        load["max_in_flight"] = ld.max_in_flight
    if ld.model == "search" or ld.search != SearchSettings():
        load["search"] = _search_dict(ld.search)
    load["processes"] = "auto" if ld.processes == -1 else ld.processes
    load["stop_timeout"] = ld.stop_timeout
    gates: dict[str, Any] = {}
    for gate in scenario.gates:
        key, spec = str(gate.metric), _gate_spec(gate)
        if key not in gates:
            gates[key] = spec
        elif isinstance(gates[key], list):
            gates[key].append(spec)
        else:
            gates[key] = [gates[key], spec]
    return {
        "name": scenario.name,
        "description": scenario.description,
        "target": target,
        "engine": engine,
        "workload": workload,
        "load": load,
        "gates": gates,
    }


def parse_redacted(data: Mapping[str, Any], source: str, base_dir: Path | None = None) -> Scenario:
    """Parse a document written by ``scenario_to_dict(..., redact_secrets=True)``, without its key
    material: what a process that generates load needs (Locust gets the scenario this way)."""
    document = {section: dict(value) if isinstance(value, Mapping) else value for section, value in data.items()}
    for section, key in (("target", "signing_key"), ("target", "verification_key"), ("engine", "api_key")):
        part = document.get(section)
        if isinstance(part, dict):
            part.pop(key, None)
    return parse_scenario(document, source, base_dir)
