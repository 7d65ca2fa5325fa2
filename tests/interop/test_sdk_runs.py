"""``loadgen run`` against endpoints on the real SDKs: 0.7.1 and 0.8.0, FastAPI under uvicorn.

Each test is one short run (a few seconds of load) of a scenario written here, against the
session's endpoints (``sdk_app``, ``sdk08_app``: one process each for every test): results
checked against ``expect``, failures named while they happen and in the results, exit codes
that say what happened, and runs that end on time. A plain locustfile drives ``loadgen serve``
through the Locust plug-in the same way.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.system

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LOCUST = str(Path(sys.executable).with_name("locust"))
GOLDEN_SEED_B64 = "Dsr7yalHYydmUuSXefCukAHo2ZSm1ED2pyGQYlwheiE="  # the key the session's endpoints trust
SdkApp = Any  # conftest's SdkApp and LoadgenService (a conftest module cannot be imported by name)
LoadgenService = Any


def _scenario(app: SdkApp, body: str, *, name: str, users: int = 4, duration: str = "2s", stop: str = "3s") -> str:
    text = (
        f'name = "{name}"\n[target]\nurl = "{app.url}"\nsigning_key = "env:INTEROP_SIGNING_KEY"\n'
        '[engine]\nshards = 1\nbackoff = "10ms"\nmax_backoff = "50ms"\n'
        f"{body}\n"
    )
    if "[load]" not in body:
        text += f'[load]\nusers = {users}\nduration = "{duration}"\nstop_timeout = "{stop}"\n'
    return text


def _run(tmp_path: Path, text: str, *extra: str, timeout: float = 90) -> tuple[subprocess.CompletedProcess[str], Path]:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(text)
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "LOADGEN_"))}
    env["INTEROP_SIGNING_KEY"] = GOLDEN_SEED_B64
    command = [sys.executable, "-m", "loadgen.cli", "run", str(scenario), "--results", str(results), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, check=False)
    (run_dir,) = list(results.iterdir())
    return done, run_dir


def _summary(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return summary


def _gates(summary: dict[str, Any]) -> dict[str, bool]:
    return {gate["metric"]: gate["passed"] for gate in summary["gates"]["results"]}


def _errors(summary: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(row["kind"], row["function"], row["status"]): row for row in summary["errors"]}


def _locust_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


# ---------------------------------------------------------------------------------------------
# dispatch-py 0.7.1
# ---------------------------------------------------------------------------------------------

RIGHT_071 = """
[[workload]]
function = "greet"
args = ["bob"]
kwargs = { punct = "!" }
expect = "hello bob!"

[[workload]]
function = "add"
args = [1, 2]
expect = 3

[[workload]]
function = "fanout"
args = [4]
expect = [0, 1, 4, 9]

[[workload]]
function = "wobbly"
expect = "steady"
"""


@pytest.mark.timeout(120)
def test_right_results_on_sdk_071_pass(sdk_app: SdkApp, tmp_path: Path) -> None:
    done, run_dir = _run(tmp_path, _scenario(sdk_app, RIGHT_071, name="sdk071-right"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inputs and outputs as sdk 'dispatch-py'" in done.stderr
    summary = _summary(run_dir)
    accounting = summary["accounting"]
    assert accounting["balanced"] and accounting["completed"] == accounting["accepted"] > 0
    checks = summary["checks"]["functions"]
    assert set(checks) == {"greet", "add", "fanout", "wobbly"}
    assert all(c["wrong"] == 0 and c["checked"] == c["results"] > 0 for c in checks.values())
    assert summary["counters"]["wrong"] == 0 and summary["functions"]["greet"]["wrong"] == 0
    assert summary["counters"]["retries/TEMPORARY_ERROR"] > 0  # wobbly failed attempts, then completed
    assert _errors(summary)[("attempt", "wobbly", "TEMPORARY_ERROR")]["sample"].startswith("TemporaryError: wobbly")
    assert summary["functions"]["square"]["completed"] == 0 and summary["functions"]["square"]["attempts"] > 0
    assert all(gate["implicit"] and gate["passed"] for gate in summary["gates"]["results"])


WRONG_071 = """
[[workload]]
function = "greet"
args = ["bob"]
expect = "hello bob!"

[[workload]]
function = "doomed"

[[workload]]
function = "no_such_function"

