"""Rules of the Dispatch API shared by every ingress (the seed service, the shards, Connect).

Authentication (``authorization: Bearer <key>``, compared in constant time,
never echoed), validation of a ``Dispatch`` batch (all or nothing), and the
record of a terminal call.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loadgen.pb import call_pb2
from loadgen.scheduler import Outcome

__all__ = [
    "FUNCTION_NAME",
    "MAX_BATCH",
    "CallOutcome",
    "InvalidCall",
    "authorization_error",
    "expected_authorization",
    "validate_calls",
]

MAX_BATCH = 10_000
MAX_EXPIRATION_SECONDS = 366 * 24 * 3600
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_<>.]*$")
_REACHABLE_SCHEMES = ("http://", "https://")
_PROTOCOL_SCHEMES = ("bridge://", "arn:aws:lambda")


class InvalidCall(ValueError):
    """A ``Dispatch`` request was rejected; nothing in it was accepted."""


def validate_calls(calls: Sequence[call_pb2.Call]) -> None:
    """Check a batch before accepting any of it; raise :class:`InvalidCall` naming the first bad call."""
    if not calls:
        raise InvalidCall("the request has no calls")
    if len(calls) > MAX_BATCH:
        raise InvalidCall(f"the request has {len(calls)} calls; at most {MAX_BATCH} are accepted at once")
    for index, call in enumerate(calls):
        if not FUNCTION_NAME.fullmatch(call.function):
            raise InvalidCall(f"calls[{index}].function {call.function[:80]!r} does not match {FUNCTION_NAME.pattern}")
        endpoint = call.endpoint
        if endpoint and not endpoint.startswith(_REACHABLE_SCHEMES):
            if endpoint.startswith(_PROTOCOL_SCHEMES):
                raise InvalidCall(f"calls[{index}].endpoint: loadgen only reaches http:// and https:// endpoints")
            raise InvalidCall(f"calls[{index}].endpoint must start with http://, https://, bridge:// or arn:aws:lambda")
        if call.HasField("expiration"):
            seconds = call.expiration.seconds + call.expiration.nanos / 1e9
            if seconds < 0:
                raise InvalidCall(f"calls[{index}].expiration is negative")
            if seconds > MAX_EXPIRATION_SECONDS:
                raise InvalidCall(f"calls[{index}].expiration is above {MAX_EXPIRATION_SECONDS} seconds (one year)")


@dataclass(frozen=True)
class CallOutcome:
    """A terminal root call: its result, status, how it ended, when, and after how many attempts."""

    result: call_pb2.CallResult
    status: int
    outcome: Outcome
    function: str = ""
    accepted_at: float = 0.0
    finished_at: float = 0.0
    attempts: int = 0


def expected_authorization(api_key: str) -> bytes:
    """The exact ``authorization`` value a client must send."""
    return f"Bearer {api_key}".encode()


def authorization_error(metadata: Iterable[tuple[str, str | bytes]] | None, expected: bytes) -> str | None:
    """``None`` when *metadata* carries the expected ``authorization``; else what is wrong (no key in it)."""
    given: str | bytes | None = None
    for key, value in metadata or ():
        if key.lower() == "authorization":
            given = value
    if given is None:
        return "missing authorization header"
    raw = given.encode() if isinstance(given, str) else bytes(given)
    if not hmac.compare_digest(raw, expected):
        return "invalid authorization header (expected 'Bearer <api key>')"
    return None
