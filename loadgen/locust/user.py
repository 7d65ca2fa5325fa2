"""``DispatchUser``: a Locust user that dispatches calls to loadgen shards over gRPC.

Write tasks with :meth:`DispatchUser.dispatch` and :meth:`DispatchUser.dispatch_and_wait`::

    from locust import task
    from loadgen.locust import DispatchUser

    class Mix(DispatchUser):
        @task(5)
        def echo(self) -> None:
            self.dispatch("echo", {"message": "hi"}, batch=10)

        @task
        def fanout(self) -> None:
            self.dispatch_and_wait("fanout", {"n": 3}, timeout=30)

Every RPC fires one Locust ``events.request``: ``request_type="grpc"``, ``name="Dispatch
<function>"`` or ``"Wait <function>"``, ``response_time`` in ms (float, from just before the
call to its answer), ``response_length`` = the answer's protobuf size, and on failure an
``exception`` (:class:`DispatchFailed`) naming the gRPC status code. A failed RPC then
raises :class:`DispatchFailed`, a ``RescheduleTask``: left uncaught it ends the task quietly
(the failure is already in the statistics) and the user goes on with its next task.

Where the user sends: ``--dispatch-addresses`` / ``$LOADGEN_ADDRESSES``, else the class
attribute :attr:`DispatchUser.addresses`, else ``--host``. With several addresses, each new
user takes the next one (round-robin, offset by the Locust worker index), so load spreads
over shards, including shards on several machines. The users of a process share one gRPC
channel (one HTTP/2 connection) per address. The API key comes from ``--dispatch-api-key`` /
``$DISPATCH_API_KEY``, else :attr:`DispatchUser.api_key`; it is only ever put in the
``authorization`` metadata, never logged.

Exact accounting: a user killed by Locust (end of the run, ramp-down) while one of its RPCs
is in flight still waits for that RPC's answer (bounded by :attr:`DispatchUser.rpc_timeout`)
and records it before dying, so the calls Locust counts as dispatched are the calls the
shards accepted.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
import grpc
from gevent import GreenletExit
from google.protobuf import any_pb2
from locust import User
from locust.exception import RescheduleTask

import loadgen.locust._gevent  # noqa: F401  # gRPC cooperates with gevent before any channel exists
from loadgen import values
from loadgen.locust.channels import channel
from loadgen.locust.dispatched import dispatched
from loadgen.locust.options import resolve_addresses, resolve_api_key
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc

__all__ = ["DispatchFailed", "DispatchUser"]

_user_numbers = itertools.count()
_EMPTY_INPUT = values.encode({})


class DispatchFailed(RescheduleTask):
    """A Dispatch or Wait RPC failed: :attr:`code` is its gRPC status code, :attr:`details` the server's text."""

    def __init__(self, rpc: str, code: grpc.StatusCode | None, details: str) -> None:
        self.rpc = rpc
        self.code = code
        self.details = details
        name = code.name if code is not None else "UNKNOWN"
        super().__init__(f"{name}: {details[:200]}" if details else name)


def _encode(value: Any) -> any_pb2.Any:
    if value is None:
        return _EMPTY_INPUT
    if isinstance(value, any_pb2.Any):
        return value
    return values.encode(value)


