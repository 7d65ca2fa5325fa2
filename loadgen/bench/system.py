"""The whole system, as a user runs it: ``python -m loadgen.bench.system [--quick]``.

Each workload runs as ``loadgen run SCENARIO`` (a child process with its own results folder),
the way a user starts it: the reference endpoint, 2 shards, one Locust process. At every
progress line (printed right after a merged snapshot of the shards) the benchmark reads the
CPU (``utime + stime`` of ``/proc/PID/stat``) of every process of the run by role, **Locust**,
**shards**, **supervisor** (the ``loadgen run`` process: supervisor and monitor) and
**endpoint**, and the calls the engine has ended (accepted - in flight - lost). Per role it
prints the CPU µs per ended call over the steady part of the run (from ``--warmup`` seconds
to the end of the load), the tool's total (Locust + shards + supervisor) and calls/s.

Workloads (echo is the reference endpoint's cheapest function):

* ``waited``: echo, closed loop, 32 users, each call dispatched and waited for;
* ``batched``: echo, 4 users, batches of 20, not waited for (the users dispatch faster than the
  calls end, so the backlog grows; the CPU per *accepted* call is printed too; once the backlog
  reaches a shard's admission caps its groups are rejected, counted, and the run's implicit
  ``rejected = 0`` gate fails it: such a round says so, ``exit 1 (gates failed: rejected N, ...)``);
* ``quickstart``: ``scenarios/quickstart.toml``'s mix (16 users).

Variants, side by side in one run: ``session`` (the default: a Locust process's calls in one
session per shard, on the shard's session socket), ``stream`` (``LOADGEN_RPC=stream``: the same
session on the gRPC ``Session`` stream) and ``unary`` (``LOADGEN_RPC=unary``: a Dispatch RPC per
dispatch and a Wait RPC per call, as an SDK client, and as loadgen's Locust users did before
the session); ``--variant NAME=COMMAND`` adds another ``loadgen`` command (another
checkout's, say). The baseline is dispatch-py 0.7.1's own ``DispatchService`` (the old mock,
``.venv-sdk``, ``make sdk``) against the same reference endpoint, driven with the same echo
calls (32 Dispatch RPCs of 1 call in flight, and 4 of 20; it has no Wait, so its calls are
never waited for, which favours it); the quickstart mix has no old-mock baseline.

Ratios: calls/s and tool CPU per call against the ``unary`` variant, and the old mock's
service CPU per call against the shards + supervisor (the service loadgen plays). The
targets (waited echo over the session: tool <= 300 µs per call, shards <= 120 µs, >= 3x the
unary variant's calls/s, >= 10x less service CPU per call than the old mock) are checked and shown.
Writes ``results/bench/system.json``. Linux only; a full run takes about 5 minutes,
``--quick`` about 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen.bench import oldmock
from loadgen.bench._procs import (
    KeyPair,
    OldMock,
    ReferenceEndpoint,
    check_linux,
    child_pids,
    command_line,
    cpu_seconds,
    median,
    render_table,
    sdk_python,
    write_report,
)
from loadgen.locust.options import RPC_MODES

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("Locust", "shards", "supervisor", "endpoint")
TOOL_ROLES = ("Locust", "shards", "supervisor")
TARGET_TOOL_US = 300.0
TARGET_SHARDS_US = 120.0
TARGET_X_UNARY_CALLS = 3.0
"""Completed calls/s against the unary variant (a Dispatch and a Wait RPC per call, as loadgen's users did)."""
TARGET_X_OLDMOCK_CPU = 10.0
"""The old mock's service CPU per call over loadgen's (shards + supervisor)."""
HEADERS = (
    "workload",
    "variant",
    "calls/s",
    "Locust",
    "shards",
    "superv.",
    "tool",
    "endpoint",
    "x calls/s",
    "unary tool /",
    "old svc /",
    "x old calls/s",
    "Locust = engine",
)
STARTUP_ALLOWANCE = 90.0  # seconds a run may take beyond its duration before it is stopped


@dataclass(frozen=True)
class Workload:
    """One workload: its scenario text (``None``: ``scenarios/quickstart.toml``) and its old-mock shape."""

    name: str
    what: str
    scenario: str | None
    oldmock_batch: int | None = None
    oldmock_concurrency: int = 1


ECHO_SCENARIO = """name = "bench-{name}"
[target]
reference = true
[engine]
shards = {shards}
[[workload]]
function = "echo"
input = {{ message = "hello" }}
{extra}
[load]
users = {users}
spawn_rate = {users}
duration = "10s"
"""
"""An echo workload's scenario: format it with *name*, *shards*, *users* and *extra* ``[[workload]]`` keys."""

WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "waited",
        "echo, closed loop, 32 users, each call waited for",
        ECHO_SCENARIO.format(name="waited", extra="", users=32, shards=2),
        oldmock_batch=1,
        oldmock_concurrency=32,
    ),
    Workload(
        "batched",
        "echo, 4 users, batch = 20, wait = false",
        ECHO_SCENARIO.format(name="batched", extra="batch = 20\nwait = false", users=4, shards=2),
        oldmock_batch=20,
        oldmock_concurrency=4,
    ),
    Workload("quickstart", "scenarios/quickstart.toml's mix, 16 users", None),
)

