"""Parsing scenario files: a TOML document checked against the format, with errors that say where and what."""

from __future__ import annotations

import contextlib
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from loadgen.core.arrivals import Stage
from loadgen.core.text import describe, suggest
from loadgen.core.units import parse_duration, parse_size
from loadgen.endpoint import catalogue
from loadgen.engine.settings import CHAOS_PREFIX, SETTINGS, EngineSettings, SettingError, settings_from
from loadgen.protocol.codecs import CODEC_NAMES, NO_VALUE, CodecError, get_codec
from loadgen.protocol.constants import FUNCTION_NAME, MAX_BATCH
from loadgen.protocol.keys import load_private_key, load_public_key
from loadgen.protocol.status import FAILURE_STATUSES, STATUS_NAMES
from loadgen.runs.gates import Gate, parse_gate
from loadgen.runs.metrics import GateSyntaxError
from loadgen.runs.scenario.model import (
    DEFAULT_WORKLOAD,
    MAX_INPUT_BYTES,
    PADDING_KEY,
    Inject,
    Json,
    KeyRef,
    Load,
    RemoteShards,
    Scenario,
    ScenarioError,
    SearchSettings,
    Target,
    WorkItem,
)

__all__ = ["load_scenario", "loads_scenario", "parse_scenario"]

MAX_DURATION_S: Final = 7 * 24 * 3600.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SETTING_KEYS = {setting.name: setting.key for setting in SETTINGS}  # chaos_delay -> chaos.delay


