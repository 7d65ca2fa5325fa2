"""One copy of the engine's settings: ``loadgen serve``'s flags, a scenario's ``[engine]`` keys and the
shard configuration derive from ``EngineSettings``; this fails when they drift apart."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from loadgen.cli import build_parser
from loadgen.engine.ledger import LedgerHandle
from loadgen.engine.settings import SETTINGS, EngineSettings, EngineSetup, SettingError, settings_from
from loadgen.engine.shard import ShardConfig
from loadgen.runs.scenario import loads_scenario, scenario_to_dict

FIELDS = [f.name for f in dataclasses.fields(EngineSettings)]
WIRING = {"endpoint_url", "host", "port", "api_key", "signing_key", "connect_port", "drain_timeout"}
WIRING |= {"command", "handler"}  # argparse's own
# A value other than the default for each setting, as TOML and as a flag.
OTHER = {
    "shards": ("3", "3", 3),
    "connections": ("7", "7", 7),
    "max_streams": ("50", "50", 50),
    "expiration": ('"90s"', "90", 90.0),
    "backoff": ('"20ms"', "0.02", 0.02),
    "max_backoff": ('"3s"', "3s", 3.0),
    "request_timeout": ('"5s"', "5", 5.0),
    "http": ('"h2"', "h2", "h2"),
    "result_retention": ("1000", "1000", 1000),
    "result_retention_bytes": ('"8MiB"', "8MiB", 8 << 20),
    "max_message_bytes": ('"4MB"', "4000000", 4_000_000),
    "max_response_bytes": ("1048576", "1MiB", 1 << 20),
    "max_poll_calls": ("500", "500", 500),
    "max_connections": ("100", "100", 100),
    "max_calls_in_flight": ("2000", "2000", 2000),
    "max_held_bytes": ('"64MiB"', "64MiB", 64 << 20),
    "max_waits": ("100", "100", 100),
    "chaos_duplicate_rate": ("0.05", "0.05", 0.05),
    "chaos_delay_rate": ("1", "1", 1.0),
    "chaos_delay": ('"250ms"', "0.25", 0.25),
    "chaos_reorder_rate": ("0.5", "0.5", 0.5),
    "chaos_partial_rate": ("0.25", ".25", 0.25),
}
KEYS = {s.name: s.key for s in SETTINGS}  # chaos_delay -> chaos.delay: a key of [engine.chaos]


def _serve_dests() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    return {a.dest for a in serve._actions if a.dest != "help"} - WIRING


def test_every_setting_is_a_flag_a_scenario_key_and_a_catalogue_entry() -> None:
    assert [s.name for s in SETTINGS] == FIELDS
    assert _serve_dests() == set(FIELDS)
    document = scenario_to_dict(loads_scenario(""))
    engine = dict(document["engine"])
    engine.update({f"chaos.{key}": value for key, value in engine.pop("chaos").items()})
    assert set(engine) == set(KEYS.values())
    assert set(OTHER) == set(FIELDS), "give the new setting a test value in OTHER"


@pytest.mark.parametrize("name", FIELDS)
def test_a_setting_reaches_the_same_value_from_a_flag_and_from_a_scenario(name: str) -> None:
    toml, flag, expected = OTHER[name]
    section, _, key = f"engine.{KEYS[name]}".rpartition(".")
    from_scenario = loads_scenario(f"[{section}]\n{key} = {toml}").engine
    args = build_parser().parse_args(["serve", "http://127.0.0.1:9", f"--{name.replace('_', '-')}", flag])
    from_flags = settings_from({name: getattr(args, name)}, flags=True)
    assert getattr(from_scenario, name) == getattr(from_flags, name) == expected
    assert from_scenario == from_flags


def test_the_shard_configuration_carries_the_settings_whole() -> None:
    settings = EngineSettings(shards=1, connections=3, result_retention=7)
    setup = EngineSetup("http://127.0.0.1:9", "key", None, settings=settings)
    handle = LedgerHandle(None, "")
    config = ShardConfig(index=0, epoch=1, setup=setup, port=1, connect_port=0, ledger=handle, ledger_rows=1)
    assert config.setup.settings is settings
    assert {f.name for f in dataclasses.fields(ShardConfig)} == {
        "index", "epoch", "setup", "port", "connect_port", "ledger", "ledger_rows", "private_port"
    }


def test_the_checks_are_the_same_for_flags_and_scenarios() -> None:
    with pytest.raises(SettingError, match="from 1 to 1000"):
        settings_from({"connections": "5000"}, flags=True)
    with pytest.raises(ValueError, match=r"engine\.connections: expected an integer from 1 to 1000, got 5000"):
        loads_scenario("[engine]\nconnections = 5000")
    with pytest.raises(SettingError, match=r"at least --backoff"):
        settings_from({"backoff": "1", "max_backoff": "0.5"}, lambda n: "--" + n, flags=True)
    assert settings_from({"backoff": "5"}, flags=True).max_backoff == 5.0  # at least the backoff
