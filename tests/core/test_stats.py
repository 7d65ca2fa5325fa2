"""Statistics: exact merges, µs resolution, serialization and accounting."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.core import stats
from loadgen.core.stats import (
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    Family,
    HistogramSnapshot,
    ShardStats,
    Snapshot,
    counts_index,
    hdr,
    merge_snapshots,
)

GRID = (0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0)
FUNCTIONS = ("echo", "sleep", "fan_out")
STATUSES = ("OK", "TEMPORARY_ERROR", "TCP_ERROR")
OUTCOME_OF = {"OK": "completed", "TEMPORARY_ERROR": "failed", "TCP_ERROR": "expired"}


@pytest.fixture(params=["fast", "public"])
def codec_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with hdrh's C codec (the default) and with hdrh's public API only."""
    if request.param == "public":
        monkeypatch.setattr(hdr, "_FAST", False)
    return str(request.param)


def reference(values_us: list[int]) -> Any:
    hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for value in values_us:
        hist.record_value(value)
    return hist


def as_us(seconds: float) -> int:
    return min(max(int(seconds * 1_000_000 + 0.5), 0), HIGHEST_US)


# Events: (shard, kind, function, label, seconds).
events = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(["rpc", "attempt", "call"]),
        st.sampled_from(FUNCTIONS),
        st.sampled_from(STATUSES),
        st.one_of(
            st.integers(0, HIGHEST_US).map(lambda us: us / 1_000_000),
            st.floats(0.0, 0.005),
            st.floats(0.0, 5_000.0),
        ),
    ),
    max_size=300,
)


def record(target: ShardStats, kind: str, function: str, label: str, seconds: float) -> None:
    if kind == "rpc":
        target.record_rpc("Dispatch", label == "OK", seconds)
    elif kind == "attempt":
        target.record_attempt(function, label, seconds)
        if label != "OK":
            target.count_retry(label)
    else:
        target.count_accepted()
        target.record_call(function, OUTCOME_OF[label], label, seconds)


def assert_same_histograms(merged: Snapshot, single: Snapshot) -> None:
    assert merged.histograms.keys() == single.histograms.keys()
    for key, expected in single.histograms.items():
        got = merged.histograms[key]
        assert got == expected
        assert got.counts() == expected.counts()
        assert (got.count, got.sum, got.min, got.max) == (expected.count, expected.sum, expected.min, expected.max)
        assert got.percentiles(GRID) == expected.percentiles(GRID)


@settings(max_examples=60, deadline=None)
@given(events)
def test_merging_shards_equals_recording_into_one(batch: list[tuple[int, str, str, str, float]]) -> None:
    shards = [ShardStats(f"shard-{i}") for i in range(4)]
    single = ShardStats("single")
    for shard, kind, function, label, seconds in batch:
        record(shards[shard], kind, function, label, seconds)
        record(single, kind, function, label, seconds)

    merged = merge_snapshots(s.snapshot() for s in shards)
    pairwise = Snapshot.empty()
    for s in shards:
        pairwise = pairwise.merge(s.snapshot())
    expected = single.snapshot()

    for candidate in (merged, pairwise, Snapshot.from_bytes(merged.to_bytes())):
        assert_same_histograms(candidate, expected)
        assert candidate.counters == expected.counters
        assert candidate.shards == [f"shard-{i}" for i in range(4)]
    # ... and recording into one equals plain hdrh, value by value.
    pairs: tuple[tuple[Family, str], ...] = (("attempt", "attempt"), ("e2e", "call"))
    for family, kind in pairs:
        for function in FUNCTIONS:
            for label in STATUSES:
                values = [as_us(sec) for _, k, f, lab, sec in batch if (k, f, lab) == (kind, function, label)]
                if not values:
                    continue
                b = label if family == "attempt" else OUTCOME_OF[label]
                hist = expected.histogram(family, (function, b))
                ref = reference(values)
                assert hist.count == ref.get_total_count() == len(values)
                assert hist.sum == sum(values)
                assert (hist.min, hist.max) == (min(values), max(values))
                for q in GRID:
                    want = min(max(ref.get_value_at_percentile(q), min(values)), max(values))
                    assert hist.percentiles([q])[q] == want


