"""How far one master goes: ``python -m loadgen.bench.master [--workers 10,50,100] [--seconds 10]``.

Starts the Locust master of ``loadgen run --master`` as a run starts it (the loadgen locustfile,
the run's configuration over its pipe, the workers file), and instead of real worker machines a
crowd of simulated ones in this process: each speaks Locust's protocol over ZeroMQ (``client_ready``,
the configuration request, ``loadgen_worker_ready``, a heartbeat and a report every
``--interval`` seconds). Each report is what a ``loadgen worker`` sends: Locust's statistics of a
few ``call`` entries, the shards' merged snapshot (``--shards`` shards, five functions), the
callers' latency report. For each crowd size it measures, over ``--seconds`` once the test runs,
the reports the master took in (its workers file counts them), its CPU (``/proc``), CPU per
report, and whether it kept up (took in at least 95% of what was sent, under 90% of a core).
"Max workers" is one core divided by the CPU a worker's reports cost per second.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
import orjson
import zmq.green as zmq
from locust import __version__ as locust_version
from locust.rpc import protocol
from locust.stats import RequestStats

from loadgen.bench._procs import check_linux, cpu_seconds, free_port, render_table, write_report
from loadgen.children import die_with_parent_term, terminate
from loadgen.core.stats import ShardStats, merge_snapshots
from loadgen.core.stats.caller import CallerReport, caller_recorder
from loadgen.locust.options import MASTER_CONFIG_FD_ENV
from loadgen.runs.distributed import config_pipe
from loadgen.runs.locust_process import WORKERS_FILE, MasterSetup, locust_command
from loadgen.runs.scenario import default_scenario, scenario_to_dict

_MESSAGE: Any = protocol.Message  # untyped in Locust


def _pack(kind: str, data: Any, node_id: str) -> bytes:
    """One message as Locust's RPC carries it."""
    packed: bytes = _MESSAGE(kind, data, node_id).serialize()
    return packed


def _kind(packed: bytes) -> str:
    kind: str = _MESSAGE.unserialize(packed).type
    return kind


FUNCTIONS = ("echo", "sleep", "fanout", "chain", "fail")
KEEP_UP = 0.95
CPU_LIMIT = 0.9


def _report(shards: int, seed: int) -> dict[str, Any]:
    """One worker's Locust report, as ``loadgen worker`` makes it (its values drawn at random)."""
    rng = random.Random(seed)
    stats = RequestStats()
    for function in FUNCTIONS:
        for _ in range(60):
            stats.log_request("call", f"call {function}", int(rng.lognormvariate(2.0, 0.6)), 40)
    parts = []
    for index in range(shards):
        shard = ShardStats(f"shard-{index}")
        for function in FUNCTIONS:
            for _ in range(400):
                seconds = rng.lognormvariate(-5.0, 0.7)
                shard.record_call(function, "completed", "OK", seconds)
                shard.record_attempt(function, "OK", seconds * 0.8)
                shard.record_rpc("Session", True, seconds * 0.1)
        parts.append(shard.snapshot())
    callers = caller_recorder("locust-sim")
    for function in FUNCTIONS:
        for _ in range(300):
            callers.record("latency", function, "completed", rng.lognormvariate(-4.5, 0.7))
    return {
        "stats": stats.serialize_stats(),
        "stats_total": stats.total.get_stripped_report(),
        "errors": stats.serialize_errors(),
        "user_count": 0,
        "user_classes_count": {},
        "loadgen_dispatched": {},
        "loadgen_checks": {},
        "loadgen_latency": {**CallerReport("locust-sim", 1, 1, callers.snapshot()).to_json(), "final": False},
        "loadgen_shards": {"snapshot": merge_snapshots(parts).to_bytes()},
    }


class _Crowd:
    """Simulated worker machines: one DEALER socket each, on one gevent hub."""

    def __init__(self, port: int, count: int, interval: float, report: dict[str, Any]) -> None:
        self.context = zmq.Context()
        self.interval = interval
        self.sent = 0
        self.bytes = 0
        self.running = True
        self.ids = [f"sim-{os.getpid()}-{i}" for i in range(count)]
        self.sockets = []
        self.payloads: dict[str, tuple[bytes, bytes]] = {}
        for client_id in self.ids:
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, client_id.encode())
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://127.0.0.1:{port}")
            self.sockets.append(sock)
            heartbeat = {"state": "ready", "current_cpu_usage": 5.0, "current_memory_usage": 50_000_000}
            self.payloads[client_id] = (
                _pack("heartbeat", heartbeat, client_id),
                _pack("stats", report, client_id),
            )
        self.greenlets = [
            gevent.spawn(self._worker, sock, cid) for sock, cid in zip(self.sockets, self.ids, strict=True)
        ]

    def _receive(self, sock: Any) -> str:
        return _kind(sock.recv())

    def _worker(self, sock: Any, client_id: str) -> None:
        sock.send(_pack("client_ready", locust_version, client_id))
        while self._receive(sock) != "ack":
            pass
        sock.send(_pack("loadgen_config_request", None, client_id))
        while self._receive(sock) != "loadgen_config":
            pass
        sock.send(_pack("loadgen_worker_ready", {"host": "simulated", "shards": 2}, client_id))
        gevent.spawn(self._drain, sock)
        heartbeat, stats = self.payloads[client_id]
        gevent.sleep(random.random() * self.interval)  # spread the reports over the interval
        while self.running:
            sock.send(heartbeat)
            sock.send(stats)
            self.sent += 1
            self.bytes += len(stats)
            gevent.sleep(self.interval)

    def _drain(self, sock: Any) -> None:
        while self.running:
            try:
                self._receive(sock)
            except zmq.ZMQError:
                return

    def close(self) -> None:
        self.running = False
        gevent.killall(self.greenlets, block=False)
        for sock in self.sockets:
            sock.close(0)
        self.context.term()


