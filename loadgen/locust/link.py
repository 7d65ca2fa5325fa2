"""One Session per Locust process and shard: the users' calls in groups, their results back.

A :class:`SessionLink` carries the calls of every user of a process that sends to one shard
address over one session (``proto/loadgen/v1/session.proto``): on the shard's session socket
(a plain TCP connection, :class:`_SocketCarrier`) when ``Calls/SessionSocket`` offers one and
the link may use it, else on a ``loadgen.v1.Calls/Session`` stream on the process's shared
gRPC channel to that address (:class:`_StreamCarrier`). The session socket costs a fraction
of the stream's CPU per message on both sides (no gRPC between the bytes and the session,
and no gRPC threadpool in gevent). The link opens its session in a greenlet of its own, so
no user waits for it (calls submitted meanwhile go out in the first message). Either way:

* **Group commit, no timer.** A user's dispatch is queued as a :class:`PendingGroup`; gRPC
  takes the next request message when the previous one was sent, and that message carries
  every group queued meanwhile (at most :data:`MAX_GROUPS_PER_MESSAGE`, about
  :data:`MAX_BYTES_PER_MESSAGE`). Each group is accepted or rejected on its own.
* **Results** come back many per message, each naming its group and place; a reader
  greenlet hands them to the waiting users. One sweeper per link ends the waits whose
  deadline passed (no timer per call).
* **A broken stream** (the shard died or restarted, the connection was lost) fails every
  group still waiting: those sent are *lost* (their results can no longer arrive), those
  not sent yet were never dispatched. The next dispatch opens a new session.
* **The end.** :func:`close_links` (at the end of a test) half-closes every stream and
  reads it to its end (bounded), so the shards see a clean end of every session.

Links are made lazily, on first use in a process, and never cross a fork (like
:mod:`.channels`). The users' side (Locust entries, checks) is :mod:`.user`'s.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final, Protocol

import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]
import gevent.socket  # type: ignore[import-untyped]
import grpc

import loadgen.locust._gevent  # noqa: F401  # gRPC cooperates with gevent before any channel exists
from loadgen.engine.client import rpc_error
from loadgen.locust.channels import MAX_MESSAGE_BYTES, channel
from loadgen.pb import call_pb2, session_pb2, session_pb2_grpc
from loadgen.protocol.framing import FrameTooLarge, frame, take_frames

__all__ = [
    "MAX_BYTES_PER_MESSAGE",
    "MAX_GROUPS_PER_MESSAGE",
    "MAX_GROUP_BYTES",
    "PendingGroup",
    "SessionLink",
    "close_links",
    "link",
]

MAX_GROUPS_PER_MESSAGE: Final = 1000
MAX_BYTES_PER_MESSAGE: Final = 4 << 20
MAX_GROUP_BYTES: Final = 32 << 20
"""A group larger than this is refused here, alone (the shards take messages of up to 64 MiB: a larger
one would end the stream, and with it every other user's calls on it)."""
SWEEP_SECONDS: Final = 0.25
OPEN_TIMEOUT_S: Final = 10.0
"""Asking for the session socket, and connecting to it, at most this long each (else the gRPC stream)."""
RECEIVE_BYTES: Final = 256 << 10
_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}

log = logging.getLogger("loadgen.locust")


class PendingGroup:
    """One user's group of calls on a link, from its dispatch to its answer or last result.

    When :attr:`done` is set: :attr:`failure` (code, message) if the group was rejected, the
    link broke or the deadline passed; else :attr:`ids` (when an answer was asked for) and
    :attr:`ended` / :attr:`arrived` (each call's ``Ended`` and its ``time.perf_counter()``)."""

    __slots__ = (
        "answer",
        "arrived",
        "calls",
        "deadline",
        "done",
        "ended",
        "failure",
        "ids",
        "number",
        "remaining",
        "retry_after",
        "sent",
        "size",
        "skip_results",
        "started",
        "timeout",
    )

    def __init__(
        self, calls: Sequence[call_pb2.Call], *, answer: bool, skip_results: bool, timeout: float, size: int
    ) -> None:
        count = len(calls)
        self.calls = calls
        self.answer = answer
        self.skip_results = skip_results
        self.size = size
        self.number = 0
        self.sent = False
        self.started = time.perf_counter()
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.done = gevent.event.Event()
        self.ids: list[str] = []
        self.ended: list[session_pb2.Ended | None] = [None] * (0 if skip_results else count)
        self.arrived: list[float] = [0.0] * (0 if skip_results else count)
        self.remaining = (0 if skip_results else count) + (1 if answer else 0)
        self.failure: tuple[grpc.StatusCode | None, str] | None = None
        self.retry_after = 0.0
        """When the shard rejected the group as full: the seconds it asked the caller to wait."""

    def fail(self, code: grpc.StatusCode | None, message: str) -> None:
        if not self.done.is_set():
            self.failure = (code, message)
            self.done.set()


