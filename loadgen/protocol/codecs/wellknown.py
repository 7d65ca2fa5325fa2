"""Protobuf well-known types as plain Python, both ways (what dispatch-py 0.8 and dispatch-go use).

:func:`decode_well_known` reads ``Any`` values whose type (the name after the type URL's
last ``/``) is one of

==================================================  ==========================================
type                                                Python
==================================================  ==========================================
``google.protobuf.Empty``                           ``None``
``BoolValue``, ``StringValue``, ``BytesValue``      ``bool``, ``str``, ``bytes``
``Int32Value``, ``Int64Value``, ``UInt32Value``,    ``int``
``UInt64Value``
``FloatValue``, ``DoubleValue``                     ``float``
``Timestamp``                                       ``datetime`` (UTC)
``Duration``                                        ``timedelta``
``Value``, ``Struct``, ``ListValue``                JSON-like data (every number a ``float``)
==================================================  ==========================================

and returns :data:`NOT_WELL_KNOWN` for any other type. :func:`encode_one` writes one value the
way dispatch-go's ``dispatchproto.Marshal`` does (every int an ``Int64Value``, lists and maps a
``Value``). Type URLs are compared as strings: no descriptor pool, no reflection.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from typing import Any, Final

from google.protobuf import any_pb2, duration_pb2, empty_pb2, struct_pb2, timestamp_pb2, wrappers_pb2

from loadgen.protocol import values
from loadgen.protocol.codecs.base import CodecError

__all__ = ["NOT_WELL_KNOWN", "URL_PREFIX", "decode_well_known", "encode_one", "pack", "type_name"]

URL_PREFIX: Final = "type.googleapis.com/"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1


class _NotWellKnown:
    def __repr__(self) -> str:
        return "NOT_WELL_KNOWN"


NOT_WELL_KNOWN: Final = _NotWellKnown()


def type_name(message: any_pb2.Any) -> str:
    """The message type an ``Any`` holds: its type URL after the last ``/``."""
    return message.type_url.rpartition("/")[2]


def _wrapped(cls: Any) -> Callable[[bytes], Any]:
    def read(data: bytes) -> Any:
        return cls.FromString(data).value

    return read


def _timestamp(data: bytes) -> _dt.datetime:
    stamp = timestamp_pb2.Timestamp.FromString(data)
    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    return epoch + _dt.timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def _duration(data: bytes) -> _dt.timedelta:
    span = duration_pb2.Duration.FromString(data)
    return _dt.timedelta(seconds=span.seconds, microseconds=span.nanos // 1000)


def _value(data: bytes) -> Any:
    return values.from_value(struct_pb2.Value.FromString(data))


def _struct(data: bytes) -> Any:
    return {key: values.from_value(item) for key, item in struct_pb2.Struct.FromString(data).fields.items()}


def _list(data: bytes) -> Any:
    return [values.from_value(item) for item in struct_pb2.ListValue.FromString(data).values]


_READERS: Final[dict[str, Callable[[bytes], Any]]] = {
    "google.protobuf.Empty": lambda data: None,
    "google.protobuf.BoolValue": _wrapped(wrappers_pb2.BoolValue),
    "google.protobuf.Int32Value": _wrapped(wrappers_pb2.Int32Value),
    "google.protobuf.Int64Value": _wrapped(wrappers_pb2.Int64Value),
    "google.protobuf.UInt32Value": _wrapped(wrappers_pb2.UInt32Value),
    "google.protobuf.UInt64Value": _wrapped(wrappers_pb2.UInt64Value),
    "google.protobuf.FloatValue": _wrapped(wrappers_pb2.FloatValue),
    "google.protobuf.DoubleValue": _wrapped(wrappers_pb2.DoubleValue),
    "google.protobuf.StringValue": _wrapped(wrappers_pb2.StringValue),
    "google.protobuf.BytesValue": _wrapped(wrappers_pb2.BytesValue),
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.Duration": _duration,
    "google.protobuf.Value": _value,
    "google.protobuf.Struct": _struct,
    "google.protobuf.ListValue": _list,
}


def decode_well_known(message: any_pb2.Any) -> Any:
    """The plain value of a well-known type (see the module table), else :data:`NOT_WELL_KNOWN`.

    :class:`ValueError` if the bytes do not parse as the type the URL names.
    """
    name = type_name(message)
    reader = _READERS.get(name)
    if reader is None:
        return NOT_WELL_KNOWN
    try:
        return reader(message.value)
    except Exception as exc:  # DecodeError, or an out-of-range Timestamp
        raise ValueError(f"malformed {name}: {exc}") from None


def pack(message: Any) -> any_pb2.Any:
    """``Any`` of a ``google.protobuf`` message, with the ``type.googleapis.com/`` prefix."""
    return any_pb2.Any(type_url=URL_PREFIX + message.DESCRIPTOR.full_name, value=message.SerializeToString())


def encode_one(value: Any, key: str = "input") -> any_pb2.Any:
    """One value as dispatch-go marshals it: None → Empty, bool, int → Int64Value (UInt64Value
    above int64), float → DoubleValue, str, bytes, datetime → Timestamp, timedelta → Duration,
    lists and mappings → ``google.protobuf.Value``. :class:`CodecError` (naming *key*) otherwise."""
    if value is None:
        return pack(empty_pb2.Empty())
    if isinstance(value, bool):
        return pack(wrappers_pb2.BoolValue(value=value))
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return pack(wrappers_pb2.Int64Value(value=value))
        if 0 <= value <= UINT64_MAX:
            return pack(wrappers_pb2.UInt64Value(value=value))
        raise CodecError(key, f"an integer beyond 64 bits ({value}) has no protobuf encoding")
    if isinstance(value, float):
        return pack(wrappers_pb2.DoubleValue(value=value))
    if isinstance(value, str):
        return pack(wrappers_pb2.StringValue(value=value))
    if isinstance(value, bytes | bytearray):
        return pack(wrappers_pb2.BytesValue(value=bytes(value)))
    if isinstance(value, _dt.datetime):
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC))
        return pack(stamp)
    if isinstance(value, _dt.timedelta):
        span = duration_pb2.Duration()
        span.FromTimedelta(value)
        return pack(span)
    if isinstance(value, list | tuple | Mapping):
        try:
            return pack(values.to_value(value))
        except TypeError as exc:
            raise CodecError(
                key, f"{exc} (lists and tables hold strings, numbers, booleans, lists and tables)"
            ) from None
    raise CodecError(key, f"a {type(value).__name__} has no encoding here")
