"""Duplicate delivery in ``AsyncDispatcher`` (fake transport, real asyncio loop): every request is sent
twice, the copies' answers never end a call twice, and they are counted."""

from __future__ import annotations

import asyncio

from loadgen.core.chaos import Chaos
from loadgen.core.counters import COMPLETED, chaos
from loadgen.core.scheduler import Outcome
from loadgen.pb import function_pb2
from loadgen.pb import status_pb2 as st
from tests.engine.test_dispatcher import FakeTransport, calls, dispatcher, echo


def test_every_request_delivered_twice_ends_each_call_once_and_counts_the_copies() -> None:
    def second_fails(request: function_pb2.RunRequest, n: int) -> bytes:
        if n > 1:  # an endpoint that is not idempotent: the second delivery of a request fails
            return function_pb2.RunResponse(status=st.STATUS_PERMANENT_ERROR).SerializeToString()
        return echo(request, n)

    async def main() -> None:
        transport = FakeTransport(second_fails)
        engine = dispatcher(transport, chaos=Chaos(duplicate_rate=1.0))
        ended: list[Outcome] = []
        engine.on_root_finished = ended.append
        ids = engine.submit(calls(20))
        outcomes = [await engine.wait(dispatch_id, timeout=5) for dispatch_id in ids]
        deadline = asyncio.get_running_loop().time() + 5
        while engine.busy_streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.001)  # the copies' answers
        assert ended == [Outcome.COMPLETED] * 20 and {o.outcome for o in outcomes} == {Outcome.COMPLETED}
        assert len(transport.posts) == 40
        snapshot = engine.stats.snapshot()
        assert snapshot.counters[COMPLETED] == 20 and snapshot.accounting().balanced
        assert snapshot.counters[chaos("duplicated")] == 20
        assert snapshot.counters[chaos("duplicate_failed")] == 20
        assert snapshot.histogram("attempt", ("echo", "OK")).count == 20  # copies are no attempts of the call
        (key, tally), *_ = snapshot.failures.items()
        assert key == ("duplicate", "echo", "PERMANENT_ERROR") and tally.count == 20

    asyncio.run(main())
