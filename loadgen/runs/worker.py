"""``loadgen worker --master HOST[:PORT]``: one load machine of a distributed ``loadgen run --master``.

Two processes, so that Locust's gevent and the shards' uvloop never share one:

* this one, plain Python: it owns the shard :class:`~loadgen.engine.supervisor.Supervisor`
  and a Locust worker child (``loadgen/runs/locustfile.py``, worker mode), and talks to the
  child over a private channel (:mod:`.worker_channel`);
* the Locust worker connects to the master, asks for the run's configuration (a Locust custom
  message: the scenario, the endpoint URL, the API and signing keys, never in a command line,
  an environment or a log) and hands it here. The shards start (the scenario's ``[engine]``,
  bound to ``--bind-host``), their addresses go back to the child, and its users drive only
  them. Every second the shards' merged snapshot goes to the child, which sends it to the
  master with each Locust report.

The child dies with this process (``PR_SET_PDEATHSIG``: SIGKILL this one and the master sees a
worker vanish), the shards die with the supervisor. When the master's run ends it tells the
Locust worker to quit; the shards then drain (:data:`DRAIN_SECONDS`) and this command exits 0.
Exit codes: 0 the master ended the run, 2 usage error, 3 no run (the master could not be
reached, turned this worker away, or the shards could not start).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from loadgen.children import die_with_parent, terminate
from loadgen.engine.settings import EngineSetup
from loadgen.engine.supervisor import ShardFailed, Supervisor
from loadgen.runs.gates import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from loadgen.runs.locust_process import LOCUSTFILE
from loadgen.runs.scenario import ScenarioError, parse_redacted
from loadgen.runs.worker_channel import CHANNEL_ENV, Channel, ChannelClosed

__all__ = ["DEFAULT_MASTER_PORT", "WorkerOptions", "parse_master", "work"]

DEFAULT_MASTER_PORT = 5557
DRAIN_SECONDS = 5.0
REPORT_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerOptions:
    master: str
    bind_host: str = "127.0.0.1"
    connect_timeout: float = 60.0


def parse_master(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too) → ``(host, port)``; ``ValueError`` when it is not one."""
    text = text.strip()
    if not text:
        raise ValueError("the master's address is empty")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    if not port_text:
        return host, DEFAULT_MASTER_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {text!r} (HOST or HOST:PORT, port 1-65535)")
    return host, int(port_text)


def _say(text: str) -> None:
    print(f"loadgen worker: {text}", file=sys.stderr, flush=True)


def _reader(channel: Channel, inbox: queue.Queue[dict[str, Any] | None]) -> None:
    try:
        while True:
            inbox.put(channel.receive())
    except (ChannelClosed, OSError):
        inbox.put(None)


class _Stop:
    def __init__(self) -> None:
        self.signal = ""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = signal.Signals(signum).name


def _start_shards(config: dict[str, Any], bind_host: str) -> Supervisor:
    scenario = parse_redacted(config.get("scenario") or {}, "the master's scenario")
    setup = EngineSetup(
        endpoint_url=str(config["endpoint_url"]),
        api_key=str(config["api_key"]),
        signing_key=str(config["signing_key"]),
        host=bind_host,
        port=0,
        settings=scenario.engine,
    )
    supervisor = Supervisor(setup)
    supervisor.start()
    return supervisor


def work(options: WorkerOptions) -> int:
    """Run one worker machine until the master's run ends; return the exit code."""
    try:
        host, port = parse_master(options.master)
    except ValueError as exc:
        _say(f"--master: {exc}")
        return EXIT_USAGE
    stop = _Stop()
    ours, theirs = socket.socketpair()
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--loglevel", "WARNING"]
    command += ["--master-host", host, "--master-port", str(port)]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPATCH_API_KEY", "LOADGEN_SIGNING_KEY")}
    env[CHANNEL_ENV] = str(theirs.fileno())
    child = subprocess.Popen(  # own session: a Ctrl-C reaches us, and we stop it in order
        command, env=env, pass_fds=[theirs.fileno()], start_new_session=True, preexec_fn=die_with_parent
    )
    theirs.close()
    _say(f"connecting to the master at {host}:{port} (Locust worker pid {child.pid})")
    machine = _Machine(options, Channel(ours), child, stop)
    try:
        return machine.serve()
    finally:
        machine.close()


class _Machine:
    """The worker's state: the channel to the Locust child, and the shards once the run came."""

    def __init__(self, options: WorkerOptions, channel: Channel, child: subprocess.Popen[bytes], stop: _Stop) -> None:
        self.options = options
        self.channel = channel
        self.child = child
        self.stop = stop
        self.supervisor: Supervisor | None = None
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=_reader, args=(channel, self.inbox), daemon=True).start()

    def serve(self) -> int:
        started = time.monotonic()
        next_report = 0.0
        while True:
            configured = self.supervisor is not None
            if self.stop.signal:
                _say(f"{self.stop.signal}: stopping")
                return EXIT_OK if configured else EXIT_RUN_FAILED
            if self.child.poll() is not None:
                if configured:
                    _say("the master ended the run")
                    return EXIT_OK if self.child.returncode == 0 else EXIT_RUN_FAILED
                _say(f"no run: the Locust worker exited (code {self.child.returncode}) before the master sent one")
                return EXIT_RUN_FAILED
            if not configured and time.monotonic() - started > self.options.connect_timeout:
                _say(f"no run: none came from the master within {self.options.connect_timeout:g}s")
                return EXIT_RUN_FAILED
            try:
                message = self.inbox.get(timeout=0.2)
            except queue.Empty:
                message = {"kind": ""}
            if message is None:  # the child closed its end: it is exiting
                with suppress(subprocess.TimeoutExpired):
                    self.child.wait(5)
                continue
            if message["kind"] == "refused":
                _say(f"turned away: {message.get('reason', '')}")
                return EXIT_RUN_FAILED
            if message["kind"] == "config" and not configured and not self._configure(message):
                return EXIT_RUN_FAILED
            if self.supervisor is not None and time.monotonic() >= next_report:
                next_report = time.monotonic() + REPORT_SECONDS
                self._report(self.supervisor)

    def _configure(self, config: dict[str, Any]) -> bool:
        try:
            self.supervisor = _start_shards(config, self.options.bind_host)
        except (ShardFailed, ScenarioError, KeyError, ValueError, OSError) as exc:
            self.channel.send("failed", reason=f"the shards could not start: {exc}")
            _say(f"no run: the shards could not start: {exc}")
            return False
        addresses = self.supervisor.shard_addresses
        self.channel.send("shards", addresses=addresses, host=f"{socket.gethostname()} pid {os.getpid()}")
        _say(f"{len(addresses)} shard(s) on {self.options.bind_host} driving {config.get('endpoint_url')}")
        return True

    def _report(self, supervisor: Supervisor) -> None:
        for index in supervisor.check():
            _say(f"shard {index} died and was restarted (lost so far: {supervisor.lost})")
        with suppress(OSError):
            self.channel.send("snapshot", data=supervisor.snapshot().to_json())

    def close(self) -> None:
        terminate(self.child)
        if self.supervisor is not None:
            final = self.supervisor.drain(DRAIN_SECONDS, "the worker stopped before the call finished")
            _say(f"shards drained: {final.accounting()}")
        self.channel.close()
