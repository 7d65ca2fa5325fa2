"""``summary.json``: every statistic of a run in one document (see :mod:`loadgen.runs.results`); no IO
but :func:`write_summary`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from loadgen.core.caller import FunctionChecks
from loadgen.core.counters import CounterKind, total
from loadgen.core.stats import FAMILIES, HistogramSnapshot, Snapshot
from loadgen.core.stats.snapshot import CALLER_FAMILIES
from loadgen.runs.breakdown import breakdowns_json
from loadgen.runs.chaos import chaos_json
from loadgen.runs.gates import GateResult
from loadgen.runs.metrics import LocustTotals, Metrics, pool_usage
from loadgen.runs.results.folder import utc, versions
from loadgen.runs.results.series import time_series
from loadgen.runs.scenario import Scenario, scenario_to_dict

__all__ = [
    "PERCENTILES",
    "SUMMARY_FILE",
    "SUMMARY_FORMAT",
    "build_summary",
    "csv_files",
    "errors_table",
    "histogram_summary",
    "write_summary",
]

SUMMARY_FORMAT: Final = "loadgen.summary/1"
SUMMARY_FILE: Final = "summary.json"
PERCENTILES: Final[tuple[float, ...]] = (50.0, 90.0, 99.0, 99.9)


def _pkey(q: float) -> str:
    return f"p{q:g}"


def histogram_summary(hist: HistogramSnapshot | None, qs: Sequence[float] = PERCENTILES) -> dict[str, Any]:
    """``{count, mean, min, p50, ..., max}`` of *hist* in µs (zeros for None or empty)."""
    if hist is None or not hist.count:
        return {"count": 0, "mean": 0.0, "min": 0, **{_pkey(q): 0.0 for q in qs}, "max": 0}
    values = hist.percentiles(qs)
    return {
        "count": hist.count,
        "mean": hist.mean,
        "min": hist.min,
        **{_pkey(q): values[q] for q in qs},
        "max": hist.max,
    }


def _accounting_json(snapshot: Snapshot, shard: str | None = None) -> dict[str, Any]:
    acc = snapshot.accounting(shard)
    return {
        "accepted": acc.accepted,
        "completed": acc.completed,
        "failed": acc.failed,
        "expired": acc.expired,
        "cancelled": acc.cancelled,
        "in_flight": acc.in_flight,
        "lost": acc.lost,
        "offered": acc.offered,
        "rejected": acc.rejected,
        "difference": acc.difference,
        "balanced": acc.balanced,
        "text": str(acc),
    }


def _rate(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def _functions(
    snapshot: Snapshot,
    duration_s: float,
    checks: Mapping[str, FunctionChecks] | None = None,
    caller: Snapshot | None = None,
) -> dict[str, Any]:
    metrics = Metrics(snapshot, duration_s, caller=caller)
    names = sorted({a for f, a, _ in snapshot.histograms if f in ("e2e", "attempt")} | set(checks or {}))
    out: dict[str, Any] = {}
    for name in names:
        scope = (("function", name),)
        by_outcome = {
            outcome: (h.count if (h := snapshot.histograms.get(("e2e", name, outcome))) else 0)
            for outcome in ("completed", "failed", "expired", "cancelled")
        }
        attempts = {b: h.count for (f, a, b), h in sorted(snapshot.histograms.items()) if f == "attempt" and a == name}
        out[name] = {
            "calls": sum(by_outcome.values()),
            **by_outcome,
            "calls_per_s": _rate(by_outcome["completed"], duration_s),
            "attempts": sum(attempts.values()),
            "attempts_by_status": attempts,
            "e2e_us": histogram_summary(metrics.histogram("e2e", scope)),
            "attempt_us": histogram_summary(metrics.histogram("attempt", scope)),
        }
        if caller is not None:
            out[name]["latency_us"] = histogram_summary(metrics.histogram("latency", scope))
        if checks is not None:
            checked = checks.get(name, FunctionChecks())
            out[name].update(
                checked=checked.checked,
                wrong=checked.wrong,
                unfinished=checked.unfinished,
                wrong_samples=[sample.to_json() for sample in checked.samples],
            )
    return out


def errors_table(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The failures of *snapshot* as rows ``{kind, function, status, count, sample}``, most frequent first."""
    rows = [
        {"kind": kind, "function": function, "status": status, "count": tally.count, "sample": tally.sample}
        for (kind, function, status), tally in snapshot.failures.items()
        if tally.count
    ]
    return sorted(rows, key=lambda row: (-row["count"], row["kind"], row["function"], row["status"]))


def _checks_json(checks: Mapping[str, FunctionChecks]) -> dict[str, Any]:
    samples = [
        {"function": function, **sample.to_json()}
        for function, checked in sorted(checks.items())
        for sample in checked.samples
    ]
    return {
        "functions": {function: checked.to_json() for function, checked in sorted(checks.items())},
        "samples": samples,
    }


