"""``loadgen run``: real endpoint, shards and Locust processes; exit codes, results, accounting."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


def loadgen_run(*args: str, results: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "loadgen.cli", "run", *args, "--results", str(results)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def only_run_dir(results: Path) -> Path:
    (run_dir,) = list(results.iterdir())
    return run_dir


def locust_rows(run_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (run_dir / "locust_stats.csv").open(newline="") as handle:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}


def dispatched_calls(run_dir: Path) -> int:
    """Calls Locust dispatched: its ``call <fn>`` entries (one per call waited for) and its successful
    ``Dispatch <fn>`` entries (batch 1 in these scenarios)."""
    total = 0
    for (kind, name), row in locust_rows(run_dir).items():
        if kind == "call":
            total += int(row["Request Count"])
        elif name.startswith("Dispatch "):
            total += int(row["Request Count"]) - int(row["Failure Count"])
    return total


def test_quickstart_passes_and_accounts_for_every_call(tmp_path: Path) -> None:
    done = loadgen_run("--duration", "5s", "--users", "8", results=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = only_run_dir(tmp_path)
    for name in ("summary.json", "report.html", "gates.json", "junit.xml", "locust_stats.csv", "scenario.json"):
        assert (run_dir / name).exists(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    accounting = summary["accounting"]
    assert accounting["balanced"] and accounting["in_flight"] == 0 and accounting["lost"] == 0
    accepted = accounting["accepted"]
    terminal = accounting["completed"] + accounting["failed"] + accounting["expired"]
    assert accepted > 0 and dispatched_calls(run_dir) == accepted == terminal
    assert "gate PASS" in done.stdout and "balanced" in done.stdout
    assert "<svg" in (run_dir / "report.html").read_text()


def test_waited_echo_calls_are_one_locust_entry_each_and_the_engine_agrees(tmp_path: Path) -> None:
    """Every ``call echo`` entry is one call the shards accepted and completed, over the Session streams."""
    scenario = tmp_path / "echo.toml"
    scenario.write_text(
        'name = "echo"\n[load]\nusers = 16\nduration = "3s"\n'
        '[[workload]]\nfunction = "echo"\ninput = { message = "hi" }\nexpect = { message = "hi" }\n'
    )
    results = tmp_path / "results"
    done = loadgen_run(str(scenario), results=results)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = only_run_dir(results)
    rows = locust_rows(run_dir)
    assert {name for kind, name in rows if kind in ("grpc", "call")} == {"call echo"}  # no Dispatch or Wait RPCs
    calls = int(rows[("call", "call echo")]["Request Count"])
    assert rows[("call", "call echo")]["Failure Count"] == "0"
    summary = json.loads((run_dir / "summary.json").read_text())
    accounting = summary["accounting"]
    assert calls == accounting["accepted"] == accounting["completed"] > 0 and accounting["balanced"]
    assert summary["checks"]["functions"]["echo"]["checked"] == calls


def test_failing_gate_exits_1_with_junit_failure(tmp_path: Path) -> None:
    scenario = tmp_path / "impossible.toml"
    scenario.write_text(
        'name = "impossible"\n[load]\nusers = 4\nduration = "3s"\n[gates]\n"calls_per_s" = "> 1000000"\n'
    )
    results = tmp_path / "results"
    done = loadgen_run(str(scenario), results=results)
    assert done.returncode == 1, done.stdout + done.stderr
    run_dir = only_run_dir(results)
    gates = json.loads((run_dir / "gates.json").read_text())
    assert [gate["passed"] for gate in gates["gates"]] == [False]
    suite = ET.parse(run_dir / "junit.xml").getroot()
    assert suite.find(".//failure") is not None
    assert "gate FAIL" in done.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[load]\nusers = "many"\n', "load.users"),
        ("[[workload]]\nfunction = \"echo\"\nweight = -1\n", "workload[0].weight"),
        ("[load\n", "TOML"),
    ],
)
def test_broken_scenario_exits_2_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    scenario = tmp_path / "broken.toml"
    scenario.write_text(text)
    results = tmp_path / "results"
    done = loadgen_run(str(scenario), results=results, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "broken.toml" in done.stderr and expected in done.stderr
    assert not results.exists() or not list(results.iterdir())


def test_retry_storm_retries_about_30_percent(tmp_path: Path) -> None:
    done = loadgen_run(str(ROOT / "scenarios" / "retry-storm.toml"), "--duration", "6s", results=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["accounting"]["balanced"]
    assert summary["gates"]["passed"] and all(gate["passed"] for gate in summary["gates"]["results"])


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
        for child in map(int, children):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _start_and_wait_for_progress(results: Path) -> tuple[subprocess.Popen[str], set[int]]:
    command = [sys.executable, "-m", "loadgen.cli", "run", "--duration", "60s", "--results", str(results)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stderr is not None
    for line in process.stderr:  # bounded: the run itself lasts at most 60 s
        accepted = re.search(r"calls/s.* accepted (\d+)", line)
        if accepted and int(accepted[1]) > 0:  # the load runs (a run stopped before any call says nothing ran)
            break
    return process, _descendants(process.pid)


def _wait_gone(pids: set[int], seconds: float = 20) -> set[int]:
    import time

    deadline = time.monotonic() + seconds
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)}
        time.sleep(0.1)
    return alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return "zombie"


def test_sigterm_ends_the_run_cleanly_with_results(tmp_path: Path) -> None:
    import signal

    process, children = _start_and_wait_for_progress(tmp_path)
    assert len(children) >= 4  # endpoint, Locust, 2 shards
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stdout + stderr
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["accounting"]["balanced"] and summary["accounting"]["in_flight"] == 0
    assert not (only_run_dir(tmp_path) / "incomplete").exists()
    assert not _wait_gone(children), "children outlived the run"


def test_sigkill_leaves_no_orphan(tmp_path: Path) -> None:
    import signal

    process, children = _start_and_wait_for_progress(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert not _wait_gone(children), "orphans left behind"
    run_dir = only_run_dir(tmp_path)  # no summary, and marked so: the next run says it (test_results_folder)
    marker = json.loads((run_dir / "incomplete").read_text())
    assert marker["pid"] == process.pid and not (run_dir / "summary.json").exists()
    progress = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert progress and progress[0]["t"] > 0 and "completed_per_s" in progress[0]  # what it saw until killed
    from loadgen.runs.results.folder import notice_incomplete

    ((folder, what),) = notice_incomplete(tmp_path)
    assert folder == run_dir and f"pid {process.pid}" in what and "before it wrote summary.json" in what


def test_without_gates_any_bad_call_fails_the_run_and_the_run_ends_on_time(tmp_path: Path) -> None:
    """Calls that never end (60 s sleeps) are cancelled after stop_timeout, saying why (not expired: their
    deadline had not come); failed and wrong calls fail the implicit gates (the waited sleep weighs little, so users
    call fail and echo before each waits on one); the run lasts duration + stop_timeout + start-up and
    teardown."""
    scenario = tmp_path / "bad.toml"
    scenario.write_text(
        'name = "bad"\n[engine]\nshards = 1\n'
        '[[workload]]\nfunction = "sleep"\nweight = 0.1\ninput = { ms = 60000 }\n'
        '[[workload]]\nfunction = "sleep"\ninput = { ms = 60000 }\nbatch = 10\nwait = false\n'
        '[[workload]]\nfunction = "fail"\ninput = { status = "PERMANENT_ERROR", times = 1 }\n'
        '[[workload]]\nfunction = "echo"\ninput = { message = "hi" }\nexpect = { message = "ho" }\n'
        '[load]\nusers = 4\nduration = "2s"\nstop_timeout = "1s"\n'
    )
    results = tmp_path / "results"
    started = time.monotonic()
    done = loadgen_run(str(scenario), results=results)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 2 + 1 + 20, f"the run took {elapsed:.1f}s"
    run_dir = only_run_dir(results)
    summary = json.loads((run_dir / "summary.json").read_text())
    accounting = summary["accounting"]
    assert accounting["balanced"] and accounting["cancelled"] > 0 and accounting["expired"] == 0
    assert accounting["in_flight"] == 0
    gates = json.loads((run_dir / "gates.json").read_text())["gates"]
    verdict = {gate["metric"]: gate["passed"] for gate in gates}
    assert verdict == {
        "failed": False,
        "expired": True,
        "cancelled": False,
        "lost": True,
        "rejected": True,
        "wrong": False,
        "locust.failures": False,
        "dropped": True,
    }
    assert summary["functions"]["sleep"]["cancelled"] > 0  # the 60 s sleeps; an echo or fail under way is, too
    assert sum(f.get("cancelled", 0) for f in summary["functions"].values()) == accounting["cancelled"]
    cancelled = [e for e in summary["errors"] if e["kind"] == "cancelled"]
    assert cancelled and cancelled[0]["sample"] == (
        "CANCELLED: the run ended before the call finished (stop_timeout 1s after the load stopped)"
    )
    assert all(gate["implicit"] for gate in gates)
    assert summary["functions"]["echo"]["wrong"] == summary["functions"]["echo"]["checked"] > 0
    failed = summary["functions"]["fail"]
    assert failed["failed"] == failed["attempts"] > 0  # PERMANENT_ERROR: one attempt, not retried
    assert "cancelled at the end" in done.stdout and "implicit gate" in done.stdout
    suite = ET.parse(run_dir / "junit.xml").getroot()
    assert any(case.get("name") == "implicit: cancelled == 0" for case in suite.iter("testcase"))


def test_keygen_lines_export_both_keys_when_evaluated() -> None:
    loadgen = Path(sys.executable).with_name("loadgen")
    script = f'eval "$({loadgen} keygen)" && env | grep -E "^(LOADGEN_SIGNING_KEY|DISPATCH_VERIFICATION_KEY)=" | sort'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True).stdout
    names = [line.split("=", 1)[0] for line in out.splitlines()]
    assert names == ["DISPATCH_VERIFICATION_KEY", "LOADGEN_SIGNING_KEY"]
    from loadgen.protocol.keys import load_private_key, public_key_base64

    values = dict(line.split("=", 1) for line in out.splitlines())
    private = load_private_key(values["LOADGEN_SIGNING_KEY"])
    assert public_key_base64(private.public_key()) == values["DISPATCH_VERIFICATION_KEY"]
