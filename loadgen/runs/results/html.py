"""``report.html``: one self-contained page for people, from a ``summary.json`` document (no network)."""

from __future__ import annotations

import csv
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from loadgen.core.stats import FAMILIES, Snapshot
from loadgen.runs.capacity import knee_table
from loadgen.runs.metrics import Metrics, format_value
from loadgen.runs.results.curves import distribution_charts, knee_charts
from loadgen.runs.results.summary import SUMMARY_FILE, csv_files, histogram_summary
from loadgen.runs.results.svg import run_charts

__all__ = ["REPORT_FILE", "render_html", "write_html_report"]

REPORT_FILE: Final = "report.html"


_CSS: Final = """
:root { --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --muted: #59636e; --line: #d1d9e0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; }
main { max-width: 1120px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; }
.muted { color: var(--muted); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin: 12px 0; }
.verdict { display: inline-block; font-weight: 700; padding: 4px 12px; border-radius: 16px; margin: 8px 0; }
.verdict.ok { color: var(--ok); background: var(--ok-bg); }
.verdict.bad { color: var(--bad); background: var(--bad-bg); }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 10px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tile .v { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile .k { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; font-size: 12px; color: var(--muted); }
td.n, th.n { text-align: right; }
tr.pass td { background: var(--ok-bg); } tr.fail td, tr.bad td { background: var(--bad-bg); }
tr.pass td.r { color: var(--ok); font-weight: 700; } tr.fail td.r { color: var(--bad); font-weight: 700; }
.scroll { overflow-x: auto; }
svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px;
            margin: 8px 0; font-family: inherit; }
svg .grid { stroke: #e6e9ec; } svg .axis, svg .xtick { stroke: #8c959f; }
svg .tick { font-size: 11px; fill: var(--muted); } svg .axis-label { font-size: 11px; fill: var(--muted); }
svg .chart-title { font-size: 13px; font-weight: 600; fill: #1f2328; }
svg .legend { font-size: 12px; fill: #1f2328; } svg .empty { font-size: 13px; fill: var(--muted); }
svg .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .hover { fill: transparent; } svg .hover:hover { fill: rgba(31, 35, 40, 0.06); }
.stack { display: flex; height: 18px; border-radius: 4px; overflow: hidden; background: #eaeef2; min-width: 240px; }
.stack span { display: block; height: 100%; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 10px; }
.accounting { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; overflow-x: auto; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _lat(us: float | None) -> str:
    return "—" if us is None else format_value("latency", float(us))


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric_from: int = 1,
    row_class: Sequence[str] = (),
    numeric_to: int | None = None,
) -> str:
    """An HTML table; cells are already escaped. Columns *numeric_from* .. *numeric_to* are right-aligned."""
    end = len(head) if numeric_to is None else numeric_to
    cls = [(' class="n"' if numeric_from <= i < end else "") for i in range(len(head))]
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th{cls[i]}>{_e(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for index, row in enumerate(rows):
        attr = f' class="{row_class[index]}"' if index < len(row_class) and row_class[index] else ""
        out.append(f"<tr{attr}>" + "".join(f"<td{cls[i]}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _verdict(summary: Mapping[str, Any]) -> tuple[str, bool]:
    code = summary.get("exit_code")
    results = summary.get("gates", {}).get("results", [])
    failed = sum(not r.get("passed") for r in results)
    balanced = summary.get("accounting", {}).get("balanced", True)
    if code == 3 or (code is None and not balanced):
        return "RUN FAILED: the run itself did not complete (see the accounting)", False
    if code == 2:
        return "USAGE ERROR", False
    implicit = " implicit" if results and all(r.get("implicit") for r in results) else ""
    if failed:
        return f"FAILED: {failed} of {len(results)}{implicit} gates", False
    if results:
        return f"PASSED: all {len(results)}{implicit} gates", True
    return "COMPLETED (no gates)", True


def _gates_section(results: Sequence[Mapping[str, Any]]) -> str:
    if not results:
        return '<p class="muted">This scenario has no gates.</p>'
    rows, classes = [], []
    for r in results:
        passed = bool(r.get("passed"))
        rows.append(
            [
                f"<code>{_e(r.get('metric'))}</code>",
                _e(r.get("condition")),
                _e(r.get("observed_text", r.get("observed"))),
                "pass" if passed else "FAIL",
                _e(r.get("message", "")) + (" (aborts the run)" if r.get("abort_on_fail") else ""),
            ]
        )
        classes.append("pass" if passed else "fail")
    head = ["metric", "condition", "observed", "result", "detail"]
    table = _table(head, rows, numeric_from=2, row_class=classes, numeric_to=4)
    return table.replace('<td class="n">pass</td>', '<td class="n r">pass</td>').replace(
        '<td class="n">FAIL</td>', '<td class="n r">FAIL</td>'
    )


def _functions_section(functions: Mapping[str, Any]) -> str:
    if not functions:
        return '<p class="muted">No calls were recorded.</p>'
    head = ["function", "calls", "completed", "failed", "expired", "cancelled", "wrong", "calls/s", "attempts"]
    head += ["retried"]
    callers = any("latency_us" in f for f in functions.values())
    if callers:
        head += ["latency p50", "p99", "max"]
    head += ["engine e2e p50" if callers else "e2e p50", "p90", "p99", "p99.9", "max"]
    rows, classes = [], []
    for name, f in functions.items():
        e2e = f.get("e2e_us", {})
        seen = f.get("latency_us", {})
        caller_cells = (
            [_lat(seen.get(k)) if seen.get("count") else "—" for k in ("p50", "p99", "max")] if callers else []
        )
        rate = f.get("calls_per_s")
        by_status = f.get("attempts_by_status", {})
        not_ok = sum(n for status, n in by_status.items() if status != "OK")
        rows.append(
            [
                f"<code>{_e(name)}</code>",
                _e(f.get("calls", 0)),
                _e(f.get("completed", 0)),
                _e(f.get("failed", 0)),
                _e(f.get("expired", 0)),
                _e(f.get("cancelled", 0)),
                _e(f["wrong"]) if "wrong" in f else "—",
                "—" if rate is None else f"{rate:.1f}",
                _e(f.get("attempts", 0)),
                _e(not_ok),
                *caller_cells,
                *(_lat(e2e.get(k)) if e2e.get("count") else "—" for k in ("p50", "p90", "p99", "p99.9", "max")),
            ]
        )
        bad = f.get("failed", 0) or f.get("expired", 0) or f.get("cancelled", 0) or f.get("wrong", 0)
        classes.append("bad" if bad else "")
    return _table(head, rows, row_class=classes)


def _errors_section(errors: Sequence[Mapping[str, Any]]) -> str:
    if not errors:
        return '<p class="muted">No failures: every endpoint attempt answered OK.</p>'
    kinds = {
        "attempt": "attempt",
        "failed": "call failed",
        "expired": "call expired",
        "cancelled": "call cancelled",
        "poll": "poll refused",
        "rpc": "RPC not OK",
    }
    rows = [
        [
            _e(kinds.get(str(row.get("kind")), row.get("kind"))),
            f"<code>{_e(row.get('function'))}</code>",
            _e(row.get("status")),
            _e(row.get("count")),
            f"<code>{_e(row.get('sample', ''))}</code>",
        ]
        for row in errors
    ]
    return _table(["kind", "function", "status", "count", "first message"], rows, numeric_from=3, numeric_to=4)


def _wrong_section(checks: Mapping[str, Any] | None) -> str:
    if checks is None:
        return '<p class="muted">No results were checked.</p>'
    samples = checks.get("samples", [])
    functions = checks.get("functions", {})
    checked = sum(f.get("checked", 0) for f in functions.values())
    wrong = sum(f.get("wrong", 0) for f in functions.values())
    if not checked:
        return '<p class="muted">No workload item has an <code>expect</code>: no result was checked.</p>'
    head = f"<p>{wrong:,} of {checked:,} checked results were wrong.</p>"
    if not samples:
        return head
    rows = [[f"<code>{_e(s.get(key))}</code>" for key in ("function", "expected", "got")] for s in samples]
    return head + _table(["function", "expected", "got"], rows, numeric_from=3)


def _latency_section(latency: Mapping[str, Any]) -> str:
    rows = []
    for family in FAMILIES:
        for a, by_b in latency.get(family, {}).items():
            for b, s in by_b.items():
                rows.append(
                    [
                        _e(family),
                        f"<code>{_e(a)}</code>",
                        _e(b),
                        _e(s["count"]),
                        *(_lat(s.get(k)) for k in ("mean", "p50", "p90", "p99", "p99.9", "max")),
                    ]
                )
    if not rows:
        return '<p class="muted">No latencies were recorded.</p>'
    return _table(["family", "key", "", "count", "mean", "p50", "p90", "p99", "p99.9", "max"], rows, numeric_from=3)


_PHASE_COLOURS: Final = {"queue": "#bf8700", "attempts": "#0969da", "backoff": "#cf222e", "children": "#8250df"}


def _breakdown_section(breakdown: Mapping[str, Any]) -> str:
    """Per function, a stacked bar of where the mean root call's time went, and each phase's percentiles."""
    if not breakdown:
        return '<p class="muted">No root call ended with its phases recorded.</p>'
    legend = "".join(
        f'<span class="swatch" style="background:{colour}"></span>{_e(part)}' for part, colour in _PHASE_COLOURS.items()
    )
    rows = []
    for function, b in sorted(breakdown.items()):
        phases = b.get("phases", {})
        bar = "".join(
            f'<span style="width:{100 * max(0.0, float(phases.get(part, {}).get("share", 0))):.2f}%;'
            f'background:{colour}" title="{_e(part)} {_lat(phases.get(part, {}).get("mean"))}"></span>'
            for part, colour in _PHASE_COLOURS.items()
        )
        cells = [
            f"<code>{_e(function)}</code>",
            _e(f"{b.get('calls', 0):,}"),
            _lat(b.get("e2e_mean_us")),
            f'<div class="stack">{bar}</div>',
        ]
        for part in _PHASE_COLOURS:
            stats = phases.get(part, {})
            cells.append(
                f"{_lat(stats.get('mean'))} ({100 * float(stats.get('share', 0)):.0f}%)"
                f'<br><span class="muted">p99 {_lat(stats.get("p99"))}</span>'
            )
        shape = [b.get(k, {}) for k in ("resumes", "children", "state_bytes")]
        cells += [
            _e(f"{shape[0].get('mean', 0):.2g} / {shape[0].get('p99', 0):g}"),
            _e(f"{shape[1].get('mean', 0):.2g} / {shape[1].get('p99', 0):g}"),
            _e(f"{shape[2].get('p99', 0):,.0f} / {shape[2].get('max', 0):,}"),
            _e(f"{100 * float(b.get('gap', 0)):.2f}%"),
        ]
        rows.append(cells)
    head = ["function", "calls", "mean e2e", "where it went", *(f"{p} mean" for p in _PHASE_COLOURS)]
    head += ["resumes mean/p99", "children mean/p99", "state bytes p99/max", "gap"]
    return f'<p class="muted">{legend}</p>' + _table(head, rows, numeric_from=1, numeric_to=len(head))


def _shards_section(shards: Mapping[str, Any]) -> str:
    if not shards:
        return '<p class="muted">No shard reported.</p>'
    rows, classes = [], []
    for name, s in shards.items():
        c, acc = s.get("counters", {}), s.get("accounting", {})
        retries = s.get("retries", 0)
        failed = acc.get("failed", 0)
        rows.append(
            [
                _e(name) + (" (crashed)" if s.get("crashed") else ""),
                _e(c.get("accepted", 0)),
                _e(c.get("completed", 0)),
                _e(failed),
                _e(c.get("expired", 0)),
                _e(c.get("cancelled", 0)),
                _e(c.get("lost", 0)),
                _e(c.get("attempts", 0)),
                _e(retries),
                _e(s.get("gauges", {}).get("in_flight", 0)),
                "balanced" if acc.get("balanced", True) else f"off by {acc.get('difference')}",
            ]
        )
        classes.append("" if acc.get("balanced", True) and not s.get("crashed") else "bad")
    head = ["shard", "accepted", "completed", "failed", "expired", "cancelled", "lost", "attempts", "retries"]
    head += ["in flight", ""]
    return _table(head, rows, row_class=classes)


def _workers_section(workers: Sequence[Mapping[str, Any]] | None) -> str:
    """Per worker machine of a distributed run (``summary.json``'s ``workers``); nothing for a local run."""
    if not workers:
        return ""
    names = ("accepted", "completed", "failed", "expired", "cancelled", "in_flight", "lost")
    rows, classes = [], []
    for worker in workers:
        acc = worker.get("accounting") or {}
        state = str(worker.get("state", ""))
        if state == "lost":
            state = f"lost: {worker.get('lost_in_flight', 0)} call(s) in flight at its last report"
        rows.append([_e(worker.get("id")), _e(worker.get("host")), _e(worker.get("shards")), _e(state)])
        rows[-1] += [_e(acc.get(name, 0)) for name in names]
        classes.append("bad" if worker.get("state") == "lost" else "")
    head = ["worker", "host", "shards", "state", *(name.replace("_", " ") for name in names)]
    return "<h2>Workers</h2>" + _table(head, rows, numeric_from=4, row_class=classes)


def _locust_section(run_dir: Path | None, files: Sequence[str]) -> str:
    if not files:
        return '<p class="muted">No Locust CSV files in this folder.</p>'
    links = " · ".join(f'<a href="{_e(name)}">{_e(name)}</a>' for name in files)
    out = [f"<p>{links}</p>"]
    stats = [name for name in files if name.endswith("_stats.csv")]
    if run_dir is not None and stats:
        wanted = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "95%", "99%", "Requests/s"]
        try:
            with (run_dir / stats[0]).open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                columns = [c for c in wanted if c in (reader.fieldnames or [])]
                rows = [[_e(row.get(c, "")) for c in columns] for row in reader]
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            out.append(f'<p class="muted">{_e(stats[0])} could not be read: {_e(exc)}</p>')
        else:
            if columns:
                out.append(f'<p class="muted">From {_e(stats[0])} (response times in ms, as Locust measures them):</p>')
                out.append(_table(columns, rows, numeric_from=2))
    return "".join(out)


