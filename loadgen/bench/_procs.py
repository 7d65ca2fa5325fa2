"""Shared plumbing of the engine benchmarks: process CPU and RSS, the reference endpoint, an engine, reports.

Linux only: CPU is ``utime + stime`` of ``/proc/PID/stat`` (every thread of the
process, clock-tick resolution) and memory is ``VmRSS`` of ``/proc/PID/status``.
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.endpoint.process import EndpointProcess
from loadgen.engine.settings import EngineSetup
from loadgen.engine.supervisor import Supervisor
from loadgen.protocol.keys import generate_private_key, private_key_base64, public_key_base64

__all__ = [
    "API_KEY",
    "TICKS",
    "KeyPair",
    "OldMock",
    "ReferenceEndpoint",
    "check_linux",
    "child_pids",
    "command_line",
    "cpu_seconds",
    "engine_idle",
    "engine_progress",
    "free_port",
    "ledger_rows",
    "median",
    "render_table",
    "rss_bytes",
    "sdk_python",
    "shard_pids",
    "start_engine",
    "wait_until",
    "write_report",
]

TICKS = os.sysconf("SC_CLK_TCK")
API_KEY = "bench-api-key"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_linux() -> None:
    """Exit with a message unless ``/proc`` gives per-process CPU and RSS."""
    if not Path("/proc/self/stat").exists():
        sys.exit("this benchmark reads /proc/PID/stat and /proc/PID/status: Linux only")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* (all its threads) so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of *pid* in bytes (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def child_pids(pid: int) -> list[int]:
    """The direct children of *pid* (every thread's ``/proc/PID/task/TID/children``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def command_line(pid: int) -> str:
    """*pid*'s command line, arguments joined by spaces (``""`` once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def median(values: Iterable[float]) -> float:
    found = list(values)
    return float(statistics.median(found)) if found else float("nan")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll *predicate* until it holds (True) or *timeout* seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair as base64 of the raw 32 bytes (what ``loadgen`` and the endpoint take)."""

    private: str
    public: str

    @classmethod
    def generate(cls) -> KeyPair:
        key = generate_private_key()
        return cls(private_key_base64(key), public_key_base64(key.public_key()))


ReferenceEndpoint = EndpointProcess
"""The reference endpoint in a child process (``with ReferenceEndpoint(public_key) as endpoint: endpoint.url``)."""


def start_engine(endpoint_url: str, signing_key: str, shards: int, **overrides: Any) -> Supervisor:
    """A started :class:`Supervisor` on a free 127.0.0.1 port (API key :data:`API_KEY`)."""
    setup = EngineSetup.create(
        endpoint_url=endpoint_url, api_key=API_KEY, signing_key=signing_key, shards=shards, port=0, **overrides
    )
    supervisor = Supervisor(setup)
    supervisor.start()
    return supervisor


# The supervisor has no public accessors for these two yet; both are read in this one place.


def shard_pids(supervisor: Supervisor) -> list[int]:
    """PIDs of the engine's shard processes, by shard index."""
    slots = supervisor._slots
    pids = [slots[index].process.pid for index in sorted(slots)]
    if any(pid is None for pid in pids):
        raise RuntimeError("a shard process has no pid")
    return [int(pid) for pid in pids if pid is not None]


def ledger_rows(supervisor: Supervisor) -> list[tuple[int, int]]:
    """``(accepted, ended)`` root calls of each shard, from the shared-memory ledger (costs no shard CPU)."""
    ledger = supervisor._ledger
    if ledger is None:
        raise RuntimeError("the engine is not running")
    return [ledger.row(index) for index in range(ledger.shards)]


def engine_progress(supervisor: Supervisor) -> tuple[int, int]:
    """``(accepted, ended)`` root calls over all shards (see :func:`ledger_rows`)."""
    rows = ledger_rows(supervisor)
    return sum(a for a, _ in rows), sum(e for _, e in rows)


def engine_idle(supervisor: Supervisor) -> bool:
    """Whether every root call the engine accepted has ended."""
    accepted, ended = engine_progress(supervisor)
    return accepted == ended


ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("_oldmock_runner.py")


def sdk_python() -> Path | None:
    """The interpreter of the dispatch-py 0.7.1 venv (``$SDK_VENV`` or ``.venv-sdk``), if it exists."""
    python = Path(os.environ.get("SDK_VENV", ROOT / ".venv-sdk")) / "bin" / "python"
    return python if python.exists() else None


class OldMock:
    """dispatch-py 0.7.1's ``DispatchService`` + ``DispatchServer`` in the SDK venv (``_oldmock_runner.py``)."""

    def __init__(self, python: Path, endpoint_url: str, keys: KeyPair, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env.update(LOADGEN_BENCH_SIGNING_KEY=keys.private, LOADGEN_BENCH_API_KEY=API_KEY)
        self.process = subprocess.Popen(
            [str(python), str(RUNNER), "--endpoint", endpoint_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # the mock logs every failed attempt; its own business
            text=True,
            env=env,
        )
        words = self._read(timeout)
        if words[:1] != ["listening"]:
            self.close()
            raise RuntimeError(f"the old mock did not start: {words}")
        self.url = words[1]
        self.address = self.url.removeprefix("http://")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self, timeout: float) -> list[str]:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            line = self.process.stdout.readline() if selector.select(timeout) else ""
        finally:
            selector.close()
        return line.split()

    def _ask(self, command: str, timeout: float) -> list[str]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read(timeout)

    def wait_completed(self, total: int, idle_timeout: float) -> tuple[int, int]:
        """Block until *total* root calls completed in all (or none did for *idle_timeout* s): (completed, queued)."""
        words = self._ask(f"wait {total} {idle_timeout}", timeout=idle_timeout * 1000)
        if words[:1] != ["done"]:
            raise RuntimeError(f"the old mock answered {words}")
        return int(words[1]), int(words[2])

    def counts(self) -> tuple[int, int]:
        """(root calls completed so far, calls in the mock's queue)."""
        words = self._ask("count", timeout=30)
        if words[:1] != ["count"]:
            raise RuntimeError(f"the old mock answered {words}")
        return int(words[1]), int(words[2])

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(8)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> OldMock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table; floats keep the precision they were given as strings."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def write_report(path: Path, benchmark: str, argv: Sequence[str], body: dict[str, Any]) -> None:
    """Write ``{benchmark, created, python, cpus, command, ...body}`` as JSON to *path*."""
    report: dict[str, Any] = {
        "benchmark": benchmark,
        "created": int(time.time()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "clock_ticks_per_second": TICKS,
        "command": " ".join([f"python -m loadgen.bench.{benchmark}", *argv]),
    }
    report.update(body)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
