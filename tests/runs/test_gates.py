"""Gates: metric and condition parsing, metric values from snapshots, verdicts and the CI writers."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

from loadgen.core.stats import ShardStats, Snapshot, merge_snapshots
from loadgen.runs.gates import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    GateResult,
    abort_check,
    evaluate,
    exit_code,
    parse_condition,
    parse_gate,
)
from loadgen.runs.metrics import (
    METRIC_NAMES,
    GateSyntaxError,
    LocustTotals,
    format_value,
    metrics_from,
    parse_metric,
)
from loadgen.runs.results.verdicts import write_gates_json, write_junit

DURATION = 10.0


def sample() -> Snapshot:
    """Two shards. Root calls: echo completed 1..1000 µs, fail failed 5 x 2 ms, sleep expired 3 x 60 s,
    2 in flight. Attempts: echo OK 1000 x 500 µs, fail TEMPORARY_ERROR 20 x 300 µs (15 retried),
    sleep OK 3 x 50 ms. RPCs: Dispatch ok 98 x 100 µs, error 2 x 200 µs, Wait ok 10 x 5 ms."""
    a, b = ShardStats("shard-0"), ShardStats("shard-1")
    a.count_accepted(1000)
    for us in range(1, 1001):
        a.record_call("echo", "completed", "OK", us / 1e6)
        a.record_attempt("echo", "OK", 500e-6)
    b.count_accepted(10)
    for _ in range(5):
        b.record_call("fail", "failed", "TEMPORARY_ERROR", 2e-3)
    for _ in range(3):
        b.record_call("sleep", "expired", "TIMEOUT", 60.0)
        b.record_attempt("sleep", "OK", 0.05)
    for i in range(20):
        b.record_attempt("fail", "TEMPORARY_ERROR", 300e-6)
        if i < 15:
            b.count_retry("TEMPORARY_ERROR")
    b.set_gauge("in_flight", 2)
    for i in range(100):
        a.record_rpc("Dispatch", i >= 2, 100e-6 if i >= 2 else 200e-6)
    for _ in range(10):
        b.record_rpc("Wait", True, 5e-3)
    return merge_snapshots([a.snapshot(), b.snapshot()])


SNAP = sample()


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def test_metric_names_and_scopes() -> None:
    m = parse_metric("e2e.p99.9{ outcome = Completed , function=echo }")
    assert (m.name, m.family, m.stat, m.kind) == ("e2e.p99.9", "e2e", "p99.9", "latency")
    assert m.labels == (("function", "echo"), ("outcome", "completed"))
    assert str(m) == "e2e.p99.9{function=echo,outcome=completed}"
    assert m.percentile == 99.9 and m.label("function") == "echo" and m.label("status") is None
    assert parse_metric("attempt.count{status=status_temporary_error}").labels == (("status", "TEMPORARY_ERROR"),)
    assert parse_metric("attempt.count").kind == "count"
    assert parse_metric("rpc.p50{status=OK}").labels == (("status", "ok"),)
    assert parse_metric("retries.ratio").kind == "ratio" and parse_metric("calls_per_s").kind == "rate"
    for name in METRIC_NAMES:
        assert str(parse_metric(name)) == name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("e2e.p101", "between p0 and p100"),
        ("e2e.median", "unknown statistic 'median'"),
        ("e2e.p99{fn=echo}", "unknown scope label 'fn'"),
        ("e2e.p99{status=OK}", "it takes function, outcome"),
        ("e2e.p99{function}", "label=value"),
        ("e2e.p99{function=echo", "at the end of the metric"),
        ("e2e.p99{function=a b}", "not a valid name"),
        ("e2e.p99{function=a,function=b}", "given twice"),
        ("e2e.p99{outcome=done}", "outcome must be one of"),
        ("rpc.p99{status=fine}", "'ok' or 'error'"),
        ("lost{function=echo}", "takes no scope"),
        ("failed{function=fail,status=TIMEOUT}", "not both"),
        ("calls_per_sec", "did you mean 'calls_per_s'"),
        ("retry.ratio", "did you mean 'retries.ratio'"),
        ("", "unknown metric"),
    ],
)
def test_bad_metrics(text: str, message: str) -> None:
    with pytest.raises(GateSyntaxError, match=message.replace("(", r"\(").replace("{", r"\{")):
        parse_metric(text)


@pytest.mark.parametrize(
    ("text", "kind", "threshold", "canonical"),
    [
        ("< 250ms", "latency", 250_000, "< 250ms"),
        ("<=1.5s", "latency", 1_500_000, "<= 1.5s"),
        (">= 800us", "latency", 800, ">= 800us"),
        ("< 800µs", "latency", 800, "< 800µs"),
        ("< 800μs", "latency", 800, "< 800µs"),  # the Greek mu
        ("< 0.01", "ratio", 0.01, "< 0.01"),
        ("< 1%", "ratio", 0.01, "< 1%"),
        ("> 500", "rate", 500, "> 500"),
        ("== 0", "count", 0, "== 0"),
        ("  >  1e3  ", "count", 1000, "> 1e3"),
    ],
)
def test_conditions(text: str, kind: str, threshold: float, canonical: str) -> None:
    condition = parse_condition(text, kind)  # type: ignore[arg-type]
    assert condition.threshold == pytest.approx(threshold)
    assert condition.text == canonical == str(condition)


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("< 250", "latency", "needs a unit"),
        ("< 25%", "latency", "needs a unit"),
        ("< 5ms", "ratio", "a fraction or a percentage"),
        ("> 5%", "rate", "a plain number"),
        ("> 5s", "count", "a plain number"),
        ("=< 5", "count", "OP NUMBER"),
        ("!= 5", "count", "OP NUMBER"),
        ("< five", "count", "OP NUMBER"),
        ("", "count", "OP NUMBER"),
        ("< 1e999", "count", "finite"),
    ],
)
def test_bad_conditions(text: str, kind: str, message: str) -> None:
    with pytest.raises(GateSyntaxError, match=message):
        parse_condition(text, kind)  # type: ignore[arg-type]


def test_condition_semantics() -> None:
    assert parse_condition("< 5").holds(4) and not parse_condition("< 5").holds(5)
    assert parse_condition("<= 5").holds(5) and parse_condition(">= 5").holds(5)
    assert parse_condition("> 5").holds(6) and parse_condition("== 5").holds(5.0)
    assert not parse_condition("< 5").holds(math.nan) and not parse_condition("> 5").holds(math.nan)
    with pytest.raises(GateSyntaxError, match="delay"):
        parse_gate("lost", "== 0", delay=-1)


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("e2e.p50", 504),  # 1008 calls: the 504th smallest
        ("e2e.p50{function=echo}", 500),
        ("e2e.p99{function=echo}", 990),
        ("e2e.p100{function=echo}", 1000),
        ("e2e.min", 1),
        ("e2e.max{function=echo}", 1000),
        ("e2e.mean{function=echo}", 500.5),
        ("e2e.max", 60_000_000),
        ("e2e.count{outcome=expired}", 3),
        ("e2e.p50{function=fail,outcome=failed}", 2000),
        ("attempt.p50{function=fail}", 300),
        ("attempt.count{status=OK}", 1003),
        ("rpc.p50", 100),  # Dispatch, ok and error
        ("rpc.max", 200),
        ("rpc.max{status=ok}", 100),
        ("rpc.max{rpc=Wait}", 5000),
        ("rpc.count{rpc=*}", 110),
        ("accepted", 1010),
        ("completed", 1000),
        ("completed{function=echo}", 1000),
        ("failed", 5),
        ("failed{status=TEMPORARY_ERROR}", 5),
        ("failed{function=fail}", 5),
        ("expired", 3),
        ("expired{function=sleep}", 3),
        ("lost", 0),
        ("in_flight", 2),
        ("attempts", 1023),
        ("attempts{function=fail}", 20),
        ("attempts{status=OK}", 1003),
        ("retries", 15),
        ("retries{status=TEMPORARY_ERROR}", 15),
        ("retries{status=TIMEOUT}", 0),
        ("retries.ratio", 15 / 1023),
        ("failed.ratio", 8 / 1010),
        ("failed.ratio{function=fail}", 1.0),
        ("failed.ratio{function=echo}", 0.0),
        ("rpc.fail_ratio", 0.02),
        ("rpc.fail_ratio{rpc=Wait}", 0.0),
        ("calls_per_s", 100.0),
        ("calls_per_s{function=echo}", 100.0),
        ("accepted_per_s", 101.0),
        ("attempts_per_s{function=fail}", 2.0),
    ],
)
def test_metric_values(metric: str, value: float) -> None:
    assert metrics_from(SNAP, DURATION)(metric) == pytest.approx(value)


def test_metrics_without_data_are_nan() -> None:
    metrics = metrics_from(SNAP, DURATION)
    for metric in ("e2e.p99{function=nope}", "locust.requests", "locust.fail_ratio", "locust.rps"):
        assert math.isnan(metrics(metric)), metric
    empty = metrics_from(Snapshot.empty(), 0.0)
    for metric in ("e2e.p99", "retries.ratio", "failed.ratio", "rpc.fail_ratio", "calls_per_s"):
        assert math.isnan(empty(metric)), metric
    assert empty("accepted") == 0 and empty("e2e.count") == 0


def test_locust_totals() -> None:
    metrics = metrics_from(SNAP, DURATION, LocustTotals(requests=1000, failures=5))
    assert metrics("rpc.fail_ratio") == 0.005  # the client's view, when given
    assert metrics("rpc.fail_ratio{rpc=Dispatch}") == 0.02  # scoped: the engine's
    assert (metrics("locust.requests"), metrics("locust.failures")) == (1000, 5)
    assert metrics("locust.fail_ratio") == 0.005 and metrics("locust.rps") == 100.0
    assert math.isnan(metrics_from(SNAP, DURATION, LocustTotals(0, 0))("rpc.fail_ratio"))  # nothing was sent


def test_format_value() -> None:
    assert format_value("latency", 812) == "812µs"
    assert format_value("latency", 12_345) == "12.3ms"
    assert format_value("latency", 212_900) == "212.9ms"
    assert format_value("latency", 1_500_000) == "1.5s"
    assert format_value("ratio", 0.0123) == "1.23%"
    assert format_value("rate", 377.61) == "377.6/s"
    assert format_value("count", 5) == "5" and format_value("count", 2.5) == "2.5"
    assert format_value("latency", math.nan) == "no data"


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------

GATES = [
    parse_gate("engine.e2e.p99{function=echo}", "< 1ms"),
    parse_gate("engine.e2e.p99{function=echo}", "< 500us"),
    parse_gate("retries.ratio", "< 0.2"),
    parse_gate("failed.ratio", "< 0.5%"),
    parse_gate("lost", "== 0"),
    parse_gate("engine.e2e.p99{function=nope}", "< 1s"),
]


def test_evaluate() -> None:
    results = evaluate(GATES, SNAP, DURATION)
    assert [r.passed for r in results] == [True, False, True, False, True, False]
    assert results[0].message == "engine.e2e.p99{function=echo} = 990µs (< 1ms): passed"
    assert results[1].message == "engine.e2e.p99{function=echo} = 990µs, expected < 500us"
    assert results[1].observed == 990 and results[1].kind == "latency"
    assert results[2].observed_text == "0.01466"  # a ratio as its condition writes it
    assert results[3].observed_text == "0.792%" and results[3].message == "failed.ratio = 0.792%, expected < 0.5%"
    assert results[5].observed is None and "no data" in results[5].message and results[5].observed_text == "no data"
    assert GateResult.from_json(results[1].to_json()) == results[1]
    assert exit_code(results) == EXIT_GATE_FAILED
    assert exit_code(results[:1]) == EXIT_OK == exit_code([])
    assert exit_code(results[:1], run_failed=True) == EXIT_RUN_FAILED
    assert (EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_RUN_FAILED) == (0, 1, 2, 3)


def test_abort_check() -> None:
    gates = [
        parse_gate("failed.ratio", "< 0.5%", abort_on_fail=True, delay=5),
        parse_gate("e2e.p99{function=echo}", "< 500us"),  # failing, but does not abort
        parse_gate("e2e.p99{function=nope}", "< 1s", abort_on_fail=True),  # no data yet: no abort
    ]
    assert abort_check(gates, SNAP, elapsed_s=4.9) == []
    failing = abort_check(gates, SNAP, elapsed_s=5.0)
    assert [r.metric for r in failing] == ["failed.ratio"] and failing[0].abort_on_fail


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def test_write_gates_json(tmp_path: Path) -> None:
    path = tmp_path / "gates.json"
    write_gates_json(evaluate(GATES, SNAP, DURATION), path)
    data = orjson.loads(path.read_bytes())
    assert data["passed"] is False and data["failed"] == 3 and len(data["gates"]) == 6
    assert data["gates"][0] == {
        "metric": "engine.e2e.p99{function=echo}",
        "condition": "< 1ms",
        "observed": 990.0,
        "observed_text": "990µs",
        "kind": "latency",
        "passed": True,
        "abort_on_fail": False,
        "implicit": False,
        "message": "engine.e2e.p99{function=echo} = 990µs (< 1ms): passed",
    }
    assert data["gates"][5]["observed"] is None


def test_write_junit_is_valid_junit_xml(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    results = evaluate(GATES, SNAP, DURATION)
    write_junit(results, path, "quick & <dirty>", duration_s=12.5)
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "6" and root.get("failures") == "3"
    (suite,) = list(root)
    assert suite.tag == "testsuite" and suite.get("name") == "quick & <dirty>"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("time")) == (
        "6",
        "3",
        "0",
        "12.500",
    )
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases][:2] == [
        "engine.e2e.p99{function=echo} < 1ms",
        "engine.e2e.p99{function=echo} < 500us",
    ]
    assert all(c.get("classname") == "quick & <dirty>" for c in cases)
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("type") == "GateFailed"
    assert failure.get("message") == "engine.e2e.p99{function=echo} = 990µs, expected < 500us"
    no_data = cases[5].find("failure")
    assert no_data is not None and no_data.get("type") == "NoData"


def test_write_junit_without_gates(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit([], path, "empty")
    root = ET.parse(path).getroot()
    assert root.get("tests") == "0" and root.find("testsuite") is not None


# ---------------------------------------------------------------------------------------------
# Checked results and implicit gates
# ---------------------------------------------------------------------------------------------


def test_wrong_results_are_metrics_by_function() -> None:
    from loadgen.core.caller import FunctionChecks, WrongSample

    checks = {
        "greet": FunctionChecks(results=10, completed=10, checked=10, wrong=2, samples=[WrongSample("'a'", "'b'")]),
        "add": FunctionChecks(results=5, completed=4, failed={"TIMEOUT": 1}, checked=4, unfinished=1),
    }
    results = evaluate(
        [
            parse_gate("wrong", "== 0"),
            parse_gate("wrong{function=add}", "== 0"),
            parse_gate("wrong.ratio", "< 10%"),
            parse_gate("wrong.ratio{function=greet}", "<= 0.2"),
            parse_gate("unfinished", "== 0"),
            parse_gate("wrong{function=absent}", "== 0"),
        ],
        SNAP,
        DURATION,
        checks=checks,
    )
    assert [r.passed for r in results] == [False, True, False, True, False, True]
    assert results[0].observed == 2 and results[2].observed == pytest.approx(2 / 14)
    assert evaluate([parse_gate("wrong", "== 0")], SNAP, DURATION)[0].observed is None  # no checks: no data
    with pytest.raises(GateSyntaxError):
        parse_metric("wrong{status=OK}")


def test_implicit_gates_fail_on_any_bad_call_and_say_they_are_implicit(tmp_path: Path) -> None:
    from loadgen.runs.gates import implicit_gates
    from loadgen.runs.metrics import LocustTotals

    stats = ShardStats("s")
    stats.count_accepted(4)
    stats.record_call("f", "completed", "OK", 0.01)
    stats.record_call("f", "expired", "TIMEOUT", 60.0)
    stats.record_call("f", "cancelled", "TIMEOUT", 5.0)
    stats.set_gauge("in_flight", 1)
    stats.count_admission(3, "calls_in_flight")
    gates = implicit_gates(remote=True)
    assert [str(g) for g in gates] == [
        "failed == 0",
        "expired == 0",
        "cancelled == 0",
        "lost == 0",
        "rejected == 0",
        "wrong == 0",
        "in_flight == 0",
        "locust.failures == 0",
    ]
    results = evaluate(gates, stats.snapshot(), DURATION, LocustTotals(4, 1), checks={})
    assert {r.metric: r.passed for r in results} == {
        "failed": True,
        "expired": False,
        "cancelled": False,
        "lost": True,
        "rejected": False,
        "wrong": True,
        "in_flight": False,
        "locust.failures": False,
    }
    assert all(r.implicit and r.message.startswith("implicit gate") for r in results)
    write_junit(results, tmp_path / "junit.xml", "suite")
    names = [case.get("name") for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")]
    assert "implicit: expired == 0" in names and "implicit: cancelled == 0" in names
    # local shards cancel what is left at the end: nothing stays in flight to judge
    assert [str(g) for g in implicit_gates(with_locust=False)][-1] == "wrong == 0"
    assert [str(g) for g in implicit_gates(with_locust=False, remote=True)][-1] == "in_flight == 0"


def test_unscoped_rpc_metrics_cover_dispatch_rpcs_and_session_groups() -> None:
    """A batch accepted as a Session group counts like a Dispatch RPC; Wait stays out unless asked for."""
    shard = ShardStats("shard-0")
    for i in range(8):
        shard.record_rpc("Session", i != 0, 50e-6)
    for _ in range(2):
        shard.record_rpc("Dispatch", True, 100e-6)
    shard.record_rpc("Wait", False, 1e-3)
    metrics = metrics_from(shard.snapshot(), DURATION)
    assert metrics("rpc.count") == 10 and metrics("rpc.max") == 100
    assert metrics("rpc.fail_ratio") == pytest.approx(0.1)
    assert metrics("rpc.count{rpc=Session}") == 8 and metrics("rpc.fail_ratio{rpc=Session}") == pytest.approx(1 / 8)
    assert metrics("rpc.count{rpc=*}") == 11


def test_caller_metrics_read_the_callers_statistics_and_e2e_is_the_engines_with_a_note() -> None:
    from loadgen.core.counters import ARRIVALS, DROPPED, LATE
    from loadgen.core.stats.caller import caller_recorder

    engine = ShardStats("s")
    engine.count_accepted(2)
    engine.record_call("echo", "completed", "OK", 0.010)
    engine.record_call("echo", "completed", "OK", 0.020)
    callers = caller_recorder("locust-0")
    callers.record("latency", "echo", "completed", 2.0)  # waited 2 s before a shard accepted it
    callers.record("latency", "echo", "completed", 0.030)
    callers.record("lag", "Arrivals", "arrival", 0.4)
    callers.record("loop_lag", "locust-0", "loop", 0.25)
    callers.count(ARRIVALS, 10)
    callers.count(LATE, 3)
    callers.count(DROPPED, 1)
    gates = [
        parse_gate("latency.p99", "< 250ms"),
        parse_gate("engine.e2e.p99", "< 250ms"),
        parse_gate("e2e.p99", "< 250ms"),
        parse_gate("latency.max{function=echo,outcome=completed}", "< 1s"),
        parse_gate("lag.max{kind=arrival}", "< 100ms"),
        parse_gate("loop_lag.p50{process=locust-0}", "< 100ms"),
        parse_gate("late", "== 0"),
        parse_gate("dropped.ratio", "< 5%"),
        parse_gate("dropped_per_s", "< 1"),
    ]
    results = evaluate(gates, engine.snapshot(), 2.0, caller=callers.snapshot())
    assert [r.passed for r in results] == [False, True, True, False, False, False, False, False, True]
    assert results[0].observed == 2_000_000.0 and results[1].observed == 20_000.0 == results[2].observed
    assert "note" not in results[1].message and "[" not in results[1].message
    assert "e2e.p99 is the engine's view (accepted → end" in results[2].message
    assert "read as engine.e2e.p99; gate on latency.p99 for what callers see" in results[2].message
    assert results[7].observed == 0.1 and results[8].observed == 0.5
    no_callers = evaluate(gates[:1] + gates[6:7], engine.snapshot(), 2.0)
    assert [r.observed for r in no_callers] == [None, None] and "no data" in no_callers[0].message
    assert str(parse_gate("latency.p99{outcome=rejected}", "< 1s").metric) == "latency.p99{outcome=rejected}"
    with pytest.raises(GateSyntaxError, match="outcome must be one of completed, failed, expired"):
        parse_gate("engine.e2e.p99{outcome=rejected}", "< 1s")
    from loadgen.runs.gates import implicit_gates

    assert [str(g) for g in implicit_gates(with_caller=True)][-1] == "dropped == 0"


def test_rejected_calls_are_gate_metrics_by_reason_and_balance_with_the_offered() -> None:
    shard = ShardStats("shard-0")
    shard.count_admission(90)
    shard.count_accepted(90)
    shard.count_admission(8, "calls_in_flight")
    shard.count_admission(2, "held_bytes")
    metrics = metrics_from(shard.snapshot(), DURATION)
    assert metrics("offered") == 100 and metrics("rejected") == 10 and metrics("rejected.ratio") == 0.1
    assert metrics("rejected{reason=held_bytes}") == 2 and metrics("rejected{reason=calls_in_flight}") == 8
    accounting = shard.snapshot().accounting()
    assert accounting.offered == accounting.accepted + accounting.rejected and accounting.admission_balanced
    assert str(accounting).startswith("offered 100 = accepted 90 + rejected 10; ")
