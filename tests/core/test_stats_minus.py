"""``Snapshot.minus``: the statistics of an interval from two cumulative snapshots, exactly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.core import stats
from loadgen.core.stats import HIGHEST_US, HistogramSnapshot, ShardStats, Snapshot, bucket_range, counts_index, hdr

GRID = (0.0, 1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0)


@pytest.fixture(params=["fast", "public"])
def codec_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with hdrh's C codec (the default) and with hdrh's public API only."""
    if request.param == "public":
        monkeypatch.setattr(hdr, "_FAST", False)
    return str(request.param)


def record(target: ShardStats, kind: int, function: str, us: int) -> None:
    seconds = us / 1e6
    if kind == 0:
        target.record_rpc("Dispatch", us % 7 != 0, seconds)
    elif kind == 1:
        target.record_attempt(function, "OK" if us % 5 else "TEMPORARY_ERROR", seconds)
        if not us % 5:
            target.count_retry("TEMPORARY_ERROR")
    else:
        target.count_accepted()
        target.record_call(function, "completed" if us % 3 else "failed", "TIMEOUT", seconds)


def within_resolution(got: float, want: float) -> bool:
    """Equal up to one HDR bucket (exact below 2,048 µs, 0.1 % above)."""
    low, high = bucket_range(counts_index(int(want)))
    return abs(got - want) <= high - low


def assert_same(diff: HistogramSnapshot, want: HistogramSnapshot, exact: bool) -> None:
    assert diff.counts() == want.counts()
    assert (diff.count, diff.sum) == (want.count, want.sum)
    if exact:
        assert diff == want
        assert (diff.min, diff.max) == (want.min, want.max)
        assert diff.percentiles(GRID) == want.percentiles(GRID)
    else:
        assert within_resolution(diff.min, want.min) and within_resolution(diff.max, want.max)
        for q, value in want.percentiles(GRID).items():
            assert within_resolution(diff.percentiles([q])[q], value), q


def test_merge_then_minus_gives_back_the_other_part(codec_path: str) -> None:
    rnd = random.Random(3)
    a, b = ShardStats("a"), ShardStats("b")
    for shard in (a, b):
        for _ in range(3000):
            record(shard, rnd.randrange(3), rnd.choice(["echo", "fanout"]), rnd.randrange(1, 2048))
    b.set_gauge("in_flight", 4)
    sa, sb = a.snapshot(), b.snapshot()
    diff = sa.merge(sb).minus(sa)
    assert diff.histograms.keys() == sb.histograms.keys()
    for key, hist in sb.histograms.items():
        assert_same(diff.histograms[key], hist, exact=True)  # all values < 2,048 µs: 1 µs buckets
    assert diff.counters == {**dict.fromkeys(sa.counters, 0), **sb.counters}
    assert diff.per_shard["b"].counters == sb.per_shard["b"].counters
    assert all(value == 0 for value in diff.per_shard["a"].counters.values())
    assert diff.gauges["in_flight"] == 4  # gauges are current values: the later snapshot's


def test_merge_then_minus_with_wide_values(codec_path: str) -> None:
    rnd = random.Random(5)
    a, b = ShardStats("a"), ShardStats("b")
    for shard in (a, b):
        for _ in range(2000):
            record(shard, rnd.randrange(3), "echo", min(int(rnd.lognormvariate(9, 2.5)), HIGHEST_US))
    sa, sb = a.snapshot(), b.snapshot()
    diff = sa.merge(sb).minus(sa)
    for key, hist in sb.histograms.items():
        assert_same(diff.histograms[key], hist, exact=False)


events = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["echo", "sleep"]), st.integers(0, HIGHEST_US)), max_size=120
)


@settings(max_examples=80, deadline=None)
@given(events, events)
def test_minus_of_cumulative_snapshots_is_the_interval(
    first: list[tuple[int, str, int]], second: list[tuple[int, str, int]]
) -> None:
    cumulative, interval = ShardStats("s"), ShardStats("s")
    for kind, function, us in first:
        record(cumulative, kind, function, us)
    earlier = cumulative.snapshot()
    for kind, function, us in second:
        record(cumulative, kind, function, us)
        record(interval, kind, function, us)
    later = Snapshot.from_bytes(cumulative.snapshot().to_bytes())  # through the wire form too
    want = interval.snapshot()
    diff = later.minus(earlier)
    assert diff.histograms.keys() == want.histograms.keys()
    for key, hist in want.histograms.items():
        assert_same(diff.histograms[key], hist, exact=max(us for _, _, us in second) < 2048)
    assert {k: v for k, v in diff.counters.items() if v} == {k: v for k, v in want.counters.items() if v}
    assert later.minus(later).histograms == {}
    assert not any(later.minus(later).counters.values())


def test_extremes_recorded_in_the_interval_are_exact() -> None:
    s = ShardStats("s")
    s.record_attempt("f", "OK", 0.05)
    earlier = s.snapshot()
    for seconds in (0.0123456, 0.0300001, 0.0999999):
        s.record_attempt("f", "OK", seconds)
    diff = s.snapshot().minus(earlier).histogram("attempt", ("f", "OK"))
    assert (diff.count, diff.min, diff.max) == (3, 12346, 100000)  # new min and max: exact


def test_minus_refuses_what_is_not_an_earlier_snapshot() -> None:
    s = ShardStats("s")
    s.count_accepted()
    s.record_call("echo", "completed", "OK", 0.001)
    earlier = s.snapshot()
    s.count_accepted()
    s.record_call("echo", "completed", "OK", 0.002)
    later = s.snapshot()
    with pytest.raises(ValueError, match="not an earlier"):
        earlier.minus(later)
    with pytest.raises(ValueError, match="earlier snapshot only"):
        Snapshot.empty().minus(earlier)
    other = ShardStats("s")
    other.count_accepted(5)
    other.record_call("sleep", "completed", "OK", 0.001)
    with pytest.raises(ValueError, match="earlier snapshot only"):
        other.snapshot().minus(earlier)  # the echo histogram vanished
    shifted = ShardStats("s")
    for seconds in (0.001, 0.001):  # same count as `later`, other buckets
        shifted.count_accepted()
        shifted.record_call("echo", "completed", "OK", seconds)
    with pytest.raises(ValueError, match="not an earlier"):
        shifted.snapshot().minus(later)


def test_a_shard_restarted_in_between_is_one_shard() -> None:
    """After a restart, the merged snapshot keeps the dead incarnation as ``shard-0#1``."""
    old = ShardStats("shard-0")
    old.count_accepted(10)
    for _ in range(6):
        old.record_call("echo", "completed", "OK", 0.001)
    old.set_gauge("in_flight", 4)
    earlier = old.snapshot()  # 10 accepted, 6 completed, 4 in flight
    for _ in range(2):
        old.record_call("echo", "completed", "OK", 0.001)
    retired = old.snapshot().retired(accepted=12)  # 2 more completed, 2 more accepted, then it died: 4 lost
    new = ShardStats("shard-0")
    new.count_accepted(5)
    for _ in range(5):
        new.record_call("echo", "completed", "OK", 0.002)
    later = stats.merge_snapshots([retired, new.snapshot()])
    assert later.shards == ["shard-0", "shard-0#1"]
    diff = later.minus(earlier)
    assert diff.shards == ["shard-0"] and diff.per_shard["shard-0"].crashed
    counters = diff.per_shard["shard-0"].counters
    assert (counters["accepted"], counters["completed"], counters["lost"]) == (7, 7, 4)
    assert diff.histogram("e2e", ("echo", "completed")).count == 7
