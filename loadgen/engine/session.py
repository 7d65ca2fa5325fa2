"""The Session ingress of a shard: ``loadgen.v1.Calls/Session`` on grpc.aio, and what the session socket shares.

One bidirectional stream per client process: groups of calls in, their answers and results out (the
contract is in ``proto/loadgen/v1/session.proto``). Per stream, a reader task accepts the groups of
each message together through the :class:`ShardFrontend`, each one whole or not at all as
``Dispatch`` would (the same validation, admission and ledger), and a writer loop sends whatever is
queued when its previous write completed: answers first, then up to :data:`MAX_RESULTS_PER_MESSAGE`
results (about :data:`MAX_BYTES_PER_MESSAGE`). A call's end reaches the stream through the group's
listener, kept on the call's own scheduler record, so a streamed call costs no entry in the ``Wait``
retention; results the stream could not carry (it broke) are kept for ``Wait`` instead.

Where a group is accepted or rejected is :func:`accept_groups` (through
:meth:`ShardFrontend.dispatch_groups`): a rejection is a ``GroupAnswer`` with the gRPC code of the
frontend's :class:`ApiError` (admission control rejects there too, with ``RESOURCE_EXHAUSTED``).

The same session over a plain TCP connection (``Calls/SessionSocket`` says where) is
:mod:`.session_socket`'s; it shares :class:`SessionState`, :func:`accept_groups` and
:func:`next_message` with the stream here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

import grpc
import grpc.aio

from loadgen.core.counters import sessions
from loadgen.core.results import CallOutcome
from loadgen.core.scheduler import Outcome
from loadgen.engine.frontend import ApiError, ShardFrontend
from loadgen.engine.ingress_grpc import grpc_code
from loadgen.pb import call_pb2, session_pb2, session_pb2_grpc

__all__ = [
    "MAX_BYTES_PER_MESSAGE",
    "MAX_RESULTS_PER_MESSAGE",
    "MAX_UNWRITTEN",
    "SessionServicer",
    "SessionState",
    "accept_groups",
    "add_session",
    "next_message",
    "retain_unwritten",
    "session_header",
]

MAX_RESULTS_PER_MESSAGE: Final = 1000
MAX_BYTES_PER_MESSAGE: Final = 1 << 20
MAX_UNWRITTEN: Final = 10_000
"""Results waiting to be written above which a session's groups are not read (back-pressure)."""

OUTCOMES: Final[dict[Outcome, int]] = {
    outcome: session_pb2.Outcome.Value("OUTCOME_" + outcome.name) for outcome in Outcome
}
"""Each engine outcome as the proto's ``Outcome`` (``OUTCOME_<NAME>``)."""


Delivered = tuple[CallOutcome, int, int]
"""A call's end waiting to be written: its outcome, its group's number and its index in the group."""


