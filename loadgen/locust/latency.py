"""Caller-side latency in each Locust process, and its way to the master (see :mod:`loadgen.core.stats.caller`).

Every process that runs users records into :data:`caller` (:func:`record_latency`,
:func:`record_lag`, :func:`count`) and measures its own event loop's lag (a 50 ms timer,
while a test runs); each report also says how many calls its users are waiting for and how
long the oldest of them has waited (:func:`begin_wait`, :func:`end_wait`): an outage shows
while it lasts, not only once its calls end. A worker adds its *cumulative* :class:`CallerReport` (test id, a sequence
number that never goes back) to every Locust report (``report_to_master``, key
:data:`REPORT_KEY`), and sends a final one (:data:`FINAL_MESSAGE`) once its users stopped; the
master keeps the latest report of each worker (:data:`reports`) and, at the end of the test,
asks the workers whose final report has not come (:data:`FINAL_REQUEST`), waits up to
:data:`FINAL_WAIT` seconds, and names those that did not answer. The same path serves
``--processes`` and workers on other machines; a local runner reports to itself.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Final

import gevent  # type: ignore[import-untyped]

from loadgen.core.counters import Counter
from loadgen.core.stats.caller import (
    GAUGE_OLDEST_WAITING,
    GAUGE_WAITING,
    CallerReport,
    LatestReports,
    caller_recorder,
)
from loadgen.core.stats.recorder import ShardStats

__all__ = [
    "FINAL_MESSAGE",
    "FINAL_REQUEST",
    "FINAL_WAIT",
    "LOOP_TICK",
    "REPORT_KEY",
    "begin_wait",
    "collect_finals",
    "count",
    "end_wait",
    "offer",
    "record_lag",
    "record_latency",
    "report",
    "reports",
    "start_process_test",
    "stop_process_test",
]

logger = logging.getLogger(__name__)

REPORT_KEY: Final = "loadgen_latency"
FINAL_MESSAGE: Final = "loadgen_caller_final"
FINAL_REQUEST: Final = "loadgen_caller_final_request"
FINAL_WAIT: Final = 5.0
LOOP_TICK: Final = 0.05

reports = LatestReports()
"""On a master (or local runner): the latest caller report of each process of the current test."""


class _Process:
    """This process's recorder, test id, report numbers, loop-lag timer and the calls its users wait for."""

    def __init__(self) -> None:
        self.recorder: ShardStats = caller_recorder("locust")
        self.test = 0
        self.seq = itertools.count()
        self.final = False
        self.timer: Any = None
        self.tokens = itertools.count()
        self.waiting: dict[int, tuple[float, int]] = {}  # token -> (intended start, calls)


_process = _Process()


def record_latency(function: str, outcome: str, seconds: float, n: int = 1) -> None:
    """*n* calls of *function* came back (or were rejected, or accepted) *seconds* after their intended start."""
    recorder = _process.recorder
    for _ in range(n):
        recorder.record("latency", function, outcome, seconds if seconds > 0.0 else 0.0)


def record_lag(user: str, kind: str, seconds: float) -> None:
    """An ``arrival`` or ``task`` of *user* started *seconds* after it was due."""
    _process.recorder.record("lag", user, kind, seconds if seconds > 0.0 else 0.0)


def begin_wait(issued: float, calls: int = 1) -> int:
    """A user waits for *calls* calls intended to start at *issued*; returns the token for :func:`end_wait`."""
    token = next(_process.tokens)
    _process.waiting[token] = (issued, calls)
    return token


def end_wait(token: int) -> None:
    """The wait of :func:`begin_wait` is over (its result came, or it failed, or the user stopped)."""
    _process.waiting.pop(token, None)


def count(counter: Counter, n: int = 1) -> None:
    """Count *n* arrivals, late or dropped arrivals."""
    _process.recorder.count(counter, n)


def _loop_lag(recorder: ShardStats) -> None:
    while True:
        started = time.monotonic()
        gevent.sleep(LOOP_TICK)
        late = time.monotonic() - started - LOOP_TICK
        recorder.record("loop_lag", recorder.shard, "loop", late if late > 0.0 else 0.0)


def start_process_test(process: str, test: int) -> None:
    """A test starts in this process: fresh statistics named *process*, for test *test*; the loop timer runs."""
    stop_process_test()
    _process.recorder = caller_recorder(process)
    _process.test = test
    _process.final = False
    _process.timer = gevent.spawn(_loop_lag, _process.recorder)


def stop_process_test() -> None:
    """This process's users are gone: the loop timer stops, the next report is final."""
    timer, _process.timer = _process.timer, None
    if timer is not None and timer is not gevent.getcurrent():
        timer.kill(block=False)
    _process.final = True


def report() -> dict[str, Any]:
    """This process's cumulative caller report, as the wire carries it."""
    recorder, waiting = _process.recorder, _process.waiting.values()
    recorder.set_gauge(GAUGE_WAITING, sum(calls for _, calls in waiting))
    oldest = min((issued for issued, _ in waiting), default=None)
    recorder.set_gauge(GAUGE_OLDEST_WAITING, 0 if oldest is None else int((time.monotonic() - oldest) * 1e6))
    made = CallerReport(recorder.shard, _process.test, next(_process.seq), recorder.snapshot())
    data = made.to_json()
    data["final"] = _process.final
    return data


def offer(client: str, data: Any) -> None:
    """A process's report, as received; a malformed one is logged and ignored."""
    try:
        reports.offer(client, CallerReport.from_json(data))
    except ValueError as exc:
        logger.warning("ignoring a malformed caller report from %s: %s", client, exc)


def collect_finals(runner: Any, workers: list[str], wait: float = FINAL_WAIT) -> list[str]:
    """Master: ask each of *workers* whose final report has not come for it, wait up to *wait* seconds.

    Returns (and logs) the workers that did not answer; their latest report stays counted.
    """
    missing = reports.missing_final(workers)
    for client in missing:
        runner.send_message(FINAL_REQUEST, {"test": reports.test}, client_id=client)
    deadline = time.monotonic() + wait
    while missing and time.monotonic() < deadline:
        gevent.sleep(0.05)
        missing = reports.missing_final(workers)
    for client in missing:
        kept = reports.reports().get(client)
        since = f"its report #{kept.seq} is counted" if kept is not None else "it sent no report"
        logger.warning("worker %s sent no final caller report within %gs: %s", client, wait, since)
    return missing
