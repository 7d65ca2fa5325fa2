"""The session socket of a shard (``Calls/SessionSocket``): real shards, a plain TCP client on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine

from loadgen.engine.session_socket import OPEN_TIMEOUT_S
from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, session_pb2, session_pb2_grpc, status_pb2
from loadgen.protocol import values
from loadgen.protocol.framing import frame, take_frames

pytestmark = pytest.mark.system

API_KEY = "session-socket-test-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
MAX_MESSAGE_BYTES = 1 << 20


@pytest.fixture(scope="module")
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    setup = quick_engine(endpoint_url, signing_key, API_KEY, shards=1, max_message_bytes=MAX_MESSAGE_BYTES)
    with Supervisor(setup) as supervisor:
        yield supervisor


def call(function: str, params: dict[str, object]) -> call_pb2.Call:
    return call_pb2.Call(function=function, input=values.encode(params))  # type: ignore[arg-type]


def offer(address: str, metadata: tuple[tuple[str, str], ...] = AUTH) -> session_pb2.SessionSocketOffer:
    with grpc.insecure_channel(address.removeprefix("http://")) as channel:
        return session_pb2_grpc.CallsStub(channel).SessionSocket(
            session_pb2.SessionSocketRequest(), metadata=metadata, timeout=10
        )


class SocketSession:
    """One session socket, read to its end by :meth:`read_to_end`."""

    def __init__(self, address: str, authorization: str | None = AUTH[0][1]) -> None:
        port = offer(address).port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.responses: list[session_pb2.SessionResponse] = []
        self.end: session_pb2.SessionEnd | None = None
        self.buffer = bytearray()
        if authorization is not None:
            self.sock.sendall(frame(session_pb2.SessionOpen(authorization=authorization).SerializeToString()))

    def send(self, *groups: session_pb2.Group) -> None:
        self.sock.sendall(frame(session_pb2.SessionRequest(groups=groups).SerializeToString()))

    def _take(self) -> None:
        for body in take_frames(self.buffer, 64 << 20):
            response = session_pb2.SessionResponse.FromString(body)
            assert self.end is None, "a message after the end"
            if response.HasField("end"):
                self.end = response.end
            else:
                self.responses.append(response)

    def read_until_answered(self, group: int) -> session_pb2.GroupAnswer:
        """Read (bounded by the socket's timeout) until *group*'s answer came."""
        while group not in self.answers():
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the shard closed the session"
            self.buffer += chunk
            self._take()
        return self.answers()[group]

    def read_to_end(self) -> None:
        """Read until the shard closes the connection (bounded by the socket's timeout)."""
        while chunk := self.sock.recv(1 << 16):
            self.buffer += chunk
        self._take()
        assert not self.buffer, "the connection ended inside a frame"
        self.sock.close()

    def close_and_read(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)
        self.read_to_end()

    def answers(self) -> dict[int, session_pb2.GroupAnswer]:
        return {answer.group: answer for response in self.responses for answer in response.answers}

    def ended(self) -> dict[tuple[int, int], session_pb2.Ended]:
        return {(e.group, e.index): e for response in self.responses for e in response.ended}


def wait_result(address: str, dispatch_id: str) -> call_pb2.CallResult:
    with grpc.insecure_channel(address.removeprefix("http://")) as channel:
        return dispatch_pb2_grpc.DispatchServiceStub(channel).Wait(  # type: ignore[no-any-return]
            dispatch_pb2.WaitRequest(dispatch_id=dispatch_id), metadata=AUTH, timeout=10
        )


def test_the_offer_names_the_shard_and_needs_the_key(engine: Supervisor) -> None:
    address = engine.shard_addresses[0]
    offered = offer(address)
    assert offered.port > 0 and offered.shard == 0
    with pytest.raises(grpc.RpcError) as failure:
        offer(address, (("authorization", "Bearer nope"),))
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_groups_answers_and_results_as_on_the_stream_and_an_ok_end_after_the_last_result(engine: Supervisor) -> None:
    address = engine.shard_addresses[0]
    session = SocketSession(address)
    session.send(
        session_pb2.Group(group=1, calls=[call("echo", {"n": i}) for i in range(3)], answer=True),
        session_pb2.Group(group=2, calls=[call("echo", {}), call("9bad", {})], answer=True),
    )
    session.send(
        session_pb2.Group(group=3, calls=[call("sleep", {"ms": 300})] * 5),
        session_pb2.Group(group=4, calls=[call("echo", {"kept": True})], answer=True, skip_results=True),
    )
    session.close_and_read()  # half-closed while group 3 still sleeps at the endpoint
    assert session.end is not None and session.end.code == 0, session.end
    first = session.responses[0]
    assert first.header.shard == 0 and not first.answers and not first.ended

    answers = session.answers()
    assert set(answers) == {1, 2, 4}
    assert answers[1].code == 0 and len(answers[1].dispatch_ids) == 3
    assert answers[2].code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "9bad" in answers[2].message
    ended = session.ended()
    assert set(ended) == {(1, 0), (1, 1), (1, 2), *((3, i) for i in range(5))}
    for index, dispatch_id in enumerate(answers[1].dispatch_ids):
        assert ended[(1, index)].result.dispatch_id == dispatch_id
        assert values.decode(ended[(1, index)].result.output) == {"n": index}  # type: ignore[arg-type]
    assert all(ended[(3, i)].status == status_pb2.STATUS_OK for i in range(5))
    (kept,) = answers[4].dispatch_ids
    assert values.decode(wait_result(address, kept).output) == {"kept": True}  # type: ignore[arg-type]


def test_a_wrong_key_ends_the_session_before_any_call(engine: Supervisor) -> None:
    session = SocketSession(engine.shard_addresses[0], authorization="Bearer nope")
    session.send(session_pb2.Group(group=1, calls=[call("echo", {})], answer=True))
    session.read_to_end()
    assert session.end is not None and session.end.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert not session.responses


def test_a_frame_larger_than_the_limit_ends_the_session_and_what_was_accepted_is_kept_for_wait(
    engine: Supervisor,
) -> None:
    address = engine.shard_addresses[0]
    session = SocketSession(address)
    session.send(session_pb2.Group(group=1, calls=[call("sleep", {"ms": 300})], answer=True))
    (dispatch_id,) = session.read_until_answered(1).dispatch_ids
    session.sock.sendall((MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))  # announced, never sent
    session.read_to_end()
    assert session.end is not None and session.end.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert f"larger than {MAX_MESSAGE_BYTES} bytes" in session.end.message
    assert wait_result(address, dispatch_id).HasField("output")  # the accepted call went on


def test_a_malformed_request_ends_the_session_with_invalid_argument(engine: Supervisor) -> None:
    session = SocketSession(engine.shard_addresses[0])
    session.sock.sendall(frame(b"\xff\xff\xff"))
    session.read_to_end()
    assert session.end is not None and session.end.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "malformed SessionRequest" in session.end.message


def test_a_cut_connection_keeps_the_results_it_did_not_carry_for_wait(engine: Supervisor) -> None:
    address = engine.shard_addresses[0]
    session = SocketSession(address)
    session.send(session_pb2.Group(group=1, calls=[call("sleep", {"ms": 400})] * 3, answer=True))
    answer = session.read_until_answered(1)
    session.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    session.sock.close()  # cut (a reset, not a half-close), before any result
    assert not session.ended()
    for dispatch_id in answer.dispatch_ids:
        assert wait_result(address, dispatch_id).HasField("output")


def test_a_connection_that_never_opens_its_session_is_closed(engine: Supervisor) -> None:
    session = SocketSession(engine.shard_addresses[0], authorization=None)
    started = time.monotonic()
    session.read_to_end()
    assert session.end is not None and session.end.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert OPEN_TIMEOUT_S - 1 <= time.monotonic() - started < OPEN_TIMEOUT_S + 10