def _invoke(method: Any, request: Any, metadata: Any, timeout: float) -> tuple[Any, Any, grpc.RpcError | None]:
    """``method.with_call(...)`` as ``(response, call, None)``, or ``(None, None, error)`` when it failed."""
    try:
        response, call = method.with_call(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        return None, None, exc
    return response, call, None


class DispatchUser(User):
    """A Locust user with a gRPC client to the loadgen shards. Abstract: subclass it and add tasks."""

    abstract = True

    addresses: ClassVar[str | Sequence[str] | None] = None
    """Shard addresses (``"host:port,host:port"`` or a list), unless given on the command line."""

    api_key: ClassVar[str | None] = None
    """The API key, unless given on the command line or in ``$DISPATCH_API_KEY``."""

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
        self._metadata = (("authorization", "Bearer " + resolve_api_key(options, cls.api_key)),)
        self._stub = dispatch_pb2_grpc.DispatchServiceStub(channel(self.address))

    # -------------------------------------------------------------------- tasks' API

    def dispatch(
        self, function: str, input: Any = None, batch: int = 1, *, expiration: float | None = None
    ) -> list[str]:
        """Dispatch *batch* calls of *function* with *input* in one RPC; return their dispatch ids.

        *input*: a JSON-like value or bytes (encoded with :func:`loadgen.values.encode`), a
        ``google.protobuf.Any``, or ``None`` for ``{}``. *expiration*: seconds, else the
        engine's default.
        """
        if batch < 1:
            raise ValueError("batch must be >= 1")
        call = call_pb2.Call(function=function, input=_encode(input))
        if expiration is not None:
            call.expiration.FromNanoseconds(int(expiration * 1e9))
        request = dispatch_pb2.DispatchRequest(calls=[call] * batch)
        response, _ = self._call(self._stub.Dispatch, request, f"Dispatch {function}", self.rpc_timeout)
        ids = list(response.dispatch_ids)
        dispatched.add(function, len(ids))
        return ids

    def wait_for(
        self, dispatch_id: str, *, function: str = "", timeout: float | None = None
    ) -> tuple[call_pb2.CallResult, str]:
        """Wait until the call *dispatch_id* ends; return its ``CallResult`` and final status name.

        The status is the ``loadgen-status`` trailer (``"STATUS_OK"``, ``"STATUS_PERMANENT_ERROR"``, ...).
        The RPC is recorded as ``"Wait <function>"``. (``User.wait`` is Locust's own pause.)
        """
        limit = self.wait_timeout if timeout is None else timeout
        request = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
        request.timeout.FromNanoseconds(int(limit * 1e9))
        name = f"Wait {function}" if function else "Wait"
        result, call = self._call(self._stub.Wait, request, name, limit + 5.0)
        status = ""
        for key, value in call.trailing_metadata() or ():
            if key == "loadgen-status":
                status = value if isinstance(value, str) else value.decode()
        return result, status

    def dispatch_and_wait(
        self, function: str, input: Any = None, *, timeout: float | None = None, expiration: float | None = None
    ) -> call_pb2.CallResult:
        """Dispatch one call and wait for its end (two RPCs, two entries); return its ``CallResult``.

        A call that ended in failure has ``CallResult.error`` set (its status type and message).
        """
        (dispatch_id,) = self.dispatch(function, input, expiration=expiration)
        result, _ = self.wait_for(dispatch_id, function=function, timeout=timeout)
        return result

    # -------------------------------------------------------------------- plumbing

    def _call(self, method: Any, request: Any, name: str, timeout: float) -> tuple[Any, Any]:
        """Run one unary RPC and fire its request event; raise :class:`DispatchFailed` when it failed.

        The RPC runs in a greenlet of its own, so a kill of this user (Locust stopping it)
        cannot interrupt it half-way (after the request left, before its answer was seen):
        the user still waits for the answer, records it, then dies.
        """
        started_wall = time.time()
        started = time.perf_counter()
        rpc = gevent.spawn(_invoke, method, request, self._metadata, timeout)
        killed: BaseException | None = None
        while True:
            try:
                rpc.join()
                break
            except GreenletExit as exc:
                killed = exc
        elapsed = (time.perf_counter() - started) * 1000.0
        if not rpc.successful():  # not an RPC failure: a bug, or the process is going down
            raise rpc.exception
        response, call, failure = rpc.value
        exception = None
        if failure is not None:
            code = failure.code() if hasattr(failure, "code") else None
            details = failure.details() if hasattr(failure, "details") else str(failure)
            exception = DispatchFailed(name.split(" ", 1)[0], code, details or "")
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=elapsed,
            response_length=response.ByteSize() if response is not None else 0,
            response=response,
            context=self.context(),
            exception=exception,
            start_time=started_wall,
            url=self.address,
        )
        if killed is not None:
            raise killed
        if exception is not None:
            raise exception
        return response, call
