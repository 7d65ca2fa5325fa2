"""The time series of a run: per-interval statistics from the cumulative snapshots taken during it (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from loadgen.core.counters import ARRIVALS, DROPPED, LATE, CounterKind
from loadgen.core.stats import HistogramSnapshot, Snapshot
from loadgen.core.stats.caller import GAUGE_WAITING, oldest_waiting_us
from loadgen.runs.metrics import Metrics

__all__ = ["SERIES_PERCENTILES", "interval_record", "time_series"]

SERIES_PERCENTILES: Final[tuple[float, ...]] = (50.0, 90.0, 99.0)


def _pkey(q: float) -> str:
    return f"p{q:g}"


def interval_record(t: float, dt: float, diff: Snapshot, now: Snapshot) -> dict[str, Any]:
    """One record of :func:`time_series`: the interval ``(t - dt, t]`` whose statistics are *diff*,
    *now* the cumulative snapshot at *t*."""
    return _interval(t, dt, diff, now)


def _interval(t: float, dt: float, diff: Snapshot, now: Snapshot) -> dict[str, Any]:
    metrics = Metrics(diff, dt)
    e2e = metrics.histogram("e2e")
    values = e2e.percentiles(SERIES_PERCENTILES) if e2e else {}
    functions: dict[str, Any] = {}
    for name in sorted({a for f, a, _ in diff.histograms if f == "e2e"}):
        hist = metrics.histogram("e2e", (("function", name),))
        completed = diff.histograms.get(("e2e", name, "completed"))
        p = hist.percentiles((50.0, 99.0)) if hist else {}
        functions[name] = {
            "completed_per_s": (completed.count if completed else 0) / dt,
            "p50_us": p.get(50.0),
            "p99_us": p.get(99.0),
        }
    return {
        "t": t,
        "dt": dt,
        "completed_per_s": diff.counter(CounterKind.COMPLETED) / dt,
        "accepted_per_s": diff.counter(CounterKind.ACCEPTED) / dt,
        "failed_per_s": sum(diff.counter(k) for k in (CounterKind.FAILED, CounterKind.EXPIRED, CounterKind.LOST)) / dt,
        "attempts_per_s": diff.counter(CounterKind.ATTEMPTS) / dt,
        "retries_per_s": {status: n / dt for status, n in diff.breakdown(CounterKind.RETRIES).items()},
        "e2e_us": {
            "count": e2e.count if e2e else 0,
            **{_pkey(q): values.get(q) for q in SERIES_PERCENTILES},
            "max": e2e.max if e2e else None,
        },
        "in_flight": now.gauges.get("in_flight", 0),
        "functions": functions,
    }


def _hist_json(hist: HistogramSnapshot | None) -> dict[str, Any]:
    values = hist.percentiles(SERIES_PERCENTILES) if hist else {}
    return {
        "count": hist.count if hist else 0,
        **{_pkey(q): values.get(q) for q in SERIES_PERCENTILES},
        "max": hist.max if hist else None,
    }


def _caller_interval(dt: float, diff: Snapshot, now: Snapshot) -> dict[str, Any]:
    metrics = Metrics(Snapshot.empty(), dt, caller=diff)
    counters = diff.counters
    return {
        "waiting": now.gauges.get(GAUGE_WAITING, 0),
        "oldest_waiting_us": oldest_waiting_us(now),
        "latency_us": _hist_json(metrics.histogram("latency")),
        "lag_us": _hist_json(metrics.histogram("lag")),
        "loop_lag_us": _hist_json(metrics.histogram("loop_lag")),
        "arrivals_per_s": counters.get(ARRIVALS, 0) / dt,
        "late_per_s": counters.get(LATE, 0) / dt,
        "dropped_per_s": counters.get(DROPPED, 0) / dt,
    }


def _caller_records(points: Sequence[tuple[float, Snapshot]]) -> dict[float, dict[str, Any]]:
    """The callers' part of each interval, by its end *t* (what the callers had reported between reads)."""
    out: dict[float, dict[str, Any]] = {}
    previous_t, previous = 0.0, Snapshot.empty()
    for t, snapshot in sorted(points, key=lambda point: point[0]):
        try:
            diff = snapshot.minus(previous)
        except ValueError:  # a new test, or a process that restarted: start over from it
            diff = snapshot
        out[t] = _caller_interval(t - previous_t, diff, snapshot) if t > previous_t else {}
        previous_t, previous = t, snapshot
    return out


def time_series(
    points: Sequence[tuple[float, Snapshot]], caller: Sequence[tuple[float, Snapshot]] = ()
) -> list[dict[str, Any]]:
    """Per-interval statistics from cumulative snapshots taken at *t* seconds into the run.

    Each record covers ``(t - dt, t]``: rates per second (``completed_per_s``,
    ``accepted_per_s``, ``failed_per_s`` (failed + expired + lost), ``attempts_per_s``,
    ``retries_per_s`` by status), e2e latency percentiles of the calls that ended in it
    (``e2e_us``: count, p50, p90, p99, max; None without calls), calls ``in_flight`` at *t*,
    and per function ``completed_per_s``, ``p50_us``, ``p99_us``. The first interval starts at
    0 with an empty snapshot (snapshots are cumulative from the start). A snapshot that is not
    a later state of the one before (:meth:`Snapshot.minus` refuses it) gives a record with an
    ``error`` and starts over from it.

    *caller*: the callers' cumulative statistics read at the same moments (``caller.json``); each
    record then also has what they reported in between: ``latency_us`` (from the intended start,
    count, p50, p90, p99, max), ``lag_us``, ``loop_lag_us``, ``arrivals_per_s``, ``late_per_s``,
    ``dropped_per_s``, and at their last reports the calls they were ``waiting`` for and how long
    the oldest had waited (``oldest_waiting_us``). Callers report every few seconds, so their part
    lags the engine's by as much.
    """
    callers = _caller_records(caller)
    records: list[dict[str, Any]] = []
    previous_t, previous = 0.0, Snapshot.empty()
    for t, snapshot in sorted(points, key=lambda point: point[0]):
        dt = t - previous_t
        if dt <= 0:
            previous_t, previous = t, snapshot
            continue
        try:
            diff = snapshot.minus(previous)
        except ValueError as exc:
            records.append({"t": t, "dt": dt, "error": str(exc)})
        else:
            records.append(_interval(t, dt, diff, snapshot) | callers.get(t, {}))
        previous_t, previous = t, snapshot
    return records
