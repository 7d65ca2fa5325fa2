"""The scenario model: what a parsed scenario file holds (see :mod:`loadgen.runs.scenario` for the format)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from loadgen.core.arrivals import Stage
from loadgen.engine.settings import EngineSettings
from loadgen.protocol.codecs import NO_VALUE, CallInput
from loadgen.runs.capacity import SearchSettings
from loadgen.runs.gates import Gate, parse_gate

__all__ = [
    "DEFAULT_WORKLOAD",
    "MAX_INPUT_BYTES",
    "PADDING_KEY",
    "Inject",
    "Json",
    "KeyRef",
    "Load",
    "RemoteShards",
    "Scenario",
    "ScenarioError",
    "SearchSettings",
    "Stage",
    "Target",
    "WorkItem",
    "default_scenario",
]

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]

MAX_INPUT_BYTES: Final = 16_000_000
PADDING_KEY: Final = "padding"


class ScenarioError(ValueError):
    """A scenario that cannot be used. ``file``, ``key`` (a key path, ``""`` for the whole file), ``problem``."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(f"{file}: {key}: {problem}" if key else f"{file}: {problem}")


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A secret or key as a scenario names it: ``env`` (a variable name), ``path`` (a file) or ``inline``."""

    kind: Literal["env", "path", "inline"]
    value: str
    file: str = field(default="<scenario>", compare=False)  # where it was written, for messages
    key: str = field(default="", compare=False)

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """The value to hand to :mod:`loadgen.protocol.keys` (or use as the API key): the variable's value,
        the file path or the inline text. :class:`ScenarioError` if the variable is unset or empty."""
        if self.kind != "env":
            return self.value
        env = os.environ if environ is None else environ
        value = env.get(self.value, "")
        if not value:
            raise ScenarioError(self.file, self.key, f"environment variable {self.value} is not set (or empty)")
        return value

    def to_toml(self, redact: bool) -> str:
        if self.kind == "env":
            return "env:" + self.value
        if self.kind == "inline" and redact:
            return "<redacted>"
        return self.value


@dataclass(frozen=True, slots=True)
class Inject:
    """Failure injection on the reference endpoint: each attempt of every function fails with
    probability *rate*, answering *status* (a name without the ``STATUS_`` prefix). For
    ``loadgen endpoint --inject-failure-rate RATE --inject-failure-status STATUS [--seed SEED]``."""

    rate: float
    status: str = "TEMPORARY_ERROR"
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The endpoint under test: the built-in reference endpoint, or *url*."""

    reference: bool = True
    url: str | None = None
    signing_key: KeyRef | None = None
    verification_key: KeyRef | None = None
    inject: Inject | None = None
    sdk: str = "reference"
    """The SDK codec (:mod:`loadgen.protocol.codecs`): how inputs are encoded and outputs decoded."""


