"""Locust as ``loadgen run``'s child process: its command line, and what it leaves in the run folder
(Locust's CSV totals, the callers' checked results in ``caller.json``)."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from loadgen.core.caller import CALLER_FILE, CallerFile, parse_caller_document
from loadgen.runs.metrics import LocustTotals
from loadgen.runs.scenario import Scenario

__all__ = [
    "LOCUSTFILE",
    "WORKERS_FILE",
    "MasterSetup",
    "caller_file",
    "locust_command",
    "locust_totals",
    "planned_seconds",
    "read_caller_file",
    "stop_locust",
]

LOCUSTFILE: Final = Path(__file__).with_name("locustfile.py")
LOCUST_BACKSTOP: Final = 15.0  # Locust's own --run-time, beyond duration + stop_timeout: if our stop never came


def planned_seconds(scenario: Scenario) -> float:
    load = scenario.load
    return sum(stage.duration for stage in load.stages) if load.model == "open" else load.duration


@dataclass(frozen=True)
class MasterSetup:
    """``loadgen run --master``: Locust as the master of *expect_workers* ``loadgen worker`` machines."""

    expect_workers: int = 1
    bind_host: str = "127.0.0.1"
    bind_port: int = 5557
    worker_timeout: float = 60.0


WORKERS_FILE: Final = "workers.json"


def locust_command(
    scenario: Scenario, web: bool, web_port: int, run_dir: Path, master: MasterSetup | None = None
) -> list[str]:
    load = scenario.load
    stop = load.stop_timeout
    backstop = LOCUST_BACKSTOP + (stop if master is not None else 0.0)  # a master also settles its workers' calls
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--csv", str(run_dir / "locust")]
    command += ["--html", str(run_dir / "locust.html"), "--loglevel", "WARNING"]
    command += ["--dispatch-settle", "0", "--dispatch-caller-file", str(run_dir / CALLER_FILE)]
    if load.model == "open":
        # The executors stop once the schedule is over plus its grace (= stop_timeout): no waiting after that.
        executors = max(1, load.max_in_flight)
        command += ["-u", str(executors), "-r", str(executors), "--stop-timeout", "0"]
        command += ["-t", f"{planned_seconds(scenario) + stop + backstop:.0f}s"]
    else:
        command += ["-u", str(load.users), "-r", f"{load.spawn_rate:g}", "--stop-timeout", f"{stop:g}"]
        if not web:
            command += ["--dispatch-run-time", f"{load.duration:g}"]
            command += ["-t", f"{load.duration + stop + backstop:.0f}s"]
    if master is not None:  # no users of its own; the workers' calls in flight get stop_timeout to end
        command += ["--master", "--master-bind-host", master.bind_host, "--master-bind-port", str(master.bind_port)]
        command += ["--expect-workers", str(master.expect_workers), "--dispatch-settle", f"{stop:g}"]
        command += ["--dispatch-workers-file", str(run_dir / WORKERS_FILE)]
        command += ["--dispatch-ready-timeout", f"{master.worker_timeout:g}"]
    elif load.processes != 1:  # the master on loopback, on a free port (two runs must not collide)
        port = str(_free_port())  # the forked workers connect to --master-port, the master binds --master-bind-port
        command += ["--processes", str(load.processes), "--master-bind-host", "127.0.0.1"]
        command += ["--master-bind-port", port, "--master-host", "127.0.0.1", "--master-port", port]
    if web:
        command += ["--web-host", "127.0.0.1", "--web-port", str(web_port)]
    else:
        command += ["--headless"]
    return command


def stop_locust(process: subprocess.Popen[bytes]) -> None:
    """Stop Locust and its whole process group (its own session: the master and any worker it forked),
    SIGTERM first, then SIGKILL for whatever is left, even once the master itself is gone."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def locust_totals(run_dir: Path) -> LocustTotals | None:
    path = run_dir / "locust_stats.csv"
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated":
                return LocustTotals(requests=int(row["Request Count"]), failures=int(row["Failure Count"]))
    return None


def caller_file(run_dir: Path) -> CallerFile | None:
    """The callers' checked results so far (None: none yet, or unreadable for now)."""
    try:
        return read_caller_file(run_dir / CALLER_FILE)
    except (OSError, ValueError):
        return None


def read_caller_file(path: str | Path) -> CallerFile | None:
    """The caller file at *path*; ``None`` if there is none yet. ``ValueError`` if it is not one."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    return parse_caller_document(data, str(path))
