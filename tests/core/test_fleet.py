"""Several machines' snapshots merged (:mod:`loadgen.core.stats.fleet`): names kept apart, a lost machine's calls."""

from __future__ import annotations

from loadgen.core.stats import GAUGE_IN_FLIGHT, ShardStats, Snapshot
from loadgen.core.stats.fleet import FleetMember, fleet_snapshot, labelled


def machine(completed: int, in_flight: int) -> Snapshot:
    """One machine's merged snapshot: one shard with *completed* calls ended and *in_flight* still running."""
    stats = ShardStats("shard-0")
    stats.count_accepted(completed + in_flight)
    for _ in range(completed):
        stats.record_call("echo", "completed", "OK", 0.002)
    stats.set_gauge(GAUGE_IN_FLIGHT, in_flight)
    return Snapshot.from_bytes(stats.snapshot().to_bytes())


def test_machines_keep_their_shards_apart_and_add_up_exactly() -> None:
    a, b = machine(10, 0), machine(7, 0)
    merged = fleet_snapshot([FleetMember("worker-0", a), FleetMember("worker-1", b)])
    assert sorted(merged.per_shard) == ["worker-0/shard-0", "worker-1/shard-0"]
    assert merged.accounting().completed == 17 and merged.accounting().balanced
    assert merged.histogram("e2e", ("echo", "completed")).count == 17
    assert labelled(a, "x").histograms == a.histograms


def test_a_lost_machine_counts_its_calls_in_flight_as_lost_and_still_balances() -> None:
    alive, gone = machine(10, 2), machine(5, 3)
    members = [FleetMember("worker-0", alive), FleetMember("worker-1", gone, lost=True)]
    merged = fleet_snapshot(members)
    accounting = merged.accounting()
    assert accounting.lost == 3 and accounting.in_flight == 2 and accounting.balanced
    assert members[1].in_flight == 3 and members[1].accounting().lost == 3
    assert [m.accounting().accepted for m in members] == [12, 8]
    assert sum(m.accounting().lost for m in members) == accounting.lost
