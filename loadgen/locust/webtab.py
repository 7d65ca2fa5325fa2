"""The "Dispatch" and "Dispatch shards" tabs of Locust's web UI.

Locust 2.x's React web UI documents one extension mechanism (its ``extend_web_ui``
example): the page's ``templateArgs`` may declare ``extended_tabs`` (title + key),
``extended_tables`` (per key, the columns: ``{key, title}``) and ``extended_csv_files``
(download links); the UI then shows each extended tab as a table whose rows it reads, every
2 s, from the ``extended_stats`` list (``{key, data: [row, ...]}``) of the
``/stats/requests`` JSON it polls. So the plug-in

* adds its two tabs and tables to ``web_ui.template_args`` at ``init`` (Locust merges its
  own arguments over them on each page load, keeping ours);
* extends the ``/stats/requests`` answer with an ``after_request`` hook of the Flask app;
* serves ``/dispatch/functions.csv`` (the Dispatch table) and ``/dispatch/snapshot.json``
  (the bridge's latest merged snapshot, this run's snapshot ``latest.minus(baseline)``,
  the Dispatch rows and the baseline's time), behind Locust's login when ``--web-login``
  is on.

One tab shows one table, so the per-shard table has its own tab. Everything counts from the
start of the current test (the bridge's baseline); latencies come from the bridge's exactly
merged µs histograms and show in ms with 3 decimals.

Per-function columns: ``calls`` ended (completed / failed / expired / cancelled), ``wrong`` (completed
calls whose result differed from the expected one, as Locust's users checked them:
:mod:`loadgen.core.caller`; on a master, workers report every 3 s), end-to-end p50, p90,
p99, p99.9 and max over all of the function's root calls, ``attempts`` and attempt errors
by status, ``retries``, the calls Locust had ``dispatched`` when the shards were polled and
those ``in flight`` (dispatched - ended; only meaningful when this Locust is the only
client; on a master, workers report their counts every 3 s, so it may lag). The shards count
retries by status, not by function: the ``(all)`` row shows those exact counters, and a
function's row shows its non-OK attempts that did not end its call (non-OK attempts -
failed - expired - cancelled), which is the same number whenever every non-OK attempt is either
retried or final.

Per-shard columns (the Dispatch shards tab): calls accepted and ``rejected`` by a full shard (by
reason: ``calls_in_flight``, ``held_bytes``), how they ended, lost, in flight and the attempts
``queued`` for a stream to the endpoint now, open connections, retries, and whether it crashed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from loadgen.core.caller import CallerChecks
from loadgen.core.counters import ACCEPTED, CANCELLED, COMPLETED, EXPIRED, LOST, CounterKind, by_status
from loadgen.core.counters import total as counter_total
from loadgen.core.stats import GAUGE_IN_FLIGHT, GAUGE_OPEN_CONNECTIONS
from loadgen.core.units import format_latency
from loadgen.locust.bridge import HistogramDelta, StatsBridge

__all__ = ["FUNCTION_COLUMNS", "SHARD_COLUMNS", "function_rows", "install", "shard_rows"]

FUNCTIONS_KEY = "dispatch"
SHARDS_KEY = "dispatch-shards"

# Column keys are single lowercase words: the UI camel-cases keys, and these stay as they are.
FUNCTION_COLUMNS: list[tuple[str, str]] = [
    ("function", "Function"),
    ("calls", "Calls ended"),
    ("completed", "Completed"),
    ("failed", "Failed"),
    ("expired", "Expired"),
    ("cancelled", "Cancelled"),
    ("wrong", "Wrong results"),
    ("p50", "e2e p50 (ms)"),
    ("p90", "e2e p90 (ms)"),
    ("p99", "e2e p99 (ms)"),
    ("p999", "e2e p99.9 (ms)"),
    ("max", "e2e max (ms)"),
    ("attempts", "Attempts"),
    ("errors", "Attempt errors by status"),
    ("retries", "Retries"),
    ("dispatched", "Dispatched (Locust)"),
    ("inflight", "In flight"),
]
SHARD_COLUMNS: list[tuple[str, str]] = [
    ("shard", "Shard"),
    ("accepted", "Accepted"),
    ("rejected", "Rejected (by reason)"),
    ("completed", "Completed"),
    ("failed", "Failed (by status)"),
    ("expired", "Expired"),
    ("cancelled", "Cancelled"),
    ("lost", "Lost"),
    ("inflight", "In flight"),
    ("queued", "Attempts queued for a stream"),
    ("connections", "Open connections"),
    ("retries", "Retries (by status)"),
    ("crashed", "Crashed"),
]
ALL = "(all)"


def _ms(us: float) -> str:
    return format_latency(us, "ms")


def _by_status(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()) if n) or "-"


def function_rows(bridge: StatsBridge, checks: CallerChecks | None = None) -> list[dict[str, Any]]:
    """The Dispatch table: one row per function, then ``(all)``; *checks*: the callers' checked results."""
    deltas = bridge.deltas()
    sent_by_function = bridge.dispatched
    checked = checks.functions if checks is not None else {}
    functions = sorted(
        {a for (family, a, _) in deltas if family in ("e2e", "attempt")} | set(sent_by_function) | set(checked)
    )
    rows: list[dict[str, Any]] = []
    every = HistogramDelta.empty()
    totals: dict[str, int] = {}
    all_errors: dict[str, int] = {}
    for function in functions:
        e2e = HistogramDelta.empty()
        outcomes: dict[str, int] = {}
        attempts = 0
        errors: dict[str, int] = {}
        for (family, a, b), delta in deltas.items():
            if a != function or not delta.count:
                continue
            if family == "e2e":
                e2e = e2e.plus(delta)
                outcomes[b] = outcomes.get(b, 0) + delta.count
            elif family == "attempt":
                attempts += delta.count
                if b != "OK":
                    errors[b] = errors.get(b, 0) + delta.count
        every = every.plus(e2e)
        ended_badly = outcomes.get("failed", 0) + outcomes.get("expired", 0) + outcomes.get("cancelled", 0)
        sent = sent_by_function.get(function)
        row = _latency_row(function, e2e, outcomes, attempts, errors)
        row["retries"] = max(sum(errors.values()) - ended_badly, 0)
        row["wrong"] = checked[function].wrong if function in checked else "-"
        row["dispatched"] = sent if sent is not None else "-"
        row["inflight"] = max(sent - e2e.count, 0) if sent is not None else "-"
        rows.append(row)
        for name in ("completed", "failed", "expired", "cancelled"):
            totals[name] = totals.get(name, 0) + outcomes.get(name, 0)
        totals["attempts"] = totals.get("attempts", 0) + attempts
        for status, n in errors.items():
            all_errors[status] = all_errors.get(status, 0) + n
    counters = bridge.counters_since_start()
    total = _latency_row(ALL, every, totals, totals.get("attempts", 0), all_errors)
    total["retries"] = counter_total(counters, CounterKind.RETRIES)
    total["wrong"] = checks.total("wrong") if checks is not None else "-"
    total["dispatched"] = sum(sent_by_function.values())
    total["inflight"] = bridge.latest.gauges.get(GAUGE_IN_FLIGHT, 0)
    rows.append(total)
    return rows


