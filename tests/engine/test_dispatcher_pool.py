"""AsyncDispatcher over a real EndpointPool: attempts sent without a task (``send_run``) end, retry and
drain as the task path's do."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.core.scheduler import Outcome
from loadgen.core.stats import ShardStats
from loadgen.engine.dispatcher import AsyncDispatcher
from loadgen.pb import call_pb2
from loadgen.protocol import values
from loadgen.protocol.signing import Signer
from loadgen.transport import EndpointPool

pytestmark = pytest.mark.system


def call(function: str, params: dict[str, object]) -> call_pb2.Call:
    return call_pb2.Call(function=function, input=values.encode(params))  # type: ignore[arg-type]


def test_calls_sent_without_tasks_end_retry_and_drain(endpoint_url: str, signing_key: Ed25519PrivateKey) -> None:
    async def main() -> None:
        pool = EndpointPool(Signer(signing_key), connections=1, max_streams=8, timeout=10.0)
        stats = ShardStats("shard-0")
        dispatcher = AsyncDispatcher(pool, stats, endpoint_url=endpoint_url, max_attempts_in_flight=8)
        try:
            first = dispatcher.submit([call("echo", {"n": 0})])  # the pool's first request opens its route
            assert (await dispatcher.wait(first[0], 10)).outcome is Outcome.COMPLETED
            ids = dispatcher.submit([call("echo", {"n": i}) for i in range(20)])
            assert dispatcher.busy_streams == 7 and not dispatcher._tasks  # 8 less the reserve, sent without tasks
            for i, dispatch_id in enumerate(ids):
                outcome = await dispatcher.wait(dispatch_id, 10)
                assert outcome.outcome is Outcome.COMPLETED
                assert values.decode(outcome.result.output) == {"n": i}
            retried = dispatcher.submit([call("fail", {"status": "TEMPORARY_ERROR", "times": 1})])
            outcome = await dispatcher.wait(retried[0], 10)
            assert outcome.outcome is Outcome.COMPLETED and outcome.attempts == 2
            slow = dispatcher.submit([call("sleep", {"ms": 5000}) for _ in range(3)])
            assert dispatcher.busy_streams == 3 and not dispatcher._tasks
            assert await dispatcher.drain(0.05, "stopped") == 3
            assert dispatcher.busy_streams == 0
            for dispatch_id in slow:
                assert (await dispatcher.wait(dispatch_id, 1)).outcome is Outcome.CANCELLED
        finally:
            await pool.aclose()
        snapshot = stats.snapshot()
        assert snapshot.histogram("attempt", ("echo", "OK")).count == 21
        assert snapshot.histogram("attempt", ("fail", "TEMPORARY_ERROR")).count == 1
        assert snapshot.histogram("attempt", ("sleep", "CANCELLED")).count == 3
        assert snapshot.counters["completed"] == 22 and snapshot.counters["cancelled"] == 3

    asyncio.run(main())
