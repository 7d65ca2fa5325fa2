"""The engine's settings, one copy: ``loadgen serve``'s flags, a scenario's ``[engine]`` keys and each
shard's configuration all derive from :class:`EngineSettings` and the catalogue :data:`SETTINGS`.

A new setting is one field of :class:`EngineSettings` and one :class:`Setting` in :data:`SETTINGS`
(its kind, bounds and help); the flag (``--max-streams``), the scenario key (``max_streams``) and
their checks follow. ``tests/engine/test_settings.py`` fails when the three drift apart.

Also here: :class:`EngineSetup`, what a supervisor is started with (where the engine serves,
which endpoint it drives, its keys, and the settings).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from loadgen.core.admission import AdmissionLimits
from loadgen.core.chaos import Chaos
from loadgen.core.text import describe, suggest
from loadgen.core.units import format_size, parse_duration, parse_size
from loadgen.protocol.constants import HTTP_MODES, HttpMode

__all__ = ["CHAOS_PREFIX", "SETTINGS", "EngineSettings", "EngineSetup", "Setting", "SettingError", "settings_from"]

MAX_DURATION_S: Final = 7 * 24 * 3600.0
MIB: Final = 1024 * 1024
RESULT_ENVELOPE_BYTES: Final = 1024
"""What a ``Wait`` answer needs beside its result (gRPC framing, trailers), taken off ``max_message_bytes``."""
CHAOS_PREFIX: Final = "chaos_"
"""Settings named ``chaos_<key>`` are a scenario's ``[engine.chaos]`` ``<key>`` (:mod:`loadgen.core.chaos`)."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the engine's shards run. ``shards`` None means one per core."""

    shards: int | None = None
    connections: int = 2
    max_streams: int = 100
    expiration: float = 60.0
    backoff: float = 0.05
    max_backoff: float = 2.0
    request_timeout: float = 30.0
    http: HttpMode = "auto"
    result_retention: int = 100_000
    result_retention_bytes: int = 48 * MIB
    max_message_bytes: int = 16 * MIB
    max_response_bytes: int = 32 * MIB
    max_poll_calls: int = 10_000
    max_connections: int = 2048
    max_calls_in_flight: int = 50_000
    max_held_bytes: int = 160 * MIB
    max_waits: int = 4096
    chaos_duplicate_rate: float = 0.0
    chaos_delay_rate: float = 0.0
    chaos_delay: float = 0.1
    chaos_reorder_rate: float = 0.0
    chaos_partial_rate: float = 0.0

    @property
    def chaos(self) -> Chaos:
        """The faults each shard injects on purpose (``[engine.chaos]``)."""
        return Chaos(
            self.chaos_duplicate_rate,
            self.chaos_delay_rate,
            self.chaos_delay,
            self.chaos_reorder_rate,
            self.chaos_partial_rate,
        )

    @property
    def max_result_bytes(self) -> int:
        """The largest result a ``Wait`` answer can carry: ``max_message_bytes`` less room for its envelope."""
        return max(0, self.max_message_bytes - RESULT_ENVELOPE_BYTES)

    @property
    def admission(self) -> AdmissionLimits:
        """The admission caps of each shard."""
        return AdmissionLimits(self.max_calls_in_flight, self.max_held_bytes, self.max_waits)

    @property
    def shard_count(self) -> int:
        """``shards``, or one per core."""
        return self.shards or os.cpu_count() or 1

    def to_json(self) -> dict[str, Any]:
        """As a scenario's ``[engine]`` table writes them (``shards = "auto"`` for one per core; the
        ``chaos_*`` settings in a ``chaos`` table)."""
        values = dataclasses.asdict(self)
        values["shards"] = "auto" if self.shards is None else self.shards
        chaos = {
            name.removeprefix(CHAOS_PREFIX): values.pop(name) for name in list(values) if name.startswith(CHAOS_PREFIX)
        }
        values["chaos"] = chaos
        return values


Kind = Literal["shards", "count", "duration", "choice", "size", "ratio"]


class SettingError(ValueError):
    """A setting that cannot be used: ``name`` (the setting) and ``problem`` (what was expected)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Setting:
    """One engine setting: its name (field, scenario key; the flag is ``--`` + name with dashes), kind,
    bounds and help text."""

    name: str
    kind: Kind
    help: str
    low: float = 1
    high: float = math.inf
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        """Its path in a scenario's ``[engine]`` table: ``max_streams``, ``chaos.duplicate_rate``."""
        if self.name.startswith(CHAOS_PREFIX):
            return "chaos." + self.name.removeprefix(CHAOS_PREFIX)
        return self.name

    @property
    def default(self) -> Any:
        return _DEFAULTS[self.name]

    def parse(self, value: object) -> Any:
        """The value of this setting from *value* (a TOML value, or a flag's text); ``ValueError`` if bad."""
        if self.kind == "duration":
            return self._duration(value)
        if self.kind == "size":
            return self._size(value)
        if self.kind == "ratio":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"expected a rate from 0 to 1 (a fraction, such as 0.05), got {describe(value)}")
            return float(value)
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                hint = suggest(value, self.choices) if isinstance(value, str) else ""
                shown = ", ".join(f'"{c}"' for c in self.choices)
                raise ValueError(f"expected one of {shown}, got {describe(value)}{hint}")
            return value
        if self.kind == "shards" and value == "auto":
            return None
        what = (
            f'a number of shards from {self.low:g} to {self.high:g} or "auto"'
            if self.kind == "shards"
            else f"an integer from {self.low:g} to {self.high:g}"
        )
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None or not self.low <= number <= self.high:
            raise ValueError(f"expected {what}, got {describe(value)}")
        return number

    def parse_flag(self, text: str) -> Any:
        """:meth:`parse` for a command-line flag's text, where a plain number is a number."""
        value: object = text
        if self.kind in ("shards", "count", "size") and text.strip().lstrip("-").isdigit():
            value = int(text)
        elif self.kind in ("duration", "ratio"):
            with contextlib.suppress(ValueError):
                value = float(text)  # a plain number (of seconds)
        return self.parse(value)

    def _size(self, value: object) -> int:
        size = parse_size(value)
        if not self.low <= size <= self.high:
            bounds = f"{format_size(self.low)} to {format_size(self.high)}"
            raise ValueError(f"expected a size from {bounds}, got {describe(value)}")
        return size

    def _duration(self, value: object) -> float:
        seconds = parse_duration(value)
        if seconds == 0 or seconds > MAX_DURATION_S:
            bound = "at most 7 days" if seconds else "longer than 0"
            raise ValueError(f"expected a duration {bound}, got {describe(value)}")
        return seconds


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("shards", "shards", "engine worker processes, or auto: one per core", 1, 255),
    Setting("connections", "count", "connections per shard to the endpoint", 1, 1000),
    Setting(
        "max_streams", "count", "concurrent HTTP/2 streams per connection, capped by the server's limit", 1, 100_000
    ),
    Setting("expiration", "duration", "default call expiration (seconds, or a duration such as 60s)"),
    Setting("backoff", "duration", "first retry delay (seconds, or a duration such as 50ms)"),
    Setting("max_backoff", "duration", "longest retry delay, at least the backoff"),
    Setting("request_timeout", "duration", "time per endpoint attempt (seconds, or a duration such as 30s)"),
    Setting(
        "http",
        "choice",
        "protocol to the endpoint: auto tries HTTP/2 (h2c prior knowledge, or ALPN) and falls back to HTTP/1.1",
        choices=HTTP_MODES,
    ),
    Setting(
        "result_retention",
        "count",
        "results each shard keeps for Wait, about 1 KB each plus the result; older ones are evicted",
        1,
        10_000_000,
    ),
    Setting(
        "result_retention_bytes",
        "size",
        "bytes of results each shard keeps for Wait (each counted as its size plus about 1 KB); the oldest "
        "are evicted first",
        64 * 1024,
        64 * 1024 * MIB,
    ),
    Setting(
        "max_message_bytes",
        "size",
        "largest gRPC message a shard takes or sends (Dispatch, Wait, between shards) and largest Connect body; "
        "a result above it less 1 KiB fails as ResultTooLarge",
        64 * 1024,
        1024 * MIB,
    ),
    Setting(
        "max_response_bytes",
        "size",
        "largest RunResponse body taken from the endpoint; a larger one fails the attempt (INVALID_RESPONSE)",
        64 * 1024,
        1024 * MIB,
    ),
    Setting(
        "max_poll_calls",
        "count",
        "child calls one poll may ask for; a poll asking for more is resumed with an error, none started",
        1,
        1_000_000,
    ),
    Setting(
        "max_connections",
        "count",
        "gRPC connections each shard takes on each of its addresses (shared and private), never above "
        "its descriptor limit less what it needs itself; a client over it is refused at once "
        "(UNAVAILABLE) and the shard logs it",
        1,
        1_000_000,
    ),
    Setting(
        "max_calls_in_flight",
        "count",
        "root calls each shard holds at once; a batch beyond it is rejected whole (RESOURCE_EXHAUSTED, "
        "with a pushback) and counted as rejected",
        1,
        100_000_000,
    ),
    Setting(
        "max_held_bytes",
        "size",
        "bytes the calls in flight on a shard may hold (about 1.2 KB each plus its input); a batch beyond "
        "it is rejected whole (RESOURCE_EXHAUSTED) and counted as rejected",
        64 * 1024,
        64 * 1024 * MIB,
    ),
    Setting(
        "max_waits",
        "count",
        "Wait RPCs each shard holds open at once (about 23 KB each); one more is answered RESOURCE_EXHAUSTED",
        1,
        10_000_000,
    ),
    Setting(
        "chaos_duplicate_rate",
        "ratio",
        "chaos: the fraction of attempts whose RunRequest is delivered twice (the second answer is dropped "
        "and counted); 0 is off",
    ),
    Setting(
        "chaos_delay_rate",
        "ratio",
        "chaos: the fraction of child results that reach their parent chaos_delay late (reordering them); 0 is off",
    ),
    Setting("chaos_delay", "duration", "chaos: how late a delayed child result arrives (seconds, or a duration)"),
    Setting(
        "chaos_reorder_rate",
        "ratio",
        "chaos: the fraction of resumes with two results or more whose results come in another order; 0 is off",
    ),
    Setting(
        "chaos_partial_rate",
        "ratio",
        "chaos: the fraction of resumes with two results or more that carry only some of them (the rest come "
        "with the next poll, as with max_results); 0 is off",
    ),
)
"""Every engine setting, in the order ``--help`` and the scenario documentation list them."""

