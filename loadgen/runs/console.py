"""What ``loadgen run`` prints: the progress line every ~2 s, and the failures and checks at the end."""

from __future__ import annotations

from loadgen.core.caller import CallerFile
from loadgen.core.counters import COMPLETED, CounterKind
from loadgen.core.counters import total as counter_total
from loadgen.core.stats import Snapshot
from loadgen.core.units import format_latency
from loadgen.runs.results import errors_table

__all__ = ["failure_text", "print_checks", "print_failures", "progress_line"]


def failure_text(interval: Snapshot) -> str:
    """The most frequent failure of the interval: ``function STATUS xN: message`` (cut short)."""
    top = interval.top_failure()
    if top is None:
        return ""
    (kind, function, status), tally = top
    what = {
        "failed": "calls failed",
        "expired": "calls expired",
        "cancelled": "calls cancelled",
        "poll": "polls refused",
    }.get(kind, "attempts")
    sample = " ".join(tally.sample.split())
    if len(sample) > 90:
        sample = sample[:87] + "..."
    return f"  failing: {function} {status} x{tally.count} {what}" + (f": {sample}" if sample else "")


def progress_line(
    elapsed: float,
    planned: float | None,
    interval: Snapshot,
    seconds: float,
    total: Snapshot,
    caller: CallerFile | None = None,
) -> str:
    counters = interval.counters
    done = counters.get(COMPLETED, 0) + counter_total(counters, CounterKind.FAILED)
    p99 = ""
    values = [
        interval.percentiles("e2e", key, (99,))[99]
        for key in interval.keys("e2e")
        if interval.histogram("e2e", key).count
    ]
    if values:
        p99 = f"  e2e p99 {format_latency(max(values), 'ms', 1)} ms (worst function)"
    attempts = sum(interval.histogram("attempt", key).count for key in interval.keys("attempt"))
    retries = counter_total(counters, CounterKind.RETRIES)
    ratio = f"  retries {retries / attempts:.1%}" if attempts else ""
    clock = f"{elapsed:5.0f}s" + (f"/{planned:.0f}s" if planned else "")
    accounting = total.accounting()
    bad = accounting.failed + accounting.expired
    ended_badly = f"  failed {accounting.failed}  expired {accounting.expired}" if bad else ""
    if accounting.cancelled:
        ended_badly += f"  cancelled {accounting.cancelled}"
    wrong = f"  wrong {caller.total('wrong')}" if caller is not None and caller.total("checked") else ""
    return (
        f"  [{clock}] {done / seconds:7.0f} calls/s{p99}{ratio}  in flight {accounting.in_flight}"
        f"  accepted {accounting.accepted}{ended_badly}{wrong}  lost {accounting.lost}{failure_text(interval)}"
    )


def print_failures(final: Snapshot, limit: int = 8) -> None:
    rows = errors_table(final)
    if not rows:
        return
    print("failures (most frequent first; kind, function, status, count, first message):")
    for row in rows[:limit]:
        sample = " ".join(str(row["sample"]).split())
        if len(sample) > 120:
            sample = sample[:117] + "..."
        print(f"  {row['kind']:8} {row['function']}  {row['status']}  x{row['count']}: {sample}")
    if len(rows) > limit:
        print(f"  ... {len(rows) - limit} more in summary.json and report.html")


def print_checks(caller: CallerFile | None) -> None:
    if caller is None or not caller.total("checked"):
        return
    print(f"checked results: {caller.total('wrong')} wrong of {caller.total('checked')} checked")
    for function, checks in sorted(caller.checks.items()):
        for sample in checks.samples[:2]:
            print(f"  wrong {function}: expected {sample.expected}, got {sample.got}")
