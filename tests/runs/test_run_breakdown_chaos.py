"""``loadgen run`` against the reference endpoint: where root calls' time went adds up per function,
and ``[engine.chaos]`` reports what it injected while the results stay right."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.runs.test_run import loadgen_run, only_run_dir

pytestmark = pytest.mark.system

BREAKDOWN = """
name = "breakdown"
[target]
reference = true
[engine]
shards = 1
connections = 1
max_streams = 4           # few streams: attempts wait in the shard's queue
backoff = "10ms"
max_backoff = "20ms"
[[workload]]
function = "fail"
input = { status = "TEMPORARY_ERROR", times = 2 }
[[workload]]
function = "fanout"
input = { n = 3, function = "sleep", input = { ms = 5 } }
[[workload]]
function = "sleep"
input = { ms = 10 }
[load]
model = "closed"
users = 12
spawn_rate = 12
duration = "4s"
[gates]
"failed" = "== 0"
"breakdown.backoff.p50{function=fail}" = "> 5ms"
"breakdown.children.p50{function=fanout}" = "> 4ms"
"breakdown.queue.max" = "> 0ms"
"resumes.p50{function=fanout}" = "== 1"
"children.max{function=fanout}" = "== 3"
"state_bytes.max" = "> 10"
"""

CHAOS = """
name = "chaos"
[target]
reference = true
[engine]
shards = 1
[engine.chaos]
duplicate_rate = 0.3
delay_rate = 0.3
delay = "20ms"
reorder_rate = 0.5
partial_rate = 0.5
[[workload]]
function = "fanout"
input = { n = 4, input = { k = "v" } }
expect = { results = [{ k = "v" }, { k = "v" }, { k = "v" }, { k = "v" }], errors = 0 }
[[workload]]
function = "echo"
input = { message = "hello" }
expect = { message = "hello" }
[load]
model = "closed"
users = 8
spawn_rate = 8
duration = "4s"
"""


def run_scenario(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    """``loadgen run`` of scenario *text*: its output, its summary.json and its run folder; it must pass."""
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(text)
    done = loadgen_run(str(scenario), results=tmp_path / "results")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = only_run_dir(tmp_path / "results")
    return done, json.loads((run_dir / "summary.json").read_text()), run_dir


def test_the_phases_of_root_calls_add_up_to_their_e2e_time_and_gate(tmp_path: Path) -> None:
    done, summary, run_dir = run_scenario(tmp_path, BREAKDOWN)
    breakdown = summary["breakdown"]
    assert set(breakdown) == {"fail", "fanout", "sleep"}
    for function, entry in breakdown.items():
        assert entry["calls"] == summary["functions"][function]["calls"] > 0
        phases = sum(part["mean"] for part in entry["phases"].values())
        assert phases == pytest.approx(entry["e2e_mean_us"], rel=0.01), function
        assert entry["gap"] < 0.01
    assert breakdown["fail"]["resumes"]["max"] == 0 and breakdown["fanout"]["children"]["p50"] == 3
    assert "where the time went" in done.stdout and "backoff" in done.stdout
    assert "Where the time went" in (run_dir / "report.html").read_text()


def test_chaos_reports_what_it_injected_and_idempotent_results_stay_right(tmp_path: Path) -> None:
    done, summary, _ = run_scenario(tmp_path, CHAOS)
    injected = summary["chaos"]["injected"]
    assert injected["duplicated"] > 0 and injected["delayed"] > 0
    assert injected["reordered"] > 0 and injected["partial"] > 0
    assert injected["duplicate_failed"] == 0
    assert summary["counters"]["chaos/duplicated"] == injected["duplicated"]
    assert summary["accounting"]["balanced"]
    checked = summary["checks"]["functions"]
    assert checked["fanout"]["checked"] > 0 and checked["echo"]["checked"] > 0
    assert summary["counters"]["wrong"] == 0
    assert 0.2 < injected["duplicated"] / summary["counters"]["attempts"] < 0.4  # of the attempts sent, 0.3
    assert "chaos injected:" in done.stdout and "requests delivered twice" in done.stdout
