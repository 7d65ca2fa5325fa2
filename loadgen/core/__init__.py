"""Pure state, no IO and no clock: the scheduler, terminal results, typed counters, statistics, arrivals.

Imports :mod:`loadgen.protocol` only; everything here is driven by callers that pass ``now``.
"""
