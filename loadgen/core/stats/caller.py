"""Latency as the callers saw it: what each Locust process records, and the exact merge of their reports.

Each Locust process records into one :func:`caller_recorder` (a :class:`ShardStats` named after
the process), in the families the shards never use:

* ``latency``: (function, outcome), from the call's *intended start* to its result as the caller
  received it: the open model's scheduled arrival time, or the moment the closed model's user
  issued the call. Outcomes (:data:`CALLER_OUTCOMES`): ``completed``, ``failed``, ``expired``
  (a result that ended so), ``rejected`` (the dispatch itself failed: no call was accepted) and
  ``accepted`` (a dispatch that does not wait: its result is its acceptance);
* ``lag``: (user class, ``arrival`` | ``task``), how far behind its schedule the generator ran:
  an open-model arrival's start minus its intended time, a closed-model task's first call minus
  (the end of the previous task plus the wait time Locust chose);
* ``loop_lag``: (process, ``loop``), how late the process's event loop ran a 50 ms timer (CPU
  saturation of the load generator, whatever the load model).

Counters: ``arrivals``, ``late``, ``dropped`` (open model). Gauges, per process at its report:
``waiting`` (calls its users wait for) and ``oldest_waiting_us`` (how long the oldest of them
has waited since its intended start; merged: read the largest with :func:`oldest_waiting_us`).

Across processes (:class:`LatestReports`): each report is the process's *cumulative*
snapshot with the test id and a sequence number that never goes back; the aggregator keeps
the latest report of each process for the current test and merges them exactly. A
duplicated, reordered or lost report changes nothing once a later one arrives; after a
process's final report only a later final one replaces it; a report of an earlier test is
ignored; a process that died stays counted with its last report. Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from loadgen.core.counters import ARRIVALS, DROPPED, LATE
from loadgen.core.stats.recorder import ShardStats
from loadgen.core.stats.snapshot import Snapshot, merge_snapshots

__all__ = [
    "CALLER_OUTCOMES",
    "GAUGE_OLDEST_WAITING",
    "GAUGE_WAITING",
    "LAG_KINDS",
    "CallerReport",
    "LatestReports",
    "caller_recorder",
    "oldest_waiting_us",
    "outcome_of",
]

GAUGE_WAITING: Final = "waiting"
GAUGE_OLDEST_WAITING: Final = "oldest_waiting_us"
CALLER_OUTCOMES: Final = ("completed", "failed", "expired", "cancelled", "rejected", "accepted")
LAG_KINDS: Final = ("arrival", "task")
_BY_STATUS: Final = {"OK": "completed", "TIMEOUT": "expired", "CANCELLED": "cancelled"}


def caller_recorder(process: str) -> ShardStats:
    """A fresh recorder for one Locust process's caller-side statistics."""
    return ShardStats(process, counters=(ARRIVALS, LATE, DROPPED), gauges=())


def oldest_waiting_us(snapshot: Snapshot) -> int:
    """The longest any call of *snapshot*'s processes had waited at their last reports, in µs."""
    return max((s.gauges.get(GAUGE_OLDEST_WAITING, 0) for s in snapshot.per_shard.values()), default=0)


def outcome_of(status: str) -> str:
    """The ``latency`` outcome of a result whose final status is *status* (``"OK"``, ``"TIMEOUT"``, ...)."""
    return _BY_STATUS.get(status, "failed")


@dataclass(frozen=True, slots=True)
class CallerReport:
    """One process's cumulative caller-side statistics, as it reports them."""

    process: str
    test: int
    seq: int
    snapshot: Snapshot
    final: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "test": self.test,
            "seq": self.seq,
            "final": self.final,
            "snapshot": self.snapshot.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> CallerReport:
        """Inverse of :meth:`to_json`; ``ValueError`` on anything else."""
        if not isinstance(data, Mapping):
            raise ValueError("a caller report must be an object")
        process, test, seq, final = data.get("process"), data.get("test"), data.get("seq"), data.get("final", False)
        if not isinstance(process, str) or type(test) is not int or type(seq) is not int or type(final) is not bool:
            raise ValueError("a caller report has a process name, integer test and seq, and a boolean final")
        return cls(process, test, seq, Snapshot.from_json(data.get("snapshot")), final)


class LatestReports:
    """The latest caller report of each process of the current test, merged exactly (see the module)."""

    def __init__(self) -> None:
        self.test = 0
        self._latest: dict[str, CallerReport] = {}
        self._merged: Snapshot | None = None

    def start(self, test: int) -> None:
        """A new test *test* begins: reports of any other test are ignored from now on."""
        self.test = test
        self._latest.clear()
        self._merged = None

    def offer(self, client: str, report: CallerReport) -> bool:
        """Keep *report* of process *client* if it is of this test and later than the one kept; say whether."""
        if report.test != self.test:
            return False
        have = self._latest.get(client)
        if have is not None and (report.seq <= have.seq or (have.final and not report.final)):
            return False
        self._latest[client] = report
        self._merged = None
        return True

    def reports(self) -> dict[str, CallerReport]:
        """The kept report of each process, by client id."""
        return dict(self._latest)

    def missing_final(self, clients: Iterable[str]) -> list[str]:
        """Those of *clients* whose final report has not come."""
        return sorted(c for c in clients if not (c in self._latest and self._latest[c].final))

    def merged(self) -> Snapshot:
        """The exact sum of every process's latest snapshot (processes with one name kept apart)."""
        if self._merged is None:
            parts: list[Snapshot] = []
            taken: set[str] = set()
            for client, report in sorted(self._latest.items()):
                parts.append(_named(report.snapshot, report.process, client, taken))
            self._merged = merge_snapshots(parts)
        return self._merged


def _named(snapshot: Snapshot, process: str, client: str, taken: set[str]) -> Snapshot:
    """*snapshot* with its one process named *process*, or ``process@client`` if that name is taken."""
    name = process if process not in taken else f"{process}@{client}"
    taken.add(name)
    summaries = list(snapshot.per_shard.values())
    if len(summaries) != 1 or next(iter(snapshot.per_shard)) == name:
        return snapshot
    return Snapshot({name: summaries[0]}, snapshot.histograms)
