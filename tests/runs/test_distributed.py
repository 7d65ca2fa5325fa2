"""``loadgen run --master`` with ``loadgen worker`` machines (network namespaces, else loopback addresses).

One master and three workers run a closed-model scenario; one worker is SIGKILLed mid-run: its
calls in flight count as lost, the run goes on, the verdict fails, the per-worker accounting adds
up to the totals, and nothing is left running. An open-model run with two workers turns away a
worker that comes after the start. A master whose workers do not all come gives up with a clear
message and exit code 3.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machines import ROOT, Machines, make_machines

pytestmark = pytest.mark.system

ACCOUNTING = ("accepted", "completed", "failed", "expired", "cancelled", "in_flight", "lost")

CLOSED = """\
name = "spread"
[engine]
shards = 1
[[workload]]
function = "sleep"
input = { ms = 100 }
[[workload]]
function = "echo"
input = { message = "hi" }
expect = { message = "hi" }
[load]
users = 6
spawn_rate = 6
duration = "8s"
stop_timeout = "5s"
[gates]
"lost" = "== 0"
"calls_per_s" = "> 5"
"""

# Every user mostly has a 1 s call in flight, so the worker killed holds some at its last report.
KILLED = (
    CLOSED.replace("input = { ms = 100 }", "input = { ms = 1000 }\nweight = 3")
    .replace('"8s"', '"12s"')
    .replace('"> 5"', '"> 1"')
)

OPEN = """\
name = "spread-open"
[engine]
shards = 1
[[workload]]
function = "echo"
input = { message = "hi" }
[load]
model = "open"
stages = [{ duration = "6s", rate = 40 }]
max_in_flight = 20
stop_timeout = "5s"
"""


@pytest.fixture(scope="module")
def machines() -> Iterator[Machines]:
    found = make_machines(3)
    try:
        yield found
    finally:
        found.close()


def free_port(host: str) -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def start_master(tmp_path: Path, scenario: str, machines: Machines, *extra: str) -> tuple[subprocess.Popen[str], str]:
    path = tmp_path / "scenario.toml"
    path.write_text(scenario)
    port = free_port(machines.master_host)
    command = [sys.executable, "-m", "loadgen.cli", "run", str(path), "--master", "--results", str(tmp_path / "r")]
    command += ["--master-bind-host", machines.master_host, "--master-bind-port", str(port), *extra]
    master = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=(tmp_path / "master.err").open("w"), text=True
    )
    return master, f"{machines.master_host}:{port}"


def wait_for(condition: Any, what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def master_err(tmp_path: Path) -> str:
    return (tmp_path / "master.err").read_text()


def summary_of(tmp_path: Path) -> dict[str, Any]:
    (run_dir,) = list((tmp_path / "r").iterdir())
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    assert (run_dir / "junit.xml").exists() and (run_dir / "gates.json").exists() and (run_dir / "report.html").exists()
    return data


def assert_totals_are_the_workers_sum(summary: dict[str, Any]) -> None:
    workers = summary["workers"]
    for name in ACCOUNTING:
        assert summary["accounting"][name] == sum(w["accounting"][name] for w in workers), name
    assert summary["accounting"]["balanced"] and all(w["accounting"]["balanced"] for w in workers)


def in_flight(progress: str) -> int:
    """Calls in flight on the master's latest progress line (0 before the first)."""
    found = re.findall(r"in flight (\d+)", progress)
    return int(found[-1]) if found else 0


def no_process_with(text: str) -> bool:
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True).stdout.split()
    return not [pid for pid in found if int(pid) != os.getpid()]


@pytest.mark.timeout(120)
def test_three_workers_one_killed_mid_run_is_reported_lost(machines: Machines, tmp_path: Path) -> None:
    master, address = start_master(tmp_path, KILLED, machines, "--expect-workers", "3", "--worker-timeout", "40s")
    workers = [machines.start_worker(i, address, tmp_path / f"worker{i}.log") for i in range(3)]
    try:
        wait_for(lambda: in_flight(master_err(tmp_path)) >= 3, "the load did not start: " + master_err(tmp_path))
        workers[0].send_signal(signal.SIGKILL)  # every worker has calls in flight now
        out, _ = master.communicate(timeout=80)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.wait(30)
    err = master_err(tmp_path)
    assert master.returncode == 1, out + err  # the lost gate failed
    assert "worker-0" in err and "lost:" in err and "the run goes on with the others" in err
    summary = summary_of(tmp_path)
    states = sorted(w["state"] for w in summary["workers"])
    assert states == ["lost", "ready", "ready"], summary["workers"]
    lost = next(w for w in summary["workers"] if w["state"] == "lost")
    assert lost["lost_in_flight"] >= 1 and lost["accounting"]["lost"] == lost["lost_in_flight"]
    assert summary["accounting"]["lost"] == lost["lost_in_flight"]
    assert_totals_are_the_workers_sum(summary)
    others = [w for w in summary["workers"] if w["state"] == "ready"]
    assert all(w["accounting"]["completed"] > lost["accounting"]["completed"] for w in others)  # went on after
    assert "gate FAIL  lost" in out
    (run_dir,) = list((tmp_path / "r").iterdir())
    report = (run_dir / "report.html").read_text()
    assert "<h2>Workers</h2>" in report and "call(s) in flight at its last report" in report
    assert [w.returncode for w in workers[1:]] == [0, 0]
    wait_for(lambda: no_process_with(address.split(":")[1]), "processes left behind", timeout=15)
    for i in range(3):  # the keys never show
        log = (tmp_path / f"worker{i}.log").read_text()
        assert "api_key" not in log and "signing_key" not in log


@pytest.mark.timeout(90)
def test_open_model_over_two_workers_and_a_late_one_is_turned_away(machines: Machines, tmp_path: Path) -> None:
    master, address = start_master(tmp_path, OPEN, machines, "--expect-workers", "2")
    workers = [machines.start_worker(i, address, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        wait_for(lambda: "calls/s" in master_err(tmp_path), "the load did not start: " + master_err(tmp_path))
        late = machines.start_worker(2, address, tmp_path / "late.log")
        assert late.wait(40) == 3
        assert "turned away: the run started at" in (tmp_path / "late.log").read_text()
        out, _ = master.communicate(timeout=60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.wait(30)
    assert master.returncode == 0, out + master_err(tmp_path)
    summary = summary_of(tmp_path)
    assert sorted(w["state"] for w in summary["workers"]) == ["ready", "ready"]
    assert_totals_are_the_workers_sum(summary)
    accepted = summary["accounting"]["accepted"]
    assert 200 <= accepted <= 240, accepted  # 40 arrivals/s for 6 s, shared by the two workers
    assert all(w["accounting"]["accepted"] >= 90 for w in summary["workers"])  # each took its share
    assert [w.returncode for w in workers] == [0, 0]


@pytest.mark.timeout(60)
def test_workers_that_never_come_end_the_run_with_a_clear_message(machines: Machines, tmp_path: Path) -> None:
    master, address = start_master(tmp_path, CLOSED, machines, "--expect-workers", "2", "--worker-timeout", "3s")
    worker = machines.start_worker(0, address, tmp_path / "worker0.log")
    out, _ = master.communicate(timeout=40)
    assert master.returncode == 3, out + master_err(tmp_path)
    assert "1 of 2 worker(s) ready" in master_err(tmp_path) and "not starting" in master_err(tmp_path)
    assert worker.wait(30) in (0, 3)
    (run_dir,) = list((tmp_path / "r").iterdir())
    assert not (run_dir / "summary.json").exists()
