"""What the callers saw: results checked where they were received, and the file that carries them.

The shards know how every call ended; only the caller knows what it expected. Locust's
users judge each result they wait for (:meth:`CallerChecks.record_result`): per function,
the results received, completed and failed (by final status), those compared with an
expected value and those that were **wrong**, a few samples of the wrong ones (function,
expected, got), and the waits cancelled because the run ended first (**unfinished**).

Across processes: each Locust worker ships what is new since its last report
(:meth:`CallerChecks.take_unreported`, with Locust's ``report_to_master``); the master, or the
local runner, adds the reports up (:meth:`CallerChecks.merge`). Counts merge exactly; samples
keep the first :data:`MAX_SAMPLES` per function.

The file (``caller.json`` in a run folder, written by the master or local runner every few
seconds and when it quits, always through a rename so a reader never sees half of it)::

    {
      "format": "loadgen.caller/1",
      "written_at": 1767225600.5,           # unix time of this write
      "started_at": 1767225590.1,           # the test started (null before)
      "stopping_at": 1767225600.1,          # the test began to stop (null until then)
      "checks": {
        "greet": {"results": 10, "completed": 9, "failed": {"PERMANENT_ERROR": 1},
                  "checked": 9, "wrong": 1, "unfinished": 0,
                  "samples": [{"expected": "'hello bob!'", "got": "'hello bob?'"}]}
      },
      "latency": {                          # caller-side statistics (loadgen.core.stats.caller)
        "snapshot": {...},                  # the exact merge of every process's latest report
        "processes": {"locust-0": {"seq": 7, "final": true}}
      }
    }

Readers ignore keys they do not know. Pure: the file is written by the Locust plug-in (:mod:`loadgen.locust.checked`)
and read by ``loadgen run`` (:mod:`loadgen.runs.locust_process`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from loadgen.core.stats.caller import LatestReports
from loadgen.core.stats.snapshot import Snapshot

__all__ = [
    "CALLER_FILE",
    "CALLER_FILE_INTERVAL",
    "FORMAT",
    "MAX_SAMPLES",
    "CallerChecks",
    "CallerFile",
    "FunctionChecks",
    "WrongSample",
    "caller_document",
    "parse_caller_document",
]

FORMAT: Final = "loadgen.caller/1"
CALLER_FILE: Final = "caller.json"
CALLER_FILE_INTERVAL: Final = 2.0
"""Seconds between two writes of the caller file during a test (and once at its start, and at its end)."""
MAX_SAMPLES: Final = 5


@dataclass(frozen=True, slots=True)
class WrongSample:
    """A wrong result, for people: what was expected and what came, both as text (``repr``)."""

    expected: str
    got: str

    def to_json(self) -> dict[str, str]:
        return {"expected": self.expected, "got": self.got}


@dataclass(slots=True)
class FunctionChecks:
    """One function's results as its callers received them (see the module's documentation)."""

    results: int = 0
    completed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    checked: int = 0
    wrong: int = 0
    unfinished: int = 0
    samples: list[WrongSample] = field(default_factory=list)

    def add(self, other: FunctionChecks) -> None:
        self.results += other.results
        self.completed += other.completed
        for status, n in other.failed.items():
            self.failed[status] = self.failed.get(status, 0) + n
        self.checked += other.checked
        self.wrong += other.wrong
        self.unfinished += other.unfinished
        room = MAX_SAMPLES - len(self.samples)
        if room > 0:
            self.samples.extend(other.samples[:room])

    def to_json(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "completed": self.completed,
            "failed": dict(sorted(self.failed.items())),
            "checked": self.checked,
            "wrong": self.wrong,
            "unfinished": self.unfinished,
            "samples": [sample.to_json() for sample in self.samples],
        }

    @classmethod
    def from_json(cls, data: Any) -> FunctionChecks:
        if not isinstance(data, dict):
            raise ValueError("a function's checks must be an object")
        counts = {}
        for name in ("results", "completed", "checked", "wrong", "unfinished"):
            value = data.get(name, 0)
            if type(value) is not int or value < 0:
                raise ValueError(f"checks {name} must be a non-negative integer")
            counts[name] = value
        failed = data.get("failed", {})
        if not isinstance(failed, dict) or not all(type(v) is int and v >= 0 for v in failed.values()):
            raise ValueError("checks failed must map statuses to counts")
        samples = []
        for sample in data.get("samples", [])[:MAX_SAMPLES]:
            if not isinstance(sample, dict):
                raise ValueError("a wrong sample must be an object")
            samples.append(WrongSample(str(sample.get("expected", "")), str(sample.get("got", ""))))
        return cls(failed={str(k): v for k, v in failed.items()}, samples=samples, **counts)


class CallerChecks:
    """The checked results of one process (plus, on a master, what its workers reported)."""

    def __init__(self) -> None:
        self.functions: dict[str, FunctionChecks] = {}
        self._unreported: dict[str, FunctionChecks] = {}

    def _both(self, function: str) -> tuple[FunctionChecks, FunctionChecks]:
        total = self.functions.get(function)
        if total is None:
            total = self.functions[function] = FunctionChecks()
        new = self._unreported.get(function)
        if new is None:
            new = self._unreported[function] = FunctionChecks()
        return total, new

    def record_result(
        self, function: str, status: str, *, checked: bool = False, wrong: WrongSample | None = None
    ) -> None:
        """A result came back: final *status* (``"OK"``, ``"TEMPORARY_ERROR"``, ...), whether it was
        *checked* against an expected value, and *wrong* (a sample) if it did not match."""
        for part in self._both(function):
            part.results += 1
            if status == "OK":
                part.completed += 1
            else:
                part.failed[status] = part.failed.get(status, 0) + 1
            if checked:
                part.checked += 1
            if wrong is not None:
                part.wrong += 1
                if len(part.samples) < MAX_SAMPLES:
                    part.samples.append(wrong)

    def record_unfinished(self, function: str) -> None:
        """A wait was cancelled: the run ended before the call did."""
        for part in self._both(function):
            part.unfinished += 1

    def take_unreported(self) -> dict[str, Any]:
        """What was recorded since the last call, as JSON (a worker's next report)."""
        taken, self._unreported = self._unreported, {}
        return {function: checks.to_json() for function, checks in taken.items()}

    def merge(self, report: Mapping[str, Any]) -> None:
        """Add a worker's report (:meth:`take_unreported` of another process)."""
        for function, data in report.items():
            part = FunctionChecks.from_json(data)
            total = self.functions.get(str(function))
            if total is None:
                total = self.functions[str(function)] = FunctionChecks()
            total.add(part)

    def reset(self) -> None:
        self.functions.clear()
        self._unreported.clear()

    def to_json(self) -> dict[str, Any]:
        return {function: checks.to_json() for function, checks in sorted(self.functions.items())}

    def total(self, name: str) -> int:
        """``results``, ``completed``, ``checked``, ``wrong`` or ``unfinished`` over every function."""
        return sum(getattr(checks, name) for checks in self.functions.values())


@dataclass(frozen=True)
class CallerFile:
    """A read ``caller.json``: the checks per function and the test's start and stop times."""

    checks: dict[str, FunctionChecks]
    written_at: float | None = None
    started_at: float | None = None
    stopping_at: float | None = None
    latency: Snapshot | None = None
    """The callers' latency, lag and arrival counts, merged over the Locust processes (None: not recorded)."""
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per Locust process (by its name): the ``seq`` of its latest report and whether it was ``final``."""

    def total(self, name: str) -> int:
        return sum(getattr(checks, name) for checks in self.checks.values())


def caller_document(
    checks: CallerChecks,
    *,
    started_at: float | None,
    stopping_at: float | None,
    now: float,
    latency: LatestReports | None = None,
) -> dict[str, Any]:
    """The ``caller.json`` document of *checks* and (when given) the processes' *latency* reports."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "written_at": now,
        "started_at": started_at,
        "stopping_at": stopping_at,
        "checks": checks.to_json(),
    }
    if latency is not None:
        document["latency"] = {
            "snapshot": latency.merged().to_json(),
            "processes": {
                report.process: {"seq": report.seq, "final": report.final}
                for _, report in sorted(latency.reports().items())
            },
        }
    return document


def _time(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_caller_document(data: Any, where: str) -> CallerFile:
    """A ``caller.json`` document read back; ``ValueError`` (naming *where*) if it is not one."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{where}: not a {FORMAT} document")
    raw = data.get("checks", {})
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: checks must be an object")
    latency: Snapshot | None = None
    processes: dict[str, dict[str, Any]] = {}
    section = data.get("latency")
    if section is not None:
        if not isinstance(section, dict):
            raise ValueError(f"{where}: latency must be an object")
        try:
            latency = Snapshot.from_json(section.get("snapshot"))
        except ValueError as exc:
            raise ValueError(f"{where}: latency: {exc}") from None
        found = section.get("processes", {})
        processes = (
            {str(k): dict(v) for k, v in found.items() if isinstance(v, dict)} if isinstance(found, dict) else {}
        )
    return CallerFile(
        {str(function): FunctionChecks.from_json(value) for function, value in raw.items()},
        _time(data.get("written_at")),
        _time(data.get("started_at")),
        _time(data.get("stopping_at")),
        latency,
        processes,
    )
