"""Input and output encoding of the built-in reference functions.

Every ``RunRequest.input``, ``CallResult.output`` and ``Call.input`` handled
by the reference endpoint is a ``google.protobuf.Any``. :func:`encode` picks
the wrapped message from the Python value:

=====================================  ==============================================
Python value                           wrapped message (type URL suffix)
=====================================  ==============================================
``dict`` / any ``Mapping[str, ...]``   ``google.protobuf.Struct``
``bytes`` / ``bytearray``              ``google.protobuf.BytesValue``
anything else JSON-like                ``google.protobuf.Value`` (null, bool, number,
(``None``, bool, int, float, str,      string or list)
list, tuple)
=====================================  ==============================================

:func:`decode` reverses it and also accepts ``StringValue``, ``Int64Value``,
``DoubleValue``, ``BoolValue`` and ``ListValue``. An empty ``Any`` (no type
URL, no bytes) decodes to ``None``. Any other type URL raises
:class:`ValueError` naming that URL. ``bytes`` are only allowed at the top
level (a ``Struct`` cannot hold them): nested, they raise :class:`TypeError`.

JSON semantics apply, as for ``Struct`` itself: numbers travel as IEEE
doubles, so :func:`decode` returns ``float`` for every number inside a
``Struct``/``Value`` (``3`` comes back as ``3.0``, which still compares equal),
and integers beyond 2**53 lose precision. Mapping keys must be strings.

Both directions are written for load generators: no reflection, no
``json_format``, type URLs compared as plain strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from google.protobuf import any_pb2, struct_pb2, wrappers_pb2

__all__ = [
    "BYTES_URL",
    "STRUCT_URL",
    "VALUE_URL",
    "Decoded",
    "Encodable",
    "Json",
    "decode",
    "decode_json",
    "encode",
    "from_value",
    "to_value",
]

_PREFIX = "type.googleapis.com/google.protobuf."
STRUCT_URL = _PREFIX + "Struct"
VALUE_URL = _PREFIX + "Value"
LIST_URL = _PREFIX + "ListValue"
BYTES_URL = _PREFIX + "BytesValue"
STRING_URL = _PREFIX + "StringValue"
INT64_URL = _PREFIX + "Int64Value"
DOUBLE_URL = _PREFIX + "DoubleValue"
BOOL_URL = _PREFIX + "BoolValue"

Json: TypeAlias = "dict[str, Json] | list[Json] | str | float | int | bool | None"
"""What :func:`decode` returns for ``Struct``/``Value``/``ListValue`` and scalar wrappers."""

Encodable: TypeAlias = "Mapping[str, Encodable] | Sequence[Encodable] | str | float | int | bool | None"
"""What :func:`encode` accepts besides ``bytes`` (tuples and other sequences become lists)."""

Decoded: TypeAlias = "Json | bytes"
"""What :func:`decode` returns: JSON-like data, or ``bytes`` for a ``BytesValue``."""


def to_value(value: Encodable, out: struct_pb2.Value | None = None) -> struct_pb2.Value:
    """Fill *out* (or a new ``Value``) from a JSON-like Python value."""
    if out is None:
        out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bool):  # before int: bool is an int subclass
        out.bool_value = value
    elif isinstance(value, int | float):
        out.number_value = value
    elif isinstance(value, Mapping):
        _fill_struct(out.struct_value, value)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        _fill_list(out.list_value, value)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a google.protobuf.Value")
    return out


def _fill_struct(out: struct_pb2.Struct, mapping: Mapping[str, Encodable]) -> None:
    fields = out.fields
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"Struct keys must be str, got {type(key).__name__}")
        to_value(item, fields[key])
    if not mapping:
        out.SetInParent()


def _fill_list(out: struct_pb2.ListValue, items: Sequence[Encodable]) -> None:
    values = out.values
    for item in items:
        to_value(item, values.add())
    if not items:
        out.SetInParent()


def from_value(value: struct_pb2.Value) -> Json:
    """Convert a ``google.protobuf.Value`` into plain Python (numbers as ``float``)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "struct_value":
        return _from_struct(value.struct_value)
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None  # null_value, or no kind set


def _from_struct(struct: struct_pb2.Struct) -> dict[str, Json]:
    return {key: from_value(item) for key, item in struct.fields.items()}


def encode(value: Encodable | bytes | bytearray) -> any_pb2.Any:
    """Wrap *value* in an ``Any``: ``Struct`` for mappings, ``BytesValue`` for bytes, else ``Value``."""
    if isinstance(value, Mapping):
        struct = struct_pb2.Struct()
        _fill_struct(struct, value)
        return any_pb2.Any(type_url=STRUCT_URL, value=struct.SerializeToString())
    if isinstance(value, bytes | bytearray):
        return any_pb2.Any(type_url=BYTES_URL, value=wrappers_pb2.BytesValue(value=bytes(value)).SerializeToString())
    return any_pb2.Any(type_url=VALUE_URL, value=to_value(value).SerializeToString())


def decode(message: any_pb2.Any) -> Decoded:
    """Unwrap an ``Any`` produced by :func:`encode` (or holding a scalar wrapper).

    Raises :class:`ValueError` for an unsupported type URL or undecodable bytes.
    """
    url = message.type_url
    try:
        if url == STRUCT_URL:
            struct = struct_pb2.Struct()
            struct.ParseFromString(message.value)
            return _from_struct(struct)
        if url == VALUE_URL:
            value = struct_pb2.Value()
            value.ParseFromString(message.value)
            return from_value(value)
        if url == BYTES_URL:
            return wrappers_pb2.BytesValue.FromString(message.value).value
        if url == STRING_URL:
            return wrappers_pb2.StringValue.FromString(message.value).value
        if url == INT64_URL:
            return wrappers_pb2.Int64Value.FromString(message.value).value
        if url == LIST_URL:
            return [from_value(item) for item in struct_pb2.ListValue.FromString(message.value).values]
        if url == DOUBLE_URL:
            return wrappers_pb2.DoubleValue.FromString(message.value).value
        if url == BOOL_URL:
            return wrappers_pb2.BoolValue.FromString(message.value).value
    except Exception as exc:  # DecodeError, or RecursionError on absurd nesting
        raise ValueError(f"malformed {url.rpartition('/')[2]} in Any: {exc}") from None
    if not url and not message.value:
        return None
    raise ValueError(
        f"unsupported Any type URL {url!r}: expected a google.protobuf Struct, Value, ListValue, "
        "BytesValue, StringValue, Int64Value, DoubleValue or BoolValue"
    )


def decode_json(message: any_pb2.Any) -> Json:
    """Like :func:`decode`, but reject ``BytesValue`` (for params that must be JSON-like)."""
    result = decode(message)
    if isinstance(result, bytes):
        raise ValueError("expected JSON-like data, got google.protobuf.BytesValue")
    return result