@settings(max_examples=200, deadline=None)
@given(st.integers(0, HIGHEST_US))
def test_inlined_bucket_index_is_hdrh_index(us: int) -> None:
    proto = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    assert counts_index(us) == proto.get_counts_array_index(us)


def test_bucket_index_edges() -> None:
    proto = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    edges = [0, 1, 2047, 2048, 2049, 4095, 4096, 10**6, HIGHEST_US - 1, HIGHEST_US]
    edges += [2**k + d for k in range(11, 32) for d in (-1, 0, 1)]
    for us in edges:
        assert counts_index(us) == proto.get_counts_array_index(us), us
    assert counts_index(HIGHEST_US) < proto.counts_len


def test_bucket_ranges_are_hdrh_equivalent_values() -> None:
    proto = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for index in range(proto.counts_len):
        low = proto.get_value_from_index(index)
        assert stats.bucket_range(index) == (low, proto.get_highest_equivalent_value(low)), index
        assert counts_index(low) == index


def test_percentiles_match_hdrh_and_histogram_export() -> None:
    rnd = random.Random(11)
    values = [int(rnd.paretovariate(1.2) * 300) for _ in range(5_000)]
    s = ShardStats("s")
    for us in values:
        s.record_attempt("f", "OK", us / 1e6)
    hist = s.snapshot().histogram("attempt", ("f", "OK"))
    ref = reference(values)
    qs = [0.1, 1, 5, 33.3, 50, 66.6, 90, 95, 99, 99.5, 99.9, 99.99, 100]
    expected = ref.get_percentile_to_value_dict(qs)
    got = hist.percentiles(qs)
    assert got == {float(q): float(min(expected[q], max(values))) for q in qs}
    exported = hist.histogram()
    assert exported.equals(ref)
    assert [exported.get_count_at_index(i) for i in range(ref.counts_len)] == list(ref.counts)
    assert exported.get_max_value() == ref.get_max_value()


def test_merge_exact_many_shards_and_codec_paths(codec_path: str) -> None:
    rnd = random.Random(7)
    shards = [ShardStats(f"s{i}") for i in range(5)]
    single = ShardStats("single")
    values: list[int] = []
    for _ in range(20_000):
        seconds = rnd.lognormvariate(-7, 2.0)
        function = rnd.choice(FUNCTIONS)
        rnd.choice(shards).record_attempt(function, "OK", seconds)
        single.record_attempt(function, "OK", seconds)
        if function == "echo":
            values.append(as_us(seconds))
    merged = merge_snapshots(Snapshot.from_bytes(s.snapshot().to_bytes()) for s in shards)
    expected = single.snapshot()
    assert_same_histograms(merged, expected)
    echo = merged.histogram("attempt", ("echo", "OK"))
    assert echo.counts() == {i: c for i, c in enumerate(reference(values).counts) if c}
    assert merged.counters["attempts"] == 20_000


def test_our_encoding_is_standard_hdr_both_ways(codec_path: str) -> None:
    stats_ = ShardStats("s")
    for us in (1, 250, 260, 999, 5_000, 123_456, 7_000_000):
        stats_.record_attempt("echo", "OK", us / 1e6)
    ours = stats_.snapshot().histogram("attempt", ("echo", "OK"))
    assert ours.hdr.startswith("HISTF")
    decoded = HdrHistogram.decode(ours.hdr.encode())
    assert decoded.get_total_count() == 7
    assert {i: c for i, c in enumerate(decoded.counts) if c} == ours.counts()

    theirs = reference([1, 250, 260, 999, 5_000, 123_456, 7_000_000])
    standard = HistogramSnapshot(7, 0, 1, 7_000_000, theirs.encode().decode())
    assert standard.counts() == ours.counts()
    key: stats.HistKey = ("attempt", "echo", "OK")
    merged = merge_snapshots(
        [
            Snapshot({"a": stats.ShardSummary(0, {}, {})}, {key: standard}),
            Snapshot({"b": stats.ShardSummary(0, {}, {})}, {key: ours}),
        ]
    )
    assert merged.histogram("attempt", ("echo", "OK")).count == 14


