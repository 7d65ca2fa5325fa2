"""Child processes that never outlive their parent (Linux ``PR_SET_PDEATHSIG``), and the one helper
process multiprocessing starts on its own: its resource tracker, reaped before a command exits."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from typing import Any

__all__ = [
    "die_with_parent",
    "die_with_parent_term",
    "forks_die_with_parent",
    "pid_alive",
    "stop_resource_tracker",
    "terminate",
]

_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """Whether a process *pid* exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop *process* if it still runs: SIGTERM, then SIGKILL after *timeout* seconds; reap it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask Linux to send *signum* to this process when its parent dies; a no-op elsewhere.

    Call it first thing in a child (or as ``preexec_fn`` of ``subprocess.Popen``), so that
    a parent killed with SIGKILL leaves no orphan behind.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)


def die_with_parent_term() -> None:
    """:func:`die_with_parent` with SIGTERM, so the child can still stop cleanly."""
    die_with_parent(signal.SIGTERM)


_forking: list[int] = []  # the pid of the process forking right now (set by the hook's "before")
_hooked: list[bool] = []


def _record_forking() -> None:
    _forking[:] = [os.getpid()]


def _child_dies_with_parent() -> None:
    die_with_parent(signal.SIGKILL)
    if _forking and os.getppid() != _forking[0]:  # the parent died before the signal was armed
        os._exit(1)


def forks_die_with_parent() -> None:
    """From now on, every process forked from this one (and from them) is killed when its parent
    dies, whatever kills it: forked workers do not inherit :func:`die_with_parent` from their
    parent, and a master killed outright would leave them running on. Idempotent."""
    if not _hooked:
        _hooked.append(True)
        os.register_at_fork(before=_record_forking, after_in_child=_child_dies_with_parent)


def stop_resource_tracker(timeout: float = 2.0) -> None:
    """Stop multiprocessing's resource tracker (started with the first spawned process) and reap it.

    Left alone it notices its parent is gone only after the parent exited, and lingers for a second
    or more in the parent's process group (a process manager sees a straggler). Only for a command's
    own end: nothing happens while a process this one started with multiprocessing still runs (it
    shares the tracker), and the wait is bounded by *timeout*.
    """
    import multiprocessing
    import time
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    fd, pid = getattr(tracker, "_fd", None), getattr(tracker, "_pid", None)
    if tracker is None or fd is None or pid is None or multiprocessing.active_children():
        return
    with contextlib.suppress(OSError):
        os.close(fd)  # its last writer gone, the tracker exits
    tracker._fd = tracker._pid = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)
