"""Units for people: durations and sizes as scenario files and flags write them, latencies as reports show them."""

from __future__ import annotations

import math
import re
from typing import Final

from loadgen.core.text import describe

__all__ = ["format_latency", "format_size", "parse_duration", "parse_size"]

_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|µs|μs|ms|s|m|h)")
_DURATION_UNITS: Final[dict[str, float]] = {
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib)?\s*", re.IGNORECASE)
_SIZE_UNITS: Final[dict[str, int]] = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1_000_000, "mib": 1 << 20}


def parse_duration(value: object) -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"1m30s"``, ``"250ms"``, ``"1.5h"`` or a number of seconds.

    ``ValueError`` (saying what was expected) for anything else or a negative/non-finite value.
    """
    expected = 'a duration such as "30s", "5m", "250ms" or a number of seconds'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {expected}, got {describe(value)}")
    if isinstance(value, str):
        text, position, total = value.strip(), 0, 0.0
        while position < len(text):
            match = _DURATION_PART.match(text, position)
            if match is None:
                raise ValueError(f"expected {expected}, got {describe(value)}")
            total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            position = match.end()
        if not text:
            raise ValueError(f"expected {expected}, got {describe(value)}")
        seconds = total
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {expected} (not negative), got {describe(value)}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or ``"512B"``, ``"4KB"``, ``"4KiB"``, ``"1MB"``, ``"1.5MiB"``; ``ValueError`` else."""
    expected = 'a size: a number of bytes or a string such as "4KiB" or "1MB"'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {expected}, got {describe(value)}")
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ValueError(f"expected {expected}, got {describe(value)}")
        number = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    else:
        number = float(value)
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise ValueError(f"expected {expected} (a whole, non-negative number of bytes), got {describe(value)}")
    return int(number)


def format_size(size: float) -> str:
    """A size as a flag or a scenario could write it: ``"16MiB"``, ``"64KiB"``, ``"1000B"`` (whole units only)."""
    number = int(size)
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1024)):
        if number >= factor and number % factor == 0:
            return f"{number // factor}{unit}"
    return f"{number}B"


def format_latency(us: float, unit: str = "auto", digits: int = 3) -> str:
    """A latency given in µs, for people.

    ``unit="auto"`` picks µs, ms or s (``"850µs"``, ``"12.3ms"``, ``"212.0ms"``, ``"1.5s"``: 3
    significant digits, one decimal from 100 ms); ``unit="ms"`` is a plain number of
    milliseconds with *digits* decimals (``"0.136"``), for tables that say "ms" in their header.
    """
    if unit == "ms":
        return f"{us / 1000:.{digits}f}"
    if unit != "auto":
        raise ValueError(f"unknown latency unit {unit!r}")
    if us < 1_000:
        return f"{us:.0f}µs"
    if us < 1_000_000:
        return f"{us / 1_000:.3g}ms" if us < 100_000 else f"{us / 1_000:.1f}ms"
    return f"{us / 1_000_000:.3g}s"
