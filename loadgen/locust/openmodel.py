"""Open-model arrivals: a target arrival rate in stages, latency from the *intended* start.

Locust's users form a closed loop: a user that waits for a slow answer sends nothing
meanwhile, so a slow system is offered less load and its worst latencies are never
measured (coordinated omission). :class:`OpenModelUser` turns Locust's users into a pool
of executors for a schedule of arrivals that does not wait for anyone::

    from loadgen.locust import OpenModelUser, Stage

    class Arrivals(OpenModelUser):
        stages = (Stage(10, 50), Stage(20, 200, ramp=True), Stage(30, 200))  # (seconds, arrivals/s)

        def arrival(self) -> None:
            self.dispatch("echo", {"message": "hi"})

    # locust -f this.py --headless -u 100 -r 100   (-u: the executor pool, spawned at once)

* **The schedule.** Each stage lasts ``duration`` seconds at ``rate`` arrivals per second
  (for all Locust processes together); ``ramp=True`` goes linearly from the previous
  stage's rate to this one. Arrivals are evenly spaced, or Poisson with ``poisson = True``.
  In a distributed run the master tells each worker its index and the number of workers
  when the test starts (a custom message, ``loadgen_open_model``); worker *i* of *n* takes
  every *n*-th arrival of the one schedule, so together they follow it exactly. Each
  process starts the schedule when its first executor asks for an arrival.
* **Executors.** Each user takes the next arrival in order, sleeps until its intended time
  and runs :meth:`OpenModelUser.arrival`. When every user is busy, arrivals wait: they
  start late, and their latency still counts from the intended time.
* **What is recorded**, each as its own Locust entry (``request_type="open"``):

  - ``"<name>"``: each arrival, response time = end - *intended* start (the latency a
    client arriving on schedule would see), failed when :meth:`arrival` raised or a call it
    waited for failed, expired or was wrong (its ``call`` or ``Wait`` entry says which);
  - ``"late <name>"``: arrivals that started more than :attr:`OpenModelUser.late_after`
    seconds after their intended time, response time = how late;
  - ``"dropped <name>"``: arrivals more than :attr:`OpenModelUser.max_lateness` late, which
    are skipped (a failure: the generator did not offer the intended load; add users), and
    arrivals a full shard rejected (RESOURCE_EXHAUSTED): not retried, the schedule goes on.

  The calls inside :meth:`arrival` are recorded as usual (``call …``, ``Dispatch …``) from
  their actual send time; their caller-side latency (:mod:`loadgen.locust.latency`) counts
  from the arrival's intended start, and each arrival's lateness is its ``lag``.
* **The end.** After the last stage executors idle. With ``stop_when_done = True`` (the
  default) the master or local runner stops the test once the schedule is over and the
  arrivals under way have ended, or at the latest :attr:`OpenModelUser.grace` seconds later
  (a master, which cannot see its workers' arrivals, waits the whole grace); it quits in
  ``--headless`` mode.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
import grpc
from locust import constant, task
from locust.exception import RescheduleTask, StopUser

from loadgen.core.arrivals import ArrivalSchedule, Stage
from loadgen.core.counters import ARRIVALS, DROPPED, LATE
from loadgen.locust import latency
from loadgen.locust.user import DispatchFailed, DispatchUser

__all__ = [
    "OPEN_MODEL_MESSAGE",
    "ArrivalSchedule",
    "OpenModelUser",
    "Pacer",
    "Stage",
    "outstanding_arrivals",
    "schedule_end",
    "set_share",
]

OPEN_MODEL_MESSAGE = "loadgen_open_model"


class Pacer:
    """One process's arrivals for one user class: hands out intended times in order, from its first use."""

    def __init__(self, schedule: ArrivalSchedule) -> None:
        self.schedule = schedule
        self.started: float | None = None  # time.monotonic() of the schedule's 0
        self.done = False

    def take(self) -> float | None:
        """The next arrival's intended ``time.monotonic()``, or ``None`` when the schedule is over."""
        if self.started is None:
            self.started = time.monotonic()
        try:
            return self.started + next(self.schedule)
        except StopIteration:
            self.done = True
            return None


# This process's share of the arrivals: (index, count), set by the master's message at test start.
_share: list[int] = [0, 1]
_pacers: dict[type, Pacer] = {}
_outstanding: list[int] = [0]  # arrivals taken from a schedule and not yet over, in this process


def outstanding_arrivals() -> int:
    """Arrivals of this process taken from a schedule and not yet over (waiting, running)."""
    return _outstanding[0]


def set_share(index: int, count: int) -> None:
    """Take arrivals as process *index* of *count* from the next test on (called by the plug-in)."""
    _share[:] = [index, count]
    _pacers.clear()


