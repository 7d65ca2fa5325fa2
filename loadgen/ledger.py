"""A shared-memory ledger of root calls per shard, so a crashed shard's calls are counted exactly.

Each shard process writes its own row (single writer, no lock) as calls are
accepted and end; the supervisor reads every row. When a shard dies, the
calls it had accepted but not finished are *lost*: ``accepted - ended``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile

__all__ = ["Ledger"]

_ACCEPTED, _ENDED = 0, 1
_FIELDS = 2


class Ledger:
    """Rows of ``(accepted, ended)`` int64 counters in a memory-mapped file (``/dev/shm`` when present).

    The supervisor creates it (``path=None``) and removes it on :meth:`close`;
    shard processes open it by :attr:`path`.
    """

    def __init__(self, shards: int, path: str | None = None) -> None:
        size = max(1, shards) * _FIELDS * 8
        self._owner = path is None
        if path is None:
            directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
            fd, path = tempfile.mkstemp(prefix="loadgen-ledger-", dir=directory)
            os.ftruncate(fd, size)
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._cells = memoryview(self._map).cast("q")
        self.path = path
        self.shards = shards

    def add_accepted(self, shard: int, count: int) -> None:
        self._cells[shard * _FIELDS + _ACCEPTED] += count

    def add_ended(self, shard: int, count: int = 1) -> None:
        self._cells[shard * _FIELDS + _ENDED] += count

    def row(self, shard: int) -> tuple[int, int]:
        """``(accepted, ended)`` of one shard's current incarnation."""
        base = shard * _FIELDS
        return self._cells[base + _ACCEPTED], self._cells[base + _ENDED]

    def reset(self, shard: int) -> None:
        """Zero a row before a new incarnation of the shard starts."""
        base = shard * _FIELDS
        self._cells[base + _ACCEPTED] = 0
        self._cells[base + _ENDED] = 0

    def close(self) -> None:
        self._cells.release()
        self._map.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
