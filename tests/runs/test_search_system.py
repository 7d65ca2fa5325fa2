"""A real capacity search: the reference endpoint, a shard and one Locust process per step.

The gate is the completed-call rate itself (``calls_per_s < 35``), so which steps pass does not
depend on how busy the machine is: 10 and 20 calls/s pass, 40 fails, the bisection tries 30
(passes), and 30 to 40 is within the precision of 50%."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
name = "search-test"
description = "A short capacity search with a deterministic gate"

[engine]
shards = 1

[[workload]]
function = "echo"
input = { message = "hi" }
expect = { message = "hi" }

[load]
model = "search"
stop_timeout = "2s"

[load.search]
start_rate = 10
precision = "50%"
warmup = "2s"
step = "2s"
max_steps = 6
min_capacity = 25

[gates]
"calls_per_s" = "< 35"
"wrong" = "== 0"
"latency.p99" = "< 5s"
"""


def test_a_short_search_names_the_highest_passing_rate_and_the_gate_above_it(tmp_path: Path) -> None:
    scenario = tmp_path / "search.toml"
    scenario.write_text(SCENARIO)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "loadgen.cli", "run", str(scenario), "--results", str(results)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (run_dir,) = list(results.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    capacity = summary["capacity"]
    steps = capacity["steps"]
    assert [step["rate"] for step in steps] == [10, 20, 40, 30]
    assert [step["verdict"] for step in steps] == ["pass", "pass", "fail", "pass"]
    assert capacity["rate"] == 30 == max(step["rate"] for step in steps if step["passed"])
    assert capacity["failed_gate"] == "calls_per_s < 35" and capacity["failed_rate"] == 40
    assert capacity["stop"] == "precision" and capacity["meets_min_capacity"] is True
    for step in steps:
        assert step["gates"] and all(gate["metric"] for gate in step["gates"])
        assert 0.85 * step["rate"] <= step["throughput"] <= 1.15 * step["rate"], step  # judged on its own window
        assert 1.0 <= step["seconds"] <= 2.01 and step["arrivals"] == round(step["seconds"] * step["rate"]), step
        assert step["latency_us"]["count"] > 0 and step["failed"] == 0 and step["dropped"] == 0
        assert (run_dir / "steps" / f"{step['index']:02d}-{step['rate']:g}" / "caller.json").is_file()
    (failing,) = [step for step in steps if not step["passed"]]
    assert failing["failed_gate"] == "calls_per_s < 35" and "expected < 35" in failing["message"]
    # The run's verdict is the capacity against min_capacity; every call is accounted for.
    assert summary["gates"]["results"][0]["metric"] == "capacity" and summary["gates"]["passed"]
    assert summary["accounting"]["balanced"] and summary["accounting"]["failed"] == 0
    assert summary["accounting"]["completed"] == summary["accounting"]["accepted"] > 0
    assert summary["checks"]["functions"]["echo"]["wrong"] == 0
    progress = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert len(progress) >= 4 and all("completed_per_s" in record for record in progress)  # what a kill leaves
    # Progress while it ran, the knee table and the capacity at the end.
    assert "step 3: 40 calls/s" in output and "step 3 at 40 calls/s FAIL: calls_per_s < 35" in output
    assert "capacity search: 4 step(s), by offered rate" in output
    assert "gate PASS  capacity = 30 calls/s (min_capacity 25: met)" in output
    page = (run_dir / "report.html").read_text()
    assert "<h2>Capacity</h2>" in page and "Latency against offered rate" in page
    assert "<h2>Latency distribution</h2>" in page and "echo: latency by percentile" in page
    assert "Latency as callers saw it" in page  # over time, across the steps
    assert any("latency_us" in record for record in summary["series"])
