"""The committed protobuf code matches proto/ and does not claim the SDK's import name."""

from __future__ import annotations

import re
import sys

from loadgen.pb.generate import PB_DIR, generate, stale_files


def test_generated_code_is_fresh() -> None:
    assert stale_files(generate()) == [], "run `make proto` and commit the result"


def test_generated_code_never_imports_dispatch() -> None:
    for path in PB_DIR.glob("*_pb2*.py*"):
        assert not re.search(r"^(from|import) dispatch\b", path.read_text(), re.MULTILINE), path.name
    import loadgen.pb.function_pb2  # noqa: F401

    assert "dispatch" not in sys.modules


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
