"""Child processes that never outlive their parent (Linux ``PR_SET_PDEATHSIG``), and the one helper
process multiprocessing starts on its own: its resource tracker, reaped before a command exits."""

from __future__ import annotations

import contextlib
import ctypes
import signal

__all__ = ["die_with_parent", "die_with_parent_term", "stop_resource_tracker"]

_PR_SET_PDEATHSIG = 1


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


def stop_resource_tracker() -> None:
    """Stop multiprocessing's resource tracker (started with the first spawned process) and wait for it.

    Left alone it notices its parent is gone only after the parent exited, and lingers for a second
    or more in the parent's process group (a process manager sees a straggler). Only for a command's
    own end, once every child it spawned is joined: a program that embeds loadgen keeps its tracker.
    """
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    if stop is not None:
        with contextlib.suppress(OSError, ChildProcessError):
            stop()
