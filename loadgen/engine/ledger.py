"""A shared-memory ledger of root calls per shard, so a crashed shard's calls are counted exactly.

Each shard process writes its own row (single writer, no lock) as calls are
accepted and end (completed, failed, expired or cancelled); the supervisor reads every
row. When a shard dies, the calls it had accepted but not finished are
*lost*: ``accepted - completed - failed - expired - cancelled``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile

__all__ = ["Ledger"]

_ACCEPTED, _COMPLETED, _FAILED, _EXPIRED, _CANCELLED = 0, 1, 2, 3, 4
_FIELDS = 5
_OUTCOME_FIELD = {"completed": _COMPLETED, "failed": _FAILED, "expired": _EXPIRED, "cancelled": _CANCELLED}


class Ledger:
    """Rows of ``(accepted, completed, failed, expired, cancelled)`` int64 counters in a memory-mapped file
    (``/dev/shm`` when present).

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

    def add_ended(self, shard: int, outcome: str = "completed", count: int = 1) -> None:
        """*count* root calls ended as *outcome*: ``completed``, ``failed``, ``expired`` or ``cancelled``."""
        self._cells[shard * _FIELDS + _OUTCOME_FIELD[outcome]] += count

    def outcomes(self, shard: int) -> tuple[int, tuple[int, int, int, int]]:
        """``(accepted, (completed, failed, expired, cancelled))`` of one shard's current incarnation."""
        base = shard * _FIELDS
        cells = self._cells
        ended = (cells[base + _COMPLETED], cells[base + _FAILED], cells[base + _EXPIRED], cells[base + _CANCELLED])
        return cells[base + _ACCEPTED], ended

    def row(self, shard: int) -> tuple[int, int]:
        """``(accepted, ended)`` of one shard's current incarnation."""
        accepted, ended = self.outcomes(shard)
        return accepted, sum(ended)

    def reset(self, shard: int) -> None:
        """Zero a row before a new incarnation of the shard starts."""
        base = shard * _FIELDS
        for field in range(_FIELDS):
            self._cells[base + field] = 0

    def close(self) -> None:
        self._cells.release()
        self._map.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
