"""The sharded engine: real shard processes, real gRPC and HTTP/2 on 127.0.0.1, the reference endpoint."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine
from process_lines import read_line

from loadgen.engine.client import EngineClient
from loadgen.engine.frontend import owner_of
from loadgen.engine.settings import EngineSetup
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.protocol import values
from loadgen.protocol.keys import private_key_base64

pytestmark = pytest.mark.system

API_KEY = "shard-test-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)


def options(endpoint_url: str, key: Ed25519PrivateKey, **overrides: object) -> EngineSetup:
    return quick_engine(endpoint_url, key, API_KEY, **overrides)


@pytest.fixture(scope="module")
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    with Supervisor(options(endpoint_url, signing_key, connect_port=0)) as supervisor:
        yield supervisor


def stub(address: str) -> dispatch_pb2_grpc.DispatchServiceStub:
    return dispatch_pb2_grpc.DispatchServiceStub(grpc.insecure_channel(address.removeprefix("http://")))


def dispatch(target: dispatch_pb2_grpc.DispatchServiceStub, function: str, params: dict[str, object]) -> str:
    call = call_pb2.Call(function=function, input=values.encode(params))  # type: ignore[arg-type]
    (dispatch_id,) = target.Dispatch(dispatch_pb2.DispatchRequest(calls=[call]), metadata=AUTH).dispatch_ids
    return str(dispatch_id)


def wait(target: dispatch_pb2_grpc.DispatchServiceStub, dispatch_id: str) -> tuple[call_pb2.CallResult, str]:
    result, call = target.Wait.with_call(dispatch_pb2.WaitRequest(dispatch_id=dispatch_id), metadata=AUTH, timeout=30)
    return result, dict(call.trailing_metadata())["loadgen-status"]


def test_ids_name_their_shard_and_wait_is_forwarded(engine: Supervisor) -> None:
    first, second = (stub(address) for address in engine.shard_addresses)
    on_first = dispatch(first, "fanout", {"n": 3})
    on_second = dispatch(second, "chain", {"depth": 2})
    assert owner_of(on_first)[0] == 0 and owner_of(on_second)[0] == 1  # type: ignore[index]
    result, status = wait(second, on_first)  # forwarded from shard 1 to shard 0
    assert status == "STATUS_OK"
    assert values.decode(result.output)["results"] == [{}, {}, {}]  # type: ignore[index]
    result, status = wait(first, on_second)
    assert status == "STATUS_OK" and values.decode(result.output) == {"depth": 0}


def test_shared_address_serves_dispatch_and_wait(engine: Supervisor) -> None:
    shared = stub(engine.url)
    ids = [dispatch(shared, "fail", {"status": "TEMPORARY_ERROR", "times": 2}) for _ in range(5)]
    for dispatch_id in ids:
        _, status = wait(shared, dispatch_id)
        assert status == "STATUS_OK"
    with pytest.raises(grpc.RpcError) as info:
        shared.Wait(dispatch_pb2.WaitRequest(dispatch_id="zz"), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_stats_merge_every_shard(engine: Supervisor) -> None:
    for address in engine.shard_addresses:
        dispatch_id = dispatch(stub(address), "echo", {})
        wait(stub(address), dispatch_id)
    snapshot = engine.snapshot()
    assert sorted(snapshot.shards) == ["shard-0", "shard-1"]
    accounting = snapshot.accounting()
    assert accounting.balanced and accounting.accepted >= 2
    assert snapshot.histogram("e2e", ("echo", "completed")).count >= 2


def test_connect_ingress(engine: Supervisor) -> None:
    assert engine.connect_url is not None
    url = engine.connect_url + "/dispatch.sdk.v1.DispatchService/"
    request = dispatch_pb2.DispatchRequest(calls=[call_pb2.Call(function="echo", input=values.encode({"x": 1}))])
    headers = {"content-type": "application/proto", "connect-protocol-version": "1"}
    with httpx.Client(timeout=30) as client:
        denied = client.post(url + "Dispatch", content=request.SerializeToString(), headers=headers)
        assert denied.status_code == 401 and denied.text == "missing authentication token"
        headers["authorization"] = f"Bearer {API_KEY}"
        reply = client.post(url + "Dispatch", content=request.SerializeToString(), headers=headers)
        assert reply.status_code == 200
        (dispatch_id,) = dispatch_pb2.DispatchResponse.FromString(reply.content).dispatch_ids
        waited = client.post(
            url + "Wait", content=dispatch_id.encode(), headers={"authorization": headers["authorization"]}
        )
        assert waited.status_code == 200 and waited.headers["loadgen-status"] == "STATUS_OK"
        assert values.decode(call_pb2.CallResult.FromString(waited.content).output) == {"x": 1}
        bad = client.post(url + "Dispatch", content=b"\xff\xff", headers=headers)
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"


def test_crashed_shard_is_restarted_and_its_calls_counted_lost(
    endpoint_url: str, signing_key: Ed25519PrivateKey
) -> None:
    with Supervisor(options(endpoint_url, signing_key)) as supervisor:
        addresses = list(supervisor.shard_addresses)
        victim = stub(supervisor.shard_addresses[1])
        lost = [dispatch(victim, "sleep", {"ms": 30_000}) for _ in range(3)]
        survivor = dispatch(stub(supervisor.shard_addresses[0]), "echo", {})
        supervisor.check()  # a snapshot before the crash
        victim_pid = supervisor._slots[1].process.pid
        assert victim_pid is not None
        os.kill(victim_pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while supervisor.check() != [1]:
            assert time.monotonic() < deadline, "the dead shard was not restarted"
        assert supervisor.lost == 3 and supervisor.restarts == 1
        assert supervisor.shard_addresses == addresses  # clients of its own address find the new one there
        with pytest.raises(grpc.RpcError) as info:
            wait(stub(supervisor.shard_addresses[0]), lost[0])
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "lost" in (info.value.details() or "")
        _, status = wait(stub(supervisor.url), survivor)
        assert status == "STATUS_OK"
        fresh = dispatch(stub(supervisor.shard_addresses[1]), "echo", {})
        assert owner_of(fresh)[1] != owner_of(lost[0])[1]  # type: ignore[index]
        _, status = wait(stub(supervisor.shard_addresses[1]), fresh)
        assert status == "STATUS_OK"
        final = supervisor.drain(5)
    accounting = final.accounting()
    assert accounting.balanced, str(accounting)
    assert (accounting.accepted, accounting.completed, accounting.lost) == (5, 2, 3)


def test_drain_finishes_short_calls_and_cancels_long_ones(endpoint_url: str, signing_key: Ed25519PrivateKey) -> None:
    with Supervisor(options(endpoint_url, signing_key, shards=1)) as supervisor:
        target = stub(supervisor.url)
        for _ in range(3):
            dispatch(target, "sleep", {"ms": 200})
        for _ in range(2):
            dispatch(target, "sleep", {"ms": 30_000})
        final = supervisor.drain(1.5, "the test stopped the engine")
    accounting = final.accounting()
    assert accounting.balanced, str(accounting)
    assert (accounting.completed, accounting.cancelled, accounting.expired, accounting.in_flight) == (3, 2, 0, 0)
    assert final.failures[("cancelled", "sleep", "TIMEOUT")].sample == "CANCELLED: the test stopped the engine"


def test_serve_command_prints_exports_and_exits_cleanly(endpoint_url: str, signing_key: Ed25519PrivateKey) -> None:
    """It serves; on SIGTERM it drains, and a call still running is cancelled (not expired), its
    pending Wait answered with that outcome and the reason."""
    command = [sys.executable, "-m", "loadgen.cli", "serve", endpoint_url, "--port", "0", "--shards", "2"]
    command += ["--api-key", API_KEY, "--signing-key", private_key_base64(signing_key), "--drain-timeout", "0.5"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(process, "DISPATCH_API_URL")
        url = line.split('"')[1]
        target = stub(url)  # one channel, one connection: one shard gets the Dispatch and the Wait
        dispatch_id = dispatch(target, "echo", {})
        _, status = wait(target, dispatch_id)
        assert status == "STATUS_OK"
        sleeping = dispatch(target, "sleep", {"ms": 30_000})
        pending = target.Wait.future(dispatch_pb2.WaitRequest(dispatch_id=sleeping), metadata=AUTH, timeout=30)
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2
        mapped = [Path(f"/proc/{pid}/maps").read_text() for pid in children]
        assert sum("/memfd:loadgen-ledger" in maps for maps in mapped) == 2  # both shards, and no file:
        assert not any("/dev/shm/loadgen-ledger" in maps for maps in mapped)  # nothing left after a SIGKILL
        process.send_signal(signal.SIGTERM)
        result = pending.result(timeout=30)
        trailers = dict(pending.trailing_metadata())
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert (trailers["loadgen-status"], trailers["loadgen-outcome"]) == ("STATUS_TIMEOUT", "cancelled")
    assert result.error.type == "CANCELLED"
    assert result.error.message == "loadgen serve stopped (SIGTERM) before the call finished (drain timeout 0.5s)"
    accounting = "offered 2 = accepted 2 + rejected 0; accepted 2 = completed 1 + failed 0 + expired 0 + cancelled 1"
    assert f"accounting: {accounting}" in stderr
    assert "balanced" in stderr
    assert API_KEY not in stderr
    # Not even a zombie: serve reaps multiprocessing's resource tracker too (it lingered ~2 s in the group).
    deadline = time.monotonic() + 1
    while alive := [pid for pid in children if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, f"orphans left behind: {alive}"
        time.sleep(0.05)


def test_a_burst_of_waits_on_one_connection_is_answered_in_full_and_every_answer_is_counted(
    engine: Supervisor,
) -> None:
    """5,000 Waits at once on one channel: gRPC core's queue of RPCs Python has not picked up yet
    dropped 6-30% of them as CANCELLED, uncounted; now every one is answered and counted, and a
    Wait the client gives up on is counted as CANCELLED with a message."""
    address = engine.shard_addresses[0]
    target = stub(address)
    batch = dispatch_pb2.DispatchRequest(calls=[call_pb2.Call(function="echo", input=values.encode({}))] * 1000)
    ids = [i for _ in range(5) for i in target.Dispatch(batch, metadata=AUTH).dispatch_ids]
    client = EngineClient(API_KEY)
    before = client.stats(address, local=True)
    futures = [target.Wait.future(dispatch_pb2.WaitRequest(dispatch_id=i), metadata=AUTH, timeout=60) for i in ids]
    codes = collections.Counter(f.code().name for f in futures)
    assert codes == {"OK": 5000}
    answered = client.stats(address, local=True).minus(before)
    assert answered.histogram("rpc", ("Wait", "ok")).count == 5000
    sleeping = dispatch(target, "sleep", {"ms": 10_000})
    given_up = target.Wait.future(dispatch_pb2.WaitRequest(dispatch_id=sleeping), metadata=AUTH, timeout=30)
    time.sleep(0.2)  # the Wait reaches the shard and waits there
    given_up.cancel()
    deadline = time.monotonic() + 10
    while ("rpc", "Wait", "CANCELLED") not in (failures := client.stats(address, local=True).failures):
        assert time.monotonic() < deadline, "the cancelled Wait was never counted"
        time.sleep(0.1)
    assert failures[("rpc", "Wait", "CANCELLED")].sample == "the client cancelled the RPC before it was answered"
    with pytest.raises(grpc.RpcError):
        wait(target, "0" * 32)  # answered NOT_FOUND: counted under its code, with the message
    assert client.stats(address, local=True).failures[("rpc", "Wait", "NOT_FOUND")].count >= 1


def test_over_its_connection_cap_a_shard_refuses_new_clients_at_once_says_so_and_recovers(
    endpoint_url: str, signing_key: Ed25519PrivateKey
) -> None:
    """Idle connections up to the cap: a new client is refused at once (UNAVAILABLE, not a timeout),
    the shard logs it, the supervisor's probe of the shard notices it, and once they go a new client
    is served again."""
    command = [sys.executable, "-m", "loadgen.cli", "serve", endpoint_url, "--port", "0", "--shards", "1"]
    command += ["--api-key", API_KEY, "--signing-key", private_key_base64(signing_key), "--max-connections", "20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged: list[str] = []
    reader = threading.Thread(target=lambda: logged.extend(process.stderr or ()), daemon=True)
    reader.start()
    idle: list[socket.socket] = []
    try:
        address = read_line(process, "DISPATCH_API_URL").split('"')[1].removeprefix("http://")
        while not any("shard addresses" in line for line in logged):
            assert process.poll() is None
            time.sleep(0.05)
        address = next(line for line in logged if "shard addresses" in line).split()[-1]  # the shard's own
        host, port = address.rsplit(":", 1)
        idle = [socket.create_connection((host, int(port))) for _ in range(30)]
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            fresh = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            dispatch(dispatch_pb2_grpc.DispatchServiceStub(fresh), "echo", {})
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE and time.monotonic() - started < 5
        deadline = time.monotonic() + 15  # the shard looks about once a second, the supervisor every 5 s
        for said in ("at its cap of 20 gRPC connections (max_connections;", "new clients cannot connect"):
            while not any(said in line for line in logged):
                assert time.monotonic() < deadline, f"no log line {said!r}: {logged}"
                time.sleep(0.1)
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 15
        while True:
            fresh = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            try:
                dispatch(dispatch_pb2_grpc.DispatchServiceStub(fresh), "echo", {})
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "still refused after the idle connections closed"
                time.sleep(0.2)
            finally:
                fresh.close()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    finally:
        for sock in idle:
            sock.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0


def test_a_snapshot_answered_too_late_is_not_taken_for_a_later_answer_nor_for_the_drain(
    endpoint_url: str, signing_key: Ed25519PrivateKey
) -> None:
    with Supervisor(options(endpoint_url, signing_key, shards=1, health_timeout=0.5)) as supervisor:
        target = stub(supervisor.url)
        long_call = dispatch(target, "sleep", {"ms": 30_000})
        pid = supervisor._slots[0].process.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # a shard starved of CPU: it answers after the supervisor gave up
        try:
            supervisor.snapshot()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert supervisor._slots[0].conn.poll(10)  # the late answer arrived and waits in the pipe
        _, status = wait(target, dispatch(target, "echo", {}))
        assert status == "STATUS_OK"
        assert supervisor.snapshot().accounting().accepted == 2  # the new answer, not the late one
        supervisor.snapshot()
        os.kill(pid, signal.SIGSTOP)
        try:
            supervisor.snapshot()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert supervisor._slots[0].conn.poll(10)
        final = supervisor.drain(0.5, "the test stopped the engine")
    accounting = final.accounting()
    assert accounting.balanced, str(accounting)
    assert (accounting.completed, accounting.cancelled, accounting.lost) == (1, 1, 0), long_call


def test_a_shard_slow_to_answer_is_not_restarted_and_one_silent_past_the_hang_timeout_is(
    endpoint_url: str, signing_key: Ed25519PrivateKey
) -> None:
    setup = options(endpoint_url, signing_key, shards=1, health_timeout=0.3, hang_timeout=3.0)
    with Supervisor(setup) as supervisor:
        target = stub(supervisor.url)
        pid = supervisor._slots[0].process.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # starved of CPU for longer than a health check waits
        try:
            assert supervisor.check() == [] and supervisor.check() == []
        finally:
            os.kill(pid, signal.SIGCONT)
        assert supervisor.check() == [] and supervisor._slots[0].silent_since is None
        _, status = wait(target, dispatch(target, "echo", {}))
        assert status == "STATUS_OK" and supervisor.restarts == 0
        os.kill(pid, signal.SIGSTOP)  # now silent for good
        deadline = time.monotonic() + 20
        while (restarted := supervisor.check()) != [0]:
            assert restarted == [] and time.monotonic() < deadline, "the silent shard was not restarted"
        assert supervisor.restarts == 1 and time.monotonic() - deadline + 20 >= 3.0
        _, status = wait(target, dispatch(target, "echo", {}))
        assert status == "STATUS_OK"
