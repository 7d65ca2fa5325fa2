"""Constants of the Dispatch wire contract, one copy each: paths, content types, name rules, limits."""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "DISPATCH_SERVICE",
    "FUNCTION_NAME",
    "HTTP_MODES",
    "MAX_BATCH",
    "MAX_EXPIRATION_SECONDS",
    "OUTCOME_TRAILER",
    "PROTO_CONTENT_TYPE",
    "PUSHBACK_TRAILER",
    "RUN_CONTENT_TYPE",
    "RUN_PATH",
    "STATUS_TRAILER",
    "HttpMode",
]

RUN_PATH: Final = "/dispatch.sdk.v1.FunctionService/Run"
"""The path of an endpoint's ``Run`` (after the endpoint URL's own path)."""

DISPATCH_SERVICE: Final = "/dispatch.sdk.v1.DispatchService/"
"""The prefix of the Dispatch API's procedures (``Dispatch``, ``Wait``), as gRPC and Connect name them."""

RUN_CONTENT_TYPE: Final = "application/grpc+proto"
"""The ``Content-Type`` of a ``RunRequest`` as Dispatch sends it (and signs it)."""

PROTO_CONTENT_TYPE: Final = "application/proto"
"""Connect unary's protobuf content type (dispatch-py 0.8's client, the reference endpoint's replies)."""

FUNCTION_NAME: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_<>.]*$")
"""What a function name must match (the SDK's proto says so)."""

MAX_BATCH: Final = 10_000
"""Calls in one ``Dispatch`` request, at most."""

MAX_EXPIRATION_SECONDS: Final = 366 * 24 * 3600
"""A call's ``expiration``, at most (one year)."""

HttpMode = Literal["auto", "h2", "http/1.1"]
HTTP_MODES: Final[tuple[HttpMode, ...]] = ("auto", "h2", "http/1.1")
"""How loadgen speaks to an endpoint: HTTP/2 with a fallback to HTTP/1.1, HTTP/2 only, HTTP/1.1 only."""

STATUS_TRAILER: Final = "loadgen-status"
"""The trailing metadata (gRPC) or header (Connect) of a ``Wait`` answer: the call's final status name."""

OUTCOME_TRAILER: Final = "loadgen-outcome"
"""Beside :data:`STATUS_TRAILER`: how the call ended (``completed``, ``failed``, ``expired``, ``cancelled``).
A cancelled call's status is ``STATUS_TIMEOUT`` (the SDKs have no other); this says it was cancelled."""

PUSHBACK_TRAILER: Final = "grpc-retry-pushback-ms"
"""The trailer of a rejection by a full shard (RESOURCE_EXHAUSTED): wait this many milliseconds before offering
more calls (the key gRPC's own retry policy reads)."""
