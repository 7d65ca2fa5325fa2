"""Security properties of the real processes: signatures end to end, loopback-only servers, no leaked secrets.

* A shard signing with a key the endpoint does not trust: every call ends
  ``PERMISSION_DENIED`` after exactly one attempt (no retry of a refusal).
* The reference endpoint (``loadgen endpoint``) refuses a signature created 6 minutes ago.
* Every server loadgen starts binds 127.0.0.1 by default: ``loadgen serve`` (shared
  address, the shards' private ports, the Connect ingress), ``loadgen endpoint``, and
  what ``loadgen run --web`` starts (endpoint, shards, the Locust web UI). Checked on
  the listening sockets of the processes themselves (``/proc/PID/fd`` and
  ``/proc/PID/net/tcp{,6}``), not on what they print.
* Key material never appears in output, logs or results: a ``loadgen run`` signing with
  an inline scenario key, and a ``loadgen run`` against remote shards of a
  ``loadgen serve --api-key`` with ``DISPATCH_API_KEY`` set; every byte they and the
  servers wrote is searched for the private key (base64 and PEM) and the API key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.engine.settings import EngineSetup
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, function_pb2, session_pb2, session_pb2_grpc
from loadgen.protocol import values
from loadgen.protocol.keys import private_key_base64, public_key_base64
from loadgen.protocol.signing import Signer

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
RUN_PATH = "/dispatch.sdk.v1.FunctionService/Run"


# -- processes and their sockets ------------------------------------------------------------------------


class Proc:
    """A child process whose stdout and stderr are read line by line into memory as they come."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd or ROOT
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                self.lines[name].append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines["stdout"]) + "".join(self.lines["stderr"])

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first match of *pattern* in the output so far or to come; fails after *timeout* or at exit."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines["stdout"] + self.lines["stderr"]:
                    if found := regex.search(line):
                        return found
                remaining = deadline - time.monotonic()
                finished = not any(reader.is_alive() for reader in self._readers)
                assert remaining > 0 and not finished, f"no {pattern!r} within {timeout}s:\n{self.output_unlocked()}"
                self._changed.wait(min(remaining, 1.0))

    def output_unlocked(self) -> str:
        return "".join(self.lines["stdout"]) + "".join(self.lines["stderr"])

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(10)
        return self.process.returncode

    def finish(self, timeout: float) -> int:
        """Wait for the process to end by itself (killed after *timeout*); its exit code."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            for reader in self._readers:
                reader.join(10)
        return self.process.returncode


def descendants(pid: int) -> set[int]:
    """*pid* and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, frontier = {pid}, [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp{,6} print each 32-bit word in host (little-endian) order
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def listening_sockets(pids: set[int]) -> list[tuple[int, str, int]]:
    """``(pid, address, port)`` of every listening TCP socket the processes hold."""
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    found: set[tuple[int, str, int]] = set()
    for pid in pids:  # each process's own network namespace
        for table in ("tcp", "tcp6"):
            try:
                rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], int(fields[9])
                if state == "0A" and inode in owners:  # 0A: LISTEN
                    host, port = local.split(":")
                    found.add((owners[inode], _address(host), int(port, 16)))
    return sorted(found)


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(root: int, port: int, timeout: float = 60) -> list[tuple[int, str, int]]:
    """Poll (bounded) until a process below *root* listens on *port*; return every listener below *root*."""
    deadline = time.monotonic() + timeout
    while True:
        sockets = listening_sockets(descendants(root))
        if any(p == port for _, _, p in sockets):
            return sockets
        assert time.monotonic() < deadline, f"nothing below {root} listens on {port}: {sockets}"
        time.sleep(0.1)


# -- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def pem_of(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def endpoint(key: Ed25519PrivateKey) -> Iterator[Proc]:
    command = [sys.executable, "-m", "loadgen.cli", "endpoint", "--port", "0"]
    proc = Proc([*command, "--verification-key", public_key_base64(key.public_key())])
    try:
        proc.wait_for(r"listening on http://\S+")
        yield proc
    finally:
        proc.stop()


def url_of(endpoint: Proc) -> str:
    return endpoint.wait_for(r"listening on (http://\S+)").group(1)


def start_serve(endpoint_url: str, key: Ed25519PrivateKey, api_key: str) -> Proc:
    command = [sys.executable, "-m", "loadgen.cli", "serve", endpoint_url, "--port", "0", "--connect-port", "0"]
    command += ["--shards", "2", "--api-key", api_key, "--signing-key", pem_of(key)]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPATCH_API_KEY", "LOADGEN_SIGNING_KEY")}
    proc = Proc(command, env=env)
    proc.wait_for(r"DISPATCH_VERIFICATION_KEY")
    return proc