def _capacity_section(capacity: Mapping[str, Any] | None) -> list[str]:
    """A capacity search: what it found, the knee charts and the table of its steps (none for other runs)."""
    if not capacity:
        return []
    rows = knee_table(capacity.get("steps", []))
    classes = ["pass" if row[2].startswith("pass") else "fail" for row in rows[1:]]
    table = _table(rows[0], [[_e(cell) for cell in row] for row in rows[1:]], row_class=classes, numeric_to=8)
    settings = capacity.get("settings") or {}
    how = (
        f"Open-model steps of arrival rate from {float(settings.get('start_rate', 0)):g} calls/s, each"
        f" {float(settings.get('warmup', 0)):g} s of warm-up then {float(settings.get('step', 0)):g} s judged by"
        f" the gates on that window alone; doubling until a step failed, then bisecting to"
        f" {float(settings.get('precision', 0)):.0%}."
        f" Stopped: {capacity.get('stop_text', '')}. Throughput: calls completed per second during the judged"
        " hold (a backlog from the warm-up can lift it above the offered rate)."
    )
    return [
        "<h2>Capacity</h2>",
        f'<div class="card"><b>{_e(capacity.get("text", ""))}</b><div class="muted">{_e(how)}</div></div>',
        *knee_charts(capacity),
        table,
    ]


