"""Terminal root calls and the bounded store that keeps them for ``Wait`` (oldest evicted first)."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from loadgen.core.scheduler import CallFinished, Outcome
from loadgen.pb import call_pb2

__all__ = ["CallOutcome", "ResultStore"]


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """A terminal root call: its result, status, how it ended, when, and after how many attempts."""

    result: call_pb2.CallResult
    status: int
    outcome: Outcome
    function: str = ""
    accepted_at: float = 0.0
    finished_at: float = 0.0
    attempts: int = 0

    @classmethod
    def of(cls, finished: CallFinished) -> CallOutcome:
        """The outcome of a root call the scheduler finished."""
        return cls(
            finished.result,
            finished.status,
            finished.outcome,
            finished.function,
            finished.accepted_at,
            finished.finished_at,
            finished.attempts,
        )


class ResultStore:
    """The last *retention* outcomes by dispatch id; adding one more evicts the oldest."""

    def __init__(self, retention: int) -> None:
        self.retention = max(1, retention)
        self._results: collections.OrderedDict[str, CallOutcome] = collections.OrderedDict()

    def add(self, dispatch_id: str, outcome: CallOutcome) -> str | None:
        """Keep *outcome*; return the id evicted to make room, if any."""
        self._results[dispatch_id] = outcome
        if len(self._results) > self.retention:
            evicted, _ = self._results.popitem(last=False)
            return evicted
        return None

    def get(self, dispatch_id: str) -> CallOutcome | None:
        return self._results.get(dispatch_id)

    def __contains__(self, dispatch_id: object) -> bool:
        return dispatch_id in self._results

    def __len__(self) -> int:
        return len(self._results)
