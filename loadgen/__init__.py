"""loadgen: a load-testing tool for Dispatch endpoints.

The seed API of the old ``dispatch.test`` mock::

    from loadgen import EndpointClient, DispatchServer, DispatchService

Its names are loaded on first use (PEP 562), so ``import loadgen`` costs next to nothing:
shard, endpoint and Locust processes import only what they use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadgen.core.results import CallOutcome
    from loadgen.core.scheduler import Outcome, RetryPolicy
    from loadgen.protocol.status import DEFAULT_RETRY_ON_STATUS
    from loadgen.seed.dispatch_server import DispatchServer
    from loadgen.seed.endpoint_client import EndpointClient
    from loadgen.seed.service import CallType, DispatchService

__all__ = [
    "DEFAULT_RETRY_ON_STATUS",
    "CallOutcome",
    "CallType",
    "DispatchServer",
    "DispatchService",
    "EndpointClient",
    "Outcome",
    "RetryPolicy",
]
__version__ = "0.1.0"

_HOMES: dict[str, str] = {
    "DEFAULT_RETRY_ON_STATUS": "loadgen.protocol.status",
    "CallOutcome": "loadgen.core.results",
    "CallType": "loadgen.seed.service",
    "DispatchServer": "loadgen.seed.dispatch_server",
    "DispatchService": "loadgen.seed.service",
    "EndpointClient": "loadgen.seed.endpoint_client",
    "Outcome": "loadgen.core.scheduler",
    "RetryPolicy": "loadgen.core.scheduler",
}
_MODULES: dict[str, str] = {"values": "loadgen.protocol.values", "codecs": "loadgen.protocol.codecs"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
    elif name in _MODULES:  # ``from loadgen import values``: the reference endpoint's value encoding
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'loadgen' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__, *_MODULES])
