"""``sdk = "reference"``: the built-in reference endpoint (``loadgen endpoint``).

Inputs are a table of parameters, sent as a ``google.protobuf.Struct``; outputs are whatever
:func:`loadgen.protocol.values.decode` reads (``Struct``, ``Value``, scalar wrappers, ``BytesValue``),
numbers as floats. See :mod:`loadgen.protocol.values` and the reference functions' table in the README.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import any_pb2

from loadgen.protocol import values
from loadgen.protocol.codecs.base import CallInput, Codec, CodecError

__all__ = ["ReferenceCodec"]


class ReferenceCodec(Codec):
    """See the module's documentation."""

    name = "reference"

    def encode(self, call: CallInput) -> any_pb2.Any:
        self._refuse_arguments(call)
        value = call.value if call.has_value else {}
        if isinstance(value, any_pb2.Any):
            return value
        if value is None:
            value = {}
        if not isinstance(value, Mapping | bytes | bytearray | list | tuple | str | int | float):
            raise CodecError("input", f"a {type(value).__name__} has no Struct encoding")
        try:
            return values.encode(value)
        except TypeError as exc:
            raise CodecError("input", str(exc)) from None

    def decode(self, output: any_pb2.Any | None) -> Any:
        if output is None:
            return None
        try:
            return values.decode(output)
        except ValueError:
            return {"type_url": output.type_url, "base64": base64.b64encode(output.value).decode()}


CODEC: Final = ReferenceCodec()