def reset_pacers() -> None:
    """Forget the schedules' progress (a new test starts)."""
    _pacers.clear()


class OpenModelUser(DispatchUser):
    """An executor of open-model arrivals (see the module's documentation). Abstract."""

    abstract = True
    wait_time = constant(0)

    stages: ClassVar[Sequence[Stage]] = ()
    """The arrival rate, stage by stage, for all Locust processes together."""

    poisson: ClassVar[bool] = False
    """Exponential gaps between arrivals (a Poisson process) instead of even spacing."""

    late_after: ClassVar[float] = 0.010
    """An arrival that starts more than this many seconds after its intended time is counted late."""

    max_lateness: ClassVar[float | None] = 5.0
    """An arrival more than this many seconds late is dropped (skipped and counted); ``None``: never."""

    stop_when_done: ClassVar[bool] = True
    """Stop the test (quit, when headless) once the schedule is over plus :attr:`grace`."""

    grace: ClassVar[float] = 5.0
    """Seconds after the last stage for late arrivals to finish before the test stops."""

    arrival_name: ClassVar[str | None] = None
    """Name of the arrival entries (default: the class name)."""

    def arrival(self) -> None:
        """One arrival's work, e.g. ``self.dispatch("echo", {...})``. Override it."""
        raise NotImplementedError("OpenModelUser subclasses implement arrival()")

    @classmethod
    def total_duration(cls) -> float:
        """Seconds the stages last."""
        return sum(stage.duration for stage in cls.stages)

    def back_off(self, failure: DispatchFailed) -> None:
        """Never: an arrival the shard rejected is dropped, and the next keeps its schedule."""

    def _pacer(self) -> Pacer:
        cls = type(self)
        pacer = _pacers.get(cls)
        if pacer is None:
            index, count = _share
            pacer = _pacers[cls] = Pacer(ArrivalSchedule(cls.stages, index, count, cls.poisson))
        return pacer

    def _record(self, name: str, response_time: float | None, exception: BaseException | None = None) -> None:
        self.environment.events.request.fire(
            request_type="open",
            name=name,
            response_time=response_time,
            response_length=0,
            response=None,
            context=self.context(),
            exception=exception,
        )

    @task
    def _arrivals(self) -> None:
        cls = type(self)
        name = cls.arrival_name or cls.__name__
        pacer = self._pacer()
        while True:
            intended = pacer.take()
            if intended is None:
                gevent.sleep(1.0)  # the schedule is over: idle until the test stops
                continue
            _outstanding[0] += 1
            try:
                self._arrive(name, intended)
            finally:
                _outstanding[0] -= 1

    def _arrive(self, name: str, intended: float) -> None:
        cls = type(self)
        delay = intended - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        lateness = time.monotonic() - intended
        latency.count(ARRIVALS)
        latency.record_lag(name, "arrival", lateness)
        if cls.max_lateness is not None and lateness > cls.max_lateness:
            latency.count(DROPPED)
            error = RuntimeError(f"arrival more than {cls.max_lateness:g}s late: dropped (add users)")
            self._record(f"dropped {name}", lateness * 1000.0, error)
            return
        if lateness > cls.late_after:
            latency.count(LATE)
            self._record(f"late {name}", lateness * 1000.0)
        failure: BaseException | None = None
        failed_waits = self.failed_waits
        self.intended_start = intended  # every call of this arrival counts its latency from its intended start
        try:
            self.arrival()
        except RescheduleTask as exc:  # DispatchFailed: the RPC's own entry has the failure
            failure = exc
            if getattr(exc, "code", None) is grpc.StatusCode.RESOURCE_EXHAUSTED:  # the shard was full
                latency.count(DROPPED)  # not retried: the schedule goes on, the arrival is lost
                self._record(f"dropped {name}", (time.monotonic() - intended) * 1000.0, exc)
        except StopUser:  # Locust is stopping this user: no arrival happened
            raise
        except Exception as exc:
            self._record(name, (time.monotonic() - intended) * 1000.0, exc)
            raise
        finally:
            self.intended_start = None
        if failure is None and self.failed_waits > failed_waits:
            failure = RuntimeError("a call of this arrival failed (see its call or Wait entry)")
        self._record(name, (time.monotonic() - intended) * 1000.0, failure)


def schedule_end(user_classes: Sequence[type[Any]]) -> tuple[float, float] | None:
    """``(schedule over, grace over)``: seconds after the start for the open-model classes that stop when done."""
    classes = [
        cls
        for cls in user_classes
        if isinstance(cls, type) and issubclass(cls, OpenModelUser) and cls.stop_when_done and cls.stages
    ]
    if not classes:
        return None
    return max(cls.total_duration() for cls in classes), max(cls.total_duration() + cls.grace for cls in classes)
