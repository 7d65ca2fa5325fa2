"""Statistics of a load test: HDR latency histograms (µs) and counters, per shard, merged exactly.

A pure module: no IO and no clock reads. Callers measure durations themselves
and pass them in seconds.

Each shard process owns one :class:`ShardStats` and records into it on the hot
path (``record_*`` / ``count_*`` / ``set_gauge``). Once a second or so it takes
a :meth:`ShardStats.snapshot`, an immutable :class:`Snapshot`, and ships
:meth:`Snapshot.to_bytes` to whoever aggregates. The aggregator decodes them
with :meth:`Snapshot.from_bytes` and adds them up with :meth:`Snapshot.merge`
or :func:`merge_snapshots`. Merging is exact: histogram bucket counts, totals,
sums, minima and maxima combine without any loss, so percentiles of the merge
are the percentiles of one histogram that had recorded every value. The reverse,
:meth:`Snapshot.minus`, turns two cumulative snapshots into the statistics of the
interval between them (bucket counts exact as well).

Latency families, each keyed by a pair of names:

* ``rpc``: (RPC name, ``"ok"`` / ``"error"``), by :meth:`ShardStats.record_rpc`;
* ``attempt``: (function, status name such as ``"OK"`` or ``"TCP_ERROR"``), by
  :meth:`ShardStats.record_attempt`;
* ``queue``: (function, ``"attempt"``), how long an attempt waited in the shard for a stream to the
  endpoint (the dispatcher's fair queue), recorded as it is sent;
* ``e2e``: (function, ``"completed"`` / ``"failed"`` / ``"expired"`` / ``"cancelled"``), from a root
  call's acceptance to its end, by :meth:`ShardStats.record_call`.

Counters (cumulative, summed by a merge): ``accepted``, ``completed``,
``failed/<STATUS>``, ``expired``, ``cancelled`` (ended by a drain), ``attempts`` (derived from the ``attempt``
histograms), ``retries/<STATUS>``, ``lost`` and, only when it happened,
``clamped`` (values outside the histogram range, recorded at its edge).
Gauges (current values, also summed by a merge): ``in_flight`` and
``open_connections``.

Failures by (kind, function, status), with a count and the first message seen
(:meth:`ShardStats.record_failure`, :attr:`Snapshot.failures`): kind ``attempt`` (an
endpoint attempt that did not answer OK, retried or not), ``failed``, ``expired`` or ``cancelled`` (a root
call that ended so). Counts merge exactly; the sample of a merge is the first shard's (in
name order) that has one. This is what Locust's failures tab is to requests. Root calls balance:
``accepted == completed + failed + expired + cancelled + in_flight + lost``
(:meth:`Snapshot.accounting`).

Histograms are ``hdrh`` (HdrHistogram) counts over 1 µs .. 1 hour at 3
significant digits: values under 2,048 µs keep 1 µs resolution, larger ones
0.1 %. A snapshot carries each histogram in the standard HdrHistogram V2
compressed base64 form (``"HISTFAAA..."``, readable by ``HdrHistogram.decode``
and the Java/C tools) plus its exact count, sum, min and max.

Costs (``python -m loadgen.bench.stats``): recording inlines hdrh's bucket
index instead of calling ``HdrHistogram.record_value``. ``hdrh``'s ``encode()``
spends most of its time in zlib at level 6 and its ``decode()`` in building a
fresh histogram, so with ``hdrh``'s C codec at hand this module writes the same
format with zlib level 0 (about 2x larger, 4x cheaper), re-encodes only the
histograms that changed since the last snapshot, and decodes straight into
counts arrays. Without that codec it falls back to hdrh's public API (slower,
same results).
"""

from loadgen.core.stats.hdr import (
    DEFAULT_PERCENTILES,
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    HistogramSnapshot,
    LatencySummary,
    bucket_range,
    counts_index,
)
from loadgen.core.stats.recorder import SAMPLE_CHARS, CallRecorder, ShardStats
from loadgen.core.stats.snapshot import (
    FAILURE_KINDS,
    FAMILIES,
    GAUGE_IN_FLIGHT,
    GAUGE_OPEN_CONNECTIONS,
    Accounting,
    FailureKey,
    FailureTally,
    Family,
    HistKey,
    Key,
    ShardSummary,
    Snapshot,
    merge_snapshots,
)

__all__ = [
    "DEFAULT_PERCENTILES",
    "FAILURE_KINDS",
    "FAMILIES",
    "GAUGE_IN_FLIGHT",
    "GAUGE_OPEN_CONNECTIONS",
    "HIGHEST_US",
    "LOWEST_US",
    "SAMPLE_CHARS",
    "SIGNIFICANT_FIGURES",
    "Accounting",
    "CallRecorder",
    "FailureKey",
    "FailureTally",
    "Family",
    "HistKey",
    "HistogramSnapshot",
    "Key",
    "LatencySummary",
    "ShardStats",
    "ShardSummary",
    "Snapshot",
    "bucket_range",
    "counts_index",
    "merge_snapshots",
]
