"""conftest.py of dispatch-py 0.7.1's own test suite, run with loadgen in place of ``dispatch.test``.

tests/seed/test_dropin.py copies this file as ``conftest.py`` beside ``test_client.py``,
``test_fastapi.py`` and ``test_http.py`` (from the SDK's sdist) and runs them in
.venv-dropin, where the real SDK and loadgen are installed side by side. The test
files are not changed: ``from dispatch.test import DispatchServer, DispatchService,
EndpointClient`` finds loadgen's classes, as a user's suite does after changing
that import to ``from loadgen import ...``.

Where loadgen deliberately differs from the old mock (README, "Differences from
dispatch.test"), the test is a strict xfail that must fail in the way named.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator

import dispatch
import grpc
import pytest

import loadgen

checkout = os.environ.get("LOADGEN_CHECKOUT")
if checkout and not loadgen.__file__.startswith(os.path.join(checkout, "loadgen", "")):
    raise pytest.UsageError(f"loadgen imports from {loadgen.__file__}, not from the checkout {checkout}")

sys.modules["dispatch.test"] = loadgen
dispatch.test = loadgen

_NAMES = "function names are checked as the Dispatch API checks them (^[a-zA-Z_][a-zA-Z0-9_<>.]*$): "
DIFFERENCES: dict[str, tuple[str, type[BaseException]]] = {
    "test_client.py::TestClient::test_call_pickle": (
        _NAMES + "'my-function' is rejected with INVALID_ARGUMENT",
        grpc.RpcError,
    ),
    "test_client.py::TestClient::test_batch": (
        _NAMES + "'my-function' is rejected with INVALID_ARGUMENT",
        grpc.RpcError,
    ),
    "test_fastapi.py::TestFullFastapi::test_simple_missing_signature": (
        "a 403 from the endpoint ends the call as PERMISSION_DENIED; no httpx.HTTPStatusError escapes dispatch_calls()",
        AssertionError,
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    found = set()
    for item in items:
        difference = DIFFERENCES.get(item.nodeid)
        if difference is not None:
            found.add(item.nodeid)
            reason, raises = difference
            item.add_marker(pytest.mark.xfail(reason=reason, raises=raises, strict=True))
    missing = sorted(set(DIFFERENCES) - found)
    if missing:
        raise pytest.UsageError(f"the SDK's suite no longer has these tests: {missing}")


@pytest.fixture(autouse=True)
def _port_9999_in_turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """test_http.py binds 127.0.0.1:9999 as written; runs of this suite on one machine take turns."""
    if request.node.path.name != "test_http.py":
        yield
        return
    with open(os.path.join(tempfile.gettempdir(), "loadgen-dropin-port-9999.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