def _workers_file(path: Path) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = orjson.loads(path.read_bytes())
        return found
    except (OSError, ValueError):
        return None


def _taken_in(path: Path) -> tuple[int, float]:
    """The reports the master has taken in, read as soon as it rewrote its workers file (and when)."""
    before = path.stat().st_mtime_ns
    deadline = time.monotonic() + 5
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        gevent.sleep(0.005)
    at = time.monotonic()
    data = _workers_file(path) or {"workers": []}
    return sum(int(w.get("reports", 0)) for w in data["workers"]), at


def measure(count: int, seconds: float, interval: float, report: dict[str, Any]) -> dict[str, Any]:
    """One crowd of *count* simulated workers against a fresh master."""
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        scenario = default_scenario()
        (run_dir / "scenario.json").write_bytes(orjson.dumps(scenario_to_dict(scenario)))
        port = free_port()
        master = MasterSetup(expect_workers=count, bind_port=port, worker_timeout=120)
        command = locust_command(scenario, False, 0, run_dir, master)
        command += ["--dispatch-run-time", f"{seconds + 600:g}", "-t", f"{seconds + 600:g}s", "-u", str(count)]
        pipe = config_pipe(
            {"scenario": scenario_to_dict(scenario), "endpoint_url": "http://x", "api_key": "k", "signing_key": "s"}
        )
        env = os.environ | {"LOADGEN_SCENARIO_JSON": str(run_dir / "scenario.json"), MASTER_CONFIG_FD_ENV: str(pipe)}
        log = (run_dir / "locust.log").open("wb")
        process = subprocess.Popen(
            command, env=env, pass_fds=[pipe], stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_term
        )
        os.close(pipe)
        crowd = _Crowd(port, count, interval, report)
        try:
            path = run_dir / WORKERS_FILE
            deadline = time.monotonic() + 90
            while True:
                data = _workers_file(path)
                if data and data.get("started_at") and sum(w["state"] == "ready" for w in data["workers"]) == count:
                    break
                if time.monotonic() > deadline or process.poll() is not None:
                    tail = (run_dir / "locust.log").read_text()[-2000:]
                    raise RuntimeError(f"the master did not start with {count} workers:\n{tail}")
                gevent.sleep(0.2)
            gevent.sleep(2 * interval + 1)  # the first reports in, the test under way
            taken0, time0 = _taken_in(path)
            cpu0, sent0 = cpu_seconds(process.pid), crowd.sent
            gevent.sleep(seconds)
            taken1, time1 = _taken_in(path)
            cpu1, sent1 = cpu_seconds(process.pid), crowd.sent
        finally:
            crowd.close()
            terminate(process, 20)
            log.close()
    elapsed = time1 - time0
    taken, sent, cpu = taken1 - taken0, sent1 - sent0, cpu1 - cpu0
    per_report = cpu / taken if taken else float("inf")
    return {
        "workers": count,
        "sent_per_s": sent / elapsed,
        "taken_per_s": taken / elapsed,
        "bytes_per_s": taken / elapsed * len(_pack("stats", report, "x")),
        "master_cpu_share": cpu / elapsed,
        "cpu_per_report_ms": per_report * 1000,
        "kept_up": taken >= KEEP_UP * sent and cpu / elapsed < CPU_LIMIT,
        "max_workers_at_interval": int(interval / per_report) if taken else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="10,50,100", help="crowd sizes, comma-separated (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per crowd (default: 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a worker's reports (default: 1)")
    parser.add_argument("--shards", type=int, default=2, help="shards per simulated worker (default: 2)")
    parser.add_argument("--quick", action="store_true", help="crowds of 10 and 50, 8 s each")
    args = parser.parse_args()
    check_linux()
    counts = [10, 50] if args.quick else [int(n) for n in args.workers.split(",") if n.strip()]
    seconds = 8.0 if args.quick else args.seconds
    report = _report(args.shards, seed=1)
    size = len(_pack("stats", report, "x"))
    print(f"one report: {size / 1024:.1f} KiB ({args.shards} shards' snapshot, Locust stats, caller latency)")
    rows: list[list[object]] = []
    results = []
    for count in counts:
        print(f"  {count} simulated workers, {seconds:g}s ...", file=sys.stderr, flush=True)
        try:
            result = measure(count, seconds, args.interval, report)
        except RuntimeError as exc:  # the crowd could not even connect in time: larger ones will not either
            print(f"  {count} simulated workers: {str(exc).splitlines()[0]}", file=sys.stderr)
            rows.append([count, "-", "-", "-", "-", "-", "did not start", "-"])
            break
        results.append(result)
        rows.append(
            [
                count,
                f"{result['sent_per_s']:.0f}",
                f"{result['taken_per_s']:.0f}",
                f"{result['bytes_per_s'] / 1e6:.1f}",
                f"{result['master_cpu_share'] * 100:.0f}%",
                f"{result['cpu_per_report_ms']:.2f}",
                "yes" if result["kept_up"] else "NO",
                result["max_workers_at_interval"],
            ]
        )
        print("  " + "  ".join(str(cell) for cell in rows[-1]), file=sys.stderr, flush=True)
    headers = ["workers", "sent/s", "taken/s", "MB/s", "master CPU", "ms CPU/report", "kept up", "max workers"]
    print(render_table(headers, rows))
    print(f"max workers: one core / CPU per report, at one report per {args.interval:g}s per worker")
    write_report(Path("results/bench/master.json"), "master", sys.argv[1:], {"report_bytes": size, "results": results})


if __name__ == "__main__":
    main()
