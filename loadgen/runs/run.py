"""``loadgen run [SCENARIO]``: everything a scenario needs, the run, the results, the exit code.

1. the target: the reference endpoint in a child process (verifying a fresh key, with the
   scenario's failure injection), or the scenario's URL;
2. the engine: a :class:`Supervisor` with the scenario's shards (or shards already running
   elsewhere, ``[engine] addresses``);
3. Locust in a child process (``loadgen/runs/locustfile.py``), headless or with its web
   UI on 127.0.0.1, its output in ``locust.log``, its CSVs and the callers' checked results
   (``caller.json``, :mod:`loadgen.core.caller`) in the run folder; inputs are encoded by the
   target's SDK codec (:mod:`loadgen.protocol.codecs`);
4. every ~2 s a merged snapshot of the shards and a read of ``caller.json`` (the callers'
   latency, lag and arrivals, merged over the Locust processes): a progress line (the callers'
   latency first, naming the most frequent failure), the time series of the report, gates
   with ``abort_on_fail``, and the shards' health (a dead one is restarted);
5. at the end: the load stops at the scenario's duration; calls in flight get
   ``stop_timeout`` in all (Locust's users finish their waits, then the shards drain for what
   is left of it); calls still running then end as ``cancelled`` (not expired: their deadline
   had not come; shards run elsewhere keep them and report them in flight); final
   snapshot, gates (the scenario's, or the implicit ones: nothing failed, expired, cancelled,
   lost, wrong or left in flight), ``summary.json``, ``gates.json``, ``junit.xml``,
   ``report.html``, a printed summary.

A run never outlasts duration + stop_timeout by more than its start-up and teardown: a
watchdog stops Locust if it has not ended by then. Locust's exit code counts: 1 means some
requests failed (the gates judge what that means); anything else but 0 is a failed run.
Every child is stopped on every exit path (``ExitStack``). Exit codes: 0 every gate
passed, 1 a gate failed, 2 usage or scenario error, 3 the run itself failed.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.children import die_with_parent_term
from loadgen.core.caller import CallerFile
from loadgen.core.counters import COMPLETED
from loadgen.core.stats import Snapshot
from loadgen.endpoint.process import reference_endpoint
from loadgen.engine.client import EngineClient
from loadgen.engine.settings import EngineSetup
from loadgen.engine.supervisor import ShardFailed, Supervisor
from loadgen.locust.options import MASTER_CONFIG_FD_ENV
from loadgen.protocol.keys import (
    KeyMaterialError,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_base64,
    public_key_base64,
)
from loadgen.runs.console import (
    caller_interval,
    pool_text,
    print_caller_latency,
    print_checks,
    print_failures,
    print_run_shape,
    progress_line,
)
from loadgen.runs.distributed import FleetShards, advertised_url, config_pipe, worker_line
from loadgen.runs.gates import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    GateResult,
    abort_check,
    accounting_problems,
    evaluate,
    exit_code,
    implicit_gates,
)
from loadgen.runs.locust_process import MasterSetup, caller_file, locust_command, locust_totals, planned_seconds
from loadgen.runs.locust_process import stop_locust as _stop
from loadgen.runs.results import new_run_dir, write_html_report, write_summary
from loadgen.runs.results.folder import append_progress, mark_complete, mark_incomplete, notice_incomplete
from loadgen.runs.results.series import interval_record
from loadgen.runs.results.verdicts import write_gates_json, write_junit
from loadgen.runs.scenario import KeyRef, Scenario, ScenarioError, default_scenario, load_scenario, scenario_to_dict
from loadgen.runs.search import finish_search, run_search

__all__ = ["RunOptions", "run"]

POLL_SECONDS = 2.0
GIVE_UP_BACKSTOP = 15.0  # seconds after --worker-timeout by which the Locust master must have given up
STARTUP_ALLOWANCE = 30.0  # seconds Locust may take to start before the watchdog counts the run late


@dataclass(frozen=True)
class RunOptions:
    """What the command line adds to a scenario."""

    scenario: str | None = None
    web: bool = False
    web_port: int = 8089
    users: int | None = None
    spawn_rate: float | None = None
    duration: float | None = None
    shards: int | None = None
    processes: int | None = None
    stop_timeout: float | None = None
    results: str = "results"
    master: MasterSetup | None = None
    find_capacity: bool = False
    """Run the scenario as a capacity search (``model = "search"``) whatever its load model."""


class _Shards:
    """The shards of a run: local (a supervisor) or remote (addresses and an API key)."""

    def __init__(self, supervisor: Supervisor | None, addresses: list[str], api_key: str) -> None:
        self.supervisor = supervisor
        self.addresses = addresses
        self.api_key = api_key
        self.client = EngineClient(api_key)

    def snapshot(self) -> Snapshot:
        if self.supervisor is not None:
            return self.supervisor.snapshot()
        return self.client.merged_stats(self.addresses)

    def notices(self) -> list[str]:
        """What happened to the shards since the last call (a dead one is restarted)."""
        restarted = self.supervisor.check() if self.supervisor is not None else []
        return [f"shard {index} died and was restarted" for index in restarted]

    def finish(self, drain_timeout: float, reason: str) -> Snapshot:
        """The final snapshot, once the calls in flight ended or *drain_timeout* passed: local shards
        cancel what is left (*reason* its message); shards run elsewhere keep it (in flight)."""
        if self.supervisor is not None:
            return self.supervisor.drain(drain_timeout, reason)
        deadline = time.monotonic() + drain_timeout
        snapshot = self.snapshot()
        while snapshot.accounting().in_flight and time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            snapshot = self.snapshot()
        return snapshot

    def close(self) -> None:
        self.client.close()


def _apply_overrides(scenario: Scenario, options: RunOptions) -> Scenario:
    load = scenario.load
    changes: dict[str, object] = {}
    if options.users is not None:
        changes["users"] = options.users
    if options.spawn_rate is not None:
        changes["spawn_rate"] = options.spawn_rate
    if options.duration is not None:
        changes["duration"] = options.duration
    if options.processes is not None:
        changes["processes"] = options.processes
    if options.stop_timeout is not None:
        changes["stop_timeout"] = options.stop_timeout
    if options.find_capacity:
        changes.update(model="search", stages=())
    engine = scenario.engine if options.shards is None else replace(scenario.engine, shards=options.shards)
    return replace(scenario, load=replace(load, **changes), engine=engine)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Keys:
    """The run's key material, resolved before anything starts (bad keys are usage errors)."""

    signing: Ed25519PrivateKey
    verification: str  # for the reference endpoint: base64 or PEM text


