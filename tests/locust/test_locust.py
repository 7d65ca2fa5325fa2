"""The Locust plug-in, end to end: real Locust processes against real shards on 127.0.0.1.

Locust runs as a subprocess (``locust -f scenarios/...``): importing :mod:`loadgen.locust`
would patch this pytest process for gevent, so only its pure modules are imported here.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine

from loadgen.core.arrivals import ArrivalSchedule, Stage
from loadgen.core.counters import CounterKind
from loadgen.core.stats import ShardStats, Snapshot
from loadgen.core.stats.delta import HistogramDelta
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import shard_pb2, shard_pb2_grpc

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
LOCUST = str(Path(sys.executable).with_name("locust"))
API_KEY = "locust-test-key-5e1f0c"
FUNCTIONS = ("echo", "sleep", "fanout", "chain", "fail")


# ------------------------------------------------------------------------------------------
# Shared set-up (the browser test imports these)
# ------------------------------------------------------------------------------------------


@pytest.fixture
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    """Two fresh shards: every test counts from zero."""
    with Supervisor(quick_engine(endpoint_url, signing_key, API_KEY)) as supervisor:
        yield supervisor


def locust_env(engine: Supervisor, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "LOADGEN_", "DISPATCH_"))}
    env.update(LOADGEN_ADDRESSES=",".join(engine.shard_addresses), DISPATCH_API_KEY=API_KEY, **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def merged_snapshot(address: str) -> Snapshot:
    """The shards' merged statistics through the Stats RPC, as any client would get them."""
    with grpc.insecure_channel(address.removeprefix("http://")) as channel:
        reply = shard_pb2_grpc.ShardStub(channel).Stats(
            shard_pb2.StatsRequest(local=False), metadata=(("authorization", f"Bearer {API_KEY}"),), timeout=10
        )
    return Snapshot.from_bytes(reply.snapshot)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_stats_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as handle:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}


def echo_batch() -> int:
    found = re.search(r"^ECHO_BATCH = (\d+)", (SCENARIOS / "quickstart_locustfile.py").read_text(), re.M)
    assert found
    return int(found.group(1))


