"""A plain locustfile against ``loadgen serve`` in front of the dispatch-py 0.7.1 endpoint (``sdk_app.py``).

Run with ``LOADGEN_SDK=dispatch-py`` (or ``--dispatch-sdk dispatch-py``), ``LOADGEN_ADDRESSES`` and
``DISPATCH_API_KEY``. ``greet`` and ``add`` come back right; ``square`` is expected to be -1, which
it never is, so its ``call`` entries are failures ("wrong result") and Locust exits 1.
"""

from __future__ import annotations

from locust import constant, task

from loadgen.locust import DispatchUser


class SdkCaller(DispatchUser):
    wait_time = constant(0.05)

    @task(2)
    def greet(self) -> None:
        self.dispatch_and_wait("greet", args=["bob"], kwargs={"punct": "!"}, expect="hello bob!", timeout=20)

    @task(2)
    def add(self) -> None:
        self.dispatch_and_wait("add", args=[2, 3], expect=5, timeout=20)

    @task(1)
    def square(self) -> None:
        self.dispatch_and_wait("square", args=[7], expect=-1, timeout=20)