def _key_source(ref: KeyRef, name: str) -> str:
    where = f"{ref.file}: {ref.key or 'target.' + name}"
    return f"{where} (${ref.value})" if ref.kind == "env" else where


def _resolve_keys(scenario: Scenario) -> _Keys:
    """Load the scenario's keys (``[target] signing_key`` / ``verification_key``), else make a pair.

    Raises :class:`ScenarioError` or :class:`KeyMaterialError` naming the key's source, never its value.
    """
    target = scenario.target
    if target.signing_key is not None:
        signing = load_private_key(target.signing_key.resolve(), _key_source(target.signing_key, "signing_key"))
    else:
        signing = generate_private_key()
    verification = public_key_base64(signing.public_key())
    if target.verification_key is not None:
        verification = target.verification_key.resolve()
        load_public_key(verification, _key_source(target.verification_key, "verification_key"))
    return _Keys(signing, verification)


@contextmanager
def _target(scenario: Scenario, keys: _Keys, host: str = "127.0.0.1") -> Iterator[tuple[str, str]]:
    """Yield ``(endpoint URL, signing key as base64 seed)`` for the run (the reference endpoint on *host*)."""
    target = scenario.target
    if not target.reference:
        assert target.url is not None
        yield target.url, private_key_base64(keys.signing)
        return
    extra: list[str] = []
    if target.inject is not None:
        extra += ["--inject-failure-rate", str(target.inject.rate), "--inject-failure-status", target.inject.status]
        if target.inject.seed is not None:
            extra += ["--seed", str(target.inject.seed)]
    with reference_endpoint(keys.verification, extra=extra, host=host) as url:
        yield url, private_key_base64(keys.signing)


