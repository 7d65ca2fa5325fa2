"""Instructions a shard executes per call, counted by callgrind: ``python -m loadgen.bench.instructions``.

Times on a shared machine move with everything else it runs; instruction counts do not.
This benchmark runs ``loadgen run`` as a user does (the reference endpoint, Locust, one
shard), with the shard process under ``valgrind --tool=callgrind`` (every process that
``multiprocessing`` spawns starts through a wrapper that runs it under valgrind), twice: a
short and a long run of the same load. The instructions the shard executed in the long run
less those of the short one, divided by the calls the long run completed more, is the cost
of one call with start-up and shutdown cancelled out. Repeated runs agree to about 0.5%.

The workload is the waited echo of ``bench.system`` (32 users, each call dispatched and waited
for over the session), on one shard. Under valgrind the shard runs about 50x slower than
natively, so its message batches are larger than in a native run: compare counts with each
other, not with native CPU times.

Besides the total, each call's instructions are split by the shared object they ran in
(libsodium's Ed25519 and SHA-512, OpenSSL, the Python interpreter, protobuf's upb, libc,
uvloop, ...), read from callgrind's output file. ``--variant NAME=CHECKOUT`` counts another
checkout of loadgen (its ``loadgen`` package first on ``PYTHONPATH``, this venv's packages)
in the same run. Needs valgrind (Debian's ``valgrind``); writes ``results/bench/instructions.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from loadgen.bench._procs import check_linux, render_table, write_report
from loadgen.bench.system import ECHO_SCENARIO

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = ECHO_SCENARIO.format(name="instructions", extra="", users=32, shards=1)
"""bench.system's waited echo, on one shard."""

# Started as a script (not a module of this checkout), so that a --variant's checkout runs it too.
RUNNER = '''"""loadgen run, every process multiprocessing spawns under callgrind. argv: OUTDIR, run's arguments."""
import multiprocessing
import os
import shlex
import sys

if __name__ == "__main__":
    outdir = sys.argv[1]
    wrapper = os.path.join(outdir, "callgrind-python")
    with open(wrapper, "w") as f:
        f.write(
            "#!/bin/sh\\nexec valgrind --tool=callgrind -q "
            f"--callgrind-out-file={shlex.quote(outdir)}/callgrind.%p.out {shlex.quote(sys.executable)} \\"$@\\"\\n"
        )
    os.chmod(wrapper, 0o755)
    multiprocessing.set_executable(wrapper)
    from loadgen.cli import main

    sys.exit(main(["run", *sys.argv[2:]]))
'''

GROUPS: tuple[tuple[str, str], ...] = (
    ("sodium", "libsodium (Ed25519, SHA-512)"),
    ("libcrypto", "OpenSSL (hashlib)"),
    ("libpython", "Python interpreter"),
    ("_upb", "protobuf (upb)"),
    ("uvloop", "uvloop"),
    ("libc.so", "libc"),
    ("hdrh", "hdrh"),
    ("grpc", "grpc"),
    ("_cffi_backend", "cffi (PyNaCl's calls)"),
)
"""(substring of a shared object's path, the group its instructions count in); the rest is "other"."""

_TOTALS = re.compile(r"^totals: (\d+)", re.M)
_COMPRESSED = re.compile(r"\((\d+)\)\s*(.*)$")


@dataclass
class Count:
    """One callgrind run of the shard: the calls completed and the instructions, in all and by group."""

    calls: int
    instructions: int
    by_group: dict[str, int] = field(default_factory=dict)


def group_of(shared_object: str) -> str:
    """The group whose instructions those of *shared_object* count in."""
    for needle, name in GROUPS:
        if needle in shared_object:
            return name
    return "other"


def self_by_object(lines: Iterable[str]) -> dict[str, int]:
    """Self instructions by shared object, from a callgrind output file's *lines* (its format: ``ob=``
    names the object of the cost lines that follow, ``(id) name`` defines a compressed name and ``(id)``
    reuses it, the one line after ``calls=`` is a call's inclusive cost, not the caller's own)."""
    names: dict[str, str] = {}

    def resolve(spec: str) -> str:
        found = _COMPRESSED.match(spec.strip())
        if found is None:
            return spec.strip()
        if found[2]:
            names[found[1]] = found[2]
        return names.get(found[1], "?")

    current = "?"
    totals: dict[str, int] = {}
    after_calls = False
    for line in lines:
        if after_calls:
            after_calls = False
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                totals[current] = totals.get(current, 0) + int(parts[1])
        elif line.startswith("ob="):
            current = resolve(line[3:])
        elif line.startswith("cob="):
            resolve(line[4:])
        elif line.startswith("calls="):
            after_calls = True
    return totals


