"""A shard's file descriptors: the soft limit raised to the hard one, a gRPC connection cap below it,
and a watch that says once per episode when the shard runs out of room.

Every connection is a descriptor. Past the limit gRPC retries ``accept`` each second and new
clients time out (DEADLINE_EXCEEDED) with no word from loadgen. So a shard caps its gRPC
connections (``grpc.max_allowed_incoming_connections``: a client over the cap gets UNAVAILABLE at
once) at ``max_connections``, never above its descriptor limit less what it needs itself (the
endpoint pool, its peers, the Connect ingress, files), and logs when it reaches the cap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import time
from collections.abc import Callable
from typing import Final

import grpc

__all__ = [
    "CONNECT_CONNECTIONS",
    "FD_RESERVE",
    "SESSION_SOCKETS",
    "DescriptorWatch",
    "grpc_cap_supported",
    "open_descriptors",
    "probe",
    "raise_fd_limit",
    "shard_cap",
]

log = logging.getLogger("loadgen.shard")

CONNECT_CONNECTIONS: Final = 256
"""Connect connections one shard keeps open at most; one more is answered 503 and closed."""
SESSION_SOCKETS: Final = 256
"""Session sockets one shard serves at once (one per load-generating process); one more is ended at once."""
FD_RESERVE: Final = 64
"""Descriptors a shard keeps for itself beside its connections (files, pipes, the event loop)."""
_MAX_SOFT_LIMIT: Final = 1 << 20


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit (at most 2**20); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _MAX_SOFT_LIMIT if hard == resource.RLIM_INFINITY else min(hard, _MAX_SOFT_LIMIT)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return int(min(soft, _MAX_SOFT_LIMIT))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return int(wanted)
    return int(soft)


def shard_cap(max_connections: int, fd_limit: int, own: int) -> int:
    """The gRPC connections a shard takes on each of its two addresses (gRPC counts each listener
    apart): *max_connections*, and both together below *fd_limit* less *own* descriptors (the
    pool, peers, Connect connections) and :data:`FD_RESERVE` (at least 1)."""
    return max(1, min(max_connections, (fd_limit - own - FD_RESERVE) // 2))


def grpc_cap_supported() -> bool:
    """Whether this grpcio enforces ``grpc.max_allowed_incoming_connections`` (absent in 1.60)."""
    parts = grpc.__version__.split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (1, 62)
    except (IndexError, ValueError):
        return True


def probe(address: str, timeout: float = 2.0) -> str | None:
    """``None`` if a fresh connection to *address* completes its gRPC handshake within *timeout*,
    else what happened (how a new client would find the shard)."""
    started = time.monotonic()
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return f"no new connection was accepted within {time.monotonic() - started:.1f}s"
    finally:
        channel.close()
    return None


def open_descriptors() -> int:
    """This process's open file descriptors (0 where ``/proc/self/fd`` cannot be read)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class DescriptorWatch:
    """Checked about once a second: logs when the descriptors above the shard's start reach its
    gRPC cap, or the open descriptors come near the limit; once per episode (again after they fell
    below 90%)."""

    def __init__(self, index: int, cap: int, fd_limit: int, count: Callable[[], int] = open_descriptors) -> None:
        self.index = index
        self.cap = cap
        self.fd_limit = fd_limit
        self._count = count
        self.baseline = count()
        self.full = False
        self.episodes = 0

    def check(self) -> int:
        """Count now, log if the shard just got full; return the open descriptors."""
        opened = self._count()
        connections = opened - self.baseline
        near_limit = opened >= self.fd_limit - FD_RESERVE // 2
        if not self.full and (connections >= self.cap or near_limit):
            self.full = True
            self.episodes += 1
            log.warning(
                "shard %d: %d connections, at its cap of %d gRPC connections (max_connections;"
                " %d descriptors open, limit %d); new clients are refused (UNAVAILABLE)",
                self.index,
                connections,
                self.cap,
                opened,
                self.fd_limit,
            )
        elif self.full and connections < self.cap * 0.9 and not near_limit:
            self.full = False
        return opened