class SessionState:
    """One session's state: what waits to be written, and how many streamed calls have not ended.

    *wake* is called whenever something was queued to be written (an answer, a result)."""

    __slots__ = ("answers", "attached", "closed", "ended", "outstanding", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.answers: list[session_pb2.GroupAnswer] = []
        self.ended: list[Delivered] = []
        self.outstanding = 0  # accepted calls whose results are streamed and not yet queued
        self.closed = False  # the client half-closed: no more groups
        self.attached = True  # False once the session is over: results go to Wait
        self.wake = wake

    @property
    def full(self) -> bool:
        """Whether at least :data:`MAX_UNWRITTEN` results wait to be written (read no more groups)."""
        return len(self.ended) >= MAX_UNWRITTEN

    @property
    def pending(self) -> bool:
        """Whether anything waits to be written."""
        return bool(self.answers or self.ended)

    @property
    def quiet(self) -> bool:
        """No streamed call still running, nothing left to write."""
        return self.outstanding == 0 and not self.answers and not self.ended

    @property
    def finished(self) -> bool:
        """Half-closed and quiet: every streamed call's result was written, the session may end OK."""
        return self.closed and self.quiet


class _Group:
    """The listener of one accepted group's calls (kept on each call's scheduler record)."""

    __slots__ = ("first", "number", "session")

    def __init__(self, session: SessionState, number: int) -> None:
        self.session = session
        self.number = number
        self.first = 0  # the first call's id as a number: a call's index is its id minus this

    def deliver(self, dispatch_id: str, outcome: CallOutcome) -> bool:
        session = self.session
        if not session.attached:
            return False
        session.ended.append((outcome, self.number, int(dispatch_id, 16) - self.first))
        session.outstanding -= 1
        session.wake()
        return True


def session_header(frontend: ShardFrontend) -> session_pb2.SessionResponse:
    """A session's first message: which shard answers, in which incarnation."""
    return session_pb2.SessionResponse(header=session_pb2.SessionHeader(shard=frontend.index, epoch=frontend.epoch))


def accept_groups(frontend: ShardFrontend, session: SessionState, groups: Sequence[session_pb2.Group]) -> None:
    """Accept or reject the groups of one message, each on its own (as one ``Dispatch`` each); queue the answers
    they have. The time their acceptance took is each one's ``Session`` RPC time (their answers go out after it)."""
    started = time.perf_counter()
    accepting: list[tuple[session_pb2.Group, Sequence[call_pb2.Call], _Group | None]] = []
    for group in groups:
        members = group.calls
        listener = None
        if not group.skip_results:
            listener = _Group(session, group.group)
            session.outstanding += len(members)
        accepting.append((group, members, listener))
    answers = frontend.dispatch_groups([(calls, listener) for _, calls, listener in accepting])
    elapsed = time.perf_counter() - started
    record_rpc = frontend.stats.record_rpc
    record_ok = None  # the Session "ok" histogram's bound recorder, looked up once per message
    queued = session.answers
    for (group, calls, listener), answer in zip(accepting, answers, strict=True):
        if type(answer) is list:
            if listener is not None and answer:
                listener.first = int(answer[0], 16)
            if group.answer:
                queued.append(session_pb2.GroupAnswer(group=group.group, dispatch_ids=answer))
            if record_ok is None:
                record_ok = frontend.stats.recorder("rpc", "Session", "ok")
            record_ok(elapsed)
            continue
        assert isinstance(answer, ApiError)
        if listener is not None:
            session.outstanding -= len(calls)
        queued.append(
            session_pb2.GroupAnswer(
                group=group.group,
                code=grpc_code(answer.code).value[0],
                message=answer.message,
                retry_after_ms=answer.retry_after_ms or 0,
            )
        )
        record_rpc("Session", False, elapsed)
    if queued:
        session.wake()


def next_message(session: SessionState, taken: list[Delivered]) -> session_pb2.SessionResponse:
    """The next message: every queued answer, then results up to the size limits (moved to *taken*)."""
    message = session_pb2.SessionResponse()
    if session.answers:
        message.answers.extend(session.answers)
        session.answers.clear()
    queue = session.ended
    add = message.ended.add
    outcomes = OUTCOMES
    size = 0
    count = 0
    for outcome, number, index in queue:
        if count and (count >= MAX_RESULTS_PER_MESSAGE or size >= MAX_BYTES_PER_MESSAGE):
            break
        result = outcome.result
        add(result=result, status=outcome.status, outcome=outcomes[outcome.outcome], group=number, index=index)
        size += result.ByteSize()
        count += 1
    taken.extend(queue[:count])
    del queue[:count]
    return message


def retain_unwritten(frontend: ShardFrontend, session: SessionState, unwritten: list[Delivered]) -> None:
    """The session is over: the results it did not (surely) write are kept for ``Wait``."""
    session.attached = False
    dispatcher = frontend.dispatcher
    for outcome, _, _ in unwritten + session.ended:
        dispatcher.retain(outcome.result.dispatch_id, outcome)
    session.ended.clear()


class SessionServicer(session_pb2_grpc.CallsServicer):
    """``Calls/Session`` and ``Calls/SessionSocket`` of one shard, over its :class:`ShardFrontend`."""

    def __init__(self, frontend: ShardFrontend) -> None:
        self.frontend = frontend
        self.stats = frontend.stats
        self.socket_port = 0
        """The port of this shard's session socket (0 until it listens, or when it has none)."""

    async def SessionSocket(
        self, request: session_pb2.SessionSocketRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> session_pb2.SessionSocketOffer:
        frontend = self.frontend
        try:
            frontend.authenticate(context.invocation_metadata())
        except ApiError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        return session_pb2.SessionSocketOffer(port=self.socket_port, shard=frontend.index, epoch=frontend.epoch)

    async def Session(
        self, request_iterator: AsyncIterator[session_pb2.SessionRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        frontend = self.frontend
        try:
            frontend.authenticate(context.invocation_metadata())
        except ApiError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        wake = asyncio.Event()  # something to write, or the end
        room = asyncio.Event()  # fewer than MAX_UNWRITTEN results wait
        room.set()
        session = SessionState(wake.set)
        self.stats.count(sessions("stream"))
        writing: list[Delivered] = []
        reader = asyncio.ensure_future(self._read(request_iterator, session, room))
        reader.add_done_callback(lambda _: wake.set())
        try:
            await context.write(session_header(frontend))
            await self._write(session, context, reader, writing, wake, room)
        finally:
            reader.cancel()
            retain_unwritten(frontend, session, writing)

    async def _read(
        self, request_iterator: AsyncIterator[session_pb2.SessionRequest], session: SessionState, room: asyncio.Event
    ) -> None:
        frontend = self.frontend
        async for request in request_iterator:
            accept_groups(frontend, session, request.groups)
            if session.full:
                room.clear()
                await room.wait()
        session.closed = True

    async def _write(
        self,
        session: SessionState,
        context: grpc.aio.ServicerContext[Any, Any],
        reader: asyncio.Future[None],
        writing: list[Delivered],
        wake: asyncio.Event,
        room: asyncio.Event,
    ) -> None:
        """Write what is queued until the client half-closed and every streamed call's result went out."""
        while True:
            if not session.pending:
                if reader.done():
                    reader.result()  # a reader that failed fails the stream
                    if session.finished:
                        return  # half-closed, and every streamed call's result was written: OK
                wake.clear()
                await wake.wait()
                continue
            message = next_message(session, writing)
            if not session.full:
                room.set()
            await context.write(message)
            writing.clear()


def add_session(server: grpc.aio.Server, frontend: ShardFrontend) -> SessionServicer:
    """Serve ``loadgen.v1.Calls`` (Session, SessionSocket) of one shard on *server*."""
    servicer = SessionServicer(frontend)
    session_pb2_grpc.add_CallsServicer_to_server(servicer, server)
    return servicer