def _shards(scenario: Scenario, endpoint_url: str, signing_key: str, stack: ExitStack) -> _Shards:
    remote = scenario.remote
    if remote is not None:
        api_key = remote.api_key.resolve() if remote.api_key is not None else os.environ.get("DISPATCH_API_KEY", "")
        shards = _Shards(None, list(remote.addresses), api_key)
        stack.callback(shards.close)
        return shards
    api_key = secrets.token_hex(16)
    setup = EngineSetup(
        endpoint_url=endpoint_url, api_key=api_key, signing_key=signing_key, port=0, settings=scenario.engine
    )
    supervisor = Supervisor(setup)
    supervisor.start()
    stack.callback(supervisor.close)
    shards = _Shards(supervisor, supervisor.shard_addresses, api_key)
    stack.callback(shards.close)
    return shards


@dataclass
class _Watch:
    """What the monitoring loop saw: the time series, abort results, Ctrl-C, a late Locust."""

    series: list[tuple[float, Snapshot]]
    caller_series: list[tuple[float, Snapshot]]
    aborted: list[GateResult]
    interrupted: bool
    late: bool
    no_workers: bool = False  # a master whose workers did not all come: nothing ran


def _monitor(
    engine: _Shards | FleetShards,
    locust: subprocess.Popen[bytes],
    scenario: Scenario,
    planned: float | None,
    run_dir: Path,
    master: MasterSetup | None = None,
) -> _Watch:
    """Poll the shards until Locust exits (or Ctrl-C, or the watchdog, or the workers never come)."""
    started = time.monotonic()
    allowance = STARTUP_ALLOWANCE
    if master is not None:  # the workers' start, and their calls' settling after the load stopped
        allowance += master.worker_timeout + scenario.load.stop_timeout
    deadline = None if planned is None else started + allowance + planned + scenario.load.stop_timeout
    series: list[tuple[float, Snapshot]] = []
    caller_series: list[tuple[float, Snapshot]] = []
    previous: Snapshot | None = None
    aborted: list[GateResult] = []
    interrupted = late = no_workers = fleet_started = False
    waited = 0.0
    try:
        while locust.poll() is None:
            with suppress(subprocess.TimeoutExpired):
                locust.wait(POLL_SECONDS)
            for notice in engine.notices():  # a dead shard restarted, a worker ready or lost
                print(f"loadgen run: {notice}", file=sys.stderr, flush=True)
            elapsed = time.monotonic() - started
            snapshot = engine.snapshot()
            if isinstance(engine, FleetShards) and engine.started_at is not None and not fleet_started:
                fleet_started = True  # the progress counts from the test's start, not from the wait for workers
                started = time.monotonic() - max(0.0, time.time() - engine.started_at)
                elapsed = time.monotonic() - started
                if deadline is not None:
                    deadline = started + allowance + (planned or 0.0) + scenario.load.stop_timeout
            if isinstance(engine, FleetShards) and master is not None and engine.started_at is None:
                if planned is not None and elapsed > master.worker_timeout + GIVE_UP_BACKSTOP:  # Locust gives up first
                    print(_not_starting(engine, master), file=sys.stderr)
                    no_workers = True
                    locust.send_signal(signal.SIGTERM)
                    break
                if planned is not None and (elapsed - waited >= 10 or not waited):
                    waited = elapsed or 0.001
                    print(f"loadgen run: waiting for workers: {engine.waiting_text()}", file=sys.stderr, flush=True)
                continue
            interval = snapshot.minus(previous) if previous is not None else snapshot
            seconds = elapsed - (series[-1][0] if series else 0.0)
            series.append((elapsed, snapshot))
            previous = snapshot
            caller = caller_file(run_dir)
            callers = caller.latency if caller is not None else None
            caller_interval = _caller_interval(callers, caller_series)
            if callers is not None:
                caller_series.append((elapsed, callers))
            if seconds > 0:
                append_progress(run_dir, interval_record(elapsed, seconds, interval, snapshot))
                line = progress_line(elapsed, planned, interval, seconds, snapshot, caller, caller_interval)
                print(line, file=sys.stderr, flush=True)
            if not aborted and scenario.gates:
                checks = caller.checks if caller is not None else None
                aborted = abort_check(scenario.gates, snapshot, elapsed, checks=checks, caller=callers)
                if aborted:
                    names = ", ".join(f"{r.metric} {r.condition}" for r in aborted)
                    print(f"loadgen run: aborting, gate failed: {names}", file=sys.stderr)
                    locust.send_signal(signal.SIGTERM)
            if deadline is not None and time.monotonic() > deadline and locust.poll() is None and not late:
                late = True
                print("loadgen run: Locust did not stop within duration + stop_timeout: stopping it", file=sys.stderr)
                locust.send_signal(signal.SIGTERM)
        if isinstance(engine, FleetShards) and master is not None and planned is not None and not no_workers:
            engine.read()
            if engine.started_at is None:  # the Locust master gave up waiting for the workers
                print(_not_starting(engine, master), file=sys.stderr)
                no_workers = True
    except KeyboardInterrupt:
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the results are written before we go
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nloadgen run: interrupted: stopping Locust, draining the shards, writing the results", file=sys.stderr)
        locust.send_signal(signal.SIGTERM)
    try:
        locust.wait(20)
    except subprocess.TimeoutExpired:
        locust.kill()
        locust.wait()
    return _Watch(series, caller_series, aborted, interrupted, late, no_workers)


