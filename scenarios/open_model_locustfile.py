"""An open-model locustfile: calls arrive at a target rate, whatever the latency.

Stages come from ``$LOADGEN_OPEN_STAGES`` as ``seconds:rate`` pairs (arrivals per second for
all Locust processes together; a trailing ``r`` ramps linearly from the previous rate),
by default ``10:50,20:200r,30:200``. Locust's users are the pool of executors: give enough
of them (rate x latency, with room to spare) and spawn them at once::

    export LOADGEN_ADDRESSES=... DISPATCH_API_KEY=...
    locust -f scenarios/open_model_locustfile.py --headless -u 100 -r 100 --csv results/open

The test stops by itself after the last stage. Latency from each arrival's *intended*
start is the ``open`` / ``OpenArrivals`` entry; ``late OpenArrivals`` and ``dropped
OpenArrivals`` count arrivals the pool could not start on time.
"""

from __future__ import annotations

import os

from loadgen.locust import OpenModelUser, Stage


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``"10:50,20:200r"`` → ``(Stage(10, 50), Stage(20, 200, ramp=True))``."""
    stages = []
    for item in text.replace(" ", "").split(","):
        if item:
            seconds, _, rate = item.partition(":")
            ramp = rate.endswith("r")
            stages.append(Stage(float(seconds), float(rate.removesuffix("r")), ramp=ramp))
    return tuple(stages)


class OpenArrivals(OpenModelUser):
    """Each arrival dispatches one ``sleep`` call of 5 ms and waits for its result."""

    stages = parse_stages(os.environ.get("LOADGEN_OPEN_STAGES", "10:50,20:200r,30:200"))
    grace = 2.0

    def arrival(self) -> None:
        self.dispatch_and_wait("sleep", {"ms": 5}, timeout=30)
