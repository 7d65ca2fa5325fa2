"""The built-in functions of the reference endpoint (pure: no IO, no clock, no sockets).

Their parameters, defaults and bounds are :mod:`loadgen.endpoint.catalogue`'s (one copy, also used
to check scenarios); this module runs them.

Inputs and outputs use :mod:`loadgen.protocol.values`: the input is an ``Any`` holding a
``google.protobuf.Struct`` of parameters. Every parameter is optional. An
empty ``Any`` or a ``Value`` holding null means "all defaults". Numbers
may be sent as integers or integral floats, which is how ``Struct`` carries
them.

``echo``
    Any input, including non-``Struct`` input such as ``BytesValue``. The input is
    not decoded. The function exits OK with ``output`` set to the very same ``Any``.
``sleep`` — ``{"ms": 10}``
    The server waits *ms* milliseconds (0 ≤ ms ≤ 300000) before it answers, without
    blocking its event loop. The output is the input ``Any``, unchanged.
``fail`` — ``{"status": "TEMPORARY_ERROR", "times": 1}`` or ``{"status": ..., "rate": 0.3}``
    With ``times``, the first *times* attempts of this ``dispatch_id`` fail. With ``rate``,
    each attempt fails with that probability. The RNG can be seeded:
    ``ReferenceFunctions(seed=...)``. A failed attempt answers ``RunResponse.status`` = *status*
    with ``exit.result.error`` = ``Error(type="InjectedFailure", message=...)``. The status is a
    name (``TEMPORARY_ERROR``, ``STATUS_TEMPORARY_ERROR``, any case) or its number, and OK or
    UNSPECIFIED are refused. A successful attempt exits OK with output ``{"attempts": k}``, where
    ``k`` counts this dispatch's attempts, this one included. Attempts are counted per
    ``dispatch_id`` in a bounded LRU (100,000 ids by default). Requests without a ``dispatch_id``
    share one counter.
``fanout`` — ``{"n": 3, "function": "echo", "input": {}, "endpoint": "", "min_results": n, "typed_state": false}``
    The first run answers ``poll`` with *n* (≤ 10000) child calls. Each child has
    ``correlation_id`` *i* (0 ≤ i < n), the given ``endpoint`` ("" means the same endpoint),
    the given ``function`` and ``encode(input)``. The poll also sets ``min_results`` (clamped
    to 1..n), ``max_results = n``, and a JSON coroutine state. The state goes in
    ``coroutine_state``, or in ``typed_coroutine_state`` as ``Any(BytesValue(json))`` when
    ``typed_state`` is true. Each resume (``poll_result``) stores the results it carries; the
    first result per correlation id wins, and an unknown id is INVALID_ARGUMENT. Until all *n*
    results are in, the function polls again with no new calls. ``min_results`` is then
    ``min(min_results, remaining)`` and ``max_results = remaining``. A resume answers with the
    same state field as the one it received. When all results are in, the function exits OK
    with output ``{"results": [...], "errors": count}``, results in correlation-id order.
    An errored child appears as ``null``. A ``BytesValue`` output appears as ``{"bytes": length}``.
    An output of an unknown type appears as ``{"type_url": ..., "bytes": length}``.
    An undecodable state answers INCOMPATIBLE_STATE, as the SDK does. So does a resume of any
    other function. A ``poll_result.error`` ("none of the calls were dispatched") ends the
    call with PERMANENT_ERROR and that error.
    ``n = 0`` exits at once with ``{"results": [], "errors": 0}``.
``chain`` — ``{"depth": 3}``
    With depth > 0, it exits OK with ``tail_call`` = ``Call(function="chain", input={"depth": depth-1})``.
    At depth 0 it exits OK with output ``{"depth": 0}``. Depth is at most 1,000,000.
``payload`` — ``{"bytes": 1024}``
    It exits OK with output ``Any(BytesValue)`` of *bytes* zero bytes (at most 16,000,000).

Failures at the function level are HTTP 200 responses with ``RunResponse.status`` set. They
carry ``exit.result.error`` (``Error.type`` is ``ValueError`` for INVALID_ARGUMENT, as the SDK
would map it):

* a request with neither ``input`` nor ``poll_result`` → INVALID_ARGUMENT. This deliberately
  differs from the SDK, which answers TEMPORARY_ERROR, and the mock retries that forever.
* undecodable input, input that is not a ``Struct``, or a bad parameter value → INVALID_ARGUMENT.

Request-level failures raise :class:`RequestRejected`, mirroring the SDK's FastAPI endpoint:
``function`` empty → 400 ``invalid_argument`` "function is required"; unknown name → 404
``not_found`` "function 'X' does not exist".

:class:`ReferenceFunctions` keeps mutable state (attempt counters, RNG). It is meant to be
used from one thread, which is the endpoint's event loop.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from google.protobuf import any_pb2, wrappers_pb2

from loadgen.endpoint import catalogue
from loadgen.pb import call_pb2, error_pb2, exit_pb2, function_pb2, poll_pb2, status_pb2
from loadgen.protocol import values

__all__ = [
    "Outcome",
    "ReferenceFunctions",
    "RequestRejected",
]


_OK: Final = status_pb2.STATUS_OK
_STATE_VERSION: Final = 1
_Params = dict[str, values.Json]


class RequestRejected(Exception):
    """The request cannot be run at all: answer with HTTP *http_status* and a Connect error."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Outcome:
    """A function's answer: the ``RunResponse``, sent after ``delay`` seconds (``sleep`` only)."""

    response: function_pb2.RunResponse
    delay: float = 0.0


