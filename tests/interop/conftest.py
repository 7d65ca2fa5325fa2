"""Fixtures for the interop tests: real processes on 127.0.0.1, the real dispatch-py 0.7.1 and 0.8.0 SDKs.

Process layout:

* ``sdk_app``: ``tests/interop/sdk_app.py`` in ``.venv-sdk`` (a FastAPI endpoint built with the SDK),
  verifying signatures with the public key of the SDK's signing golden vector; ``sdk08_app``: the same
  for dispatch-py 0.8.0 (``tests/interop/sdk08_app.py`` in ``.venv-sdk08``);
* ``loadgen``: ``loadgen serve ENDPOINT --port 0 --api-key KEY --signing-key GOLDEN_SEED`` from this
  venv, playing the Dispatch service for that endpoint;
* ``tests/interop/sdk_client.py`` in ``.venv-sdk``, dispatching calls with the SDK's ``dispatch.Client``;
* results are read back with loadgen's ``Wait`` RPC.

Over HTTP/2 (``test_hypercorn_h2.py``):

* ``hypercorn_app``: the same ``sdk_app.py`` served by hypercorn (``--server hypercorn``: h2c with prior
  knowledge, a GOAWAY every ``HYPERCORN_MAX_REQUESTS`` requests on a connection);
* ``loadgen_h2``: ``loadgen serve … --http h2`` for it (HTTP/2 forced: no fallback to HTTP/1.1).

With dispatch-py 0.8.0 (``test_sdk08_connect.py``):

* ``reference_endpoint``: the reference endpoint (``EndpointProcess``), verifying GOLDEN_PUBLIC;
* ``connect_loadgen``: ``loadgen serve REFERENCE --connect-port 0 …``, whose Connect ingress URL is read
  from its stderr line ``loadgen: Connect ingress (dispatch-py 0.8) on URL``;
* ``tests/interop/sdk08_client.py`` in ``.venv-sdk08``, dispatching with 0.8.0's Connect ``dispatch.Client``.

Readiness is detected by reading each child's stdout (bounded by a timeout), never by sleeping.
Every child is stopped in teardown: SIGTERM, then SIGKILL of its process group.
If ``.venv-sdk`` (or ``.venv-sdk08``) is missing or broken, ``setup_sdk_venv.sh`` (or
``setup_sdk08_venv.sh``) is run; failure to set it up fails the tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from loadgen.endpoint.process import EndpointProcess
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.protocol.keys import load_private_key, private_key_base64, public_key_base64

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SDK_VENV = Path(os.environ.get("SDK_VENV", ROOT / ".venv-sdk"))
SDK_PYTHON = SDK_VENV / "bin" / "python"
SETUP_SCRIPT = HERE / "setup_sdk_venv.sh"
SDK08_VENV = Path(os.environ.get("SDK08_VENV", ROOT / ".venv-sdk08"))
SDK08_PYTHON = SDK08_VENV / "bin" / "python"
SETUP08_SCRIPT = HERE / "setup_sdk08_venv.sh"

# The signing golden vector's key (the fixed key of the SDK's 0.3-0.5 mock CLI).
GOLDEN_SEED_B64 = "Dsr7yalHYydmUuSXefCukAHo2ZSm1ED2pyGQYlwheiE="
GOLDEN_PUBLIC_B64 = "Z+nTe2VRcw8t8Ihx++D+nXtbO28nwjWIOTLRgzrelYs="

API_KEY = "interop-api-key"
READY_TIMEOUT = 30.0
SDK_CLIENT_TIMEOUT = 30.0
WAIT_TIMEOUT = 30.0
# hypercorn's keep_alive_max_requests for hypercorn_app: a GOAWAY after this many requests on a connection.
HYPERCORN_MAX_REQUESTS = 20

_CONNECT_LINE = re.compile(r"^loadgen: Connect ingress \(dispatch-py 0\.8\) on (http://\S+)$", re.MULTILINE)

_EXPORT = re.compile(r'^export (DISPATCH_[A-Z_]+)="(.*)"$')


def _loadgen_command() -> list[str]:
    """The ``loadgen`` console script of the venv running the tests (falls back to ROOT/.venv).

    ``INTEROP_LOADGEN_CMD`` (split like a shell would) overrides it, e.g. to test another build.
    """
    override = os.environ.get("INTEROP_LOADGEN_CMD")
    if override:
        return shlex.split(override)
    for candidate in (Path(sys.executable).parent / "loadgen", ROOT / ".venv" / "bin" / "loadgen"):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-m", "loadgen.cli"]


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test process environment without DISPATCH_* or LOADGEN_* settings, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "LOADGEN_"))}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ChildProcess:
    """A child process whose stdout lines are collected by a thread; stderr goes to a file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path = ROOT) -> None:
        self.name = name
        self.argv = argv
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr = tempfile.TemporaryFile(mode="w+b", prefix=f"{name}-stderr-")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group, so teardown can reap any workers
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                line = line.rstrip("\r\n")
                self.lines.append(line)
                self._queue.put(line)
        finally:
            stdout.close()
            self._queue.put(None)

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def describe(self) -> str:
        return (
            f"{self.name} ({' '.join(self.argv)}), exit code {self.proc.poll()}\n"
            f"--- stdout ---\n" + "\n".join(self.lines[-50:]) + f"\n--- stderr (tail) ---\n{self.stderr_tail()}"
        )

    def read_until(self, done: Callable[[str], bool], timeout: float, what: str) -> str:
        """Consume stdout lines until ``done(line)``; fail if the child exits or *timeout* passes."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.describe()}")
            try:
                line = self._queue.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                pytest.fail(f"{self.name} exited before {what}\n{self.describe()}")
            if done(line):
                return line

    def search_stderr(self, pattern: re.Pattern[str], timeout: float, what: str) -> re.Match[str]:
        """The first match of *pattern* in what the child wrote to stderr, polled until *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            self._stderr.flush()
            self._stderr.seek(0)
            match = pattern.search(self._stderr.read().decode(errors="replace"))
            if match:
                return match
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                pytest.fail(f"no {what} on the stderr of {self.name}\n{self.describe()}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to *timeout*, then SIGKILL the child's process group. Returns the exit code."""
        rc = self.proc.poll()
        if rc is None:
            self.signal(signal.SIGTERM)
            rc = self.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # reap what the child left behind in its own group
        if rc is None:
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        self._stderr.close()
        return rc


# --------------------------------------------------------------------------- SDK venv


def _venv_ok(python: Path, probe_code: str) -> bool:
    if not python.exists():
        return False
    try:
        probe = subprocess.run([str(python), "-c", probe_code], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _ensure_venv(python: Path, probe_code: str, script: Path, env: Mapping[str, str], what: str) -> Path:
    """*python* once *probe_code* runs in it; else run *script* (idempotent) first, failing loudly."""
    if not _venv_ok(python, probe_code):
        setup = subprocess.run(
            ["bash", str(script)],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if setup.returncode != 0 or not _venv_ok(python, probe_code):
            pytest.fail(
                f"could not set up the {what} venv at {python.parent.parent} with {script} "
                f"(exit {setup.returncode}):\n{setup.stdout}\n{setup.stderr}"
            )
    return python


_SDK_PROBE = "import dispatch, dispatch.fastapi, uvicorn, hypercorn.asyncio"
_SDK08_PROBE = (
    "import importlib.metadata as md, aiohttp, dispatch, dispatch.function, dispatch.asyncio.fastapi, uvicorn; "
    "assert md.version('dispatch-py') == '0.8.0', md.version('dispatch-py')"
)


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The python of the SDK venv, created with setup_sdk_venv.sh when missing or broken."""
    return _ensure_venv(SDK_PYTHON, _SDK_PROBE, SETUP_SCRIPT, {"SDK_VENV": str(SDK_VENV)}, "dispatch-py 0.7.1 SDK")


@pytest.fixture(scope="session")
def sdk08_python() -> Path:
    """The python of the dispatch-py 0.8.0 venv, created with setup_sdk08_venv.sh when missing or broken."""
    return _ensure_venv(
        SDK08_PYTHON, _SDK08_PROBE, SETUP08_SCRIPT, {"SDK08_VENV": str(SDK08_VENV)}, "dispatch-py 0.8.0 SDK"
    )


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Keys:
    golden_seed: str = GOLDEN_SEED_B64
    golden_public: str = GOLDEN_PUBLIC_B64
    other_seed: str = field(default_factory=lambda: private_key_base64(Ed25519PrivateKey.generate()))

    @property
    def golden_private(self) -> Ed25519PrivateKey:
        return load_private_key(self.golden_seed)

    @property
    def other_private(self) -> Ed25519PrivateKey:
        return load_private_key(self.other_seed)

    @property
    def other_public(self) -> str:
        return public_key_base64(self.other_private.public_key())


@pytest.fixture(scope="session")
def keys() -> Keys:
    k = Keys()
    assert public_key_base64(k.golden_private.public_key()) == GOLDEN_PUBLIC_B64
    return k


# --------------------------------------------------------------------------- SDK endpoint


@dataclass
class SdkApp:
    url: str
    process: ChildProcess
    python: Path
    keep_alive_max_requests: int | None = None  # hypercorn's limit per connection (None: uvicorn)
    _encoded: dict[str, bytes] = field(default_factory=dict)

    @property
    def authority(self) -> str:
        return urlsplit(self.url).netloc

    def counts(self) -> dict[str, int]:
        response = httpx.get(f"{self.url}/counts", timeout=10)
        response.raise_for_status()
        counts: dict[str, int] = response.json()
        return counts

    def http_versions(self) -> dict[str, int]:
        """How many Dispatch requests the app saw per ASGI ``http_version`` (``{"2": 12}``)."""
        response = httpx.get(f"{self.url}/http-versions", timeout=10)
        response.raise_for_status()
        versions: dict[str, int] = response.json()
        return versions

    def connections(self) -> dict[str, dict[str, int]]:
        """Dispatch requests per ASGI ``http_version``, then per client connection (``{"2": {"HOST:PORT": 21}}``)."""
        response = httpx.get(f"{self.url}/connections", timeout=10)
        response.raise_for_status()
        connections: dict[str, dict[str, int]] = response.json()
        return connections

    def encode_input(self, *args: Any, **kwargs: Any) -> any_pb2.Any:
        """The SDK's own encoding of ``Arguments(args, kwargs)`` (made in the SDK venv, cached)."""
        argv = [json.dumps(args), json.dumps(kwargs)]
        cache_key = "\0".join(argv)
        if cache_key not in self._encoded:
            out = subprocess.run(
                [str(self.python), str(HERE / "sdk_client.py"), "encode-input", *argv],
                cwd=ROOT,
                env=_child_env({}),
                capture_output=True,
                text=True,
                timeout=SDK_CLIENT_TIMEOUT,
            )
            assert out.returncode == 0, f"sdk_client encode-input failed:\n{out.stdout}\n{out.stderr}"
            self._encoded[cache_key] = base64.b64decode(json.loads(out.stdout)["any"])
        return any_pb2.Any.FromString(self._encoded[cache_key])

    @staticmethod
    def decode_output(output: any_pb2.Any) -> Any:
        return unpickle_output(output)


def _start_sdk_app(
    name: str,
    sdk_python: Path,
    keys: Keys,
    server: str = "uvicorn",
    max_requests: int | None = None,
    script: str = "sdk_app.py",
) -> Iterator[SdkApp]:
    extra_env = {} if max_requests is None else {"SDK_APP_KEEP_ALIVE_MAX_REQUESTS": str(max_requests)}
    argv = [str(sdk_python), str(HERE / script), "--host", "127.0.0.1", "--port", "0"]
    if script == "sdk_app.py":
        argv += ["--server", server]
    child = ChildProcess(
        name,
        argv,
        env=_child_env(
            {
                "DISPATCH_VERIFICATION_KEY": keys.golden_public,
                # Not used by the tests' functions; the SDK only needs them to construct its Client.
                "DISPATCH_API_KEY": "sdk-app-unused-api-key",
                "DISPATCH_API_URL": "http://127.0.0.1:1",
                **extra_env,
            }
        ),
    )
    try:
        line = child.read_until(lambda text: text.startswith("ready "), READY_TIMEOUT, f"{name} to serve")
        url = line.split(" ", 1)[1].strip()
        yield SdkApp(url=url, process=child, python=sdk_python, keep_alive_max_requests=max_requests)
    finally:
        child.stop()


@pytest.fixture(scope="session")
def sdk_app(sdk_python: Path, keys: Keys) -> Iterator[SdkApp]:
    """The SDK endpoint under uvicorn (HTTP/1.1), verifying with the golden public key."""
    yield from _start_sdk_app("sdk_app", sdk_python, keys)


@pytest.fixture(scope="session")
def sdk08_app(sdk08_python: Path, keys: Keys) -> Iterator[SdkApp]:
    """An endpoint on dispatch-py 0.8.0 (``sdk08_app.py``, FastAPI + uvicorn), verifying with the golden public key."""
    yield from _start_sdk_app("sdk08_app", sdk08_python, keys, script="sdk08_app.py")


@pytest.fixture(scope="session")
def hypercorn_app(sdk_python: Path, keys: Keys) -> Iterator[SdkApp]:
    """The same SDK endpoint under hypercorn: h2c with prior knowledge, GOAWAY every HYPERCORN_MAX_REQUESTS."""
    yield from _start_sdk_app(
        "sdk_app-hypercorn",
        sdk_python,
        keys,
        server="hypercorn",
        max_requests=HYPERCORN_MAX_REQUESTS,
    )


# --------------------------------------------------------------------------- loadgen serve


def unpickle_output(output: any_pb2.Any) -> Any:
    """Decode the SDK's (≤ 0.7.1) value encoding: ``Any(BytesValue(pickle.dumps(value)))``."""
    assert output.type_url == "type.googleapis.com/google.protobuf.BytesValue", output
    wrapped = wrappers_pb2.BytesValue()
    assert output.Unpack(wrapped)
    return pickle.loads(wrapped.value)


@dataclass
class WaitOutcome:
    result: call_pb2.CallResult
    status: str | None  # trailing metadata "loadgen-status", e.g. STATUS_OK
    elapsed: float

    @property
    def value(self) -> Any:
        """The unpickled output (the SDK's Any(BytesValue(pickle)) encoding)."""
        assert self.result.HasField("output"), f"no output in {self.result}"
        return unpickle_output(self.result.output)


@dataclass
class LoadgenService:
    api_url: str
    api_key: str
    exports: dict[str, str]
    process: ChildProcess
    sdk_python: Path | None
    _channel: grpc.Channel | None = None

    @property
    def target(self) -> str:
        return urlsplit(self.api_url).netloc

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def sdk_client(self, calls: list[dict[str, Any]], api_key: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run sdk_client.py dispatch (the SDK's dispatch.Client) against this service."""
        assert self.sdk_python is not None, "this loadgen was started without the 0.7.1 SDK venv"
        return subprocess.run(
            [str(self.sdk_python), str(HERE / "sdk_client.py"), "dispatch", json.dumps(calls)],
            cwd=ROOT,
            env=_child_env(
                {
                    "DISPATCH_API_URL": self.api_url,
                    "DISPATCH_API_KEY": self.api_key if api_key is None else api_key,
                    "DISPATCH_ENDPOINT_URL": self.exports["DISPATCH_ENDPOINT_URL"],
                }
            ),
            capture_output=True,
            text=True,
            timeout=SDK_CLIENT_TIMEOUT,
        )

    def dispatch(self, *calls: tuple[str, list[Any]] | tuple[str, list[Any], dict[str, Any]]) -> list[str]:
        """Dispatch ``(function, args[, kwargs])`` calls in one request; returns the dispatch ids."""
        spec = [{"function": c[0], "args": c[1], "kwargs": c[2] if len(c) > 2 else {}} for c in calls]
        out = self.sdk_client(spec)
        assert out.returncode == 0, (
            f"sdk_client dispatch failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr}\n"
            + self.process.describe()
        )
        ids = json.loads(out.stdout)
        assert isinstance(ids, list) and len(ids) == len(calls) and all(isinstance(i, str) and i for i in ids), ids
        return ids

    def wait(self, dispatch_id: str, timeout: float = WAIT_TIMEOUT) -> WaitOutcome:
        """Wait for *dispatch_id* to finish with loadgen's Wait RPC."""
        stub = dispatch_pb2_grpc.DispatchServiceStub(self.channel())
        request = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id, timeout=duration_pb2.Duration(seconds=int(timeout)))
        started = time.monotonic()
        try:
            result, call = stub.Wait.with_call(
                request, metadata=[("authorization", f"Bearer {self.api_key}")], timeout=timeout + 5
            )
        except grpc.RpcError as exc:
            pytest.fail(f"Wait({dispatch_id}) failed: {exc}\n{self.process.describe()}")
        elapsed = time.monotonic() - started
        status = None
        for key, value in call.trailing_metadata() or ():
            if key == "loadgen-status":
                status = value if isinstance(value, str) else value.decode()
        return WaitOutcome(result=result, status=status, elapsed=elapsed)


def start_loadgen(
    endpoint_url: str,
    signing_seed: str | None,
    sdk_python: Path | None,
    api_key: str = API_KEY,
    extra: tuple[str, ...] = (),
    name: str = "loadgen-serve",
) -> LoadgenService:
    argv = [*_loadgen_command(), "serve", endpoint_url, "--port", "0", "--api-key", api_key]
    if signing_seed is not None:
        argv += ["--signing-key", signing_seed]
    argv += list(extra)
    child = ChildProcess(name, argv, env=_child_env({}))
    exports: dict[str, str] = {}
    wanted = {"DISPATCH_API_URL", "DISPATCH_ENDPOINT_URL", "DISPATCH_VERIFICATION_KEY"}

    def collect(line: str) -> bool:
        match = _EXPORT.match(line.strip())
        if match:
            exports[match.group(1)] = match.group(2)
        return wanted <= exports.keys()

    try:
        child.read_until(collect, READY_TIMEOUT, f"`loadgen serve` to print {sorted(wanted)}")
    except BaseException:
        child.stop()
        raise
    return LoadgenService(
        api_url=exports["DISPATCH_API_URL"], api_key=api_key, exports=exports, process=child, sdk_python=sdk_python
    )


@pytest.fixture(scope="session")
def loadgen(sdk_app: SdkApp, keys: Keys, sdk_python: Path) -> Iterator[LoadgenService]:
    """``loadgen serve`` for the SDK endpoint, signing with the golden key the endpoint trusts."""
    service = start_loadgen(sdk_app.url, keys.golden_seed, sdk_python)
    try:
        yield service
    finally:
        service.close()
        service.process.stop()


@pytest.fixture
def loadgen_factory(sdk_python: Path) -> Iterator[Callable[..., LoadgenService]]:
    """Start extra ``loadgen serve`` processes for one test; all are stopped at teardown."""
    started: list[LoadgenService] = []

    def factory(endpoint_url: str, signing_seed: str | None, **kwargs: Any) -> LoadgenService:
        service = start_loadgen(endpoint_url, signing_seed, sdk_python, **kwargs)
        started.append(service)
        return service

    yield factory
    for service in started:
        service.close()
        service.process.stop()


@pytest.fixture(scope="session")
def loadgen_h2(hypercorn_app: SdkApp, keys: Keys, sdk_python: Path) -> Iterator[LoadgenService]:
    """``loadgen serve … --http h2`` for the hypercorn endpoint: HTTP/2 only, nothing falls back to HTTP/1.1."""
    service = start_loadgen(
        hypercorn_app.url, keys.golden_seed, sdk_python, extra=("--http", "h2"), name="loadgen-serve-h2"
    )
    try:
        yield service
    finally:
        service.close()
        service.process.stop()


# --------------------------------------------------------------------------- dispatch-py 0.8.0 (Connect)


@pytest.fixture(scope="session")
def reference_endpoint(keys: Keys) -> Iterator[EndpointProcess]:
    """loadgen's reference endpoint (``echo`` & co.), verifying with the golden public key."""
    with EndpointProcess(keys.golden_public, timeout=READY_TIMEOUT) as endpoint:
        yield endpoint


@dataclass
class Sdk08Run:
    """One run of sdk08_client.py."""

    out: subprocess.CompletedProcess[str]

    @property
    def json(self) -> Any:
        assert self.out.returncode == 0, (
            f"sdk08_client failed (exit {self.out.returncode}):\n{self.out.stdout}\n{self.out.stderr}"
        )
        return json.loads(self.out.stdout)


@dataclass
class ConnectLoadgen:
    """``loadgen serve`` with its Connect ingress, and dispatch-py 0.8.0's client pointed at it."""

    service: LoadgenService
    connect_url: str
    endpoint_url: str
    sdk08_python: Path

    def sdk08(self, *argv: str, api_key: str | None = None) -> Sdk08Run:
        """Run ``sdk08_client.py ARGV…`` with DISPATCH_API_URL = the Connect ingress."""
        out = subprocess.run(
            [str(self.sdk08_python), str(HERE / "sdk08_client.py"), *argv],
            cwd=ROOT,
            env=_child_env(
                {
                    "DISPATCH_API_URL": self.connect_url,
                    "DISPATCH_API_KEY": self.service.api_key if api_key is None else api_key,
                    "DISPATCH_ENDPOINT_URL": self.endpoint_url,
                }
            ),
            capture_output=True,
            text=True,
            timeout=SDK_CLIENT_TIMEOUT,
        )
        return Sdk08Run(out)

    def dispatch(self, calls: list[dict[str, Any]]) -> tuple[list[str], list[any_pb2.Any]]:
        """Dispatch with 0.8.0's client; returns the ids and the Any inputs the SDK encoded."""
        answer = self.sdk08("dispatch", json.dumps(calls)).json
        ids, inputs = answer["ids"], answer["inputs"]
        assert isinstance(ids, list) and len(ids) == len(calls) and all(isinstance(i, str) and i for i in ids), ids
        return ids, [any_pb2.Any.FromString(base64.b64decode(raw)) for raw in inputs]


@pytest.fixture(scope="session")
def connect_loadgen(reference_endpoint: EndpointProcess, keys: Keys, sdk08_python: Path) -> Iterator[ConnectLoadgen]:
    """``loadgen serve REFERENCE --connect-port 0``, signing with the golden key the endpoint trusts."""
    service = start_loadgen(
        reference_endpoint.url, keys.golden_seed, None, extra=("--connect-port", "0"), name="loadgen-serve-connect"
    )
    try:
        match = service.process.search_stderr(_CONNECT_LINE, READY_TIMEOUT, "Connect ingress line")
        yield ConnectLoadgen(
            service=service, connect_url=match.group(1), endpoint_url=reference_endpoint.url, sdk08_python=sdk08_python
        )
    finally:
        service.close()
        service.process.stop()
