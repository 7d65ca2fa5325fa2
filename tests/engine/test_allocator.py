"""A shard pins glibc's mmap threshold, so large buffers it frees go back to the OS instead of
fragmenting its heap (:mod:`loadgen.allocator`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WHERE_IS_A_NEW_MEGABYTE = """
import ctypes, sys
from loadgen.allocator import pin_mmap_threshold
if sys.argv[1] == "pin":
    assert pin_mmap_threshold()
freed = [bytearray(1 << 20) for _ in range(4)]
del freed  # glibc raises its threshold past 1 MB on freeing these, unless it is pinned
buffer = bytearray(1 << 20)
address = ctypes.addressof((ctypes.c_char * 1).from_buffer(buffer))
with open("/proc/self/maps") as maps:
    heap = [line.split()[0] for line in maps if line.rstrip().endswith("[heap]")]
low, high = (int(part, 16) for part in heap[0].split("-"))
print("heap" if low <= address < high else "mapped")
"""


def _where(mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    done = subprocess.run(
        [sys.executable, "-c", WHERE_IS_A_NEW_MEGABYTE, mode], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_with_the_threshold_pinned_a_megabyte_is_mapped_on_its_own_not_carved_from_the_heap() -> None:
    assert _where("default") == "heap"  # what a process gets without the pin: the heap fragments
    assert _where("pin") == "mapped"


def test_the_users_own_malloc_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from loadgen.allocator import pin_mmap_threshold

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert pin_mmap_threshold() is False
