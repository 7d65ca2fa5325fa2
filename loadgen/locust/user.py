"""``DispatchUser``: a Locust user that dispatches calls to loadgen shards over gRPC.

Write tasks with :meth:`DispatchUser.call` and :meth:`DispatchUser.dispatch`::

    from locust import task
    from loadgen.locust import DispatchUser

    class Mix(DispatchUser):
        sdk = "dispatch-py"                     # how inputs are encoded (or --dispatch-sdk)

        @task(5)
        def greet(self) -> None:
            self.dispatch("greet", args=["bob"], kwargs={"punct": "!"}, batch=10)

        @task
        def add(self) -> None:
            self.call("add", args=[1, 2], expect=3, timeout=30)

**Inputs** are encoded by the SDK codec of :attr:`DispatchUser.sdk` (``--dispatch-sdk`` /
``$LOADGEN_SDK`` wins; default ``reference``, see :mod:`loadgen.protocol.codecs`): ``args`` and
``kwargs`` for ``dispatch-py``, one ``input`` value for the others. A ready
``google.protobuf.Any`` as ``input`` is sent as it is, whatever the SDK.

**How calls travel** (:attr:`DispatchUser.rpc`, ``--dispatch-rpc`` / ``$LOADGEN_RPC``):
``"session"`` (the default) carries the calls of every user of the process over one
session per shard (:mod:`loadgen.locust.link`: concurrent users' dispatches go out
together, results come back many per message), on the shard's session socket when it offers
one, else on its gRPC ``Session`` stream; ``"stream"`` always on the gRPC stream; ``"unary"``
makes one ``Dispatch`` RPC per dispatch and one ``Wait`` RPC per wait, as an SDK client does.

**Locust entries.** :meth:`~DispatchUser.call` (and :meth:`~DispatchUser.call_batch`,
:meth:`~DispatchUser.dispatch_and_wait`) records one entry per call: ``request_type="call"``,
``name="call <function>"``, ``response_time`` in ms from the user's dispatch to the call's
result as the user received it, ``response_length`` the result's protobuf size.
:meth:`~DispatchUser.dispatch` records ``request_type="grpc"``, ``"Dispatch <function>"`` until
the ids came back, and :meth:`~DispatchUser.wait_for` ``"Wait <function>"`` (a ``Wait`` RPC). A
dispatch that was rejected, a stream or RPC that failed, and a call whose result was lost with
its shard or did not come in time have an ``exception`` (:class:`DispatchFailed`) naming the
gRPC status code, and then raise it: a ``RescheduleTask`` that, left uncaught, ends the task
quietly. A call that ended badly is a failure too, without raising (the task goes on, as
with an HTTP 500 in Locust's HTTP users): :class:`CallFailed` names the final status and the
endpoint's own error (``INVALID_ARGUMENT: ValueError: doomed to fail``), :class:`WrongResult`
a result that differs from ``expect``. Each result waited for is also counted for the run's
checks (:mod:`loadgen.core.caller`). With ``rpc = "unary"``, a call is its two RPCs' entries.

Where the user sends: ``--dispatch-addresses`` / ``$LOADGEN_ADDRESSES``, else the class
attribute :attr:`DispatchUser.addresses`, else ``--host``. With several addresses, each new
user takes the next one (round-robin, offset by the Locust worker index), so load spreads
over shards, including shards on several machines. The users of a process share one gRPC
channel (one HTTP/2 connection) per address, and one Session stream on it. The API key
comes from ``--dispatch-api-key`` / ``$DISPATCH_API_KEY``, else :attr:`DispatchUser.api_key`;
it is only ever put in the ``authorization`` metadata, never logged.

**The end of a run.** Once Locust asks a user to stop, :meth:`~DispatchUser.dispatch` and
:meth:`~DispatchUser.call` start no new calls (they raise ``StopUser``), while waits go on (for up to
Locust's ``--stop-timeout``); a user whose wait between tasks is just over stops at its next step
(Locust would kill it, and the kill would land in the call its next task starts). A user killed while
its dispatch is on its way still waits for the answer (bounded by :attr:`DispatchUser.rpc_timeout`) and
records it before dying, so the calls Locust counts as dispatched are the calls the shards accepted; a
wait for a result is cancelled at once: a :meth:`~DispatchUser.call` cut short records its ``call``
entry as a failure (:class:`CallUnfinished`), so Locust's ``call`` entries stay one per call the shards
accepted, while a ``Wait`` cut short gets no entry (like any Locust request cut short by a stop). The
run's checks count both as *unfinished* (``loadgen run``'s implicit gates fail on it) and the engine
reports the call as in flight. At the end of the test every Session is half-closed and read to its end
(for what is left of ``--stop-timeout``, at least a second), so the shards see every session end
cleanly."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
import grpc
from gevent import GreenletExit
from google.protobuf import any_pb2
from locust import User
from locust.exception import RescheduleTask, StopUser
from locust.user.task import LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

import loadgen.locust._gevent  # noqa: F401  # gRPC cooperates with gevent before any channel exists
from loadgen.core.caller import WrongSample
from loadgen.core.stats.caller import outcome_of
from loadgen.engine.client import rpc_error, wait_answer
from loadgen.locust import latency
from loadgen.locust.channels import channel
from loadgen.locust.checked import checked
from loadgen.locust.dispatched import dispatched
from loadgen.locust.link import PendingGroup, link
from loadgen.locust.options import resolve_addresses, resolve_api_key, resolve_rpc, resolve_sdk
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, session_pb2, status_pb2
from loadgen.protocol.codecs import NO_VALUE, CallInput, Codec, display, get_codec, matches
from loadgen.protocol.constants import PUSHBACK_TRAILER

__all__ = ["CallFailed", "CallUnfinished", "DispatchFailed", "DispatchUser", "WrongResult"]

_WAKING_S = 0.05
"""A waiting user due to run within this is stopped at its next step, not killed (:meth:`DispatchUser.stop`)."""

_user_numbers = itertools.count()
_SHORT_STATUS = {value: name.removeprefix("STATUS_") for name, value in status_pb2.Status.items()}
_SHORT_STATUS[status_pb2.STATUS_UNSPECIFIED] = "UNSPECIFIED"
_ID_BYTES = 34  # one dispatch id in a DispatchResponse: tag, length, 32 hex digits
_NUMBERS_IN_EXPIRY = re.compile(r"(expired) after [0-9.]+s and \d+ attempts|(expired|gave up) after \d+ attempts")


class DispatchFailed(RescheduleTask):
    """A Dispatch or Wait RPC failed: :attr:`code` is its gRPC status code, :attr:`details` the server's text."""

    def __init__(self, rpc: str, code: grpc.StatusCode | None, details: str, retry_after: float = 0.0) -> None:
        self.rpc = rpc
        self.code = code
        self.details = details
        self.retry_after = retry_after
        """Seconds the shard asked to wait before offering more calls (it was full), else 0."""
        name = code.name if code is not None else "UNKNOWN"
        super().__init__(f"{name}: {details[:200]}" if details else name)


