"""``sdk = "raw"``: any other SDK. The input is written as it goes on the wire, an ``Any``
given by its type URL and its value's bytes in base64, ``{ type_url = "...", base64 = "..." }``;
an output decodes to the same form (compare it with ``expect = { type_url = ..., base64 = ... }``).
No output decodes to ``None``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import any_pb2

from loadgen.protocol.codecs.base import CallInput, Codec, CodecError

__all__ = ["RawCodec", "raw_value"]

_KEYS: Final = frozenset({"type_url", "base64"})


def raw_value(message: any_pb2.Any) -> dict[str, str]:
    """``{"type_url": ..., "base64": ...}`` of an ``Any``."""
    return {"type_url": message.type_url, "base64": base64.b64encode(message.value).decode()}


class RawCodec(Codec):
    """See the module's documentation."""

    name = "raw"

    def encode(self, call: CallInput) -> any_pb2.Any:
        self._refuse_arguments(call)
        if not call.has_value:
            return any_pb2.Any()
        value = call.value
        if isinstance(value, any_pb2.Any):
            return value
        if not isinstance(value, Mapping) or set(value) - _KEYS or "type_url" not in value:
            raise CodecError("input", 'expected a table { type_url = "...", base64 = "..." }')
        url, text = value["type_url"], value.get("base64", "")
        if not isinstance(url, str) or not isinstance(text, str):
            raise CodecError("input", "type_url and base64 must be strings")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError("input", "base64 is not valid base64 text") from None
        return any_pb2.Any(type_url=url, value=data)

    def decode(self, output: any_pb2.Any | None) -> Any:
        if output is None or (not output.type_url and not output.value):
            return None
        return raw_value(output)


CODEC: Final = RawCodec()