def run_locust(
    engine: Supervisor, tmp_path: Path, *args: str, timeout: float = 45
) -> dict[tuple[str, str], dict[str, str]]:
    command = [LOCUST, "-f", str(SCENARIOS / "quickstart_locustfile.py"), "--headless", "-u", "8", "-r", "8"]
    command += ["-t", "6s", "--stop-timeout", "5", "--csv", str(tmp_path / "run"), "--only-summary", *args]
    log = tmp_path / "locust.log"
    with log.open("w") as out:
        done = subprocess.run(
            command,
            env=locust_env(engine),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    text = log.read_text()
    assert done.returncode == 0, text[-4000:]
    assert API_KEY not in text  # never logged
    return read_stats_csv(tmp_path / "run_stats.csv")


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------


def check_run(engine: Supervisor, rows: dict[tuple[str, str], dict[str, str]], exact: bool = True) -> Snapshot:
    """The engine's final snapshot, once the run was checked. *exact*: the CSV holds every Dispatch.
    With worker processes, Locust's master writes its last CSV without waiting for the workers'
    final reports, so on a loaded machine the CSV can fall short of what the shards accepted; the
    engine's own accounting must balance either way."""

    def count(kind: str, name: str) -> int:
        return int(rows[(kind, name)]["Request Count"])

    def fails(kind: str, name: str) -> int:
        return int(rows[(kind, name)]["Failure Count"])

    # Locust's own entries: a Dispatch per batch not waited for, a call per call waited for; no failures.
    fired, waited = ("echo", "chain", "fail"), ("sleep", "fanout")
    for function in fired:
        assert count("grpc", f"Dispatch {function}") > 0 and fails("grpc", f"Dispatch {function}") == 0
    for function in waited:
        assert count("call", f"call {function}") > 0 and fails("call", f"call {function}") == 0
        assert ("grpc", f"Dispatch {function}") not in rows and ("grpc", f"Wait {function}") not in rows
    batch = {"echo": echo_batch()}
    dispatched = sum(count("grpc", f"Dispatch {f}") * batch.get(f, 1) for f in fired)
    dispatched += sum(count("call", f"call {f}") for f in waited)

    # The shards accepted exactly what Locust counted, every batch as one group of the Session streams.
    live = merged_snapshot(engine.url)
    if exact:
        assert live.counters["accepted"] == dispatched
        groups = sum(count("grpc", f"Dispatch {f}") for f in fired) + sum(count("call", f"call {f}") for f in waited)
        assert live.histogram("rpc", ("Session", "ok")).count == groups
    else:
        assert live.counters["accepted"] >= dispatched > 0
    assert ("rpc", "Dispatch", "ok") not in live.histograms  # no unary Dispatch RPC

    # Every accepted call ends: completed + failed + expired == accepted == dispatched.
    final = engine.drain(15)
    accounting = final.accounting()
    assert accounting.balanced, str(accounting)
    assert accounting.in_flight == 0 and accounting.lost == 0
    assert accounting.completed + accounting.failed + accounting.expired + accounting.cancelled == dispatched

    # The bridged entries hold exactly the shards' numbers (the bridge waited for in-flight calls to end).
    for function in FUNCTIONS:
        assert count("e2e", f"{function} completed") == final.histogram("e2e", (function, "completed")).count
        assert count("attempt", f"{function} OK") == final.histogram("attempt", (function, "OK")).count
    e2e_total = sum(int(row["Request Count"]) for (kind, _), row in rows.items() if kind == "e2e")
    assert e2e_total == accounting.accepted
    attempts = sum(int(row["Request Count"]) for (kind, _), row in rows.items() if kind == "attempt")
    assert attempts == final.counters["attempts"]
    retried = final.histogram("attempt", ("fail", "TEMPORARY_ERROR")).count
    assert count("attempt", "fail TEMPORARY_ERROR") == fails("attempt", "fail TEMPORARY_ERROR") == retried > 0
    assert count("retry", "TEMPORARY_ERROR") == final.counters["retries/TEMPORARY_ERROR"] == retried
    # Bridged latencies are in ms, from the µs histograms (the mean is exact).
    e2e_echo = final.histogram("e2e", ("echo", "completed"))
    assert float(rows[("e2e", "echo completed")]["Average Response Time"]) == pytest.approx(e2e_echo.mean / 1000)
    assert float(rows[("e2e", "echo completed")]["Max Response Time"]) == pytest.approx(e2e_echo.max / 1000)
    # Locust's "Aggregated" row stays the total of Locust's own requests.
    own = sum(int(row["Request Count"]) for (kind, _), row in rows.items() if kind in ("grpc", "call"))
    assert int(rows[("", "Aggregated")]["Request Count"]) == own
    return final


@pytest.mark.timeout(60)
def test_headless_run_bridges_the_shards_statistics_and_accounts_for_every_call(
    engine: Supervisor, tmp_path: Path
) -> None:
    carriers = check_run(engine, run_locust(engine, tmp_path)).breakdown(CounterKind.SESSIONS)
    assert carriers.get("socket", 0) >= 1 and "stream" not in carriers  # every session on a session socket


@pytest.mark.timeout(60)
def test_the_grpc_session_stream_carries_the_same_run(engine: Supervisor, tmp_path: Path) -> None:
    """``--dispatch-rpc stream``: the same session on the ``Calls/Session`` gRPC stream, the same accounting."""
    final = check_run(engine, run_locust(engine, tmp_path, "--dispatch-rpc", "stream"))
    carriers = final.breakdown(CounterKind.SESSIONS)
    assert carriers.get("stream", 0) >= 1 and "socket" not in carriers


@pytest.mark.timeout(60)
def test_two_worker_processes(engine: Supervisor, tmp_path: Path) -> None:
    rows = run_locust(engine, tmp_path, "--processes", "2")
    assert "(index 1) reported as ready" in (tmp_path / "locust.log").read_text()
    check_run(engine, rows, exact=False)


@pytest.mark.timeout(60)
def test_unary_rpcs_as_an_sdk_client_makes_them(engine: Supervisor, tmp_path: Path) -> None:
    """``--dispatch-rpc unary``: a Dispatch RPC per dispatch and a Wait RPC per waited call, each an entry."""
    rows = run_locust(engine, tmp_path, "--dispatch-rpc", "unary", "-u", "4", "-t", "3s")
    assert not [name for kind, name in rows if kind == "call"]
    for function in ("sleep", "fanout"):
        dispatched, waited = rows[("grpc", f"Dispatch {function}")], rows[("grpc", f"Wait {function}")]
        # A user stopped between its Dispatch and its Wait records the Dispatch only (a Wait cut short has no entry).
        assert 0 < int(waited["Request Count"]) <= int(dispatched["Request Count"])
        assert dispatched["Failure Count"] == waited["Failure Count"] == "0"
    batch = {"echo": echo_batch()}
    dispatches = {f: int(rows[("grpc", f"Dispatch {f}")]["Request Count"]) for f in FUNCTIONS}
    live = merged_snapshot(engine.url)
    assert live.counters["accepted"] == sum(n * batch.get(f, 1) for f, n in dispatches.items())
    assert live.histogram("rpc", ("Dispatch", "ok")).count == sum(dispatches.values())
    assert ("rpc", "Session", "ok") not in live.histograms


LATE_LOCUSTFILE = """
from locust import constant, task
from locust.exception import StopUser
from loadgen.locust import DispatchFailed, DispatchUser

class Late(DispatchUser):
    wait_time = constant(0)

    @task
    def late(self):
        try:
            self.call_batch("echo", {"s": "x" * 40_000}, 1_000)  # 40 MB: refused alone, the stream goes on
        except DispatchFailed:
            pass
        try:
            self.call("sleep", {"ms": 3000}, timeout=0.5)  # its deadline passes first
        except DispatchFailed:
            pass
        self.call("fail", {"status": "PERMANENT_ERROR", "times": 9})  # fails, with the endpoint's message
        raise StopUser()
"""


@pytest.mark.timeout(60)
def test_calls_too_large_past_their_timeout_or_failed_are_failed_call_entries(
    engine: Supervisor, tmp_path: Path
) -> None:
    locustfile = tmp_path / "late_locustfile.py"
    locustfile.write_text(LATE_LOCUSTFILE)
    command = [LOCUST, "-f", str(locustfile), "--headless", "-u", "2", "-r", "2", "-t", "5s", "--stop-timeout", "5"]
    command += ["--csv", str(tmp_path / "late"), "--only-summary"]
    done = subprocess.run(
        command, env=locust_env(engine), cwd=tmp_path, capture_output=True, text=True, timeout=45, check=False
    )
    assert done.returncode == 1, done.stderr[-4000:]  # Locust's verdict: requests failed
    rows = read_stats_csv(tmp_path / "late_stats.csv")
    for function in ("sleep", "fail"):
        row = rows[("call", f"call {function}")]
        assert row["Request Count"] == row["Failure Count"] == "2"
    too_large = rows[("call", "call echo")]
    assert too_large["Request Count"] == too_large["Failure Count"] == "2000"
    failures = (tmp_path / "late_failures.csv").read_text()
    assert "RESOURCE_EXHAUSTED: a batch of" in failures and "nothing was sent" in failures
    assert "DEADLINE_EXCEEDED: no result within 0.5 s" in failures
    assert "PERMANENT_ERROR: InjectedFailure: injected PERMANENT_ERROR" in failures, failures


@pytest.mark.timeout(60)
def test_open_model_arrivals_follow_the_schedule(engine: Supervisor, tmp_path: Path) -> None:
    """2 s at 40/s then a ramp to 80/s over 2 s: 200 arrivals over 2 workers, then the test stops by itself."""
    command = [LOCUST, "-f", str(SCENARIOS / "open_model_locustfile.py"), "--headless", "-u", "20", "-r", "20"]
    command += ["--processes", "2", "--csv", str(tmp_path / "open"), "--only-summary"]
    done = subprocess.run(
        command,
        env=locust_env(engine, LOADGEN_OPEN_STAGES="2:40,2:80r"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Open-model schedule over" in done.stderr
    rows = read_stats_csv(tmp_path / "open_stats.csv")
    arrivals = int(rows[("open", "OpenArrivals")]["Request Count"])
    dropped = int(rows.get(("open", "dropped OpenArrivals"), {}).get("Request Count", 0))
    assert arrivals + dropped == 200
    assert int(rows[("call", "call sleep")]["Request Count"]) == arrivals
    assert merged_snapshot(engine.url).counters["accepted"] == arrivals


# ------------------------------------------------------------------------------------------
# Pure pieces
# ------------------------------------------------------------------------------------------


def test_schedule_spreads_one_rate_over_processes() -> None:
    stages = (Stage(2, 50), Stage(2, 100, ramp=True), Stage(1, 0))
    alone = list(ArrivalSchedule(stages))
    assert len(alone) == 250 and alone[:3] == pytest.approx([0, 0.02, 0.04])
    assert all(b > a for a, b in itertools.pairwise(alone)) and alone[-1] < 4
    shares = [list(ArrivalSchedule(stages, index, 3)) for index in range(3)]
    assert sorted(t for share in shares for t in share) == pytest.approx(alone)
    poisson = list(ArrivalSchedule(stages, poisson=True, seed=7))
    assert 200 < len(poisson) < 300 and poisson == sorted(poisson)
    with pytest.raises(ValueError):
        Stage(0, 10)


def _record(stats: ShardStats, values_us: list[int]) -> Snapshot:
    for us in values_us:
        stats.record_call("f", "completed", "OK", us / 1e6)
    return Snapshot.from_bytes(stats.snapshot().to_bytes())


def test_histogram_delta_is_the_histogram_of_the_new_values() -> None:
    old_values = [100, 250, 900, 4_000, 75_000]
    new_values = [120, 300, 301, 2_500, 9_999, 50_000, 1_200_000]
    growing = ShardStats("s")
    before = _record(growing, old_values)
    after = _record(growing, new_values)
    alone = _record(ShardStats("t"), new_values)
    key = ("e2e", "f", "completed")
    delta = HistogramDelta.between(after.histograms[key], before.histograms[key])
    expected = alone.histograms[key]
    assert (delta.count, delta.sum, dict(delta.buckets)) == (expected.count, expected.sum, expected.counts())
    qs = (0.0, 50.0, 90.0, 99.0, 99.9, 100.0)
    assert delta.percentiles(qs) == expected.percentiles(qs)
    assert delta.max == expected.max and delta.min <= expected.min
    whole = HistogramDelta.between(after.histograms[key], None)
    assert whole.percentiles(qs) == after.histograms[key].percentiles(qs)


@pytest.mark.timeout(60)
def test_bridge_feed_is_exact_and_cheaper_than_one_event_per_value() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadgen.bench.bridge", "--values", "2000", "20000"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1].split()
    fire_us, bridge_us = float(last[2]), float(last[4])
    assert bridge_us < fire_us


def test_addresses_and_keys_resolve_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from loadgen.locust.options import group_by_host, parse_addresses, resolve_addresses, resolve_api_key

    assert parse_addresses(" http://a:1, b:2  c:3/") == ["a:1", "b:2", "c:3"]
    with pytest.raises(ValueError):
        parse_addresses("nohost")
    monkeypatch.delenv("LOADGEN_ADDRESSES", raising=False)
    monkeypatch.delenv("DISPATCH_API_KEY", raising=False)
    given = SimpleNamespace(dispatch_addresses="x:1,y:2", dispatch_api_key="opt")
    unset = SimpleNamespace(dispatch_addresses="", dispatch_api_key="")
    assert resolve_addresses(given, "c:9", "http://h:7") == ["x:1", "y:2"]
    assert resolve_addresses(unset, ["c:9"], "http://h:7") == ["c:9"]
    assert resolve_addresses(unset, None, "http://h:7") == ["h:7"]
    with pytest.raises(ValueError):
        resolve_addresses(unset, None, None)
    assert resolve_api_key(given, "cls") == "opt" and resolve_api_key(unset, "cls") == "cls"
    monkeypatch.setenv("DISPATCH_API_KEY", "env")
    assert resolve_api_key(None, "cls") == "env"
    assert group_by_host(["host-a:1", "host-b:1", "host-a:2", "host-a:1"]) == {
        "host-a": ["host-a:1", "host-a:2"],
        "host-b": ["host-b:1"],
    }


HOG_LOCUSTFILE = """
import time

import os

import gevent
from locust import constant, events, task

from loadgen.locust import DispatchUser, OpenModelUser, Stage


class Arrivals(OpenModelUser):
    abstract = os.environ["HOG_MODEL"] != "open"
    stages = (Stage(4, 50),)
    grace = 2.0

    def arrival(self) -> None:
        self.call("echo", {"message": "hi"}, timeout=10)


class Users(DispatchUser):
    abstract = os.environ["HOG_MODEL"] != "closed"
    wait_time = constant(0.05)

    @task
    def echo(self) -> None:
        self.call("echo", {"message": "hi"}, timeout=10)


def _hog() -> None:  # the process's CPU is busy 0.3 s of every 0.4 s: the generator cannot keep up
    while True:
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
        gevent.sleep(0.1)


@events.test_start.add_listener
def _start(**_kwargs: object) -> None:
    gevent.spawn(_hog)
"""


@pytest.mark.parametrize("model", ["open", "closed"])
def test_an_overloaded_generator_shows_in_lag_and_caller_latency_not_in_the_engines(
    model: str, engine: Supervisor, tmp_path: Path
) -> None:
    from loadgen.core.caller import parse_caller_document
    from loadgen.core.counters import ARRIVALS, LATE
    from loadgen.runs.metrics import Metrics

    locustfile = tmp_path / "hog.py"
    locustfile.write_text(HOG_LOCUSTFILE)
    caller_file = tmp_path / "caller.json"
    users, limit = ("20", "20s") if model == "open" else ("8", "4s")
    command = [LOCUST, "-f", str(locustfile), "--headless", "-u", users, "-r", users, "-t", limit, "--only-summary"]
    command += ["--dispatch-caller-file", str(caller_file)]
    with (tmp_path / "locust.log").open("w") as out:
        env = locust_env(engine, HOG_MODEL=model)
        subprocess.run(command, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, timeout=60)
    caller = parse_caller_document(json.loads(caller_file.read_text()), "caller.json")
    assert caller.latency is not None and caller.processes["locust"]["final"]  # a local runner: one process
    engine_stats = merged_snapshot(engine.shard_addresses[0])
    metrics = Metrics(engine_stats, 4.0, caller=caller.latency)
    assert metrics("loop_lag.p90") >= 200_000  # the event loop runs late, whatever the load model
    assert metrics("engine.e2e.p99") < 100_000
    if model == "open":
        assert metrics("latency.p99{function=echo,outcome=completed}") >= 200_000
        assert caller.latency.counters[ARRIVALS] == 200 and caller.latency.counters[LATE] > 0
        assert metrics("lag.p99{kind=arrival}") >= 200_000
        assert metrics("latency.count") == 200 == metrics("engine.e2e.count")
    else:  # a closed loop issues nothing while the CPU is taken: its tasks start late, after their wait
        assert metrics("lag.p90{kind=task}") >= 200_000 and metrics("arrivals") == 0
        # every result a user received, once; a call the stop cut short has no caller latency (it is unfinished)
        assert metrics("latency.count") == caller.total("results") > 0


@pytest.mark.timeout(60)
def test_worker_processes_do_not_outlive_a_master_killed_outright(engine: Supervisor, tmp_path: Path) -> None:
    """Forked workers do not inherit the parent-death signal: the plug-in arms it in each fork."""
    command = [LOCUST, "-f", str(SCENARIOS / "quickstart_locustfile.py"), "--headless", "-u", "4", "-r", "4"]
    command += ["-t", "30s", "--processes", "2", "--only-summary"]
    with (tmp_path / "locust.log").open("w") as out:
        master = subprocess.Popen(command, env=locust_env(engine), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers := _children(master.pid)) < 2:
            assert master.poll() is None and time.monotonic() < deadline, "no workers started"
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while merged_snapshot(engine.url).counters.get("accepted", 0) == 0:  # the load runs
            assert time.monotonic() < deadline, "no call was dispatched"
            time.sleep(0.2)
        master.kill()
        master.wait(10)
        deadline = time.monotonic() + 5
        while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists() and not _zombie(pid)]:
            assert time.monotonic() < deadline, f"workers outlived their master: {alive}"
            time.sleep(0.1)
    finally:
        if master.poll() is None:
            master.kill()
        for pid in workers:  # whatever the outcome, nothing is left running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _zombie(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


def test_calls_a_full_shard_rejects_are_failures_of_their_entries_and_balance_with_the_engine(
    endpoint_url: str, signing_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    """Every echo batch (10 calls) is above a 5-call cap: rejected whole, each Dispatch a failure that names
    the setting; the single calls mostly fit. Locust's failures and the engine's rejected calls agree."""
    with Supervisor(quick_engine(endpoint_url, signing_key, API_KEY, max_calls_in_flight=5)) as engine:
        rows = run_locust(engine, tmp_path, "--exit-code-on-error", "0")
        live = merged_snapshot(engine.url)
    batch = echo_batch()
    echo = rows[("grpc", "Dispatch echo")]
    assert int(echo["Request Count"]) > 0 and echo["Failure Count"] == echo["Request Count"]
    failures = read_failures_csv(tmp_path / "run_failures.csv")
    assert any("max_calls_in_flight" in error and name == "Dispatch echo" for name, error in failures)
    rejected_calls = sum(
        int(row["Failure Count"]) * (batch if name == "Dispatch echo" else 1)
        for (kind, name), row in rows.items()
        if kind in ("grpc", "call") and name != "Aggregated"
    )
    accounting = live.accounting()
    assert accounting.rejected == rejected_calls and accounting.offered == accounting.accepted + accounting.rejected


def read_failures_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as handle:
        return [(row["Name"], row["Error"]) for row in csv.DictReader(handle)]


SHARD_ROWS = """
import json
from loadgen.core.stats import ShardStats, merge_snapshots
from loadgen.locust.bridge import StatsBridge
from loadgen.locust.webtab import SHARD_COLUMNS, shard_rows

full, calm = ShardStats("shard-0"), ShardStats("shard-1")
full.count_admission(150)
full.count_accepted(100)
full.count_admission(50, "calls_in_flight")
full.set_gauge("queued_attempts", 7)
calm.count_admission(10)
calm.count_accepted(10)
bridge = StatsBridge(None, ["127.0.0.1:1"], "key")
bridge.latest = merge_snapshots([full.snapshot(), calm.snapshot()])
print(json.dumps({"columns": [key for key, _ in SHARD_COLUMNS], "rows": shard_rows(bridge)}))
"""


def test_the_shards_tab_shows_rejections_by_reason_and_queued_attempts() -> None:
    # in a process of its own: the bridge imports Locust, which patches the process it runs in with gevent
    done = subprocess.run([sys.executable, "-c", SHARD_ROWS], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {row["shard"]: row for row in table["rows"]}
    assert set(table["columns"]) == set(rows["(all)"])
    assert rows["shard-0"]["rejected"] == "50 (calls_in_flight 50)" and rows["shard-0"]["queued"] == 7
    assert rows["shard-1"]["rejected"] == "0" and rows["(all)"]["rejected"] == "50 (calls_in_flight 50)"
    assert rows["(all)"]["accepted"] == 110 and rows["(all)"]["queued"] == 7
