"""The Locust process of ``loadgen worker``: idle user classes until the master's configuration comes.

At import (from the locustfile) it returns two placeholder classes named as the scenario's
classes are (``ScenarioUser``, ``ScenarioArrivals``), which do nothing, and sets the plug-in's
worker hooks (:data:`loadgen.locust.cluster.worker_side`). When the master's configuration
arrives, it is handed to the parent over the channel (:mod:`.worker_channel`); once the
parent's shards serve, the scenario's class, pointed at them with the run's API key, takes the
placeholder's place, and the master hears the worker is ready. The parent's shard snapshots
(every second) become the snapshot each Locust report carries. The parent gone, this process
goes too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]
import locust.runners
import orjson
from locust import User, constant, task

from loadgen.locust.cluster import worker_side
from loadgen.runs.scenario import Scenario, parse_redacted
from loadgen.runs.worker_channel import Channel, ChannelClosed

__all__ = ["SHARDS_TIMEOUT", "serve"]

logger = logging.getLogger(__name__)

SHARDS_TIMEOUT = 90.0
"""How long the configuration waits for the parent's shards to serve."""

REPORT_INTERVAL = 1.0
"""Seconds between two Locust reports of this worker (Locust's default is 3): the master's progress lines
and a lost worker's count of calls in flight are this fresh."""


def _placeholder(name: str) -> type:
    class Idle(User):
        wait_time = constant(1)

        @task
        def idle(self) -> None:
            """No configuration yet: nothing to do."""

    Idle.__name__ = Idle.__qualname__ = name
    return Idle


def serve(channel: Channel, build: Callable[[Scenario], type]) -> tuple[type, type]:
    """Wire this process to its parent over *channel*; return the placeholder classes."""
    answer = gevent.event.AsyncResult()

    def read() -> None:
        while True:
            try:
                message = channel.receive()
            except ChannelClosed as exc:
                logger.error("loadgen worker: its parent process is gone (%s): exiting", exc)
                os._exit(3)
            if message["kind"] == "snapshot":
                worker_side.snapshot = orjson.dumps(message.get("data"))
            elif message["kind"] in ("shards", "failed"):
                answer.set(message)

    def configure(environment: Any, config: dict[str, Any]) -> dict[str, Any]:
        scenario = parse_redacted(config.get("scenario") or {}, "the master's scenario")
        channel.send("config", **config)
        reply = answer.get(timeout=SHARDS_TIMEOUT)
        if reply["kind"] == "failed":
            raise RuntimeError(str(reply.get("reason", "the shards did not start")))
        user_class: Any = build(scenario)
        addresses = [str(address) for address in reply.get("addresses", [])]
        user_class.addresses = tuple(addresses)
        user_class.api_key = str(config.get("api_key", ""))
        classes = environment.user_classes
        classes[:] = [user_class if c.__name__ == user_class.__name__ else c for c in classes]
        return {"host": str(reply.get("host", "")), "shards": len(addresses)}

    def refused(reason: str) -> None:
        channel.send("refused", reason=reason)

    locust.runners.WORKER_REPORT_INTERVAL = REPORT_INTERVAL  # read by the worker's report loop at each turn
    worker_side.configure = configure
    worker_side.refused = refused
    gevent.spawn(read)
    return _placeholder("ScenarioUser"), _placeholder("ScenarioArrivals")