@dataclass(frozen=True, slots=True)
class RemoteShards:
    """Shards already running elsewhere (``[engine] addresses``), and the API key they take."""

    addresses: tuple[str, ...]
    api_key: KeyRef | None = None


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One kind of call in the mix: *weight* is its relative share of calls.

    The input is ``input`` (one value: the reference endpoint's table of parameters, a
    dispatch-go value, a raw ``{type_url, base64}``; ``NO_VALUE`` when not given) or ``args``
    and ``kwargs`` (dispatch-py), as the target's SDK takes it. ``expect`` is the output a
    completed call must have (``NO_VALUE``: not checked). Do not mutate the containers.
    """

    function: str
    weight: float = 1.0
    input: Any = field(default_factory=dict, hash=False)
    input_bytes: int = 0
    batch: int = 1
    wait: bool = True
    args: tuple[Json, ...] = ()
    kwargs: dict[str, Json] = field(default_factory=dict, hash=False)
    expect: Any = field(default=NO_VALUE, hash=False)

    @property
    def checks_result(self) -> bool:
        """Whether completed calls are compared with :attr:`expect`."""
        return self.expect is not NO_VALUE

    def call_input(self) -> dict[str, Json]:
        """The reference endpoint's input: ``input`` plus ``{"padding": "x" * input_bytes}`` when input_bytes > 0."""
        base = self.input if isinstance(self.input, dict) else {}
        if not self.input_bytes:
            return dict(base)
        return {**base, PADDING_KEY: "x" * self.input_bytes}

    def call(self) -> CallInput:
        """The input as a codec takes it (with the padding of ``input_bytes``)."""
        if self.input_bytes:
            return CallInput(self.call_input(), self.args, self.kwargs)
        return CallInput(self.input, self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Load:
    """How hard and how long. ``duration`` is the run's length in both models (for the open
    model, the sum of the stages; for the search model, its longest). ``processes`` -1 means one Locust
    process per core. The search model (``"search"``, a capacity search: :mod:`loadgen.runs.capacity`)
    runs steps of the open model at the rates ``search`` sets out."""

    model: Literal["closed", "open", "search"] = "closed"
    users: int = 16
    spawn_rate: float = 16.0
    duration: float = 20.0
    stages: tuple[Stage, ...] = ()
    max_in_flight: int = 1000
    processes: int = 1
    stop_timeout: float = 10.0
    """After the load stops, how long calls still in flight may take to end (then: reported in flight)."""
    search: SearchSettings = field(default_factory=SearchSettings)
    """The capacity search's steps (``[load.search]``), used when ``model`` is ``"search"``."""

    def rate_at(self, t: float) -> float:
        """The open model's target rate (calls/s) *t* seconds into the run; 0 after the last stage."""
        if self.model != "open":
            raise ValueError("rate_at() is for the open model")
        start, previous = 0.0, 0.0
        for stage in self.stages:
            if t < start + stage.duration:
                if not stage.ramp:
                    return stage.rate
                return previous + (stage.rate - previous) * max(t - start, 0.0) / stage.duration
            start, previous = start + stage.duration, stage.rate
        return 0.0


DEFAULT_WORKLOAD: Final[tuple[WorkItem, ...]] = (
    WorkItem("echo", 50, {"message": "hello"}),
    WorkItem("sleep", 15, {"ms": 5}),
    WorkItem("fanout", 15, {"n": 3}),
    WorkItem("chain", 10, {"depth": 3}),
    WorkItem("fail", 10, {"status": "TEMPORARY_ERROR", "times": 2}),
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario. ``source`` is the file it came from (not compared)."""

    name: str = "scenario"
    description: str = ""
    target: Target = field(default_factory=Target)
    engine: EngineSettings = field(default_factory=EngineSettings)
    remote: RemoteShards | None = None
    """Shards already running elsewhere, or ``None``: ``loadgen run`` starts its own with ``engine``."""
    workload: tuple[WorkItem, ...] = DEFAULT_WORKLOAD
    load: Load = field(default_factory=Load)
    gates: tuple[Gate, ...] = ()
    source: str | None = field(default=None, compare=False)


def default_scenario() -> Scenario:
    """The quickstart (``scenarios/quickstart.toml``): the reference endpoint, 2 shards, the
    echo/sleep/fanout/chain/fail mix, 16 closed-loop users for 20 s, and gates that a healthy
    2-core machine passes."""
    gates = (
        parse_gate("lost", "== 0"),
        parse_gate("failed.ratio", "< 1%"),
        parse_gate("rpc.fail_ratio", "< 1%"),
        parse_gate("retries.ratio", "< 0.2"),
        parse_gate("latency.p99", "< 1s"),
        parse_gate("latency.p99{function=echo}", "< 500ms"),
        parse_gate("calls_per_s", "> 50"),
    )
    return Scenario(
        name="quickstart",
        description="Smoke test: the reference endpoint, the quickstart mix, 16 closed-loop users for 20 s.",
        engine=EngineSettings(shards=2, backoff=0.01, max_backoff=0.1),
        load=Load(model="closed", users=16, spawn_rate=16.0, duration=20.0),
        gates=gates,
    )
