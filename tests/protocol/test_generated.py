"""The committed protobuf code matches proto/, lives under loadgen's own names, and keeps the wire contract."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import any_pb2, descriptor_pool, duration_pb2, timestamp_pb2

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
PB_DIR = ROOT / "loadgen" / "pb"
PROTOC_PYTHON = Path(os.environ.get("PROTOC_VENV", ROOT / ".venv-protoc")) / "bin" / "python"


def test_generated_code_is_fresh() -> None:
    """``generate.py --check`` in the generator's venv (grpcio-tools 1.62.3), set up when missing."""
    if not PROTOC_PYTHON.exists():
        setup = subprocess.run(
            ["bash", str(ROOT / "proto" / "setup_protoc_venv.sh")], capture_output=True, text=True, timeout=600
        )
        assert setup.returncode == 0, f"could not set up .venv-protoc:\n{setup.stdout}\n{setup.stderr}"
    check = subprocess.run(
        [str(PROTOC_PYTHON), str(PB_DIR / "generate.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, f"run `make proto` and commit the result:\n{check.stdout}\n{check.stderr}"


def test_generated_code_never_imports_dispatch() -> None:
    for path in PB_DIR.glob("*_pb2*.py*"):
        assert not re.search(r"^(from|import) dispatch\b", path.read_text(), re.MULTILINE), path.name
    import loadgen.pb.function_pb2  # noqa: F401

    assert "dispatch" not in sys.modules


def test_generated_code_has_no_runtime_version_checks() -> None:
    """No ``ValidateProtobufRuntimeVersion`` / ``GRPC_GENERATED_VERSION``: the README's protobuf and grpcio range."""
    for path in PB_DIR.glob("*_pb2*.py"):
        text = path.read_text()
        assert "runtime_version" not in text and "GRPC_GENERATED_VERSION" not in text, path.name


def test_loadgen_registers_its_own_names_only() -> None:
    """The SDK's file and package names stay free in protobuf's default pool; loadgen's are its own."""
    from loadgen.pb import call_pb2, dispatch_pb2, function_pb2, shard_pb2

    pool = descriptor_pool.Default()
    for name in ("call", "dispatch", "error", "exit", "function", "poll", "status"):
        assert pool.FindFileByName(f"loadgen/pb/{name}.proto").package == "loadgen.dispatch.sdk.v1"
        with pytest.raises(KeyError):
            pool.FindFileByName(f"dispatch/sdk/v1/{name}.proto")
    with pytest.raises(KeyError):
        pool.FindMessageTypeByName("dispatch.sdk.v1.RunRequest")
    assert function_pb2.RunRequest.DESCRIPTOR.full_name == "loadgen.dispatch.sdk.v1.RunRequest"
    assert call_pb2.Call.__module__ == "loadgen.pb.call_pb2"
    assert (
        dispatch_pb2.DESCRIPTOR.services_by_name["DispatchService"].full_name
        == "loadgen.dispatch.sdk.v1.DispatchService"
    )
    assert shard_pb2.DESCRIPTOR.package == "loadgen.v1"


def test_well_known_types_are_the_shared_classes() -> None:
    """Not a private pool: ``Any``/``Timestamp``/``Duration`` fields take ordinary values (and the SDK's)."""
    from loadgen.pb import call_pb2, function_pb2

    request = function_pb2.RunRequest(input=any_pb2.Any(type_url="x"), creation_time=timestamp_pb2.Timestamp(seconds=1))
    assert type(request.input) is any_pb2.Any and type(request.creation_time) is timestamp_pb2.Timestamp
    call = call_pb2.Call()
    call.expiration.CopyFrom(duration_pb2.Duration(seconds=5))
    assert type(call.expiration) is duration_pb2.Duration


def test_grpc_method_paths_are_the_wire_contract() -> None:
    """Only the gRPC paths carry full names on the wire: they are the SDK's, not loadgen's package."""
    paths = set()
    for path in PB_DIR.glob("*_pb2_grpc.py"):
        paths.update(re.findall(r"'(/[A-Za-z0-9_.]+/[A-Za-z]+)'", path.read_text()))
    assert paths == {
        "/dispatch.sdk.v1.DispatchService/Dispatch",
        "/dispatch.sdk.v1.DispatchService/Wait",
        "/dispatch.sdk.v1.FunctionService/Run",
        "/loadgen.v1.Shard/Stats",
        "/loadgen.v1.Calls/Session",
        "/loadgen.v1.Calls/SessionSocket",
    }
    from loadgen.pb import dispatch_pb2_grpc

    class Recorder:
        def __init__(self) -> None:
            self.paths: list[str] = []

        def unary_unary(self, path: str, *args: object, **kwargs: object) -> None:
            self.paths.append(path)

    channel = Recorder()
    dispatch_pb2_grpc.DispatchServiceStub(channel)
    assert channel.paths == ["/dispatch.sdk.v1.DispatchService/Dispatch", "/dispatch.sdk.v1.DispatchService/Wait"]


def test_field_numbers_match_the_protocol() -> None:
    from loadgen.pb import call_pb2, function_pb2, poll_pb2

    def numbers(message: type) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(function_pb2.RunRequest) == {
        "function": 1, "input": 2, "poll_result": 3, "dispatch_id": 4, "parent_dispatch_id": 5,
        "root_dispatch_id": 6, "creation_time": 7, "expiration_time": 8,
    }  # fmt: skip
    assert numbers(poll_pb2.Poll) == {
        "coroutine_state": 1, "calls": 2, "max_wait": 3, "max_results": 4, "min_results": 5,
        "typed_coroutine_state": 6,
    }  # fmt: skip
    assert numbers(poll_pb2.PollResult) == {
        "coroutine_state": 1, "results": 2, "error": 3, "typed_coroutine_state": 4
    }  # fmt: skip
    assert numbers(call_pb2.Call) == {
        "correlation_id": 1, "endpoint": 2, "function": 3, "input": 4, "expiration": 5, "version": 6
    }  # fmt: skip
