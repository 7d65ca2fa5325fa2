"""Admission decisions: a batch is taken whole or refused with a message naming the shard, the number and
the setting; the pushback grows with the demand the shard could not take, within its bounds."""

from __future__ import annotations

from loadgen.core.admission import (
    CALL_BYTES,
    MAX_PUSHBACK_MS,
    MIN_PUSHBACK_MS,
    Admission,
    AdmissionLimits,
    Load,
    Reason,
    call_bytes,
)

LIMITS = AdmissionLimits(max_calls_in_flight=1000, max_held_bytes=1 << 20, max_waits=2)


def test_a_batch_within_the_caps_is_admitted_and_one_beyond_is_refused_whole() -> None:
    admission = Admission(LIMITS, shard=3)
    assert admission.calls(Load(900, 0), 100, 100 * CALL_BYTES, now=0.0) is None
    refused = admission.calls(Load(901, 0), 100, 100 * CALL_BYTES, now=0.0)
    assert refused is not None and refused.reason is Reason.CALLS_IN_FLIGHT
    assert refused.message == (
        "shard 3 is full: 901 calls in flight, at most 1,000 (max_calls_in_flight); none of the 100 calls was accepted"
    )
    held = admission.calls(Load(10, 1 << 20), 1, call_bytes(4096), now=0.0)
    assert held is not None and held.reason is Reason.HELD_BYTES and "(max_held_bytes)" in held.message
    assert admission.calls(Load(0, 0), 1, call_bytes(8 << 20), now=0.0) is None  # an idle shard takes any one call
    assert admission.wait(Load(0, 0, waits=1), now=0.0) is None
    waits = admission.wait(Load(0, 0, waits=2), now=0.0)
    assert waits is not None and waits.reason is Reason.WAITS and "2 Wait RPCs pending, at most 2" in waits.message


def test_the_pushback_follows_the_demand_over_the_completion_rate_within_its_bounds() -> None:
    admission = Admission(LIMITS, shard=0)
    first = admission.calls(Load(1000, 0, ended=0), 10, 10 * CALL_BYTES, now=0.0)
    assert first is not None and first.retry_after_ms == MAX_PUSHBACK_MS  # no completion rate seen yet
    admission.calls(Load(0, 0, ended=1000), 1, CALL_BYTES, now=1.0)  # 1,000 calls ended in a second
    small = admission.calls(Load(1000, 0, ended=1000), 10, 10 * CALL_BYTES, now=1.1)
    assert small is not None and small.retry_after_ms == MIN_PUSHBACK_MS  # 20 calls of demand: 20 ms, raised to 50
    for _ in range(30):
        storm = admission.calls(Load(1000, 0, ended=1000), 10, 10 * CALL_BYTES, now=1.2)
    assert storm is not None and 300 <= storm.retry_after_ms <= MAX_PUSHBACK_MS  # 320 calls refused: 320 ms


def test_asking_whether_a_batch_fits_counts_nothing_toward_the_pushback() -> None:
    asked, fresh = Admission(LIMITS, shard=0), Admission(LIMITS, shard=0)
    for admission in (asked, fresh):
        admission.calls(Load(0, 0, ended=0), 1, CALL_BYTES, now=0.0)
        admission.calls(Load(0, 0, ended=1000), 1, CALL_BYTES, now=1.0)  # 1,000 calls ended in a second
    for _ in range(30):  # a message whose groups do not all fit is asked about first, then group by group
        assert not asked.fits(Load(1000, 0, ended=1000), 10, 10 * CALL_BYTES, now=1.1)
        assert asked.fits(Load(990, 0, ended=1000), 10, 10 * CALL_BYTES, now=1.1)
    after_asking = asked.calls(Load(1000, 0, ended=1000), 10, 10 * CALL_BYTES, now=1.2)
    unasked = fresh.calls(Load(1000, 0, ended=1000), 10, 10 * CALL_BYTES, now=1.2)
    assert after_asking is not None and unasked is not None
    assert after_asking.retry_after_ms == unasked.retry_after_ms == MIN_PUSHBACK_MS
    assert not asked.fits(Load(10, 1 << 20), 1, call_bytes(4096), now=1.2)  # over max_held_bytes
    assert asked.fits(Load(0, 0), 1, call_bytes(8 << 20), now=1.2)  # an idle shard takes any one call
