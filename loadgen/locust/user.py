"""``DispatchUser``: a Locust user that dispatches calls to loadgen shards over gRPC.

Write tasks with :meth:`DispatchUser.dispatch` and :meth:`DispatchUser.dispatch_and_wait`::

    from locust import task
    from loadgen.locust import DispatchUser

    class Mix(DispatchUser):
        sdk = "dispatch-py"                     # how inputs are encoded (or --dispatch-sdk)

        @task(5)
        def greet(self) -> None:
            self.dispatch("greet", args=["bob"], kwargs={"punct": "!"}, batch=10)

        @task
        def add(self) -> None:
            self.dispatch_and_wait("add", args=[1, 2], expect=3, timeout=30)

**Inputs** are encoded by the SDK codec of :attr:`DispatchUser.sdk` (``--dispatch-sdk`` /
``$LOADGEN_SDK`` wins; default ``reference``, see :mod:`loadgen.protocol.codecs`): ``args`` and
``kwargs`` for ``dispatch-py``, one ``input`` value for the others. A ready
``google.protobuf.Any`` as ``input`` is sent as it is, whatever the SDK.

**Locust entries.** Every RPC fires one Locust ``events.request``: ``request_type="grpc"``,
``name="Dispatch <function>"`` or ``"Wait <function>"``, ``response_time`` in ms (float, from
just before the call to its answer), ``response_length`` = the answer's protobuf size. A
failed RPC has an ``exception`` (:class:`DispatchFailed`) naming the gRPC status code, and then
raises it: a ``RescheduleTask`` that, left uncaught, ends the task quietly. The ``Wait`` entry
of a call that ended badly is a failure too, without raising (the task goes on, as with an
HTTP 500 in Locust's HTTP users): :class:`CallFailed` names the final status and the
endpoint's own error (``INVALID_ARGUMENT: ValueError: doomed to fail``), :class:`WrongResult`
a result that differs from ``expect``. Each result waited for is also counted for the run's
checks (:mod:`loadgen.core.caller`).

Where the user sends: ``--dispatch-addresses`` / ``$LOADGEN_ADDRESSES``, else the class
attribute :attr:`DispatchUser.addresses`, else ``--host``. With several addresses, each new
user takes the next one (round-robin, offset by the Locust worker index), so load spreads
over shards, including shards on several machines. The users of a process share one gRPC
channel (one HTTP/2 connection) per address. The API key comes from ``--dispatch-api-key`` /
``$DISPATCH_API_KEY``, else :attr:`DispatchUser.api_key`; it is only ever put in the
``authorization`` metadata, never logged.

**The end of a run.** Once Locust asks a user to stop, :meth:`~DispatchUser.dispatch` starts
no new calls (it raises ``StopUser``), while waits go on (for up to Locust's
``--stop-timeout``). A user killed while a ``Dispatch`` RPC is in flight still waits for its
answer (bounded by :attr:`DispatchUser.rpc_timeout`) and records it before dying, so the
calls Locust counts as dispatched are the calls the shards accepted; a ``Wait`` in flight is
cancelled at once. Like any Locust request cut short by a stop, it gets no entry; the run's
checks count it as *unfinished* (``loadgen run``'s implicit gates fail on it) and the engine
reports the call as in flight.
"""

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
from locust.user.task import LOCUST_STATE_STOPPING

import loadgen.locust._gevent  # noqa: F401  # gRPC cooperates with gevent before any channel exists
from loadgen.core.caller import WrongSample
from loadgen.engine.client import wait_answer
from loadgen.locust.channels import channel
from loadgen.locust.checked import checked
from loadgen.locust.dispatched import dispatched
from loadgen.locust.options import resolve_addresses, resolve_api_key, resolve_sdk
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.protocol.codecs import NO_VALUE, CallInput, Codec, display, get_codec, matches

__all__ = ["CallFailed", "DispatchFailed", "DispatchUser", "WrongResult"]

_user_numbers = itertools.count()
_NUMBERS_IN_EXPIRY = re.compile(r"(expired) after [0-9.]+s and \d+ attempts|(expired|gave up) after \d+ attempts")