def test_fast_and_public_encodings_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(3)
    seconds = [rnd.expovariate(1000) for _ in range(2_000)]
    snapshots = []
    for fast in (True, False):
        monkeypatch.setattr(hdr, "_FAST", fast)
        s = ShardStats("fast" if fast else "public")
        for value in seconds:
            s.record_rpc("Dispatch", True, value)
        snapshots.append(s.snapshot())
    fast_hist, public_hist = (snap.histogram("rpc", ("Dispatch", "ok")) for snap in snapshots)
    assert fast_hist.hdr != public_hist.hdr  # zlib level 0 vs 6
    assert fast_hist == public_hist
    merged = snapshots[0].merge(snapshots[1])
    assert merged.histogram("rpc", ("Dispatch", "ok")).count == 4_000


def test_sub_millisecond_values_keep_microsecond_resolution() -> None:
    s = ShardStats("s")
    for _ in range(100):
        s.record_rpc("Dispatch", True, 250e-6)
        s.record_rpc("Wait", True, 260e-6)
    s.record_rpc("Dispatch", True, 0.000_001)
    snap = s.snapshot()
    assert snap.percentiles("rpc", ("Dispatch", "ok"))[50.0] == 250.0
    assert snap.percentiles("rpc", ("Wait", "ok"))[50.0] == 260.0
    assert snap.percentiles("rpc", ("Dispatch", "ok"), [0])[0.0] == 1.0
    assert "0.250" in snap.table() and "0.260" in snap.table()
    for us in range(0, 2048):
        assert counts_index(us) == us  # one bucket per µs below 2,048 µs


def test_values_are_rounded_and_clamped() -> None:
    s = ShardStats("s")
    s.record_attempt("f", "OK", 0.000_000_4)  # rounds to 0 µs
    s.record_attempt("f", "OK", 0.000_000_6)  # rounds to 1 µs
    s.record_attempt("f", "OK", -1.0)  # clock went backwards: 0
    s.record_attempt("f", "OK", 10 * 3600.0)  # beyond one hour: clamped
    hist = s.snapshot().histogram("attempt", ("f", "OK"))
    assert (hist.count, hist.min, hist.max, hist.sum) == (4, 0, HIGHEST_US, 1 + HIGHEST_US)
    assert s.snapshot().counters["clamped"] == 2
    assert hist.percentiles([100])[100.0] == HIGHEST_US


def test_a_zero_is_recorded_as_a_value_that_rounds_to_zero() -> None:
    fast, slow = ShardStats("s"), ShardStats("s")
    for seconds in (0.0, 0.25, 0.0, 0.000_003):
        fast.record("queue", "f", "attempt", seconds)
        slow.record("queue", "f", "attempt", seconds or 0.000_000_1)  # 0.1 µs: rounded to 0 the long way
    assert fast.snapshot().to_bytes() == slow.snapshot().to_bytes()
    only_zeros = ShardStats("s")
    only_zeros.record("queue", "f", "attempt", 0.0)
    hist = only_zeros.snapshot().histogram("queue", ("f", "attempt"))
    assert (hist.count, hist.min, hist.max, hist.sum) == (1, 0, 0, 0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 5.0),
            st.one_of(
                st.none(),
                st.tuples(
                    st.floats(-1.0, 2.0),
                    st.floats(0.0, 2.0),
                    st.floats(0.0, 2.0),
                    st.floats(0.0, 2.0),
                    st.integers(0, 5),
                    st.integers(0, 50),
                ),
            ),
        ),
        max_size=30,
    )
)
def test_the_bound_call_recorder_records_a_breakdown_as_record_breakdown_does(
    ends: list[tuple[float, tuple[float, float, float, float, int, int] | None]],
) -> None:
    bound, separate = ShardStats("s"), ShardStats("s")
    record = bound.call_recorder("f", "completed", "OK")
    for seconds, breakdown in ends:
        record(seconds, breakdown)
        separate.record_call("f", "completed", "OK", seconds)
        if breakdown is not None:
            separate.record_breakdown("f", *breakdown)
    assert bound.snapshot().to_bytes() == separate.snapshot().to_bytes()


