"""``loadgen compare BASELINE CURRENT``: did a run get slower than an earlier one?

Each argument is a run folder (``results/<timestamp>-<scenario>/``) or its ``summary.json``
(:mod:`loadgen.runs.results`). For every latency histogram present in both runs (``e2e``,
``attempt`` and ``rpc``, per key: ``e2e echo completed``, ``attempt fail TEMPORARY_ERROR``,
``rpc Dispatch ok``) and each chosen percentile, and for throughput (completed calls per
second, overall and per function), it computes the relative change ``(current - baseline) /
baseline`` and flags a regression when latency went up, or throughput down, by more than
``--max-regression`` (default 10%). Rows with fewer than ``--min-count`` samples in either
run are shown but not judged: their tail percentiles are noise.

Percentiles come from the exact HDR histograms kept in ``summary.json`` (``snapshot``), so
any percentile can be compared (``--percentiles p50,p75,p99.9``); without them, from the
summary's ``latency_us`` (p50, p90, p99, p99.9).

Exit codes: 0 no regression, 1 at least one regression, 2 unreadable input or bad options.
:func:`compare_main` is the command; :func:`compare_summaries` and :func:`format_table` the
pure parts. The only IO: reading the two summaries, printing, and ``--json`` if given.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import orjson

from loadgen.core.stats import FAMILIES, Family, Snapshot
from loadgen.runs.metrics import format_value
from loadgen.runs.results import SUMMARY_FILE, SUMMARY_FORMAT

__all__ = [
    "EXIT_NO_REGRESSION",
    "EXIT_REGRESSION",
    "EXIT_UNREADABLE",
    "CompareError",
    "Comparison",
    "Row",
    "add_arguments",
    "compare_main",
    "compare_summaries",
    "format_table",
    "load_summary",
    "parse_percentiles",
    "parse_threshold",
    "run",
]

EXIT_NO_REGRESSION: Final = 0
EXIT_REGRESSION: Final = 1
EXIT_UNREADABLE: Final = 2
DEFAULT_PERCENTILES: Final[tuple[float, ...]] = (50.0, 90.0, 99.0)

Verdict = Literal["ok", "REGRESSION", "improved", "few samples", "baseline only", "current only"]


class CompareError(ValueError):
    """A summary that cannot be read or used, or a bad option."""


@dataclass(frozen=True, slots=True)
class Row:
    """One compared number: *metric* (``"e2e p99"``, ``"calls/s"``), *key* (``"echo completed"``),
    both values (µs for latencies, calls/s for throughput; None when absent), the relative
    *change* (None when it cannot be computed) and the verdict."""

    metric: str
    key: str
    kind: Literal["latency", "rate"]
    baseline: float | None
    current: float | None
    change: float | None
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "key": self.key,
            "kind": self.kind,
            "baseline": self.baseline,
            "current": self.current,
            "change": None if self.change is None or math.isinf(self.change) else self.change,
            "verdict": self.verdict,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every row, with the options used."""

    rows: tuple[Row, ...]
    max_regression: float
    min_count: int
    percentiles: tuple[float, ...]
    baseline_label: str = "baseline"
    current_label: str = "current"

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == "REGRESSION"]

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else EXIT_NO_REGRESSION

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_label,
            "current": self.current_label,
            "max_regression": self.max_regression,
            "min_count": self.min_count,
            "percentiles": list(self.percentiles),
            "regressions": len(self.regressions),
            "rows": [row.to_json() for row in self.rows],
        }


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------


