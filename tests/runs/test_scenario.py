"""Scenario files: the shipped ones load, broken ones say where and what, documents round-trip."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.core.units import parse_duration, parse_size
from loadgen.endpoint.catalogue import FUNCTION_NAMES
from loadgen.protocol.status import FAILURE_STATUSES
from loadgen.runs.scenario import (
    DEFAULT_WORKLOAD,
    KeyRef,
    Load,
    Scenario,
    ScenarioError,
    Stage,
    WorkItem,
    default_scenario,
    load_scenario,
    loads_scenario,
    parse_scenario,
    scenario_to_dict,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SEED = bytes(range(32))
SEED_B64 = base64.b64encode(SEED).decode()


# ---------------------------------------------------------------------------------------------
# A tiny TOML writer for generated documents (inline tables only; the standard library reads TOML
# but does not write it).
# ---------------------------------------------------------------------------------------------


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(document: dict[str, Any]) -> str:
    return "\n".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in document.items()) + "\n"


# ---------------------------------------------------------------------------------------------
# Shipped scenarios and the default
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_loads_and_round_trips(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.source == str(path)
    assert scenario.workload and scenario.gates and scenario.description
    again = parse_scenario(scenario_to_dict(scenario), "again.toml")
    assert again == scenario


def test_the_shipped_scenarios_are_there() -> None:
    names = {p.name for p in SCENARIOS.glob("*.toml")}
    assert {"quickstart.toml", "fanout.toml", "retry-storm.toml", "soak.toml"} <= names
    assert (SCENARIOS / "README.md").is_file()


def test_quickstart_file_is_the_default_scenario() -> None:
    assert load_scenario(SCENARIOS / "quickstart.toml") == default_scenario()
    quick = default_scenario()
    assert quick.target.reference and quick.load.model == "closed" and quick.load.users == 16
    assert quick.load.duration == 20.0 and quick.engine.shards == 2
    assert {w.function for w in quick.workload} == {"echo", "sleep", "fanout", "chain", "fail"}


def test_shipped_scenario_specifics() -> None:
    storm = load_scenario(SCENARIOS / "retry-storm.toml")
    assert storm.target.inject is not None
    assert (storm.target.inject.rate, storm.target.inject.status) == (0.3, "TEMPORARY_ERROR")
    assert any(str(g.metric) == "retries.ratio" for g in storm.gates)
    soak = load_scenario(SCENARIOS / "soak.toml")
    assert soak.load.model == "open" and soak.load.duration == 600.0
    assert [s.ramp for s in soak.load.stages] == [True, False, True]
    assert any(g.abort_on_fail for g in soak.gates)
    fanout = load_scenario(SCENARIOS / "fanout.toml")
    assert sum(w.weight for w in fanout.workload if w.function == "fanout") > 0.8 * sum(
        w.weight for w in fanout.workload
    )


def test_empty_document_is_all_defaults() -> None:
    scenario = loads_scenario("", "empty.toml")
    assert scenario == Scenario(name="empty")
    assert scenario.workload == DEFAULT_WORKLOAD
    assert scenario.target.reference and scenario.engine.shards is None and scenario.gates == ()


# ---------------------------------------------------------------------------------------------
# Broken scenarios: the file, the key path, what was expected
# ---------------------------------------------------------------------------------------------

W = '[[workload]]\nfunction = "echo"\n'
BROKEN: list[tuple[str, str, str]] = [
    ('name = "x', "", "TOML syntax error"),
    ('name = "ok"\n[load]\nusers = = 3\n', "", "line 3"),
    ('nmae = "x"', "nmae", "did you mean 'name'"),
    ('name = ""', "name", "non-empty string"),
    ("name = 5", "name", "expected a string, got 5"),
    ("[engine]\nshard = 2", "engine.shard", "did you mean 'shards'"),
    ('[engine]\nshards = "two"', "engine.shards", 'or "auto", got "two"'),
    ("[engine]\nshards = 0", "engine.shards", "got 0"),
    ("[engine]\nshards = 1.5", "engine.shards", "got 1.5"),
    ('[engine]\nhttp = "h3"', "engine.http", 'expected one of "auto", "h2", "http/1.1", got "h3"'),
    ('[engine]\nbackoff = "1s"\nmax_backoff = "500ms"', "engine.max_backoff", "at least engine.backoff"),
    ('[engine]\nexpiration = "soon"', "engine.expiration", 'a duration such as "30s"'),
    ('[engine]\naddresses = ["h:1"]\nshards = 2', "engine.shards", "not allowed with engine.addresses"),
    ('[engine]\naddresses = ["nohost"]', "engine.addresses[0]", '"host:port"'),
    ('[engine]\naddresses = ["h:99999"]', "engine.addresses[0]", '"host:port"'),
    ("[engine]\naddresses = []", "engine.addresses", "non-empty array"),
    ('[engine]\napi_key = "k"', "engine.api_key", "only with engine.addresses"),
    (W * 2 + '[[workload]]\nfunction = "echo"\nweight = -1\n', "workload[2].weight", "a positive number, got -1"),
    (W + "weight = 0", "workload[0].weight", "a positive number, got 0"),
    (W + 'weight = "heavy"', "workload[0].weight", 'a positive number, got "heavy"'),
    (W + "weight = nan", "workload[0].weight", "a positive number, got nan"),
    (W + "weight = true", "workload[0].weight", "a positive number, got true"),
    ('[[workload]]\nfunction = "ecko"', "workload[0].function", "did you mean 'echo'"),
    ('[[workload]]\nfunction = "bad name"', "workload[0].function", "expected a function name"),
    ("[[workload]]\nweight = 2", "workload[0].function", "required"),
    (W + "batch = 0", "workload[0].batch", "an integer from 1 to 10000, got 0"),
    (W + "batch = 10001", "workload[0].batch", "got 10001"),
    (W + 'wait = "yes"', "workload[0].wait", 'expected true or false, got "yes"'),
    (W + "input = 5", "workload[0].input", "a table of parameters, got 5"),
    (W + "input = { when = 1979-05-27 }", "workload[0].input.when", "got a date/time"),
    (W + "input = { x = inf }", "workload[0].input.x", "a finite number"),
    (
        W + 'input_bytes = "12XB"',
        "workload[0].input_bytes",
        'expected a size: a number of bytes or a string such as "4KiB"',
    ),
    (W + "input_bytes = -1", "workload[0].input_bytes", "non-negative"),
    (W + 'input_bytes = "1GB"', "workload[0].input_bytes", "expected a size"),
    (W + 'input_bytes = "100MB"', "workload[0].input_bytes", "at most 16000000 bytes"),
    (W + 'input_bytes = 10\ninput = { padding = "x" }', "workload[0].input.padding", "reserved for input_bytes"),
    ('[[workload]]\nfunction = "sleep"\ninput = { msec = 5 }', "workload[0].input.msec", "did you mean 'ms'"),
    ('[[workload]]\nfunction = "sleep"\ninput = { ms = 400000 }', "workload[0].input.ms", "from 0 to 300000"),
    ('[[workload]]\nfunction = "fail"\ninput = { status = "NOPE" }', "workload[0].input.status", "failure status"),
    ('[[workload]]\nfunction = "fail"\ninput = { status = "OK" }', "workload[0].input.status", "failure status"),
    ('[[workload]]\nfunction = "fail"\ninput = { rate = 2 }', "workload[0].input.rate", "from 0 to 1, got 2"),
    ('[[workload]]\nfunction = "fanout"\ninput = { function = "nope" }', "workload[0].input.function", "reference"),
    ('[[workload]]\nfunction = "fanout"\ninput = { n = 20000 }', "workload[0].input.n", "from 0 to 10000"),
    ("workload = []", "workload", "one or more [[workload]]"),
    ('[target]\nurl = "http://127.0.0.1:8000"', "workload", "required"),
    ('[target]\nreference = true\nurl = "http://h:1"', "target.url", "not allowed with target.reference = true"),
    ("[target]\nreference = false", "target.url", "required when target.reference is false"),
    ('[target]\nurl = "ftp://h/"', "target.url", "http:// or https://"),
    ('[target]\nurl = "http://h:1"\n[target.inject]\nrate = 0.1\n' + W, "target.inject", "only for the reference"),
    ('[target]\nurl = "http://h:1"\nverification_key = "x"\n' + W, "target.verification_key", "only for the reference"),
    ("[target.inject]\nrate = 1.5", "target.inject.rate", "from 0 to 1, got 1.5"),
    ('[target.inject]\nstatus = "TEMPORARY_ERROR"', "target.inject.rate", "required"),
    ('[target.inject]\nrate = 0.3\nstatus = "TEMP_ERROR"', "target.inject.status", "did you mean 'TEMPORARY_ERROR'"),
    ('[target.inject]\nrate = 0.3\nstatus = "UNSPECIFIED"', "target.inject.status", "failure status"),
    ('[target]\nsigning_key = "env:1BAD"', "target.signing_key", '"env:NAME"'),
    ('[target]\nsigning_key = "no/such/key.pem"', "target.signing_key", "there is no file"),
    ('[target]\nsigning_key = "QUJD"', "target.signing_key", "32 raw bytes"),
    ('[engine]\naddresses = ["h:1"]\n[target.inject]\nrate = 0.1', "target.inject", "not used with engine.addresses"),
    ('[load]\nmodel = "steady"', "load.model", 'expected one of "closed", "open", "search", got "steady"'),
    ("[load]\nusers = 0", "load.users", "an integer from 1 to 1000000, got 0"),
    ('[load]\nduration = "5 minutes"', "load.duration", 'a duration such as "30s", "5m", "250ms"'),
    ('[load]\nduration = "0s"', "load.duration", "longer than 0"),
    ("[load]\nduration = -3", "load.duration", "not negative"),
    ("[load]\nspawn_rate = 0", "load.spawn_rate", "a positive number"),
    ("[load]\nprocesses = 0", "load.processes", 'or "auto", got 0'),
    ('[load]\nmodel = "open"\nusers = 3\nstages = [{duration = "1s", rate = 1}]', "load.users", 'model = "closed"'),
    ('[load]\nmodel = "open"', "load.stages", "required"),
    ('[load]\nmodel = "open"\nstages = []', "load.stages", "non-empty array"),
    ('[load]\nmodel = "open"\nstages = [{duration = "1s"}]', "load.stages[0].rate", "required"),
    ('[load]\nmodel = "open"\nstages = [{duration = "1s", rate = -1}]', "load.stages[0].rate", "got -1"),
    (
        '[load]\nmodel = "open"\nstages = [{duration = "1s", rate = 1, ramp = 1}]',
        "load.stages[0].ramp",
        "true or false",
    ),
    ('[load]\nmodel = "open"\nstages = [{duration = "1s", rat = 1}]', "load.stages[0].rat", "did you mean 'rate'"),
    ('[load]\nstages = [{duration = "1s", rate = 1}]', "load.stages", 'only with load.model = "open"'),
    ("gates = 5", "gates", "a table of metric = condition"),
    ('[gates]\n"e2e.p99" = "< 250"', 'gates."e2e.p99"', "needs a unit"),
    ('[gates]\n"e2e.p99" = "about 250ms"', 'gates."e2e.p99"', "OP NUMBER[UNIT]"),
    ('[gates]\n"e2e.p98x" = "< 1s"', 'gates."e2e.p98x"', "unknown statistic"),
    ('[gates]\n"calls_per_second" = "> 5"', "gates.calls_per_second", "did you mean 'calls_per_s'"),
    ('[gates]\n"rpc.fail_ratio" = "< 5ms"', 'gates."rpc.fail_ratio"', "a fraction or a percentage"),
    ('[gates]\n"calls_per_s" = "> 5%"', "gates.calls_per_s", "a plain number"),
    ('[gates]\ne2e.p99 = "< 1s"', "gates.e2e.p99", "quote the metric name"),
    ('[gates]\n"e2e.p99{function=nope}" = "< 1s"', 'gates."e2e.p99{function=nope}"', "reference endpoint"),
    ('[gates]\n"e2e.p99{fn=echo}" = "< 1s"', 'gates."e2e.p99{fn=echo}"', "unknown scope label 'fn'"),
    ('[gates]\n"attempts{status=NOPE}" = "> 1"', 'gates."attempts{status=NOPE}"', "expected a status"),
    ('[gates]\n"e2e.p99" = { abort_on_fail = true }', 'gates."e2e.p99".condition', "required"),
    (
        '[gates]\n"e2e.p99" = { condition = "< 1s", abort_on_fail = "yes" }',
        'gates."e2e.p99".abort_on_fail',
        "true or false",
    ),
    ('[gates]\n"e2e.p99" = { condition = "< 1s", delay = "later" }', 'gates."e2e.p99".delay', "a duration"),
    ('[gates]\n"e2e.p99" = ["< 1s", 5]', 'gates."e2e.p99"[1]', "got 5"),
    ('[gates]\n"e2e.p99" = []', 'gates."e2e.p99"', "empty array"),
    ('[gates]\n"e2e.p99" = { condition = "< 1s", when = 1 }', 'gates."e2e.p99".when', "unknown key"),
]


@pytest.mark.parametrize(("text", "key", "expected"), BROKEN, ids=[f"{i}:{case[1]}" for i, case in enumerate(BROKEN)])
def test_broken_scenarios_name_the_file_the_key_and_the_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    error = caught.value
    assert error.file == str(path)
    assert error.key == key
    assert expected in error.problem, error.problem
    assert str(error).startswith(f"{path}: " + (f"{key}: " if key else ""))


def test_toml_syntax_errors_carry_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "syntax.toml"
    path.write_text('name = "x"\n\n[load]\nusers = = 3\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"line 4, column \d+") as caught:
        load_scenario(path)
    assert caught.value.key == ""


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(binary)


def test_key_errors_never_show_key_material() -> None:
    secret = base64.b64encode(b"s" * 31).decode()  # one byte short
    with pytest.raises(ScenarioError) as caught:
        loads_scenario(f'[target]\nsigning_key = "{secret}"', "k.toml")
    assert secret not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Keys and secrets
# ---------------------------------------------------------------------------------------------


def test_key_references(tmp_path: Path) -> None:
    pem = Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "signing.pem").write_bytes(pem)
    path = tmp_path / "s.toml"
    path.write_text('[target]\nsigning_key = "keys/signing.pem"\n', encoding="utf-8")
    from_file = load_scenario(path).target.signing_key
    assert from_file == KeyRef("path", str((tmp_path / "keys" / "signing.pem").resolve()))
    assert from_file.resolve({}) == from_file.value

    inline = loads_scenario(f'[target]\nsigning_key = "{SEED_B64}"').target.signing_key
    assert inline == KeyRef("inline", SEED_B64)
    pem_text = pem.decode().replace("\n", "\\n")
    assert loads_scenario(f'[target]\nsigning_key = "{pem_text}"').target.signing_key is not None

    env = loads_scenario('[target]\nsigning_key = "env:MY_KEY"', "e.toml").target.signing_key
    assert env == KeyRef("env", "MY_KEY")
    assert env.resolve({"MY_KEY": SEED_B64}) == SEED_B64
    with pytest.raises(ScenarioError, match="MY_KEY is not set") as caught:
        env.resolve({})
    assert (caught.value.file, caught.value.key) == ("e.toml", "target.signing_key")


def test_secrets_are_redacted_in_the_dictionary() -> None:
    text = f'[target]\nsigning_key = "{SEED_B64}"\n'
    scenario = loads_scenario(text)
    assert scenario_to_dict(scenario)["target"]["signing_key"] == "<redacted>"
    assert scenario_to_dict(scenario, redact_secrets=False)["target"]["signing_key"] == SEED_B64
    remote = loads_scenario('[engine]\naddresses = ["10.0.0.5:4450", "[::1]:4451"]\napi_key = "hunter2"\n')
    assert remote.remote is not None and remote.remote.addresses == ("10.0.0.5:4450", "[::1]:4451")
    assert scenario_to_dict(remote)["engine"] == {"addresses": ["10.0.0.5:4450", "[::1]:4451"], "api_key": "<redacted>"}
    default_key = loads_scenario('[engine]\naddresses = ["h:1"]').remote.api_key  # type: ignore[union-attr]
    assert default_key == KeyRef("env", "DISPATCH_API_KEY")


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1m30s", 90),
        ("250ms", 0.25),
        ("1.5h", 5400),
        ("100us", 1e-4),
        ("2µs", 2e-6),
        (" 1m 5s ", 65),
        (12, 12),
        (0.5, 0.5),
        (".5s", 0.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "1.2.3s", "-5s", "s", "5sm", True, None, [1], float("inf")])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (100, 100),
        ("512B", 512),
        ("4KB", 4000),
        ("4KiB", 4096),
        ("1MB", 1_000_000),
        ("1.5MiB", 1572864),
        ("2 kib", 2048),
        (1024.0, 1024),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_padding_and_open_model_rates() -> None:
    item = WorkItem("echo", input={"a": 1}, input_bytes=5)
    assert item.call_input() == {"a": 1, "padding": "xxxxx"}
    assert item.input == {"a": 1}
    assert WorkItem("echo", input={"a": 1}).call_input() == {"a": 1}
    load = Load(model="open", stages=(Stage(10, 100, ramp=True), Stage(10, 100), Stage(10, 0, ramp=True)))
    assert [load.rate_at(t) for t in (0, 5, 10, 15, 25, 30, 99)] == [0, 50, 100, 100, 50, 0, 0]
    with pytest.raises(ValueError):
        Load().rate_at(1)


def test_open_model_duration_is_the_sum_of_stages() -> None:
    scenario = loads_scenario(
        '[load]\nmodel = "open"\n'
        'stages = [{duration = "20s", rate = 200}, {duration = "1m", rate = 500, ramp = true}]\n'
        'max_in_flight = 50\nprocesses = "auto"\n'
    )
    assert scenario.load.duration == 80.0 and scenario.load.max_in_flight == 50 and scenario.load.processes == -1
    assert scenario.load.stages == (Stage(20.0, 200.0), Stage(60.0, 500.0, True))


def test_custom_endpoint_accepts_any_function_and_input() -> None:
    scenario = loads_scenario(
        '[target]\nurl = "https://app.example.com/"\nsigning_key = "env:K"\nsdk = "dispatch-go"\n'
        '[[workload]]\nfunction = "my_module.handler"\ninput = { anything = [1, "two", { three = 3.0 }] }\n'
        'batch = 100\nwait = false\n[gates]\n"e2e.p99{function=my_module.handler}" = "< 2s"\n'
    )
    assert scenario.target.url == "https://app.example.com" and not scenario.target.reference
    assert scenario.workload[0].batch == 100 and not scenario.workload[0].wait


# ---------------------------------------------------------------------------------------------
# Properties: valid documents round-trip; invalid ones raise ScenarioError, never anything else
# ---------------------------------------------------------------------------------------------

text_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
durations = st.one_of(
    st.integers(1, 3600),
    st.floats(0.001, 3600.0),
    st.sampled_from(["30s", "5m", "250ms", "1m30s", "1.5h", "100us", "2µs", "1h2m3s"]),
)
weights = st.one_of(st.integers(1, 1000), st.floats(0.001, 1000.0))
toml_leaf = st.one_of(  # TOML has no null
    st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), text_values
)
json_leaf = st.one_of(st.none(), toml_leaf)
json_values = st.recursive(
    toml_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text_values, inner, max_size=3)),
    max_leaves=8,
)
json_tables = st.dictionaries(text_values.filter(lambda k: k != "padding"), json_values, max_size=3)


def _item(function: str, params: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"function": st.just(function), "input": params},
        optional={
            "weight": weights,
            "input_bytes": st.one_of(st.integers(0, 5000), st.sampled_from(["1KiB", "2KB", "512B"])),
            "batch": st.integers(1, 10_000),
            "wait": st.booleans(),
        },
    )


reference_items = st.one_of(
    _item("echo", json_tables),
    _item("sleep", st.fixed_dictionaries({}, optional={"ms": st.integers(0, 300_000)})),
    _item(
        "fail",
        st.fixed_dictionaries(
            {},
            optional={
                "status": st.sampled_from(FAILURE_STATUSES)
                .map(lambda s: st.sampled_from([s, s.lower(), "STATUS_" + s]))
                .flatmap(lambda x: x),
                "times": st.integers(0, 100),
                "rate": st.floats(0.0, 1.0),
            },
        ),
    ),
    _item(
        "fanout",
        st.fixed_dictionaries(
            {},
            optional={
                "n": st.integers(0, 10_000),
                "function": st.sampled_from(FUNCTION_NAMES),
                "input": json_tables,
                "min_results": st.integers(0, 10_000),
                "typed_state": st.booleans(),
            },
        ),
    ),
    _item("chain", st.fixed_dictionaries({}, optional={"depth": st.integers(0, 1000)})),
    _item("payload", st.fixed_dictionaries({}, optional={"bytes": st.integers(0, 16_000_000)})),
)
identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
custom_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.]{0,10}", fullmatch=True)
custom_common = {"weight": weights, "batch": st.integers(1, 100)}
CUSTOM_ITEMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "dispatch-py": st.fixed_dictionaries(
        {"function": custom_names},
        optional={
            "args": st.lists(json_values, max_size=3),
            "kwargs": st.dictionaries(identifiers, json_values, max_size=3),
            **custom_common,
        },
    ),
    "dispatch-go": st.fixed_dictionaries({"function": custom_names}, optional={"input": json_values, **custom_common}),
    "raw": st.fixed_dictionaries(
        {"function": custom_names},
        optional={
            "input": st.fixed_dictionaries(
                {"type_url": st.sampled_from(["type.googleapis.com/x.Y", "buf.build/a/b/c.D"])},
                optional={"base64": st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())},
            ),
            **custom_common,
        },
    ),
}


@st.composite
def custom_items(draw: st.DrawFn, sdk: str) -> dict[str, Any]:
    item = draw(CUSTOM_ITEMS[sdk])
    wait = draw(st.booleans())
    item["wait"] = wait
    if wait and draw(st.booleans()):
        item["expect"] = draw(json_values)
    return item
local_engines = st.fixed_dictionaries(
    {},
    optional={
        "shards": st.one_of(st.integers(1, 255), st.just("auto")),
        "connections": st.integers(1, 1000),
        "max_streams": st.integers(1, 100_000),
        "expiration": durations,
        "backoff": st.floats(0.001, 1.0),
        "max_backoff": st.floats(1.0, 10.0),
        "request_timeout": durations,
        "http": st.sampled_from(["auto", "h2", "http/1.1"]),
    },
)
remote_engines = st.fixed_dictionaries(
    {"addresses": st.lists(st.sampled_from(["127.0.0.1:4450", "host-a:1", "[::1]:4451"]), min_size=1, max_size=3)},
    optional={"api_key": st.sampled_from(["env:DISPATCH_API_KEY", "env:OTHER"])},
)
stages = st.lists(
    st.fixed_dictionaries({"duration": durations, "rate": st.floats(0.0, 1e6)}, optional={"ramp": st.booleans()}),
    min_size=1,
    max_size=4,
)
loads = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.just("closed"),
            "users": st.integers(1, 10_000),
            "spawn_rate": st.floats(0.01, 1000.0),
            "duration": durations,
            "processes": st.one_of(st.integers(1, 64), st.just("auto")),
            "stop_timeout": st.one_of(st.integers(0, 3600), st.sampled_from(["10s", "250ms", "1m30s"])),
        },
    ),
    st.fixed_dictionaries(
        {"model": st.just("open"), "stages": stages},
        optional={"max_in_flight": st.integers(1, 10**6), "processes": st.integers(1, 64)},
    ),
)
GATE_METRICS = {
    "e2e.p99": "latency",
    "e2e.p99.9{function=echo}": "latency",
    "attempt.mean{function=fail,status=TEMPORARY_ERROR}": "latency",
    "rpc.max{rpc=Wait}": "latency",
    "rpc.fail_ratio": "ratio",
    "retries.ratio": "ratio",
    "failed.ratio{function=sleep}": "ratio",
    "calls_per_s": "rate",
    "lost": "count",
    "attempts{function=fail,status=OK}": "count",
}
UNITS = {"latency": ["ms", "s", "us", "µs"], "ratio": ["", "%"], "rate": [""], "count": [""]}


@st.composite
def conditions(draw: st.DrawFn, kind: str) -> str:
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "=="]))
    number = draw(st.one_of(st.integers(0, 10_000).map(str), st.sampled_from(["0.5", "12.25", "1e3", ".5"])))
    space = draw(st.sampled_from(["", " "]))
    return f"{op}{space}{number}{draw(st.sampled_from(UNITS[kind]))}"


@st.composite
def gate_specs(draw: st.DrawFn, kind: str) -> Any:
    def one() -> Any:
        condition = draw(conditions(kind))
        if draw(st.booleans()):
            return condition
        table: dict[str, Any] = {"condition": condition}
        if draw(st.booleans()):
            table["abort_on_fail"] = draw(st.booleans())
        if draw(st.booleans()):
            table["delay"] = draw(durations)
        return table

    count = draw(st.integers(1, 3))
    return one() if count == 1 else [one() for _ in range(count)]


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        doc["name"] = draw(
            st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=30).filter(str.strip)
        )
    if draw(st.booleans()):
        doc["description"] = draw(text_values)
    remote = draw(st.booleans())
    doc["engine"] = draw(remote_engines if remote else local_engines)
    custom = draw(st.booleans())
    if custom:
        doc["target"] = {"url": draw(st.sampled_from(["http://127.0.0.1:8000", "https://app.example.com/x"]))}
        sdk = draw(st.sampled_from(["dispatch-py", "dispatch-go", "raw"]))
        if sdk != "dispatch-py" or draw(st.booleans()):
            doc["target"]["sdk"] = sdk
        doc["workload"] = draw(st.lists(custom_items(sdk), min_size=1, max_size=4))
    else:
        target: dict[str, Any] = draw(st.sampled_from([{}, {"reference": True}]))
        if not remote:
            if draw(st.booleans()):
                target["signing_key"] = draw(st.sampled_from(["env:LOADGEN_SIGNING_KEY", SEED_B64]))
            if draw(st.booleans()):
                target["inject"] = {
                    "rate": draw(st.floats(0.0, 1.0)),
                    "status": draw(st.sampled_from(FAILURE_STATUSES)),
                }
        doc["target"] = target
        if draw(st.booleans()):
            doc["workload"] = draw(st.lists(reference_items, min_size=1, max_size=4))
    doc["load"] = draw(loads)
    chosen = draw(st.lists(st.sampled_from(sorted(GATE_METRICS)), unique=True, max_size=4))
    doc["gates"] = {metric: draw(gate_specs(GATE_METRICS[metric])) for metric in chosen}
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_valid_documents_round_trip(document: dict[str, Any]) -> None:
    first = loads_scenario(to_toml(document), "gen.toml")
    as_dict = scenario_to_dict(first, redact_secrets=False)
    second = loads_scenario(to_toml(as_dict), "gen.toml")
    assert second == first
    assert scenario_to_dict(second, redact_secrets=False) == as_dict
    assert len(first.gates) == sum(len(v) if isinstance(v, list) else 1 for v in document["gates"].values())
    if "workload" in document:
        assert [w.function for w in first.workload] == [w["function"] for w in document["workload"]]


# Mutations that make any valid document invalid: each returns the document and the key path in the error.
BAD_VALUES = st.one_of(
    st.just("not a number"), st.just(True), st.just([1, 2]), st.just({"x": 1}), st.just(-1), st.just(float("nan"))
)


@st.composite
def invalid_documents(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    doc = draw(valid_documents())
    remote = "addresses" in doc["engine"]
    choices = ["top", "users", "weight", "gate", "duration", "status", "nested"]
    if remote:
        choices.remove("status")
    kind = draw(st.sampled_from(choices))
    if kind == "top":
        key = draw(
            st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(
                lambda k: k not in ("name", "description", "target", "engine", "workload", "load", "gates")
            )
        )
        doc[key] = draw(json_values)
        return doc, key
    if kind == "users":
        doc["load"] = {"model": "closed", "users": draw(st.one_of(BAD_VALUES, st.just(0), st.just(10**7)))}
        return doc, "load.users"
    if kind == "weight":
        doc["workload"] = doc.get("workload") or [{"function": "echo"}]
        if "url" in doc.get("target", {}):
            doc["workload"][0]["function"] = "f"
        doc["workload"][0]["weight"] = draw(st.one_of(BAD_VALUES, st.just(0), st.just(float("inf"))))
        return doc, "workload[0].weight"
    if kind == "gate":
        bad = draw(st.sampled_from(["", "250ms", "<< 3", "< abc", "< 5 parsecs", "≤ 5ms", "> 5%%", "<"]))
        doc["gates"] = {"e2e.p99": bad}
        return doc, 'gates."e2e.p99"'
    if kind == "duration":
        doc["load"] = {"duration": draw(st.one_of(st.sampled_from(["5 minutes", "0s", "-1s", "1d", ""]), BAD_VALUES))}
        return doc, "load.duration"
    if kind == "status":
        doc["target"] = {
            "inject": {
                "rate": 0.5,
                "status": draw(
                    text_values.filter(lambda s: s.strip().upper().removeprefix("STATUS_") not in FAILURE_STATUSES)
                ),
            }
        }
        doc.pop("workload", None)
        return doc, "target.inject.status"
    path = draw(st.sampled_from(["engine", "target", "load"]))
    doc[path] = {**{k: v for k, v in doc[path].items() if k != "url"}, "zz_unknown": 1}
    if path == "target":
        doc.pop("workload", None)
        doc["target"].pop("url", None)
    return doc, f"{path}.zz_unknown"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_documents())
def test_invalid_documents_raise_scenario_error(case: tuple[dict[str, Any], str]) -> None:
    document, key = case
    with pytest.raises(ScenarioError) as caught:
        loads_scenario(to_toml(document), "gen.toml")
    assert caught.value.file == "gen.toml"
    assert caught.value.key == key, str(caught.value)
    assert str(caught.value).startswith(f"gen.toml: {key}: ")


any_values = st.recursive(
    st.one_of(json_leaf, st.dates(), st.datetimes(), st.times()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "users",
                    "rate",
                    "duration",
                    "function",
                    "weight",
                    "input",
                    "stages",
                    "model",
                    "condition",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
SECTIONS = ["name", "description", "target", "engine", "workload", "load", "gates"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SECTIONS), any_values, max_size=5))
def test_arbitrary_documents_never_raise_anything_but_scenario_error(document: dict[str, Any]) -> None:
    try:
        parse_scenario(document, "any.toml")
    except ScenarioError as error:
        assert error.file == "any.toml"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_scenario_error(text: str) -> None:
    try:
        loads_scenario(text, "text.toml")
    except ScenarioError as error:
        assert error.file == "text.toml"


# ---------------------------------------------------------------------------------------------
# SDKs: which keys fit which target
# ---------------------------------------------------------------------------------------------

URL_TARGET = '[target]\nurl = "http://127.0.0.1:8000"\n'


def test_a_url_target_speaks_dispatch_py_unless_told_otherwise() -> None:
    scenario = loads_scenario(
        URL_TARGET + '[[workload]]\nfunction = "greet"\nargs = ["bob"]\nkwargs = { punct = "!" }\n'
        'expect = "hello bob!"\n[load]\nstop_timeout = "3s"\n'
    )
    item = scenario.workload[0]
    assert scenario.target.sdk == "dispatch-py" and default_scenario().target.sdk == "reference"
    assert item.args == ("bob",) and item.kwargs == {"punct": "!"} and item.expect == "hello bob!"
    assert item.checks_result and scenario.load.stop_timeout == 3.0
    document = scenario_to_dict(scenario)
    assert document["target"]["sdk"] == "dispatch-py" and document["workload"][0]["expect"] == "hello bob!"
    assert "input" not in document["workload"][0] and document["load"]["stop_timeout"] == 3.0
    assert loads_scenario(to_toml(document)) == scenario


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (URL_TARGET + '[[workload]]\nfunction = "f"\ninput = { a = 1 }\n', "workload[0].input", "args = [...]"),
        (URL_TARGET + '[[workload]]\nfunction = "f"\ninput_bytes = 10\n', "workload[0].input_bytes", "kwargs"),
        (URL_TARGET + '[[workload]]\nfunction = "f"\nargs = { a = 1 }\n', "workload[0].args", "an array"),
        (URL_TARGET + '[[workload]]\nfunction = "f"\nkwargs = [1]\n', "workload[0].kwargs", "a table"),
        (URL_TARGET + '[[workload]]\nfunction = "f"\nkwargs = { "a b" = 1 }', 'workload[0].kwargs."a b"', "identifier"),
        (URL_TARGET + '[[workload]]\nfunction = "f"\nexpect = 1\nwait = false\n', "workload[0].expect", "wait = true"),
        (URL_TARGET + '[[workload]]\nfunction = "f"\nargs = [2e400]\n', "workload[0].args[0]", "finite"),
        (URL_TARGET + '[[workload]]\nfunction = "f"\nargs = [1979-05-27]\n', "workload[0].args[0]", "date/time"),
        (URL_TARGET + 'sdk = "dispatch-go"\n[[workload]]\nfunction = "f"\nargs = [1]\n', "workload[0].args", "input"),
        (URL_TARGET + 'sdk = "dispatch-go"\n[[workload]]\nfunction = "f"\ninput = 18446744073709551616\n',
         "workload[0].input", "64 bits"),
        (URL_TARGET + 'sdk = "raw"\n[[workload]]\nfunction = "f"\ninput = { base64 = "" }\n', "workload[0].input",
         "type_url"),
        (URL_TARGET + 'sdk = "raw"\n[[workload]]\nfunction = "f"\ninput_bytes = 1\n', "workload[0].input_bytes",
         "not used"),
        ('[target]\nsdk = "dispatch-py"\n', "target.sdk", 'sdk = "reference"'),
        (URL_TARGET + 'sdk = "dispatch-rb"\n[[workload]]\nfunction = "f"\n', "target.sdk", "dispatch-py"),
        ('[[workload]]\nfunction = "echo"\nargs = ["x"]\n', "workload[0].args", "dispatch-py"),
        ("[load]\nstop_timeout = -1\n", "load.stop_timeout", "not negative"),
        ('[load]\nstop_timeout = "2h"\n', "load.stop_timeout", "at most 1h"),
    ],
)
def test_keys_that_do_not_fit_the_sdk_say_what_to_write(text: str, key: str, words: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        loads_scenario(text, "mine.toml")
    assert caught.value.key == key and words in caught.value.problem, str(caught.value)


def test_other_sdks_take_one_input_and_expect_anything() -> None:
    go = loads_scenario(URL_TARGET + 'sdk = "dispatch-go"\n[[workload]]\nfunction = "f"\ninput = [1, "x"]\nexpect = 2')
    assert go.workload[0].input == [1, "x"] and go.workload[0].expect == 2
    raw = loads_scenario(
        URL_TARGET + 'sdk = "raw"\n[[workload]]\nfunction = "f"\ninput = { type_url = "t/x.Y", base64 = "AQI=" }\n'
    )
    assert raw.workload[0].input == {"type_url": "t/x.Y", "base64": "AQI="}
    assert loads_scenario(to_toml(scenario_to_dict(raw))) == raw
    assert loads_scenario('[[workload]]\nfunction = "echo"\nexpect = { message = "hi" }\n').workload[0].checks_result