_DEFAULTS: Final[dict[str, Any]] = {f.name: f.default for f in dataclasses.fields(EngineSettings)}
_BY_NAME: Final[dict[str, Setting]] = {setting.name: setting for setting in SETTINGS}


def settings_from(
    values: Mapping[str, object], spell: Callable[[str], str] = lambda name: name, *, flags: bool = False
) -> EngineSettings:
    """:class:`EngineSettings` from the given *values* (by setting name; the others take their defaults).

    ``max_backoff`` defaults to at least ``backoff`` and may not be below it. :class:`SettingError`
    names the setting at fault; *spell* writes a setting's name in its messages (``engine.backoff``,
    ``--backoff``). With *flags*, the values are command-line texts (:meth:`Setting.parse_flag`).
    """
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        setting = _BY_NAME.get(name)
        if setting is None:
            raise SettingError(name, f"unknown setting{suggest(name, _BY_NAME)}")
        try:
            parsed[name] = setting.parse_flag(str(value)) if flags else setting.parse(value)
        except ValueError as exc:
            raise SettingError(name, str(exc)) from None
    backoff = parsed.get("backoff", _DEFAULTS["backoff"])
    parsed.setdefault("max_backoff", max(_DEFAULTS["max_backoff"], backoff))
    if parsed["max_backoff"] < backoff:
        raise SettingError(
            "max_backoff", f"expected at least {spell('backoff')} ({backoff:g}s), got {describe(values['max_backoff'])}"
        )
    return EngineSettings(**parsed)


@dataclass(frozen=True)
class EngineSetup:
    """What a supervisor starts the engine with: the endpoint, the keys, where to serve, the settings."""

    endpoint_url: str
    api_key: str
    signing_key: str | None  # base64 seed or PEM; None sends unsigned requests
    host: str = "127.0.0.1"
    port: int = 4450
    connect_port: int | None = None  # None: no Connect ingress; 0: any free port
    settings: EngineSettings = field(default_factory=EngineSettings)
    ready_timeout: float = 30.0
    health_timeout: float = 5.0  # how long a health check waits for a shard's answer
    hang_timeout: float = 30.0  # a shard alive but silent this long is killed and restarted (its calls: lost)

    @classmethod
    def create(cls, *, endpoint_url: str, api_key: str, signing_key: str | None, **given: Any) -> EngineSetup:
        """An :class:`EngineSetup` whose keyword arguments may also be settings (``shards=2, backoff=0.01``)."""
        names = {f.name for f in dataclasses.fields(EngineSettings)}
        settings = {k: given.pop(k) for k in list(given) if k in names}
        return cls(endpoint_url, api_key, signing_key, settings=EngineSettings(**settings), **given)
