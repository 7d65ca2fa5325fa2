"""The call lifecycle as a pure state machine: events in, actions out.

The :class:`Scheduler` owns every call accepted by one shard: its ids, its
current request, its attempts, retries with backoff, tail calls, pollers
waiting on children, and expiry. It performs no IO and never reads a clock:
the caller passes ``now`` (seconds since the epoch) with every event, sends
the :class:`RunAttempt` actions it gets back, reports what happened with
:meth:`Scheduler.on_response` / :meth:`Scheduler.on_failure`, and calls
:meth:`Scheduler.advance` when :meth:`Scheduler.next_deadline` has passed.

Rules, in the order they are applied to a response:

1. ``exit`` with a ``tail_call``: the call continues as the tail call (same
   ids), whatever the status (the SDK's ``Reset`` carries TEMPORARY_ERROR).
2. a status in ``retry_on_status``: the same request is sent again after an
   exponential backoff with jitter, unless that would start after the call's
   expiration, in which case the call expires (TIMEOUT).
3. ``poll``: each ``poll.calls[i]`` becomes a child call (fresh id, same
   root), and the caller is resumed with a ``poll_result`` once
   ``min_results`` results are ready (unset: once every child is done) or
   ``max_wait`` has passed, with at most ``max_results`` results (unset: all);
   the rest wait for its next poll.
   A poll asking for more than ``max_poll_calls`` children starts none: the caller is
   resumed at once with ``poll_result.error`` (as Dispatch caps a batch).
4. otherwise the call is terminal: completed (status OK or unset) or failed. A root call's
   result larger than ``max_result_bytes`` (what a ``Wait`` answer can carry) is not kept:
   the call fails with INVALID_RESPONSE and a small ``ResultTooLarge`` error saying its size.

Where a call's time goes: at every moment a live call is in exactly one phase, and the
:class:`CallFinished` of a root call says how long it spent in each (its :class:`Breakdown`), so that
``queue + attempts + backoff + children == finished_at - accepted_at``:

* queued: an attempt was made but the driver has not yet said it left (:meth:`Scheduler.sent`
  with the time it waited for a stream; a driver that never says so has no queue time);
* attempts: an attempt was on its way to the endpoint or being answered;
* backoff: waiting before a retry;
* children: waiting (in a poll) for child calls' results.

It also says how often the call was resumed with a ``poll_result`` and how many child calls its
polls started; each resume is reported as a :class:`Resumed` with the size of the coroutine state
sent back.

With a :class:`~loadgen.core.chaos.Chaos` policy it also delays child results on their way to the
parent, reorders the results of a resume and resumes with only some of the results ready, each at
its rate, and says so with a :class:`ChaosInjected` (duplicate deliveries are the driver's, which
sends the requests).
"""

from __future__ import annotations

import enum
import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from google.protobuf.any_pb2 import Any

from loadgen.core.admission import call_bytes
from loadgen.core.chaos import Chaos
from loadgen.pb import call_pb2, error_pb2, function_pb2, poll_pb2
from loadgen.pb import status_pb2 as status
from loadgen.protocol.status import DEFAULT_RETRY_ON_STATUS, Status, status_name

__all__ = [
    "Action",
    "Breakdown",
    "CallFinished",
    "ChaosInjected",
    "Counters",
    "Outcome",
    "PollRefused",
    "Resumed",
    "RetryPolicy",
    "RetryScheduled",
    "RunAttempt",
    "Scheduler",
]

TOO_LARGE_STATUS: Final = status.STATUS_INVALID_RESPONSE
"""The status of a call whose result is larger than a ``Wait`` answer can carry."""


def _too_large(
    result: call_pb2.CallResult, size: int, limit: int, outcome: Outcome, code: Status
) -> call_pb2.CallResult:
    """The small error result kept instead of a result of *size* bytes, above *limit*."""
    ended = outcome.value if outcome is not Outcome.FAILED else f"failed with {status_name(code)}"
    message = (
        f"the call {ended} with a result of {size:,} bytes, above the {limit:,} bytes a Wait answer can carry"
        " (max_message_bytes less 1 KiB); the result was not kept"
    )
    return call_pb2.CallResult(
        correlation_id=result.correlation_id,
        dispatch_id=result.dispatch_id,
        error=error_pb2.Error(type="ResultTooLarge", message=message),
    )