# The progress line of `loadgen run` (runs/console.py): elapsed, then in flight, accepted, lost.
_PROGRESS = re.compile(
    r"\[\s*(?P<elapsed>\d+)s(?:/\d+s)?\].*?in flight (?P<in_flight>\d+)\s+accepted (?P<accepted>\d+)"
)
_LOST = re.compile(r"\blost (\d+)")


@dataclass
class Mark:
    """What one progress line of a run and /proc said at that moment."""

    elapsed: int
    at: float
    ended: int
    accepted: int
    cpu: dict[int, tuple[str, float]]


@dataclass
class SystemRun:
    """One workload through one variant: CPU per ended call by role over the steady window."""

    workload: str
    variant: str
    round: int
    exit_code: int
    window_s: float = 0.0
    ended: int = 0
    accepted: int = 0
    calls_per_s: float = 0.0
    accepted_per_s: float = 0.0
    us_per_call: dict[str, float] = field(default_factory=dict)
    us_per_accepted_call: dict[str, float] = field(default_factory=dict)
    tool_us_per_call: float = 0.0
    processes: dict[str, int] = field(default_factory=dict)
    accounting: dict[str, Any] = field(default_factory=dict)
    locust_calls: int = 0
    locust_failures: int = 0
    gates_passed: bool = False


def _why_not_passed(run: SystemRun) -> str:
    """What made a run's gates fail, from its accounting and Locust's failures ("" when they passed)."""
    if run.gates_passed and run.exit_code == 0:
        return ""
    counted = [
        f"{name} {run.accounting[name]}"
        for name in ("rejected", "failed", "expired", "cancelled", "in_flight", "lost")
        if run.accounting.get(name)
    ]
    if run.locust_failures:
        counted.append(f"Locust failures {run.locust_failures}")
    return f" (gates failed: {', '.join(counted) or 'see the run'})"


def _role(pid: int, parent_role: str) -> str | None:
    """The role of a child of *parent_role*'s process (``None``: not counted)."""
    command = command_line(pid)
    if "multiprocessing.resource_tracker" in command or not command:
        return None
    if "loadgen.endpoint" in command:
        return "endpoint"
    if "locust" in command:
        return "Locust"
    if parent_role == "supervisor" and ("multiprocessing" in command or "spawn_main" in command):
        return "shards"
    return parent_role


def _tree(root: int) -> dict[int, str]:
    """``pid -> role`` of *root* (the supervisor) and its descendants."""
    roles = {root: "supervisor"}
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in child_pids(pid):
            role = _role(child, roles[pid])
            if role is not None and child not in roles:
                roles[child] = role
                todo.append(child)
    return roles