# -- signatures end to end ------------------------------------------------------------------------------


def test_untrusted_signing_key_fails_each_call_after_one_attempt(endpoint: Proc, key: Ed25519PrivateKey) -> None:
    untrusted = Ed25519PrivateKey.generate()
    options = EngineSetup.create(
        endpoint_url=url_of(endpoint),
        api_key="e2e-key",
        signing_key=private_key_base64(untrusted),
        shards=2,
        port=0,
        backoff=0.01,
        max_backoff=0.05,
    )
    metadata = (("authorization", "Bearer e2e-key"),)
    calls = [
        call_pb2.Call(function="echo", input=values.encode({"n": 1})),
        call_pb2.Call(function="fail", input=values.encode({"status": "TEMPORARY_ERROR", "times": 2})),
        call_pb2.Call(function="fanout", input=values.encode({"n": 3})),
    ]
    with Supervisor(options) as supervisor:
        ids = []
        for address in supervisor.shard_addresses:
            with grpc.insecure_channel(address) as channel:
                stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
                ids += stub.Dispatch(dispatch_pb2.DispatchRequest(calls=calls), metadata=metadata).dispatch_ids
        with grpc.insecure_channel(supervisor.url.removeprefix("http://")) as channel:
            stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
            for dispatch_id in ids:
                result, call = stub.Wait.with_call(
                    dispatch_pb2.WaitRequest(dispatch_id=dispatch_id), metadata=metadata, timeout=30
                )
                assert dict(call.trailing_metadata())["loadgen-status"] == "STATUS_PERMISSION_DENIED"
                assert result.error.type == "PERMISSION_DENIED"
                assert "invalid signature" in result.error.message
                assert private_key_base64(untrusted) not in result.error.message
        final = supervisor.drain(5)
    assert final.counter("attempts") == len(ids) == 6  # one each: a refusal is not retried
    assert final.breakdown("retries") == {}
    assert final.breakdown("failed") == {"PERMISSION_DENIED": 6}
    accounting = final.accounting()
    assert accounting.balanced and (accounting.accepted, accounting.failed) == (6, 6)


def _post(url: str, key: Ed25519PrivateKey, *, created: int, signature: str | None = None) -> httpx.Response:
    body = function_pb2.RunRequest(function="echo", input=values.encode({"x": 1})).SerializeToString()
    authority = url.removeprefix("http://")
    headers = Signer(key).headers(
        method="POST", path=RUN_PATH, authority=authority, content_type="application/proto", body=body, created=created
    )
    if signature is not None:
        headers["Signature"] = signature
    with httpx.Client(timeout=10) as client:
        return client.post(url + RUN_PATH, content=body, headers={"Content-Type": "application/proto", **headers})


def test_endpoint_refuses_a_signature_created_six_minutes_ago(endpoint: Proc, key: Ed25519PrivateKey) -> None:
    url = url_of(endpoint)
    stale = _post(url, key, created=int(time.time()) - 360)
    assert stale.status_code == 403
    assert stale.json() == {
        "code": "permission_denied",
        "message": "Signature age exceeds maximum allowable age 0:05:00",
    }
    assert _post(url, key, created=int(time.time()) - 240).status_code == 200  # the same, 4 minutes old


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_endpoint_answers_403_to_a_signature_that_is_an_inner_list(
    endpoint: Proc, key: Ed25519PrivateKey, http2: bool
) -> None:
    url = url_of(endpoint)
    body = function_pb2.RunRequest(function="echo", input=values.encode({})).SerializeToString()
    headers = Signer(key).headers(
        method="POST", path=RUN_PATH, authority=url.removeprefix("http://"), content_type="application/proto", body=body
    )
    headers["Signature"] = 'dispatch=("not" "bytes")'  # no key needed to send this
    with httpx.Client(http1=not http2, http2=http2, timeout=10) as client:
        reply = client.post(url + RUN_PATH, content=body, headers={"Content-Type": "application/proto", **headers})
    assert reply.status_code == 403 and reply.json()["code"] == "permission_denied"


# -- servers bind 127.0.0.1 -----------------------------------------------------------------------------


def _assert_loopback_only(sockets: list[tuple[int, str, int]]) -> None:
    assert sockets, "no listening socket found"
    exposed = [s for s in sockets if not is_loopback(s[1])]
    assert not exposed, f"listening beyond 127.0.0.1 (pid, address, port): {exposed}"


