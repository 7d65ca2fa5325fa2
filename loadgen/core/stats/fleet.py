"""Shards on several machines: each machine's snapshot under a label, a lost machine's calls, the sum.

A pure module. A distributed run's master keeps the latest cumulative snapshot each worker
machine reported (its shards merged); the run's statistics are their exact merge, each
machine's shards named ``<label>/<shard>`` so that they never collide. A machine that went
away mid-run (:attr:`FleetMember.lost`) said nothing after its last report: every root call
it had accepted and not ended by then is ``lost`` (:meth:`Snapshot.mark_lost`), so the
accounting still balances and the verdict says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from loadgen.core.stats.snapshot import Accounting, Snapshot, merge_snapshots

__all__ = ["FleetMember", "fleet_snapshot", "labelled"]


def labelled(snapshot: Snapshot, label: str) -> Snapshot:
    """*snapshot* with each shard renamed ``label/shard`` (histograms unchanged)."""
    return Snapshot({f"{label}/{name}": summary for name, summary in snapshot.per_shard.items()}, snapshot.histograms)


@dataclass(frozen=True)
class FleetMember:
    """One worker machine: its label, its latest cumulative snapshot, and whether it went away."""

    label: str
    snapshot: Snapshot
    lost: bool = False

    def final(self) -> Snapshot:
        """Its snapshot, labelled; when lost, every live shard of it marked lost (in flight → ``lost``)."""
        snapshot = labelled(self.snapshot, self.label)
        if self.lost:
            for name, summary in snapshot.per_shard.items():
                if not summary.crashed:
                    snapshot = snapshot.mark_lost(name)
        return snapshot

    def accounting(self) -> Accounting:
        return self.final().accounting()

    @property
    def in_flight(self) -> int:
        """Calls in flight at its last report (what becomes ``lost`` when it went away)."""
        return self.snapshot.accounting().in_flight


def fleet_snapshot(members: Iterable[FleetMember]) -> Snapshot:
    """Every member's :meth:`~FleetMember.final` snapshot, merged exactly."""
    return merge_snapshots(member.final() for member in members)
