"""``AsyncDispatcher``: the scheduler core driven on an asyncio loop.

The edge around :class:`loadgen.core.scheduler.Scheduler` in a shard process: it
sends each :class:`RunAttempt` through an :class:`EndpointPool` (started by a call when a slot is free, its
end a callback of the exchange's future; as its own task otherwise, or with a transport that only has
``post_run``), feeds responses and faults back, keeps one timer armed for the
scheduler's next deadline, records statistics, and wakes ``wait()``-ers when a
root call ends (or tells the call's listener, a Session). Everything runs on one event loop thread: no locks. At most
``max_attempts_in_flight`` attempts run at once (and never more than the pool's real capacity,
:meth:`Transport.capacity`, so this queue is the only one); the rest wait as plain records, so a
large backlog costs little memory and is signed only when it is sent.

The wait is fair: one FIFO per function, served round robin, and a reserve of streams (a tenth,
at least one) that no single function may take, so a call of one function is never starved behind
slow calls of another. The time each attempt waited is the ``queue`` histogram (function,
``attempt``); an attempt is counted when it is sent.

With a :class:`~loadgen.core.chaos.Chaos` policy, an attempt sent is sent twice at its
``duplicate_rate``: the copy takes a stream like any attempt, its answer is dropped (only the
first answer moves the call on), and it is counted ``chaos/duplicated`` (``chaos/duplicate_failed``
too, with the first message kept as a ``duplicate`` failure, when the endpoint did not answer it OK).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from google.protobuf.message import DecodeError

from loadgen.core.admission import call_bytes
from loadgen.core.chaos import Chaos
from loadgen.core.counters import chaos as chaos_counter
from loadgen.core.results import CallOutcome, ResultStore
from loadgen.core.scheduler import (
    Action,
    CallFinished,
    ChaosInjected,
    Counters,
    Outcome,
    PollRefused,
    Resumed,
    RetryPolicy,
    RetryScheduled,
    RunAttempt,
    Scheduler,
)
from loadgen.core.stats import CallRecorder, ShardStats
from loadgen.pb import call_pb2, function_pb2
from loadgen.pb import status_pb2 as status
from loadgen.protocol.status import status_name
from loadgen.transport.base import Connection, Exchange, Result
from loadgen.transport.faults import FAULT_STATUS, AttemptError, Fault

__all__ = ["AsyncDispatcher", "CallListener", "Transport", "UnknownCall", "reserve_of"]

_UNDECODABLE = FAULT_STATUS[Fault.UNDECODABLE]
_COMPLETED = Outcome.COMPLETED  # a module global: an Enum member read off its class costs a metaclass lookup
_COMPACT_SLACK = 1024  # queued attempts beyond twice the live calls that trigger a compaction


def _error_text(kind: str, message: str, status_text: str = "") -> str:
    """``Error.type: Error.message`` as a failure sample: just the message when the type is only the
    status name again (errors loadgen wrote itself) or the message already starts with it."""
    if kind and message and kind != status_text and not message.startswith(kind):
        return f"{kind}: {message}"
    return message or kind


def _failure_of(response: function_pb2.RunResponse) -> tuple[int, str] | None:
    """The status and message of an endpoint's answer that failed the attempt; None when it did not (OK, or a
    tail call, whatever its status)."""
    code = response.status or status.STATUS_OK
    if code == status.STATUS_OK or (response.HasField("exit") and response.exit.HasField("tail_call")):
        return None
    error = response.exit.result.error
    return code, _error_text(error.type, error.message) or f"the endpoint answered {status_name(code)}"


class Transport(Protocol):
    """What the dispatcher needs of an endpoint client (``loadgen.transport.EndpointPool``)."""

    async def post_run(self, endpoint_url: str, body: bytes) -> bytes: ...

    def capacity(self, endpoint_url: str) -> int:
        """Requests to *endpoint_url* that can be in progress at once without waiting for a slot."""
        ...


class Sender(Protocol):
    """What a transport may offer beside :class:`Transport` (``EndpointPool`` does): an attempt started by a
    call, its end a future's callback, no task (:meth:`loadgen.transport.EndpointPool.send_run`)."""

    def send_run(self, endpoint_url: str, body: bytes) -> tuple[Connection, Exchange] | None: ...

    async def post_run(
        self, endpoint_url: str, body: bytes, retry_of: tuple[Connection, Exchange, Result] | None = None
    ) -> bytes: ...


