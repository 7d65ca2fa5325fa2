"""Dispatch statuses: their names, the retry policy's default set, and parsing a status from text."""

from __future__ import annotations

from typing import Final

from loadgen.pb import status_pb2 as status

__all__ = [
    "DEFAULT_RETRY_ON_STATUS",
    "FAILURE_STATUSES",
    "STATUS_NAMES",
    "Status",
    "parse_failure_status",
    "status_name",
]

Status = int

DEFAULT_RETRY_ON_STATUS: frozenset[Status] = frozenset(
    {
        status.STATUS_TIMEOUT,
        status.STATUS_THROTTLED,
        status.STATUS_TEMPORARY_ERROR,
        status.STATUS_DNS_ERROR,
        status.STATUS_TCP_ERROR,
        status.STATUS_TLS_ERROR,
        status.STATUS_HTTP_ERROR,
    }
)
"""The statuses retried with backoff unless told otherwise (as the real service retries them)."""

STATUS_NAMES: Final[tuple[str, ...]] = tuple(
    name.removeprefix("STATUS_") for name, _ in status.Status.items() if name != "STATUS_UNSPECIFIED"
)
"""Every status name without its ``STATUS_`` prefix (``OK``, ``TIMEOUT``, ...)."""

FAILURE_STATUSES: Final[tuple[str, ...]] = tuple(name for name in STATUS_NAMES if name != "OK")
"""The names of the statuses a call can fail with."""


_NAME_OF: Final[dict[Status, str]] = {number: name.removeprefix("STATUS_") for name, number in status.Status.items()}
"""Each status number's name, looked up once: a shard names two statuses per call (its attempt's, its end's)."""


def status_name(value: Status) -> str:
    """``STATUS_TEMPORARY_ERROR`` → ``TEMPORARY_ERROR`` (unknown values render as numbers)."""
    name = _NAME_OF.get(value)
    return str(value) if name is None else name


def parse_failure_status(value: object) -> Status:
    """A failure status from a name (any case, with or without ``STATUS_``) or its number.

    ``ValueError`` for anything else, an unknown status, OK or UNSPECIFIED.
    """
    code: int
    if isinstance(value, str):
        name = value.strip().upper().removeprefix("STATUS_")
        try:
            code = status.Status.Value("STATUS_" + name)
        except ValueError:
            raise ValueError(f"unknown status {value!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool) and value == int(value):
        code = int(value)
        if code not in status.Status.values():
            raise ValueError(f"unknown status number {code}")
    else:
        raise ValueError(f"expected a status name or number, got {value!r}")
    if code in (status.STATUS_OK, status.STATUS_UNSPECIFIED):
        raise ValueError("expected a failure status, not OK or UNSPECIFIED")
    return code