class Outcome(enum.Enum):
    """How a call ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # ended by a drain (the run or the service stopped), not by its deadline

    # Members are singletons: hashed by identity, not by Enum's Python-level hash of the name (4x cheaper
    # as a dict key, once or twice per call ended).
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: ``d/2 + uniform(0, d/2)``, ``d = base * factor**n``."""

    base_delay: float = 0.05
    max_delay: float = 2.0
    factor: float = 2.0
    max_attempts: int | None = None

    def delay(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry number *retry_number* (1 for the first retry)."""
        if self.base_delay <= 0:
            return 0.0
        ceiling = min(self.max_delay, self.base_delay * self.factor ** (retry_number - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RunAttempt(NamedTuple):
    """Send *body* (a serialized ``RunRequest`` of *function*) to *endpoint*; report back with *attempt* as
    the token. (This and :class:`CallFinished`, made for every call, are named tuples: immutable like the
    other actions, and built in a third of the instructions of a frozen dataclass.)"""

    dispatch_id: str
    attempt: int
    endpoint: str
    function: str
    body: bytes

    @property
    def request(self) -> function_pb2.RunRequest:
        """The ``RunRequest`` sent, decoded from :attr:`body` (a new message each time)."""
        return function_pb2.RunRequest.FromString(self.body)


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """An attempt ended with a retryable status; the next one starts after *delay*."""

    dispatch_id: str
    function: str
    status: Status
    delay: float


class Breakdown(NamedTuple):
    """Where a root call's time went (seconds in each phase; see the module docstring), how often it
    was resumed and how many child calls its polls started."""

    queue: float
    attempts: float
    backoff: float
    children: float
    resumes: int
    child_calls: int


class CallFinished(NamedTuple):
    """A call reached a terminal state. ``root`` calls are the ones accepted by ``Dispatch``;
    ``function`` is the one dispatched (before any tail call); ``listener`` is what
    :meth:`Scheduler.submit` was given with a root call (``None`` for children)."""

    dispatch_id: str
    root: bool
    function: str
    outcome: Outcome
    status: Status
    result: call_pb2.CallResult
    accepted_at: float
    finished_at: float
    attempts: int
    listener: object = None
    result_bytes: int = 0
    """The serialized size of ``result`` (root calls; 0 for children)."""
    breakdown: Breakdown | None = None
    """Where a root call's time went (``None`` for children)."""


@dataclass(frozen=True, slots=True)
class Resumed:
    """A call is resumed with a ``poll_result`` carrying *state_bytes* bytes of coroutine state."""

    dispatch_id: str
    function: str
    state_bytes: int


@dataclass(frozen=True, slots=True)
class PollRefused:
    """A poll asked for more children than allowed; the caller was resumed with *message* as its error."""

    dispatch_id: str
    function: str
    message: str


@dataclass(frozen=True, slots=True)
class ChaosInjected:
    """A fault of *kind* (``delayed``, ``reordered``, ``partial``) was injected into call *dispatch_id*."""

    kind: str
    dispatch_id: str


Action = RunAttempt | RetryScheduled | CallFinished | PollRefused | Resumed | ChaosInjected


@dataclass(slots=True)
class Counters:
    """Accounting of root calls (``accepted == completed + sum(failed) + expired + cancelled + in_flight``),
    plus attempts and retries by status of every call, children included."""

    accepted: int = 0
    completed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    attempts: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    cancelled: int = 0

    @property
    def in_flight(self) -> int:
        return self.accepted - self.completed - sum(self.failed.values()) - self.expired - self.cancelled


class _State(enum.Enum):
    READY = 0  # request built, attempt being sent
    BACKOFF = 1  # waiting before a retry
    POLLING = 2  # waiting for children
    DONE = 3


# The members the per-call path reads, as module globals: reading a member off its Enum class goes through the
# metaclass's attribute lookup, the cost of a dozen bytecodes each time (a global is one).
_READY: Final = _State.READY
_BACKOFF: Final = _State.BACKOFF
_POLLING: Final = _State.POLLING
_DONE: Final = _State.DONE
_COMPLETED: Final = Outcome.COMPLETED
_FAILED: Final = Outcome.FAILED
_EXPIRED: Final = Outcome.EXPIRED
_CANCELLED: Final = Outcome.CANCELLED

_NANOS_MIN: Final = -62_135_596_800 * 1_000_000_000
"""The earliest time a ``Timestamp`` can hold (0001-01-01), in nanoseconds since the epoch."""
_NANOS_MAX: Final = 253_402_300_800 * 1_000_000_000 - 1
"""The latest time a ``Timestamp`` can hold (9999-12-31T23:59:59.999999999), in nanoseconds since the epoch."""

_NO_RESULTS: Final[list[call_pb2.CallResult]] = []
"""The child results ready for a call that has none (shared, never appended to: most calls never poll)."""


class _Call:
    __slots__ = (
        "accepted_at",
        "attempt",
        "attempts",
        "body",
        "children",
        "correlation_id",
        "current",
        "deadline",
        "dispatch_id",
        "endpoint",
        "function",
        "held",
        "last_message",
        "last_status",
        "listener",
        "max_results",
        "min_results",
        "outstanding",
        "parent",
        "poll_deadline",
        "ready",
        "resumes",
        "retries_in_run",
        "root",
        "sent",
        "state",
        "state_bytes",
        "state_typed",
        "t_attempts",
        "t_backoff",
        "t_children",
        "t_phase",
        "t_queue",
    )

    def __init__(self, dispatch_id: str, parent: _Call | None, correlation_id: int, endpoint: str) -> None:
        self.dispatch_id = dispatch_id
        self.function = ""  # as dispatched; tail calls change the request's function, not this
        self.parent = parent
        self.correlation_id = correlation_id
        self.endpoint = endpoint
        self.current = ""  # the function of the request sent now (after tail calls)
        self.root = dispatch_id  # the root call's id
        self.body = b""  # the serialized RunRequest sent now
        self.state = _READY
        self.attempt = 0  # token of the attempt in flight
        self.attempts = 0
        self.sent = 0  # attempts the driver said it sent (Scheduler.sent)
        self.retries_in_run = 0
        self.last_status: Status = status.STATUS_UNSPECIFIED
        self.last_message = ""
        self.accepted_at = 0.0
        self.deadline = 0.0
        self.outstanding = 0
        self.ready: list[call_pb2.CallResult] = _NO_RESULTS  # a list of its own once a child result arrives
        self.min_results = 0
        self.max_results = 0
        self.poll_deadline: float | None = None
        self.state_bytes: bytes | None = None
        self.state_typed: Any | None = None
        self.held = 0  # bytes counted in Scheduler.held_bytes for this call (a child's input, a state)
        self.listener: object = None
        self.t_phase = 0.0  # when the current phase began (see the module docstring)
        self.t_queue = 0.0
        self.t_attempts = 0.0
        self.t_backoff = 0.0
        self.t_children = 0.0
        self.resumes = 0
        self.children = 0


class _Timer(enum.IntEnum):
    RETRY = 0
    MAX_WAIT = 1
    EXPIRE = 2
    DELIVER = 3  # delayed child results reach their parent (chaos)


_RETRY: Final = _Timer.RETRY
_MAX_WAIT: Final = _Timer.MAX_WAIT
_EXPIRE: Final = _Timer.EXPIRE
_DELIVER: Final = _Timer.DELIVER


class Scheduler:
    """Pure call-lifecycle state machine for one shard (see module docstring)."""

    def __init__(
        self,
        *,
        retry_on_status: Iterable[Status] | None = None,
        retry_policy: RetryPolicy | None = None,
        default_expiration: float = 60.0,
        id_prefix: str = "",
        rng: random.Random | None = None,
        max_poll_calls: int = 10_000,
        max_result_bytes: int | None = None,
        chaos: Chaos | None = None,
    ) -> None:
        if default_expiration <= 0:
            raise ValueError("default_expiration must be positive")
        if len(id_prefix) > 16:
            raise ValueError("id_prefix must be at most 16 characters")
        self.retry_on_status = frozenset(DEFAULT_RETRY_ON_STATUS if retry_on_status is None else retry_on_status)
        self.retry_policy = retry_policy or RetryPolicy()
        self.default_expiration = default_expiration
        self.max_poll_calls = max_poll_calls
        self.max_result_bytes = max_result_bytes
        self.counters = Counters()
        self.held_bytes = 0
        """Bytes the live calls hold beyond their roots' inputs (which the driver counts as it submits
        them): each child call (:func:`~loadgen.core.admission.call_bytes` of its input) and each coroutine
        state kept while a call waits for its children."""
        self._id_prefix = id_prefix
        self._id_width = 32 - len(id_prefix)
        escaped = id_prefix.replace("{", "{{").replace("}", "}}")
        self._format_id = f"{escaped}{{:0{self._id_width}x}}".format
        self._next_id = 1
        self._rng = rng or random.Random()
        self._calls: dict[str, _Call] = {}
        self._timers: list[tuple[float, int, _Timer, str, int]] = []
        self._timer_seq = 0
        self._chaos = chaos if chaos is not None and chaos.in_scheduler else None
        self._late: dict[str, list[tuple[float, call_pb2.CallResult]]] = {}  # parent -> delayed child results

    # ---------------------------------------------------------------- events

    def submit(
        self, calls: Sequence[call_pb2.Call], now: float, *, default_endpoint: str = "", listener: object = None
    ) -> tuple[list[str], list[Action]]:
        """Accept root calls; return their dispatch ids (consecutive numbers, in order) and the first
        attempts. *listener* comes back in each call's :class:`CallFinished`."""
        actions: list[Action] = []
        ids = []
        for call in calls:
            state = self._start_call(call, None, now, default_endpoint, actions)
            state.listener = listener
            ids.append(state.dispatch_id)
        self.counters.accepted += len(ids)
        return ids, actions

    def on_response(
        self, dispatch_id: str, attempt: int, response: function_pb2.RunResponse, now: float
    ) -> list[Action]:
        """An attempt got a ``RunResponse``. Stale or unknown attempts are ignored."""
        call = self._live_attempt(dispatch_id, attempt)
        if call is None:
            return []
        call.t_attempts += now - call.t_phase
        call.t_phase = now
        actions: list[Action] = []
        code = response.status
        directive = response.WhichOneof("directive")
        if directive == "exit" and response.exit.HasField("tail_call"):
            self._follow_tail_call(call, response.exit.tail_call, now, actions)
        elif code in self.retry_on_status:
            self._retry(call, code, "", now, actions)
        elif directive == "poll":
            self._on_poll(call, response.poll, now, actions)
        elif code in (status.STATUS_OK, status.STATUS_UNSPECIFIED):
            self._finish(call, _COMPLETED, status.STATUS_OK, response.exit.result, now, actions)
        else:
            result = response.exit.result if directive == "exit" else None
            self._fail(call, code, "the endpoint returned this status", result, now, actions)
        return actions

    def on_failure(self, dispatch_id: str, attempt: int, code: Status, message: str, now: float) -> list[Action]:
        """An attempt failed without a usable response (transport fault, HTTP error, bad body)."""
        call = self._live_attempt(dispatch_id, attempt)
        if call is None:
            return []
        call.t_attempts += now - call.t_phase
        call.t_phase = now
        actions: list[Action] = []
        if code in self.retry_on_status:
            self._retry(call, code, message, now, actions)
        else:
            self._fail(call, code, message, None, now, actions)
        return actions

    def advance(self, now: float, streams: int | None = None) -> list[Action]:
        """Fire every timer due at *now*: retries, poll ``max_wait``, expirations (*streams*: how many
        attempts could run at once, named when a call expires never attempted)."""
        actions: list[Action] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, dispatch_id, token = heapq.heappop(timers)
            call = self._calls.get(dispatch_id)
            if call is None or call.state is _DONE:
                continue
            if kind is _EXPIRE:
                self._expire(call, now, actions, streams)
            elif kind is _RETRY and call.state is _BACKOFF and call.attempt == token:
                self._send(call, now, actions)
            elif kind is _MAX_WAIT and call.state is _POLLING and call.attempt == token:
                self._maybe_resume(call, now, actions, waited_enough=True)
            elif kind is _DELIVER:
                self._deliver_late(call, now, actions)
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`advance` next has work, or ``None``."""
        timers = self._timers
        while timers:
            _, _, _kind, dispatch_id, _token = timers[0]
            call = self._calls.get(dispatch_id)
            if call is not None and call.state is not _DONE:
                return timers[0][0]
            heapq.heappop(timers)
        return None

    def cancel_all(self, now: float, reason: str) -> list[Action]:
        """End every live call as cancelled, *reason* its error message (a shard stops before they finish).

        On the wire a cancelled call's status is ``STATUS_TIMEOUT`` (the SDKs have no other status
        for it); its :class:`CallFinished` says :attr:`Outcome.CANCELLED` and its error type is ``CANCELLED``.
        """
        actions: list[Action] = []
        for call in list(self._calls.values()):
            if call.state is not _DONE:
                self._finish(call, _CANCELLED, status.STATUS_TIMEOUT, None, now, actions, error=("CANCELLED", reason))
        return actions

    def issued(self, dispatch_id: str) -> bool:
        """Whether *dispatch_id* is one this scheduler gave out (live, ended, or ended and forgotten)."""
        prefix = self._id_prefix
        if len(dispatch_id) != len(prefix) + self._id_width or not dispatch_id.startswith(prefix):
            return False
        try:
            number = int(dispatch_id[len(prefix) :], 16)
        except ValueError:
            return False
        return 0 < number < self._next_id

    def sent(self, dispatch_id: str, attempt: int, waited: float = 0.0) -> None:
        """*attempt* left for the endpoint after it *waited* seconds for a stream (its call's queue time);
        a driver that says so passes ``streams`` to :meth:`advance`, and an expired call's message counts
        only attempts sent."""
        call = self._live_attempt(dispatch_id, attempt)
        if call is not None:
            call.sent += 1
            if waited > 0:
                call.t_queue += waited
                call.t_phase += waited

    def is_current(self, dispatch_id: str, attempt: int) -> bool:
        """Whether *attempt* is still the one the call waits for (not expired, superseded or done)."""
        return self._live_attempt(dispatch_id, attempt) is not None

    @property
    def live_calls(self) -> int:
        """Calls (roots and children) not yet terminal."""
        return len(self._calls)

    # ------------------------------------------------------------- internals

    def _new_id(self) -> str:
        number = self._next_id
        self._next_id = number + 1
        return self._format_id(number)

    def _push_timer(self, when: float, kind: _Timer, call: _Call, token: int) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, kind, call.dispatch_id, token))

    def _live_attempt(self, dispatch_id: str, attempt: int) -> _Call | None:
        call = self._calls.get(dispatch_id)
        if call is None or call.state is not _READY or call.attempt != attempt:
            return None
        return call

    def _start_call(
        self, spec: call_pb2.Call, parent: _Call | None, now: float, default_endpoint: str, actions: list[Action]
    ) -> _Call:
        call = _Call(self._new_id(), parent, spec.correlation_id, spec.endpoint or default_endpoint)
        expiration = self.default_expiration
        if spec.HasField("expiration"):
            given = spec.expiration.ToTimedelta().total_seconds()
            if given > 0:
                expiration = given
        call.accepted_at = call.t_phase = now
        call.deadline = now + expiration
        if parent is not None:
            call.deadline = min(call.deadline, parent.deadline)
        call.function = spec.function
        request = function_pb2.RunRequest()
        if spec.HasField("input"):
            request.input.CopyFrom(spec.input)
        else:
            request.input.SetInParent()
        if parent is not None:
            call.held = call_bytes(request.input.ByteSize())
            self.held_bytes += call.held
            call.root = parent.root
        self._encode(call, spec.function, request)
        self._calls[call.dispatch_id] = call
        self._push_timer(call.deadline, _EXPIRE, call, 0)
        self._send(call, now, actions)
        return call

    def _send(self, call: _Call, now: float, actions: list[Action]) -> None:
        state = call.state
        if state is _BACKOFF:
            call.t_backoff += now - call.t_phase
            call.t_phase = now
        elif state is _POLLING:
            call.t_children += now - call.t_phase
            call.t_phase = now
        call.state = _READY
        call.attempt += 1
        call.attempts += 1
        self.counters.attempts += 1
        actions.append(RunAttempt(call.dispatch_id, call.attempt, call.endpoint, call.current, call.body))

    def _encode(self, call: _Call, function: str, request: function_pb2.RunRequest) -> None:
        """Make *request* (its ``input`` or ``poll_result`` set) *call*'s request, of *function*, with the
        call's ids and times; only its serialized bytes are kept."""
        call.current = request.function = function
        request.dispatch_id = call.dispatch_id
        if call.parent is not None:
            request.parent_dispatch_id = call.parent.dispatch_id
        request.root_dispatch_id = call.root
        # Timestamp.FromNanoseconds's work done here (that helper is pure Python: a fifth of the encoding)
        created = int(call.accepted_at * 1e9)
        expires = int(call.deadline * 1e9)
        if not (_NANOS_MIN <= created <= _NANOS_MAX and _NANOS_MIN <= expires <= _NANOS_MAX):
            # out of a Timestamp's range: the helper raises its ValueError
            request.creation_time.FromNanoseconds(created)
            request.expiration_time.FromNanoseconds(expires)
        stamp = request.creation_time
        stamp.seconds = created // 1_000_000_000
        stamp.nanos = created % 1_000_000_000
        stamp = request.expiration_time
        stamp.seconds = expires // 1_000_000_000
        stamp.nanos = expires % 1_000_000_000
        call.body = request.SerializeToString()

    def _follow_tail_call(self, call: _Call, tail: call_pb2.Call, now: float, actions: list[Action]) -> None:
        request = function_pb2.RunRequest()
        if tail.HasField("input"):
            request.input.CopyFrom(tail.input)
        else:
            request.input.SetInParent()
        self._encode(call, tail.function, request)
        if tail.endpoint:
            call.endpoint = tail.endpoint
        call.retries_in_run = 0
        call.ready = _NO_RESULTS
        self._keep_state(call, None, None)
        self._send(call, now, actions)

    def _retry(self, call: _Call, code: Status, message: str, now: float, actions: list[Action]) -> None:
        call.last_status = code
        call.last_message = message
        name = status_name(code)
        policy = self.retry_policy
        if policy.max_attempts is not None and call.attempts >= policy.max_attempts:
            detail = f"gave up after {call.attempts} attempts"
            self._fail(call, code, f"{detail}: {message}" if message else detail, None, now, actions)
            return
        call.retries_in_run += 1
        delay = policy.delay(call.retries_in_run, self._rng)
        if now + delay >= call.deadline:
            reason = f"expired after {call.attempts} attempts; last status {name}" + (f": {message}" if message else "")
            self._finish(call, _EXPIRED, status.STATUS_TIMEOUT, None, now, actions, error=("TIMEOUT", reason))
            return
        self.counters.retries[name] = self.counters.retries.get(name, 0) + 1
        actions.append(RetryScheduled(call.dispatch_id, call.current, code, delay))
        if delay <= 0:
            self._send(call, now, actions)
        else:
            call.state = _BACKOFF
            self._push_timer(now + delay, _RETRY, call, call.attempt)

    def _keep_state(self, call: _Call, state: bytes | None, typed: Any | None) -> None:
        """Keep (or drop, with None) the coroutine state of *call*, counted in :attr:`held_bytes`."""
        old = len(call.state_bytes or b"") if call.state_typed is None else call.state_typed.ByteSize()
        new = len(state or b"") if typed is None else typed.ByteSize()
        call.state_bytes, call.state_typed = state, typed
        call.held += new - old
        self.held_bytes += new - old

    def _on_poll(self, call: _Call, poll: poll_pb2.Poll, now: float, actions: list[Action]) -> None:
        call.state = _POLLING
        which = poll.WhichOneof("state")
        self._keep_state(
            call,
            poll.coroutine_state if which == "coroutine_state" else None,
            poll.typed_coroutine_state if which == "typed_coroutine_state" else None,
        )
        asked = len(poll.calls)
        if asked > self.max_poll_calls:
            message = f"asked for {asked} calls; at most {self.max_poll_calls} per poll (max_poll_calls)"
            actions.append(PollRefused(call.dispatch_id, call.current, message))
            self._resume(call, [], error_pb2.Error(type="TooManyCalls", message=message), now, actions)
            return
        call.min_results = max(0, poll.min_results)
        call.max_results = max(0, poll.max_results)
        call.poll_deadline = None
        if poll.HasField("max_wait"):
            wait = poll.max_wait.ToTimedelta().total_seconds()
            if wait >= 0:
                call.poll_deadline = now + wait
                self._push_timer(call.poll_deadline, _MAX_WAIT, call, call.attempt)
        for spec in poll.calls:
            self._start_call(spec, call, now, call.endpoint, actions)
            call.outstanding += 1
        call.children += asked
        self._maybe_resume(call, now, actions)

    def _maybe_resume(self, call: _Call, now: float, actions: list[Action], waited_enough: bool = False) -> None:
        ready = len(call.ready)
        if call.outstanding and not waited_enough:
            wanted = call.min_results or (ready + call.outstanding)
            if ready < min(wanted, ready + call.outstanding):
                return
        limit = call.max_results or ready
        if self._chaos is not None and ready > 1:
            limit = self._shake(self._chaos, call, limit, actions)
        results, call.ready = call.ready[:limit], call.ready[limit:]
        self._resume(call, results, None, now, actions)

    def _shake(self, chaos: Chaos, call: _Call, limit: int, actions: list[Action]) -> int:
        """Reorder *call*'s ready results and take fewer of them, at the chaos rates; the new limit."""
        rng = self._rng
        if chaos.reorder_rate and rng.random() < chaos.reorder_rate:
            before = [id(result) for result in call.ready]
            rng.shuffle(call.ready)
            if [id(result) for result in call.ready] == before:
                call.ready.reverse()
            actions.append(ChaosInjected("reordered", call.dispatch_id))
        take = min(limit, len(call.ready))
        if chaos.partial_rate and take > 1 and rng.random() < chaos.partial_rate:
            actions.append(ChaosInjected("partial", call.dispatch_id))
            return rng.randint(1, take - 1)
        return limit

    def _deliver(self, parent: _Call, result: call_pb2.CallResult, now: float, actions: list[Action]) -> None:
        parent.outstanding -= 1
        if parent.ready is _NO_RESULTS:
            parent.ready = []
        parent.ready.append(result)
        if parent.state is _POLLING:
            self._maybe_resume(parent, now, actions)

    def _deliver_late(self, parent: _Call, now: float, actions: list[Action]) -> None:
        late = self._late.get(parent.dispatch_id)
        if not late:
            return
        due = [result for when, result in late if when <= now]
        rest = [(when, result) for when, result in late if when > now]
        if rest:
            self._late[parent.dispatch_id] = rest
        else:
            del self._late[parent.dispatch_id]
        for result in due:
            self._deliver(parent, result, now, actions)

    def _resume(
        self,
        call: _Call,
        results: list[call_pb2.CallResult],
        error: error_pb2.Error | None,
        now: float,
        actions: list[Action],
    ) -> None:
        request = function_pb2.RunRequest()
        poll_result = request.poll_result
        if call.state_typed is not None:
            poll_result.typed_coroutine_state.CopyFrom(call.state_typed)
            size = call.state_typed.ByteSize()
        else:
            state = call.state_bytes or b""
            poll_result.coroutine_state = state
            size = len(state)
        poll_result.results.extend(results)
        if error is not None:
            poll_result.error.CopyFrom(error)
        self._encode(call, call.current, request)
        call.retries_in_run = 0
        call.resumes += 1
        actions.append(Resumed(call.dispatch_id, call.function, size))
        self._send(call, now, actions)

    def _fail(
        self,
        call: _Call,
        code: Status,
        message: str,
        result: call_pb2.CallResult | None,
        now: float,
        actions: list[Action],
    ) -> None:
        error = None
        if result is None or not result.HasField("error"):
            error = (status_name(code), message or "the endpoint returned this status")
        self._finish(call, _FAILED, code, result, now, actions, error=error)

    def _expire(self, call: _Call, now: float, actions: list[Action], streams: int | None = None) -> None:
        attempts = call.attempts if streams is None else call.sent
        reason = f"call expired after {now - call.accepted_at:.3f}s and {attempts} attempts"
        if not attempts:
            waited = now - call.accepted_at
            reason = f"call expired after {waited:.3f}s, never attempted: all {streams} streams were busy"
        if call.last_status:
            reason += f"; last status {status_name(call.last_status)}"
            if call.last_message:
                reason += f": {call.last_message}"
        self._finish(call, _EXPIRED, status.STATUS_TIMEOUT, None, now, actions, error=("TIMEOUT", reason))

    def _finish(
        self,
        call: _Call,
        outcome: Outcome,
        code: Status,
        result: call_pb2.CallResult | None,
        now: float,
        actions: list[Action],
        *,
        error: tuple[str, str] | None = None,
    ) -> None:
        spent = now - call.t_phase  # the last phase ends (an attempt's counts as queue while it was not sent)
        state = call.state
        if state is _READY:
            if call.sent < call.attempts:
                call.t_queue += spent
            else:
                call.t_attempts += spent
        elif state is _BACKOFF:
            call.t_backoff += spent
        elif state is _POLLING:
            call.t_children += spent
        call.state = _DONE
        del self._calls[call.dispatch_id]
        self.held_bytes -= call.held
        call.held = 0
        chaos = self._chaos
        if chaos is not None:
            self._late.pop(call.dispatch_id, None)
        final = call_pb2.CallResult()
        if result is not None:
            final.CopyFrom(result)
        if error is not None:
            final.ClearField("output")
            final.error.CopyFrom(error_pb2.Error(type=error[0], message=error[1]))
        final.correlation_id = call.correlation_id
        final.dispatch_id = call.dispatch_id
        parent = call.parent
        size = 0
        breakdown = None
        if parent is None:
            breakdown = Breakdown(
                call.t_queue, call.t_attempts, call.t_backoff, call.t_children, call.resumes, call.children
            )
            size = final.ByteSize()
            limit = self.max_result_bytes
            if limit is not None and size > limit:
                final = _too_large(final, size, limit, outcome, code)
                code, outcome, size = TOO_LARGE_STATUS, _FAILED, final.ByteSize()
            counters = self.counters
            if outcome is _COMPLETED:
                counters.completed += 1
            elif outcome is _EXPIRED:
                counters.expired += 1
            elif outcome is _CANCELLED:
                counters.cancelled += 1
            else:
                name = status_name(code)
                counters.failed[name] = counters.failed.get(name, 0) + 1
        actions.append(
            CallFinished(
                call.dispatch_id,
                parent is None,
                call.function,
                outcome,
                code,
                final,
                call.accepted_at,
                now,
                call.attempts,
                call.listener,
                size,
                breakdown,
            )
        )
        if parent is not None and parent.state is not _DONE:
            if chaos is not None and chaos.delay_rate and self._rng.random() < chaos.delay_rate:
                self._late.setdefault(parent.dispatch_id, []).append((now + chaos.delay, final))
                self._push_timer(now + chaos.delay, _DELIVER, parent, 0)
                actions.append(ChaosInjected("delayed", call.dispatch_id))
            else:
                self._deliver(parent, final, now, actions)
