"""``sdk = "dispatch-go"``: endpoints on the Go SDK (``dispatch.Func[I, O]``).

A Go function takes one value, and the SDK (``dispatchproto.Marshal``) encodes it as a
well-known type: nil → ``Empty``, bool → ``BoolValue``, every int → ``Int64Value`` (every uint
→ ``UInt64Value``), floats → ``DoubleValue``, string → ``StringValue``, ``[]byte`` →
``BytesValue``, ``time.Time`` → ``Timestamp``, ``time.Duration`` → ``Duration``, slices and maps
→ ``google.protobuf.Value`` (numbers as doubles). The input is that one value (``input`` in a
scenario, none: ``Empty``), written by :func:`~loadgen.protocol.codecs.wellknown.encode_one`; outputs
are read back by :func:`~loadgen.protocol.codecs.wellknown.decode_well_known`. Any other type (a proto
message of the function's own) decodes as ``{"type_url": ..., "base64": ...}``.
"""

from __future__ import annotations

import base64
from typing import Any, Final

from google.protobuf import any_pb2

from loadgen.protocol.codecs.base import CallInput, Codec
from loadgen.protocol.codecs.wellknown import NOT_WELL_KNOWN, decode_well_known, encode_one

__all__ = ["DispatchGoCodec"]


class DispatchGoCodec(Codec):
    """See the module's documentation."""

    name = "dispatch-go"

    def encode(self, call: CallInput) -> any_pb2.Any:
        self._refuse_arguments(call)
        if isinstance(call.value, any_pb2.Any):
            return call.value
        return encode_one(call.value if call.has_value else None)

    def decode(self, output: any_pb2.Any | None) -> Any:
        if output is None or (not output.type_url and not output.value):
            return None
        value = decode_well_known(output)
        if value is NOT_WELL_KNOWN:
            return {"type_url": output.type_url, "base64": base64.b64encode(output.value).decode()}
        return value


CODEC: Final = DispatchGoCodec()
