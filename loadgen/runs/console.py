"""What ``loadgen run`` prints: the progress line every ~2 s, and the failures and checks at the end."""

from __future__ import annotations

from loadgen.core.caller import CallerFile
from loadgen.core.counters import ARRIVALS, COMPLETED, DROPPED, LATE, CounterKind
from loadgen.core.counters import total as counter_total
from loadgen.core.stats import Family, Snapshot
from loadgen.core.stats.caller import GAUGE_WAITING, oldest_waiting_us
from loadgen.core.stats.snapshot import CALLER_FAMILIES
from loadgen.core.units import format_latency
from loadgen.runs.breakdown import breakdown_lines
from loadgen.runs.chaos import chaos_text
from loadgen.runs.metrics import pool_usage
from loadgen.runs.results import errors_table
from loadgen.runs.scenario import Scenario

__all__ = [
    "LAG_SHOWN_US",
    "QUEUE_SHOWN_US",
    "WAITING_SHOWN_US",
    "caller_interval",
    "failure_text",
    "pool_text",
    "print_caller_latency",
    "print_checks",
    "print_failures",
    "print_run_shape",
    "progress_line",
]

LAG_SHOWN_US = 100_000  # the progress line shows the generator's lag from 100 ms on
QUEUE_SHOWN_US = 1000  # ... and a shard's queue p99 from 1 ms on (attempts waited for a stream to the endpoint)
WAITING_SHOWN_US = 500_000  # and the calls callers wait for once the oldest has waited 0.5 s


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


def _worst_p99(interval: Snapshot, family: Family) -> float | None:
    values = [interval.percentiles(family, key, (99,))[99] for key in interval.keys(family)]
    return max(values) if values else None


def _lag_text(callers: Snapshot | None, interval: Snapshot | None) -> str:
    """Lag and late/dropped arrivals, when there are any: the load generator fell behind."""
    if callers is None:
        return ""
    parts = []
    oldest = oldest_waiting_us(callers)
    if oldest >= WAITING_SHOWN_US:  # an outage shows while it lasts
        waiting = callers.gauges.get(GAUGE_WAITING, 0)
        parts.append(f"waiting {waiting} (oldest {format_latency(oldest)})")
    late, dropped = callers.counters.get(LATE, 0), callers.counters.get(DROPPED, 0)
    if late or dropped:
        parts.append(f"late {late}  dropped {dropped}")
    if interval is not None:
        loop = [interval.histogram("loop_lag", key).max for key in interval.keys("loop_lag")]
        lag = [interval.histogram("lag", key).max for key in interval.keys("lag")]
        worst = max(loop + lag, default=0)
        if worst >= LAG_SHOWN_US:
            parts.append(f"generator lag max {format_latency(worst, 'ms', 1)} ms")
    return "".join(f"  {part}" for part in parts)


def caller_interval(callers: Snapshot | None, earlier: Snapshot | None) -> Snapshot | None:
    """What the callers reported since *earlier*, their previous read (all of it without one; None:
    nothing read, or a new test began in between)."""
    if callers is None or earlier is None:
        return callers
    try:
        return callers.minus(earlier)
    except ValueError:
        return None