def test_snapshot_is_an_immutable_copy_and_reuses_unchanged_histograms() -> None:
    s = ShardStats("s")
    s.record_attempt("f", "OK", 0.001)
    s.record_attempt("g", "OK", 0.001)
    first = s.snapshot()
    s.record_attempt("f", "OK", 0.002)
    s.count_accepted(3)
    s.set_gauge(stats.GAUGE_IN_FLIGHT, 3)
    second = s.snapshot()
    assert first.histogram("attempt", ("f", "OK")).count == 1
    assert first.counters["accepted"] == 0 and first.gauges["in_flight"] == 0
    assert second.histogram("attempt", ("f", "OK")).count == 2
    assert second.histograms[("attempt", "g", "OK")] is first.histograms[("attempt", "g", "OK")]
    assert (first.per_shard["s"].seq, second.per_shard["s"].seq) == (0, 1)


def test_serialization_round_trip() -> None:
    a, b = ShardStats("a"), ShardStats("b")
    a.record_rpc("Dispatch", True, 0.0003)
    a.record_rpc("Dispatch", False, 0.02)
    b.record_attempt("echo", "TEMPORARY_ERROR", 0.004)
    b.count_retry("TEMPORARY_ERROR")
    b.count_accepted(2)
    b.record_call("echo", "failed", "PERMANENT_ERROR", 1.5)
    b.set_gauge("in_flight", 1)
    b.set_gauge("open_connections", 8)
    snap = a.snapshot().merge(b.snapshot()).mark_lost("a")
    data = snap.to_bytes()
    back = Snapshot.from_bytes(data)
    assert back == snap
    assert back.to_bytes() == data
    assert back.per_shard["a"].crashed and not back.per_shard["b"].crashed
    assert back.percentiles("e2e", ("echo", "failed")) == snap.percentiles("e2e", ("echo", "failed"))
    assert back.breakdown("failed") == {"PERMANENT_ERROR": 1}
    assert back.breakdown("retries") == {"TEMPORARY_ERROR": 1}
    assert Snapshot.from_bytes(Snapshot.empty().to_bytes()) == Snapshot.empty()
    assert orjson.loads(data)["histograms"]["rpc"]["Dispatch"]["error"]["max"] == 20_000


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="other/1"),
        lambda d: d.update(hdr=[1, 1000, 2]),
        lambda d: d["shards"]["a"].update(seq="1"),
        lambda d: d["shards"]["a"]["counters"].update(accepted=1.5),
        lambda d: d["histograms"].update(bogus={}),
        lambda d: d["histograms"]["rpc"]["Dispatch"]["ok"].pop("hdr"),
        lambda d: d["histograms"]["rpc"]["Dispatch"]["ok"].update(count=-1),
    ],
)
def test_from_bytes_rejects_malformed(mutate: Any) -> None:
    a = ShardStats("a")
    a.record_rpc("Dispatch", True, 0.001)
    data = orjson.loads(a.snapshot().to_bytes())
    mutate(data)
    with pytest.raises(ValueError):
        Snapshot.from_bytes(orjson.dumps(data))
    with pytest.raises(ValueError):
        Snapshot.from_bytes(b"not json")


@pytest.mark.usefixtures("codec_path")
def test_corrupt_histogram_is_detected_when_decoded() -> None:
    a, b = ShardStats("a"), ShardStats("b")
    a.record_rpc("Dispatch", True, 0.001)
    b.record_rpc("Dispatch", True, 0.002)
    b.record_rpc("Dispatch", True, 0.003)
    data = orjson.loads(a.snapshot().to_bytes())
    data["histograms"]["rpc"]["Dispatch"]["ok"]["count"] = 2  # metadata disagrees with the counts
    lying = Snapshot.from_bytes(orjson.dumps(data))
    with pytest.raises(ValueError, match="holds 1 values"):
        lying.merge(b.snapshot())
    data["histograms"]["rpc"]["Dispatch"]["ok"]["hdr"] = "HISTFAAAAnotvalid"
    with pytest.raises(ValueError):
        Snapshot.from_bytes(orjson.dumps(data)).percentiles("rpc", ("Dispatch", "ok"))


