"""The reference endpoint's functions and their parameters, one copy: the endpoint reads its inputs
with it and ``loadgen run`` checks a scenario's inputs with it (pure, no IO).

Every parameter is optional; :func:`read` gives a parameter's value from an input table (its
default when absent or null) or raises :class:`ParamError` saying what was expected. A new
parameter is one :class:`Param` in :data:`FUNCTIONS`; a new function is one entry there and
its implementation in :mod:`loadgen.endpoint.functions`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from loadgen.core.text import describe, suggest
from loadgen.protocol.constants import FUNCTION_NAME
from loadgen.protocol.status import FAILURE_STATUSES, parse_failure_status

__all__ = [
    "FUNCTIONS",
    "FUNCTION_NAMES",
    "MAX_CHAIN_DEPTH",
    "MAX_FANOUT",
    "MAX_PAYLOAD_BYTES",
    "MAX_SLEEP_MS",
    "Param",
    "ParamError",
    "check_input",
    "read",
]

MAX_SLEEP_MS: Final = 300_000
MAX_PAYLOAD_BYTES: Final = 16_000_000
MAX_FANOUT: Final = 10_000
MAX_CHAIN_DEPTH: Final = 1_000_000
MAX_TIMES: Final = 2**31 - 1

Kind = Literal["integer", "rate", "status", "function", "string", "boolean", "any"]


class ParamError(ValueError):
    """A parameter value the reference endpoint refuses: ``param`` names it, ``problem`` says what was expected."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a reference function: its kind, default and bounds."""

    name: str
    kind: Kind
    default: Any = None
    low: int = 0
    high: int = 0

    def check(self, value: object) -> Any:
        """*value* as the function uses it; :class:`ParamError` if it is not one it takes."""
        kind = self.kind
        if kind == "integer":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value != int(value)
                or not self.low <= int(value) <= self.high
            ):
                expected = f"expected an integer from {self.low} to {self.high}"
                raise ParamError(self.name, f"{expected}, got {describe(value)}")
            return int(value)
        if kind == "rate":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ParamError(self.name, f"expected a number from 0 to 1, got {describe(value)}")
            return float(value)
        if kind == "status":
            try:
                return parse_failure_status(value)
            except ValueError:
                name = value.strip().upper().removeprefix("STATUS_") if isinstance(value, str) else ""
                raise ParamError(
                    self.name,
                    f"expected a failure status ({', '.join(FAILURE_STATUSES)}), got {describe(value)}"
                    + (suggest(name, FAILURE_STATUSES) if name else ""),
                ) from None
        if kind in ("string", "function"):
            if not isinstance(value, str):
                raise ParamError(self.name, f"expected a string, got {describe(value)}")
            if kind == "function" and not FUNCTION_NAME.fullmatch(value):
                expected = f"expected a function name matching {FUNCTION_NAME.pattern}"
                raise ParamError(self.name, f"{expected}, got {describe(value)}")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ParamError(self.name, f"expected true or false, got {describe(value)}")
            return value
        return value


FUNCTIONS: Final[dict[str, tuple[Param, ...] | None]] = {
    "echo": None,  # any input, not decoded
    "sleep": (Param("ms", "integer", 10, 0, MAX_SLEEP_MS),),
    "fail": (
        Param("status", "status", parse_failure_status("TEMPORARY_ERROR")),
        Param("times", "integer", 1, 0, MAX_TIMES),
        Param("rate", "rate"),
    ),
    "fanout": (
        Param("n", "integer", 3, 0, MAX_FANOUT),
        Param("function", "function", "echo"),
        Param("input", "any"),
        Param("endpoint", "string", ""),
        Param("min_results", "integer", None, 0, MAX_FANOUT),  # default: n
        Param("typed_state", "boolean", False),
    ),
    "chain": (Param("depth", "integer", 3, 0, MAX_CHAIN_DEPTH),),
    "payload": (Param("bytes", "integer", 1024, 0, MAX_PAYLOAD_BYTES),),
}
"""Every reference function and its parameters (``None``: the input is not read at all)."""

FUNCTION_NAMES: Final[tuple[str, ...]] = tuple(FUNCTIONS)

_PARAMS: Final[dict[str, dict[str, Param]]] = {
    name: {p.name: p for p in params} for name, params in FUNCTIONS.items() if params is not None
}


def read(function: str, params: Mapping[str, Any], name: str) -> Any:
    """Parameter *name* of *function* from *params*: its checked value, or its default when absent or null."""
    spec = _PARAMS[function][name]
    value = params.get(name)
    return spec.default if value is None else spec.check(value)


def check_input(function: str, params: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> None:
    """Every parameter in *params* is one *function* takes, with a value it takes (the keys in *ignore* aside).

    :class:`ParamError` for the first that is not (an unknown one: "did you mean"). The endpoint
    itself ignores unknown parameters; a scenario names them (a typo would silently do nothing).
    """
    specs = _PARAMS.get(function)
    if specs is None:
        return
    for key, value in params.items():
        if key in ignore:
            continue
        spec = specs.get(key)
        if spec is None:
            raise ParamError(key, f"unknown parameter of {function}{suggest(key, specs)}; it takes {', '.join(specs)}")
        spec.check(value)