[[workload]]
function = "evil"
args = ["{marker}"]
expect = 0
"""


@pytest.mark.timeout(120)
def test_wrong_results_and_failures_on_sdk_071_fail_the_run_with_their_messages(
    sdk_app: SdkApp, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled-and-ran"
    body = WRONG_071.replace("{marker}", str(marker))
    done, run_dir = _run(tmp_path, _scenario(sdk_app, body, name="sdk071-wrong", users=2, duration="2s", stop="2s"))
    assert done.returncode == 1, done.stdout + done.stderr
    summary = _summary(run_dir)
    assert summary["accounting"]["balanced"]
    gates = _gates(summary)
    assert gates == {
        "failed": False,
        "expired": True,
        "cancelled": True,
        "lost": True,
        "rejected": True,
        "wrong": False,
        "locust.failures": False,
        "dropped": True,
    }
    assert "gate FAIL  implicit gate (the scenario has no [gates]): wrong = " in done.stdout
    # A permanent failure: one attempt per call. A function the endpoint lacks: NOT_FOUND at once.
    errors = _errors(summary)
    doomed, missing = summary["functions"]["doomed"], summary["functions"]["no_such_function"]
    assert doomed["failed"] == doomed["attempts"] == errors[("failed", "doomed", "INVALID_ARGUMENT")]["count"] > 0
    assert errors[("attempt", "doomed", "INVALID_ARGUMENT")]["sample"] == "ValueError: doomed to fail: default"
    assert missing["failed"] == missing["attempts"] > 0 and missing["expired"] == 0
    not_found = errors[("failed", "no_such_function", "NOT_FOUND")]
    assert not_found["sample"] == "HTTP 404: function 'no_such_function' does not exist"
    assert "failing: " in done.stderr  # named while it happened
    # Wrong results, with samples; the malicious output was named, not run.
    checks = summary["checks"]
    assert checks["functions"]["greet"]["wrong"] == checks["functions"]["greet"]["checked"] > 0
    samples = {(s["function"], s["expected"], s["got"]) for s in checks["samples"]}
    assert ("greet", "'hello bob!'", "'hello bob?'") in samples
    assert any(f == "evil" and "opaque posix.system" in got for f, _, got in samples)
    assert not marker.exists()
    # Locust saw the same: the call entries of failed and wrong calls are failures.
    rows = _locust_rows(run_dir / "locust_stats.csv")
    assert int(rows["call greet"]["Failure Count"]) == int(rows["call greet"]["Request Count"]) > 0
    assert int(rows["call no_such_function"]["Failure Count"]) > 0
    failures = (run_dir / "locust_failures.csv").read_text()
    assert "NOT_FOUND: HTTP 404: function 'no_such_function' does not exist" in failures
    assert "wrong result: expected 'hello bob!', got 'hello bob?'" in failures
    report = (run_dir / "report.html").read_text()
    assert "function &#x27;no_such_function&#x27; does not exist" in report and "Checked results" in report


@pytest.mark.timeout(120)
def test_a_run_ends_on_time_when_its_calls_never_end(sdk_app: SdkApp, tmp_path: Path) -> None:
    """``stuck`` fails retryably forever, with a 60 s expiration: the run still ends at duration + stop_timeout."""
    body = (
        '[[workload]]\nfunction = "stuck"\n'
        '[[workload]]\nfunction = "stuck"\nbatch = 20\nwait = false\n'
        '[load]\nusers = 2\nduration = "2s"\nstop_timeout = "2s"\n'
    )
    text = _scenario(sdk_app, body, name="sdk071-stuck")
    text = text.replace('backoff = "10ms"', 'expiration = "60s"\nbackoff = "10ms"')
    started = time.monotonic()
    done, run_dir = _run(tmp_path, text)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 2 + 2 + 20, f"the run took {elapsed:.1f}s"  # start-up and teardown: well under 20 s
    summary = _summary(run_dir)
    accounting = summary["accounting"]
    assert accounting["balanced"] and accounting["cancelled"] == accounting["accepted"] > 0
    assert accounting["expired"] == 0 and accounting["completed"] == 0 and accounting["in_flight"] == 0
    assert not _gates(summary)["cancelled"]
    assert summary["counters"]["unfinished"] > 0  # the waits were cancelled, not waited out
    assert "cancelled at the end" in done.stdout
    assert "failing: stuck TEMPORARY_ERROR" in done.stderr


# ---------------------------------------------------------------------------------------------
# dispatch-py 0.8.0
# ---------------------------------------------------------------------------------------------

RIGHT_080 = """
[[workload]]
function = "greet"
args = ["bob"]
expect = "hello bob?"

