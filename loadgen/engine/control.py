"""The messages between the supervisor and its shards, over each shard's pipe (both ends are loadgen).

* supervisor → shard: :class:`Peers` (every shard's private address and incarnation),
  :class:`SnapshotRequest`, :class:`Drain` (stop intake, let calls finish for ``seconds``, then
  cancel the rest, saying why);
* shard → supervisor: :class:`Ready` (its private address), :class:`SnapshotReply`,
  :class:`Drained` (the final snapshot and how many calls it cancelled).

Snapshots travel as :meth:`loadgen.core.stats.Snapshot.to_bytes`.
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
    """Send a snapshot now (the health check)."""


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
    snapshot: bytes


@dataclass(frozen=True, slots=True)
class Drained:
    """The shard drained: its final snapshot, and how many calls it cancelled."""

    snapshot: bytes
    cancelled: int


ToShard = Peers | SnapshotRequest | Drain
ToSupervisor = Ready | SnapshotReply | Drained
