"""Admission control: whether a shard takes a batch of calls or a ``Wait``, and what it says when not.

Pure: the caller passes the shard's load (calls in flight, bytes held, Waits pending, calls ended so
far) and the time; nothing here reads a clock or does IO. A batch is taken whole or not at all.

Bytes held by a call are estimated as :data:`CALL_BYTES` (its records in the scheduler, the
dispatcher and the ledger, measured at about 1.2 KB) plus the size of its input. A rejection carries a
pushback in milliseconds: how long the excess (this batch's, plus every call rejected in the last
second, the demand the shard could not take) takes to drain at the completion rate seen lately,
between :data:`MIN_PUSHBACK_MS` and :data:`MAX_PUSHBACK_MS`; a storm of rejections so backs off
its clients further.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from loadgen.core.units import format_size

__all__ = [
    "CALL_BYTES",
    "MAX_PUSHBACK_MS",
    "MIN_PUSHBACK_MS",
    "Admission",
    "AdmissionLimits",
    "Load",
    "Reason",
    "Rejection",
    "call_bytes",
]

CALL_BYTES: Final = 1200
"""What an accepted call holds in a shard beside its input (measured: 1,231 bytes per pending call with a
small input, ``python -m loadgen.bench.memory --quick``)."""
MIN_PUSHBACK_MS: Final = 50
MAX_PUSHBACK_MS: Final = 1000
_RATE_WINDOW_S: Final = 1.0


def call_bytes(input_bytes: int) -> int:
    """The bytes a call with an input of *input_bytes* is counted as holding while in flight."""
    return CALL_BYTES + max(0, input_bytes)


class Reason(enum.Enum):
    """Why a shard turned work away (the status of a ``rejected/<reason>`` counter)."""

    CALLS_IN_FLIGHT = "calls_in_flight"
    HELD_BYTES = "held_bytes"
    WAITS = "waits"


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """A shard's caps: calls in flight, bytes those calls hold, ``Wait`` RPCs pending."""

    max_calls_in_flight: int = 50_000
    max_held_bytes: int = 160 * 1024 * 1024
    max_waits: int = 4096


@dataclass(frozen=True, slots=True)
class Load:
    """A shard's load now: calls in flight, the bytes they hold, Waits pending, root calls ended so far."""

    in_flight: int
    held_bytes: int
    waits: int = 0
    ended: int = 0


@dataclass(frozen=True, slots=True)
class Rejection:
    """Work turned away: why, a message naming the shard, the number and the setting, and a pushback."""

    reason: Reason
    message: str
    retry_after_ms: int


class Admission:
    """One shard's admission decisions (keeps only its recent completion rate, for the pushback)."""

    def __init__(self, limits: AdmissionLimits, shard: int) -> None:
        self.limits = limits
        self.shard = shard
        self._sample: tuple[float, int] | None = None  # (time, ended) at the start of the rate window
        self._rate = 0.0  # root calls ended per second, lately
        self._rejected = 0  # calls rejected since the rate window began
        self._rejected_before = 0  # ... and in the window before it

    def calls(self, load: Load, count: int, batch_bytes: int, now: float) -> Rejection | None:
        """``None`` when a batch of *count* calls holding *batch_bytes* may be accepted, else why not (the
        refused calls then count toward the pushback of the rejections that follow)."""
        self._observe(load, now)
        reason = self._over(load, count, batch_bytes)
        if reason is None:
            return None
        limits = self.limits
        if reason is Reason.CALLS_IN_FLIGHT:
            excess = load.in_flight + count - limits.max_calls_in_flight
            return Rejection(
                Reason.CALLS_IN_FLIGHT,
                f"shard {self.shard} is full: {load.in_flight:,} calls in flight, at most "
                f"{limits.max_calls_in_flight:,} (max_calls_in_flight); {_none_of(count)}",
                self._pushback(excess, count),
            )
        share = batch_bytes / count if count else float(CALL_BYTES)
        excess_calls = max(1, int((load.held_bytes + batch_bytes - limits.max_held_bytes) / share))
        return Rejection(
            Reason.HELD_BYTES,
            f"shard {self.shard} is full: its calls hold {format_size(load.held_bytes)}, at most "
            f"{format_size(limits.max_held_bytes)} (max_held_bytes); {_none_of(count)} "
            f"({format_size(batch_bytes)})",
            self._pushback(excess_calls, count),
        )

    def fits(self, load: Load, count: int, batch_bytes: int, now: float) -> bool:
        """Whether :meth:`calls` would accept such a batch; nothing is counted as refused when it would not
        (a Session message's groups are first asked together, then each in turn if they do not all fit)."""
        self._observe(load, now)
        return self._over(load, count, batch_bytes) is None

    def _over(self, load: Load, count: int, batch_bytes: int) -> Reason | None:
        """The cap a batch of *count* calls holding *batch_bytes* would go over, or None."""
        limits = self.limits
        if load.in_flight + count > limits.max_calls_in_flight:
            return Reason.CALLS_IN_FLIGHT
        if load.held_bytes + batch_bytes > limits.max_held_bytes and load.in_flight:
            return Reason.HELD_BYTES
        return None

    def wait(self, load: Load, now: float) -> Rejection | None:
        """``None`` when one more ``Wait`` may be held open, else why not."""
        self._observe(load, now)
        if load.waits >= self.limits.max_waits:
            return Rejection(
                Reason.WAITS,
                f"shard {self.shard} is full: {load.waits:,} Wait RPCs pending, at most "
                f"{self.limits.max_waits:,} (max_waits); retry the Wait later",
                self._pushback(load.waits - self.limits.max_waits + 1, 0),
            )
        return None

    def _observe(self, load: Load, now: float) -> None:
        sample = self._sample
        if sample is None:
            self._sample = (now, load.ended)
        elif now - sample[0] >= _RATE_WINDOW_S:
            self._rate = max(0, load.ended - sample[1]) / (now - sample[0])
            self._sample = (now, load.ended)
            self._rejected_before, self._rejected = self._rejected, 0

    def _pushback(self, excess: int, rejected: int) -> int:
        self._rejected += rejected
        if self._rate <= 0:
            return MAX_PUSHBACK_MS
        demand = excess + max(self._rejected, self._rejected_before)
        return int(min(MAX_PUSHBACK_MS, max(MIN_PUSHBACK_MS, 1000 * demand / self._rate)))


def _none_of(count: int) -> str:
    return "the call was not accepted" if count == 1 else f"none of the {count:,} calls was accepted"