@pytest.mark.usefixtures("codec_path")
def test_wrong_min_or_max_is_detected() -> None:
    a = ShardStats("a")
    a.record_rpc("Dispatch", True, 0.001)
    a.record_rpc("Dispatch", True, 0.009)
    for field_, value in (("min", 5_000), ("max", 2_000)):
        data = orjson.loads(a.snapshot().to_bytes())
        data["histograms"]["rpc"]["Dispatch"]["ok"][field_] = value
        with pytest.raises(ValueError, match="do not match"):
            Snapshot.from_bytes(orjson.dumps(data)).percentiles("rpc", ("Dispatch", "ok"))


def test_merge_reuses_already_decoded_counts(codec_path: str) -> None:
    shards = [ShardStats(f"s{i}") for i in range(3)]
    single = ShardStats("single")
    for i in range(3_000):
        shards[i % 3].record_attempt("f", "OK", (i % 997) / 1e5)
        single.record_attempt("f", "OK", (i % 997) / 1e5)
    snaps = [Snapshot.from_bytes(s.snapshot().to_bytes()) for s in shards]
    snaps[1].percentiles("attempt", ("f", "OK"))  # decodes and caches this one's counts
    merged = merge_snapshots(snaps)
    assert_same_histograms(merged, single.snapshot())
    again = merged.merge(ShardStats("late").snapshot())
    assert again.histogram("attempt", ("f", "OK")) == single.snapshot().histogram("attempt", ("f", "OK"))


def test_benchmark_runs(tmp_path: Any) -> None:
    from loadgen.bench import stats as bench

    out = tmp_path / "stats.json"
    argv = ["--events", "500", "--keys", "3", "--values", "50", "--shards", "2", "--inner", "1", "--repeat", "1"]
    assert bench.main([*argv, "--output", str(out)]) == 0
    report = orjson.loads(out.read_bytes())
    assert report["hot_path_ratio_vs_record_value"]["HdrHistogram.record_value"] == {"best": 1.0, "median": 1.0}
    assert hdr._FAST  # the benchmark restores the fast codec


def test_accounting_balanced_and_unbalanced() -> None:
    s = ShardStats("s")
    s.count_accepted(6)
    s.record_call("f", "completed", "OK", 0.01)
    s.record_call("f", "failed", "PERMANENT_ERROR", 0.01)
    s.record_call("f", "failed", "TIMEOUT", 0.01)
    s.record_call("f", "expired", "TIMEOUT", 0.01)
    s.set_gauge("in_flight", 1)
    s.count_lost()
    acc = s.snapshot().accounting()
    assert (acc.accepted, acc.completed, acc.failed, acc.expired, acc.in_flight, acc.lost) == (6, 1, 2, 1, 1, 1)
    assert acc.balanced and "balanced" in str(acc)

    s.count_accepted(2)  # two calls the shard forgot about
    unbalanced = s.snapshot()
    assert not unbalanced.accounting().balanced
    assert unbalanced.accounting().difference == 2
    assert "UNBALANCED by +2" in unbalanced.table()

    other = ShardStats("t")
    other.count_accepted(3)
    other.set_gauge("in_flight", 3)
    merged = unbalanced.merge(other.snapshot())
    assert merged.accounting().difference == 2
    assert merged.accounting("t").balanced and not merged.accounting("s").balanced


