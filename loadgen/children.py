"""Child processes that never outlive their parent (Linux ``PR_SET_PDEATHSIG``)."""

from __future__ import annotations

import contextlib
import ctypes
import signal

__all__ = ["die_with_parent"]

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