def _cpu(roles: dict[int, str]) -> dict[int, tuple[str, float]]:
    found = {}
    for pid, role in roles.items():
        try:
            found[pid] = (role, cpu_seconds(pid))
        except (OSError, IndexError):
            continue
    return found


def _locust_counts(run_dir: Path) -> tuple[int, int]:
    """Calls as Locust counted them (``call`` entries, and ``Dispatch`` entries x their batch), and failures."""
    path = run_dir / "locust_stats.csv"
    if not path.exists():
        return 0, 0
    scenario = json.loads((run_dir / "scenario.json").read_text()) if (run_dir / "scenario.json").exists() else {}
    batches = {item.get("function"): int(item.get("batch", 1)) for item in scenario.get("workload", [])}
    calls = failures = 0
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            count, failed = int(row["Request Count"]), int(row["Failure Count"])
            if row["Type"] == "call":
                calls, failures = calls + count, failures + failed
            elif row["Type"] == "grpc" and row["Name"].startswith("Dispatch "):
                function = row["Name"].removeprefix("Dispatch ")
                calls += (count - failed) * batches.get(function, 1)
                failures += failed
            elif row["Type"] == "grpc":
                failures += failed
    return calls, failures


def run_system(
    workload: Workload, variant: str, command: list[str], env: dict[str, str], args: argparse.Namespace, round_: int
) -> SystemRun:
    """``loadgen run`` one workload; CPU per role per ended call between the warm-up and the end of the load."""
    with tempfile.TemporaryDirectory(prefix="loadgen-bench-system-") as scratch:
        if workload.scenario is None:
            scenario = ROOT / "scenarios" / "quickstart.toml"
        else:
            scenario = Path(scratch) / f"{workload.name}.toml"
            scenario.write_text(workload.scenario)
        results = Path(scratch) / "results"
        process = subprocess.Popen(
            [*command, "run", str(scenario), "--duration", f"{args.duration}s", "--results", str(results)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=scratch,  # not this checkout: a --variant's Locust must import its own loadgen
        )
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
        reader.start()
        marks: list[Mark] = []
        errors: list[str] = []
        deadline = time.monotonic() + args.duration + STARTUP_ALLOWANCE
        assert process.stderr is not None
        for line in process.stderr:  # bounded: the run ends by itself, or is killed at the deadline
            errors.append(line)
            found = _PROGRESS.search(line)
            lost = _LOST.search(line[found.end() :]) if found else None
            if found is not None:
                ended = int(found["accepted"]) - int(found["in_flight"]) - (int(lost[1]) if lost else 0)
                accepted = int(found["accepted"])
                marks.append(Mark(int(found["elapsed"]), time.monotonic(), ended, accepted, _cpu(_tree(process.pid))))
            if time.monotonic() > deadline:
                process.kill()
                break
        code = process.wait(60)
        reader.join(10)
        run = SystemRun(workload.name, variant, round_, code)
        run_dirs = list(results.iterdir()) if results.exists() else []
        if run_dirs:
            summary = json.loads((run_dirs[0] / "summary.json").read_text())
            run.accounting = summary.get("accounting", {})
            run.gates_passed = bool(summary.get("gates", {}).get("passed"))
            run.locust_calls, run.locust_failures = _locust_counts(run_dirs[0])
    first = next((m for m in marks if m.elapsed >= args.warmup), None)
    steady = [m for m in marks if m.elapsed <= args.duration]
    if first is None or not steady or steady[-1] is first:
        tail = "".join(errors)[-2000:]
        raise RuntimeError(f"{workload.name} ({variant}): too few progress lines (exit {code}):\n{tail}")
    last = steady[-1]
    run.window_s = round(last.at - first.at, 2)
    run.ended = last.ended - first.ended
    run.accepted = last.accepted - first.accepted
    cpu: dict[str, float] = {}
    for pid, (role, seconds) in last.cpu.items():
        if pid in first.cpu:
            cpu[role] = cpu.get(role, 0.0) + seconds - first.cpu[pid][1]
            run.processes[role] = run.processes.get(role, 0) + 1
    if run.ended > 0:
        run.us_per_call = {role: round(cpu.get(role, 0.0) * 1e6 / run.ended, 1) for role in ROLES}
        run.tool_us_per_call = round(sum(run.us_per_call[role] for role in TOOL_ROLES), 1)
        run.calls_per_s = round(run.ended / run.window_s, 1)
    if run.accepted > 0:
        run.us_per_accepted_call = {role: round(cpu.get(role, 0.0) * 1e6 / run.accepted, 1) for role in ROLES}
        run.accepted_per_s = round(run.accepted / run.window_s, 1)
    return run


@dataclass
class MockRun:
    workload: str
    round: int
    calls_per_s: float
    service_us_per_call: float
    endpoint_us_per_call: float
    client_us_per_call: float
    completed: int


def run_oldmock(python: Path, workload: Workload, args: argparse.Namespace, round_: int) -> MockRun:
    """The workload's echo calls through dispatch-py 0.7.1's ``DispatchService`` (see :mod:`.oldmock`)."""
    assert workload.oldmock_batch is not None
    keys = KeyPair.generate()
    shape = argparse.Namespace(calls=args.oldmock_calls, concurrency=workload.oldmock_concurrency, timeout=60.0)
    with ReferenceEndpoint(keys.public) as endpoint, OldMock(python, endpoint.url, keys) as mock:
        run = oldmock.measure(oldmock.Service(oldmock.OLD, mock=mock), endpoint, workload.oldmock_batch, shape, round_)
    return MockRun(
        workload.name,
        round_,
        run.calls_per_second,
        run.service_cpu_us_per_call,
        run.endpoint_cpu_us_per_call,
        run.client_cpu_us_per_call,
        run.completed,
    )


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def summarize(runs: list[SystemRun], mocks: list[MockRun], variants: list[str]) -> list[dict[str, Any]]:
    """Medians per workload and variant, with the ratios against ``unary`` and the old mock."""
    rows: list[dict[str, Any]] = []
    for workload in WORKLOADS:
        mine = [m for m in mocks if m.workload == workload.name]
        old_service = median(m.service_us_per_call for m in mine)
        old_cps = median(m.calls_per_s for m in mine)
        medians: dict[str, dict[str, Any]] = {}
        for variant in variants:
            runs_here = [r for r in runs if r.workload == workload.name and r.variant == variant]
            if not runs_here:
                continue
            row: dict[str, Any] = {"workload": workload.name, "variant": variant, "runs": len(runs_here)}
            row["calls_per_s"] = round(median(r.calls_per_s for r in runs_here), 1)
            row["accepted_per_s"] = round(median(r.accepted_per_s for r in runs_here), 1)
            for role in TOOL_ROLES:
                row[f"{role}_us_per_accepted"] = round(
                    median(r.us_per_accepted_call.get(role, 0.0) for r in runs_here), 1
                )
            for role in ROLES:
                row[f"{role}_us"] = round(median(r.us_per_call.get(role, 0.0) for r in runs_here), 1)
            row["tool_us"] = round(median(r.tool_us_per_call for r in runs_here), 1)
            row["service_us"] = round(row["shards_us"] + row["supervisor_us"], 1)
            row["runs_calls_per_s"] = [r.calls_per_s for r in runs_here]
            row["runs_tool_us"] = [r.tool_us_per_call for r in runs_here]
            row["locust_equals_engine"] = all(
                r.locust_calls == r.accounting.get("accepted") for r in runs_here if r.accounting
            )
            row["exit_codes"] = [r.exit_code for r in runs_here]
            medians[variant] = row
            rows.append(row)
        unary = medians.get("unary")
        for row in medians.values():
            if unary is not None:
                row["calls_per_s_vs_unary"] = _ratio(row["calls_per_s"], unary["calls_per_s"])
                row["tool_cpu_unary_over_this"] = _ratio(unary["tool_us"], row["tool_us"])
            if mine:
                row["oldmock_service_us"] = round(old_service, 1)
                row["oldmock_calls_per_s"] = round(old_cps, 1)
                row["oldmock_service_over_this_service"] = _ratio(old_service, row["service_us"])
                row["calls_per_s_vs_oldmock"] = _ratio(row["calls_per_s"], old_cps)
    return rows


def _targets(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The issue's targets for the waited echo workload over the session, each met or missed (a run that
    completed nothing meets none), and a line each for the printout."""
    waited = next((r for r in rows if r["workload"] == "waited" and r["variant"] == "session"), None)
    if waited is None:
        return {}, []
    ran = waited["calls_per_s"] > 0
    checks: list[tuple[str, float | None, float, bool]] = [  # name, value, target, lower is better
        ("tool_us_per_call", waited["tool_us"], TARGET_TOOL_US, True),
        ("shards_us_per_call", waited["shards_us"], TARGET_SHARDS_US, True),
        ("calls_per_s_vs_unary", waited.get("calls_per_s_vs_unary"), TARGET_X_UNARY_CALLS, False),
        (
            "oldmock_service_over_this_service",
            waited.get("oldmock_service_over_this_service"),
            TARGET_X_OLDMOCK_CPU,
            False,
        ),
    ]
    targets: dict[str, Any] = {}
    lines: list[str] = []
    for name, value, target, lower in checks:
        if value is None:
            continue
        met = ran and (value <= target if lower else value >= target)
        targets[name] = value
        targets[name.removesuffix("_per_call") + "_target"] = target
        targets[name.removesuffix("_per_call") + "_met"] = met
        shown = f"{value:.0f} µs/call (<= {target:.0f}" if lower else f"{value:.2f}x (>= {target:.0f}x"
        lines.append(f"{name} {shown}: {'met' if met else 'missed'})")
    return targets, lines


def _fmt(value: Any, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m loadgen.bench.system", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 s per run, 500 old-mock calls (about 2 minutes)")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per run (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=4, help="seconds left out at the start (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, in rotated order; medians are reported")
    parser.add_argument(
        "--workloads", default=",".join(w.name for w in WORKLOADS), help="comma-separated (default: %(default)s)"
    )
    parser.add_argument(
        "--rpc", default="session,unary", help="how Locust's calls travel, one variant each (default: %(default)s)"
    )
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=COMMAND", help="another loadgen command to compare"
    )
    parser.add_argument("--no-oldmock", action="store_true", help="no dispatch-py 0.7.1 baseline")
    parser.add_argument("--oldmock-calls", type=int, default=2_000, help="echo calls per old-mock run")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench" / "system.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.oldmock_calls = 8, 3, 500
    if args.duration < args.warmup + 4 or args.repeat < 1:
        parser.error("need --duration >= --warmup + 4 and --repeat >= 1")
    chosen = [w for w in WORKLOADS if w.name in args.workloads.split(",")]
    if not chosen:
        parser.error(f"--workloads: pick from {', '.join(w.name for w in WORKLOADS)}")
    check_linux()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADGEN_", "DISPATCH_", "LOCUST_"))}
    own = [sys.executable, "-m", "loadgen.cli"]
    variants: list[tuple[str, list[str], dict[str, str]]] = []
    for rpc in [r for r in args.rpc.split(",") if r]:
        if rpc not in RPC_MODES:
            parser.error(f"--rpc: one of {', '.join(RPC_MODES)}, not {rpc!r}")
        variants.append((rpc, own, base_env | {"LOADGEN_RPC": rpc}))
    for text in args.variant:
        name, _, command = text.partition("=")
        if not name or not command:
            parser.error("--variant NAME=COMMAND")
        variants.append((name, command.split(), base_env))
    python = None if args.no_oldmock else sdk_python()
    if python is None and not args.no_oldmock:
        print("no .venv-sdk (make sdk): no old-mock baseline", file=sys.stderr)

    runs: list[SystemRun] = []
    mocks: list[MockRun] = []
    for round_ in range(args.repeat):
        order = chosen if round_ % 2 == 0 else chosen[::-1]
        for workload in order:
            shift = round_ % len(variants)
            for name, command, env in variants[shift:] + variants[:shift]:
                run = run_system(workload, name, command, env, args, round_)
                runs.append(run)
                us = run.us_per_call
                print(
                    f"  round {round_ + 1}: {workload.name:<10} {name:<8} {run.calls_per_s:7.0f} calls/s  "
                    f"tool {run.tool_us_per_call:5.0f} µs/call (Locust {us.get('Locust', 0):.0f}, shards "
                    f"{us.get('shards', 0):.0f}, supervisor {us.get('supervisor', 0):.0f}), endpoint "
                    f"{us.get('endpoint', 0):.0f}; exit {run.exit_code}, Locust {run.locust_calls} calls, "
                    f"engine accepted {run.accounting.get('accepted')}{_why_not_passed(run)}",
                    flush=True,
                )
            if python is not None and workload.oldmock_batch is not None:
                mock = run_oldmock(python, workload, args, round_)
                mocks.append(mock)
                print(
                    f"  round {round_ + 1}: {workload.name:<10} old mock {mock.calls_per_s:7.0f} calls/s  "
                    f"service {mock.service_us_per_call:5.0f} µs/call, endpoint {mock.endpoint_us_per_call:.0f}",
                    flush=True,
                )
    rows = summarize(runs, mocks, [name for name, _, _ in variants])
    print()
    print(
        render_table(
            HEADERS,
            [
                [
                    r["workload"],
                    r["variant"],
                    _fmt(r["calls_per_s"]),
                    _fmt(r["Locust_us"]),
                    _fmt(r["shards_us"]),
                    _fmt(r["supervisor_us"], ".1f"),
                    _fmt(r["tool_us"]),
                    _fmt(r["endpoint_us"]),
                    _fmt(r.get("calls_per_s_vs_unary"), ".2f"),
                    _fmt(r.get("tool_cpu_unary_over_this"), ".2f"),
                    _fmt(r.get("oldmock_service_over_this_service"), ".1f"),
                    _fmt(r.get("calls_per_s_vs_oldmock"), ".2f"),
                    "yes" if r["locust_equals_engine"] else "NO",
                ]
                for r in rows
            ],
        )
    )
    flooded = [r for r in rows if r["accepted_per_s"] > 1.5 * r["calls_per_s"]]
    for r in flooded:
        print(
            f"{r['workload']} ({r['variant']}): the users dispatch faster than the calls end"
            f" ({r['accepted_per_s']:.0f} accepted/s, {r['calls_per_s']:.0f} ended/s), so per accepted call:"
            f" Locust {r['Locust_us_per_accepted']:.0f},"
            f" shards {r['shards_us_per_accepted']:.0f}, supervisor {r['supervisor_us_per_accepted']:.1f} µs"
        )
    for workload in chosen:
        found = [m for m in mocks if m.workload == workload.name]
        if found:
            print(
                f"old mock, {workload.name}: {median(m.calls_per_s for m in found):.0f} calls/s, service "
                f"{median(m.service_us_per_call for m in found):.0f} µs/call, endpoint "
                f"{median(m.endpoint_us_per_call for m in found):.0f} µs/call ({workload.oldmock_concurrency} "
                f"Dispatch RPCs of {workload.oldmock_batch} in flight, not waited for)"
            )
    print(
        "CPU µs per ended call, per role; tool = Locust + shards + supervisor; x calls/s: / unary's; unary tool /: "
        "unary's tool CPU / this one's; old svc /: the old mock's service CPU per call / (shards + supervisor);"
        " x old calls/s: / the old mock's"
    )
    targets, lines = _targets(rows)
    if lines:
        print("targets, waited echo (session): " + "; ".join(lines))
    body = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
        "workloads": {w.name: w.what for w in chosen},
        "summary": rows,
        "targets": targets,
        "runs": [vars(r) for r in runs],
        "oldmock_runs": [vars(m) for m in mocks],
    }
    write_report(args.output, "system", sys.argv[1:] if argv is None else argv, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
