"""SDK codecs: inputs as each SDK reads them, outputs read back safely, results compared as ``expect`` means.

The real SDKs' side (their unpickling of our inputs, their encoding of outputs) is in
``tests/interop/test_codecs_sdk.py``; here the codecs alone, and the restricted unpickler
against pickles that would run code.
"""

from __future__ import annotations

import base64
import copyreg
import datetime as dt
import math
import os
import pickle
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2, duration_pb2, empty_pb2, struct_pb2, timestamp_pb2, wrappers_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.protocol import values
from loadgen.protocol.codecs import (
    CODEC_NAMES,
    CallInput,
    CodecError,
    Opaque,
    PickleRefused,
    display,
    get_codec,
    loads_plain,
    matches,
)
from loadgen.protocol.codecs.dispatch_py import BYTES_URL, arguments_pickle
from loadgen.protocol.codecs.wellknown import NOT_WELL_KNOWN, decode_well_known, encode_one, pack

PICKLED_URL = "buf.build/stealthrocket/dispatch-proto/dispatch.sdk.python.v1.Pickled"


def bytes_any(data: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=BYTES_URL, value=wrappers_pb2.BytesValue(value=data).SerializeToString())


def pickled_any(data: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=PICKLED_URL, value=wrappers_pb2.BytesValue(value=data).SerializeToString())


# ---------------------------------------------------------------------------------------------
# The restricted unpickler: plain data in, plain data out, across every protocol
# ---------------------------------------------------------------------------------------------

hashable = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.binary(max_size=8)),
    lambda inner: st.tuples(inner, inner),
    max_leaves=4,
)
plain = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False),
        st.complex_numbers(allow_nan=False),
        st.text(max_size=10),
        st.binary(max_size=10),
        st.binary(max_size=10).map(bytearray),
        st.sets(hashable, max_size=3),
        st.frozensets(hashable, max_size=3),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(plain, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_plain_data_reads_back_the_same_in_every_protocol(value: Any, protocol: int) -> None:
    got = loads_plain(pickle.dumps(value, protocol=protocol))
    assert got == value and type(got) is type(value)


# ---------------------------------------------------------------------------------------------
# ... and pickles that would run code run nothing
# ---------------------------------------------------------------------------------------------


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


class _Popens:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __reduce__(self) -> tuple[Any, tuple[list[str]]]:
        return subprocess.Popen, (self.argv,)


class _Evals:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return eval, (self.code,)


SIDE_EFFECTS: list[str] = []


class Sneaky:
    """A class whose unpickling would call our code: ``__setstate__`` and ``__init__`` via ``__reduce__``."""

    def __init__(self, note: str = "") -> None:
        SIDE_EFFECTS.append(f"init {note}")
        self.note = note

    def __setstate__(self, state: Any) -> None:
        SIDE_EFFECTS.append(f"setstate {state}")
        self.__dict__.update(state)


class SneakyReduce:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return Sneaky, ("via reduce",)


def _pickle_loads_in_a_child(data: bytes, cwd: Path) -> None:
    """The positive control: what ``pickle.loads`` does with *data* (in a child process, in *cwd*)."""
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, cwd=cwd, capture_output=True, timeout=30, check=False)


@pytest.mark.system
def test_a_pickle_that_runs_a_shell_command_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = pickle.dumps(_RunsCommand(f"touch {marker}"))
    got = loads_plain(data)
    assert isinstance(got, Opaque) and got.name in ("posix.system", "os.system")
    assert got.args == (f"touch {marker}",)
    assert not marker.exists()
    _pickle_loads_in_a_child(data, tmp_path)  # the same bytes with pickle.loads do run it
    assert marker.exists()


