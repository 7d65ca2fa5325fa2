"""``sdk = "dispatch-py"``: endpoints on the Python SDK, 0.2 to 0.7.1 and 0.8.0.

**Inputs.** A Python function's arguments travel as ``dispatch.proto.Arguments(args, kwargs)``
(a plain dataclass with two fields), pickled, in a ``google.protobuf.BytesValue``. Every
release reads that; 0.8.0 writes a ``Pickled`` message instead but still reads it. The pickle
is written here without importing the SDK:

    PROTO 3 · GLOBAL 'dispatch.proto Arguments' · EMPTY_TUPLE · NEWOBJ
    · <pickle of {"args": tuple(args), "kwargs": dict(kwargs)}> · BUILD · STOP

which is what ``pickle.dumps(Arguments(...))`` means (a new ``Arguments`` whose ``__dict__``
is set to that state), with the state pickled by :func:`pickle.dumps` itself (plain data only:
str, int, float, bool, None, bytes, lists, tuples and dicts; protocol 3 has no frames, so the
pieces join as they are).

**Outputs.** 0.2-0.7.1 write ``BytesValue(pickle(value))``; 0.8.0 writes well-known types
(``Empty``, ``BoolValue``, ``Int64Value``, ``DoubleValue``, ``StringValue``, ``BytesValue``,
``Timestamp``, ``Duration``, ``google.protobuf.Value`` for lists and dicts, with every number a
double) or, for anything else, ``buf.build/stealthrocket/dispatch-proto/dispatch.sdk.python.v1.Pickled``
(one field, ``bytes pickled_value = 1``: the wire form of a ``BytesValue``, read as one). Pickles
are read with :func:`~loadgen.protocol.codecs.plainpickle.loads_plain`, never :func:`pickle.loads`; like
0.8.0, a ``BytesValue`` that is not a pickle is its bytes. A type this does not know decodes as
``{"type_url": ..., "base64": ...}``.
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any, Final

from google.protobuf import any_pb2, wrappers_pb2

from loadgen.protocol.codecs.base import CallInput, Codec, CodecError
from loadgen.protocol.codecs.plainpickle import PickleRefused, loads_plain
from loadgen.protocol.codecs.wellknown import NOT_WELL_KNOWN, decode_well_known, type_name

__all__ = ["ARGUMENTS_GLOBAL", "BYTES_URL", "PICKLED_TYPE", "DispatchPyCodec", "arguments_pickle"]

BYTES_URL: Final = "type.googleapis.com/google.protobuf.BytesValue"
PICKLED_TYPE: Final = "dispatch.sdk.python.v1.Pickled"
ARGUMENTS_GLOBAL: Final = ("dispatch.proto", "Arguments")
_HEAD: Final = b"\x80\x03c" + ARGUMENTS_GLOBAL[0].encode() + b"\n" + ARGUMENTS_GLOBAL[1].encode() + b"\n)\x81"
_TAIL: Final = b"b."
_PLAIN: Final = (str, int, float, bool, bytes, type(None))
_MAX_DEPTH: Final = 64


def _check(value: Any, key: str, depth: int = 0) -> None:
    """Plain data only, so that the pickle names no global."""
    if depth > _MAX_DEPTH:
        raise CodecError(key, f"nested more than {_MAX_DEPTH} levels deep")
    kind = type(value)
    if kind in _PLAIN:
        if kind is float and not math.isfinite(value):
            raise CodecError(key, f"{value!r} is not a finite number")
        return
    if kind in (list, tuple):
        for item in value:
            _check(item, key, depth + 1)
        return
    if kind is dict:
        for name, item in value.items():
            if type(name) not in (str, int):
                raise CodecError(key, f"dict keys must be strings or integers, got {type(name).__name__}")
            _check(item, key, depth + 1)
        return
    raise CodecError(
        key, f"a {kind.__name__} is not plain data (strings, numbers, booleans, None, bytes, lists, dicts)"
    )


def arguments_pickle(args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> bytes:
    """``pickle.dumps(dispatch.proto.Arguments(tuple(args), dict(kwargs)))``, without the SDK.

    :class:`CodecError` for a value that is not plain data or a keyword that is not a string.
    """
    positional = tuple(args)
    keywords = dict(kwargs or {})
    for name in keywords:
        if type(name) is not str or not name.isidentifier():
            raise CodecError("kwargs", f"keyword {name!r} is not a Python identifier")
    _check(positional, "args")
    _check(keywords, "kwargs")
    state = pickle.dumps({"args": positional, "kwargs": keywords}, protocol=3)
    return _HEAD + state[2:-1] + _TAIL  # without the state's own PROTO header and STOP


class DispatchPyCodec(Codec):
    """See the module's documentation."""

    name = "dispatch-py"
    takes_arguments = True

    def encode(self, call: CallInput) -> any_pb2.Any:
        if call.has_value:
            raise CodecError(
                "input",
                'dispatch-py functions take arguments: write args = [...] and kwargs = { ... } instead of input',
            )
        data = arguments_pickle(call.args, call.kwargs)
        return any_pb2.Any(type_url=BYTES_URL, value=wrappers_pb2.BytesValue(value=data).SerializeToString())

    def decode(self, output: any_pb2.Any | None) -> Any:
        if output is None or (not output.type_url and not output.value):
            return None
        name = type_name(output)
        if name == PICKLED_TYPE:
            try:
                data = wrappers_pb2.BytesValue.FromString(output.value).value  # same wire form: field 1, bytes
            except Exception as exc:
                raise ValueError(f"malformed Pickled: {exc}") from None
            return loads_plain(data)
        if name == "google.protobuf.BytesValue":
            data = wrappers_pb2.BytesValue.FromString(output.value).value
            try:
                return loads_plain(data)
            except PickleRefused:
                return data  # 0.8.0: bytes that are not a pickle are the value itself
        value = decode_well_known(output)
        if value is NOT_WELL_KNOWN:
            return {"type_url": output.type_url, "base64": base64.b64encode(output.value).decode()}
        return value


CODEC: Final = DispatchPyCodec()
