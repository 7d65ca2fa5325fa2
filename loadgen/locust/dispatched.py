"""Calls that Locust's users got accepted, per function, summed over every Locust process.

Each process counts the calls its users dispatched (``Dispatch`` answers x ids). Workers
ship what is new with each stats report (``events.report_to_master``); the master adds
the reports up (``events.worker_report``). The local runner reads its own count. The
web tab uses it for "dispatched" and "in flight" per function.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["REPORT_KEY", "DispatchedCalls", "dispatched"]

REPORT_KEY = "loadgen_dispatched"


class DispatchedCalls:
    """Counts per function: ``total`` in this process (plus, on a master, what workers reported)."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self._unreported: dict[str, int] = {}

    def add(self, function: str, calls: int) -> None:
        self.total[function] = self.total.get(function, 0) + calls
        self._unreported[function] = self._unreported.get(function, 0) + calls

    def take_unreported(self) -> dict[str, int]:
        """What was added since the last call (a worker's next report)."""
        taken, self._unreported = self._unreported, {}
        return taken

    def merge(self, report: Mapping[str, int]) -> None:
        """Add a worker's report."""
        for function, calls in report.items():
            self.total[str(function)] = self.total.get(str(function), 0) + int(calls)

    def reset(self) -> None:
        self.total.clear()
        self._unreported.clear()

    def sum(self) -> int:
        return sum(self.total.values())


dispatched = DispatchedCalls()
"""The process-wide counter."""