def test_mark_lost_keeps_a_crashed_shard_balanced() -> None:
    s = ShardStats("s")
    s.count_accepted(5)
    s.record_call("f", "completed", "OK", 0.01)
    s.set_gauge("in_flight", 4)
    s.set_gauge("open_connections", 2)
    lost = s.snapshot().mark_lost("s")
    acc = lost.accounting()
    assert (acc.in_flight, acc.lost, acc.balanced) == (0, 4, True)
    assert lost.gauges == {"in_flight": 0, "open_connections": 0}
    assert "s (crashed)" in lost.table()


def test_retired_incarnations_merge_with_their_successor() -> None:
    first = ShardStats("shard-1")
    first.count_accepted(10)
    first.record_call("f", "completed", "OK", 0.01)
    first.record_call("f", "failed", "PERMANENT_ERROR", 0.01)
    first.set_gauge("in_flight", 8)
    last = first.snapshot()
    retired = last.retired(accepted=12)  # a ledger saw 2 more accepted after the last snapshot
    assert retired.counters["accepted"] == 12 and retired.counters["lost"] == 10
    assert retired.accounting().balanced and retired.gauges["in_flight"] == 0
    with pytest.raises(ValueError):
        last.retired(accepted=9)

    second = ShardStats("shard-1")  # the restarted incarnation, same name
    second.count_accepted(1)
    second.set_gauge("in_flight", 1)
    crash_loop = ShardStats("shard-1").snapshot().retired()
    merged = Snapshot.empty()
    for part in (retired, second.snapshot(), crash_loop):
        merged = merged.merge(part)
    assert merged.shards == ["shard-1", "shard-1#1", "shard-1#2"]
    assert not merged.per_shard["shard-1"].crashed
    assert merged.accounting() == stats.Accounting(13, 1, 1, 0, 1, 10)
    assert merged.accounting().balanced
    assert merged.histogram("e2e", ("f", "completed")).count == 1
    assert merge_snapshots([second.snapshot(), retired]).shards == ["shard-1", "shard-1#1"]


def test_empty_snapshot_merge() -> None:
    empty = Snapshot.empty()
    assert empty.merge(empty) == empty
    assert merge_snapshots([]) == empty
    assert empty.accounting().balanced
    assert "no latencies recorded" in empty.table()
    s = ShardStats("s")
    s.record_attempt("f", "OK", 0.001)
    snap = s.snapshot()
    assert empty.merge(snap) == snap == snap.merge(empty)
    assert ShardStats("idle").snapshot().merge(snap).histograms == snap.histograms


def test_merging_disjoint_keys_keeps_each() -> None:
    a, b = ShardStats("a"), ShardStats("b")
    a.record_attempt("echo", "OK", 0.001)
    b.record_attempt("sleep", "TCP_ERROR", 0.5)
    b.record_rpc("Wait", False, 0.2)
    merged = a.snapshot().merge(b.snapshot())
    assert merged.keys("attempt") == [("echo", "OK"), ("sleep", "TCP_ERROR")]
    assert merged.keys("rpc") == [("Wait", "error")]
    assert merged.keys("e2e") == []
    assert merged.histogram("attempt", ("echo", "OK")) is a.snapshot().histogram("attempt", ("echo", "OK"))
    assert merged.percentiles("attempt", ("sleep", "TCP_ERROR"), [50])[50.0] == pytest.approx(500_000, rel=1e-3)
    with pytest.raises(KeyError):
        merged.percentiles("e2e", ("echo", "completed"))


def test_a_shard_merges_once() -> None:
    a = ShardStats("a")
    with pytest.raises(ValueError, match="more than one"):
        a.snapshot().merge(a.snapshot())


def test_gauges_sum_across_shards() -> None:
    snaps = []
    for i in range(3):
        s = ShardStats(f"s{i}")
        s.set_gauge("open_connections", 4)
        s.set_gauge("in_flight", i)
        snaps.append(s.snapshot())
    merged = merge_snapshots(snaps)
    assert merged.gauges == {"open_connections": 12, "in_flight": 3}
    assert merged.per_shard["s2"].gauges["in_flight"] == 2


