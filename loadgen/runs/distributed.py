"""``loadgen run --master``: the master machine's view of its ``loadgen worker`` machines.

The Locust master (:mod:`loadgen.locust.cluster`) writes ``workers.json`` in the run folder every
second: each worker's state (``connected``, ``ready``, ``lost``, ``left``), host, shard count
and latest cumulative snapshot. :class:`FleetShards` reads it where a local run asks its
supervisor: the merged statistics (a lost worker's calls in flight at its last report count as
lost), the workers' notices for the progress lines, the per-worker accounting of
``summary.json``. The run's configuration reaches the Locust master through a pipe
(:func:`config_pipe`), never a command line, an environment or a file.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from loadgen.core.stats import Snapshot
from loadgen.core.stats.fleet import FleetMember, fleet_snapshot
from loadgen.runs.locust_process import WORKERS_FILE

__all__ = ["FleetShards", "WorkerState", "advertised_url", "config_pipe", "worker_line"]

WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class WorkerState:
    """One worker as the master last wrote it."""

    id: str
    host: str
    shards: int
    state: str
    lost_in_flight: int
    snapshot: Snapshot | None

    def member(self) -> FleetMember | None:
        return None if self.snapshot is None else FleetMember(self.id, self.snapshot, lost=self.state == "lost")

    def summary(self) -> dict[str, Any]:
        """Its line of ``summary.json``'s ``workers``."""
        member = self.member()
        accounting = member.accounting() if member is not None else None
        return {
            "id": self.id,
            "host": self.host,
            "shards": self.shards,
            "state": self.state,
            "lost_in_flight": self.lost_in_flight,
            "accounting": None if accounting is None else {**asdict(accounting), "balanced": accounting.balanced},
        }


def _parse(data: Any) -> tuple[float | None, list[WorkerState]]:
    if not isinstance(data, dict) or not isinstance(data.get("workers"), list):
        raise ValueError("not a workers file")
    workers = []
    for item in data["workers"]:
        raw = item.get("snapshot")
        workers.append(
            WorkerState(
                id=str(item.get("id", "?")),
                host=str(item.get("host", "")),
                shards=int(item.get("shards", 0)),
                state=str(item.get("state", "")),
                lost_in_flight=int(item.get("lost_in_flight", 0)),
                snapshot=Snapshot.from_json(raw) if raw is not None else None,
            )
        )
    started = data.get("started_at")
    return (float(started) if started is not None else None), workers


class FleetShards:
    """The workers' shards as a run sees them (the same questions a local run asks its supervisor)."""

    def __init__(self, run_dir: Path, expected: int) -> None:
        self.path = run_dir / WORKERS_FILE
        self.expected = expected
        self.started_at: float | None = None
        self.workers: list[WorkerState] = []
        self._announced: set[str] = set()

    def read(self) -> None:
        try:
            self.started_at, self.workers = _parse(orjson.loads(self.path.read_bytes()))
        except (OSError, ValueError):
            return  # none yet, or being replaced: the last one read stands

    def snapshot(self) -> Snapshot:
        self.read()
        return fleet_snapshot(m for m in (w.member() for w in self.workers) if m is not None)

    def ready(self) -> list[WorkerState]:
        return [w for w in self.workers if w.state in ("ready", "lost", "left")]

    def notices(self) -> list[str]:
        """What changed since the last call: workers ready, lost."""
        self.read()
        out = []
        for worker in self.workers:
            key = f"{worker.id}:{worker.state}"
            if key in self._announced:
                continue
            self._announced.add(key)
            if worker.state == "ready":
                out.append(f"{worker.id} ready ({worker.host}, {worker.shards} shard(s))")
            elif worker.state == "lost":
                out.append(
                    f"{worker.id} ({worker.host}) lost: {worker.lost_in_flight} call(s) in flight at its last report"
                    " count as lost; the run goes on with the others"
                )
        return out

    def waiting_text(self) -> str:
        ready = self.ready()
        names = ", ".join(f"{w.id} ({w.host})" for w in ready) or "none"
        return f"{len(ready)} of {self.expected} worker(s) ready (ready: {names})"

    def summaries(self) -> list[dict[str, Any]]:
        return [worker.summary() for worker in self.workers]

    def finish(self, drain_timeout: float, reason: str) -> Snapshot:
        """The final snapshot: the master already let the workers' calls settle before it quit."""
        return self.snapshot()


def worker_line(worker: dict[str, Any]) -> str:
    """A worker's line in the printed summary (from :meth:`WorkerState.summary`)."""
    accounting = worker.get("accounting") or {}
    counts = ", ".join(
        f"{name} {accounting.get(name, 0)}"
        for name in ("accepted", "completed", "failed", "expired", "cancelled", "in_flight", "lost")
    )
    return f"{worker['id']} ({worker['host']}, {worker['shards']} shard(s), {worker['state']}): {counts}"


def advertised_url(url: str, bind_host: str) -> str:
    """The URL workers reach a service of the master at: *url*, its wildcard host replaced by this host's name."""
    if bind_host not in WILDCARDS:
        return url
    for wildcard in ("0.0.0.0", "[::]"):
        url = url.replace(f"//{wildcard}:", f"//{socket.getfqdn()}:")
    return url


def config_pipe(config: dict[str, Any]) -> int:
    """A pipe holding *config* (JSON), its write end closed: the read end's descriptor, for a child."""
    data = orjson.dumps(config)
    read, write = os.pipe()
    try:
        if len(data) > 60_000:  # a pipe holds 64 KiB without a reader; a scenario is far smaller
            raise ValueError(f"the run's configuration is {len(data)} bytes, too large to hand over")
        os.write(write, data)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    return read
