"""Typed counter keys: what the engine counts, and by which status.

A :class:`Counter` is a key of a snapshot's counters. It is written ``name`` or
``name/STATUS`` (``"accepted"``, ``"failed/TEMPORARY_ERROR"``, ``"retries/TCP_ERROR"``): that
text is its wire form (snapshots, ``summary.json``), unchanged since the first snapshot format,
and :class:`Counter` is a ``str`` so readers of those documents keep working. Code builds keys
with :func:`failed` / :func:`retries` and the constants, and reads them with :attr:`Counter.kind`
and :attr:`Counter.status`, :func:`total` and :func:`by_status`; nothing else splits the text.

Root calls balance: ``accepted == completed + failed + expired + cancelled + in_flight + lost``, and
``offered == accepted + rejected`` (calls that reached admission control; ``rejected/<reason>``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = [
    "ACCEPTED",
    "ARRIVALS",
    "ATTEMPTS",
    "CANCELLED",
    "CLAMPED",
    "COMPLETED",
    "DROPPED",
    "EVICTED",
    "EXPIRED",
    "LATE",
    "LOST",
    "OFFERED",
    "Counter",
    "CounterKind",
    "by_status",
    "chaos",
    "failed",
    "parse_counters",
    "rejected",
    "retries",
    "sessions",
    "total",
]


class CounterKind(enum.Enum):
    """What a counter counts."""

    OFFERED = "offered"  # root calls that reached admission control (accepted + rejected)
    ACCEPTED = "accepted"  # root calls accepted
    REJECTED = "rejected"  # root calls turned away by admission control, by reason (calls_in_flight, held_bytes)
    COMPLETED = "completed"  # root calls that completed
    FAILED = "failed"  # root calls that failed, by final status
    EXPIRED = "expired"  # root calls that reached their expiration
    CANCELLED = "cancelled"  # root calls ended by a drain (the run or the service stopped first)
    LOST = "lost"  # root calls lost with a crashed shard
    ATTEMPTS = "attempts"  # endpoint attempts (all calls)
    RETRIES = "retries"  # attempts that will be retried, by status
    CLAMPED = "clamped"  # values recorded at a histogram's edge
    ARRIVALS = "arrivals"  # open-model arrivals a Locust process started or dropped (caller side)
    LATE = "late"  # arrivals that started later than their process's late_after (caller side)
    DROPPED = "dropped"  # arrivals skipped for being more than max_lateness late (caller side)
    EVICTED = "evicted"  # results dropped from a shard's store for Wait (retention by count or bytes)
    CHAOS = "chaos"  # faults a shard injected on purpose ([engine.chaos]), by kind (duplicated, delayed, ...)
    SESSIONS = "sessions"  # sessions a shard opened, by carrier (socket: the session socket; stream: gRPC)


_BY_STATUS: Final = frozenset(
    {CounterKind.FAILED, CounterKind.RETRIES, CounterKind.REJECTED, CounterKind.CHAOS, CounterKind.SESSIONS}
)
_KINDS: Final = {kind.value: kind for kind in CounterKind}


class Counter(str):
    """A counter key: a :class:`CounterKind` and, for ``failed`` and ``retries``, a status name."""

    __slots__ = ("kind", "status")
    kind: CounterKind
    status: str

    def __new__(cls, text: str) -> Counter:
        name, sep, status = text.partition("/")
        kind = _KINDS.get(name)
        if kind is None or bool(sep) != (kind in _BY_STATUS) or (sep and not status):
            raise ValueError(f"unknown counter {text!r}")
        made = super().__new__(cls, text)
        made.kind = kind
        made.status = status
        return made

    @classmethod
    def of(cls, kind: CounterKind, status: str = "") -> Counter:
        return cls(f"{kind.value}/{status}" if status else kind.value)


OFFERED: Final = Counter.of(CounterKind.OFFERED)
ACCEPTED: Final = Counter.of(CounterKind.ACCEPTED)
COMPLETED: Final = Counter.of(CounterKind.COMPLETED)
EXPIRED: Final = Counter.of(CounterKind.EXPIRED)
CANCELLED: Final = Counter.of(CounterKind.CANCELLED)
LOST: Final = Counter.of(CounterKind.LOST)
ATTEMPTS: Final = Counter.of(CounterKind.ATTEMPTS)
CLAMPED: Final = Counter.of(CounterKind.CLAMPED)
ARRIVALS: Final = Counter.of(CounterKind.ARRIVALS)
LATE: Final = Counter.of(CounterKind.LATE)
DROPPED: Final = Counter.of(CounterKind.DROPPED)
EVICTED: Final = Counter.of(CounterKind.EVICTED)

_failed: dict[str, Counter] = {}
_retries: dict[str, Counter] = {}
_rejected: dict[str, Counter] = {}
_chaos: dict[str, Counter] = {}


def failed(status: str) -> Counter:
    """``failed/<status>``: root calls that failed with *status* (a status name such as ``TIMEOUT``)."""
    found = _failed.get(status)
    if found is None:
        found = _failed[status] = Counter.of(CounterKind.FAILED, status)
    return found


def retries(status: str) -> Counter:
    """``retries/<status>``: attempts that ended with *status* and will be retried."""
    found = _retries.get(status)
    if found is None:
        found = _retries[status] = Counter.of(CounterKind.RETRIES, status)
    return found


def rejected(reason: str) -> Counter:
    """``rejected/<reason>``: root calls admission control turned away for *reason* (``calls_in_flight``...)."""
    found = _rejected.get(reason)
    if found is None:
        found = _rejected[reason] = Counter.of(CounterKind.REJECTED, reason)
    return found


def chaos(kind: str) -> Counter:
    """``chaos/<kind>``: faults of *kind* a shard injected on purpose (:mod:`loadgen.core.chaos`)."""
    found = _chaos.get(kind)
    if found is None:
        found = _chaos[kind] = Counter.of(CounterKind.CHAOS, kind)
    return found


def sessions(carrier: str) -> Counter:
    """``sessions/<carrier>``: sessions a shard opened on *carrier* (``socket``, ``stream``)."""
    return Counter.of(CounterKind.SESSIONS, carrier)


def total(counters: Mapping[Counter, int], kind: CounterKind) -> int:
    """The sum of the counters of *kind* (all statuses)."""
    return sum(value for key, value in counters.items() if key.kind is kind)


def by_status(counters: Mapping[Counter, int], kind: CounterKind) -> dict[str, int]:
    """``{status: value}`` of the counters of *kind*, sorted by status."""
    return {key.status: value for key, value in sorted(counters.items()) if key.kind is kind and key.status}


def parse_counters(data: Mapping[str, int] | Iterable[tuple[str, int]]) -> dict[Counter, int]:
    """Counters read back from their wire form; ``ValueError`` for a name that is not a counter."""
    items = data.items() if isinstance(data, Mapping) else data
    return {Counter(name): value for name, value in items}