def test_bad_inputs() -> None:
    s = ShardStats("s")
    with pytest.raises(ValueError):
        s.record_call("f", "completed", "OK", float("nan"))
    assert s.snapshot().counters["completed"] == 0
    assert s.snapshot().histograms == {}
    with pytest.raises(ValueError):
        s.record_call("f", "done", "OK", 0.1)
    with pytest.raises(ValueError):
        s.count_accepted(-1)
    s.record_attempt("f", "OK", 0.1)
    family: Family = "attempt"
    with pytest.raises(ValueError):
        s.snapshot().percentiles(family, ("f", "OK"), [101])


def test_table_layout() -> None:
    s = ShardStats("s")
    s.count_accepted(1)
    s.record_rpc("Dispatch", True, 0.000_412)
    s.record_attempt("echo", "OK", 0.001_5)
    s.record_call("echo", "completed", "OK", 0.002)
    table = s.snapshot().table()
    lines = table.splitlines()
    assert lines[0] == "shards: 1 (s)"
    assert lines[2].split() == ["family", "key", "count", "mean", "p50", "p90", "p99", "p99.9", "max"]
    assert lines[3].split() == ["rpc", "Dispatch", "ok", "1"] + ["0.412"] * 6
    assert lines[4].split()[:3] == ["attempt", "echo", "OK"]
    assert lines[5].split()[:3] == ["e2e", "echo", "completed"]
    assert "accepted 1  completed 1" in table
    assert table.endswith("balanced")


# ---------------------------------------------------------------------------------------------
# Failure tallies: counted per (kind, function, status), the first message kept, merged exactly
# ---------------------------------------------------------------------------------------------


def test_failure_tallies_merge_exactly_and_keep_the_first_message() -> None:
    one, two = stats.ShardStats("shard-0"), stats.ShardStats("shard-1")
    for i in range(5):
        one.record_failure("attempt", "greet", "TEMPORARY_ERROR", f"HTTP 500: boom {i}")
    two.record_failure("attempt", "greet", "TEMPORARY_ERROR", "HTTP 500: other")
    two.record_failure("failed", "doomed", "INVALID_ARGUMENT", "ValueError: doomed" + "!" * 1000)
    early = Snapshot.from_bytes(one.snapshot().to_bytes()).merge(Snapshot.from_bytes(two.snapshot().to_bytes()))
    tally = early.failures[("attempt", "greet", "TEMPORARY_ERROR")]
    assert tally.count == 6 and tally.sample == "HTTP 500: boom 0"
    assert len(early.failures[("failed", "doomed", "INVALID_ARGUMENT")].sample) == stats.SAMPLE_CHARS
    assert early.top_failure() == (("attempt", "greet", "TEMPORARY_ERROR"), tally)
    assert early.top_failure(("failed",)) is not None and early.top_failure(("expired",)) is None
    for _ in range(3):
        two.record_failure("attempt", "greet", "TEMPORARY_ERROR", "HTTP 500: later")
    later = Snapshot.from_bytes(one.snapshot().to_bytes()).merge(Snapshot.from_bytes(two.snapshot().to_bytes()))
    interval = later.minus(early)  # the new ones all happened in shard-1: its first message
    expected = {("attempt", "greet", "TEMPORARY_ERROR"): stats.FailureTally(3, "HTTP 500: other")}
    assert dict(interval.failures) == expected
    crashed = later.mark_lost("shard-1")
    assert crashed.failures[("attempt", "greet", "TEMPORARY_ERROR")].count == 9
    with pytest.raises(ValueError, match="failure count"):
        early.minus(later)
    assert Snapshot.from_json(later.to_json()).failures == later.failures


def test_a_snapshot_without_failures_has_none_and_bad_rows_are_refused() -> None:
    quiet = stats.ShardStats("s")
    quiet.record_call("f", "completed", "OK", 0.001)
    data = quiet.snapshot().to_json()
    assert "failures" not in data["shards"]["s"] and Snapshot.from_json(data).failures == {}
    data["shards"]["s"]["failures"] = [["attempt", "f", "OK", -1, ""]]
    with pytest.raises(ValueError, match="a shard failure is"):
        Snapshot.from_json(data)
