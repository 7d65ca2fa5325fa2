"""``loadgen.locust``: drive loadgen shards from Locust, and see the shards' statistics in Locust.

* :class:`DispatchUser` — a Locust ``User`` with a gRPC client to the shards:
  ``self.dispatch(function, input, batch=1)`` (or ``args=[...], kwargs={...}`` for dispatch-py
  endpoints, encoded by the user's SDK codec), recorded as ``grpc`` / ``Dispatch <function>``,
  and ``self.call(function, ..., expect=..., timeout=...)``, one Locust entry per call
  (``call`` / ``call <function>``, dispatch to result), a failure when the call failed, expired,
  came back wrong or was cut short by the end of the run (:class:`CallFailed`,
  :class:`WrongResult`, :class:`CallUnfinished`). The calls of a process travel over one
  ``Session`` stream per shard (:mod:`loadgen.locust.link`); ``--dispatch-rpc unary`` makes
  them ``Dispatch`` and ``Wait`` RPCs as an SDK client's.
* :class:`OpenModelUser` and :class:`Stage` — open-model arrivals at a target rate, latency
  from the intended start, late and dropped arrivals counted.
* :class:`StatsBridge` — on the master (or local runner), polls the shards' merged
  statistics and feeds their end-to-end, per-attempt and retry statistics into Locust's
  own (table, CSV, HTML report), keeps ``latest`` / ``history``; :func:`bridge` returns it.
* The "Dispatch" and "Dispatch shards" tabs of the web UI (:mod:`loadgen.locust.webtab`).
* Options: ``--dispatch-addresses`` / ``$LOADGEN_ADDRESSES``, ``--dispatch-api-key`` /
  ``$DISPATCH_API_KEY``, ``--dispatch-sdk`` / ``$LOADGEN_SDK``, ``--dispatch-rpc`` /
  ``$LOADGEN_RPC``, ``--dispatch-caller-file`` / ``$LOADGEN_CALLER_FILE`` (the checked results,
  :mod:`loadgen.core.caller`), ``--dispatch-run-time``,
  ``--dispatch-stats-interval``, ``--dispatch-settle``.

A locustfile only needs ``from loadgen.locust import DispatchUser``; that first use
patches the process for gevent (Locust's own import does) and switches gRPC to gevent
(``grpc.experimental.gevent.init_gevent()``) before any channel exists, and registers the
plug-in's event listeners. uvloop never runs in a Locust process: the shards are separate
processes. The pure helpers (:mod:`.options`, :mod:`.dispatched`, :mod:`.checked`) import without
Locust; ``Stage`` and the arrival schedules are :mod:`loadgen.core.arrivals`'.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadgen.core.arrivals import ArrivalSchedule, Stage
    from loadgen.locust.bridge import BridgeError, StatsBridge
    from loadgen.locust.openmodel import OpenModelUser
    from loadgen.locust.plugin import bridge
    from loadgen.locust.user import CallFailed, CallUnfinished, DispatchFailed, DispatchUser, WrongResult

__all__ = [
    "ArrivalSchedule",
    "BridgeError",
    "CallFailed",
    "CallUnfinished",
    "DispatchFailed",
    "DispatchUser",
    "OpenModelUser",
    "Stage",
    "StatsBridge",
    "WrongResult",
    "bridge",
]

_HOMES = {
    "ArrivalSchedule": "loadgen.core.arrivals",
    "Stage": "loadgen.core.arrivals",
    "BridgeError": "loadgen.locust.bridge",
    "StatsBridge": "loadgen.locust.bridge",
    "CallFailed": "loadgen.locust.user",
    "CallUnfinished": "loadgen.locust.user",
    "WrongResult": "loadgen.locust.user",
    "DispatchFailed": "loadgen.locust.user",
    "DispatchUser": "loadgen.locust.user",
    "OpenModelUser": "loadgen.locust.openmodel",
    "bridge": "loadgen.locust.plugin",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'loadgen.locust' has no attribute {name!r}")
    if home != "loadgen.core.arrivals":
        importlib.import_module("loadgen.locust.plugin")  # gevent + gRPC set-up and the event listeners
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
