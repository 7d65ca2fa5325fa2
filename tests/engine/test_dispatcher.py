"""``AsyncDispatcher`` with a fake transport: no sockets, the scheduler driven on a real asyncio loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loadgen.core.counters import COMPLETED, retries
from loadgen.core.scheduler import Outcome, RetryPolicy
from loadgen.core.stats import ShardStats
from loadgen.engine.dispatcher import AsyncDispatcher
from loadgen.pb import call_pb2, function_pb2
from loadgen.pb import status_pb2 as st
from loadgen.protocol import values
from loadgen.transport.faults import AttemptError, Fault, fault

Answer = Callable[[function_pb2.RunRequest, int], bytes]


class FakeTransport:
    """Answers each POST with ``answer(request, n)`` (n: the attempts of this dispatch id so far), counting
    the posts in flight; ``gate``, when set, holds every post until it is set."""

    def __init__(self, answer: Answer, gate: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.gate = gate
        self.posts: list[tuple[str, function_pb2.RunRequest]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._attempts: dict[str, int] = {}

    def capacity(self, endpoint_url: str) -> int:
        return 1 << 20

    async def post_run(self, endpoint_url: str, body: bytes) -> bytes:
        request = function_pb2.RunRequest.FromString(body)
        self.posts.append((endpoint_url, request))
        n = self._attempts[request.dispatch_id] = self._attempts.get(request.dispatch_id, 0) + 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.answer(request, n)
        finally:
            self.in_flight -= 1


def echo(request: function_pb2.RunRequest, n: int) -> bytes:
    response = function_pb2.RunResponse(status=st.STATUS_OK)
    response.exit.result.output.CopyFrom(request.input)
    return response.SerializeToString()


def calls(n: int = 1) -> list[call_pb2.Call]:
    return [call_pb2.Call(function="echo", input=values.encode({"i": i})) for i in range(n)]


def dispatcher(transport: FakeTransport, **options: object) -> AsyncDispatcher:
    return AsyncDispatcher(
        transport,
        ShardStats("shard-test"),
        endpoint_url="http://endpoint.test",
        retry_policy=RetryPolicy(base_delay=0.001, max_delay=0.002),
        **options,  # type: ignore[arg-type]
    )


def test_a_call_completes_with_the_endpoints_output_and_is_counted() -> None:
    async def main() -> None:
        transport = FakeTransport(echo)
        engine = dispatcher(transport)
        ended: list[Outcome] = []
        engine.on_root_finished = ended.append
        (dispatch_id,) = engine.submit(calls())
        outcome = await engine.wait(dispatch_id, timeout=5)
        assert outcome.outcome is Outcome.COMPLETED and outcome.status == st.STATUS_OK
        assert values.decode(outcome.result.output) == {"i": 0.0}
        assert ended == [Outcome.COMPLETED]
        assert transport.posts[0][0] == "http://endpoint.test"
        assert transport.posts[0][1].dispatch_id == dispatch_id
        snapshot = engine.stats.snapshot()
        assert snapshot.counters[COMPLETED] == 1 and snapshot.accounting().balanced
        assert snapshot.keys("attempt") == [("echo", "OK")]

    asyncio.run(main())


def test_a_transport_fault_is_retried_with_its_status_and_message() -> None:
    def flaky(request: function_pb2.RunRequest, n: int) -> bytes:
        if n == 1:
            raise fault(Fault.CONNECTION, "connection reset by the endpoint")
        return echo(request, n)

    async def main() -> None:
        engine = dispatcher(FakeTransport(flaky))
        (dispatch_id,) = engine.submit(calls())
        outcome = await engine.wait(dispatch_id, timeout=5)
        assert outcome.outcome is Outcome.COMPLETED and outcome.attempts == 2
        snapshot = engine.stats.snapshot()
        assert snapshot.counters[retries("TCP_ERROR")] == 1
        (key, tally), *_ = snapshot.failures.items()
        assert key == ("attempt", "echo", "TCP_ERROR") and tally.sample == "connection reset by the endpoint"

    asyncio.run(main())


def test_an_undecodable_body_fails_the_call_as_invalid_response() -> None:
    async def main() -> None:
        engine = dispatcher(FakeTransport(lambda request, n: b"\xff\xff not a RunResponse"))
        (dispatch_id,) = engine.submit(calls())
        outcome = await engine.wait(dispatch_id, timeout=5)
        assert outcome.outcome is Outcome.FAILED and outcome.status == st.STATUS_INVALID_RESPONSE
        assert outcome.attempts == 1  # INVALID_RESPONSE is not retried
        assert "undecodable RunResponse" in outcome.result.error.message

    asyncio.run(main())


def test_attempts_beyond_the_limit_wait_as_records_and_all_run_leaving_a_reserve_to_other_functions() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        transport = FakeTransport(echo, gate)
        engine = dispatcher(transport, max_attempts_in_flight=3)
        ids = engine.submit(calls(5))
        await asyncio.sleep(0.01)
        assert transport.in_flight == 2 and engine.queued_attempts == 3  # one stream kept for other functions
        other = engine.submit([call_pb2.Call(function="other", input=values.encode(1))])
        await asyncio.sleep(0.01)
        assert transport.in_flight == 3 and engine.queued_attempts == 3
        gate.set()
        outcomes = [await engine.wait(dispatch_id, timeout=5) for dispatch_id in ids + other]
        assert {o.outcome for o in outcomes} == {Outcome.COMPLETED}
        assert transport.most_in_flight == 3 and engine.queued_attempts == 0
        queued = engine.stats.snapshot().histogram("queue", ("echo", "attempt"))
        assert queued.count == 5 and queued.max > 0  # three of them waited for a stream

    asyncio.run(main())


def test_drain_cancels_the_calls_still_running_says_why_and_reports_how_many() -> None:
    async def main() -> None:
        engine = dispatcher(FakeTransport(echo, asyncio.Event()))  # the endpoint never answers
        (dispatch_id,) = engine.submit(calls())
        assert engine.in_flight == 1
        waiting = asyncio.ensure_future(engine.wait(dispatch_id, timeout=5))  # a Wait already pending
        await asyncio.sleep(0.01)
        assert await engine.drain(0.05, "the run ended before the call finished") == 1
        for outcome in (await waiting, await engine.wait(dispatch_id, timeout=1)):
            assert outcome.outcome is Outcome.CANCELLED and outcome.status == st.STATUS_TIMEOUT
            error = outcome.result.error
            assert (error.type, error.message) == ("CANCELLED", "the run ended before the call finished")
        assert engine.in_flight == 0
        await asyncio.sleep(0)  # the cut-off attempt's task ends
        snapshot = engine.stats.snapshot()
        assert snapshot.accounting().cancelled == 1 and snapshot.accounting().expired == 0
        assert snapshot.histogram("attempt", ("echo", "CANCELLED")).count == 1  # the attempt has an end too
        assert snapshot.histogram("e2e", ("echo", "cancelled")).count == 1
        ((kind, function, status), tally), = snapshot.failures.items()
        assert (kind, function, status, tally.sample) == (
            "cancelled", "echo", "TIMEOUT", "CANCELLED: the run ended before the call finished"
        )

    asyncio.run(main())


def test_a_known_status_error_is_an_attempt_error_not_a_crash() -> None:
    def refused(request: function_pb2.RunRequest, n: int) -> bytes:
        raise AttemptError(st.STATUS_PERMISSION_DENIED, "HTTP 403: invalid signature")

    async def main() -> None:
        engine = dispatcher(FakeTransport(refused))
        (dispatch_id,) = engine.submit(calls())
        outcome = await engine.wait(dispatch_id, timeout=5)
        assert outcome.outcome is Outcome.FAILED and outcome.status == st.STATUS_PERMISSION_DENIED
        assert outcome.result.error.message == "HTTP 403: invalid signature"

    asyncio.run(main())
