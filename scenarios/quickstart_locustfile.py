"""A plain locustfile: the quickstart's call mix against running loadgen shards.

Start the shards (they print the addresses and the API key to export)::

    loadgen serve http://127.0.0.1:8000          # with `loadgen endpoint` running
    export LOADGEN_ADDRESSES=127.0.0.1:4450      # or the shard addresses, comma-separated
    export DISPATCH_API_KEY=...

then run Locust as usual::

    locust -f scenarios/quickstart_locustfile.py --headless -u 8 -r 8 -t 30s --csv results/run
    locust -f scenarios/quickstart_locustfile.py --processes 2          # web UI on :8089

Besides Locust's own ``grpc`` entries, the shards' end-to-end (``e2e``), per-attempt
(``attempt``) and retry (``retry``) statistics appear in Locust's table, CSV files and
report, and the web UI has "Dispatch" and "Dispatch shards" tabs.
"""

from __future__ import annotations

from locust import between, task

from loadgen.locust import DispatchUser

ECHO_BATCH = 10
"""Calls per Dispatch of ``echo``; every other function is dispatched one call at a time."""


class QuickstartUser(DispatchUser):
    """The quickstart mix: mostly fire-and-forget, some calls waited for."""

    wait_time = between(0.05, 0.15)

    @task(5)
    def echo(self) -> None:
        self.dispatch("echo", {"message": "hello"}, batch=ECHO_BATCH)

    @task(2)
    def sleep(self) -> None:
        self.dispatch_and_wait("sleep", {"ms": 5}, timeout=30)

    @task(2)
    def fanout(self) -> None:
        self.dispatch_and_wait("fanout", {"n": 3}, timeout=30)

    @task(1)
    def chain(self) -> None:
        self.dispatch("chain", {"depth": 3})

    @task(1)
    def fail(self) -> None:
        self.dispatch("fail", {"status": "TEMPORARY_ERROR", "times": 1})
