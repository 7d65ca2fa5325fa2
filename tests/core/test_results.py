"""The store of results kept for ``Wait``: bounded by count and by bytes, oldest evicted first."""

from __future__ import annotations

from loadgen.core.results import RESULT_OVERHEAD_BYTES, CallOutcome, ResultStore
from loadgen.core.scheduler import Outcome
from loadgen.pb import call_pb2


def outcome(size: int) -> CallOutcome:
    return CallOutcome(call_pb2.CallResult(dispatch_id="x" * size), 1, Outcome.COMPLETED)


def test_bytes_bound_the_store_oldest_first_and_the_newest_is_always_kept() -> None:
    each = outcome(10_000).result.ByteSize() + RESULT_OVERHEAD_BYTES
    store = ResultStore(retention=100, max_bytes=3 * each)
    assert [store.add(f"id{n}", outcome(10_000)) for n in range(3)] == [[], [], []]
    assert store.bytes == 3 * each and len(store) == 3
    assert store.add("id3", outcome(10_000)) == ["id0"]
    assert "id0" not in store and store.get("id1") is not None and store.bytes == 3 * each
    assert store.add("big", outcome(100_000)) == ["id1", "id2", "id3"]  # alone above the bound: kept
    assert len(store) == 1 and store.get("big") is not None and store.evicted == 4
    assert store.add("small", outcome(10)) == ["big"]
    assert store.bytes == outcome(10).result.ByteSize() + RESULT_OVERHEAD_BYTES


def test_the_count_bounds_the_store_too_and_a_given_size_is_trusted() -> None:
    store = ResultStore(retention=2)
    store.add("a", outcome(1), size=5)
    store.add("b", outcome(1), size=5)
    assert store.add("c", outcome(1), size=5) == ["a"]
    assert store.bytes == 2 * (5 + RESULT_OVERHEAD_BYTES)