class SessionEnded(Exception):
    """The session socket ended: with the shard's ``end`` (its code and message), or broken."""

    def __init__(self, code: grpc.StatusCode | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Carrier(Protocol):
    """How a link's session travels: its responses for the requests it is given, and a way to cut it."""

    def responses(self, requests: Iterator[session_pb2.SessionRequest]) -> Iterator[session_pb2.SessionResponse]: ...

    def cancel(self) -> None: ...


class _StreamCarrier:
    """The session as a ``Calls/Session`` gRPC stream (gRPC takes the next request once the previous was sent)."""

    def __init__(self, stub: session_pb2_grpc.CallsStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata
        self._call: Any = None

    def responses(self, requests: Iterator[session_pb2.SessionRequest]) -> Iterator[session_pb2.SessionResponse]:
        self._call = self._stub.Session(requests, metadata=self._metadata)
        return iter(self._call)

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()


class _SocketCarrier:
    """The session on the shard's session socket: a writer greenlet sends each request as it is made."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._writer: Any = None

    @classmethod
    def open(cls, address: str, port: int, authorization: str) -> _SocketCarrier:
        """Connect to *port* on *address*'s host and send the ``SessionOpen``; ``OSError`` if it cannot."""
        host = address.rsplit(":", 1)[0].strip("[]")
        sock = gevent.socket.create_connection((host, port), timeout=OPEN_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
            sock.sendall(frame(session_pb2.SessionOpen(authorization=authorization).SerializeToString()))
        except OSError:
            sock.close()
            raise
        return cls(sock)

    def responses(self, requests: Iterator[session_pb2.SessionRequest]) -> Iterator[session_pb2.SessionResponse]:
        self._writer = gevent.spawn(self._send, requests)
        return self._receive()

    def cancel(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _send(self, requests: Iterator[session_pb2.SessionRequest]) -> None:
        sock = self._sock
        try:
            for request in requests:
                sock.sendall(frame(request.SerializeToString()))
            sock.shutdown(socket.SHUT_WR)  # no more groups
        except OSError:
            pass  # the reader sees the connection fail

    def _receive(self) -> Iterator[session_pb2.SessionResponse]:
        sock = self._sock
        buffer = bytearray()
        chunk = bytearray(RECEIVE_BYTES)
        parse = session_pb2.SessionResponse.FromString
        try:
            while True:
                try:
                    received = sock.recv_into(chunk)
                except OSError as exc:
                    raise SessionEnded(grpc.StatusCode.UNAVAILABLE, f"the session socket failed: {exc}") from None
                if not received:
                    detail = f" inside a frame ({len(buffer)} bytes)" if buffer else ""
                    raise SessionEnded(grpc.StatusCode.UNAVAILABLE, f"the shard closed the session socket{detail}")
                buffer += memoryview(chunk)[:received]
                try:
                    bodies = take_frames(buffer, MAX_MESSAGE_BYTES)
                except FrameTooLarge as exc:
                    raise SessionEnded(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
                for body in bodies:
                    response = parse(body)
                    if response.HasField("end"):
                        end = response.end
                        if end.code:
                            raise SessionEnded(_CODES.get(end.code), end.message)
                        return
                    yield response
        finally:
            sock.close()
            if self._writer is not None:
                self._writer.kill(block=False)


class SessionLink:
    """The session of this process with one shard address (see the module's documentation)."""

    def __init__(self, address: str, metadata: tuple[tuple[str, str], ...], *, use_socket: bool = True) -> None:
        self.address = address
        self.shard: int | None = None
        self.epoch: int | None = None
        self.broken: tuple[grpc.StatusCode | None, str] | None = None
        self.closing = False
        self.carried_by = "opening"
        """``"socket"`` or ``"stream"`` once the session is open."""
        self._metadata = metadata
        self._use_socket = use_socket
        self._queue: list[PendingGroup] = []
        self._groups: dict[int, PendingGroup] = {}
        self._numbers = itertools.count(1)
        self._wake = gevent.event.Event()
        self._over = gevent.event.Event()
        # Per timeout, (deadline, group number) in submission order, so in deadline order: the sweeper
        # looks only at the oldest entries, and drops those of groups already done as it goes.
        self._deadlines: dict[float, collections.deque[tuple[float, int]]] = {}
        self._carrier: _Carrier | None = None
        self._runner = gevent.spawn(self._run)
        self._sweeper = gevent.spawn(self._sweep)

    def __repr__(self) -> str:
        return f"SessionLink({self.address!r}, shard={self.shard}, epoch={self.epoch}, {self.carried_by})"

    @property
    def usable(self) -> bool:
        return self.broken is None and not self.closing

    def submit(self, group: PendingGroup) -> PendingGroup:
        """Queue *group* for the next request message; it is resolved on :attr:`PendingGroup.done`."""
        if not self.usable:
            group.fail(*(self.broken or (grpc.StatusCode.UNAVAILABLE, "the session is closing")))
            return group
        if group.size > MAX_GROUP_BYTES:
            message = f"a batch of {group.size} bytes is larger than {MAX_GROUP_BYTES} bytes: nothing was sent"
            group.fail(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
            return group
        group.number = number = next(self._numbers)
        self._groups[number] = group
        self._queue.append(group)
        queue = self._deadlines.get(group.timeout)
        if queue is None:
            queue = self._deadlines[group.timeout] = collections.deque()
        queue.append((group.deadline, number))
        self._wake.set()
        return group

    def abandon(self, group: PendingGroup) -> None:
        """Forget *group* (its user is gone): unsent, it is never sent; sent, its results are dropped."""
        self._groups.pop(group.number, None)
        if not group.sent and group in self._queue:
            self._queue.remove(group)

    def close(self, timeout: float) -> None:
        """Half-close the session and read it to its end, for up to *timeout* seconds; then cut it."""
        self.closing = True
        self._wake.set()
        if not self._over.wait(timeout):
            if self._carrier is not None:
                self._carrier.cancel()
            else:
                self._runner.kill(block=False)
            self._over.wait(1.0)
        self._sweeper.kill(block=False)

    # -- the session ---------------------------------------------------------------------------

    def _open(self) -> _Carrier:
        """The session socket when the shard offers one and it connects, else the gRPC stream."""
        stub = session_pb2_grpc.CallsStub(channel(self.address))
        if self._use_socket:
            try:
                offer = stub.SessionSocket(
                    session_pb2.SessionSocketRequest(), metadata=self._metadata, timeout=OPEN_TIMEOUT_S
                )
                if offer.port:
                    authorization = dict(self._metadata).get("authorization", "")
                    carrier = _SocketCarrier.open(self.address, offer.port, authorization)
                    self.carried_by = "socket"
                    return carrier
            except grpc.RpcError as exc:
                if rpc_error(exc)[0] is not grpc.StatusCode.UNIMPLEMENTED:  # an older shard has no socket: no news
                    log.debug("session socket of %s not offered (%s): the gRPC stream carries it", self.address, exc)
            except OSError as exc:
                log.warning("session socket of %s unreachable (%s): the gRPC stream carries it", self.address, exc)
        self.carried_by = "stream"
        return _StreamCarrier(stub, self._metadata)

    def _run(self) -> None:
        failure: tuple[grpc.StatusCode | None, str] | None = None
        try:
            self._carrier = carrier = self._open()
            for response in carrier.responses(self._requests()):
                self._received(response)
        except grpc.RpcError as exc:
            failure = rpc_error(exc)
        except SessionEnded as exc:
            failure = (exc.code, exc.message)
        finally:
            self._end(failure)

    def _requests(self) -> Iterator[session_pb2.SessionRequest]:
        """The request messages (the carrier takes the next one once the previous one was sent)."""
        queue = self._queue
        wake = self._wake
        while True:
            if not queue:
                if self.closing or self.broken is not None:
                    return  # half-close
                wake.clear()
                wake.wait()
                continue
            request = session_pb2.SessionRequest()
            add = request.groups.add
            size = taken = 0
            for group in queue:
                if taken and (taken >= MAX_GROUPS_PER_MESSAGE or size + group.size > MAX_BYTES_PER_MESSAGE):
                    break
                add(group=group.number, calls=group.calls, answer=group.answer, skip_results=group.skip_results)
                group.sent = True
                size += group.size
                taken += 1
            del queue[:taken]
            yield request

    def _received(self, response: session_pb2.SessionResponse) -> None:
        if response.HasField("header"):
            self.shard, self.epoch = response.header.shard, response.header.epoch
        for answer in response.answers:
            self._answered(answer)
        if response.ended:
            groups = self._groups
            now = time.perf_counter()
            for ended in response.ended:
                group = groups.get(ended.group)
                if group is None:
                    continue  # its user is gone, or its deadline passed
                index = ended.index
                if index < len(group.ended) and group.ended[index] is None:
                    group.ended[index] = ended
                    group.arrived[index] = now
                    group.remaining -= 1
                    if not group.remaining:
                        del groups[ended.group]
                        group.done.set()

    def _answered(self, answer: session_pb2.GroupAnswer) -> None:
        group = self._groups.get(answer.group)
        if group is None:
            return
        if answer.code:
            del self._groups[answer.group]
            group.retry_after = answer.retry_after_ms / 1000.0
            group.fail(_CODES.get(answer.code), answer.message)
            return
        group.ids = list(answer.dispatch_ids)
        group.remaining -= 1
        if not group.remaining:
            del self._groups[answer.group]
            group.done.set()

    def _end(self, failure: tuple[grpc.StatusCode | None, str] | None) -> None:
        """The session is over: fail what still waits on it (lost when sent, else never dispatched)."""
        where = f"shard {self.shard}" if self.shard is not None else self.address
        if failure is None:
            failure = (grpc.StatusCode.UNAVAILABLE, "the session ended")
        code, details = failure
        self.broken = failure
        _forget(self)
        waiting = list(self._groups.values()) + self._queue
        self._groups.clear()
        self._queue.clear()
        unserved = code is grpc.StatusCode.UNIMPLEMENTED and self.shard is None
        for group in waiting:
            if unserved:  # nothing was accepted: the server has no Session stream
                message = (
                    f"{self.address} does not serve the Session stream ({details}): an older loadgen serve?"
                    " use --dispatch-rpc unary"
                )
            elif group.sent:
                message = f"lost: the session with {where} broke ({details}); the results cannot arrive"
            else:
                message = f"the session with {where} broke ({details}) before the calls were sent"
            group.fail(code, message)
        self._wake.set()  # the request generator returns
        self._over.set()
        if self._sweeper is not gevent.getcurrent():
            self._sweeper.kill(block=False)

    def _sweep(self) -> None:
        """Fail the groups whose deadline passed (one timer for the link, not one per call)."""
        groups = self._groups
        while True:
            gevent.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            for queue in self._deadlines.values():
                while queue:
                    deadline, number = queue[0]
                    group = groups.get(number)
                    if group is not None and deadline > now:
                        break  # the oldest group still waiting is not due: neither is any later one
                    queue.popleft()
                    if group is None:
                        continue  # done already
                    del groups[number]
                    if not group.sent:
                        self.abandon(group)
                    what = "result" if group.ended else "answer"
                    group.fail(grpc.StatusCode.DEADLINE_EXCEEDED, f"no {what} within {group.timeout:g} s")


_links: dict[tuple[str, tuple[tuple[str, str], ...], bool], SessionLink] = {}


def _forked() -> None:
    _links.clear()  # the parent's links are not ours (their sockets and greenlets are the parent's)


os.register_at_fork(after_in_child=_forked)


def _forget(found: SessionLink) -> None:
    for key, value in list(_links.items()):
        if value is found:
            del _links[key]


def link(address: str, metadata: tuple[tuple[str, str], ...], *, use_socket: bool = True) -> SessionLink:
    """This process's usable link to *address* (with *metadata*'s API key), made on first use;
    *use_socket*: on the shard's session socket when it offers one (else always the gRPC stream)."""
    key = (address, metadata, use_socket)
    found = _links.get(key)
    if found is None or not found.usable:
        found = _links[key] = SessionLink(address, metadata, use_socket=use_socket)
    return found


def close_links(timeout: float = 5.0) -> None:
    """Half-close every link of this process and read each to its end (up to *timeout* s in all)."""
    deadline = time.monotonic() + timeout
    for found in list(_links.values()):
        found.close(max(0.0, deadline - time.monotonic()))
    _links.clear()
