"""``DispatchService``: the Dispatch API (gRPC servicer) over the pure scheduler.

Two ways to drive it, as with the old ``dispatch.test`` mock:

* ``dispatch_calls()`` runs exactly the attempts due now, synchronously, in
  the calling thread; the follow-up work they create (retries, children,
  resumes) is left for the next call. Deterministic, for tests.
* ``start()`` / ``stop()`` (or ``with service:``) run attempts in background
  threads (``concurrency`` of them) as soon as they are due.

Results: ``result(dispatch_id, timeout)`` blocks until a call is terminal,
and the ``Wait`` RPC (a loadgen extension) does the same for remote clients.

Beside the SDK in one process (see ``loadgen.seed.messages``): ``dispatch()``
takes loadgen's ``Call`` messages or the SDK's. The endpoint client is handed
``RunRequest`` messages in the SDK's classes when the SDK's generated modules
are loaded in the process (so an endpoint client written for the SDK works as
it is), else in loadgen's; it may answer in either. ``queue`` and
``roundtrips`` show the messages in the classes the endpoint client sees.
``result()`` answers in loadgen's classes; outputs are ordinary
``google.protobuf.Any`` values either way.
"""

from __future__ import annotations

import collections
import enum
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from loadgen.core.results import CallOutcome
from loadgen.core.scheduler import (
    Action,
    CallFinished,
    Counters,
    RetryPolicy,
    RetryScheduled,
    RunAttempt,
    Scheduler,
)
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, function_pb2
from loadgen.pb import status_pb2 as status
from loadgen.protocol.auth import authorization_error, expected_authorization
from loadgen.protocol.constants import OUTCOME_TRAILER, STATUS_TRAILER
from loadgen.protocol.validation import InvalidCall, validate_calls
from loadgen.seed.endpoint_client import EndpointClient
from loadgen.seed.faults import classify_exception
from loadgen.seed.messages import as_own, convert, sdk_class

__all__ = ["CallType", "DispatchService", "PendingAttempt", "RoundTrip"]

logger = logging.getLogger(__name__)

RoundTrip = tuple[Message, Message]
"""A ``RunRequest`` handed to the endpoint client and the ``RunResponse`` it answered."""


class CallType(enum.Enum):
    """Why an attempt is sent (the old mock's ``CallType``)."""

    CALL = 0
    RESUME = 1
    RETRY = 2


PendingAttempt = tuple[str, Message, CallType]
"""An entry of :attr:`DispatchService.queue`: dispatch id, ``RunRequest``, why it is sent."""


