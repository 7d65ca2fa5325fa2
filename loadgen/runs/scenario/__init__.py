"""Scenario files: what to load-test, how hard, for how long, and what counts as passing.

A scenario is a TOML file (read with :mod:`tomllib`). Every key is optional unless
marked *required*; an unknown key is an error (with a "did you mean" suggestion).
``scenarios/README.md`` documents the same format with examples.

.. code-block:: toml

    name = "quickstart"                 # default: the file name without .toml
    description = "..."                 # default: ""

    [target]                            # the endpoint under test
    reference = true                    # default: true unless url is set; start the built-in endpoint
    # url = "http://127.0.0.1:8000"     # or your endpoint (http:// or https://)
    # sdk = "dispatch-py"               # how inputs are encoded and outputs read: "reference" (the
    #                                   # default for the reference endpoint), "dispatch-py" (the
    #                                   # default for a url), "dispatch-go" or "raw"
    # signing_key = "env:LOADGEN_SIGNING_KEY"   # base64 seed, PEM text, PEM file path (relative
    #                                   # to this file, else to the current folder) or env:VAR;
    #                                   # default: a new key per run
    # verification_key = "..."          # reference endpoint only: its public key (default: the
    #                                   # signing key's); base64, PEM text, PEM path or env:VAR

    [target.inject]                     # reference endpoint only: fail attempts on purpose
    rate = 0.3                          # required: probability that an attempt fails, 0..1
    status = "TEMPORARY_ERROR"          # default TEMPORARY_ERROR; any failure status
    # seed = 42                         # seed of the endpoint's RNG (default: random)

    [engine]                            # the sharded engine loadgen starts on 127.0.0.1
    shards = 2                          # default "auto" (one per core)
    connections = 2                     # per shard, to the endpoint (default 2)
    max_streams = 100                   # per connection (default 100)
    expiration = "60s"                  # default call expiration (default 60s)
    backoff = "50ms"                    # first retry delay (default 50ms)
    max_backoff = "2s"                  # default 2s; at least backoff
    request_timeout = "30s"             # per endpoint attempt (default 30s)
    http = "auto"                       # "auto", "h2" or "http/1.1"
    # addresses = ["10.0.0.5:4450"]     # or: shards already running elsewhere (none of the keys above)
    # api_key = "env:DISPATCH_API_KEY"  # with addresses only (default: env:DISPATCH_API_KEY)

    [[workload]]                        # one per kind of call; default: the quickstart mix
    function = "echo"                   # required
    weight = 50                         # relative share of calls, > 0 (default 1)
    input = { message = "hello" }       # reference: a table (default {}), checked for its functions;
    #                                   # dispatch-go: one value; raw: { type_url = "...", base64 = "..." }
    input_bytes = 0                     # reference only: add a "padding" string of this size: "4KiB"
    # args = ["bob"]                    # dispatch-py: positional arguments (default [])
    # kwargs = { punct = "!" }          # dispatch-py: keyword arguments (default {})
    # expect = "hello bob!"             # the expected output: a different one counts as wrong
    batch = 1                           # calls per Dispatch RPC, 1..10000 (default 1)
    wait = true                         # wait for each result with the Wait RPC (default true;
    #                                   # expect needs it)

    [load]
    model = "closed"                    # "closed" (default) or "open"
    users = 16                          # closed: concurrent users (default 16)
    spawn_rate = 16                     # closed: users started per second (default: users)
    duration = "20s"                    # closed: run length (default 20s)
    # stages = [{ duration = "1m", rate = 100, ramp = true }, { duration = "8m", rate = 100 }]
    #                                   # open, required: calls per second per stage; ramp = true
    #                                   # goes linearly from the previous stage's rate (0 at first)
    # max_in_flight = 1000              # open: cap on outstanding requests (default 1000)
    processes = 1                       # Locust worker processes, or "auto" (default 1)
    stop_timeout = "10s"                # after the load stops, how long calls in flight may take to
    #                                   # end; those still running then are reported in flight

    [gates]                             # metric = condition (see loadgen.runs.gates for the metrics)
    "e2e.p99" = "< 250ms"
    "rpc.fail_ratio" = "< 1%"
    "e2e.p99{function=echo}" = { condition = "< 50ms", abort_on_fail = true, delay = "10s" }
    "retries.ratio" = ["> 0.2", "< 0.4"]    # several conditions on one metric

Durations are strings with units ``us``/``µs``, ``ms``, ``s``, ``m``, ``h`` (``"1m30s"``,
``"1.5s"``) or plain numbers of seconds. Sizes are integers (bytes) or strings with
``B``, ``KB``, ``KiB``, ``MB``, ``MiB``.

Errors are :class:`ScenarioError`: the message names the file, the key path
(``workload[2].weight``; arrays count from 0) and what was expected, such as
``quick.toml: workload[2].weight: expected a positive number, got -1``.

A pure module: :func:`load_scenario` reads the scenario file and, to check them, PEM key
files it names; nothing else does IO.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from loadgen.endpoint.functions import (
    FUNCTION_NAMES,
    MAX_CHAIN_DEPTH,
    MAX_FANOUT,
    MAX_PAYLOAD_BYTES,
    MAX_SLEEP_MS,
)
from loadgen.pb import status_pb2
from loadgen.protocol.codecs import CODEC_NAMES, NO_VALUE, CallInput, CodecError, get_codec
from loadgen.protocol.keys import load_private_key, load_public_key
from loadgen.runs.gates import Gate, GateSyntaxError, parse_gate, suggest

__all__ = [
    "DEFAULT_WORKLOAD",
    "FAILURE_STATUSES",
    "MAX_BATCH",
    "MAX_INPUT_BYTES",
    "PADDING_KEY",
    "Engine",
    "Inject",
    "KeyRef",
    "Load",
    "Scenario",
    "ScenarioError",
    "Stage",
    "Target",
    "WorkItem",
    "default_scenario",
    "load_scenario",
    "loads_scenario",
    "parse_duration",
    "parse_scenario",
    "parse_size",
    "scenario_to_dict",
]

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]

MAX_BATCH: Final = 10_000  # the Dispatch API's limit on calls per batch
MAX_INPUT_BYTES: Final = 16_000_000
MAX_DURATION_S: Final = 7 * 24 * 3600.0
PADDING_KEY: Final = "padding"
STATUS_NAMES: Final[tuple[str, ...]] = tuple(
    name.removeprefix("STATUS_") for name, _ in status_pb2.Status.items() if name != "STATUS_UNSPECIFIED"
)
FAILURE_STATUSES: Final[tuple[str, ...]] = tuple(name for name in STATUS_NAMES if name != "OK")
HTTP_MODES: Final = ("auto", "h2", "http/1.1")
_FUNCTION_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_<>.]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|µs|μs|ms|s|m|h)")
_DURATION_UNITS: Final[dict[str, float]] = {
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib)?\s*", re.IGNORECASE)
_SIZE_UNITS: Final[dict[str, int]] = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1_000_000, "mib": 1 << 20}


class ScenarioError(ValueError):
    """A scenario that cannot be used. ``file``, ``key`` (a key path, ``""`` for the whole file), ``problem``."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(f"{file}: {key}: {problem}" if key else f"{file}: {problem}")


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


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
class Engine:
    """The engine's options, or the *addresses* of shards already running elsewhere.

    ``shards`` None means one per core. With *addresses*, the other options do not
    apply (those shards run with their own) and ``api_key`` is their API key.
    """

    shards: int | None = None
    connections: int = 2
    max_streams: int = 100
    expiration: float = 60.0
    backoff: float = 0.05
    max_backoff: float = 2.0
    request_timeout: float = 30.0
    http: str = "auto"
    addresses: tuple[str, ...] = ()
    api_key: KeyRef | None = None

    @property
    def remote(self) -> bool:
        """Whether the scenario drives shards already running elsewhere."""
        return bool(self.addresses)


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
class Stage:
    """An open-model stage: *rate* calls per second for *duration* seconds; with *ramp*, the rate
    goes linearly from the previous stage's rate (0 for the first stage) to *rate*."""

    duration: float
    rate: float
    ramp: bool = False