def load_summary(path: str | Path) -> dict[str, Any]:
    """The ``summary.json`` at *path*, or in the folder *path*; :class:`CompareError` if unusable."""
    file = Path(path)
    if file.is_dir():
        file = file / SUMMARY_FILE
    try:
        data = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise CompareError(f"{file}: cannot read it: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CompareError(f"{file}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT:
        raise CompareError(f"{file}: not a loadgen run summary ({SUMMARY_FORMAT})")
    return data


def parse_threshold(text: str) -> float:
    """``"10%"`` or ``"0.1"`` → 0.1; :class:`CompareError` unless a non-negative finite number."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise CompareError(f'expected a fraction or a percentage such as "10%" or "0.1", got {text!r}') from None
    if not math.isfinite(value) or value < 0:
        raise CompareError(f"expected a non-negative threshold, got {text!r}")
    return value


def parse_percentiles(text: str) -> tuple[float, ...]:
    """``"p50,p99,p99.9"`` (or ``"50,99"``) → (50.0, 99.0, 99.9); :class:`CompareError` if bad."""
    out: list[float] = []
    for part in text.split(","):
        item = part.strip().removeprefix("p")
        try:
            q = float(item)
        except ValueError:
            raise CompareError(f"expected percentiles such as p50,p99,p99.9, got {text!r}") from None
        if not 0 <= q <= 100:
            raise CompareError(f"a percentile is between 0 and 100, got {part.strip()!r}")
        out.append(q)
    if not out:
        raise CompareError("expected at least one percentile")
    return tuple(out)


_Latencies = dict[tuple[Family, str, str], dict[float | str, float]]


def _latencies(summary: Mapping[str, Any], qs: Sequence[float], label: str) -> _Latencies:
    """``{(family, a, b): {"count": n, q: µs, ...}}``, from the HDR snapshot when there is one."""
    out: _Latencies = {}
    snapshot = summary.get("snapshot")
    if snapshot:
        try:
            snap = Snapshot.from_json(snapshot)
        except ValueError as exc:
            raise CompareError(f"{label}: its snapshot cannot be read: {exc}") from None
        for (family, a, b), hist in snap.histograms.items():
            values: dict[float | str, float] = {"count": float(hist.count)}
            for q, value in hist.percentiles(qs).items():
                values[q] = value
            out[(family, a, b)] = values
        return out
    latency = summary.get("latency_us", {})
    for family in FAMILIES:
        for a, by_b in (latency.get(family) or {}).items():
            for b, stats in by_b.items():
                values = {"count": float(stats.get("count", 0))}
                for q in qs:
                    name = f"p{q:g}"
                    if name not in stats:
                        raise CompareError(f"{label}: has no {name} for {family} {a} {b} (and no snapshot)")
                    values[q] = float(stats[name])
                out[(family, a, b)] = values
    return out


def _rates(summary: Mapping[str, Any]) -> dict[str, tuple[float | None, int]]:
    """``{"": (calls/s, completed), function: (calls/s, completed)}``."""
    rates = summary.get("rates") or {}
    counters = summary.get("counters") or {}
    out: dict[str, tuple[float | None, int]] = {"": (rates.get("calls_per_s"), int(counters.get("completed", 0)))}
    for name, f in (summary.get("functions") or {}).items():
        out[name] = (f.get("calls_per_s"), int(f.get("completed", 0)))
    return out


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------


def _change(baseline: float, current: float) -> float:
    if baseline == 0:
        return 0.0 if current == 0 else math.inf
    return (current - baseline) / baseline


def _judge(change: float, threshold: float, worse_when_up: bool) -> Verdict:
    signed = change if worse_when_up else -change
    if signed > threshold:
        return "REGRESSION"
    if signed < -threshold:
        return "improved"
    return "ok"


def compare_summaries(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    max_regression: float = 0.10,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    min_count: int = 100,
    families: Iterable[Family] = FAMILIES,
    baseline_label: str = "baseline",
    current_label: str = "current",
) -> Comparison:
    """Compare two ``summary.json`` documents (see the module docstring); pure."""
    qs = tuple(float(q) for q in percentiles)
    chosen = tuple(families)
    rows: list[Row] = []
    base_rates, cur_rates = _rates(baseline), _rates(current)
    for name in sorted(set(base_rates) | set(cur_rates), key=lambda n: (n != "", n)):
        key = name or "all"
        b_rate, b_n = base_rates.get(name, (None, 0))
        c_rate, c_n = cur_rates.get(name, (None, 0))
        verdict: Verdict
        if name not in cur_rates or name not in base_rates:
            verdict = "baseline only" if name not in cur_rates else "current only"
            rows.append(Row("calls/s", key, "rate", b_rate, c_rate, None, verdict))
            continue
        if b_rate is None or c_rate is None:  # a run of no length
            rows.append(Row("calls/s", key, "rate", b_rate, c_rate, None, "few samples"))
            continue
        change = _change(b_rate, c_rate)
        few = min(b_n, c_n) < min_count
        verdict = "few samples" if few else _judge(change, max_regression, worse_when_up=False)
        rows.append(Row("calls/s", key, "rate", b_rate, c_rate, change, verdict))
    base_lat = _latencies(baseline, qs, baseline_label)
    cur_lat = _latencies(current, qs, current_label)
    order = {family: i for i, family in enumerate(FAMILIES[::-1])}  # e2e, attempt, rpc
    keys = sorted((k for k in set(base_lat) | set(cur_lat) if k[0] in chosen), key=lambda k: (order[k[0]], k[1], k[2]))
    for family, a, b in keys:
        label = f"{a} {b}"
        before, after = base_lat.get((family, a, b)), cur_lat.get((family, a, b))
        for q in qs:
            metric = f"{family} p{q:g}"
            if before is None or after is None:
                verdict = "current only" if before is None else "baseline only"
                value_b = None if before is None else before[q]
                value_c = None if after is None else after[q]
                rows.append(Row(metric, label, "latency", value_b, value_c, None, verdict))
                continue
            change = _change(before[q], after[q])
            few = min(before["count"], after["count"]) < min_count
            verdict = "few samples" if few else _judge(change, max_regression, worse_when_up=True)
            rows.append(Row(metric, label, "latency", before[q], after[q], change, verdict))
    return Comparison(tuple(rows), max_regression, min_count, qs, baseline_label, current_label)


def _value(kind: str, value: float | None) -> str:
    if value is None:
        return "—"
    return format_value("latency", value) if kind == "latency" else f"{value:.1f}"


def _percent(change: float | None) -> str:
    if change is None:
        return "—"
    if math.isinf(change):
        return "+inf%"
    return f"{change * 100:+.1f}%"


def format_table(comparison: Comparison) -> str:
    """The comparison as a text table, regressions marked, and a closing verdict line."""
    head = ["metric", "key", "baseline", "current", "change", "verdict"]
    body = [
        [
            row.metric,
            row.key,
            _value(row.kind, row.baseline),
            _value(row.kind, row.current),
            _percent(row.change),
            row.verdict,
        ]
        for row in comparison.rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [
        f"baseline: {comparison.baseline_label}",
        f"current:  {comparison.current_label}",
        f"a regression: latency up or throughput down by more than {comparison.max_regression * 100:g}%"
        f" (percentiles {', '.join(f'p{q:g}' for q in comparison.percentiles)};"
        f" rows with fewer than {comparison.min_count} samples are not judged)",
        "",
    ]
    for line in [head, *body]:
        cells = [cell.ljust(widths[i]) if i < 2 or i == 5 else cell.rjust(widths[i]) for i, cell in enumerate(line)]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    regressions = comparison.regressions
    if regressions:
        listed = ", ".join(f"{r.metric} {r.key} ({_percent(r.change)})" for r in regressions[:10])
        more = f" and {len(regressions) - 10} more" if len(regressions) > 10 else ""
        lines.append(f"{len(regressions)} regression(s) beyond {comparison.max_regression * 100:g}%: {listed}{more}")
    else:
        lines.append(f"no regression beyond {comparison.max_regression * 100:g}%")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``compare`` options, for a parser of the ``loadgen`` command line."""
    parser.add_argument("baseline", help="the earlier run: its folder or its summary.json")
    parser.add_argument("current", help="the run to judge: its folder or its summary.json")
    parser.add_argument(
        "--max-regression",
        default="10%",
        help="largest allowed rise of a latency percentile or fall of throughput (default: %(default)s)",
    )
    parser.add_argument(
        "--percentiles", default="p50,p90,p99", help="latency percentiles to compare (default: %(default)s)"
    )
    parser.add_argument(
        "--min-count",
        type=int,
        default=100,
        help="judge only rows with at least this many samples in both runs (default: %(default)s)",
    )
    parser.add_argument(
        "--families",
        default="e2e,attempt,rpc",
        help="latency families to compare (default: %(default)s)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the comparison as JSON to PATH")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``compare`` with parsed *args*; print the table to *out*; return the exit code."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    try:
        threshold = parse_threshold(args.max_regression)
        qs = parse_percentiles(args.percentiles)
        families = tuple(part.strip() for part in args.families.split(",") if part.strip())
        unknown = [f for f in families if f not in FAMILIES]
        if unknown or not families:
            raise CompareError(f"--families: expected some of {', '.join(FAMILIES)}, got {args.families!r}")
        if args.min_count < 0:
            raise CompareError("--min-count must be at least 0")
        baseline, current = load_summary(args.baseline), load_summary(args.current)
        comparison = compare_summaries(
            baseline,
            current,
            max_regression=threshold,
            percentiles=qs,
            min_count=args.min_count,
            families=families,  # checked against FAMILIES above
            baseline_label=_label(args.baseline, baseline),
            current_label=_label(args.current, current),
        )
    except CompareError as exc:
        print(f"loadgen compare: {exc}", file=stderr)
        return EXIT_UNREADABLE
    print(format_table(comparison), file=stdout)
    if args.json:
        try:
            Path(args.json).write_bytes(orjson.dumps(comparison.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            print(f"loadgen compare: cannot write {args.json}: {exc.strerror or exc}", file=stderr)
            return EXIT_UNREADABLE
    return comparison.exit_code


def _label(path: str, summary: Mapping[str, Any]) -> str:
    name = (summary.get("scenario") or {}).get("name", "?")
    return f"{path} ({name}, started {summary.get('started', '?')}, {float(summary.get('duration_s') or 0):.1f}s)"


def compare_main(argv: Sequence[str] | None = None) -> int:
    """``loadgen compare BASELINE CURRENT [--max-regression 10%] ...``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="loadgen compare",
        description="Compare two runs' summary.json: flag latency percentiles that rose, or throughput "
        "that fell, by more than --max-regression. Exit 0: no regression, 1: regression, 2: unreadable input.",
    )
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_UNREADABLE
    return run(args)


if __name__ == "__main__":
    sys.exit(compare_main())
