"""Terminal root calls and the bounded store that keeps them for ``Wait`` (oldest evicted first)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from loadgen.core.scheduler import CallFinished, Outcome
from loadgen.pb import call_pb2

__all__ = ["RESULT_OVERHEAD_BYTES", "CallOutcome", "ResultStore"]


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
        outcome = _new(cls)
        _set_result(outcome, finished.result)
        _set_status(outcome, finished.status)
        _set_outcome(outcome, finished.outcome)
        _set_function(outcome, finished.function)
        _set_accepted_at(outcome, finished.accepted_at)
        _set_finished_at(outcome, finished.finished_at)
        _set_attempts(outcome, finished.attempts)
        return outcome


# CallOutcome.of, once per call ended, fills the slots directly: a frozen dataclass's __init__ sets each
# field through object.__setattr__ (2.5x the cost).
_new = object.__new__


def _setter(name: str) -> Callable[[CallOutcome, Any], None]:
    """The ``__set__`` of the slot *name* of :class:`CallOutcome`."""
    return cast(Callable[[CallOutcome, Any], None], CallOutcome.__dict__[name].__set__)


_set_result = _setter("result")
_set_status = _setter("status")
_set_outcome = _setter("outcome")
_set_function = _setter("function")
_set_accepted_at = _setter("accepted_at")
_set_finished_at = _setter("finished_at")
_set_attempts = _setter("attempts")


RESULT_OVERHEAD_BYTES: Final = 1100
"""What keeping one result costs beside its serialized size (the outcome, its id, the store's entry), measured."""


class ResultStore:
    """The last outcomes by dispatch id, at most *retention* of them and *max_bytes* in all (each counted
    as its result's size plus :data:`RESULT_OVERHEAD_BYTES`); adding one more evicts the oldest first.
    The newest one is always kept, however large (a ``Wait`` already pending got it anyway)."""

    def __init__(self, retention: int, max_bytes: int | None = None) -> None:
        self.retention = max(1, retention)
        self.max_bytes = max_bytes
        self.bytes = 0
        """Bytes held now, as counted above."""
        self.evicted = 0
        """Outcomes evicted so far."""
        self._results: collections.OrderedDict[str, tuple[CallOutcome, int]] = collections.OrderedDict()

    def add(self, dispatch_id: str, outcome: CallOutcome, size: int | None = None) -> list[str]:
        """Keep *outcome* (*size*: its result's serialized size, measured if not given); return the ids
        evicted to make room, oldest first."""
        cost = (outcome.result.ByteSize() if size is None else size) + RESULT_OVERHEAD_BYTES
        results = self._results
        previous = results.pop(dispatch_id, None)
        if previous is not None:
            self.bytes -= previous[1]
        results[dispatch_id] = (outcome, cost)
        self.bytes += cost
        evicted: list[str] = []
        limit = self.max_bytes
        while len(results) > 1 and (len(results) > self.retention or (limit is not None and self.bytes > limit)):
            old_id, (_, old_cost) = results.popitem(last=False)
            self.bytes -= old_cost
            evicted.append(old_id)
        self.evicted += len(evicted)
        return evicted

    def get(self, dispatch_id: str) -> CallOutcome | None:
        found = self._results.get(dispatch_id)
        return found[0] if found is not None else None

    def __contains__(self, dispatch_id: object) -> bool:
        return dispatch_id in self._results

    def __len__(self) -> int:
        return len(self._results)