class DispatchService(dispatch_pb2_grpc.DispatchServiceServicer):
    """The Dispatch API, driving one endpoint through an :class:`EndpointClient`."""

    def __init__(
        self,
        endpoint_client: EndpointClient,
        api_key: str | None = None,
        retry_on_status: Iterable[int] | None = None,
        collect_roundtrips: bool = False,
        *,
        retry_policy: RetryPolicy | None = None,
        default_expiration: float = 60.0,
        concurrency: int = 16,
        result_retention: int = 100_000,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("DISPATCH_API_KEY")
        if not key:
            raise ValueError("an API key is required: pass api_key= or set DISPATCH_API_KEY")
        self.endpoint_client = endpoint_client
        self._expected_auth = expected_authorization(key)
        # Ids unique across services and processes (8 random hex digits, then a counter): an endpoint
        # may keep state per dispatch id for the life of its process (dispatch-py 0.8 does).
        self._scheduler = Scheduler(
            retry_on_status=retry_on_status,
            retry_policy=retry_policy,
            default_expiration=default_expiration,
            id_prefix=secrets.token_hex(4),
        )
        self.collect_roundtrips = collect_roundtrips
        self.roundtrips: collections.OrderedDict[str, list[RoundTrip]] = collections.OrderedDict()
        self._concurrency = max(1, concurrency)
        self._retention = max(1, result_retention)
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[RunAttempt, CallType]] = collections.deque()
        self._retrying: set[str] = set()
        self._results: collections.OrderedDict[str, CallOutcome] = collections.OrderedDict()
        self._issued: set[str] = set()
        self._workers: list[threading.Thread] = []
        self._stopping = False

    # --------------------------------------------------------- gRPC methods

    def Dispatch(self, request: dispatch_pb2.DispatchRequest, context: grpc.ServicerContext) -> Any:
        """Authenticate, validate and accept a batch of calls; return their ids in order."""
        self._authenticate(context)
        try:
            ids = self.dispatch(request.calls)
        except InvalidCall as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return dispatch_pb2.DispatchResponse(dispatch_ids=ids)

    def Wait(self, request: dispatch_pb2.WaitRequest, context: grpc.ServicerContext) -> Any:
        """Block until the call is terminal and return its ``CallResult`` (status in trailing metadata)."""
        self._authenticate(context)
        timeout: float | None = None
        if request.HasField("timeout"):
            timeout = request.timeout.ToTimedelta().total_seconds()
        remaining = context.time_remaining()
        if remaining is not None and (timeout is None or remaining < timeout):
            timeout = remaining
        try:
            outcome = self.outcome(request.dispatch_id, timeout=timeout)
        except KeyError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc.args[0]))
        except TimeoutError:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call is not finished yet")
        context.set_trailing_metadata(
            ((STATUS_TRAILER, status.Status.Name(outcome.status)), (OUTCOME_TRAILER, outcome.outcome.value))
        )
        return outcome.result

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        problem = authorization_error(context.invocation_metadata(), self._expected_auth)
        if problem is not None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

    # ------------------------------------------------------ in-process API

    def dispatch(self, calls: Sequence[Message]) -> list[str]:
        """Accept a batch of calls (validated first) and return their dispatch ids.

        The calls are loadgen's ``Call`` messages or the SDK's (taken by their wire bytes).
        """
        calls = _own_calls(calls)
        validate_calls(calls)
        with self._cond:
            ids, actions = self._scheduler.submit(calls, time.time(), default_endpoint=self.endpoint_client.url)
            self._issued.update(ids)
            self._absorb(actions)
            self._cond.notify_all()
        return ids

    def dispatch_calls(self) -> None:
        """Run every attempt due now, in this thread; follow-up work waits for the next call.

        If the endpoint client raises an exception that is not a known transport
        fault, that attempt and the rest of the round are re-queued and the
        exception propagates.
        """
        with self._cond:
            self._absorb(self._scheduler.advance(time.time()))
            batch = list(self._queue)
            self._queue.clear()
        for index, (attempt, _kind) in enumerate(batch):
            try:
                self._run_attempt(attempt)
            except Exception:
                with self._cond:
                    self._queue.extendleft(reversed(batch[index:]))
                raise

    def outcome(self, dispatch_id: str, timeout: float | None = None) -> CallOutcome:
        """Block until *dispatch_id* is terminal; ``TimeoutError`` after *timeout* seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._results.get(dispatch_id)
                if found is not None:
                    return found
                if dispatch_id not in self._issued:
                    raise KeyError(f"unknown dispatch id {dispatch_id[:64]!r} (or its result was evicted)")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(dispatch_id)
                self._cond.wait(remaining)

    def result(self, dispatch_id: str, timeout: float | None = None) -> call_pb2.CallResult:
        """Block until *dispatch_id* is terminal and return its ``CallResult``."""
        return self.outcome(dispatch_id, timeout).result

    @property
    def counters(self) -> Counters:
        """Accounting of the calls accepted so far (a live view; read under no lock)."""
        return self._scheduler.counters

    @property
    def queue(self) -> list[PendingAttempt]:
        """The attempts due now, not yet sent: ``(dispatch_id, RunRequest, CallType)`` in order (a copy).

        As the old mock's ``queue``; retries still waiting out their backoff are not in it yet.
        """
        with self._cond:
            return [(a.dispatch_id, self._endpoint_request(a.request), kind) for a, kind in self._queue]

    # ------------------------------------------------------------ background

    def start(self) -> None:
        """Run attempts in background threads until :meth:`stop`."""
        with self._cond:
            if self._workers:
                return
            self._stopping = False
            self._workers = [
                threading.Thread(target=self._work, name=f"loadgen-dispatch-{i}", daemon=True)
                for i in range(self._concurrency)
            ]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        """Stop the background threads (attempts in progress finish first)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.join()

    def __enter__(self) -> DispatchService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.time()
                    self._absorb(self._scheduler.advance(now))
                    if self._queue:
                        attempt, _kind = self._queue.popleft()
                        break
                    deadline = self._scheduler.next_deadline()
                    self._cond.wait(None if deadline is None else max(0.0, deadline - now))
            try:
                self._run_attempt(attempt)
            except Exception:
                logger.exception("dispatch %s: the endpoint client failed unexpectedly", attempt.dispatch_id)
                with self._cond:
                    self._absorb(
                        self._scheduler.on_failure(
                            attempt.dispatch_id,
                            attempt.attempt,
                            status.STATUS_TEMPORARY_ERROR,
                            "the endpoint client raised an unexpected exception",
                            time.time(),
                        )
                    )

    # -------------------------------------------------------------- internals

    def _endpoint_request(self, request: function_pb2.RunRequest) -> Message:
        """*request* in the classes the endpoint client is handed (the SDK's, when it is loaded)."""
        sdk_request = sdk_class("RunRequest")
        return request if sdk_request is None else convert(request, sdk_request)

    def _run_attempt(self, attempt: RunAttempt) -> None:
        request = self._endpoint_request(attempt.request)
        try:
            answer = self.endpoint_client.run(request)
            response = as_own(answer, function_pb2.RunResponse)
        except Exception as exc:
            mapped = classify_exception(exc)
            if mapped is None:
                raise
            code, message = mapped
            logger.debug("dispatch %s attempt %d: %s", attempt.dispatch_id, attempt.attempt, message)
            with self._cond:
                self._absorb(
                    self._scheduler.on_failure(attempt.dispatch_id, attempt.attempt, code, message, time.time())
                )
            return
        with self._cond:
            if self.collect_roundtrips:
                self.roundtrips.setdefault(attempt.dispatch_id, []).append((request, answer))
            self._absorb(self._scheduler.on_response(attempt.dispatch_id, attempt.attempt, response, time.time()))

    def _absorb(self, actions: list[Action]) -> None:
        """Apply scheduler actions; the caller holds the lock."""
        for action in actions:
            if isinstance(action, RunAttempt):
                self._queue.append((action, self._call_type(action)))
            elif isinstance(action, RetryScheduled):
                self._retrying.add(action.dispatch_id)
            elif isinstance(action, CallFinished):
                self._retrying.discard(action.dispatch_id)
                if action.root:
                    self._results[action.dispatch_id] = CallOutcome(
                        action.result,
                        action.status,
                        action.outcome,
                        action.function,
                        action.accepted_at,
                        action.finished_at,
                        action.attempts,
                    )
                    if len(self._results) > self._retention:
                        evicted, _ = self._results.popitem(last=False)
                        self._issued.discard(evicted)
        if actions:
            self._cond.notify_all()

    def _call_type(self, attempt: RunAttempt) -> CallType:
        if attempt.dispatch_id in self._retrying:
            self._retrying.discard(attempt.dispatch_id)
            return CallType.RETRY
        return CallType.RESUME if attempt.request.HasField("poll_result") else CallType.CALL


def _own_calls(calls: Sequence[Message]) -> Sequence[call_pb2.Call]:
    """*calls* as loadgen's ``Call`` messages (the same sequence when they already are)."""
    if all(type(call) is call_pb2.Call for call in calls):
        return calls  # type: ignore[return-value]
    return [as_own(call, call_pb2.Call) for call in calls]