def reserve_of(streams: int) -> int:
    """Streams no single function may take out of *streams*: a tenth, at least one (none of a single stream)."""
    return max(1, streams // 10) if streams > 1 else 0


class CallListener(Protocol):
    """Hears of the end of the root calls submitted with it (a Session's group)."""

    def deliver(self, dispatch_id: str, outcome: CallOutcome) -> bool:
        """Take a call's outcome; ``False`` when it cannot (then it is kept for ``Wait``)."""
        ...


class UnknownCall(KeyError):
    """No call with this id was ever accepted here, or (:attr:`evicted`) its result was evicted."""

    def __init__(self, dispatch_id: str, evicted: bool = False) -> None:
        super().__init__(dispatch_id)
        self.evicted = evicted


class AsyncDispatcher:
    """Runs one shard's calls: accept, attempt, retry, fan out, finish, and answer waits."""

    def __init__(
        self,
        transport: Transport,
        stats: ShardStats,
        *,
        endpoint_url: str,
        id_prefix: str = "",
        retry_on_status: Sequence[int] | None = None,
        retry_policy: RetryPolicy | None = None,
        default_expiration: float = 60.0,
        result_retention: int = 100_000,
        result_retention_bytes: int | None = None,
        max_poll_calls: int = 10_000,
        max_result_bytes: int | None = None,
        on_root_finished: Callable[[Outcome], None] | None = None,
        max_attempts_in_flight: int = 1000,
        chaos: Chaos | None = None,
    ) -> None:
        self.scheduler = Scheduler(
            retry_on_status=retry_on_status,
            retry_policy=retry_policy,
            default_expiration=default_expiration,
            id_prefix=id_prefix,
            max_poll_calls=max_poll_calls,
            max_result_bytes=max_result_bytes,
            chaos=chaos,
        )
        self.stats = stats
        self._duplicate_rate = chaos.duplicate_rate if chaos is not None else 0.0
        self._rng = random.Random()
        self.endpoint_url = endpoint_url
        self._transport = transport
        self.on_root_finished = on_root_finished
        """Called with each root call's outcome as it ends (the shard's frontend keeps its ledger so)."""
        self._results = ResultStore(result_retention, result_retention_bytes)
        self._live: dict[str, int] = {}  # live root call -> the bytes it is counted as holding
        self._root_bytes = 0  # what the live root calls are counted as holding (their inputs)
        self._waiters: dict[str, list[asyncio.Future[CallOutcome]]] = {}
        self._tasks: dict[asyncio.Task[None], str] = {}  # attempt running as a task -> its function
        # attempt running without a task (Sender.send_run): its exchange's future -> what its end needs
        self._exchanges: dict[asyncio.Future[Result], tuple[RunAttempt, Connection, Exchange, float]] = {}
        self._sender: Sender | None = cast(Sender, transport) if hasattr(transport, "send_run") else None
        self._queues: collections.OrderedDict[str, collections.deque[tuple[float, RunAttempt]]] = (
            collections.OrderedDict()
        )  # per function, attempts waiting for a stream (with the time they began to wait), round robin
        self._queued = 0
        self._saturated = 0.0  # seconds during which attempts waited for a stream (the pool was the bottleneck)
        self._saturated_since: float | None = None
        self._running: dict[str, int] = {}
        self._queue_time: dict[str, Callable[[float], None]] = {}  # function -> its "queue" histogram's record
        self._attempt_time: dict[tuple[str, int], Callable[[float], None]] = {}  # (function, status) -> "attempt"'s
        self._call_time: dict[tuple[str, Outcome, int], CallRecorder] = {}  # ... -> stats.call_recorder
        self._max_running = max(1, max_attempts_in_flight)
        # self.streams as the current batch of actions found it (0: not asked yet). Only a connection's stream
        # ids running out while the batch is sent lowers it meanwhile; an attempt sent beyond it waits in the pool.
        self._streams_now = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    @property
    def counters(self) -> Counters:
        return self.scheduler.counters

    @property
    def held_bytes(self) -> int:
        """Bytes the live calls are counted as holding: each root call's input
        (:func:`loadgen.core.admission.call_bytes`), each child call's, and the coroutine states kept while
        calls wait for their children."""
        return self._root_bytes + self.scheduler.held_bytes

    @property
    def in_flight(self) -> int:
        """Root calls accepted and not yet terminal."""
        return self.scheduler.counters.in_flight

    def submit(
        self,
        calls: Sequence[call_pb2.Call],
        listener: CallListener | None = None,
        sizes: Sequence[int] | None = None,
    ) -> list[str]:
        """Accept validated root calls; return their ids. Attempts start at once.

        With a *listener*, each call's outcome goes to it when the call ends, and is kept for
        ``Wait`` only if the listener does not take it. *sizes*: the bytes each call holds
        (:func:`~loadgen.core.admission.call_bytes`; computed here when not given)."""
        if sizes is None:
            sizes = [call_bytes(call.input.ByteSize()) for call in calls]
        return self.submit_groups(((calls, listener, sizes),))[0]

    def submit_groups(
        self, groups: Sequence[tuple[Sequence[call_pb2.Call], CallListener | None, Sequence[int]]]
    ) -> list[list[str]]:
        """Accept several batches of validated root calls (each with its listener and sizes, as :meth:`submit`);
        return each batch's ids. Their attempts start at once, together."""
        now = time.time()
        scheduler, endpoint_url, live = self.scheduler, self.endpoint_url, self._live
        actions: list[Action] = []
        answers: list[list[str]] = []
        accepted = held = 0
        for calls, listener, sizes in groups:
            ids, started = scheduler.submit(calls, now, default_endpoint=endpoint_url, listener=listener)
            for dispatch_id, size in zip(ids, sizes, strict=True):
                live[dispatch_id] = size
            held += sum(sizes)
            accepted += len(ids)
            actions += started
            answers.append(ids)
        self._root_bytes += held
        self.stats.count_accepted(accepted)
        self._idle.clear()
        self._apply(actions)
        return answers

    def retain(self, dispatch_id: str, outcome: CallOutcome) -> None:
        """Keep an outcome for ``Wait`` (one a listener took but could not pass on)."""
        self._results.add(dispatch_id, outcome)

    def knows(self, dispatch_id: str) -> bool:
        """Whether *dispatch_id* is live or its result is still retained here."""
        return dispatch_id in self._live or dispatch_id in self._results

    async def wait(self, dispatch_id: str, timeout: float | None = None) -> CallOutcome:
        """The outcome of a root call once terminal; ``TimeoutError`` after *timeout*."""
        found = self._results.get(dispatch_id)
        if found is not None:
            return found
        if dispatch_id not in self._live:
            raise UnknownCall(dispatch_id, evicted=self.scheduler.issued(dispatch_id))
        future: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(dispatch_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._waiters.get(dispatch_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[dispatch_id]

    async def drain(self, timeout: float, reason: str = "the shard stopped before the call finished") -> int:
        """Wait up to *timeout* for in-flight calls, then stop. Returns how many were left.

        Those end as cancelled, *reason* their error message, and their waiters get that
        answer; the attempts still running are recorded with status ``CANCELLED``. No attempt
        runs after this returns.
        """
        if self.in_flight and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        left = self.in_flight
        self._draining = True
        if left:
            self._apply(self.scheduler.cancel_all(time.time(), reason))
        self._queues.clear()
        self._queued = 0
        self._queue_checked()
        for task in list(self._tasks):
            task.cancel()
        exchanges = list(self._exchanges.values())
        self._exchanges.clear()
        for attempt, conn, exchange, started in exchanges:
            conn.cancel(exchange)  # its future never resolves: counted here, as a task's cancellation is
            self.stats.record_attempt(attempt.function, "CANCELLED", time.perf_counter() - started)
            self._running[attempt.function] -= 1
        if self._timer is not None:
            self._timer.cancel()
        return left

    # ------------------------------------------------------------- internals

    def _apply(self, actions: list[Action]) -> None:
        self._streams_now = 0  # the pool is asked for its capacity once per batch of actions, by the first offer
        for action in actions:
            if isinstance(action, RunAttempt):
                self._offer(action)
            elif isinstance(action, CallFinished):
                if action.root:
                    self._finish(action)
            elif isinstance(action, RetryScheduled):
                self.stats.count_retry(status_name(action.status))
            elif isinstance(action, Resumed):
                self.stats.record_state(action.function, action.state_bytes)
            elif isinstance(action, PollRefused):
                self.stats.record_failure("poll", action.function, "INVALID_ARGUMENT", action.message)
            elif isinstance(action, ChaosInjected):
                self.stats.count(chaos_counter(action.kind))
        self._arm_timer()

    def _finish(self, action: CallFinished) -> None:
        outcome = CallOutcome.of(action)
        dispatch_id = action.dispatch_id
        self._root_bytes -= self._live.pop(dispatch_id, 0)
        listener = action.listener
        if listener is None or not cast(CallListener, listener).deliver(dispatch_id, outcome):
            evicted = self._results.add(dispatch_id, outcome, action.result_bytes)
            if evicted:
                self.stats.count_evicted(len(evicted))
        stats = self.stats
        ended = action.outcome
        key = (action.function, ended, action.status)
        record = self._call_time.get(key)
        if record is None:  # Enum.value is a Python-level property: 13x the cost of reading _value_
            record = self._call_time[key] = stats.call_recorder(
                action.function, ended._value_, status_name(action.status)
            )
        record(action.finished_at - action.accepted_at, action.breakdown)
        if ended is not _COMPLETED:
            kind: str = ended._value_
            name = status_name(action.status)
            error = action.result.error
            stats.record_failure(kind, action.function, name, _error_text(error.type, error.message, name))
        if self.on_root_finished is not None:
            self.on_root_finished(ended)
        for future in self._waiters.pop(dispatch_id, ()):
            if not future.done():
                future.set_result(outcome)
        if not self._live:
            self._idle.set()

    @property
    def streams(self) -> int:
        """Attempts that may run at once: ``max_attempts_in_flight``, or fewer when the pool has fewer slots."""
        return max(1, min(self._max_running, self._transport.capacity(self.endpoint_url)))

    def _may_start(self, function: str, streams: int) -> bool:
        busy = len(self._tasks) + len(self._exchanges)
        return busy < streams and self._running.get(function, 0) < streams - reserve_of(streams)

    def _offer(self, attempt: RunAttempt) -> None:
        function = attempt.function
        queue = self._queues.get(function)
        if not queue:
            streams = self._streams_now
            if not streams:
                streams = self._streams_now = self.streams
            if self._may_start(function, streams):
                self._start(function, attempt, 0.0)
                return
        if queue is None:
            queue = self._queues[function] = collections.deque()
        now = time.perf_counter()
        queue.append((now, attempt))
        self._queued += 1
        if self._saturated_since is None:
            self._saturated_since = now
        if self._queued > 2 * self.scheduler.live_calls + _COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        """Drop queued attempts that are no longer current (their call expired or ended while they waited),
        so a long queue holds no request of a finished call. At least half go each time: amortized O(1)."""
        scheduler = self.scheduler
        for function in list(self._queues):
            kept = collections.deque(
                entry
                for entry in self._queues[function]
                if scheduler.is_current(entry[1].dispatch_id, entry[1].attempt)
            )
            if kept:
                self._queues[function] = kept
            else:
                del self._queues[function]
        self._queued = sum(len(queue) for queue in self._queues.values())
        self._queue_checked()

    def _start(self, function: str, attempt: RunAttempt, waited: float) -> None:
        record = self._queue_time.get(function)
        if record is None:
            record = self._queue_time[function] = self.stats.recorder("queue", function, "attempt")
        record(waited)
        self.scheduler.sent(attempt.dispatch_id, attempt.attempt, waited)
        self._running[function] = self._running.get(function, 0) + 1
        sent = None
        if self._sender is not None:  # no task: the exchange's future calls back when the attempt ends
            started = time.perf_counter()
            sent = self._sender.send_run(attempt.endpoint, attempt.body)
        if sent is not None:
            conn, exchange = sent
            self._exchanges[exchange.fut] = (attempt, conn, exchange, started)
            exchange.fut.add_done_callback(self._on_exchange_done)
        else:
            # create_task, not ensure_future: the same task without ensure_future's checks of its argument
            task = asyncio.get_running_loop().create_task(self._attempt(attempt))
            self._tasks[task] = function
            task.add_done_callback(self._on_attempt_done)
        if self._duplicate_rate and self._rng.random() < self._duplicate_rate:
            self._running[function] += 1
            copy = asyncio.ensure_future(self._duplicate(attempt))
            self._tasks[copy] = function
            copy.add_done_callback(self._on_attempt_done)

    async def _duplicate(self, attempt: RunAttempt) -> None:
        """Send *attempt*'s request once more (chaos); its answer is counted, never given to the scheduler."""
        self.stats.count(chaos_counter("duplicated"))
        code: int = status.STATUS_OK
        message = ""
        try:
            body = await self._transport.post_run(attempt.endpoint, attempt.body)
            response = function_pb2.RunResponse.FromString(body)
        except AttemptError as exc:
            code, message = exc.code, exc.message
        except DecodeError as exc:
            code, message = _UNDECODABLE, f"undecodable RunResponse: {exc}"
        else:
            failure = _failure_of(response)
            if failure is not None:
                code, message = failure
        if code != status.STATUS_OK:
            self.stats.count(chaos_counter("duplicate_failed"))
            self.stats.record_failure("duplicate", attempt.function, status_name(code), message)

    def _on_exchange_done(self, fut: asyncio.Future[Result]) -> None:
        """An attempt started without a task ended: as :meth:`_attempt` would, or on in a task if retried."""
        entry = self._exchanges.pop(fut, None)
        if entry is None:  # cancelled by the drain
            return
        attempt, conn, exchange, started = entry
        function = attempt.function
        error = fut.exception()
        if error is None:
            result = fut.result()
            if type(result) is not bytes:  # a retry reason: the pool retries it, in a task (rare)
                task = asyncio.get_running_loop().create_task(self._attempt(attempt, started, (conn, exchange, result)))
                self._tasks[task] = function
                task.add_done_callback(self._on_attempt_done)
                return
            self._answered(attempt, started, result)
        elif isinstance(error, AttemptError):
            self._failed(attempt, started, error.code, error.message)
        else:
            self._running[function] -= 1
            self._next()
            raise error
        self._running[function] -= 1
        self._next()

    def _on_attempt_done(self, task: asyncio.Task[None]) -> None:
        function = self._tasks.pop(task, None)
        if function is not None:
            self._running[function] -= 1
        self._next()

    def _queue_checked(self) -> None:
        """End a period of saturation when no attempt waits any more."""
        if not self._queues and self._saturated_since is not None:
            self._saturated += time.perf_counter() - self._saturated_since
            self._saturated_since = None

    def saturated_seconds(self) -> float:
        """Seconds so far during which some attempt waited for a stream (every stream it may take was busy)."""
        since = self._saturated_since
        return self._saturated + (0.0 if since is None else time.perf_counter() - since)

    def _next(self) -> None:
        """Start queued attempts while streams are free: one per function in turn (round robin)."""
        queues, scheduler = self._queues, self.scheduler
        if not queues:  # the usual case, after every attempt: nothing waits, no need to ask the pool
            self._queue_checked()
            return
        streams = self.streams
        progressed = True
        while progressed and queues and len(self._tasks) + len(self._exchanges) < streams:
            progressed = False
            for function in list(queues):
                queue = queues[function]
                while queue and not scheduler.is_current(queue[0][1].dispatch_id, queue[0][1].attempt):
                    queue.popleft()  # superseded (the call expired or ended meanwhile)
                    self._queued -= 1
                if not queue:
                    del queues[function]
                    continue
                if self._may_start(function, streams):
                    queued_at, attempt = queue.popleft()
                    self._queued -= 1
                    queues.move_to_end(function)
                    self._start(function, attempt, time.perf_counter() - queued_at)
                    progressed = True
                    break
        self._queue_checked()

    @property
    def retained_results(self) -> tuple[int, int]:
        """``(results, bytes)`` kept for ``Wait`` now."""
        return len(self._results), self._results.bytes

    @property
    def queued_attempts(self) -> int:
        """Attempts waiting for a stream (superseded ones may still be among them until their turn)."""
        return self._queued

    @property
    def busy_streams(self) -> int:
        """Attempts running now."""
        return len(self._tasks) + len(self._exchanges)

    def oldest_queued(self, now: float) -> float:
        """Seconds the oldest queued attempt has waited (``time.perf_counter()`` *now*), 0 when none waits."""
        return max((now - queue[0][0] for queue in self._queues.values() if queue), default=0.0)

    async def _attempt(
        self,
        attempt: RunAttempt,
        started: float | None = None,
        retry_of: tuple[Connection, Exchange, Result] | None = None,
    ) -> None:
        if started is None:
            started = time.perf_counter()
        try:
            if retry_of is None:
                body = await self._transport.post_run(attempt.endpoint, attempt.body)
            else:
                body = await cast(Sender, self._transport).post_run(attempt.endpoint, attempt.body, retry_of)
        except asyncio.CancelledError:
            if self._draining:  # cut off by the drain: counted, so every attempt sent has an end
                self.stats.record_attempt(attempt.function, "CANCELLED", time.perf_counter() - started)
            raise
        except AttemptError as exc:
            self._failed(attempt, started, exc.code, exc.message)
            return
        self._answered(attempt, started, body)

    def _failed(self, attempt: RunAttempt, started: float, code: int, message: str) -> None:
        """The endpoint did not answer *attempt* (*code*: a fault's status)."""
        function = attempt.function
        self._record_attempt(function, code, started)
        self.stats.record_failure("attempt", function, status_name(code), message)
        self._apply(self.scheduler.on_failure(attempt.dispatch_id, attempt.attempt, code, message, time.time()))

    def _answered(self, attempt: RunAttempt, started: float, body: bytes) -> None:
        """The endpoint answered *attempt* with *body*, a ``RunResponse``."""
        try:
            response = function_pb2.RunResponse.FromString(body)
        except DecodeError as exc:
            self._failed(attempt, started, _UNDECODABLE, f"undecodable RunResponse: {exc}")
            return
        function = attempt.function
        self._record_attempt(function, response.status or status.STATUS_OK, started)
        failure = _failure_of(response)
        if failure is not None:
            code, message = failure
            self.stats.record_failure("attempt", function, status_name(code), message)
        self._apply(self.scheduler.on_response(attempt.dispatch_id, attempt.attempt, response, time.time()))

    def _record_attempt(self, function: str, code: int, started: float) -> None:
        key = (function, code)
        record = self._attempt_time.get(key)
        if record is None:
            record = self._attempt_time[key] = self.stats.recorder("attempt", function, status_name(code))
        record(time.perf_counter() - started)

    def _arm_timer(self) -> None:
        deadline = self.scheduler.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return  # an armed timer that fires early just finds nothing due and re-arms
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - time.time())
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._apply(self.scheduler.advance(time.time(), self.streams))
