"""The Session ingress of a shard: ``loadgen.v1.Calls/Session`` on grpc.aio.

One bidirectional stream per client process: groups of calls in, their answers and results
out (the contract is in ``proto/loadgen/v1/session.proto``). Per stream, a reader task
accepts each group on its own through the :class:`ShardFrontend` (as ``Dispatch`` would:
the same validation, the same ledger) and a writer loop sends whatever is queued when its
previous write completed: answers first, then up to :data:`MAX_RESULTS_PER_MESSAGE`
results (about :data:`MAX_BYTES_PER_MESSAGE`). A call's end reaches the stream through the
group's listener, kept on the call's own scheduler record, so a streamed call costs no
entry in the ``Wait`` retention; results the stream could not carry (it broke) are kept
for ``Wait`` instead.

Where a group is accepted or rejected is :meth:`SessionServicer._accept`: a rejection is a
``GroupAnswer`` with the gRPC code of the frontend's :class:`ApiError` (admission control
rejects there too, with ``RESOURCE_EXHAUSTED``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
import grpc.aio

from loadgen.core.results import CallOutcome
from loadgen.core.scheduler import Outcome
from loadgen.engine.frontend import ApiError, ShardFrontend
from loadgen.engine.ingress_grpc import grpc_code
from loadgen.pb import session_pb2, session_pb2_grpc

__all__ = ["MAX_BYTES_PER_MESSAGE", "MAX_RESULTS_PER_MESSAGE", "MAX_UNWRITTEN", "SessionServicer", "add_session"]

MAX_RESULTS_PER_MESSAGE: Final = 1000
MAX_BYTES_PER_MESSAGE: Final = 1 << 20
MAX_UNWRITTEN: Final = 10_000
"""Results waiting to be written above which a session's groups are not read (back-pressure)."""

OUTCOMES: Final[dict[Outcome, int]] = {
    outcome: session_pb2.Outcome.Value("OUTCOME_" + outcome.name) for outcome in Outcome
}
"""Each engine outcome as the proto's ``Outcome`` (``OUTCOME_<NAME>``)."""


_Delivered = tuple[CallOutcome, int, int]
"""A call's end waiting to be written: its outcome, its group's number and its index in the group."""


class _Session:
    """One stream's state: what waits to be written, and how many streamed calls have not ended."""

    __slots__ = ("answers", "attached", "closed", "ended", "outstanding", "room", "wake")

    def __init__(self) -> None:
        self.answers: list[session_pb2.GroupAnswer] = []
        self.ended: list[_Delivered] = []
        self.outstanding = 0  # accepted calls whose results are streamed and not yet queued
        self.closed = False  # the client half-closed: no more groups
        self.attached = True  # False once the stream is over: results go to Wait
        self.wake = asyncio.Event()  # something to write, or the end
        self.room = asyncio.Event()  # fewer than MAX_UNWRITTEN results wait
        self.room.set()


class _Group:
    """The listener of one accepted group's calls (kept on each call's scheduler record)."""

    __slots__ = ("first", "number", "session")

    def __init__(self, session: _Session, number: int) -> None:
        self.session = session
        self.number = number
        self.first = 0  # the first call's id as a number: a call's index is its id minus this

    def deliver(self, dispatch_id: str, outcome: CallOutcome) -> bool:
        session = self.session
        if not session.attached:
            return False
        session.ended.append((outcome, self.number, int(dispatch_id, 16) - self.first))
        session.outstanding -= 1
        if len(session.ended) >= MAX_UNWRITTEN:
            session.room.clear()
        session.wake.set()
        return True


class SessionServicer(session_pb2_grpc.CallsServicer):
    """``Calls/Session`` of one shard, over its :class:`ShardFrontend`."""

    def __init__(self, frontend: ShardFrontend) -> None:
        self.frontend = frontend
        self.stats = frontend.stats

    async def Session(
        self, request_iterator: AsyncIterator[session_pb2.SessionRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        frontend = self.frontend
        try:
            frontend.authenticate(context.invocation_metadata())
        except ApiError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        session = _Session()
        header = session_pb2.SessionHeader(shard=frontend.index, epoch=frontend.epoch)
        writing: list[_Delivered] = []
        reader = asyncio.ensure_future(self._read(request_iterator, session))
        reader.add_done_callback(lambda _: session.wake.set())
        try:
            await context.write(session_pb2.SessionResponse(header=header))
            await self._write(session, context, reader, writing)
        finally:
            session.attached = False
            reader.cancel()
            dispatcher = frontend.dispatcher
            for outcome, _, _ in writing + session.ended:  # not (surely) written: Wait answers for them
                dispatcher.retain(outcome.result.dispatch_id, outcome)
            session.ended.clear()

    async def _read(self, request_iterator: AsyncIterator[session_pb2.SessionRequest], session: _Session) -> None:
        room = session.room
        async for request in request_iterator:
            for group in request.groups:
                self._accept(session, group)
            if not room.is_set():
                await room.wait()
        session.closed = True

    def _accept(self, session: _Session, group: session_pb2.Group) -> None:
        """Accept or reject one group, on its own; queue its answer when it has one."""
        started = time.perf_counter()
        streamed = not group.skip_results
        listener = _Group(session, group.group) if streamed else None
        count = len(group.calls)
        if streamed:
            session.outstanding += count
        try:
            ids = self.frontend.dispatch(group.calls, listener)
        except ApiError as exc:
            if streamed:
                session.outstanding -= count
            session.answers.append(
                session_pb2.GroupAnswer(
                    group=group.group,
                    code=grpc_code(exc.code).value[0],
                    message=exc.message,
                    retry_after_ms=exc.retry_after_ms or 0,
                )
            )
            session.wake.set()
            self.stats.record_rpc("Session", False, time.perf_counter() - started)
            return
        if listener is not None and ids:
            listener.first = int(ids[0], 16)
        if group.answer:
            session.answers.append(session_pb2.GroupAnswer(group=group.group, dispatch_ids=ids))
            session.wake.set()
        self.stats.record_rpc("Session", True, time.perf_counter() - started)

    async def _write(
        self,
        session: _Session,
        context: grpc.aio.ServicerContext[Any, Any],
        reader: asyncio.Future[None],
        writing: list[_Delivered],
    ) -> None:
        """Write what is queued until the client half-closed and every streamed call's result went out."""
        wake = session.wake
        while True:
            if not session.answers and not session.ended:
                if reader.done():
                    reader.result()  # a reader that failed fails the stream
                    if session.outstanding == 0:
                        return  # half-closed, and every streamed call's result was written: OK
                wake.clear()
                await wake.wait()
                continue
            message = self._message(session, writing)
            await context.write(message)
            writing.clear()

    def _message(self, session: _Session, taken: list[_Delivered]) -> session_pb2.SessionResponse:
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
        if len(queue) < MAX_UNWRITTEN:
            session.room.set()
        return message


def add_session(server: grpc.aio.Server, frontend: ShardFrontend) -> None:
    """Serve ``loadgen.v1.Calls/Session`` of one shard on *server*."""
    session_pb2_grpc.add_CallsServicer_to_server(SessionServicer(frontend), server)