def _distribution_section(summary: Mapping[str, Any]) -> list[str]:
    """Each function's latency distribution, percentile against latency (HdrHistogram's plot)."""
    charts = distribution_charts(summary)
    if not charts:
        return []
    return [
        "<h2>Latency distribution</h2>",
        '<p class="muted">Per function, the whole run: each curve is the latency at every percentile, the'
        " tail spread out on a log scale (90%, 99%, 99.9%, ... are equally far apart), up to the maximum;"
        " callers' latency counts from the intended start, engine e2e from acceptance, attempts per"
        " endpoint attempt; all outcomes. Hover for the values at each percentile.</p>",
        *(chart for _, chart in charts),
    ]


def _tiles(summary: Mapping[str, Any]) -> str:
    acc = summary.get("accounting", {})
    rates = summary.get("rates", {})
    e2e_all = _overall_e2e(summary)
    callers = summary.get("callers") or {}
    caller_all = callers.get("latency_us") or {}
    tiles = [
        ("completed calls", f"{acc.get('completed', 0):,}"),
        ("calls/s", "—" if rates.get("calls_per_s") is None else f"{rates['calls_per_s']:.1f}"),
    ]
    if callers:
        tiles += [
            ("latency p50 (callers)", _lat(caller_all.get("p50")) if caller_all.get("count") else "—"),
            ("latency p99 (callers)", _lat(caller_all.get("p99")) if caller_all.get("count") else "—"),
            ("engine e2e p99", _lat(e2e_all.get("p99")) if e2e_all else "—"),
            ("late / dropped arrivals", f"{callers.get('late', 0):,} / {callers.get('dropped', 0):,}"),
        ]
    else:
        tiles += [
            ("e2e p50", _lat(e2e_all.get("p50")) if e2e_all else "—"),
            ("e2e p99", _lat(e2e_all.get("p99")) if e2e_all else "—"),
        ]
    tiles += [
        ("failed", "—" if rates.get("failed.ratio") is None else format_value("ratio", rates["failed.ratio"])),
        ("wrong", "—" if summary.get("checks") is None else f"{summary.get('counters', {}).get('wrong', 0):,}"),
        (
            "retries/attempts",
            "—" if rates.get("retries.ratio") is None else format_value("ratio", rates["retries.ratio"]),
        ),
        ("accounting", "balanced" if acc.get("balanced", True) else "UNBALANCED"),
    ]
    return (
        '<div class="tiles">'
        + "".join(f'<div class="tile"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in tiles)
        + "</div>"
    )


def _pool_section(pool: Mapping[str, Any] | None) -> str:
    """The endpoint pool's size and how long every stream was busy, with a hint when it was the bottleneck."""
    if not pool:
        return ""
    text = (
        f"Endpoint pool: {pool['streams']:,} streams per shard; every stream busy "
        f"{format_value('ratio', pool['busy_ratio'])} of the run (worst shard)"
    )
    if pool.get("bottleneck"):
        hint = "the pool was the bottleneck; raise engine.connections / max_streams"
        return f'<div class="card bad">{_e(text)}: {hint}.</div>'
    return f'<p class="muted">{_e(text)}.</p>'


def _overall_e2e(summary: Mapping[str, Any]) -> dict[str, Any]:
    snapshot = summary.get("snapshot")
    if not snapshot:
        return {}
    try:
        hist = Metrics(Snapshot.from_json(snapshot), 1.0).histogram("e2e")
    except ValueError:
        return {}
    return histogram_summary(hist) if hist else {}


def render_html(summary: Mapping[str, Any], run_dir: Path | None = None) -> str:
    """``report.html`` for *summary* (a :func:`build_summary` document). Locust's ``*_stats.csv``
    is read from *run_dir* for a table when given."""
    scenario = summary.get("scenario") or {}
    name = scenario.get("name", "run")
    verdict, ok = _verdict(summary)
    acc = summary.get("accounting", {})
    series = summary.get("series", [])
    charts = run_charts(series)
    gaps = [r for r in series if "error" in r]
    v = summary.get("versions", {})
    versions_text = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    scenario_json = orjson.dumps(scenario, option=orjson.OPT_INDENT_2).decode() if scenario else "(none)"
    counters = summary.get("counters", {})
    counter_rows = [[f"<code>{_e(k)}</code>", _e(val)] for k, val in counters.items()]
    counter_rows += [[f"<code>{_e(k)}</code> (gauge)", _e(val)] for k, val in summary.get("gauges", {}).items()]
    body = [
        "<header>",
        f"<h1>{_e(name)}</h1>",
        f'<div class="muted">{_e(scenario.get("description", ""))}</div>',
        f'<div class="verdict {"ok" if ok else "bad"}">{_e(verdict)}</div>',
        f'<div class="muted">{_e(summary.get("started", ""))} → {_e(summary.get("ended", ""))}'
        f" · {float(summary.get('duration_s') or 0):.1f} s"
        + (f" · exit code {_e(summary['exit_code'])}" if summary.get("exit_code") is not None else "")
        + "</div>",
        "</header>",
        _tiles(summary),
        "<h2>Gates</h2>",
        _gates_section(summary.get("gates", {}).get("results", [])),
        *_capacity_section(summary.get("capacity")),
        "<h2>Over time</h2>",
        *(charts or ['<p class="muted">No time series was recorded.</p>']),
        *(
            [f'<p class="muted">{len(gaps)} interval(s) could not be computed: {_e(gaps[0]["error"])}</p>']
            if gaps
            else []
        ),
        *_distribution_section(summary),
        "<h2>Per function</h2>",
        '<p class="muted">calls: root calls by the function they started with; e2e: accepted → end, all'
        " outcomes. attempts: every endpoint attempt of the function, as a root, child or tail call;"
        " retried: those that did not answer OK.</p>",
        _functions_section(summary.get("functions", {})),
        "<h2>Where the time went</h2>",
        '<p class="muted">Each root call\'s time from accepted to its end, split into: queue (its attempts'
        " waited in the shard for a stream to the endpoint), attempts (at the endpoint, on the wire),"
        " backoff (waiting before retries) and children (waiting in polls for child calls). The bar is the"
        " mean call; gap: how far the phases' means are from the mean e2e time. Resumes and children per"
        " root call; coroutine state bytes per resume.</p>",
        _breakdown_section(summary.get("breakdown", {})),
        "<h2>Failures</h2>",
        '<p class="muted">Endpoint attempts that did not answer OK (retried or not) and root calls that'
        " failed, expired or were cancelled, by function and status, with the first message seen (the"
        " endpoint's own when it sent one).</p>",
        _errors_section(summary.get("errors", [])),
        "<h2>Checked results</h2>",
        _wrong_section(summary.get("checks")),
        "<h2>Accounting</h2>",
        f'<div class="card accounting {"" if acc.get("balanced", True) else "bad"}">{_e(acc.get("text", ""))}</div>',
        "<h2>All latencies</h2>",
        '<p class="muted">rpc: Dispatch API RPCs; attempt: each endpoint attempt by status;'
        " e2e: root calls by outcome.</p>",
        _latency_section(summary.get("latency_us", {})),
        _workers_section(summary.get("workers")),
        "<h2>Shards</h2>",
        _pool_section(summary.get("pool")),
        _shards_section(summary.get("shards", {})),
        "<h2>Counters</h2>",
        _table(["counter", "value"], counter_rows),
        "<h2>Locust</h2>",
        (
            f"<p>requests {summary['locust']['requests']:,}, failures {summary['locust']['failures']:,}</p>"
            if summary.get("locust")
            else ""
        ),
        _locust_section(run_dir, summary.get("locust_csv", [])),
        "<h2>Scenario</h2>",
        f"<details><summary>the scenario as run</summary><pre>{_e(scenario_json)}</pre></details>",
        f'<footer>All numbers: <a href="{SUMMARY_FILE}">{SUMMARY_FILE}</a> · {_e(versions_text)}</footer>',
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(name)} · loadgen report</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_html_report(run_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write ``run_dir/report.html`` for *summary*; return its path."""
    folder = Path(run_dir)
    data = dict(summary)
    data["locust_csv"] = csv_files(folder)
    path = folder / REPORT_FILE
    path.write_text(render_html(data, folder), encoding="utf-8")
    return path
