"""Pickles from outside, read safely: plain data only, never a call of anything they name.

An endpoint's output may be a pickle (dispatch-py writes its values that way). Loading it
with :func:`pickle.loads` runs whatever callable it names: a pickle is a program. Every
pickle loadgen reads from an endpoint goes through :func:`loads_plain` instead, which builds

    None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset

and nothing else. A global the pickle names (a class, a function: ``os.system``,
``subprocess.Popen``, an exception type, ``dispatch.proto.Arguments``) is looked up by name
only: it is never imported and never called. In its place the result holds an
:class:`Opaque` marker that names it (``Opaque("os.system")``) and keeps what the pickle
passed to it (``args``, ``state``), itself plain data or more markers. Persistent ids,
buffers out of band and anything the unpickler cannot decode raise :class:`PickleRefused`.

The few globals that plain data needs in older protocols are rebuilt here, with their
arguments checked first: ``builtins.set``/``frozenset``/``bytes``/``bytearray``/``complex`` (also
spelled ``__builtin__.…``, protocols 0-2) and ``_codecs.encode(text, "latin1")`` (bytes in
protocol 2). ``bytearray(10**12)`` and other arguments that are not plain data give markers.

The C unpickler does the parsing (it keeps its own stack, so deep nesting is no recursion);
only :meth:`_PlainUnpickler.find_class` is ours.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = ["Opaque", "PickleRefused", "loads_plain"]


class PickleRefused(ValueError):
    """The bytes are not a pickle this module reads (malformed, persistent ids, out-of-band buffers)."""


class Opaque:
    """What a pickle built with a global loadgen does not call: ``name`` (``module.qualname``),
    the ``args`` it was called with (or ``new_args`` of ``NEWOBJ``) and the ``state`` it was
    given (``BUILD``), all plain data or more markers. Never equal to anything but an equal marker."""

    __slots__ = ("args", "items", "name", "state")

    def __init__(self, name: str, args: tuple[Any, ...] = (), state: Any = None) -> None:
        self.name = name
        self.args = args
        self.state = state
        self.items: list[Any] = []  # APPEND/SETITEM on a marker land here, harmlessly

    def __repr__(self) -> str:
        if not self.args:
            return f"<opaque {self.name}>"
        args = ", ".join(repr(arg) for arg in self.args)
        return f"<opaque {self.name}({args[:120]})>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Opaque)
            and other.name == self.name
            and other.args == self.args
            and other.state == self.state
        )

    def __hash__(self) -> int:
        return hash(self.name)

    # The unpickler's protocol for objects it builds. None of these runs code of the pickle's.
    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Iterable[Any]) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))


def _stand_in(name: str) -> type:
    """A class the unpickler may call (``REDUCE``) or instantiate (``NEWOBJ``): each gives an :class:`Opaque`."""

    class StandIn(Opaque):
        __slots__ = ()

        def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:  # type: ignore[misc]  # a marker, not a StandIn
            return Opaque(name, args)

        def __init__(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - __new__ returns an Opaque
            pass

    StandIn.__qualname__ = StandIn.__name__ = f"Opaque[{name}]"
    return StandIn


def _plain(value: Any, allowed: tuple[type, ...]) -> bool:
    return type(value) in allowed


def _set(items: Any = ()) -> Any:
    if isinstance(items, list | tuple | set | frozenset):
        try:
            return set(items)
        except TypeError:  # an unhashable element: keep it, as a marker
            pass
    return Opaque("builtins.set", (items,))


def _frozenset(items: Any = ()) -> Any:
    if isinstance(items, list | tuple | set | frozenset):
        try:
            return frozenset(items)
        except TypeError:
            pass
    return Opaque("builtins.frozenset", (items,))


def _bytearray(*args: Any) -> Any:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin-1", "latin1"):
        return bytearray(args[0], "latin-1")
    if len(args) == 1 and isinstance(args[0], list) and all(type(b) is int and 0 <= b < 256 for b in args[0]):
        return bytearray(args[0])
    return Opaque("builtins.bytearray", args)  # bytearray(10**12) would allocate a terabyte


def _bytes(*args: Any) -> Any:
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return bytes(args[0])
    return Opaque("builtins.bytes", args)


def _complex(*args: Any) -> Any:
    if 1 <= len(args) <= 2 and all(type(a) in (int, float) for a in args):
        return complex(*args)
    return Opaque("builtins.complex", args)


def _latin1(*args: Any) -> Any:
    """``_codecs.encode(text, "latin1")``: how protocol 2 writes ``bytes``. No other codec."""
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            pass
    return Opaque("_codecs.encode", args)


_REBUILT: Final[dict[tuple[str, str], Callable[..., Any]]] = {}
for _module in ("builtins", "__builtin__"):
    _REBUILT[(_module, "set")] = _set
    _REBUILT[(_module, "frozenset")] = _frozenset
    _REBUILT[(_module, "bytearray")] = _bytearray
    _REBUILT[(_module, "bytes")] = _bytes
    _REBUILT[(_module, "complex")] = _complex
_REBUILT[("_codecs", "encode")] = _latin1


class _PlainUnpickler(pickle.Unpickler):
    """The C unpickler with every global replaced: rebuilt plain types, or stand-ins that make markers."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), fix_imports=False, encoding="bytes", errors="strict")
        self._stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        rebuilt = _REBUILT.get((module, name))
        if rebuilt is not None:
            return rebuilt
        key = f"{module}.{name}"[:200]
        stand_in = self._stand_ins.get(key)
        if stand_in is None:
            if len(self._stand_ins) >= 1000:
                raise PickleRefused("the pickle names more than 1000 globals")
            stand_in = self._stand_ins[key] = _stand_in(key)
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused("the pickle uses persistent ids")


def loads_plain(data: bytes) -> Any:
    """The plain data in pickle *data*, with an :class:`Opaque` marker for each global it names.

    Nothing the pickle names is imported or called. :class:`PickleRefused` if the bytes are
    not a pickle this reads (the message says why, without echoing the bytes).
    """
    try:
        return _PlainUnpickler(bytes(data)).load()
    except PickleRefused:
        raise
    except RecursionError:
        raise PickleRefused("the pickle nests too deeply") from None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, TypeError, MemoryError, ...
        raise PickleRefused(f"not a readable pickle: {type(exc).__name__}: {str(exc)[:200]}") from None