def _latency_row(
    name: str, e2e: HistogramDelta, outcomes: dict[str, int], attempts: int, errors: dict[str, int]
) -> dict[str, Any]:
    p = e2e.percentiles((50.0, 90.0, 99.0, 99.9))
    empty = not e2e.count
    return {
        "function": name,
        "calls": e2e.count,
        "completed": outcomes.get("completed", 0),
        "failed": outcomes.get("failed", 0),
        "expired": outcomes.get("expired", 0),
        "cancelled": outcomes.get("cancelled", 0),
        "p50": "-" if empty else _ms(p[50.0]),
        "p90": "-" if empty else _ms(p[90.0]),
        "p99": "-" if empty else _ms(p[99.0]),
        "p999": "-" if empty else _ms(p[99.9]),
        "max": "-" if empty else _ms(e2e.max),
        "attempts": attempts,
        "errors": _by_status(errors),
    }


def shard_rows(bridge: StatsBridge) -> list[dict[str, Any]]:
    """The per-shard table (counters since the test started, gauges now), then ``(all)``."""
    rows = []
    latest = bridge.latest
    for shard in [*latest.shards, None]:
        counters = bridge.counters_since_start(shard)
        gauges = latest.gauges if shard is None else latest.per_shard[shard].gauges
        failed = by_status(counters, CounterKind.FAILED)
        rejected = by_status(counters, CounterKind.REJECTED)
        retries = by_status(counters, CounterKind.RETRIES)
        if shard is None:
            crashed = str(sum(1 for s in latest.per_shard.values() if s.crashed))
        else:
            crashed = "yes" if latest.per_shard[shard].crashed else "no"
        rows.append(
            {
                "shard": ALL if shard is None else shard,
                "accepted": counters.get(ACCEPTED, 0),
                "rejected": f"{sum(rejected.values())} ({_by_status(rejected)})" if rejected else "0",
                "completed": counters.get(COMPLETED, 0),
                "failed": f"{sum(failed.values())} ({_by_status(failed)})" if failed else "0",
                "expired": counters.get(EXPIRED, 0),
                "cancelled": counters.get(CANCELLED, 0),
                "lost": counters.get(LOST, 0),
                "inflight": gauges.get(GAUGE_IN_FLIGHT, 0),
                "queued": gauges.get("queued_attempts", 0),
                "connections": gauges.get(GAUGE_OPEN_CONNECTIONS, 0),
                "retries": f"{sum(retries.values())} ({_by_status(retries)})" if retries else "0",
                "crashed": crashed,
            }
        )
    return rows


