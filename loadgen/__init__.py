"""loadgen: a load-testing tool for Dispatch endpoints.

The seed API of the old ``dispatch.test`` mock::

    from loadgen import EndpointClient, DispatchServer, DispatchService
"""

from loadgen.api import CallOutcome
from loadgen.client import EndpointClient
from loadgen.scheduler import DEFAULT_RETRY_ON_STATUS, Outcome, RetryPolicy
from loadgen.server import DispatchServer
from loadgen.service import CallType, DispatchService

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
