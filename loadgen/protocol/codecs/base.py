"""The one interface every SDK codec implements, and the input it encodes.

A codec knows how one SDK's endpoints read a function's input and write its output, both
``google.protobuf.Any``:

* :meth:`Codec.encode` turns a :class:`CallInput` (a workload item's ``input``, or its
  ``args`` and ``kwargs``) into the ``Any`` to put in ``Call.input``;
* :meth:`Codec.decode` turns a ``CallResult.output`` into plain Python data to compare with
  an expected value (:mod:`loadgen.protocol.codecs.compare`). Decoding never runs code the endpoint
  sent: pickles go through :func:`loadgen.protocol.codecs.plainpickle.loads_plain`.

A codec checks what it is given and raises :class:`CodecError` naming the key at fault
(``args``, ``kwargs`` or ``input``), so scenario files get errors that say what to write.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from google.protobuf import any_pb2

__all__ = ["NO_VALUE", "CallInput", "Codec", "CodecError", "NoValue"]


class NoValue:
    """The type of :data:`NO_VALUE`: "no ``input`` was given" (``None`` is a value)."""

    _instance: ClassVar[NoValue | None] = None

    def __new__(cls) -> NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Final = NoValue()


class CodecError(ValueError):
    """What a codec cannot encode: ``key`` is ``"input"``, ``"args"`` or ``"kwargs"`` (or ``""``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CallInput:
    """A call's input as a scenario or a locustfile gives it: one ``value`` (``input``) or
    positional ``args`` and keyword ``kwargs``. Which of them a codec takes is its own rule."""

    value: Any = NO_VALUE
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_value(self) -> bool:
        return self.value is not NO_VALUE

    @property
    def has_arguments(self) -> bool:
        return bool(self.args) or bool(self.kwargs)


class Codec(ABC):
    """How one SDK's endpoints read inputs and write outputs (see the module's documentation)."""

    name: ClassVar[str]
    """The name scenarios use (``[target] sdk = NAME``) and the registry knows it by."""

    takes_arguments: ClassVar[bool] = False
    """True if inputs are ``args``/``kwargs`` (dispatch-py); False if one ``input`` value."""

    @abstractmethod
    def encode(self, call: CallInput) -> any_pb2.Any:
        """The ``Call.input`` for *call*; :class:`CodecError` if this SDK cannot take it."""

    @abstractmethod
    def decode(self, output: any_pb2.Any | None) -> Any:
        """Plain Python data for a ``CallResult.output`` (``None``: the result had none)."""

    def _refuse_arguments(self, call: CallInput) -> None:
        """For one-value codecs: ``args``/``kwargs`` are a dispatch-py thing."""
        if call.args:
            raise CodecError("args", f'positional arguments are for sdk = "dispatch-py"; {self.name} takes one input')
        if call.kwargs:
            raise CodecError("kwargs", f'keyword arguments are for sdk = "dispatch-py"; {self.name} takes one input')