class _Rows:
    """Tables computed once per poll of the bridge."""

    def __init__(self, bridge: StatsBridge, checks: CallerChecks | None) -> None:
        self.bridge = bridge
        self.checks = checks
        self._at = -1
        self._rows: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])

    def get(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        key = self.bridge.polls
        if key != self._at:
            self._rows = (function_rows(self.bridge, self.checks), shard_rows(self.bridge))
            self._at = key
        return self._rows


def install(web_ui: Any, bridge_of: Callable[[], StatsBridge | None], checks: CallerChecks | None = None) -> None:
    """Add the tabs, the ``/stats/requests`` extension and the download routes to Locust's web UI."""
    from flask import Blueprint, Response, jsonify, request

    args = web_ui.template_args
    args["extended_tabs"] = [
        *args.get("extended_tabs", []),
        {"title": "Dispatch", "key": FUNCTIONS_KEY},
        {"title": "Dispatch shards", "key": SHARDS_KEY},
    ]
    args["extended_tables"] = [
        *args.get("extended_tables", []),
        {"key": FUNCTIONS_KEY, "structure": [{"key": k, "title": t} for k, t in FUNCTION_COLUMNS]},
        {"key": SHARDS_KEY, "structure": [{"key": k, "title": t} for k, t in SHARD_COLUMNS]},
    ]
    args["extended_csv_files"] = [
        *args.get("extended_csv_files", []),
        {"href": "./dispatch/functions.csv", "title": "Download Dispatch statistics CSV (µs-exact percentiles)"},
        {"href": "./dispatch/snapshot.json", "title": "Download the shards' merged snapshot (JSON)"},
    ]
    cache: dict[int, _Rows] = {}

    def tables() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        bridge = bridge_of()
        if bridge is None:
            return [], []
        rows = cache.get(id(bridge))
        if rows is None:
            cache.clear()
            rows = cache[id(bridge)] = _Rows(bridge, checks)
        return rows.get()

    def extend_stats(response: Response) -> Response:
        if not request.path.endswith("/stats/requests") or response.status_code != 200 or not response.is_json:
            return response
        data = response.get_json()
        if not isinstance(data, dict):
            return response
        functions, shards = tables()
        others = [e for e in data.get("extended_stats") or [] if e.get("key") not in (FUNCTIONS_KEY, SHARDS_KEY)]
        data["extended_stats"] = [
            *others,
            {"key": FUNCTIONS_KEY, "data": functions},
            {"key": SHARDS_KEY, "data": shards},
        ]
        response.set_data(json.dumps(data))
        return response

    web_ui.app.after_request(extend_stats)
    blueprint = Blueprint("loadgen_dispatch", __name__, url_prefix=_base_path(web_ui) + "/dispatch")

    def functions_csv() -> Response:
        functions, _ = tables()
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([title for _, title in FUNCTION_COLUMNS])
        for row in functions:
            writer.writerow([row.get(key, "") for key, _ in FUNCTION_COLUMNS])
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=dispatch_functions.csv"},
        )

    def snapshot_json() -> Response:
        bridge = bridge_of()
        if bridge is None:
            return jsonify({"error": "no stats bridge in this process"})
        started = bridge.history[0][0] if bridge.history else None
        functions, _ = tables()  # computed from the same poll as the snapshots below
        try:
            run: Any = bridge.run_snapshot().to_json()
        except ValueError as exc:
            run = {"error": str(exc)}
        return jsonify(
            {
                "started": started,
                "polls": bridge.polls,
                "latest": bridge.latest.to_json(),
                "run": run,
                "functions": functions,
            }
        )

    protect = web_ui.auth_required_if_enabled
    blueprint.add_url_rule("/functions.csv", "functions_csv", protect(functions_csv))
    blueprint.add_url_rule("/snapshot.json", "snapshot_json", protect(snapshot_json))
    web_ui.app.register_blueprint(blueprint)


def _base_path(web_ui: Any) -> str:
    options = web_ui.environment.parsed_options
    base = getattr(options, "web_base_path", None) or ""
    return str(base).rstrip("/")