class DispatchFailed(RescheduleTask):
    """A Dispatch or Wait RPC failed: :attr:`code` is its gRPC status code, :attr:`details` the server's text."""

    def __init__(self, rpc: str, code: grpc.StatusCode | None, details: str) -> None:
        self.rpc = rpc
        self.code = code
        self.details = details
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
    code = failure.code() if hasattr(failure, "code") else None
    details = failure.details() if hasattr(failure, "details") else str(failure)
    return DispatchFailed(name.split(" ", 1)[0], code, details or "")


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
    """Default ``timeout`` of :meth:`wait_for` / :meth:`dispatch_and_wait`, in seconds."""

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
        self.failed_waits = 0
        """Waits of this user recorded as failures so far (failed, expired or wrong calls)."""

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
        """Dispatch *batch* calls of *function* in one RPC; return their dispatch ids.

        The input: *input* (one value, for the ``reference``, ``dispatch-go`` and ``raw`` SDKs;
        ``None``: none), or *args* and *kwargs* (``dispatch-py``), encoded by :meth:`encode`; or a
        ``google.protobuf.Any``, sent as is. *expiration*: seconds, else the engine's default.
        Once Locust stops this user it raises ``StopUser`` instead: no new calls after the load stopped.
        """
        if batch < 1:
            raise ValueError("batch must be >= 1")
        if self._state == LOCUST_STATE_STOPPING:  # asked to stop: it finishes its waits, starts nothing
            raise StopUser()
        call = call_pb2.Call(function=function, input=self.encode(input, args=args, kwargs=kwargs))
        if expiration is not None:
            call.expiration.FromNanoseconds(int(expiration * 1e9))
        request = dispatch_pb2.DispatchRequest(calls=[call] * batch)
        response, _ = self._dispatch_rpc(request, f"Dispatch {function}")
        ids = list(response.dispatch_ids)
        dispatched.add(function, len(ids))
        return ids

    def wait_for(
        self, dispatch_id: str, *, function: str = "", timeout: float | None = None, expect: Any = NO_VALUE
    ) -> tuple[call_pb2.CallResult, str]:
        """Wait until the call *dispatch_id* ends; return its ``CallResult`` and final status name.

        The status is the ``loadgen-status`` trailer (``"STATUS_OK"``, ``"STATUS_PERMANENT_ERROR"``, ...).
        The RPC is recorded as ``"Wait <function>"`` (``User.wait`` is Locust's own pause), a failure
        when the call failed, expired, was cancelled, or (with *expect*) completed with another output, decoded by
        this user's codec and compared by :func:`loadgen.protocol.codecs.matches`. The result is counted in
        the run's checks under *function*.
        """
        limit = self.wait_timeout if timeout is None else timeout
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
        self._fire(name, started, started_wall, result, exception)
        return result, status

    def dispatch_and_wait(
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
        """Dispatch one call and wait for its end (two RPCs, two entries); return its ``CallResult``.

        A call that ended in failure has ``CallResult.error`` set (its status type and message);
        with *expect*, a completed call whose output differs is recorded as wrong.
        """
        (dispatch_id,) = self.dispatch(function, input, args=args, kwargs=kwargs, expiration=expiration)
        result, _ = self.wait_for(dispatch_id, function=function, timeout=timeout, expect=expect)
        return result

    def decode(self, result: call_pb2.CallResult) -> Any:
        """The output of *result* as plain data, decoded by this user's codec (never unpickled blindly)."""
        return self.codec.decode(result.output if result.HasField("output") else None)

    # -------------------------------------------------------------------- plumbing

    def _decoded(self, result: call_pb2.CallResult) -> Any:
        try:
            return self.decode(result)
        except ValueError as exc:
            return f"<undecodable output: {exc}>"

    def _fire(
        self, name: str, started: float, started_wall: float, response: Any, exception: BaseException | None
    ) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=response.ByteSize() if response is not None else 0,
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
            raise exception
        return response, call