def _not_starting(engine: FleetShards, master: MasterSetup) -> str:
    return (
        f"loadgen run: {engine.waiting_text()} after {master.worker_timeout:g}s: not starting."
        f" Start the others with: loadgen worker --master <this host>:{master.bind_port}"
    )


def _caller_interval(callers: Snapshot | None, earlier: list[tuple[float, Snapshot]]) -> Snapshot | None:
    """What the callers reported since the last read that differs (None: nothing new, or a new test)."""
    return caller_interval(callers, earlier[-1][1] if earlier else None)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(options: RunOptions) -> int:
    """Run a scenario end to end; return the exit code."""
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI system's stop: end the run as Ctrl-C does
    try:
        scenario = load_scenario(options.scenario) if options.scenario else default_scenario()
        scenario = _apply_overrides(scenario, options)
        if options.master is not None and scenario.remote is not None:
            raise ScenarioError(
                options.scenario or "the quickstart",
                "engine.addresses",
                "--master: each worker starts its own shards; a scenario with shards run elsewhere cannot use it",
            )
        keys = _resolve_keys(scenario)
        if scenario.load.model == "search" and options.web:
            raise ScenarioError(
                scenario.source or "<scenario>", "load.model", "a capacity search runs headless: not with --web"
            )
    except (ScenarioError, KeyMaterialError) as exc:
        print(f"loadgen run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"loadgen run: cannot use the scenario: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if scenario.load.model == "search" and options.master is not None:
        print("loadgen run: a capacity search runs on one machine: --master does not apply", file=sys.stderr)
        return EXIT_USAGE
    if scenario.load.model == "search" and any(
        v is not None for v in (options.users, options.spawn_rate, options.duration)
    ):
        print("loadgen run: --users, --spawn-rate and --duration do not apply to a capacity search", file=sys.stderr)
    for folder, what in notice_incomplete(options.results):
        print(f"loadgen run: {folder} is incomplete ({what}); its summary is missing", file=sys.stderr)
    started_at = datetime.now(UTC)
    run_dir = new_run_dir(options.results, scenario.name, started_at)
    mark_incomplete(run_dir, started_at)
    (run_dir / "scenario.json").write_bytes(orjson.dumps(scenario_to_dict(scenario), option=orjson.OPT_INDENT_2))
    print(f"loadgen run: scenario {scenario.name!r}, results in {run_dir}", file=sys.stderr)
    master = options.master
    with ExitStack() as stack:
        engine: _Shards | FleetShards
        try:
            host = master.bind_host if master is not None else "127.0.0.1"
            endpoint_url, signing_key = stack.enter_context(_target(scenario, keys, host))
            if master is None:
                engine = _shards(scenario, endpoint_url, signing_key, stack)
            else:
                endpoint_url = advertised_url(endpoint_url, master.bind_host)
                engine = FleetShards(run_dir, master.expect_workers)
        except (ShardFailed, RuntimeError, KeyMaterialError, ScenarioError, OSError) as exc:
            print(f"loadgen run: could not start: {exc}", file=sys.stderr)
            mark_incomplete(run_dir, started_at, f"it could not start: {exc}")
            return EXIT_RUN_FAILED
        except KeyboardInterrupt:
            print("loadgen run: interrupted while starting; nothing ran", file=sys.stderr)
            mark_incomplete(run_dir, started_at, "it was interrupted while starting")
            return EXIT_RUN_FAILED
        where = "the reference endpoint" if scenario.target.reference else endpoint_url
        env = os.environ | {"LOADGEN_SCENARIO_JSON": str(run_dir / "scenario.json")}
        passed: list[int] = []
        if isinstance(engine, _Shards):
            print(f"loadgen run: {len(engine.addresses)} shard(s) driving {where}", file=sys.stderr)
            env |= {"LOADGEN_ADDRESSES": ",".join(engine.addresses), "DISPATCH_API_KEY": engine.api_key}
        else:
            assert master is not None
            config = {
                "scenario": scenario_to_dict(scenario),
                "endpoint_url": endpoint_url,
                "api_key": secrets.token_hex(16),
                "signing_key": signing_key,
            }
            passed = [config_pipe(config)]
            if scenario.load.processes != 1:
                print(
                    "loadgen run: --master: load.processes does not apply (each 'loadgen worker' is one Locust"
                    " process; start several on a machine for more)",
                    file=sys.stderr,
                )
            env = {k: v for k, v in env.items() if k not in ("DISPATCH_API_KEY", "LOADGEN_ADDRESSES")}
            env[MASTER_CONFIG_FD_ENV] = str(passed[0])
            print(
                f"loadgen run: master on {master.bind_host}:{master.bind_port}, waiting for"
                f" {master.expect_workers} worker(s): loadgen worker --master <this host>:{master.bind_port};"
                f" their shards drive {where} ({endpoint_url})",
                file=sys.stderr,
            )
        print(f"loadgen run: inputs and outputs as sdk {scenario.target.sdk!r} encodes them", file=sys.stderr)
        if scenario.load.model == "search":
            assert isinstance(engine, _Shards)  # a search runs on one machine (checked above)
            searched = time.monotonic()
            record = run_search(scenario, engine, run_dir, env)
            reason = "the capacity search ended before the call finished"
            final = engine.finish(min(scenario.load.stop_timeout, 10.0) if record.interrupted else 0.0, reason)
            duration = time.monotonic() - searched
            stack.close()  # the endpoint and the shards: stopped before the results are written
            return finish_search(run_dir, scenario, final, record, duration, started_at)
        log = stack.enter_context((run_dir / "locust.log").open("wb"))
        try:
            locust = subprocess.Popen(  # own session: Ctrl-C reaches only us, and we stop things in order
                locust_command(scenario, options.web, options.web_port, run_dir, master),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent_term,
                pass_fds=passed,
            )
        finally:
            for fd in passed:
                os.close(fd)
        stack.callback(_stop, locust)
        if options.web:
            print(f"loadgen run: Locust web UI on http://127.0.0.1:{options.web_port} (Ctrl-C ends the run)")
        planned = None if options.web else planned_seconds(scenario)
        run_started = time.monotonic()
        watch = _monitor(engine, locust, scenario, planned, run_dir, master)
        if watch.no_workers and isinstance(engine, FleetShards):
            mark_incomplete(run_dir, started_at, f"it did not start: {engine.waiting_text()}")
            return EXIT_RUN_FAILED
        duration = time.monotonic() - run_started
        caller = caller_file(run_dir)
        if caller is not None and caller.started_at is not None:  # from the test's start, not Locust's
            duration = min(duration, max(time.time() - caller.started_at, 0.001))
            if master is not None and caller.stopping_at is not None:  # not the workers' stop and settling
                duration = min(duration, max(caller.stopping_at - caller.started_at, 0.001))
        final = engine.finish(_drain_budget(scenario, caller, watch.interrupted), _end_reason(scenario, watch))
        locust_code = locust.returncode
    workers = engine.summaries() if isinstance(engine, FleetShards) else None
    return _finish(run_dir, scenario, final, watch, locust_code, duration, started_at, caller_file(run_dir), workers)


def _end_reason(scenario: Scenario, watch: _Watch) -> str:
    """Why the calls still running when a run ends are cancelled (their error message)."""
    if watch.interrupted:
        return "the run was interrupted before the call finished"
    if watch.aborted:
        return "the run was aborted by a failed gate before the call finished"
    stop = scenario.load.stop_timeout
    return f"the run ended before the call finished (stop_timeout {stop:g}s after the load stopped)"


def _drain_budget(scenario: Scenario, caller: CallerFile | None, interrupted: bool) -> float:
    """What is left of stop_timeout since the load stopped (Locust's users may have used some of it)."""
    stop = scenario.load.stop_timeout
    if interrupted:
        return min(stop, 10.0)
    if caller is None:
        return 0.0
    load_ended = caller.stopping_at
    if scenario.load.model == "open" and caller.started_at is not None:  # the schedule's end; its grace began then
        load_ended = caller.started_at + planned_seconds(scenario)
    if load_ended is None:
        return 0.0
    return max(0.0, min(stop, load_ended + stop - time.time()))


def _finish(
    run_dir: Path,
    scenario: Scenario,
    final: Snapshot,
    watch: _Watch,
    locust_code: int | None,
    duration: float,
    started_at: datetime,
    caller: CallerFile | None,
    workers: list[dict[str, Any]] | None = None,
) -> int:
    totals = locust_totals(run_dir)
    checks = caller.checks if caller is not None else None
    callers = caller.latency if caller is not None else None
    remote = scenario.remote is not None
    gates = scenario.gates or implicit_gates(
        with_locust=totals is not None, remote=remote, with_caller=callers is not None
    )
    results = evaluate(gates, final, duration, totals, checks, callers)
    accounting = final.accounting()
    problems = []
    if locust_code not in (0, 1, None) and not watch.aborted and not watch.interrupted:
        problems.append(f"Locust exited with code {locust_code} (see {run_dir / 'locust.log'})")
    if watch.late:
        problems.append("Locust did not stop within duration + stop_timeout and was stopped")
    problems += accounting_problems(final)
    code = exit_code(results, run_failed=bool(problems))
    write_gates_json(results, run_dir / "gates.json")
    write_junit(results, run_dir / "junit.xml", f"loadgen.{scenario.name}", duration)
    summary = write_summary(
        run_dir,
        snapshot=final,
        started=started_at,
        ended=datetime.now(UTC),
        scenario=scenario,
        gates=results,
        series=watch.series,
        caller=callers,
        caller_series=watch.caller_series,
        locust=totals,
        duration_s=duration,
        exit_code=code,
        extra={
            "problems": problems,
            "aborted": bool(watch.aborted),
            "interrupted": watch.interrupted,
            "locust_exit_code": locust_code,
        },
        workers=workers,
        checks=checks,
    )
    mark_complete(run_dir)
    report = write_html_report(run_dir, summary)
    print()
    print(final.table())
    print_caller_latency(callers)
    print_failures(final)
    print_checks(caller)
    print()
    completed = final.counters.get(COMPLETED, 0)
    print(f"throughput: {completed / duration:.0f} calls/s completed over {duration:.1f}s")
    print_run_shape(final, scenario)
    pool = pool_text(final, duration)
    if pool:
        print(pool)
    if accounting.cancelled:
        print(
            f"cancelled at the end: {accounting.cancelled} call(s) had not ended {scenario.load.stop_timeout:g}s"
            " after the load stopped (stop_timeout)"
        )
    if accounting.in_flight:
        print(
            f"in flight at the end: {accounting.in_flight} call(s) had not ended {scenario.load.stop_timeout:g}s"
            " after the load stopped (stop_timeout)"
        )
    if totals is not None:
        print(f"Locust: {totals.requests} requests, {totals.failures} failures")
    for worker in workers or ():
        print(worker_line(worker))
    if not scenario.gates:
        print("gates: the scenario has no [gates]; judged by the implicit ones (nothing failed, expired,")
        print("       cancelled, lost, rejected by a full shard, wrong or left in flight, no failed request)")
    for result in results:
        mark = "PASS" if result.passed else "FAIL"
        print(f"gate {mark}  {result.message}")
    for problem in problems:
        print(f"loadgen run: {problem}", file=sys.stderr)
    print(f"results: {run_dir}  (report: {report.name}, summary.json, gates.json, junit.xml, Locust CSVs)")
    return code if code != EXIT_OK or not watch.interrupted else EXIT_OK
