"""The Session stream of a shard (``loadgen.v1.Calls/Session``): real shards, real gRPC on 127.0.0.1."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engines import quick_engine

from loadgen.engine.supervisor import Supervisor
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, session_pb2, session_pb2_grpc, status_pb2
from loadgen.protocol import values

pytestmark = pytest.mark.system

API_KEY = "session-test-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)


@pytest.fixture(scope="module")
def engine(endpoint_url: str, signing_key: Ed25519PrivateKey) -> Iterator[Supervisor]:
    with Supervisor(quick_engine(endpoint_url, signing_key, API_KEY, shards=1)) as supervisor:
        yield supervisor


def call(function: str, params: dict[str, object]) -> call_pb2.Call:
    return call_pb2.Call(function=function, input=values.encode(params))  # type: ignore[arg-type]


class Session:
    """One Session stream: requests put on a queue (``None`` half-closes), responses read by a thread."""

    def __init__(self, address: str, metadata: tuple[tuple[str, str], ...] = AUTH) -> None:
        self.channel = grpc.insecure_channel(address.removeprefix("http://"))
        self.requests: queue.Queue[session_pb2.SessionRequest | None] = queue.Queue()
        self.responses: list[session_pb2.SessionResponse] = []
        self.error: grpc.RpcError | None = None
        self.stream = session_pb2_grpc.CallsStub(self.channel).Session(
            iter(self.requests.get, None), metadata=metadata, timeout=30
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for response in self.stream:
                self.responses.append(response)
        except grpc.RpcError as exc:
            self.error = exc

    def send(self, *groups: session_pb2.Group) -> None:
        self.requests.put(session_pb2.SessionRequest(groups=groups))

    def close_and_read(self, timeout: float = 20) -> None:
        """Half-close, then wait (bounded) for the shard to end the stream."""
        self.requests.put(None)
        self.reader.join(timeout)
        assert not self.reader.is_alive(), "the shard did not end the session"
        self.channel.close()

    def answers(self) -> dict[int, session_pb2.GroupAnswer]:
        return {answer.group: answer for response in self.responses for answer in response.answers}

    def ended(self) -> dict[tuple[int, int], session_pb2.Ended]:
        return {(e.group, e.index): e for response in self.responses for e in response.ended}


def test_each_group_is_accepted_or_rejected_alone_and_results_name_group_and_index(engine: Supervisor) -> None:
    session = Session(engine.shard_addresses[0])
    session.send(
        session_pb2.Group(group=1, calls=[call("echo", {"n": i}) for i in range(3)], answer=True),
        session_pb2.Group(group=2, calls=[call("echo", {}), call("9bad", {})], answer=True),
        session_pb2.Group(group=3, calls=[call("fail", {"status": "PERMANENT_ERROR", "times": 5})]),
        session_pb2.Group(group=4, calls=[call("echo", {"kept": True})], answer=True, skip_results=True),
    )
    session.close_and_read()
    assert session.error is None, session.error
    first = session.responses[0]
    assert first.header.shard == 0 and not first.answers and not first.ended

    answers = session.answers()
    assert set(answers) == {1, 2, 4}  # group 3 did not ask for its ids
    assert answers[1].code == 0 and len(answers[1].dispatch_ids) == 3
    rejected = answers[2]
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not rejected.dispatch_ids
    assert "9bad" in rejected.message

    ended = session.ended()
    assert set(ended) == {(1, 0), (1, 1), (1, 2), (3, 0)}  # nothing of the rejected group, nor of group 4
    for index, dispatch_id in enumerate(answers[1].dispatch_ids):
        result = ended[(1, index)]
        assert result.result.dispatch_id == dispatch_id and result.status == status_pb2.STATUS_OK
        assert result.outcome == session_pb2.OUTCOME_COMPLETED
        assert values.decode(result.result.output) == {"n": index}  # type: ignore[arg-type]
    failed = ended[(3, 0)]
    assert failed.status == status_pb2.STATUS_PERMANENT_ERROR and failed.outcome == session_pb2.OUTCOME_FAILED
    assert failed.result.error.type == "InjectedFailure" and "PERMANENT_ERROR" in failed.result.error.message

    # A group that asked to skip its results keeps them for Wait.
    with grpc.insecure_channel(engine.shard_addresses[0].removeprefix("http://")) as channel:
        (kept,) = answers[4].dispatch_ids
        result = dispatch_pb2_grpc.DispatchServiceStub(channel).Wait(
            dispatch_pb2.WaitRequest(dispatch_id=kept), metadata=AUTH, timeout=10
        )
    assert values.decode(result.output) == {"kept": True}  # type: ignore[arg-type]


def test_half_close_ends_the_stream_only_after_every_accepted_call_was_delivered(engine: Supervisor) -> None:
    session = Session(engine.shard_addresses[0])
    session.send(session_pb2.Group(group=7, calls=[call("sleep", {"ms": 300})] * 20))
    session.requests.put(None)  # half-closed at once, the 20 calls still running in the shard
    session.reader.join(20)
    assert not session.reader.is_alive() and session.error is None
    ended = session.ended()
    assert sorted(ended) == [(7, i) for i in range(20)]
    assert all(e.status == status_pb2.STATUS_OK for e in ended.values())
    assert len({e.result.dispatch_id for e in ended.values()}) == 20


def test_a_wrong_key_ends_the_stream_before_any_call(engine: Supervisor) -> None:
    session = Session(engine.shard_addresses[0], metadata=(("authorization", "Bearer nope"),))
    session.send(session_pb2.Group(group=1, calls=[call("echo", {})], answer=True))
    session.close_and_read()
    assert session.error is not None and session.error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not session.responses
