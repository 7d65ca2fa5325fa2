"""Is a decoded output the expected value? And how to show either to people.

:func:`matches` compares the way a scenario's ``expect`` means it: a tuple is a list (a
pickle keeps tuples, TOML has arrays), an integer equals the same float (dispatch-py 0.8 and
dispatch-go send the numbers inside lists and maps as doubles: ``[1, 2]`` comes back as
``[1.0, 2.0]``), ``bytearray`` is ``bytes``. Nothing else is loose: ``True`` is not ``1``,
``"1"`` is not ``1``, a dict must have the same keys, an :class:`~loadgen.protocol.codecs.plainpickle.Opaque`
marker equals no plain value. Pure functions, no recursion limit surprises (a value nested
beyond :data:`MAX_DEPTH` never matches).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MAX_DEPTH", "display", "matches"]

MAX_DEPTH: Final = 200
_NUMBERS: Final = (int, float)


def matches(expected: Any, got: Any, _depth: int = 0) -> bool:
    """Whether *got* is *expected* (see the module's documentation)."""
    if _depth > MAX_DEPTH:
        return False
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is bool and type(got) is bool and expected == got
    if isinstance(expected, _NUMBERS) and isinstance(got, _NUMBERS):
        return bool(expected == got)
    if isinstance(expected, list | tuple):
        if not isinstance(got, list | tuple) or len(got) != len(expected):
            return False
        return all(matches(e, g, _depth + 1) for e, g in zip(expected, got, strict=True))
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping) or len(got) != len(expected):
            return False
        return all(key in got and matches(value, got[key], _depth + 1) for key, value in expected.items())
    if isinstance(expected, bytes | bytearray):
        return isinstance(got, bytes | bytearray) and bytes(expected) == bytes(got)
    if expected is None:
        return got is None
    if type(expected) is str:
        return type(got) is str and expected == got
    try:
        return bool(type(expected) is type(got) and expected == got)
    except Exception:
        return False


def display(value: Any, limit: int = 200) -> str:
    """*value* for a report: its ``repr`` (tuples as lists), cut to *limit* characters."""
    try:
        text = repr(_lists(value))
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lists(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        return ...
    if isinstance(value, list | tuple):
        return [_lists(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {key: _lists(item, depth + 1) for key, item in value.items()}
    return value
