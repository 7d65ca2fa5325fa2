"""The messages between the supervisor and its shards, over each shard's pipe (both ends are loadgen).

* supervisor → shard: :class:`Peers` (every shard's private address and incarnation),
  :class:`SnapshotRequest`, :class:`Drain` (stop intake, let calls finish for ``seconds``, then
  cancel the rest, saying why);
* shard → supervisor: :class:`Ready` (its private address), :class:`SnapshotReply`,
  :class:`Drained` (the final snapshot and how many calls it cancelled).

Snapshots travel as :meth:`loadgen.core.stats.Snapshot.to_bytes`. A reply that comes after the
supervisor stopped waiting for it (a shard slowed down by a busy machine) is still in the pipe at the
next read: the supervisor reads past what it did not ask for, so it never takes a late snapshot for a
new one, nor for the :class:`Drained` it waits for at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Drain", "Drained", "Peers", "Ready", "SnapshotReply", "SnapshotRequest", "ToShard", "ToSupervisor"]


@dataclass(frozen=True, slots=True)
class Peers:
    """Every shard of the engine: ``{index: (private address, incarnation)}``."""

    peers: dict[int, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """Send a snapshot now (the health check); the reply carries the same *seq*."""

    seq: int = 0


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop intake; after *seconds*, the calls still in flight end as cancelled, *reason* their error message."""

    seconds: float
    reason: str = "the service stopped before the call finished"


@dataclass(frozen=True, slots=True)
class Ready:
    """The shard serves; *address* is its private gRPC address."""

    address: str


@dataclass(frozen=True, slots=True)
class SnapshotReply:
    """The snapshot asked for by the :class:`SnapshotRequest` numbered *seq*."""

    snapshot: bytes
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Drained:
    """The shard drained: its final snapshot, and how many calls it cancelled."""

    snapshot: bytes
    cancelled: int


ToShard = Peers | SnapshotRequest | Drain
ToSupervisor = Ready | SnapshotReply | Drained
