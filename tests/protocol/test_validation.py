"""Batch validation and status names: the per-call shortcuts give the answers of the full checks."""

from __future__ import annotations

import pytest

from loadgen.pb import call_pb2
from loadgen.pb import status_pb2 as status
from loadgen.protocol import validation
from loadgen.protocol.status import status_name
from loadgen.protocol.validation import InvalidCall, validate_calls


def _calls(*functions: str) -> list[call_pb2.Call]:
    return [call_pb2.Call(function=name) for name in functions]


def test_a_bad_name_is_refused_after_good_ones_were_seen() -> None:
    validate_calls(_calls("echo", "echo", "sleep"))
    with pytest.raises(InvalidCall, match=r"calls\[1\]\.function 'bad name!'"):
        validate_calls(_calls("echo", "bad name!"))
    with pytest.raises(InvalidCall, match=r"calls\[0\]\.function 'bad name!'"):
        validate_calls(_calls("bad name!"))  # a refused name is never remembered as good


def test_names_seen_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_known_names", set())
    for number in range(validation._MAX_KNOWN_NAMES + 100):
        validate_calls(_calls(f"f{number}"))
    assert len(validation._known_names) == validation._MAX_KNOWN_NAMES
    validate_calls(_calls("f999999"))  # past the bound, names are still checked (and accepted)
    with pytest.raises(InvalidCall):
        validate_calls(_calls("no spaces allowed"))


def test_status_names_come_from_the_enum() -> None:
    for name, number in status.Status.items():
        assert status_name(number) == name.removeprefix("STATUS_")
    assert status_name(status.STATUS_TEMPORARY_ERROR) == "TEMPORARY_ERROR"
    assert status_name(12345) == "12345"
    assert status_name(-1) == "-1"