[[workload]]           # 0.8.0 runs a blocking function with run_in_executor(func, *args, **kwargs),
function = "greet"     # which takes no keyword arguments: an SDK bug, so this call fails (TypeError)
args = ["bob"]
kwargs = { punct = "!" }

[[workload]]
function = "agreet"    # a coroutine takes keyword arguments
args = ["bob"]
kwargs = { punct = "!" }
expect = "hello bob!"

[[workload]]
function = "add"
args = [1, 2]
expect = 3

[[workload]]
function = "fanout"
args = [4]
expect = [0, 1, 4, 9]  # 0.8.0 sends lists as google.protobuf.Value: 0.0, 1.0, 4.0, 9.0

[[workload]]
function = "wobbly"
expect = "steady"

[gates]                # this scenario expects the SDK bug, and says so
"failed{status=INVALID_ARGUMENT}" = "> 0"
"wrong" = "== 0"
"expired" = "== 0"
"lost" = "== 0"
"""


@pytest.mark.timeout(120)
def test_sdk_080_results_and_its_keyword_arguments_bug(sdk08_app: SdkApp, tmp_path: Path) -> None:
    done, run_dir = _run(tmp_path, _scenario(sdk08_app, RIGHT_080, name="sdk080"))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = _summary(run_dir)
    assert summary["accounting"]["balanced"] and all(_gates(summary).values())
    checks = summary["checks"]["functions"]
    assert checks["agreet"]["checked"] > 0 and checks["fanout"]["checked"] > 0 and checks["add"]["checked"] > 0
    assert summary["counters"]["wrong"] == 0
    bug = _errors(summary)[("failed", "greet", "INVALID_ARGUMENT")]
    assert "run_in_executor() got an unexpected keyword argument 'punct'" in bug["sample"]
    assert summary["counters"]["failed/INVALID_ARGUMENT"] == summary["accounting"]["failed"]


@pytest.mark.timeout(120)
def test_open_model_against_sdk_080(sdk08_app: SdkApp, tmp_path: Path) -> None:
    body = (
        '[[workload]]\nfunction = "agreet"\nargs = ["ann"]\nexpect = "hello ann?"\n'
        '[[workload]]\nfunction = "add"\nargs = [20, 22]\nexpect = 42\n'
        '[load]\nmodel = "open"\nstages = [{ duration = "2s", rate = 10 }]\nmax_in_flight = 20\nstop_timeout = "3s"\n'
    )
    done, run_dir = _run(tmp_path, _scenario(sdk08_app, body, name="sdk080-open"))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = _summary(run_dir)
    accounting = summary["accounting"]
    assert accounting["balanced"] and accounting["completed"] == accounting["accepted"]
    checked = sum(c["checked"] for c in summary["checks"]["functions"].values())
    assert checked == accounting["accepted"] and 14 <= checked <= 21  # 20 arrivals, give or take the edges
    assert summary["counters"]["wrong"] == 0


# ---------------------------------------------------------------------------------------------
# A plain locustfile
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_plain_locustfile_checks_results_and_exits_1_on_a_wrong_one(
    loadgen: LoadgenService, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "LOADGEN_", "LOCUST_"))}
    env.update(
        LOADGEN_ADDRESSES=loadgen.target,
        DISPATCH_API_KEY=loadgen.api_key,
        LOADGEN_SDK="dispatch-py",
        LOADGEN_CALLER_FILE=str(tmp_path / "caller.json"),
        PYTHONPATH=str(ROOT),
    )
    command = [LOCUST, "-f", str(HERE / "sdk_locustfile.py"), "--headless", "-u", "3", "-r", "3", "-t", "3s"]
    command += ["--csv", str(tmp_path / "run"), "--only-summary", "--stop-timeout", "5"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr[-4000:]  # Locust's own verdict: some requests failed
    assert loadgen.api_key not in done.stderr + done.stdout
    rows = _locust_rows(tmp_path / "run_stats.csv")
    assert int(rows["call greet"]["Request Count"]) > 0 and rows["call greet"]["Failure Count"] == "0"
    assert int(rows["call add"]["Request Count"]) > 0 and rows["call add"]["Failure Count"] == "0"
    assert int(rows["call square"]["Failure Count"]) == int(rows["call square"]["Request Count"]) > 0
    caller = json.loads((tmp_path / "caller.json").read_text())["checks"]
    assert caller["greet"]["wrong"] == 0 and caller["greet"]["checked"] == caller["greet"]["results"] > 0
    assert caller["square"]["wrong"] == caller["square"]["checked"] > 0
    assert caller["square"]["samples"][0] == {"expected": "-1", "got": "49"}
