"""Whole-system CPU per call of ``loadgen run`` against an endpoint on the real SDK, every process measured.

``python -m loadgen.bench.sdkrun [--sdk 0.7.1|0.8.0] [--duration 20s] [--users 8]``

Starts ``scenarios/sdk_endpoint_app.py`` in the SDK's venv (``.venv-sdk`` for 0.7.1,
``.venv-sdk08`` for 0.8.0; ``make sdk`` makes them) with a fresh key pair, runs ``loadgen run``
on ``scenarios/sdk-endpoint.toml`` pointed at it (its mix: ``greet``, ``add``, ``squares`` with
4 children; every result checked), and reads every process's CPU (``utime + stime`` from
``/proc``, sampled every 0.1 s until it exits) by role: the supervisor (``loadgen run`` itself),
Locust, the shards, and the endpoint. CPU counts from the moment the load starts (Locust writes
its ``caller.json``), so start-up imports are left out. Prints CPU µs per completed root call
per role, the tool's total against the endpoint's, and the run's verdict; writes
``results/bench/sdkrun.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from loadgen.bench._procs import KeyPair, check_linux, child_pids, command_line, cpu_seconds, free_port
from loadgen.core.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
VENVS = {"0.7.1": ROOT / ".venv-sdk", "0.8.0": ROOT / ".venv-sdk08"}


def _role(pid: int) -> str | None:
    command = command_line(pid)
    if not command:
        return None
    if "-m locust" in command:
        return "Locust"
    if "multiprocessing.resource_tracker" in command:
        return "other"
    if "multiprocessing.spawn" in command or "spawn_main" in command:
        return "shard"
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdk", choices=sorted(VENVS), default="0.7.1", help="SDK generation (default: %(default)s)")
    parser.add_argument("--duration", default="20s", help="load duration (default: %(default)s)")
    parser.add_argument("--users", type=int, default=8, help="closed-loop users (default: %(default)s)")
    parser.add_argument("--shards", type=int, default=1, help="engine shards (default: %(default)s)")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench" / "sdkrun.json"))
    args = parser.parse_args(argv)
    check_linux()
    python = VENVS[args.sdk] / "bin" / "python"
    if not python.exists():
        sys.exit(f"no {python}: run `make sdk` first")
    keys = KeyPair.generate()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "LOADGEN_", "PYTHONPATH"))}
    app = subprocess.Popen(
        [str(python), str(ROOT / "scenarios" / "sdk_endpoint_app.py"), "--port", str(port)],
        env=env | {"DISPATCH_VERIFICATION_KEY": keys.public},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        if "serving on" not in line:
            sys.exit(f"the endpoint did not start: {line!r}")
        with tempfile.TemporaryDirectory() as scratch:
            scenario = Path(scratch) / "sdk-endpoint.toml"
            text = (ROOT / "scenarios" / "sdk-endpoint.toml").read_text()
            text = text.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}")
            text = re.sub(r'(?m)^duration = ".*"$', f'duration = "{parse_duration(args.duration):g}s"', text)
            text = re.sub(r"(?m)^users = \d+$", f"users = {args.users}", text)
            text = re.sub(r"(?m)^shards = \d+$", f"shards = {args.shards}", text)
            scenario.write_text(text)
            results = Path(scratch) / "results"
            endpoint_before: float | None = None
            run = subprocess.Popen(
                [sys.executable, "-m", "loadgen.cli", "run", str(scenario), "--results", str(results)],
                env=env | {"LOADGEN_SIGNING_KEY": keys.private},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            cpu: dict[int, tuple[str, float]] = {}
            baseline: dict[int, float] = {}
            while run.poll() is None:
                pids = [(run.pid, "supervisor (loadgen run)")]
                pids += [(child, role) for child in child_pids(run.pid) if (role := _role(child)) is not None]
                for pid, role in pids:
                    try:
                        cpu[pid] = (role, cpu_seconds(pid))
                    except (OSError, IndexError):
                        continue
                if endpoint_before is None and list(results.glob("*/caller.json")):  # the load started
                    endpoint_before = cpu_seconds(app.pid)
                    baseline = {pid: seconds for pid, (_, seconds) in cpu.items()}
                time.sleep(0.1)
            output = run.stdout.read() if run.stdout is not None else ""
            endpoint_cpu = cpu_seconds(app.pid) - (endpoint_before or 0.0)
            cpu = {pid: (role, seconds - baseline.get(pid, 0.0)) for pid, (role, seconds) in cpu.items()}
            (run_dir,) = list(results.iterdir())
            summary = json.loads((run_dir / "summary.json").read_text())
    finally:
        app.terminate()
        app.wait(10)
    calls = summary["accounting"]["completed"]
    roles: dict[str, float] = {}
    for role, seconds in cpu.values():
        roles[role] = roles.get(role, 0.0) + seconds
    tool = sum(roles.values())
    print(f"dispatch-py {args.sdk} endpoint, {args.users} users, {args.duration}, {args.shards} shard(s)")
    print(f"completed calls {calls} ({summary['rates']['calls_per_s']:.1f}/s), exit code {run.returncode}")
    print(f"{'process':<28} {'CPU s':>8} {'µs per call':>12}")
    rows: dict[str, Any] = {}
    for role, seconds in [*sorted(roles.items()), ("tool, all processes", tool), ("endpoint", endpoint_cpu)]:
        per_call = seconds / calls * 1e6 if calls else float("nan")
        rows[role] = {"cpu_s": seconds, "us_per_call": per_call}
        print(f"{role:<28} {seconds:>8.2f} {per_call:>12.0f}")
    if calls:
        print(f"tool / endpoint: {tool / endpoint_cpu:.2f}x")
    print("\n".join(line for line in output.splitlines() if line.startswith("gate ")))
    report = {"benchmark": "sdkrun", "sdk": args.sdk, "users": args.users, "duration": args.duration}
    report |= {"calls": calls, "exit_code": run.returncode, "processes": rows}
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
