"""Caller-side latency in ``loadgen run``: a pause of the shards shows in ``latency.*``, not in ``engine.e2e.*``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadgen.core.caller import CALLER_FILE, parse_caller_document
from loadgen.core.counters import ARRIVALS

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
PAUSE = 1.0

SCENARIO = """
name = "paused"
[target]
reference = true
[engine]
shards = 2
[[workload]]
function = "echo"
input = { message = "hi" }
[load]
model = "open"
stages = [{ duration = "6s", rate = 100 }]
stop_timeout = "2s"
processes = 2
[gates]
"latency.p99" = "< 250ms"
"engine.e2e.p99" = "< 250ms"
"e2e.p99" = "< 250ms"
"""


def _shard_pids(run_pid: int) -> list[int]:
    """The shard processes of a ``loadgen run`` (multiprocessing children of the run itself)."""
    found = []
    for child in subprocess.run(["pgrep", "-P", str(run_pid)], capture_output=True, text=True).stdout.split():
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            found.append(int(child))
    return found


def _arrivals(run_dir: Path) -> int:
    try:
        caller = parse_caller_document(json.loads((run_dir / CALLER_FILE).read_text()), "caller.json")
    except (FileNotFoundError, ValueError):
        return 0
    return caller.latency.counters.get(ARRIVALS, 0) if caller.latency is not None else 0


def test_a_pause_of_the_shards_fails_a_latency_gate_while_the_engines_e2e_passes(tmp_path: Path) -> None:
    scenario = tmp_path / "paused.toml"
    scenario.write_text(SCENARIO)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "loadgen.cli", "run", str(scenario), "--results", str(results)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    paused: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:  # until the callers reported 150 arrivals
            dirs = list(results.glob("*")) if results.exists() else []
            if dirs and _arrivals(dirs[0]) >= 150:
                break
            time.sleep(0.1)
        paused = _shard_pids(run.pid)
        assert len(paused) == 2 and run.poll() is None
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(PAUSE)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    out, err = run.communicate(timeout=90)
    assert run.returncode == 1, out + err
    (run_dir,) = list(results.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    verdict = {gate["metric"]: gate for gate in summary["gates"]["results"]}
    assert not verdict["latency.p99"]["passed"] and verdict["latency.p99"]["observed"] >= 0.8 * PAUSE * 1e6
    assert verdict["engine.e2e.p99"]["passed"] and verdict["engine.e2e.p99"]["observed"] < PAUSE * 1e6 / 2
    assert verdict["e2e.p99"]["observed"] == verdict["engine.e2e.p99"]["observed"]
    assert "read as engine.e2e.p99; gate on latency.p99" in verdict["e2e.p99"]["message"]
    callers = summary["callers"]
    assert callers["latency_us"]["max"] >= 0.9 * PAUSE * 1e6
    assert callers["arrivals"] == 600 and callers["processes"] == ["locust-0", "locust-1"]  # 300 + 300, exact
    assert summary["functions"]["echo"]["latency_us"]["count"] == 600 == summary["accounting"]["completed"]
    worst = [(r.get("latency_us") or {}).get("max") or 0 for r in summary["series"]]
    assert max(worst) >= 0.9 * PAUSE * 1e6  # the outage shows in the report's series
    assert "latency p99" in err and "engine e2e p99" in err
    assert "callers (2 Locust process(es))" in out
    report = (run_dir / "report.html").read_text()
    assert "Latency as callers saw it" in report and "Load generator lag" in report
