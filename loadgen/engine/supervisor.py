"""``Supervisor``: starts the shard processes, watches them, restarts the dead, drains them all.

* **Readiness**: every shard reports its private address; peers are then
  broadcast, and only then is the engine ready (``start()`` returns).
* **Health**: ``check()`` (call it about once a second) asks each shard for
  a stats snapshot over its pipe, and every :data:`PROBE_SECONDS` connects to each
  shard's private address afresh, as a new client would: a shard that answers its pipe
  but accepts no connection (at its connection cap, out of descriptors) is logged, with
  its open descriptors, once per episode. A shard that exited or does not answer in
  time is killed and restarted under a new incarnation; the calls it had
  accepted and not reported finished are counted as *lost* (exactly, from the
  shared-memory ledger), never dropped silently.
* **Drain**: ``drain(timeout, reason)`` stops intake, lets in-flight calls finish up to
  *timeout*, cancels the rest (outcome ``cancelled``, *reason* their error message), and
  returns the final merged snapshot.
* **No orphans**: shards die with the supervisor (``PR_SET_PDEATHSIG`` and the
  pipe closing), and ``close()`` kills whatever is left.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from loadgen.core.counters import LOST
from loadgen.core.stats import ShardStats, Snapshot, merge_snapshots
from loadgen.engine.control import Drain, Drained, Peers, Ready, SnapshotReply, SnapshotRequest, ToSupervisor
from loadgen.engine.ledger import Ledger
from loadgen.engine.limits import probe
from loadgen.engine.settings import EngineSetup
from loadgen.engine.shard import ShardConfig, run_shard

__all__ = ["EngineSetup", "ShardFailed", "Supervisor"]

_CONTEXT = multiprocessing.get_context("spawn")


class ShardFailed(RuntimeError):
    """A shard could not start (the message says why)."""


PROBE_SECONDS = 5.0
"""How often ``check()`` connects to each shard afresh."""

log = logging.getLogger("loadgen.supervisor")


DRAIN_GRACE_S = 10.0
"""How long past its drain timeout a shard may take to cancel what is left and send its final snapshot."""
CANCEL_ALLOWANCE_S = 200e-6
"""More grace per call in flight at its last snapshot: cancelling takes ~50 µs a call on a busy machine
(45,000 calls: 2.4 s), and a shard killed before it reports has its calls counted lost."""


@dataclass
class _Slot:
    config: ShardConfig
    process: BaseProcess
    conn: Connection
    address: str = ""
    last: Snapshot | None = None
    refusing: bool = False  # the last probe found no new connection accepted
    silent_since: float | None = None  # when a health check first went unanswered (None: it answers)


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket so the shards can share the port and nobody else takes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    if port and probe.connect_ex((host, port)) == 0:
        probe.close()
        raise ShardFailed(f"{host}:{port} is already in use")
    probe.close()
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ShardFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class Supervisor:
    """Runs the shard processes of *setup* behind one shared address."""

    def __init__(self, setup: EngineSetup) -> None:
        shards = setup.settings.shard_count
        if shards < 1 or shards > 255:
            raise ValueError("shards must be between 1 and 255")
        self.setup = setup
        self.shards = shards
        self._reserved: list[socket.socket] = []
        self._ledger: Ledger | None = None
        self._slots: dict[int, _Slot] = {}
        self._retired: list[Snapshot] = []
        self._private_ports: dict[int, int] = {}
        self._requests = itertools.count(1)  # numbers the snapshot requests, so a late reply is told apart
        self._epoch_base = secrets.randbits(24)
        self._incarnations: dict[int, int] = {}
        self.lost = 0
        self.restarts = 0
        self._probed_at = time.monotonic()
        self.port = setup.port
        self.connect_port = 0

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host = f"[{self.setup.host}]" if ":" in self.setup.host else self.setup.host
        return f"http://{host}:{self.port}"

    @property
    def connect_url(self) -> str | None:
        if not self.connect_port:
            return None
        host = f"[{self.setup.host}]" if ":" in self.setup.host else self.setup.host
        return f"http://{host}:{self.connect_port}"

    @property
    def shard_addresses(self) -> list[str]:
        """Each shard's private gRPC address (all serve Dispatch, Wait and Stats)."""
        return [self._slots[i].address for i in sorted(self._slots)]

    def start(self) -> None:
        """Start every shard and return once all serve."""
        setup = self.setup
        grpc_socket = _reserve(setup.host, setup.port)
        self._reserved.append(grpc_socket)
        self.port = grpc_socket.getsockname()[1]
        if setup.connect_port is not None:
            connect_socket = _reserve(setup.host, setup.connect_port)
            self._reserved.append(connect_socket)
            self.connect_port = connect_socket.getsockname()[1]
        for index in range(self.shards):  # a restarted shard serves on its predecessor's own address
            private = _reserve("127.0.0.1", 0)
            self._reserved.append(private)
            self._private_ports[index] = private.getsockname()[1]
        self._ledger = Ledger(self.shards)
        try:
            for index in range(self.shards):
                self._spawn(index)
            for index in range(self.shards):
                self._await_ready(self._slots[index])
        except BaseException:
            self.close()
            raise
        self._broadcast_peers()

    def _config(self, index: int) -> ShardConfig:
        assert self._ledger is not None
        incarnation = self._incarnations.get(index, -1) + 1
        self._incarnations[index] = incarnation
        return ShardConfig(
            index=index,
            epoch=(self._epoch_base + incarnation) & 0xFFFFFF,
            setup=self.setup,
            port=self.port,
            connect_port=self.connect_port,
            ledger=self._ledger.handle,
            ledger_rows=self.shards,
            private_port=self._private_ports.get(index, 0),
        )

    def _spawn(self, index: int) -> None:
        config = self._config(index)
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=run_shard, args=(config, theirs, os.getpid()), name=f"loadgen-shard-{index}", daemon=True
        )
        process.start()
        theirs.close()
        self._slots[index] = _Slot(config, process, ours)

    def _await_ready(self, slot: _Slot) -> None:
        message = self._receive(slot, self.setup.ready_timeout, lambda m: isinstance(m, Ready))
        if not isinstance(message, Ready):
            code = slot.process.exitcode
            raise ShardFailed(
                f"shard {slot.config.index} did not start within {self.setup.ready_timeout:.0f}s"
                + (f" (exit code {code})" if code is not None else "")
            )
        slot.address = message.address

    def _receive(self, slot: _Slot, timeout: float, wanted: Callable[[ToSupervisor], bool]) -> ToSupervisor | None:
        """The first message from *slot* that is *wanted* within *timeout* seconds; messages before it (late
        answers to requests the supervisor stopped waiting for) are read and dropped. None: timeout or dead."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                if slot.conn.poll(min(remaining, 0.2)):
                    message: ToSupervisor = slot.conn.recv()
                    if wanted(message):
                        return message
                    continue
            except (EOFError, OSError):
                return None
            if not slot.process.is_alive() and not slot.conn.poll(0):
                return None

    def _broadcast_peers(self) -> None:
        peers = {index: (slot.address, slot.config.epoch) for index, slot in self._slots.items()}
        for slot in self._slots.values():
            with contextlib.suppress(OSError):
                slot.conn.send(Peers(peers))

    # --------------------------------------------------------------- health

    def check(self) -> list[int]:
        """Collect a snapshot from every shard; restart the dead, and the hung: silent for ``hang_timeout``
        (a shard slowed down by a busy machine answers late, and is not killed for it). Returns restarted
        indexes."""
        restarted = []
        for index, slot in list(self._slots.items()):
            asked = time.monotonic()
            snapshot = self._ask_snapshot(slot)
            if snapshot is not None:
                if slot.silent_since is not None:
                    log.warning("loadgen: shard %d answers again", index)
                slot.last, slot.silent_since = snapshot, None
                continue
            if slot.process.is_alive():
                if slot.silent_since is None:
                    slot.silent_since = asked
                    log.warning(
                        "loadgen: shard %d did not answer within %.0f s (a busy machine?); restarted if silent"
                        " for %.0f s",
                        index,
                        self.setup.health_timeout,
                        self.setup.hang_timeout,
                    )
                if time.monotonic() - slot.silent_since < self.setup.hang_timeout:
                    continue
                log.warning("loadgen: shard %d silent for %.0f s: killed and restarted", index, self.setup.hang_timeout)
            self._restart(index)
            restarted.append(index)
        if time.monotonic() - self._probed_at >= PROBE_SECONDS:
            self._probed_at = time.monotonic()
            for index, slot in self._slots.items():
                if index not in restarted:
                    self._probe(slot)
        if restarted:
            self._broadcast_peers()
        return restarted

    def _probe(self, slot: _Slot) -> None:
        problem = probe(slot.address)
        if problem is not None and not slot.refusing:
            descriptors = slot.last.gauges.get("open_descriptors", 0) if slot.last is not None else 0
            log.warning(
                "loadgen: shard %d serves, but %s on %s (%d descriptors open): new clients cannot connect",
                slot.config.index,
                problem,
                slot.address,
                descriptors,
            )
        elif problem is None and slot.refusing:
            log.warning("loadgen: shard %d accepts new connections again", slot.config.index)
        slot.refusing = problem is not None

    def _ask_snapshot(self, slot: _Slot) -> Snapshot | None:
        if not slot.process.is_alive():
            return None
        seq = next(self._requests)
        try:
            slot.conn.send(SnapshotRequest(seq))
        except OSError:
            return None
        message = self._receive(
            slot, self.setup.health_timeout, lambda m: isinstance(m, SnapshotReply) and m.seq == seq
        )
        if not isinstance(message, SnapshotReply):
            return None
        return Snapshot.from_bytes(message.snapshot)

    def _restart(self, index: int) -> None:
        slot = self._slots[index]
        self._kill(slot)
        self._retire(slot)
        self.restarts += 1
        self._spawn(index)
        self._await_ready(self._slots[index])

    def _retire(self, slot: _Slot) -> None:
        """Account for a dead incarnation: what its last snapshot saw, plus the calls it lost."""
        assert self._ledger is not None
        index = slot.config.index
        accepted, ended = self._ledger.outcomes(index)
        last = slot.last or ShardStats(f"shard-{index}").snapshot()
        retired = last.retired(accepted, ended=ended, rejected=self._ledger.rejected(index))
        self.lost += retired.counters.get(LOST, 0)
        self._retired.append(retired)
        self._ledger.reset(index)

    @staticmethod
    def _kill(slot: _Slot) -> None:
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(5)
        slot.conn.close()

    # ------------------------------------------------------------ snapshots

    def snapshot(self) -> Snapshot:
        """Merged statistics of every shard (live ones as of now, dead ones as retired)."""
        parts = list(self._retired)
        for slot in self._slots.values():
            current = self._ask_snapshot(slot) or slot.last
            if current is not None:
                slot.last = current
                parts.append(current)
        return merge_snapshots(parts)

    def drain(self, timeout: float, reason: str = "the service stopped before the call finished") -> Snapshot:
        """Stop intake, let in-flight calls finish for up to *timeout* seconds, return the final merged snapshot.

        The calls still in flight then end as ``cancelled``, *reason* their error message.
        """
        for slot in self._slots.values():
            with contextlib.suppress(OSError):
                slot.conn.send(Drain(max(0.0, timeout), reason))
        finals = []
        started = time.monotonic()
        for slot in self._slots.values():
            in_flight = slot.last.gauges.get("in_flight", 0) if slot.last is not None else 0
            allowed = timeout + DRAIN_GRACE_S + in_flight * CANCEL_ALLOWANCE_S
            remaining = max(0.0, started + allowed - time.monotonic())
            message = self._receive(slot, remaining, lambda m: isinstance(m, Drained))
            if isinstance(message, Drained):
                finals.append(Snapshot.from_bytes(message.snapshot))
                slot.process.join(10)
            else:  # died or hung while draining: what it had is lost
                log.warning(
                    "loadgen: shard %d did not report the end of its drain within %.0f s; killed, the calls it had"
                    " in flight count as lost",
                    slot.config.index,
                    allowed,
                )
                self._kill(slot)
                self._retire(slot)
        self.close()
        return merge_snapshots(finals + self._retired)

    def close(self) -> None:
        """Kill every shard still running and free the ports and the ledger."""
        for slot in self._slots.values():
            self._kill(slot)
        for sock in self._reserved:
            sock.close()
        self._reserved.clear()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