def test_serve_and_endpoint_bind_loopback_by_default(endpoint: Proc, key: Ed25519PrivateKey) -> None:
    endpoint_port = int(url_of(endpoint).rsplit(":", 1)[1])
    endpoint_sockets = listening_sockets(descendants(endpoint.pid))
    _assert_loopback_only(endpoint_sockets)
    assert {port for _, _, port in endpoint_sockets} == {endpoint_port}

    serve = start_serve(url_of(endpoint), key, "bind-test-key")
    try:
        shared = int(serve.wait_for(r'DISPATCH_API_URL="http://127\.0\.0\.1:(\d+)"').group(1))
        private = [int(p) for p in re.findall(r":(\d+)", serve.wait_for(r"shard addresses (.*)").group(1))]
        connect = int(serve.wait_for(r"Connect ingress .* on http://127\.0\.0\.1:(\d+)").group(1))
        sockets = listening_sockets(descendants(serve.pid))
        _assert_loopback_only(sockets)
        ports = [port for _, _, port in sockets]
        assert ports.count(shared) == 2 and ports.count(connect) == 2  # each shard, SO_REUSEPORT
        assert set(private) <= set(ports) and len(private) == 2
        session_sockets = [_session_socket_port(f"127.0.0.1:{port}", "bind-test-key") for port in private]
        assert all(ports.count(port) == 1 for port in session_sockets)  # each shard its own
        assert set(ports) == {shared, connect, *private, *session_sockets}
    finally:
        assert serve.stop() == 0, serve.output


def _session_socket_port(address: str, api_key: str) -> int:
    """The port of the session socket the shard at *address* offers."""
    with grpc.insecure_channel(address) as channel:
        offer = session_pb2_grpc.CallsStub(channel).SessionSocket(
            session_pb2.SessionSocketRequest(), metadata=(("authorization", f"Bearer {api_key}"),), timeout=10
        )
    return int(offer.port)


def _run_web(tmp_path: Path, *extra: str) -> tuple[Proc, int, list[tuple[int, str, int]]]:
    port = free_port()
    command = [sys.executable, "-m", "loadgen.cli", "run", "--web", "--web-port", str(port), *extra]
    run = Proc([*command, "--results", str(tmp_path / "results")])
    try:
        sockets = wait_listening(run.pid, port)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "locust" in page.text.lower()
    except BaseException:
        run.stop()
        raise
    return run, port, sockets


def test_run_web_binds_loopback_by_default(tmp_path: Path) -> None:
    run, port, sockets = _run_web(tmp_path)
    try:
        _assert_loopback_only(sockets)
        pids = {pid for pid, _, _ in sockets}
        assert len(pids) >= 4, sockets  # the reference endpoint, 2 shards, Locust
        assert any(p == port for _, _, p in sockets)
    finally:
        run.stop()


def test_run_with_locust_processes_binds_loopback(tmp_path: Path) -> None:
    run, _, _ = _run_web(tmp_path, "--processes", "2")
    try:  # Locust's master binds its port before its web UI serves
        _assert_loopback_only(listening_sockets(descendants(run.pid)))
    finally:
        run.stop()


# -- key material never leaks ---------------------------------------------------------------------------


def _variants(secret: str) -> set[str]:
    """A secret as it could be written: raw, JSON- or HTML-escaped, percent-encoded."""
    return {
        secret,
        secret.replace("/", "\\/"),
        secret.replace("/", "\\u002f").replace("+", "\\u002b"),
        secret.replace("/", "&#x2F;").replace("+", "&#43;"),
        urllib.parse.quote(secret, safe=""),
    }


def _search(haystacks: dict[str, bytes], secret_values: dict[str, str]) -> list[str]:
    found = []
    for what, secret in secret_values.items():
        for variant in _variants(secret):
            needle = variant.encode()
            found += [f"{what} in {where}" for where, text in haystacks.items() if needle in text]
    return found


