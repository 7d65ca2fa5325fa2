"""Orchestrator faults on purpose (``[engine.chaos]``): what a shard injects, and how often (pure).

Real Dispatch delivers a ``RunRequest`` at least once and gives no order to child results, so an
endpoint must be idempotent and must not rely on when or in which order its children's results
come back. A shard with a :class:`Chaos` policy does so on purpose, each at its own rate:

* ``duplicated``: an attempt's ``RunRequest`` is sent a second time, at once, beside the first; the
  second answer is read and dropped (the call goes on with the first one only, so nothing ends
  twice), and counted ``duplicate_failed`` when it was not OK;
* ``delayed``: a child call's result reaches its parent ``delay`` seconds after the child ended;
* ``reordered``: a resume carries its results in another order than they came in;
* ``partial``: a resume carries only some of the results ready (as if the poll had asked for fewer
  with ``max_results``); the rest wait for the next poll.

Each injection is counted as ``chaos/<kind>`` (:func:`loadgen.core.counters.chaos`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CHAOS_KINDS", "Chaos"]

CHAOS_KINDS: Final = ("duplicated", "duplicate_failed", "delayed", "reordered", "partial")
"""What is counted: each injection, and the duplicates the endpoint did not answer OK."""


@dataclass(frozen=True, slots=True)
class Chaos:
    """The rates (0..1) of each fault: per attempt sent (duplicates), per child result (delays), per resume
    with two results or more (reorders, partial resumes); *delay* in seconds."""

    duplicate_rate: float = 0.0
    delay_rate: float = 0.0
    delay: float = 0.1
    reorder_rate: float = 0.0
    partial_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "delay_rate", "reorder_rate", "partial_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be from 0 to 1")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")

    @property
    def active(self) -> bool:
        """Whether anything is injected at all."""
        return bool(self.duplicate_rate or self.delay_rate or self.reorder_rate or self.partial_rate)

    @property
    def in_scheduler(self) -> bool:
        """Whether the scheduler injects anything (delays, reorders, partial resumes)."""
        return bool(self.delay_rate or self.reorder_rate or self.partial_rate)
