"""The Locust event listeners of the plug-in; registered once, when :mod:`loadgen.locust` is first used.

==============================  ===========================================================
event                           what the plug-in does
==============================  ===========================================================
``init_command_line_parser``    adds the ``--dispatch-*`` options (:mod:`.options`)
``init``                        worker: registers the ``loadgen_open_model`` message;
                                master / local: the web tabs (:mod:`.webtab`)
``test_start``                  every process: resets the dispatched-call counts, the checked
                                results and the open-model schedules; master: sends each
                                worker its share of the arrivals; master / local: (re)creates
                                the :class:`~.bridge.StatsBridge`, takes its baseline, polls;
                                arms the stop timer (``--dispatch-run-time``, the open
                                model's end); writes ``--dispatch-caller-file`` every 2 s
``test_stopping``               master / local: notes when the load stopped (caller file)
``test_stop``                   every process: half-closes its Session streams and reads
                                them to their end (:mod:`.link`); master / local: one
                                poll; stops the stop timer; caller file
``quitting``                    master / local: the bridge's settle + final poll; caller file
``quit``                        master / local: caller file (after a signal's quit, users stop
                                after ``quitting``)
``report_to_master``            worker: adds its new dispatched-call counts and checked
                                results, and its cumulative caller report, to its report
``worker_report``               master: adds them up; keeps each worker's latest caller
                                report (:mod:`.latency`)
==============================  ===========================================================

Caller-side latency (:mod:`.latency`): the master numbers each test and sends the number with
each worker's share; a worker starts fresh statistics then, and sends a final report once its
users stopped; at ``test_stop`` the master asks the workers whose final report is missing and
waits for them (bounded, naming those that did not answer).

The stop timer stops the test gracefully (``runner.stop()``: users finish what they wait
for, up to ``--stop-timeout``; on a master, after the workers stopped), then, headless, quits.

:func:`bridge` returns the current bridge (``None`` on workers, or before a test started);
a program that runs Locust as a library reads ``bridge().latest`` / ``.history`` at the end.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import events
from locust.exception import RPCError
from locust.runners import MasterRunner, WorkerRunner

import loadgen.locust._gevent  # noqa: F401  # gRPC cooperates with gevent before any channel exists
from loadgen.children import forks_die_with_parent
from loadgen.core.caller import CALLER_FILE_INTERVAL
from loadgen.locust import cluster, latency, webtab
from loadgen.locust.bridge import StatsBridge
from loadgen.locust.checked import REPORT_KEY as CHECKS_KEY
from loadgen.locust.checked import checked, write_caller_file
from loadgen.locust.dispatched import REPORT_KEY, dispatched
from loadgen.locust.link import close_links
from loadgen.locust.openmodel import (
    OPEN_MODEL_MESSAGE,
    outstanding_arrivals,
    reset_pacers,
    schedule_end,
    set_share,
)
from loadgen.locust.options import (
    DEFAULT_READY_TIMEOUT,
    DEFAULT_SETTLE,
    DEFAULT_STATS_INTERVAL,
    add_arguments,
    option,
    resolve_addresses,
    resolve_api_key,
)
from loadgen.locust.user import DispatchUser

__all__ = ["bridge"]

logger = logging.getLogger(__name__)

forks_die_with_parent()  # Locust's --processes workers are forked from here: none outlives its master

_state: dict[str, Any] = {
    "bridge": None,
    "config": None,
    "stopper": None,
    "writer": None,
    "started_at": None,
    "stopping_at": None,
    "workers": [],
}


def bridge() -> StatsBridge | None:
    """The stats bridge of this process (master or local runner), once a test has started."""
    found: StatsBridge | None = _state["bridge"]
    return found


def _aggregates(environment: Any) -> bool:
    return environment.runner is not None and not isinstance(environment.runner, WorkerRunner)


def _on_parser(parser: Any, **_kwargs: Any) -> None:
    add_arguments(parser)


def _on_init(environment: Any, **_kwargs: Any) -> None:
    _state["environment"] = environment
    # gevent caches its loop's clock; after a slow start (imports) it is stale, and timers set
    # from it (Locust's --run-time) would fire early by as much. Refresh it.
    gevent.get_hub().loop.update_now()
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(OPEN_MODEL_MESSAGE, _on_share)
        runner.register_message(latency.FINAL_REQUEST, _on_final_request)
        if cluster.worker_side.active:
            runner.register_message(cluster.CONFIG, _on_config, concurrent=True)
            runner.register_message(cluster.REFUSED, _on_refused)
            runner.send_message(cluster.CONFIG_REQUEST, None)
    elif isinstance(runner, MasterRunner):
        runner.register_message(latency.FINAL_MESSAGE, _on_final)
        cluster.fleet.load_config()
        if cluster.fleet.active:
            cluster.fleet.file = str(option(environment.parsed_options, "dispatch_workers_file", ""))
            runner.register_message(cluster.CONFIG_REQUEST, _on_config_request)
            runner.register_message(cluster.READY, _on_worker_ready)
            cluster.fleet.guard(runner)
            timeout = float(option(environment.parsed_options, "dispatch_ready_timeout", DEFAULT_READY_TIMEOUT))
            headless = bool(getattr(environment.parsed_options, "headless", False))
            gevent.spawn(cluster.fleet.loop, runner, timeout if headless else None)
    if runner is not None and not isinstance(runner, WorkerRunner) and environment.web_ui is not None:
        webtab.install(environment.web_ui, bridge, checked)


def _on_share(environment: Any, msg: Any, **_kwargs: Any) -> None:
    data = msg.data or {}
    set_share(int(data.get("index", 0)), int(data.get("count", 1)))
    index = getattr(environment.runner, "worker_index", -1)
    latency.start_process_test(f"locust-{index}", int(data.get("test", 0)))


def _on_final_request(environment: Any, msg: Any, **_kwargs: Any) -> None:
    environment.runner.send_message(latency.FINAL_MESSAGE, latency.report())


def _on_final(environment: Any, msg: Any, **_kwargs: Any) -> None:
    latency.offer(str(msg.node_id), msg.data)


def _on_config_request(environment: Any, msg: Any, **_kwargs: Any) -> None:
    cluster.fleet.on_request(environment.runner, str(msg.node_id))


def _on_worker_ready(environment: Any, msg: Any, **_kwargs: Any) -> None:
    cluster.fleet.on_ready(str(msg.node_id), msg.data)


def _on_config(environment: Any, msg: Any, **_kwargs: Any) -> None:
    configure = cluster.worker_side.configure
    assert configure is not None
    try:
        info = configure(environment, dict(msg.data or {}))
    except Exception as exc:  # the shards could not start: the worker says why and leaves
        logger.error("this worker cannot take part: %s", exc)
        environment.runner.quit()
        return
    environment.runner.send_message(cluster.READY, info)


def _on_refused(environment: Any, msg: Any, **_kwargs: Any) -> None:
    reason = str((msg.data or {}).get("reason", "the master turned this worker away"))
    if cluster.worker_side.refused is not None:
        cluster.worker_side.refused(reason)
    environment.runner.quit()


def _on_report(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    data[REPORT_KEY] = dispatched.take_unreported()
    data[CHECKS_KEY] = checked.take_unreported()
    data[latency.REPORT_KEY] = latency.report()
    if cluster.worker_side.snapshot is not None:
        data[cluster.REPORT_KEY] = {"snapshot": cluster.worker_side.snapshot}


def _on_worker_report(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    if latency.REPORT_KEY in data:
        latency.offer(client_id, data[latency.REPORT_KEY])
        if client_id not in _state["workers"]:
            _state["workers"].append(client_id)
    if cluster.REPORT_KEY in data:
        cluster.fleet.on_report(client_id, data[cluster.REPORT_KEY])
    report = data.get(REPORT_KEY)
    if isinstance(report, dict):
        dispatched.merge(report)
    checks = data.get(CHECKS_KEY)
    if isinstance(checks, dict):
        try:
            checked.merge(checks)
        except ValueError as exc:
            logger.warning("ignoring a worker's malformed checks report: %s", exc)


def _write_caller_file(environment: Any) -> None:
    """The checked results so far, to ``--dispatch-caller-file`` (master or local runner, when set)."""
    path = option(environment.parsed_options, "dispatch_caller_file")
    if not path or not _aggregates(environment):
        return
    if not isinstance(environment.runner, MasterRunner):
        latency.offer("local", latency.report())
    try:
        write_caller_file(
            path,
            checked,
            started_at=_state["started_at"],
            stopping_at=_state["stopping_at"],
            now=time.time(),
            latency=latency.reports,
        )
    except OSError as exc:
        logger.warning("cannot write the caller file %s: %s", path, exc)


def _caller_file_loop(environment: Any) -> None:
    while True:
        gevent.sleep(CALLER_FILE_INTERVAL)
        _write_caller_file(environment)


def _bridge_config(environment: Any) -> tuple[tuple[str, ...], str] | None:
    options = environment.parsed_options
    classes = [c for c in (environment.user_classes or []) if isinstance(c, type) and issubclass(c, DispatchUser)]
    addresses: list[str] = []
    key = ""
    for cls in classes or [DispatchUser]:
        try:
            addresses = addresses or resolve_addresses(options, cls.addresses, environment.host or cls.host)
            key = key or resolve_api_key(options, cls.api_key)
        except ValueError:
            continue
    if not addresses or not key:
        return None
    return tuple(addresses), key


def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner) and cluster.fleet.active and cluster.fleet.started_at is None:
        timeout = float(option(environment.parsed_options, "dispatch_ready_timeout", DEFAULT_READY_TIMEOUT))
        cluster.fleet.wait_ready(runner, timeout)  # the spawn messages go out once every worker's shards serve
    dispatched.reset()
    checked.reset()
    reset_pacers()
    _state["started_at"], _state["stopping_at"] = time.time(), None
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        test = latency.reports.test + 1
        latency.reports.start(test)
        workers = sorted(runner.clients.ready + runner.clients.running + runner.clients.spawning, key=lambda w: w.id)
        _state["workers"] = [worker.id for worker in workers]
        for index, worker in enumerate(workers):
            share = {"index": index, "count": len(workers), "test": test}
            runner.send_message(OPEN_MODEL_MESSAGE, share, client_id=worker.id)
    elif not isinstance(runner, WorkerRunner):
        set_share(0, 1)
        test = latency.reports.test + 1
        latency.reports.start(test)
        latency.start_process_test("locust", test)
    if not _aggregates(environment):
        return
    config = ((), "") if cluster.fleet.active else _bridge_config(environment)
    if config is None:
        logger.warning("Dispatch stats bridge off: no shard addresses or API key (see --dispatch-addresses)")
    else:
        current: StatsBridge | None = _state["bridge"]
        if current is None or _state["config"] != config:
            if current is not None:
                current.finish_polling()
            options = environment.parsed_options
            fleet_source = (lambda: cluster.fleet.merged().to_bytes()) if cluster.fleet.active else None
            current = StatsBridge(
                environment,
                config[0],
                config[1],
                interval=float(option(options, "dispatch_stats_interval", DEFAULT_STATS_INTERVAL)),
                settle=0.0 if fleet_source else float(option(options, "dispatch_settle", DEFAULT_SETTLE)),
                source=fleet_source,
            )
            _state["bridge"], _state["config"] = current, config
        current.begin()
    _arm_stopper(environment)
    if option(environment.parsed_options, "dispatch_caller_file") and _state["writer"] is None:
        _write_caller_file(environment)
        _state["writer"] = gevent.spawn(_caller_file_loop, environment)


def _arm_stopper(environment: Any) -> None:
    ends: list[tuple[float, float, str]] = []  # (from, at the latest, why)
    open_end = schedule_end(environment.user_classes or [])
    if open_end is not None:
        over, latest = open_end
        ends.append((over, latest, "Open-model schedule over"))
    run_time = float(option(environment.parsed_options, "dispatch_run_time", 0.0) or 0.0)
    if run_time > 0:
        ends.append((run_time, run_time, "--dispatch-run-time reached"))
    if ends:
        start, latest, reason = min(ends, key=lambda end: end[1])
        _state["stopper"] = gevent.spawn_later(start, _stop_when_settled, environment, latest - start, reason)


def _stop_when_settled(environment: Any, grace: float, reason: str) -> None:
    """Stop once this process has no arrival under way (a master cannot tell: it waits), or after *grace* s."""
    deadline = time.monotonic() + grace
    local = not isinstance(environment.runner, MasterRunner)
    while time.monotonic() < deadline and not (local and outstanding_arrivals() == 0):
        gevent.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    _stop_test(environment, reason)


def _stop_test(environment: Any, reason: str) -> None:
    options = environment.parsed_options
    logger.info("%s: stopping the test", reason)
    _state["stopper"] = None
    environment.runner.stop()  # graceful: users finish their calls for up to --stop-timeout
    if isinstance(environment.runner, MasterRunner) and cluster.fleet.active:
        _settle_fleet(float(option(options, "dispatch_settle", DEFAULT_SETTLE)))
    if options is not None and getattr(options, "headless", False):
        if isinstance(environment.runner, MasterRunner) and cluster.fleet.active:
            _end_fleet(environment)
        environment.runner.quit()


def _settle_fleet(settle: float) -> None:
    """Master of worker machines: let their calls in flight end (seen in their reports) for up to *settle* s,
    before the quit that ends the workers and their reports."""
    deadline = time.monotonic() + settle
    while cluster.fleet.in_flight() > 0 and time.monotonic() < deadline:
        gevent.sleep(0.25)


def _end_fleet(environment: Any) -> None:
    """The run is over: its statistics as they stand, and every worker told to quit (Locust tells only the
    workers in its list, and a worker that just stopped its users is out of it for a while)."""
    cluster.fleet.ending = True
    cluster.fleet.write()
    for client_id in cluster.fleet.workers:
        try:
            environment.runner.send_message("quit", None, client_id=client_id)
        except RPCError:  # the master's socket is already closed: Locust told the workers it still knew
            break


def _on_test_stopping(environment: Any, **_kwargs: Any) -> None:
    if _state["stopping_at"] is None:
        _state["stopping_at"] = time.time()
    _write_caller_file(environment)


def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    stopping_at = _state["stopping_at"]
    left = float(environment.stop_timeout or 0.0) - (time.time() - stopping_at if stopping_at else 0.0)
    close_links(max(1.0, left))  # the users are gone: every Session ends cleanly, within the stop timeout
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        latency.stop_process_test()
    if isinstance(runner, WorkerRunner):
        runner.send_message(latency.FINAL_MESSAGE, latency.report())
    elif isinstance(runner, MasterRunner):
        latency.collect_finals(runner, list(_state["workers"]))
    stopper = _state["stopper"]
    if stopper is not None and stopper is not gevent.getcurrent():
        stopper.kill(block=False)
        _state["stopper"] = None
    current = bridge()
    if current is not None and _aggregates(environment):
        current.end_of_test()
    _write_caller_file(environment)


def _on_quitting(environment: Any, **_kwargs: Any) -> None:
    if cluster.fleet.active and isinstance(environment.runner, MasterRunner):
        _end_fleet(environment)
    current = bridge()
    if current is not None and _aggregates(environment):
        current.finish(csv=bool(option(environment.parsed_options, "csv_prefix")))
    writer = _state["writer"]
    if writer is not None:
        writer.kill(block=False)
        _state["writer"] = None
    _write_caller_file(environment)


def _on_quit(exit_code: int = 0, **_kwargs: Any) -> None:
    # Fired after the runner stopped its users: a Ctrl-C or SIGTERM quit lets them finish after ``quitting``.
    environment = _state.get("environment")
    if environment is not None:
        _write_caller_file(environment)


_hooks: Any = events  # Locust's EventHook.add_listener has no annotations
for _event, _listener in (
    ("init_command_line_parser", _on_parser),
    ("init", _on_init),
    ("report_to_master", _on_report),
    ("worker_report", _on_worker_report),
    ("test_start", _on_test_start),
    ("test_stopping", _on_test_stopping),
    ("test_stop", _on_test_stop),
    ("quitting", _on_quitting),
    ("quit", _on_quit),
):
    getattr(_hooks, _event).add_listener(_listener)
