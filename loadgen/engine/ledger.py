"""A shared-memory ledger of root calls per shard, so a crashed shard's calls are counted exactly.

Each shard process writes its own row (single writer, no lock) as calls are
accepted and end (completed, failed, expired or cancelled); the supervisor reads every
row. When a shard dies, the calls it had accepted but not finished are
*lost*: ``accepted - completed - failed - expired - cancelled``.

The memory is a ``memfd`` (Linux): no file exists, so nothing is left behind however the
supervisor ends (even SIGKILL). Each shard gets the descriptor as it is spawned
(:class:`LedgerHandle`). Where ``memfd_create`` is missing, a file in ``/dev/shm`` named
``loadgen-ledger-<pid>-...`` is used instead, and the next ledger created on the machine
removes the files of processes that are gone.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from multiprocessing import reduction
from typing import Any

from loadgen.children import pid_alive

__all__ = ["Ledger", "LedgerHandle", "remove_stale_files"]

_ACCEPTED, _COMPLETED, _FAILED, _EXPIRED, _CANCELLED, _REJECTED = 0, 1, 2, 3, 4, 5
_FIELDS = 6
_OUTCOME_FIELD = {"completed": _COMPLETED, "failed": _FAILED, "expired": _EXPIRED, "cancelled": _CANCELLED}
_PREFIX = "loadgen-ledger-"


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def remove_stale_files(directory: str | None = None) -> list[str]:
    """Remove the ledger files of processes that are gone (named ``loadgen-ledger-<pid>-...``); return them."""
    where = directory or _shm_dir() or tempfile.gettempdir()
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(where):
            if not name.startswith(_PREFIX):
                continue
            pid_text = name[len(_PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit() and not pid_alive(int(pid_text)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(where, name))
                    removed.append(name)
    return removed


def _received_fd(dup: Any) -> int:
    return int(dup.detach())


class LedgerHandle:
    """How a shard opens the supervisor's ledger: its memfd (passed to the shard process as it is
    spawned: pickle it only into a process being started) or the fallback file's path."""

    def __init__(self, fd: int | None, path: str) -> None:
        self.fd = fd
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        if self.fd is None:
            return (LedgerHandle, (None, self.path))
        return (_handle_with_fd, (reduction.DupFd(self.fd), self.path))


def _handle_with_fd(dup: Any, path: str) -> LedgerHandle:
    return LedgerHandle(_received_fd(dup), path)


class Ledger:
    """Rows of ``(accepted, completed, failed, expired, cancelled, rejected)`` int64 counters in shared memory.

    The supervisor creates it (``handle=None``) and frees it on :meth:`close`; shard processes
    open it from the :class:`LedgerHandle` they were given (:attr:`handle`).
    """

    def __init__(self, shards: int, handle: LedgerHandle | None = None) -> None:
        size = max(1, shards) * _FIELDS * 8
        self._owner = handle is None
        self._fd: int | None = None
        path = ""
        if handle is None:
            memfd_create = getattr(os, "memfd_create", None)
            if memfd_create is not None:
                fd = memfd_create("loadgen-ledger", getattr(os, "MFD_CLOEXEC", 0))
                self._fd = os.dup(fd)  # kept open: the handle hands it to each shard spawned
            else:
                remove_stale_files()
                fd, path = tempfile.mkstemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=_shm_dir())
            os.ftruncate(fd, size)
        elif handle.fd is not None:
            fd = handle.fd
        else:
            path = handle.path
            fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._cells = memoryview(self._map).cast("q")
        self.path = path
        """The fallback file ("" with a memfd: there is no file)."""
        self.shards = shards

    @property
    def handle(self) -> LedgerHandle:
        """What a shard process opens this ledger from."""
        return LedgerHandle(self._fd, self.path)

    def add_accepted(self, shard: int, count: int) -> None:
        self._cells[shard * _FIELDS + _ACCEPTED] += count

    def add_rejected(self, shard: int, count: int) -> None:
        """*count* calls offered to the shard were turned away by admission control."""
        self._cells[shard * _FIELDS + _REJECTED] += count

    def rejected(self, shard: int) -> int:
        """Calls the shard's current incarnation rejected (offered = accepted + rejected)."""
        return self._cells[shard * _FIELDS + _REJECTED]

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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._owner and self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