def _iso(moment: datetime) -> str:
    return utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_summary(
    *,
    snapshot: Snapshot,
    started: datetime,
    ended: datetime,
    scenario: Scenario | None = None,
    gates: Sequence[GateResult] = (),
    series: Sequence[tuple[float, Snapshot]] = (),
    locust: LocustTotals | None = None,
    duration_s: float | None = None,
    exit_code: int | None = None,
    locust_csv: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    checks: Mapping[str, FunctionChecks] | None = None,
    caller: Snapshot | None = None,
    caller_series: Sequence[tuple[float, Snapshot]] = (),
    workers: Sequence[Mapping[str, Any]] | None = None,
    capacity: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` document (see the module docstring); no IO.

    *snapshot* is the final merged snapshot, *series* the cumulative snapshots taken during
    the run as ``(seconds since start, snapshot)``, *duration_s* the measured length of the run
    (default: *ended* - *started*), *exit_code* what the run exits with, *checks* the callers'
    checked results per function (None: none were collected), *caller* the callers' final statistics
    (latency from the intended start, lag, arrivals: :mod:`loadgen.core.stats.caller`) and
    *caller_series* the cumulative reads of them during the run; *capacity* what a capacity search
    found (:meth:`loadgen.runs.capacity.CapacityResult.to_json`; ``None``: not a search).
    """
    duration = (ended - started).total_seconds() if duration_s is None else duration_s
    latency: dict[str, Any] = {}
    for family in FAMILIES:
        source = caller if family in CALLER_FAMILIES else snapshot
        if source is None:
            continue
        for a, b in source.keys(family):
            hist = source.histograms[(family, a, b)]
            latency.setdefault(family, {}).setdefault(a, {})[b] = histogram_summary(hist)
    metrics = Metrics(snapshot, duration, locust, checks, caller)
    counters: dict[str, int] = {str(key): value for key, value in snapshot.counters.items()}
    if checks is not None:
        counters["wrong"] = sum(c.wrong for c in checks.values())
        counters["unfinished"] = sum(c.unfinished for c in checks.values())
    shards = {
        name: {
            "crashed": summary.crashed,
            "seq": summary.seq,
            "counters": {str(key): value for key, value in sorted(summary.counters.items())},
            "retries": total(summary.counters, CounterKind.RETRIES),
            "gauges": dict(sorted(summary.gauges.items())),
            "accounting": _accounting_json(snapshot, name),
        }
        for name, summary in sorted(snapshot.per_shard.items())
    }
    rates = {
        name: (None if math.isnan(value := metrics(name)) else value)
        for name in ("calls_per_s", "accepted_per_s", "attempts_per_s", "retries.ratio", "failed.ratio", "wrong.ratio")
        + (("late_per_s", "dropped_per_s", "dropped.ratio") if caller is not None else ())
    }
    callers = None
    if caller is not None:
        callers = {
            "latency_us": histogram_summary(metrics.histogram("latency")),
            "lag_us": histogram_summary(metrics.histogram("lag")),
            "loop_lag_us": histogram_summary(metrics.histogram("loop_lag")),
            "arrivals": int(metrics("arrivals")),
            "late": int(metrics("late")),
            "dropped": int(metrics("dropped")),
            "processes": caller.shards,
            "snapshot": caller.to_json(),
        }
    return {
        "format": SUMMARY_FORMAT,
        "scenario": scenario_to_dict(scenario) if scenario is not None else None,
        "started": _iso(started),
        "ended": _iso(ended),
        "duration_s": duration,
        "versions": versions(),
        "exit_code": exit_code,
        "rates": rates,
        "latency_us": latency,
        "functions": _functions(snapshot, duration, checks, caller),
        "breakdown": breakdowns_json(snapshot),
        "chaos": chaos_json(snapshot, scenario.engine.chaos if scenario is not None else None),
        "callers": callers,
        "counters": dict(sorted(counters.items())),
        "gauges": dict(sorted(snapshot.gauges.items())),
        "errors": errors_table(snapshot),
        "checks": _checks_json(checks) if checks is not None else None,
        "shards": shards,
        "accounting": _accounting_json(snapshot),
        "pool": usage.to_json() if (usage := pool_usage(snapshot, duration)) is not None else None,
        "workers": [dict(worker) for worker in workers] if workers is not None else None,
        "gates": {
            "passed": all(result.passed for result in gates) if gates else None,
            "results": [result.to_json() for result in gates],
        },
        "locust": locust.to_json() if locust is not None else None,
        "locust_csv": list(locust_csv),
        "series": time_series(series, caller_series),
        "capacity": dict(capacity) if capacity is not None else None,
        "snapshot": snapshot.to_json(),
        "extra": dict(extra or {}),
    }


def csv_files(run_dir: Path) -> list[str]:
    return sorted(path.name for path in run_dir.glob("*.csv") if path.is_file())


def write_summary(
    run_dir: str | Path,
    *,
    snapshot: Snapshot,
    started: datetime,
    ended: datetime,
    scenario: Scenario | None = None,
    gates: Sequence[GateResult] = (),
    series: Sequence[tuple[float, Snapshot]] = (),
    locust: LocustTotals | None = None,
    duration_s: float | None = None,
    exit_code: int | None = None,
    extra: Mapping[str, Any] | None = None,
    checks: Mapping[str, FunctionChecks] | None = None,
    caller: Snapshot | None = None,
    caller_series: Sequence[tuple[float, Snapshot]] = (),
    workers: Sequence[Mapping[str, Any]] | None = None,
    capacity: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``run_dir/summary.json`` (:func:`build_summary`, listing the CSVs found in *run_dir*); return it."""
    folder = Path(run_dir)
    summary = build_summary(
        snapshot=snapshot,
        started=started,
        ended=ended,
        scenario=scenario,
        gates=gates,
        series=series,
        locust=locust,
        duration_s=duration_s,
        exit_code=exit_code,
        locust_csv=csv_files(folder),
        extra=extra,
        checks=checks,
        caller=caller,
        caller_series=caller_series,
        workers=workers,
        capacity=capacity,
    )
    data = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    (folder / SUMMARY_FILE).write_bytes(data)
    return summary