@pytest.mark.system
def test_subprocess_and_eval_are_named_not_called(tmp_path: Path) -> None:
    marker = tmp_path / "popen"
    popen = loads_plain(pickle.dumps(_Popens(["touch", str(marker)])))
    assert isinstance(popen, Opaque) and popen.name == "subprocess.Popen" and popen.args == (["touch", str(marker)],)
    evil = loads_plain(pickle.dumps(_Evals(f"__import__('os').system('touch {marker}')"), protocol=0))
    assert isinstance(evil, Opaque) and evil.name in ("builtins.eval", "__builtin__.eval")
    nested = loads_plain(pickle.dumps({"ok": [1, 2], "boom": _RunsCommand(f"touch {marker}")}))
    assert nested["ok"] == [1, 2] and isinstance(nested["boom"], Opaque)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_class_is_never_instantiated_nor_its_setstate_called(protocol: int) -> None:
    SIDE_EFFECTS.clear()
    instance = Sneaky("made here")
    instance.extra = 42  # type: ignore[attr-defined]
    data = pickle.dumps(instance, protocol=protocol)
    reduced = pickle.dumps(SneakyReduce(), protocol=protocol)
    SIDE_EFFECTS.clear()
    got = loads_plain(data)
    via_reduce = loads_plain(reduced)
    assert SIDE_EFFECTS == []  # neither __init__ nor __setstate__ ran
    assert isinstance(got, Opaque) and isinstance(via_reduce, Opaque)
    assert "Sneaky" in repr(got) or "_reconstructor" in repr(got)
    assert via_reduce.name == f"{__name__}.Sneaky" and via_reduce.args == ("via reduce",)
    assert pickle.loads(reduced).note == "via reduce" and SIDE_EFFECTS == ["init via reduce"]  # the control


def test_extension_codes_go_through_the_same_door(tmp_path: Path) -> None:
    marker = tmp_path / "ext"
    copyreg.add_extension("posix", "system", 240)
    try:
        command = f"touch {marker}".encode()
        data = b"\x80\x02\x82\xf0X" + len(command).to_bytes(4, "little") + command + b"\x85R."
        got = loads_plain(data)
    finally:
        copyreg.remove_extension("posix", "system", 240)
    assert isinstance(got, Opaque) and got.name == "posix.system" and not marker.exists()
    with pytest.raises(PickleRefused):  # an extension code nobody registered
        loads_plain(data)


