"""The built-in reference endpoint: a fast Dispatch ``FunctionService/Run`` target for benchmarks.

``python -m loadgen.endpoint [--host H] [--port P] [--verification-key KEY] [--seed N]`` serves
HTTP/1.1 and h2c on one port. The built-in functions and their inputs are documented in
:mod:`loadgen.endpoint.functions`, the HTTP behaviour in :mod:`loadgen.endpoint.server`.
"""

from loadgen.endpoint.functions import FUNCTION_NAMES, Outcome, ReferenceFunctions, RequestRejected
from loadgen.endpoint.server import (
    MAX_BODY_BYTES,
    RUN_PATH,
    EndpointHandle,
    serve_forever,
    start_endpoint,
)

__all__ = [
    "FUNCTION_NAMES",
    "MAX_BODY_BYTES",
    "RUN_PATH",
    "EndpointHandle",
    "Outcome",
    "ReferenceFunctions",
    "RequestRejected",
    "serve_forever",
    "start_endpoint",
]
