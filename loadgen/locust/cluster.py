"""Worker machines with shards of their own: the master hands out the run's configuration, each
worker reports its shards' statistics, the master keeps the latest of each and notices the dead.

Messages (Locust custom messages, so they travel only where Locust's own do):

=============================  ==========  ====================================================
message                        direction   data
=============================  ==========  ====================================================
``loadgen_config_request``     worker →    nothing: the worker connected and wants the run
``loadgen_config``             → worker    the configuration (scenario, endpoint URL, API and
                                           signing keys); never logged
``loadgen_refused``            → worker    ``reason``: the run started without it (a worker
                                           joins before the test starts, or not at all)
``loadgen_worker_ready``       worker →    ``host``, ``shards``: its shards serve
=============================  ==========  ====================================================

Each Locust report of a worker carries its shards' merged *cumulative* snapshot
(:data:`REPORT_KEY`), so the latest one per worker is exact and the master's merge
(:func:`~loadgen.core.stats.fleet.fleet_snapshot`) is the run's statistics. A worker that
disappears while the test runs (Locust marks it missing when its heartbeats stop, or it quit)
is *lost*: the calls it had in flight at its last report count as lost.

:data:`fleet` is the master's view; :data:`worker_side` the hooks a worker's locustfile sets.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import gevent  # type: ignore[import-untyped]
import orjson
from locust.runners import STATE_MISSING

from loadgen.core.stats import Snapshot
from loadgen.core.stats.fleet import FleetMember, fleet_snapshot
from loadgen.locust.options import MASTER_CONFIG_FD_ENV

__all__ = [
    "CONFIG",
    "CONFIG_REQUEST",
    "READY",
    "REFUSED",
    "REPORT_KEY",
    "Fleet",
    "WorkerSide",
    "fleet",
    "worker_side",
]

logger = logging.getLogger(__name__)

CONFIG_REQUEST: Final = "loadgen_config_request"
CONFIG: Final = "loadgen_config"
REFUSED: Final = "loadgen_refused"
READY: Final = "loadgen_worker_ready"
REPORT_KEY: Final = "loadgen_shards"
WATCH_SECONDS: Final = 1.0
SILENT_SECONDS: Final = 10.0


@dataclass
class WorkerEntry:
    """What the master knows of one worker."""

    id: str
    label: str
    joined_at: float
    host: str = ""
    shards: int = 0
    state: str = "connected"  # connected → ready → (lost | left)
    snapshot: Snapshot | None = None
    reports: int = 0
    lost_in_flight: int = 0
    heard_at: float = field(default_factory=time.monotonic)  # its last report (or when it became ready)

    def member(self) -> FleetMember | None:
        if self.snapshot is None:
            return None
        return FleetMember(self.label, self.snapshot, lost=self.state == "lost")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.label,
            "locust_id": self.id,
            "host": self.host,
            "shards": self.shards,
            "state": self.state,
            "reports": self.reports,
            "lost_in_flight": self.lost_in_flight,
            "snapshot": self.snapshot.to_json() if self.snapshot is not None else None,
        }


@dataclass
class Fleet:
    """The master's view of its workers (empty, :attr:`active` false, unless ``loadgen run --master``)."""

    config: dict[str, Any] | None = None
    workers: dict[str, WorkerEntry] = field(default_factory=dict)
    started_at: float | None = None
    ending: bool = False
    file: str = ""
    _merged: Snapshot | None = None  # merged() until a report or a loss changes it

    @property
    def active(self) -> bool:
        return self.config is not None

    def load_config(self) -> None:
        """Read the configuration from the pipe ``loadgen run`` handed over (``$LOADGEN_MASTER_CONFIG_FD``)."""
        value = os.environ.get(MASTER_CONFIG_FD_ENV)
        if not value:
            return
        with os.fdopen(int(value), "rb") as pipe:
            self.config = orjson.loads(pipe.read())

    # ----------------------------------------------------------------- messages

    def guard(self, runner: Any) -> None:
        """Keep a worker that connects after the start out of Locust's list of workers.

        Locust would hand it users at once (taking them from the others mid-call) before it could
        hear it is not wanted; instead it gets Locust's ``ack``, asks for the configuration as every
        worker does, and is turned away (:meth:`on_request`).
        """
        handle = runner.handle_message

        def handle_message(client_id: str, msg: Any) -> None:
            late = self.started_at is not None and client_id not in self.workers and client_id not in runner.clients
            if msg.type == "client_ready" and late:
                runner.send_message("ack", {"index": -1}, client_id=client_id)
                return
            handle(client_id, msg)

        runner.handle_message = handle_message

    def on_request(self, runner: Any, client_id: str) -> None:
        if self.config is None:
            return
        if self.started_at is not None:
            started = time.strftime("%H:%M:%S", time.gmtime(self.started_at))
            reason = f"the run started at {started} UTC without this worker: start every worker before the run starts"
            logger.warning("a worker (%s) joined after the start and was turned away", client_id)
            runner.send_message(REFUSED, {"reason": reason}, client_id=client_id)
            return
        index = runner.get_worker_index(client_id) if hasattr(runner, "get_worker_index") else len(self.workers)
        self.workers[client_id] = WorkerEntry(client_id, f"worker-{index}", time.time())
        runner.send_message(CONFIG, self.config, client_id=client_id)

    def on_ready(self, client_id: str, data: Any) -> None:
        entry = self.workers.get(client_id)
        if entry is None or not isinstance(data, dict):
            return
        entry.host = str(data.get("host", ""))
        entry.shards = int(data.get("shards", 0))
        entry.state = "ready"
        entry.heard_at = time.monotonic()
        logger.warning("%s ready on %s: %d shard(s)", entry.label, entry.host or "?", entry.shards)

    def on_report(self, client_id: str, data: Any) -> None:
        entry = self.workers.get(client_id)
        if entry is None or entry.state in ("lost", "left") or not isinstance(data, dict):
            return
        raw = data.get("snapshot")
        if not isinstance(raw, bytes | bytearray):
            return
        try:
            entry.snapshot = Snapshot.from_bytes(bytes(raw))
        except ValueError as exc:
            logger.warning("ignoring a malformed shard report from %s: %s", entry.label, exc)
            return
        entry.reports += 1
        entry.heard_at = time.monotonic()
        self._merged = None

    # ------------------------------------------------------------------ state

    def ready_count(self) -> int:
        return sum(1 for entry in self.workers.values() if entry.state == "ready")

    def wait_ready(self, runner: Any, timeout: float) -> None:
        """Before the test starts: until every connected worker's shards serve (or it left), bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.watch(runner)
            pending = [e for e in self.workers.values() if e.state == "connected"]
            if not pending and self.workers:
                break
            gevent.sleep(0.1)
        self.started_at = time.time()

    def watch(self, runner: Any) -> None:
        """Notice the workers that went away: lost while the run goes on, left once it ends.

        Gone means Locust marked it missing (its heartbeats stopped), or it sent no report for
        :data:`SILENT_SECONDS` (it quit: a worker that stops its users between tests leaves
        Locust's list for a while, but goes on reporting).
        """
        now = time.monotonic()
        for client_id, entry in self.workers.items():
            if entry.state not in ("connected", "ready"):
                continue
            node = runner.clients.get(client_id)
            missing = node is not None and node.state == STATE_MISSING
            silent = node is None and now - entry.heard_at > SILENT_SECONDS
            if not (missing or silent):
                continue
            if self.ending or self.started_at is None:
                entry.state = "left"
                continue
            entry.state = "lost"
            self._merged = None
            entry.lost_in_flight = entry.snapshot.accounting().in_flight if entry.snapshot is not None else 0
            logger.warning(
                "%s (%s) lost: %d call(s) in flight at its last report count as lost",
                entry.label,
                entry.host or client_id,
                entry.lost_in_flight,
            )

    def merged(self) -> Snapshot:
        """The run's statistics: every worker's latest snapshot, the lost ones' calls in flight as lost."""
        if self._merged is None:
            members = [m for m in (e.member() for e in self.workers.values()) if m is not None]
            self._merged = fleet_snapshot(members)
        return self._merged

    def in_flight(self) -> int:
        return self.merged().accounting().in_flight

    def document(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "workers": [entry.to_json() for entry in self.workers.values()],
        }

    def write(self) -> None:
        if not self.file:
            return
        try:
            temporary = f"{self.file}.tmp"
            with open(temporary, "wb") as out:
                out.write(orjson.dumps(self.document()))
            os.replace(temporary, self.file)
        except OSError as exc:
            logger.warning("cannot write the workers file %s: %s", self.file, exc)

    def loop(self, runner: Any, ready_timeout: float | None) -> None:
        """Every second: notice workers gone, write the workers file; give up when, *ready_timeout* s
        after the start of this process, the test has not started (``None``: wait for ever, as a web UI does)."""
        born = time.monotonic()
        while True:
            self.watch(runner)
            self.write()
            if ready_timeout is not None and self.started_at is None and time.monotonic() - born > ready_timeout:
                self.give_up(runner, ready_timeout)
            gevent.sleep(WATCH_SECONDS)

    def give_up(self, runner: Any, ready_timeout: float) -> None:
        """Not every worker came in time: tell those that did to quit, and end this process (exit code 3)."""
        ready = self.ready_count()
        logger.error("%d worker(s) ready after %gs, fewer than expected: not starting", ready, ready_timeout)
        for client_id in set(self.workers) | {node.id for node in runner.clients.all}:
            runner.send_message("quit", None, client_id=client_id)
        gevent.sleep(0.5)  # the quit messages on their way
        os._exit(3)


@dataclass
class WorkerSide:
    """A worker's hooks, set by the locustfile of ``loadgen worker``: *configure* gets the master's
    configuration and returns what to tell it (``host``, ``shards``) once the shards serve;
    *refused* hears why the master turned it away; :attr:`snapshot` is the shards' latest report."""

    configure: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    refused: Callable[[str], None] | None = None
    snapshot: bytes | None = None

    @property
    def active(self) -> bool:
        return self.configure is not None


fleet = Fleet()
worker_side = WorkerSide()