def test_key_material_never_appears_in_output_logs_or_results(
    tmp_path: Path, endpoint: Proc, key: Ed25519PrivateKey
) -> None:
    """Three runs at once: the scenario's key inline, the same key through ``env:VAR``, and remote
    shards (a ``loadgen serve`` with the key as PEM text and ``--api-key``) with ``DISPATCH_API_KEY``."""
    endpoint_url = url_of(endpoint)
    api_key = "apikey-" + secrets.token_hex(16)
    seed = private_key_base64(key)
    load = '[[workload]]\nfunction = "echo"\ninput = { message = "hi" }\n[load]\nusers = 2\nduration = "3s"\n'
    target = f'[target]\nurl = "{endpoint_url}"\nsdk = "reference"\n'
    serve = start_serve(endpoint_url, key, api_key)
    try:
        addresses = serve.wait_for(r"shard addresses (.*)").group(1).split()
        scenarios = {
            "inline": f'{target}signing_key = "{seed}"\n[engine]\nshards = 1\n{load}',
            "env": f'{target}signing_key = "env:SECURITY_TEST_SEED"\n[engine]\nshards = 1\n{load}',
            "remote": f"{target}[engine]\naddresses = {json.dumps(addresses)}\n{load}",
        }
        base_env = {k: v for k, v in os.environ.items() if k not in ("DISPATCH_API_KEY", "LOADGEN_SIGNING_KEY")}
        envs = {
            "inline": base_env,
            "env": base_env | {"SECURITY_TEST_SEED": seed},
            "remote": base_env | {"DISPATCH_API_KEY": api_key},
        }
        runs = {}
        for name, text in scenarios.items():
            (tmp_path / f"{name}.toml").write_text(f'name = "{name}"\n{text}')
            command = [sys.executable, "-m", "loadgen.cli", "run", str(tmp_path / f"{name}.toml")]
            runs[name] = Proc([*command, "--results", str(tmp_path / name)], env=envs[name])
        codes = {name: run.finish(timeout=120) for name, run in runs.items()}
    finally:
        serve_code = serve.stop()
    assert serve_code == 0, serve.output
    haystacks: dict[str, bytes] = {"serve output": serve.output.encode(), "endpoint output": endpoint.output.encode()}
    for name, run in runs.items():
        haystacks[f"{name} run output"] = run.output.encode()
        (run_dir,) = (tmp_path / name).iterdir()
        files = [path for path in run_dir.rglob("*") if path.is_file()]
        assert {"locust.log", "summary.json", "report.html"} <= {path.name for path in files}
        haystacks.update({str(path.relative_to(tmp_path)): path.read_bytes() for path in files})
        assert codes[name] == 0, run.output
        assert {"locust_stats.csv", "locust.html"} <= {path.name for path in files}
        accounting = json.loads((run_dir / "summary.json").read_text())["accounting"]
        assert accounting["accepted"] > 0 and accounting["failed"] == 0, accounting  # the keys were used
    pem_lines = [line for line in pem_of(key).splitlines() if not line.startswith("-----")]
    secret_values = {"the private key (base64)": seed, "the API key": api_key}
    secret_values |= {f"the private key (PEM line {i})": line for i, line in enumerate(pem_lines)}
    secret_values["the private key (hex)"] = key.private_bytes_raw().hex()
    assert _search({"control": b"x" + seed.encode() + b"x"}, secret_values) == ["the private key (base64) in control"]
    leaks = _search(haystacks, secret_values)
    assert not leaks, leaks
    assert len(haystacks) > 20  # the outputs and every file of the three run folders were searched


def test_redacted_scenario_round_trips(tmp_path: Path) -> None:
    """What ``loadgen run`` hands to Locust (``scenario.json``) must parse as the locustfile parses it."""
    from loadgen.runs.scenario import loads_scenario, parse_redacted, scenario_to_dict

    seed = private_key_base64(Ed25519PrivateKey.generate())
    scenario = loads_scenario(
        f'[target]\nurl = "http://127.0.0.1:9"\nsigning_key = "{seed}"\n[[workload]]\nfunction = "echo"\n', "k.toml"
    )
    document = scenario_to_dict(scenario)  # as run() writes it: redacted
    assert seed not in json.dumps(document)
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(document))
    parsed = parse_redacted(json.loads(path.read_text()), str(path), path.parent)  # as the locustfile reads it
    assert parsed.workload == scenario.workload


# -- the scenario's keys are the ones used --------------------------------------------------------------


def test_reference_target_uses_the_scenario_keys() -> None:
    from loadgen.runs.run import _resolve_keys, _target
    from loadgen.runs.scenario import loads_scenario

    key = Ed25519PrivateKey.generate()
    scenario = loads_scenario(f'[target]\nreference = true\nsigning_key = "{private_key_base64(key)}"\n', "keys.toml")
    with _target(scenario, _resolve_keys(scenario)) as (_, signing_key):
        assert signing_key == private_key_base64(key)