class CallFailed(Exception):
    """The call ended in failure: :attr:`status` (``PERMANENT_ERROR``, ``TIMEOUT`` for an expired call,
    ``CANCELLED`` for one the engine's drain ended, ...) and the error it ended with (the endpoint's own
    ``Error.type`` and ``message`` when it sent one)."""

    def __init__(self, status: str, error_type: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        self.message = message
        # Locust groups failures by their text: keep the text of one kind of failure the same.
        text = _NUMBERS_IN_EXPIRY.sub(lambda m: m.group(1) or m.group(2), message)[:200]
        detail = f"{error_type}: {text}" if error_type and error_type != status and text else (text or error_type)
        super().__init__(f"{status}: {detail}" if detail else status)


class CallUnfinished(Exception):
    """The user was stopped while it waited for the call's end (the run ended first)."""

    def __init__(self, waited: float) -> None:
        self.waited = waited
        super().__init__("unfinished: the user was stopped before the call ended")


class WrongResult(Exception):
    """The call completed with an output other than the expected one."""

    def __init__(self, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"wrong result: expected {expected}, got {got}")


def _invoke(method: Any, request: Any, metadata: Any, timeout: float) -> tuple[Any, Any, grpc.RpcError | None]:
    """``method.with_call(...)`` as ``(response, call, None)``, or ``(None, None, error)`` when it failed."""
    try:
        response, call = method.with_call(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        return None, None, exc
    return response, call, None


def _rpc_failure(name: str, failure: Any) -> DispatchFailed:
    return DispatchFailed(name.split(" ", 1)[0], *rpc_error(failure), _pushback(failure))


def _pushback(failure: Any) -> float:
    """The ``grpc-retry-pushback-ms`` trailer of a failed RPC, in seconds (0 without one)."""
    trailers = failure.trailing_metadata() if hasattr(failure, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == PUSHBACK_TRAILER:
            try:
                return max(0.0, int(value) / 1000.0)
            except ValueError:
                return 0.0
    return 0.0


class DispatchUser(User):
    """A Locust user with a gRPC client to the loadgen shards. Abstract: subclass it and add tasks."""

    abstract = True

    addresses: ClassVar[str | Sequence[str] | None] = None
    """Shard addresses (``"host:port,host:port"`` or a list), unless given on the command line."""

    api_key: ClassVar[str | None] = None
    """The API key, unless given on the command line or in ``$DISPATCH_API_KEY``."""

    sdk: ClassVar[str | None] = None
    """How inputs are encoded and outputs decoded (:data:`loadgen.protocol.codecs.CODEC_NAMES`), unless
    ``--dispatch-sdk`` / ``$LOADGEN_SDK`` says; default ``"reference"``."""

    rpc_timeout: ClassVar[float] = 30.0
    """Deadline of each Dispatch RPC, in seconds."""

    wait_timeout: ClassVar[float] = 60.0
    """Default ``timeout`` of :meth:`call` / :meth:`wait_for`, in seconds."""

    rpc: ClassVar[str] = "session"
    """How calls travel: ``"session"`` (one session per process and shard, on its session socket when
    offered), ``"stream"`` (the gRPC Session stream) or ``"unary"`` (a Dispatch RPC per dispatch, a Wait
    RPC per wait), unless ``--dispatch-rpc`` / ``$LOADGEN_RPC`` says."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        cls = type(self)
        self.shard_addresses: list[str] = resolve_addresses(options, cls.addresses, environment.host or cls.host)
        worker_index = max(int(getattr(environment.runner, "worker_index", 0) or 0), 0)
        self.address: str = self.shard_addresses[(next(_user_numbers) + worker_index) % len(self.shard_addresses)]
        """The shard address this user sends to."""
        self.codec: Codec = get_codec(resolve_sdk(options, cls.sdk))
        """The SDK codec of this user's inputs and outputs."""
        self._metadata = (("authorization", "Bearer " + resolve_api_key(options, cls.api_key)),)
        self._stub = dispatch_pb2_grpc.DispatchServiceStub(channel(self.address))
        rpc = resolve_rpc(options, cls.rpc)
        self.session: bool = rpc != "unary"
        """Whether this user's calls ride the process's session with their shard (else unary RPCs)."""
        self._use_socket = rpc == "session"
        self.failed_waits = 0
        """Waits of this user recorded as failures so far (failed, expired or wrong calls)."""
        self.intended_start: float | None = None
        """``time.monotonic()`` of the current arrival's intended start (open model), else None: each
        call's caller-side latency counts from it (closed model: from the moment the call was issued)."""
        self._due: float | None = None
        planned = self.wait_time

        def wait_time() -> float:  # when the next task is due: the closed model's scheduling lag
            value = float(planned())
            self._due = time.monotonic() + value
            return value

        self.wait_time = wait_time  # type: ignore[method-assign]

    def stop(self, force: bool = False) -> bool:
        """Locust's stop, except for a user whose wait is over (due within :data:`_WAKING_S`): it stops at its next
        step instead of being killed. Locust kills a waiting user at once, but the kill is delivered after the
        wake-up already queued, so the user would start its next task and the kill would cut off the call it
        issued there (a call the shards accepted and ran, counted as unfinished: a clean run failed)."""
        due = self._due
        waking = due is not None and due <= time.monotonic() + _WAKING_S
        if not force and self._state == LOCUST_STATE_WAITING and waking:
            self._state = LOCUST_STATE_STOPPING  # Locust's wait() raises StopUser as the user wakes
            return False
        return bool(super().stop(force))

    # -------------------------------------------------------------------- tasks' API

    def encode(
        self, input: Any = NO_VALUE, *, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> any_pb2.Any:
        """The ``Call.input`` for *input*, or *args* and *kwargs*, with this user's codec (an ``Any`` as is).

        ``None`` means no input. ``loadgen.protocol.codecs.CodecError`` says what the SDK cannot take.
        """
        if isinstance(input, any_pb2.Any):
            return input
        value = NO_VALUE if input is None else input
        return self.codec.encode(CallInput(value, tuple(args), dict(kwargs or {})))

    def dispatch(
        self,
        function: str,
        input: Any = None,
        batch: int = 1,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        expiration: float | None = None,
    ) -> list[str]:
        """Dispatch *batch* calls of *function* as one batch; return their dispatch ids.

        The input: *input* (one value, for the ``reference``, ``dispatch-go`` and ``raw`` SDKs;
        ``None``: none), or *args* and *kwargs* (``dispatch-py``), encoded by :meth:`encode`; or a
        ``google.protobuf.Any``, sent as is. *expiration*: seconds, else the engine's default.
        Their results are kept for :meth:`wait_for`. Once Locust stops this user it raises
        ``StopUser`` instead: no new calls after the load stopped.
        """
        issued = self._issued()
        call = self._new_call(function, input, batch, args, kwargs, expiration)
        token = latency.begin_wait(issued, batch)
        try:
            if not self.session:
                ids = self._dispatch_unary(function, call, batch)
            else:
                ids = self._dispatch_session(call, batch, f"Dispatch {function}")
                dispatched.add(function, len(ids))
        except DispatchFailed:
            latency.record_latency(function, "rejected", time.monotonic() - issued, batch)
            raise
        finally:
            latency.end_wait(token)
        latency.record_latency(function, "accepted", time.monotonic() - issued, len(ids))
        return ids

    def call(
        self,
        function: str,
        input: Any = None,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        expect: Any = NO_VALUE,
        timeout: float | None = None,
        expiration: float | None = None,
    ) -> call_pb2.CallResult:
        """Dispatch one call of *function* and wait for its end; return its ``CallResult``.

        One Locust entry ``call <function>``, a failure when the call failed, expired or (with
        *expect*) completed with another output; ``CallResult.error`` then holds its status type
        and message. *timeout*: seconds to wait for the result (default :attr:`wait_timeout`).
        """
        return self.call_batch(
            function, input, 1, args=args, kwargs=kwargs, expect=expect, timeout=timeout, expiration=expiration
        )[0]

    dispatch_and_wait = call
    """The same as :meth:`call` (the name locustfiles used before it)."""

    def call_batch(
        self,
        function: str,
        input: Any = None,
        batch: int = 1,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        expect: Any = NO_VALUE,
        timeout: float | None = None,
        expiration: float | None = None,
    ) -> list[call_pb2.CallResult]:
        """Dispatch *batch* calls of *function* as one batch and wait for every one's end.

        Returns their results in order; one entry per call, as :meth:`call` records it.
        """
        issued = self._issued()
        call = self._new_call(function, input, batch, args, kwargs, expiration)
        limit = self.wait_timeout if timeout is None else timeout
        if not self.session:
            token = latency.begin_wait(issued, batch)
            try:
                try:
                    ids = self._dispatch_unary(function, call, batch)
                except DispatchFailed:
                    latency.record_latency(function, "rejected", time.monotonic() - issued, batch)
                    raise
                return [self._wait_for(i, function, limit, expect, issued)[0] for i in ids]
            finally:
                latency.end_wait(token)
        started_wall = time.time()
        session = link(self.address, self._metadata, use_socket=self._use_socket)
        group = session.submit(
            PendingGroup([call] * batch, answer=False, skip_results=False, timeout=limit, size=call.ByteSize() * batch)
        )
        name = f"call {function}"
        token = latency.begin_wait(issued, batch)
        try:
            group.done.wait()
            received = time.monotonic()  # this user runs again: the caller has its results now
        except GreenletExit:
            session.abandon(group)
            if group.sent:  # dispatched, its end not seen: one failed entry per call, counted in the checks
                dispatched.add(function, batch)
                unfinished = CallUnfinished(time.perf_counter() - group.started)
                for _ in range(batch):
                    checked.record_unfinished(function)
                    self._fire(name, group.started, started_wall, None, unfinished, kind="call")
            raise
        finally:
            latency.end_wait(token)
        if group.failure is not None:
            code, details = group.failure
            failure = DispatchFailed("call", code, details, group.retry_after)
            latency.record_latency(function, "rejected", received - issued, batch)
            for _ in range(batch):
                self._fire(name, group.started, started_wall, None, failure, kind="call")
            self.back_off(failure)
            raise failure
        dispatched.add(function, batch)
        results = []
        for ended, arrived in zip(group.ended, group.arrived, strict=True):
            assert ended is not None
            result = ended.result
            short = _SHORT_STATUS.get(ended.status, str(ended.status))
            if ended.outcome == session_pb2.OUTCOME_CANCELLED:  # STATUS_TIMEOUT on the wire, as for Wait
                short = "CANCELLED"
            latency.record_latency(function, outcome_of(short), received - issued)
            exception = self._judge(function, result, short, expect)
            self._fire(name, group.started, started_wall, result, exception, kind="call", ended_at=arrived)
            results.append(result)
        return results

    def wait_for(
        self, dispatch_id: str, *, function: str = "", timeout: float | None = None, expect: Any = NO_VALUE
    ) -> tuple[call_pb2.CallResult, str]:
        """Wait until the call *dispatch_id* ends (a ``Wait`` RPC); return its ``CallResult`` and final status name.

        The status is the ``loadgen-status`` trailer (``"STATUS_OK"``, ``"STATUS_PERMANENT_ERROR"``, ...).
        The RPC is recorded as ``"Wait <function>"`` (``User.wait`` is Locust's own pause), a failure
        when the call failed, expired, was cancelled, or (with *expect*) completed with another output, decoded by
        this user's codec and compared by :func:`loadgen.protocol.codecs.matches`. The result is counted in
        the run's checks under *function*.
        """
        return self._wait_for(dispatch_id, function, self.wait_timeout if timeout is None else timeout, expect, None)

    def decode(self, result: call_pb2.CallResult) -> Any:
        """The output of *result* as plain data, decoded by this user's codec (never unpickled blindly)."""
        return self.codec.decode(result.output if result.HasField("output") else None)

    # -------------------------------------------------------------------- plumbing

    def _issued(self) -> float:
        """The intended start of a call issued now: the arrival's (open model), else now."""
        return time.monotonic() if self.intended_start is None else self.intended_start

    def _wait_for(
        self, dispatch_id: str, function: str, limit: float, expect: Any, issued: float | None
    ) -> tuple[call_pb2.CallResult, str]:
        """:meth:`wait_for`; with *issued* (the call's intended start), its caller-side latency is recorded."""
        request = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
        request.timeout.FromNanoseconds(int(limit * 1e9))
        name = f"Wait {function}" if function else "Wait"
        checks_name = function or "(unnamed)"
        started_wall = time.time()
        started = time.perf_counter()
        future = self._stub.Wait.future(request, metadata=self._metadata, timeout=limit + 5.0)
        try:
            result = future.result()
        except GreenletExit:
            future.cancel()
            # As Locust does for any request cut short by a stop: no entry. The run's checks count it,
            # and the engine reports the call as still in flight.
            checked.record_unfinished(checks_name)
            raise
        except grpc.RpcError as exc:
            failure = _rpc_failure(name, exc)
            self._fire(name, started, started_wall, None, failure)
            raise failure from None
        answer = wait_answer(result, future.trailing_metadata())
        status, short = answer.status, answer.short_status
        if issued is not None:
            latency.record_latency(checks_name, outcome_of(short), time.monotonic() - issued)
        exception = self._judge(checks_name, result, short, expect)
        self._fire(name, started, started_wall, result, exception)
        return result, status

    def _decoded(self, result: call_pb2.CallResult) -> Any:
        try:
            return self.decode(result)
        except ValueError as exc:
            return f"<undecodable output: {exc}>"

    def _new_call(
        self,
        function: str,
        input: Any,
        batch: int,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        expiration: float | None,
    ) -> call_pb2.Call:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        if self._state == LOCUST_STATE_STOPPING:  # asked to stop: it finishes its waits, starts nothing
            raise StopUser()
        if self._due is not None:  # the first call of a task: how late after its wait it started
            latency.record_lag(type(self).__name__, "task", time.monotonic() - self._due)
            self._due = None
        call = call_pb2.Call(function=function, input=self.encode(input, args=args, kwargs=kwargs))
        if expiration is not None:
            call.expiration.FromNanoseconds(int(expiration * 1e9))
        return call

    def _judge(self, checks_name: str, result: call_pb2.CallResult, short: str, expect: Any) -> Exception | None:
        """What a received result means (:class:`CallFailed`, :class:`WrongResult` or ``None``), also counted
        in the checks."""
        exception: Exception | None = None
        wrong: WrongSample | None = None
        if short != "OK":
            error = result.error
            exception = CallFailed(short, error.type, error.message)
        elif expect is not NO_VALUE:
            got = self._decoded(result)
            if not matches(expect, got):
                wrong = WrongSample(display(expect), display(got))
                exception = WrongResult(wrong.expected, wrong.got)
        checked.record_result(checks_name, short, checked=short == "OK" and expect is not NO_VALUE, wrong=wrong)
        if exception is not None:
            self.failed_waits += 1
        return exception

    def _dispatch_unary(self, function: str, call: call_pb2.Call, batch: int) -> list[str]:
        response, _ = self._dispatch_rpc(dispatch_pb2.DispatchRequest(calls=[call] * batch), f"Dispatch {function}")
        ids = list(response.dispatch_ids)
        dispatched.add(function, len(ids))
        return ids

    def _dispatch_session(self, call: call_pb2.Call, batch: int, name: str) -> list[str]:
        """A group asking for its ids (its results stay for Wait), with the Dispatch RPC's entry and kill rules."""
        started_wall = time.time()
        session = link(self.address, self._metadata, use_socket=self._use_socket)
        group = session.submit(
            PendingGroup(
                [call] * batch, answer=True, skip_results=True, timeout=self.rpc_timeout, size=call.ByteSize() * batch
            )
        )
        killed: BaseException | None = None
        while True:
            try:
                group.done.wait()
                break
            except GreenletExit as exc:
                if not group.sent:  # never left this process: nothing was dispatched
                    session.abandon(group)
                    raise
                killed = exc
        failure = None if group.failure is None else DispatchFailed("Dispatch", *group.failure, group.retry_after)
        self._fire(name, group.started, started_wall, None, failure, length=_ID_BYTES * len(group.ids))
        if killed is not None:
            raise killed
        if failure is not None:
            self.back_off(failure)
            raise failure
        return group.ids

    def back_off(self, failure: DispatchFailed) -> None:
        """The closed model's answer to a full shard: wait the pushback it asked for before the next task
        (the open model does not: its arrivals keep their schedule, and a rejected one is not retried)."""
        if failure.retry_after > 0 and failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            gevent.sleep(failure.retry_after)

    def _fire(
        self,
        name: str,
        started: float,
        started_wall: float,
        response: Any,
        exception: BaseException | None,
        *,
        kind: str = "grpc",
        ended_at: float | None = None,
        length: int | None = None,
    ) -> None:
        if length is None:
            length = response.ByteSize() if response is not None else 0
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=((time.perf_counter() if ended_at is None else ended_at) - started) * 1000.0,
            response_length=length,
            response=response,
            context=self.context(),
            exception=exception,
            start_time=started_wall,
            url=self.address,
        )

    def _dispatch_rpc(self, request: Any, name: str) -> tuple[Any, Any]:
        """Run the Dispatch RPC and fire its request event; raise :class:`DispatchFailed` when it failed.

        The RPC runs in a greenlet of its own, so a kill of this user (Locust stopping it)
        cannot interrupt it half-way (after the request left, before its answer was seen):
        the user still waits for the answer, records it, then dies.
        """
        started_wall = time.time()
        started = time.perf_counter()
        rpc = gevent.spawn(_invoke, self._stub.Dispatch, request, self._metadata, self.rpc_timeout)
        killed: BaseException | None = None
        while True:
            try:
                rpc.join()
                break
            except GreenletExit as exc:
                killed = exc
        if not rpc.successful():  # not an RPC failure: a bug, or the process is going down
            raise rpc.exception
        response, call, failure = rpc.value
        exception = _rpc_failure(name, failure) if failure is not None else None
        self._fire(name, started, started_wall, response, exception)
        if killed is not None:
            raise killed
        if exception is not None:
            self.back_off(exception)
            raise exception
        return response, call