@dataclass(frozen=True, slots=True)
class Load:
    """How hard and how long. ``duration`` is the run's length in both models (for the open
    model, the sum of the stages). ``processes`` -1 means one Locust process per core."""

    model: Literal["closed", "open"] = "closed"
    users: int = 16
    spawn_rate: float = 16.0
    duration: float = 20.0
    stages: tuple[Stage, ...] = ()
    max_in_flight: int = 1000
    processes: int = 1
    stop_timeout: float = 10.0
    """After the load stops, how long calls still in flight may take to end (then: reported in flight)."""

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
    engine: Engine = field(default_factory=Engine)
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
        parse_gate("e2e.p99", "< 1s"),
        parse_gate("e2e.p99{function=echo}", "< 500ms"),
        parse_gate("calls_per_s", "> 50"),
    )
    return Scenario(
        name="quickstart",
        description="Smoke test: the reference endpoint, the quickstart mix, 16 closed-loop users for 20 s.",
        engine=Engine(shards=2, backoff=0.01, max_backoff=0.1),
        load=Load(model="closed", users=16, spawn_rate=16.0, duration=20.0),
        gates=gates,
    )


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    """A value as the error message shows it: TOML spelling for scalars, a type for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return "a date/time"
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


def parse_duration(value: object) -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"1m30s"``, ``"250ms"``, ``"1.5h"`` or a number of seconds.

    ``ValueError`` (saying what was expected) for anything else or a negative/non-finite value.
    """
    expected = 'a duration such as "30s", "5m", "250ms" or a number of seconds'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {expected}, got {_describe(value)}")
    if isinstance(value, str):
        text, position, total = value.strip(), 0, 0.0
        while position < len(text):
            match = _DURATION_PART.match(text, position)
            if match is None:
                raise ValueError(f"expected {expected}, got {_describe(value)}")
            total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            position = match.end()
        if not text:
            raise ValueError(f"expected {expected}, got {_describe(value)}")
        seconds = total
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {expected} (not negative), got {_describe(value)}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or ``"512B"``, ``"4KB"``, ``"4KiB"``, ``"1MB"``, ``"1.5MiB"``; ``ValueError`` else."""
    expected = 'a size: a number of bytes or a string such as "4KiB" or "1MB"'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {expected}, got {_describe(value)}")
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ValueError(f"expected {expected}, got {_describe(value)}")
        number = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    else:
        number = float(value)
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise ValueError(f"expected {expected} (a whole, non-negative number of bytes), got {_describe(value)}")
    return int(number)


def _key(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _BARE_KEY.fullmatch(key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------


class _Parser:
    """Checks a TOML document against the schema, raising :class:`ScenarioError` at the first problem."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, path: str, problem: str) -> ScenarioError:
        return ScenarioError(self.source, path, problem)

    # -- shapes ------------------------------------------------------------------------------

    def table(self, path: str, value: object, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {_describe(value)}")
        names = tuple(allowed)
        for key in value:
            if key not in names:
                raise self.fail(
                    _key(path, key),
                    f"unknown key{suggest(key, names)}; expected one of: {', '.join(names)}",
                )
        return value

    def string(self, path: str, value: object, *, nonempty: bool = True) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_describe(value)}")
        if nonempty and not value.strip():
            raise self.fail(path, "expected a non-empty string")
        return value

    def boolean(self, path: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, path: str, value: object, low: int, high: int, what: str = "") -> int:
        expected = what or f"an integer from {low} to {high}"
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None or not low <= number <= high:
            raise self.fail(path, f"expected {expected}, got {_describe(value)}")
        return number

    def number(self, path: str, value: object, *, low: float = 0.0, high: float = math.inf, positive: bool) -> float:
        what = "a positive number" if positive else f"a number from {low:g} to {high:g}"
        if positive and high != math.inf:
            what = f"a positive number up to {high:g}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected {what}, got {_describe(value)}")
        number = float(value)
        if not math.isfinite(number) or number < low or number > high or (positive and number <= 0):
            raise self.fail(path, f"expected {what}, got {_describe(value)}")
        return number

    def duration(self, path: str, value: object, *, allow_zero: bool = False) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None
        if (seconds == 0 and not allow_zero) or seconds > MAX_DURATION_S:
            bound = "at most 7 days" if seconds else "longer than 0"
            raise self.fail(path, f"expected a duration {bound}, got {_describe(value)}")
        return seconds

    def choice(self, path: str, value: object, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            hint = suggest(value, choices) if isinstance(value, str) else ""
            shown = ", ".join(f'"{c}"' for c in choices)
            raise self.fail(path, f"expected one of {shown}, got {_describe(value)}{hint}")
        return value

    def status(self, path: str, value: object, choices: tuple[str, ...] = FAILURE_STATUSES) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a status name such as TEMPORARY_ERROR, got {_describe(value)}")
        name = value.strip().upper().removeprefix("STATUS_")
        if name not in choices:
            what = "a failure status" if "OK" not in choices else "a status"
            raise self.fail(
                path,
                f"expected {what} ({', '.join(choices)}), got {_describe(value)}{suggest(name, choices)}",
            )
        return name

    def json_value(self, path: str, value: object) -> Json:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            if not -(2**63) <= value < 2**64:
                raise self.fail(path, f"expected an integer that fits in 64 bits, got {value}")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(path, f"expected a finite number, got {_describe(value)}")
            return value
        if isinstance(value, list):
            return [self.json_value(_key(path, i), item) for i, item in enumerate(value)]
        if isinstance(value, dict):
            out: dict[str, Json] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.fail(path, f"expected string keys, got {_describe(key)}")
                out[key] = self.json_value(_key(path, key), item)
            return out
        raise self.fail(path, f"expected a string, number, boolean, array or table, got {_describe(value)}")

    def key_ref(self, path: str, value: object, kind: Literal["private", "public", "api"]) -> KeyRef:
        text = self.string(path, value)
        where = {"file": self.source, "key": path}
        if text.startswith("env:"):
            name = text[4:]
            if not _ENV_NAME.fullmatch(name):
                raise self.fail(
                    path, f'expected "env:NAME" with NAME an environment variable name, got {_describe(text)}'
                )
            return KeyRef("env", name, **where)
        if kind == "api":
            return KeyRef("inline", text, **where)
        load: Callable[[str, str], object] = load_private_key if kind == "private" else load_public_key
        expected = (
            f"expected base64 of a raw 32-byte Ed25519 {'seed' if kind == 'private' else 'public key'}, "
            "PEM text, a PEM file path or env:VAR"
        )
        file = self.key_file(text)
        if file is not None:
            try:
                load(str(file), path)
            except (ValueError, OSError) as exc:
                raise self.fail(path, f"{expected}: {_key_problem(exc)}") from None
            return KeyRef("path", str(file), **where)
        try:
            load(text, path)
        except ValueError as exc:
            looks_like_path = text.endswith(".pem") or (len(text) < 256 and "\n" not in text and "/" in text)
            no_file = "; there is no file at that path" if looks_like_path else ""
            raise self.fail(path, f"{expected}: {_key_problem(exc)}{no_file}") from None
        return KeyRef("inline", text, **where)

    def key_file(self, text: str) -> Path | None:
        """The key file *text* names (relative to the scenario's folder, else to the current one), if any."""
        if "-----BEGIN" in text or "\n" in text or len(text) > 4096:
            return None
        candidate = Path(text.strip()).expanduser()
        tries = (
            [candidate] if candidate.is_absolute() or self.base_dir is None else [self.base_dir / candidate, candidate]
        )
        for option in tries:
            try:
                if option.is_file():
                    return option.resolve()
            except OSError:
                return None
        return None

    # -- sections ----------------------------------------------------------------------------

    def scenario(self, data: Mapping[str, Any], default_name: str) -> Scenario:
        doc = self.table("", dict(data), ("name", "description", "target", "engine", "workload", "load", "gates"))
        name = self.string("name", doc.get("name", default_name)).strip()
        if len(name) > 100 or any(ord(c) < 32 for c in name):
            raise self.fail("name", f"expected a name of at most 100 printable characters, got {_describe(name)}")
        description = self.string("description", doc.get("description", ""), nonempty=False)
        engine = self.engine(doc.get("engine", {}))
        target = self.target(doc.get("target", {}), engine)
        workload = self.workload(doc.get("workload"), target)
        load = self.load(doc.get("load", {}))
        gates = self.gates(doc.get("gates", {}), target)
        return Scenario(name, description, target, engine, workload, load, gates, self.source)

    def target(self, value: object, engine: Engine) -> Target:
        t = self.table("target", value, ("reference", "url", "sdk", "signing_key", "verification_key", "inject"))
        url: str | None = None
        if "url" in t:
            url = self.string("target.url", t["url"]).strip()
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.fail("target.url", f"expected an http:// or https:// URL, got {_describe(url)}")
            url = url.rstrip("/")
        reference = self.boolean("target.reference", t.get("reference", url is None))
        if reference and url is not None:
            raise self.fail("target.url", "not allowed with target.reference = true (choose one of them)")
        if not reference and url is None:
            raise self.fail("target.url", "required when target.reference is false")
        signing = self.key_ref("target.signing_key", t["signing_key"], "private") if "signing_key" in t else None
        verification: KeyRef | None = None
        if "verification_key" in t:
            if not reference:
                raise self.fail("target.verification_key", "only for the reference endpoint (target.reference = true)")
            verification = self.key_ref("target.verification_key", t["verification_key"], "public")
        inject: Inject | None = None
        if "inject" in t:
            if not reference:
                raise self.fail("target.inject", "only for the reference endpoint (target.reference = true)")
            i = self.table("target.inject", t["inject"], ("rate", "status", "seed"))
            if "rate" not in i:
                raise self.fail("target.inject.rate", "required: the probability that an attempt fails, 0..1")
            rate = self.number("target.inject.rate", i["rate"], low=0.0, high=1.0, positive=False)
            status = self.status("target.inject.status", i.get("status", "TEMPORARY_ERROR"))
            seed = self.integer("target.inject.seed", i["seed"], 0, 2**63 - 1) if "seed" in i else None
            inject = Inject(rate, status, seed)
        if engine.remote:
            for key in ("signing_key", "verification_key", "inject"):
                if key in t:
                    raise self.fail(
                        f"target.{key}", "not used with engine.addresses: the remote shards run with their own setup"
                    )
        sdk = self.choice("target.sdk", t.get("sdk", "reference" if reference else "dispatch-py"), CODEC_NAMES)
        if reference and sdk != "reference":
            raise self.fail("target.sdk", 'the reference endpoint takes sdk = "reference" (or set target.url)')
        return Target(reference, url, signing, verification, inject, sdk)

    def engine(self, value: object) -> Engine:
        local = ("shards", "connections", "max_streams", "expiration", "backoff", "max_backoff", "request_timeout")
        e = self.table("engine", value, (*local, "http", "addresses", "api_key"))
        if "addresses" in e:
            for key in (*local, "http"):
                if key in e:
                    raise self.fail(
                        f"engine.{key}", "not allowed with engine.addresses: those shards run with their own options"
                    )
            raw = e["addresses"]
            if not isinstance(raw, list) or not raw:
                raise self.fail("engine.addresses", f'expected a non-empty array of "host:port", got {_describe(raw)}')
            addresses = tuple(self.address(f"engine.addresses[{i}]", item) for i, item in enumerate(raw))
            api_key = self.key_ref("engine.api_key", e["api_key"], "api") if "api_key" in e else None
            if api_key is None:
                api_key = KeyRef("env", "DISPATCH_API_KEY", self.source, "engine.api_key")
            return Engine(addresses=addresses, api_key=api_key)
        if "api_key" in e:
            raise self.fail("engine.api_key", "only with engine.addresses (a local engine makes its own key)")
        shards: int | None = None
        if e.get("shards", "auto") != "auto":
            shards = self.integer("engine.shards", e["shards"], 1, 255, 'a number of shards from 1 to 255 or "auto"')
        backoff = self.duration("engine.backoff", e.get("backoff", 0.05))
        max_backoff = self.duration("engine.max_backoff", e.get("max_backoff", max(2.0, backoff)))
        if max_backoff < backoff:
            raise self.fail(
                "engine.max_backoff",
                f"expected at least engine.backoff ({backoff:g}s), got {_describe(e['max_backoff'])}",
            )
        return Engine(
            shards=shards,
            connections=self.integer("engine.connections", e.get("connections", 2), 1, 1000),
            max_streams=self.integer("engine.max_streams", e.get("max_streams", 100), 1, 100_000),
            expiration=self.duration("engine.expiration", e.get("expiration", 60.0)),
            backoff=backoff,
            max_backoff=max_backoff,
            request_timeout=self.duration("engine.request_timeout", e.get("request_timeout", 30.0)),
            http=self.choice("engine.http", e.get("http", "auto"), HTTP_MODES),
        )

    def address(self, path: str, value: object) -> str:
        text = self.string(path, value).strip()
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        valid_host = bool(host) and not any(c in host for c in "/ @?#") and (":" not in host or text.startswith("["))
        if not sep or not valid_host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise self.fail(path, f'expected "host:port" (IPv6 as "[::1]:4450"), got {_describe(value)}')
        return text

    def workload(self, value: object, target: Target) -> tuple[WorkItem, ...]:
        if value is None:
            if not target.reference:
                raise self.fail(
                    "workload", "required: at least one [[workload]] when the target is not the reference endpoint"
                )
            return DEFAULT_WORKLOAD
        if not isinstance(value, list) or not value:
            raise self.fail("workload", f"expected one or more [[workload]] tables, got {_describe(value)}")
        return tuple(self.work_item(f"workload[{i}]", item, target) for i, item in enumerate(value))

    def work_item(self, path: str, value: object, target: Target) -> WorkItem:
        keys = ("function", "weight", "input", "input_bytes", "args", "kwargs", "batch", "wait", "expect")
        w = self.table(path, value, keys)
        if "function" not in w:
            raise self.fail(f"{path}.function", "required: the name of the function to call")
        function = self.function_name(f"{path}.function", w["function"], target)
        weight = self.number(f"{path}.weight", w.get("weight", 1), positive=True)
        sdk = target.sdk
        self.keys_for_sdk(path, w, sdk)
        call_input: Any = NO_VALUE
        if "input" in w:
            call_input = self.json_value(f"{path}.input", w["input"])
        input_bytes = 0
        if sdk == "reference":
            if call_input is NO_VALUE:
                call_input = {}
            if not isinstance(call_input, dict):
                raise self.fail(f"{path}.input", f"expected a table of parameters, got {_describe(w['input'])}")
            try:
                input_bytes = parse_size(w.get("input_bytes", 0))
            except ValueError as exc:
                raise self.fail(f"{path}.input_bytes", str(exc)) from None
            if input_bytes > MAX_INPUT_BYTES:
                raise self.fail(f"{path}.input_bytes", f"expected at most {MAX_INPUT_BYTES} bytes, got {input_bytes}")
            if input_bytes and PADDING_KEY in call_input:
                raise self.fail(f"{path}.input.{PADDING_KEY}", "reserved for input_bytes (which adds it)")
            if target.reference:
                self.reference_input(f"{path}.input", function, call_input, target)
        args: tuple[Json, ...] = ()
        kwargs: dict[str, Json] = {}
        if "args" in w:
            raw_args = w["args"]
            if not isinstance(raw_args, list):
                raise self.fail(f"{path}.args", f"expected an array of arguments, got {_describe(raw_args)}")
            args = tuple(self.json_value(f"{path}.args[{i}]", item) for i, item in enumerate(raw_args))
        if "kwargs" in w:
            raw_kwargs = w["kwargs"]
            if not isinstance(raw_kwargs, dict):
                raise self.fail(f"{path}.kwargs", f"expected a table of keyword arguments, got {_describe(raw_kwargs)}")
            for name in raw_kwargs:
                if not name.isidentifier():
                    raise self.fail(_key(f"{path}.kwargs", name), "expected a Python identifier as keyword")
            kwargs = {name: self.json_value(_key(f"{path}.kwargs", name), item) for name, item in raw_kwargs.items()}
        batch = self.integer(f"{path}.batch", w.get("batch", 1), 1, MAX_BATCH)
        wait = self.boolean(f"{path}.wait", w.get("wait", True))
        expect: Any = NO_VALUE
        if "expect" in w:
            if not wait:
                raise self.fail(
                    f"{path}.expect", "needs wait = true: a result is only checked when the call is waited for"
                )
            expect = self.json_value(f"{path}.expect", w["expect"])
        item = WorkItem(function, weight, call_input, input_bytes, batch, wait, args, kwargs, expect)
        try:
            get_codec(sdk).encode(item.call())
        except CodecError as exc:
            raise self.fail(f"{path}.{exc.key}" if exc.key else path, exc.problem) from None
        return item

    def keys_for_sdk(self, path: str, w: Mapping[str, Any], sdk: str) -> None:
        """Keys that do not fit the target's SDK are errors that say what to write instead."""
        if sdk == "dispatch-py":
            if "input" in w:
                raise self.fail(
                    f"{path}.input",
                    'with sdk = "dispatch-py" a call takes args = [...] and kwargs = { ... } (the function\'s '
                    'arguments), not input; for an endpoint that takes one input value, set [target] sdk = '
                    '"reference" (loadgen\'s endpoint), "dispatch-go" or "raw"',
                )
            if "input_bytes" in w:
                raise self.fail(
                    f"{path}.input_bytes",
                    'pads the reference endpoint\'s input table; with sdk = "dispatch-py" put the payload in args or '
                    "kwargs",
                )
            return
        for key in ("args", "kwargs"):
            if key in w:
                raise self.fail(
                    f"{path}.{key}",
                    f'{key} are for sdk = "dispatch-py"; with sdk = "{sdk}" a call takes one input = ...',
                )
        if sdk != "reference" and "input_bytes" in w:
            raise self.fail(
                f"{path}.input_bytes", f'pads the reference endpoint\'s input table; not used with sdk = "{sdk}"'
            )

    def function_name(self, path: str, value: object, target: Target) -> str:
        name = self.string(path, value)
        if not _FUNCTION_NAME.fullmatch(name):
            raise self.fail(
                path, f"expected a function name matching ^[a-zA-Z_][a-zA-Z0-9_<>.]*$, got {_describe(name)}"
            )
        if target.reference and name not in FUNCTION_NAMES:
            raise self.fail(
                path,
                f"expected a function of the reference endpoint ({', '.join(FUNCTION_NAMES)}),"
                f" got {_describe(name)}{suggest(name, FUNCTION_NAMES)}",
            )
        return name

    def reference_input(self, path: str, function: str, params: dict[str, Json], target: Target) -> None:
        """The parameters the reference endpoint would refuse (or ignore: a typo) are errors here."""
        specs: dict[str, Callable[[str, Json], object]]
        count = 2**31 - 1
        if function == "echo":
            return
        if function == "sleep":
            specs = {"ms": lambda p, v: self.integer(p, v, 0, MAX_SLEEP_MS)}
        elif function == "fail":
            specs = {
                "status": lambda p, v: self.status(p, v),
                "times": lambda p, v: self.integer(p, v, 0, count),
                "rate": lambda p, v: self.number(p, v, low=0.0, high=1.0, positive=False),
            }
        elif function == "fanout":
            specs = {
                "n": lambda p, v: self.integer(p, v, 0, MAX_FANOUT),
                "function": lambda p, v: self.string(p, v),
                "input": lambda p, v: v,
                "endpoint": lambda p, v: self.string(p, v, nonempty=False),
                "min_results": lambda p, v: self.integer(p, v, 0, MAX_FANOUT),
                "typed_state": lambda p, v: self.boolean(p, v),
            }
        elif function == "chain":
            specs = {"depth": lambda p, v: self.integer(p, v, 0, MAX_CHAIN_DEPTH)}
        else:  # payload
            specs = {"bytes": lambda p, v: self.integer(p, v, 0, MAX_PAYLOAD_BYTES)}
        for key, item in params.items():
            if key == PADDING_KEY:
                continue
            if key not in specs:
                raise self.fail(
                    _key(path, key),
                    f"unknown parameter of {function}{suggest(key, specs)}; it takes {', '.join(specs)}",
                )
            specs[key](_key(path, key), item)
        if function == "fanout" and not params.get("endpoint"):
            child = params.get("function", "echo")
            self.function_name(_key(path, "function"), child, target)

    def load(self, value: object) -> Load:
        closed_keys = ("users", "spawn_rate", "duration")
        open_keys = ("stages", "max_in_flight")
        ld = self.table("load", value, ("model", *closed_keys, *open_keys, "processes", "stop_timeout"))
        stop_timeout = self.duration("load.stop_timeout", ld.get("stop_timeout", 10.0), allow_zero=True)
        if stop_timeout > 3600:
            raise self.fail("load.stop_timeout", f"expected at most 1h, got {_describe(ld['stop_timeout'])}")
        model = self.choice("load.model", ld.get("model", "closed"), ("closed", "open"))
        processes = 1
        if "processes" in ld:
            what = 'a number of processes from 1 to 1024 or "auto"'
            raw = ld["processes"]
            processes = -1 if raw == "auto" else self.integer("load.processes", raw, 1, 1024, what)
        if model == "closed":
            for key in open_keys:
                if key in ld:
                    raise self.fail(f"load.{key}", 'only with load.model = "open"')
            users = self.integer("load.users", ld.get("users", 16), 1, 1_000_000)
            spawn_rate = self.number("load.spawn_rate", ld.get("spawn_rate", users), positive=True, high=1e6)
            duration = self.duration("load.duration", ld.get("duration", 20.0))
            return Load("closed", users, spawn_rate, duration, processes=processes, stop_timeout=stop_timeout)
        for key in closed_keys:
            if key in ld:
                raise self.fail(
                    f"load.{key}", 'only with load.model = "closed" (the open model runs for the sum of its stages)'
                )
        if "stages" not in ld:
            raise self.fail("load.stages", 'required with load.model = "open": [{ duration = "1m", rate = 100 }, ...]')
        raw = ld["stages"]
        if not isinstance(raw, list) or not raw:
            raise self.fail(
                "load.stages", f"expected a non-empty array of {{ duration, rate }} tables, got {_describe(raw)}"
            )
        stages = tuple(self.stage(f"load.stages[{i}]", item) for i, item in enumerate(raw))
        total = sum(stage.duration for stage in stages)
        if total > MAX_DURATION_S:
            raise self.fail("load.stages", f"expected at most 7 days in all, got {total:g}s")
        max_in_flight = self.integer("load.max_in_flight", ld.get("max_in_flight", 1000), 1, 10_000_000)
        return Load(
            "open",
            duration=total,
            stages=stages,
            max_in_flight=max_in_flight,
            processes=processes,
            stop_timeout=stop_timeout,
        )

    def stage(self, path: str, value: object) -> Stage:
        s = self.table(path, value, ("duration", "rate", "ramp"))
        for key in ("duration", "rate"):
            if key not in s:
                raise self.fail(f"{path}.{key}", "required in every stage")
        rate = self.number(f"{path}.rate", s["rate"], low=0.0, high=1e7, positive=False)
        return Stage(
            self.duration(f"{path}.duration", s["duration"]), rate, self.boolean(f"{path}.ramp", s.get("ramp", False))
        )

    def gates(self, value: object, target: Target) -> tuple[Gate, ...]:
        if not isinstance(value, dict):
            raise self.fail("gates", f"expected a table of metric = condition, got {_describe(value)}")
        out: list[Gate] = []
        for metric, spec in value.items():
            path = _key("gates", metric)
            if isinstance(spec, dict) and spec and not set(spec) & {"condition", "abort_on_fail", "delay"}:
                inner = next(iter(spec))
                raise self.fail(
                    _key(path, inner),
                    "expected a condition; TOML reads an unquoted dotted key as nested tables, so quote the"
                    f' metric name: "{metric}.{inner}" = "< 250ms"',
                )
            specs = spec if isinstance(spec, list) else [spec]
            if not specs:
                raise self.fail(path, "expected a condition, got an empty array")
            for i, item in enumerate(specs):
                out.append(self.gate(f"{path}[{i}]" if isinstance(spec, list) else path, metric, item, target))
        return tuple(out)

    def gate(self, path: str, metric: str, spec: object, target: Target) -> Gate:
        abort, delay = False, 0.0
        if isinstance(spec, dict):
            g = self.table(path, spec, ("condition", "abort_on_fail", "delay"))
            if "condition" not in g:
                raise self.fail(f"{path}.condition", 'required, such as "< 250ms"')
            condition = g["condition"]
            abort = self.boolean(f"{path}.abort_on_fail", g.get("abort_on_fail", False))
            delay = self.duration(f"{path}.delay", g.get("delay", 0.0), allow_zero=True)
        elif isinstance(spec, str):
            condition = spec
        else:
            raise self.fail(
                path,
                'expected a condition such as "< 250ms", a table { condition = ..., abort_on_fail = ..., delay = ... }'
                f" or an array of them, got {_describe(spec)}",
            )
        if not isinstance(condition, str):
            raise self.fail(f"{path}.condition", f'expected a condition such as "< 250ms", got {_describe(condition)}')
        try:
            gate = parse_gate(metric, condition, abort, delay)
        except GateSyntaxError as exc:
            raise self.fail(path, str(exc)) from None
        function = gate.metric.label("function")
        if function is not None and target.reference and function not in FUNCTION_NAMES:
            raise self.fail(
                path,
                f"expected a function of the reference endpoint in the scope ({', '.join(FUNCTION_NAMES)}),"
                f" got {_describe(function)}{suggest(function, FUNCTION_NAMES)}",
            )
        status = gate.metric.label("status")
        if status is not None and gate.metric.family != "rpc" and status not in STATUS_NAMES:
            raise self.fail(
                path,
                f"expected a status in the scope ({', '.join(STATUS_NAMES)}), got {_describe(status)}"
                f"{suggest(status, STATUS_NAMES)}",
            )
        return gate


def _key_problem(exc: BaseException) -> str:
    """The reason from a :mod:`loadgen.protocol.keys` error, without its ``source:`` prefix (never key material)."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """A :class:`Scenario` from a parsed TOML document; *source* names it in errors, *base_dir*
    resolves relative key file paths. :class:`ScenarioError` if anything is wrong."""
    default_name = Path(source).stem if source.endswith(".toml") else "scenario"
    return _Parser(source, base_dir).scenario(data, default_name or "scenario")


def loads_scenario(text: str, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """A :class:`Scenario` from TOML *text* (see :func:`parse_scenario`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, "", f"TOML syntax error: {exc}") from None
    return parse_scenario(data, source, base_dir)


def load_scenario(path: str | Path) -> Scenario:
    """Read and check the scenario file at *path*; :class:`ScenarioError` if it cannot be used."""
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(str(path), "", f"not UTF-8 text (byte {exc.start})") from None
    return loads_scenario(text, str(path), file.parent)


# ---------------------------------------------------------------------------------------------
# Back to a document
# ---------------------------------------------------------------------------------------------


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
    e = scenario.engine
    engine: dict[str, Any]
    if e.remote:
        engine = {"addresses": list(e.addresses)}
        if e.api_key is not None:
            engine["api_key"] = e.api_key.to_toml(redact_secrets)
    else:
        engine = {
            "shards": "auto" if e.shards is None else e.shards,
            "connections": e.connections,
            "max_streams": e.max_streams,
            "expiration": e.expiration,
            "backoff": e.backoff,
            "max_backoff": e.max_backoff,
            "request_timeout": e.request_timeout,
            "http": e.http,
        }
    workload = [_work_item_dict(w, t.sdk) for w in scenario.workload]
    ld = scenario.load
    load: dict[str, Any] = {"model": ld.model}
    if ld.model == "closed":
        load.update(users=ld.users, spawn_rate=ld.spawn_rate, duration=ld.duration)
    else:
        load["stages"] = [{"duration": s.duration, "rate": s.rate, "ramp": s.ramp} for s in ld.stages]
        load["max_in_flight"] = ld.max_in_flight
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