def _key(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _BARE_KEY.fullmatch(key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


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
            raise self.fail(path, f"expected a table, got {describe(value)}")
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
            raise self.fail(path, f"expected a string, got {describe(value)}")
        if nonempty and not value.strip():
            raise self.fail(path, "expected a non-empty string")
        return value

    def boolean(self, path: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {describe(value)}")
        return value

    def integer(self, path: str, value: object, low: int, high: int, what: str = "") -> int:
        expected = what or f"an integer from {low} to {high}"
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None or not low <= number <= high:
            raise self.fail(path, f"expected {expected}, got {describe(value)}")
        return number

    def number(self, path: str, value: object, *, low: float = 0.0, high: float = math.inf, positive: bool) -> float:
        what = "a positive number" if positive else f"a number from {low:g} to {high:g}"
        if positive and high != math.inf:
            what = f"a positive number up to {high:g}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected {what}, got {describe(value)}")
        number = float(value)
        if not math.isfinite(number) or number < low or number > high or (positive and number <= 0):
            raise self.fail(path, f"expected {what}, got {describe(value)}")
        return number

    def duration(self, path: str, value: object, *, allow_zero: bool = False) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None
        if (seconds == 0 and not allow_zero) or seconds > MAX_DURATION_S:
            bound = "at most 7 days" if seconds else "longer than 0"
            raise self.fail(path, f"expected a duration {bound}, got {describe(value)}")
        return seconds

    def choice(self, path: str, value: object, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            hint = suggest(value, choices) if isinstance(value, str) else ""
            shown = ", ".join(f'"{c}"' for c in choices)
            raise self.fail(path, f"expected one of {shown}, got {describe(value)}{hint}")
        return value

    def status(self, path: str, value: object, choices: tuple[str, ...] = FAILURE_STATUSES) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a status name such as TEMPORARY_ERROR, got {describe(value)}")
        name = value.strip().upper().removeprefix("STATUS_")
        if name not in choices:
            what = "a failure status" if "OK" not in choices else "a status"
            raise self.fail(
                path,
                f"expected {what} ({', '.join(choices)}), got {describe(value)}{suggest(name, choices)}",
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
                raise self.fail(path, f"expected a finite number, got {describe(value)}")
            return value
        if isinstance(value, list):
            return [self.json_value(_key(path, i), item) for i, item in enumerate(value)]
        if isinstance(value, dict):
            out: dict[str, Json] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.fail(path, f"expected string keys, got {describe(key)}")
                out[key] = self.json_value(_key(path, key), item)
            return out
        raise self.fail(path, f"expected a string, number, boolean, array or table, got {describe(value)}")

    def key_ref(self, path: str, value: object, kind: Literal["private", "public", "api"]) -> KeyRef:
        text = self.string(path, value)
        where = {"file": self.source, "key": path}
        if text.startswith("env:"):
            name = text[4:]
            if not _ENV_NAME.fullmatch(name):
                raise self.fail(
                    path, f'expected "env:NAME" with NAME an environment variable name, got {describe(text)}'
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
            raise self.fail("name", f"expected a name of at most 100 printable characters, got {describe(name)}")
        description = self.string("description", doc.get("description", ""), nonempty=False)
        engine, remote = self.engine(doc.get("engine", {}))
        target = self.target(doc.get("target", {}), remote)
        workload = self.workload(doc.get("workload"), target)
        load = self.load(doc.get("load", {}))
        gates = self.gates(doc.get("gates", {}), target)
        return Scenario(name, description, target, engine, remote, workload, load, gates, self.source)

    def target(self, value: object, remote: RemoteShards | None) -> Target:
        t = self.table("target", value, ("reference", "url", "sdk", "signing_key", "verification_key", "inject"))
        url: str | None = None
        if "url" in t:
            url = self.string("target.url", t["url"]).strip()
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.fail("target.url", f"expected an http:// or https:// URL, got {describe(url)}")
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
        if remote is not None:
            for key in ("signing_key", "verification_key", "inject"):
                if key in t:
                    raise self.fail(
                        f"target.{key}", "not used with engine.addresses: the remote shards run with their own setup"
                    )
        sdk = self.choice("target.sdk", t.get("sdk", "reference" if reference else "dispatch-py"), CODEC_NAMES)
        if reference and sdk != "reference":
            raise self.fail("target.sdk", 'the reference endpoint takes sdk = "reference" (or set target.url)')
        return Target(reference, url, signing, verification, inject, sdk)

    def engine(self, value: object) -> tuple[EngineSettings, RemoteShards | None]:
        local = tuple(setting.name for setting in SETTINGS)
        chaos_keys = tuple(name.removeprefix(CHAOS_PREFIX) for name in local if name.startswith(CHAOS_PREFIX))
        plain = tuple(name for name in local if not name.startswith(CHAOS_PREFIX))
        e = self.table("engine", value, (*plain, "chaos", "addresses", "api_key"))
        if "chaos" in e:
            e = dict(e)
            chaos = self.table("engine.chaos", e.pop("chaos"), chaos_keys)
            e.update({CHAOS_PREFIX + key: item for key, item in chaos.items()})
        if "addresses" in e:
            for key in local:
                if key in e:
                    raise self.fail(
                        f"engine.{_SETTING_KEYS[key]}",
                        "not allowed with engine.addresses: those shards run with their own options",
                    )
            raw = e["addresses"]
            if not isinstance(raw, list) or not raw:
                raise self.fail("engine.addresses", f'expected a non-empty array of "host:port", got {describe(raw)}')
            addresses = tuple(self.address(f"engine.addresses[{i}]", item) for i, item in enumerate(raw))
            api_key = self.key_ref("engine.api_key", e["api_key"], "api") if "api_key" in e else None
            if api_key is None:
                api_key = KeyRef("env", "DISPATCH_API_KEY", self.source, "engine.api_key")
            return EngineSettings(), RemoteShards(addresses, api_key)
        if "api_key" in e:
            raise self.fail("engine.api_key", "only with engine.addresses (a local engine makes its own key)")
        try:
            return settings_from(e, lambda name: f"engine.{_SETTING_KEYS[name]}"), None
        except SettingError as exc:
            raise self.fail(f"engine.{_SETTING_KEYS.get(exc.name, exc.name)}", exc.problem) from None

    def address(self, path: str, value: object) -> str:
        text = self.string(path, value).strip()
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        valid_host = bool(host) and not any(c in host for c in "/ @?#") and (":" not in host or text.startswith("["))
        if not sep or not valid_host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise self.fail(path, f'expected "host:port" (IPv6 as "[::1]:4450"), got {describe(value)}')
        return text

    def workload(self, value: object, target: Target) -> tuple[WorkItem, ...]:
        if value is None:
            if not target.reference:
                raise self.fail(
                    "workload", "required: at least one [[workload]] when the target is not the reference endpoint"
                )
            return DEFAULT_WORKLOAD
        if not isinstance(value, list) or not value:
            raise self.fail("workload", f"expected one or more [[workload]] tables, got {describe(value)}")
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
                raise self.fail(f"{path}.input", f"expected a table of parameters, got {describe(w['input'])}")
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
                raise self.fail(f"{path}.args", f"expected an array of arguments, got {describe(raw_args)}")
            args = tuple(self.json_value(f"{path}.args[{i}]", item) for i, item in enumerate(raw_args))
        if "kwargs" in w:
            raw_kwargs = w["kwargs"]
            if not isinstance(raw_kwargs, dict):
                raise self.fail(f"{path}.kwargs", f"expected a table of keyword arguments, got {describe(raw_kwargs)}")
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
                    "arguments), not input; for an endpoint that takes one input value, set [target] sdk = "
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
        if not FUNCTION_NAME.fullmatch(name):
            raise self.fail(path, f"expected a function name matching {FUNCTION_NAME.pattern}, got {describe(name)}")
        if target.reference and name not in catalogue.FUNCTION_NAMES:
            raise self.fail(
                path,
                f"expected a function of the reference endpoint ({', '.join(catalogue.FUNCTION_NAMES)}),"
                f" got {describe(name)}{suggest(name, catalogue.FUNCTION_NAMES)}",
            )
        return name

    def reference_input(self, path: str, function: str, params: dict[str, Json], target: Target) -> None:
        """The parameters the reference endpoint would refuse (or ignore: a typo) are errors here."""
        try:
            catalogue.check_input(function, params, ignore=(PADDING_KEY,))
        except catalogue.ParamError as exc:
            raise self.fail(_key(path, exc.param), exc.problem) from None
        if function == "fanout" and not params.get("endpoint"):
            child = params.get("function", "echo")
            self.function_name(_key(path, "function"), child, target)

    def load(self, value: object) -> Load:
        """``[load]``; its ``[load.search]`` (the capacity search of ``model = "search"`` and of
        ``loadgen run --find-capacity``) is read whatever the model."""
        load = self.load_model(value)
        if isinstance(value, dict) and "search" in value and load.model != "search":
            load = replace(load, search=self.search_settings("load.search", value["search"]))
        return load

    def load_model(self, value: object) -> Load:
        closed_keys = ("users", "spawn_rate", "duration")
        open_keys = ("stages", "max_in_flight")
        ld = self.table("load", value, ("model", *closed_keys, *open_keys, "processes", "stop_timeout", "search"))
        stop_timeout = self.duration("load.stop_timeout", ld.get("stop_timeout", 10.0), allow_zero=True)
        if stop_timeout > 3600:
            raise self.fail("load.stop_timeout", f"expected at most 1h, got {describe(ld['stop_timeout'])}")
        model = self.choice("load.model", ld.get("model", "closed"), ("closed", "open", "search"))
        processes = 1
        if "processes" in ld:
            what = 'a number of processes from 1 to 1024 or "auto"'
            raw = ld["processes"]
            processes = -1 if raw == "auto" else self.integer("load.processes", raw, 1, 1024, what)
        if model == "search":
            return self.search_load(ld, processes, stop_timeout)
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
                "load.stages", f"expected a non-empty array of {{ duration, rate }} tables, got {describe(raw)}"
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

    def search_load(self, ld: dict[str, Any], processes: int, stop_timeout: float) -> Load:
        for key in ("users", "spawn_rate", "duration", "stages"):
            if key in ld:
                raise self.fail(f"load.{key}", 'not with load.model = "search" (its steps are set in [load.search])')
        max_in_flight = self.integer("load.max_in_flight", ld.get("max_in_flight", 1000), 1, 10_000_000)
        search = self.search_settings("load.search", ld.get("search", {}))
        duration = search.max_steps * (search.warmup + search.step)
        return Load(
            "search",
            duration=duration,
            max_in_flight=max_in_flight,
            processes=processes,
            stop_timeout=stop_timeout,
            search=search,
        )

    def search_settings(self, path: str, value: object) -> SearchSettings:
        """``[load.search]``: the capacity search's steps (:mod:`loadgen.runs.capacity`); every key has a default."""
        keys = (
            "start_rate",
            "max_rate",
            "min_rate",
            "precision",
            "step",
            "warmup",
            "max_steps",
            "min_capacity",
            "abort_in_flight",
            "retries",
        )
        sv = self.table(path, value, keys)
        default = SearchSettings()
        rate = {
            key: self.number(f"{path}.{key}", sv.get(key, getattr(default, key)), positive=True, high=1e7)
            for key in ("start_rate", "max_rate", "min_rate")
        }
        for smaller, larger in (("min_rate", "start_rate"), ("start_rate", "max_rate")):
            if rate[smaller] > rate[larger]:
                wrong = smaller if smaller in sv else larger
                raise self.fail(
                    f"{path}.{wrong}", f"expected {smaller} <= {larger}, got {rate[smaller]:g} > {rate[larger]:g}"
                )
        precision = self.fraction(f"{path}.precision", sv.get("precision", default.precision))
        min_capacity = None
        if "min_capacity" in sv:
            min_capacity = self.number(f"{path}.min_capacity", sv["min_capacity"], positive=True, high=1e7)
        abort_in_flight = None
        if "abort_in_flight" in sv:
            abort_in_flight = self.integer(f"{path}.abort_in_flight", sv["abort_in_flight"], 1, 10_000_000)
        return SearchSettings(
            start_rate=rate["start_rate"],
            max_rate=rate["max_rate"],
            min_rate=rate["min_rate"],
            precision=precision,
            step=self.duration(f"{path}.step", sv.get("step", default.step)),
            warmup=self.duration(f"{path}.warmup", sv.get("warmup", default.warmup), allow_zero=True),
            max_steps=self.integer(f"{path}.max_steps", sv.get("max_steps", default.max_steps), 1, 1000),
            min_capacity=min_capacity,
            abort_in_flight=abort_in_flight,
            retries=self.integer(f"{path}.retries", sv.get("retries", default.retries), 0, 10),
        )

    def fraction(self, path: str, value: object) -> float:
        """A fraction strictly between 0 and 1, written as a number (0.05) or a percentage ("5%")."""
        number: float | None = None
        if isinstance(value, str) and value.strip().endswith("%"):
            with contextlib.suppress(ValueError):
                number = float(value.strip()[:-1]) / 100.0
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        if number is None or not 0 < number < 1:
            raise self.fail(path, f'expected a fraction between 0 and 1 such as 0.05 or "5%", got {describe(value)}')
        return number

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
            raise self.fail("gates", f"expected a table of metric = condition, got {describe(value)}")
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
                f" or an array of them, got {describe(spec)}",
            )
        if not isinstance(condition, str):
            raise self.fail(f"{path}.condition", f'expected a condition such as "< 250ms", got {describe(condition)}')
        try:
            gate = parse_gate(metric, condition, abort, delay)
        except GateSyntaxError as exc:
            raise self.fail(path, str(exc)) from None
        function = gate.metric.label("function")
        if function is not None and target.reference and function not in catalogue.FUNCTION_NAMES:
            raise self.fail(
                path,
                f"expected a function of the reference endpoint in the scope ({', '.join(catalogue.FUNCTION_NAMES)}),"
                f" got {describe(function)}{suggest(function, catalogue.FUNCTION_NAMES)}",
            )
        status = gate.metric.label("status")
        if status is not None and gate.metric.family != "rpc" and status not in STATUS_NAMES:
            raise self.fail(
                path,
                f"expected a status in the scope ({', '.join(STATUS_NAMES)}), got {describe(status)}"
                f"{suggest(status, STATUS_NAMES)}",
            )
        return gate


def _key_problem(exc: BaseException) -> str:
    """The reason from a :mod:`loadgen.protocol.keys` error, without its ``source:`` prefix (never key material)."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


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
