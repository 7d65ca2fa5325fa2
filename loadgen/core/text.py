"""Words for people: a value as an error message shows it, and "did you mean" suggestions."""

from __future__ import annotations

import datetime as _dt
import difflib
import re
from collections.abc import Iterable

__all__ = ["describe", "suggest"]


def describe(value: object) -> str:
    """A value as an error message shows it: TOML spelling for scalars, a type for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return "a date/time"
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


def suggest(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` for the choice closest to *word*, or ``""``.

    A choice that alone starts like *word* (its first part, at least 3 characters: ``TEMP_ERROR``
    → ``TEMPORARY_ERROR``) wins; otherwise the closest by :func:`difflib.get_close_matches`.
    """
    options = list(choices)
    head = re.split(r"[_.{]", word, maxsplit=1)[0].lower()
    if len(head) >= 3:
        starting = [c for c in options if c.lower().startswith(head) and c != word]
        if len(starting) == 1:
            return f" (did you mean {starting[0]!r}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