def test_persistent_ids_garbage_and_huge_allocations_are_refused_or_kept_opaque() -> None:
    with pytest.raises(PickleRefused, match="persistent"):
        loads_plain(b"\x80\x02X\x01\x00\x00\x00xQ.")
    for garbage in (b"", b"not a pickle", b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff\x7f"):
        with pytest.raises(PickleRefused):
            loads_plain(garbage)
    bomb = b"\x80\x02cbuiltins\nbytearray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R."  # bytearray(10**12)
    got = loads_plain(bomb)
    assert isinstance(got, Opaque) and got.name == "builtins.bytearray"
    zlib_bomb = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
    assert isinstance(loads_plain(zlib_bomb), Opaque)  # only latin-1 makes bytes
    deep = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."  # lists nested 100,000 deep
    assert isinstance(loads_plain(deep), list)  # the C unpickler keeps its own stack


def _deep_list(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


# ---------------------------------------------------------------------------------------------
# dispatch-py
# ---------------------------------------------------------------------------------------------


@dataclass
class _Arguments:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def test_arguments_pickle_is_a_dispatch_proto_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpickled where ``dispatch.proto.Arguments`` is a dataclass (as in the SDK), it is one, with our values."""
    package, module = types.ModuleType("dispatch"), types.ModuleType("dispatch.proto")
    module.Arguments = _Arguments  # type: ignore[attr-defined]
    package.proto = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dispatch", package)
    monkeypatch.setitem(sys.modules, "dispatch.proto", module)
    args = ["bob", 1, 2.5, None, True, b"\x00raw", [1, (2, 3)], {"k": [None]}, 2**70]
    kwargs = {"punct": "!", "n": -3}
    got = pickle.loads(arguments_pickle(args, kwargs))
    assert isinstance(got, _Arguments) and got.args == tuple(args) and got.kwargs == kwargs
    plain_view = loads_plain(arguments_pickle(args, kwargs))  # and what loadgen itself would see
    assert isinstance(plain_view, Opaque) and plain_view.name == "dispatch.proto.Arguments"
    assert plain_view.state == {"args": tuple(args), "kwargs": kwargs}


def test_dispatch_py_encodes_arguments_and_refuses_what_it_cannot_send() -> None:
    codec = get_codec("dispatch-py")
    message = codec.encode(CallInput(args=("bob",), kwargs={"punct": "!"}))
    assert message.type_url == "type.googleapis.com/google.protobuf.BytesValue"
    data = wrappers_pb2.BytesValue.FromString(message.value).value
    assert data == arguments_pickle(["bob"], {"punct": "!"})
    for call, key in (
        (CallInput("x"), "input"),
        (CallInput(args=(object(),)), "args"),
        (CallInput(args=(math.nan,)), "args"),
        (CallInput(kwargs={"not an identifier": 1}), "kwargs"),
        (CallInput(kwargs={"k": {1.5: 2}}), "kwargs"),
    ):
        with pytest.raises(CodecError) as caught:
            codec.encode(call)
        assert caught.value.key == key


def test_dispatch_py_decodes_both_generations_of_outputs() -> None:
    codec = get_codec("dispatch-py")
    assert codec.decode(bytes_any(pickle.dumps("hello bob!"))) == "hello bob!"  # 0.2-0.7.1
    assert codec.decode(bytes_any(pickle.dumps((1, [2, {"a": b"x"}])))) == (1, [2, {"a": b"x"}])
    assert codec.decode(bytes_any(b"\x00\x01 not a pickle")) == b"\x00\x01 not a pickle"  # 0.8.0's bytes
    assert codec.decode(pack(wrappers_pb2.StringValue(value="hello bob!"))) == "hello bob!"  # 0.8.0
    assert codec.decode(pack(wrappers_pb2.Int64Value(value=3))) == 3
    assert codec.decode(pack(values.to_value([0, 1, 4]))) == [0.0, 1.0, 4.0]
    assert codec.decode(pack(empty_pb2.Empty())) is None
    assert codec.decode(None) is None and codec.decode(any_pb2.Any()) is None
    assert codec.decode(pickled_any(pickle.dumps((1, 2)))) == (1, 2)
    assert codec.decode(pickled_any(pickle.dumps(2**70))) == 2**70
    opaque = codec.decode(pickled_any(pickle.dumps(_RunsCommand("true"))))
    assert isinstance(opaque, Opaque)
    unknown = codec.decode(any_pb2.Any(type_url="type.googleapis.com/acme.Thing", value=b"\x08\x01"))
    assert unknown == {"type_url": "type.googleapis.com/acme.Thing", "base64": base64.b64encode(b"\x08\x01").decode()}
    with pytest.raises(PickleRefused):
        codec.decode(pickled_any(b"garbage"))


# ---------------------------------------------------------------------------------------------
# Well-known types, dispatch-go, raw, reference
# ---------------------------------------------------------------------------------------------


def test_well_known_types_decode_to_plain_python() -> None:
    when = dt.datetime(2024, 5, 1, 12, 30, 15, 250_000, tzinfo=dt.UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    span = duration_pb2.Duration()
    span.FromTimedelta(dt.timedelta(seconds=90, microseconds=5))
    cases: list[tuple[Any, Any]] = [
        (empty_pb2.Empty(), None),
        (wrappers_pb2.BoolValue(value=True), True),
        (wrappers_pb2.Int32Value(value=-7), -7),
        (wrappers_pb2.Int64Value(value=2**62), 2**62),
        (wrappers_pb2.UInt32Value(value=7), 7),
        (wrappers_pb2.UInt64Value(value=2**64 - 1), 2**64 - 1),
        (wrappers_pb2.FloatValue(value=0.5), 0.5),
        (wrappers_pb2.DoubleValue(value=0.1), 0.1),
        (wrappers_pb2.StringValue(value="é"), "é"),
        (wrappers_pb2.BytesValue(value=b"\xff"), b"\xff"),
        (stamp, when),
        (span, dt.timedelta(seconds=90, microseconds=5)),
        (values.to_value({"a": [1, "x", None, True]}), {"a": [1.0, "x", None, True]}),
        (struct_pb2.Struct(fields={"k": struct_pb2.Value(number_value=2)}), {"k": 2.0}),
        (struct_pb2.ListValue(values=[struct_pb2.Value(string_value="s")]), ["s"]),
    ]
    for message, expected in cases:
        assert decode_well_known(pack(message)) == expected, message
    assert decode_well_known(any_pb2.Any(type_url="type.googleapis.com/acme.T")) is NOT_WELL_KNOWN
    with pytest.raises(ValueError, match=r"malformed google\.protobuf\.Int64Value"):
        decode_well_known(any_pb2.Any(type_url="type.googleapis.com/google.protobuf.Int64Value", value=b"\xff"))


def test_dispatch_go_encodes_one_value_as_the_go_sdk_does() -> None:
    codec = get_codec("dispatch-go")
    expected_types = {
        None: "Empty",
        True: "BoolValue",
        42: "Int64Value",
        2**63: "UInt64Value",
        1.5: "DoubleValue",
        "hi": "StringValue",
        b"raw": "BytesValue",
    }
    for value, name in expected_types.items():
        message = codec.encode(CallInput(value))
        assert message.type_url == f"type.googleapis.com/google.protobuf.{name}"
        assert codec.decode(message) == value
    listed = codec.encode(CallInput([1, {"a": "b"}]))
    assert listed.type_url.endswith("google.protobuf.Value") and codec.decode(listed) == [1.0, {"a": "b"}]
    assert codec.encode(CallInput()).type_url.endswith("google.protobuf.Empty")
    for bad, key in ((CallInput(2**64), "input"), (CallInput(object()), "input"), (CallInput(args=(1,)), "args")):
        with pytest.raises(CodecError) as caught:
            codec.encode(bad)
        assert caught.value.key == key
    assert encode_one(dt.timedelta(seconds=3)).type_url.endswith("Duration")


def test_raw_sends_the_bytes_it_is_given_and_reads_outputs_the_same_way() -> None:
    codec = get_codec("raw")
    payload = base64.b64encode(b"\x08\x96\x01").decode()
    message = codec.encode(CallInput({"type_url": "buf.build/acme/x.Y", "base64": payload}))
    assert message.type_url == "buf.build/acme/x.Y" and message.value == b"\x08\x96\x01"
    assert codec.decode(message) == {"type_url": "buf.build/acme/x.Y", "base64": payload}
    assert codec.encode(CallInput()) == any_pb2.Any() and codec.decode(None) is None
    for bad in ({"base64": payload}, {"type_url": "x", "base64": "***"}, {"type_url": "x", "extra": 1}, "x"):
        with pytest.raises(CodecError):
            codec.encode(CallInput(bad))


def test_reference_codec_is_loadgen_values() -> None:
    codec = get_codec("reference")
    message = codec.encode(CallInput({"message": "hello"}))
    assert message == values.encode({"message": "hello"}) and codec.decode(message) == {"message": "hello"}
    assert codec.encode(CallInput()) == values.encode({})
    with pytest.raises(CodecError) as caught:
        codec.encode(CallInput(kwargs={"a": 1}))
    assert caught.value.key == "kwargs" and "dispatch-py" in caught.value.problem


def test_the_registry_knows_every_codec_by_name() -> None:
    assert CODEC_NAMES == ("reference", "dispatch-py", "dispatch-go", "raw")
    for name in CODEC_NAMES:
        assert get_codec(name).name == name
    with pytest.raises(ValueError, match="dispatch-py"):
        get_codec("dispatch-rb")


# ---------------------------------------------------------------------------------------------
# Comparing results
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "got", "same"),
    [
        ("hello", "hello", True),
        (3, 3.0, True),  # 0.8.0 and Go send numbers inside lists and maps as doubles
        ([0, 1, 4], [0.0, 1.0, 4.0], True),
        ([1, 2], (1, 2), True),  # a pickled tuple is an array
        ({"a": [1, {"b": 2}]}, {"a": (1.0, {"b": 2})}, True),
        (True, 1, False),
        (1, True, False),
        ("1", 1, False),
        (None, 0, False),
        (0, None, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1], [1, 1], False),
        (b"x", bytearray(b"x"), True),
        (1.5, 1.25, False),
        (0, Opaque("posix.system"), False),
    ],
)
def test_matches_is_strict_except_for_tuples_and_numbers(expected: Any, got: Any, same: bool) -> None:
    assert matches(expected, got) is same


def test_display_cuts_long_values_and_survives_deep_ones() -> None:
    assert display((1, "x")) == "[1, 'x']"
    assert len(display("x" * 1000)) == 200
    assert display(_deep_list(100_000))  # no RecursionError
    assert not matches(_deep_list(1000), _deep_list(1000))  # deeper than MAX_DEPTH never matches