def progress_line(
    elapsed: float,
    planned: float | None,
    interval: Snapshot,
    seconds: float,
    total: Snapshot,
    caller: CallerFile | None = None,
    caller_interval: Snapshot | None = None,
) -> str:
    """One line of progress: the callers' latency p99 (worst function) of what they reported since the
    last line, the engine's e2e p99 beside it, rates, lag, accounting, the most frequent failure."""
    counters = interval.counters
    done = counters.get(COMPLETED, 0) + counter_total(counters, CounterKind.FAILED)
    p99 = ""
    caller_p99 = _worst_p99(caller_interval, "latency") if caller_interval is not None else None
    if caller_p99 is not None:
        p99 = f"  latency p99 {format_latency(caller_p99, 'ms', 1)} ms"
    engine_p99 = _worst_p99(interval, "e2e")
    if engine_p99 is not None:
        p99 += f"  engine e2e p99 {format_latency(engine_p99, 'ms', 1)} ms"
    if p99:
        p99 += " (worst function)"
    queue_p99 = _worst_p99(interval, "queue")
    if queue_p99 is not None and queue_p99 >= QUEUE_SHOWN_US:  # attempts waited for a stream to the endpoint
        p99 += f"  queue p99 {format_latency(queue_p99, 'ms', 1)} ms"
    attempts = sum(interval.histogram("attempt", key).count for key in interval.keys("attempt"))
    retries = counter_total(counters, CounterKind.RETRIES)
    ratio = f"  retries {retries / attempts:.1%}" if attempts else ""
    clock = f"{elapsed:5.0f}s" + (f"/{planned:.0f}s" if planned else "")
    accounting = total.accounting()
    bad = accounting.failed + accounting.expired
    ended_badly = f"  failed {accounting.failed}  expired {accounting.expired}" if bad else ""
    if accounting.cancelled:
        ended_badly += f"  cancelled {accounting.cancelled}"
    rejected = f"  rejected {accounting.rejected}" if accounting.rejected else ""
    wrong = f"  wrong {caller.total('wrong')}" if caller is not None and caller.total("checked") else ""
    lag = _lag_text(caller.latency if caller is not None else None, caller_interval)
    return (
        f"  [{clock}] {done / seconds:7.0f} calls/s{p99}{ratio}{lag}  in flight {accounting.in_flight}"
        f"  accepted {accounting.accepted}{rejected}{ended_badly}{wrong}  lost {accounting.lost}"
        f"{failure_text(interval)}"
    )


def pool_text(final: Snapshot, duration_s: float) -> str:
    """The endpoint pool's size and how long attempts waited for a stream on the worst shard, with a hint
    when that was most of the run; empty when the shards do not report it."""
    usage = pool_usage(final, duration_s)
    if usage is None:
        return ""
    text = f"pool: {usage.streams} streams per shard to the endpoint; every stream busy {usage.busy_ratio:.0%}"
    text += " of the run"
    if usage.bottleneck:
        text += " (worst shard): the pool was the bottleneck; raise engine.connections / max_streams"
    return text


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


def print_caller_latency(callers: Snapshot | None, qs: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)) -> None:
    """The callers' latency (from the intended start), lag and arrivals, as the Locust processes reported them."""
    if callers is None:
        return
    print(f"callers ({len(callers.per_shard)} Locust process(es)), latency from the intended start, in ms:")
    for family in CALLER_FAMILIES:
        for a, b in callers.keys(family):
            s = callers.histograms[(family, a, b)].summary(qs)
            values = " ".join(f"p{q:g} {format_latency(s.percentiles[q], 'ms')}" for q in qs)
            print(f"  {family:8} {a}  {b}  n {s.count}  {values}  max {format_latency(float(s.max), 'ms')}")
    counters = callers.counters
    arrivals = counters.get(ARRIVALS, 0)
    if arrivals:
        print(f"  arrivals {arrivals}: late {counters.get(LATE, 0)}, dropped {counters.get(DROPPED, 0)}")


def print_run_shape(snapshot: Snapshot, scenario: Scenario) -> None:
    """Where root calls' time went, per function, and what ``[engine.chaos]`` injected (if anything)."""
    lines = breakdown_lines(snapshot)
    if lines:
        print("where the time went (mean root call: queue, attempts, backoff, children):")
        print("\n".join(lines))
    chaos = chaos_text(snapshot, scenario.engine.chaos if scenario.remote is None else None)
    if chaos:
        print(chaos)


def print_checks(caller: CallerFile | None) -> None:
    if caller is None or not caller.total("checked"):
        return
    print(f"checked results: {caller.total('wrong')} wrong of {caller.total('checked')} checked")
    for function, checks in sorted(caller.checks.items()):
        for sample in checks.samples[:2]:
            print(f"  wrong {function}: expected {sample.expected}, got {sample.got}")