def by_group(lines: Iterable[str]) -> dict[str, int]:
    """Self instructions by group (:data:`GROUPS`), from a callgrind output file's *lines*."""
    groups: dict[str, int] = {}
    for shared_object, instructions in self_by_object(lines).items():
        name = group_of(shared_object)
        groups[name] = groups.get(name, 0) + instructions
    return groups


def per_call(short: Count, long: Count) -> dict[str, float]:
    """Instructions per call, in all (``"total"``) and by group: the long run less the short one."""
    calls = long.calls - short.calls
    if calls <= 0:
        raise RuntimeError(f"the long run completed {long.calls} calls, the short one {short.calls}: no difference")
    result = {"total": (long.instructions - short.instructions) / calls}
    for name in sorted(set(short.by_group) | set(long.by_group)):
        result[name] = (long.by_group.get(name, 0) - short.by_group.get(name, 0)) / calls
    return result


def _shard_output(outdir: Path) -> Path:
    """The shard's callgrind file (the other spawned process is multiprocessing's resource tracker)."""
    for path in sorted(outdir.glob("callgrind.*.out")):
        with path.open("rb") as f:
            head = f.read(4096)
        if b"spawn_main" in head:
            return path
    raise RuntimeError(f"no shard callgrind output in {outdir}")


def count_run(checkout: Path | None, seconds: int, timeout: float) -> Count:
    """One ``loadgen run`` of *seconds* with the shard under callgrind (*checkout*: another loadgen)."""
    with tempfile.TemporaryDirectory(prefix="loadgen-bench-instructions-") as scratch:
        work = Path(scratch)
        (work / "scenario.toml").write_text(SCENARIO)
        (work / "runner.py").write_text(RUNNER)
        env = dict(os.environ)
        if checkout is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH", "")]))
        command = [
            sys.executable,
            str(work / "runner.py"),
            str(work),
            str(work / "scenario.toml"),
            "--duration",
            f"{seconds}s",
            "--results",
            str(work / "results"),
        ]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        runs = list((work / "results").iterdir()) if (work / "results").exists() else []
        if not runs:
            raise RuntimeError(
                f"loadgen run under callgrind wrote no results (exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
        summary = orjson.loads((runs[0] / "summary.json").read_bytes())
        calls = int(summary["accounting"]["completed"])
        output = _shard_output(work)
        text = output.read_text(errors="replace")
        totals = _TOTALS.search(text)
        if totals is None:
            raise RuntimeError(f"{output} has no totals line: the shard did not end cleanly under callgrind")
        return Count(calls, int(totals[1]), by_group(text.splitlines()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=10, help="seconds of load of the short run (default: %(default)s)")
    parser.add_argument("--long", type=int, default=30, help="seconds of load of the long run (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="runs of 5 and 15 s (about 1 minute per checkout)")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=CHECKOUT", help="another loadgen checkout to count"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of each run, seconds")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench" / "instructions.json")
    args = parser.parse_args(argv)
    check_linux()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    short, long = (5, 15) if args.quick else (args.short, args.long)
    if not 0 < short < long:
        parser.error("--short must be above 0 and below --long")
    variants: list[tuple[str, Path | None]] = [("this", None)]
    for spec in args.variant:
        name, sep, path = spec.partition("=")
        if not sep or not name or not (Path(path) / "loadgen").is_dir():
            parser.error(f"--variant NAME=CHECKOUT, CHECKOUT a loadgen checkout, not {spec!r}")
        variants.append((name, Path(path).resolve()))
    results: dict[str, dict[str, float]] = {}
    counts: dict[str, list[dict[str, int]]] = {}
    for name, checkout in variants:
        runs = []
        for seconds in (short, long):
            print(f"  {name}: {seconds} s with the shard under callgrind ...", flush=True)
            runs.append(count_run(checkout, seconds, args.timeout))
        results[name] = per_call(runs[0], runs[1])
        counts[name] = [{"calls": run.calls, "instructions": run.instructions} for run in runs]
        print(f"  {name}: {results[name]['total']:,.0f} instructions per call", flush=True)
    groups = sorted({g for r in results.values() for g in r if g != "total"}, key=lambda g: -results["this"].get(g, 0))
    headers = ["", *(name for name, _ in variants)]
    rows: list[list[object]] = [["instructions per call", *(f"{r['total']:,.0f}" for r in results.values())]]
    rows += [[f"  {g}", *(f"{r.get(g, 0):,.0f}" for r in results.values())] for g in groups]
    if len(variants) > 1:
        headers.append(f"this / {variants[1][0]}")
        base = results[variants[1][0]]
        for row, key in zip(rows, ["total", *groups], strict=True):
            row.append(f"{results['this'].get(key, 0) / base[key]:.3f}" if base.get(key) else "-")
    print()
    print(render_table(headers, rows))
    print(f"shard instructions per completed call (the {long} s run less the {short} s one), waited echo, 32 users")
    write_report(
        args.output, "instructions", sys.argv[1:] if argv is None else argv, {"per_call": results, "runs": counts}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