class _Failure(Exception):
    """A function-level failure: answered as a ``RunResponse`` with *status* and an error."""

    def __init__(self, status: status_pb2.Status, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _invalid(message: str) -> _Failure:
    return _Failure(status_pb2.STATUS_INVALID_ARGUMENT, "ValueError", message)


def _incompatible(message: str) -> _Failure:
    return _Failure(status_pb2.STATUS_INCOMPATIBLE_STATE, "IncompatibleStateError", message)


def _exit_output(output: any_pb2.Any) -> function_pb2.RunResponse:
    response = function_pb2.RunResponse(status=_OK)
    response.exit.result.output.CopyFrom(output)
    return response


def _exit_error(status: status_pb2.Status, error: error_pb2.Error) -> function_pb2.RunResponse:
    response = function_pb2.RunResponse(status=status)
    response.exit.result.error.CopyFrom(error)
    return response


def _params(request: function_pb2.RunRequest) -> _Params:
    given = request.input
    if not given.type_url and not given.value:
        return {}
    try:
        decoded = values.decode(given)
    except ValueError as exc:
        raise _invalid(f"undecodable input: {exc}") from None
    if decoded is None:
        return {}
    if not isinstance(decoded, dict):
        raise _invalid(f"input must be a google.protobuf.Struct of parameters, got {type(decoded).__name__}")
    return decoded


def _param(function: str, params: _Params, name: str) -> Any:
    """A parameter's value (:mod:`.catalogue`): INVALID_ARGUMENT when the endpoint does not take it."""
    try:
        return catalogue.read(function, params, name)
    except catalogue.ParamError as exc:
        raise _invalid(f"parameter {name!r}: {exc.problem}") from None


def _describe(output: any_pb2.Any) -> values.Json:
    """A child's output as a JSON-able value for the fan-out result list."""
    try:
        decoded = values.decode(output)
    except ValueError:
        return {"type_url": output.type_url, "bytes": len(output.value)}
    if isinstance(decoded, bytes):
        return {"bytes": len(decoded)}
    return decoded


class _FanoutState:
    """The JSON coroutine state of one ``fanout`` call."""

    __slots__ = ("errors", "min_results", "n", "results")

    def __init__(self, n: int, min_results: int) -> None:
        self.n = n
        self.min_results = min_results
        self.results: dict[str, values.Json] = {}
        self.errors: list[int] = []

    def dump(self) -> bytes:
        return orjson.dumps(
            {"v": _STATE_VERSION, "n": self.n, "min": self.min_results, "r": self.results, "e": self.errors}
        )

    @classmethod
    def load(cls, data: bytes) -> _FanoutState:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _incompatible("coroutine state is not a fanout state (not JSON)") from None
        if not isinstance(raw, dict) or raw.get("v") != _STATE_VERSION:
            raise _incompatible("coroutine state is not a version 1 fanout state")
        n, min_results, results, errors = raw.get("n"), raw.get("min"), raw.get("r"), raw.get("e")
        if (
            not isinstance(n, int)
            or not isinstance(min_results, int)
            or not isinstance(results, dict)
            or not isinstance(errors, list)
            or not 0 <= n <= catalogue.MAX_FANOUT
            or min_results < 1
        ):
            raise _incompatible("coroutine state has a malformed fanout state")
        state = cls(n, min_results)
        state.results = results
        state.errors = errors
        return state


class ReferenceFunctions:
    """The built-in functions; see the module docstring for each one's parameters.

    *seed* seeds the RNG of ``fail``'s ``rate``. *max_tracked_dispatches* bounds
    the LRU of per-``dispatch_id`` attempt counters. *inject_rate* makes every attempt of
    every function fail with probability *inject_rate* and status *inject_status* (type
    ``InjectedFailure``) before the function runs: failure injection for load tests.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        max_tracked_dispatches: int = 100_000,
        inject_rate: float = 0.0,
        inject_status: int = status_pb2.STATUS_TEMPORARY_ERROR,
    ) -> None:
        if max_tracked_dispatches < 1:
            raise ValueError("max_tracked_dispatches must be at least 1")
        if not 0.0 <= inject_rate <= 1.0:
            raise ValueError("inject_rate must be between 0 and 1")
        if inject_status in (status_pb2.STATUS_OK, status_pb2.STATUS_UNSPECIFIED):
            raise ValueError("inject_status must be a failure status")
        self._random = random.Random(seed).random
        self._inject_rate = inject_rate
        self._inject_status = cast(status_pb2.Status, inject_status)
        self._attempts: OrderedDict[str, int] = OrderedDict()
        self._max_tracked = max_tracked_dispatches
        self._payload_cache: tuple[int, any_pb2.Any] | None = None
        self._handlers: dict[str, Callable[[function_pb2.RunRequest], Outcome]] = {
            "echo": self._echo,
            "sleep": self._sleep,
            "fail": self._fail,
            "fanout": self._fanout,
            "chain": self._chain,
            "payload": self._payload,
        }
        assert tuple(self._handlers) == catalogue.FUNCTION_NAMES

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the functions served."""
        return tuple(self._handlers)

    def tracked_dispatches(self) -> int:
        """How many dispatch ids ``fail`` currently counts attempts for."""
        return len(self._attempts)

    def execute(self, request: function_pb2.RunRequest) -> Outcome:
        """Run *request*; raise :class:`RequestRejected` if it names no known function.

        Exceptions other than :class:`RequestRejected` are bugs. A server answers them as
        500 ``internal`` "function 'X' fatal error", as the SDK does.
        """
        name = request.function
        if not name:
            raise RequestRejected(400, "invalid_argument", "function is required")
        handler = self._handlers.get(name)
        if handler is None:
            raise RequestRejected(404, "not_found", f"function '{name}' does not exist")
        try:
            directive = request.WhichOneof("directive")
            if directive is None:
                raise _invalid("RunRequest has no directive: expected input or poll_result")
            if directive == "poll_result" and name != "fanout":
                raise _incompatible(f"function '{name}' never polls, so it cannot be resumed")
            if self._inject_rate and self._random() < self._inject_rate:
                status_name = status_pb2.Status.Name(self._inject_status).removeprefix("STATUS_")
                raise _Failure(self._inject_status, "InjectedFailure", f"injected {status_name} (failure injection)")
            return handler(request)
        except _Failure as failure:
            error = error_pb2.Error(type=failure.error_type, message=failure.message)
            return Outcome(_exit_error(failure.status, error))

    def run(self, request: function_pb2.RunRequest) -> function_pb2.RunResponse:
        """Like :meth:`execute`, but only the response; the ``sleep`` delay is the caller's business."""
        return self.execute(request).response

    # -- the functions ---------------------------------------------------------------------------

    def _echo(self, request: function_pb2.RunRequest) -> Outcome:
        return Outcome(_exit_output(request.input))

    def _sleep(self, request: function_pb2.RunRequest) -> Outcome:
        ms: int = _param("sleep", _params(request), "ms")
        return Outcome(_exit_output(request.input), ms / 1000.0)

    def _fail(self, request: function_pb2.RunRequest) -> Outcome:
        params = _params(request)
        status = cast(status_pb2.Status, _param("fail", params, "status"))
        rate: float | None = _param("fail", params, "rate")
        times: int = _param("fail", params, "times")
        attempt = self._count_attempt(request.dispatch_id)
        failing = self._random() < rate if rate is not None else attempt <= times
        if failing:
            status_name = status_pb2.Status.Name(status).removeprefix("STATUS_")
            message = f"injected {status_name} on attempt {attempt} of dispatch '{request.dispatch_id}'"
            return Outcome(_exit_error(status, error_pb2.Error(type="InjectedFailure", message=message)))
        return Outcome(_exit_output(values.encode({"attempts": attempt})))

    def _count_attempt(self, dispatch_id: str) -> int:
        attempts = self._attempts
        count = attempts.pop(dispatch_id, 0) + 1
        attempts[dispatch_id] = count
        if len(attempts) > self._max_tracked:
            attempts.popitem(last=False)
        return count

    def _fanout(self, request: function_pb2.RunRequest) -> Outcome:
        if request.WhichOneof("directive") == "poll_result":
            return self._fanout_resume(request.poll_result)
        params = _params(request)
        n: int = _param("fanout", params, "n")
        function: str = _param("fanout", params, "function")
        endpoint: str = _param("fanout", params, "endpoint")
        given_min: int | None = _param("fanout", params, "min_results")
        min_results = n if given_min is None else given_min
        typed: bool = _param("fanout", params, "typed_state")
        if n == 0:
            return Outcome(_exit_output(values.encode({"results": [], "errors": 0})))
        given = params.get("input")
        child_input = values.encode({} if given is None else given)
        state = _FanoutState(n, max(1, min(min_results, n)))
        response = self._fanout_poll(state, typed)
        calls = response.poll.calls
        for i in range(n):
            call = calls.add(correlation_id=i, endpoint=endpoint, function=function)
            call.input.CopyFrom(child_input)
        return Outcome(response)

    def _fanout_resume(self, result: poll_pb2.PollResult) -> Outcome:
        typed = result.HasField("typed_coroutine_state")
        if typed:
            holder = result.typed_coroutine_state
            if holder.type_url != values.BYTES_URL:
                raise _incompatible(f"typed coroutine state has unexpected type {holder.type_url!r}")
            try:
                data = wrappers_pb2.BytesValue.FromString(holder.value).value
            except Exception:  # DecodeError
                raise _incompatible("typed coroutine state is not a BytesValue") from None
        else:
            data = result.coroutine_state
        state = _FanoutState.load(data)
        if result.HasField("error"):
            return Outcome(_exit_error(status_pb2.STATUS_PERMANENT_ERROR, result.error))
        collected = state.results
        for item in result.results:
            cid = item.correlation_id
            if cid >= state.n:
                raise _invalid(f"poll result has unexpected correlation_id {cid} (fan-out of {state.n})")
            key = str(cid)
            if key in collected:
                continue
            if item.HasField("error"):
                collected[key] = None
                state.errors.append(cid)
            else:
                collected[key] = _describe(item.output)
        if len(collected) < state.n:
            return Outcome(self._fanout_poll(state, typed))
        output: dict[str, values.Json] = {
            "results": [collected[str(i)] for i in range(state.n)],
            "errors": len(state.errors),
        }
        return Outcome(_exit_output(values.encode(output)))

    @staticmethod
    def _fanout_poll(state: _FanoutState, typed: bool) -> function_pb2.RunResponse:
        remaining = state.n - len(state.results)
        poll = poll_pb2.Poll(min_results=min(state.min_results, remaining), max_results=remaining)
        data = state.dump()
        if typed:
            poll.typed_coroutine_state.type_url = values.BYTES_URL
            poll.typed_coroutine_state.value = wrappers_pb2.BytesValue(value=data).SerializeToString()
        else:
            poll.coroutine_state = data
        return function_pb2.RunResponse(status=_OK, poll=poll)

    def _chain(self, request: function_pb2.RunRequest) -> Outcome:
        depth: int = _param("chain", _params(request), "depth")
        if depth == 0:
            return Outcome(_exit_output(values.encode({"depth": 0})))
        tail = call_pb2.Call(function="chain", input=values.encode({"depth": depth - 1}))
        return Outcome(function_pb2.RunResponse(status=_OK, exit=exit_pb2.Exit(tail_call=tail)))

    def _payload(self, request: function_pb2.RunRequest) -> Outcome:
        size: int = _param("payload", _params(request), "bytes")
        cached = self._payload_cache
        if cached is None or cached[0] != size:
            data = wrappers_pb2.BytesValue(value=bytes(size)).SerializeToString()
            cached = (size, any_pb2.Any(type_url=values.BYTES_URL, value=data))
            self._payload_cache = cached
        return Outcome(_exit_output(cached[1]))
