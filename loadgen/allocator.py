"""glibc's malloc, tuned for long-running processes that hold and free large buffers.

glibc serves an allocation above its *mmap threshold* (128 KiB at start) with a fresh mapping that
goes back to the OS when freed, but it raises that threshold (up to 32 MiB) each time such a block
is freed. After the first freed 1 MB input, later 1 MB inputs and results are carved from the heap
between small objects, and the heap fragments: under ``python -m loadgen.bench.soak --overload``
(10 minutes) each shard's RSS kept rising (median +5.7 and +8.7 MB from the middle to the last
third) while the number of Python objects stayed flat; with the threshold pinned it stayed flat
(-0.2 and +2.4 MB). A process pins it once at start; the user's own ``MALLOC_MMAP_THRESHOLD_`` or
``GLIBC_TUNABLES`` wins. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Any, NamedTuple

__all__ = ["MMAP_THRESHOLD", "HeapUse", "heap_use", "pin_mmap_threshold"]

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting value: blocks above it are mapped on their own and unmapped when freed."""


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at *threshold* bytes (setting it stops glibc from raising it); True
    if it was set, False when the environment sets it or the C library is not glibc."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "GLIBC_TUNABLES" in os.environ:
        return False
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, threshold))
    return False


class HeapUse(NamedTuple):
    """What glibc's malloc holds: bytes in use (heap blocks and mapped blocks) and bytes free in its heaps."""

    in_use: int
    free: int


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _mallinfo2() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL("libc.so.6").mallinfo2
        function.restype = _Mallinfo2
        return function
    return None


_MALLINFO2 = _mallinfo2()


def heap_use() -> HeapUse | None:
    """glibc's own count of the memory malloc holds, over every arena (None without glibc 2.33+).

    RSS that rises while ``in_use`` stays flat is fragmentation (``free`` grows), not a leak."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return HeapUse(info.uordblks + info.hblkhd, info.fordblks)
