"""SDK codecs: how inputs are encoded for an endpoint's SDK and how its outputs are read.

=================  ==========================================  =============================================
name               inputs                                      outputs
=================  ==========================================  =============================================
``reference``      a table → ``google.protobuf.Struct``        ``Struct``/``Value``/wrappers (numbers float)
``dispatch-py``    ``args``/``kwargs`` → ``BytesValue(pickle   0.7.1 ``BytesValue(pickle)``, 0.8.0
                   (dispatch.proto.Arguments))``               well-known types and ``Pickled``
``dispatch-go``    one value → a well-known type               well-known types
``raw``            ``{type_url, base64}`` as is                ``{type_url, base64}``
=================  ==========================================  =============================================

:func:`get_codec` returns a codec by name. A new SDK is one module here that defines a
:class:`Codec` subclass and ``CODEC = ItsCodec()``, plus one line in :data:`_MODULES`.
Pickles from endpoints are read by :mod:`.plainpickle` (plain data only, nothing called);
:mod:`.compare` judges outputs against expected values.
"""

from __future__ import annotations

import importlib
from typing import Final

from loadgen.protocol.codecs.base import NO_VALUE, CallInput, Codec, CodecError, NoValue
from loadgen.protocol.codecs.compare import display, matches
from loadgen.protocol.codecs.plainpickle import Opaque, PickleRefused, loads_plain

__all__ = [
    "CODEC_NAMES",
    "NO_VALUE",
    "CallInput",
    "Codec",
    "CodecError",
    "NoValue",
    "Opaque",
    "PickleRefused",
    "display",
    "get_codec",
    "loads_plain",
    "matches",
]

_MODULES: Final[dict[str, str]] = {
    "reference": "loadgen.protocol.codecs.reference",
    "dispatch-py": "loadgen.protocol.codecs.dispatch_py",
    "dispatch-go": "loadgen.protocol.codecs.dispatch_go",
    "raw": "loadgen.protocol.codecs.raw",
}

CODEC_NAMES: Final[tuple[str, ...]] = tuple(_MODULES)
"""Every codec's name, as ``[target] sdk`` takes it."""


def get_codec(name: str) -> Codec:
    """The codec called *name* (one of :data:`CODEC_NAMES`); ``ValueError`` naming the choices otherwise."""
    module = _MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown sdk {name!r}; expected one of: {', '.join(CODEC_NAMES)}")
    codec: Codec = importlib.import_module(module).CODEC
    return codec
