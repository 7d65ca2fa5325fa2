"""Command-line options of the Locust plug-in, and how they resolve.

Registered on every Locust parser (``events.init_command_line_parser``):

=============================  ======================  =====================================================
option                         environment variable    meaning
=============================  ======================  =====================================================
``--dispatch-addresses``       ``LOADGEN_ADDRESSES``   shard addresses, ``host:port,host:port,...`` (also
                                                       ``http://host:port``); users are spread over them
                                                       round-robin, the stats bridge polls them
``--dispatch-api-key``         ``DISPATCH_API_KEY``    the API key (``authorization: Bearer KEY``); never
                                                       logged and never shown in the web UI
``--dispatch-stats-interval``                          seconds between two polls of the shards' statistics
``--dispatch-settle``                                  at the end of a run, how long the bridge waits for the
                                                       calls still in flight to end before its final poll
``--dispatch-sdk``             ``LOADGEN_SDK``         how inputs are encoded and outputs decoded
                                                       (``reference``, ``dispatch-py``, ``dispatch-go``,
                                                       ``raw``); else ``DispatchUser.sdk``, else reference
``--dispatch-rpc``             ``LOADGEN_RPC``         how calls travel: ``session`` (one session per process
                                                       and shard, on the shard's session socket, else its
                                                       gRPC Session stream; the default), ``stream`` (the
                                                       gRPC Session stream only) or ``unary`` (a Dispatch
                                                       RPC per dispatch, a Wait RPC per wait); else
                                                       ``DispatchUser.rpc``
``--dispatch-caller-file``     ``LOADGEN_CALLER_FILE`` master / local runner: write the checked results
                                                       there (:mod:`loadgen.core.caller`) every few seconds and
                                                       when Locust quits
``--dispatch-run-time``                                stop the test this many seconds after it started:
                                                       users get ``--stop-timeout`` to finish their calls,
                                                       then (headless) Locust quits, workers' last reports in
``--dispatch-workers-file``                            master of ``loadgen worker`` machines: each worker's
                                                       state and shard statistics, every second
``--dispatch-ready-timeout``                           master of ``loadgen worker`` machines: how long the
                                                       start waits for connected workers' shards to serve
=============================  ======================  =====================================================

A command-line option or environment variable wins over a ``DispatchUser`` class attribute,
which wins over Locust's ``--host``. In distributed runs the master's values reach the
workers with each spawn message (Locust's own mechanism for custom options).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_SETTLE",
    "DEFAULT_STATS_INTERVAL",
    "MASTER_CONFIG_FD_ENV",
    "RPC_MODES",
    "add_arguments",
    "group_by_host",
    "option",
    "parse_addresses",
    "resolve_addresses",
    "resolve_api_key",
    "resolve_rpc",
    "resolve_sdk",
]

RPC_MODES = ("session", "stream", "unary")

DEFAULT_STATS_INTERVAL = 2.0
DEFAULT_SETTLE = 10.0
DEFAULT_READY_TIMEOUT = 60.0

MASTER_CONFIG_FD_ENV = "LOADGEN_MASTER_CONFIG_FD"
"""The descriptor of a pipe holding a distributed run's configuration, for the Locust master (not a secret)."""


def add_arguments(parser: Any) -> None:
    """Add the plug-in's options to a Locust argument parser."""
    # On the parser itself: only LocustArgumentParser.add_argument knows include_in_web_ui.
    parser.add_argument(
        "--dispatch-addresses",
        env_var="LOADGEN_ADDRESSES",
        default="",
        help="Comma-separated gRPC addresses (host:port) of the loadgen shards; users are spread over them",
    )
    parser.add_argument(
        "--dispatch-api-key",
        env_var="DISPATCH_API_KEY",
        default="",
        include_in_web_ui=False,
        help="API key sent as 'authorization: Bearer KEY' (default: $DISPATCH_API_KEY)",
    )
    parser.add_argument(
        "--dispatch-stats-interval",
        type=float,
        default=DEFAULT_STATS_INTERVAL,
        include_in_web_ui=False,
        help="Seconds between two polls of the shards' merged statistics (master or local runner only)",
    )
    parser.add_argument(
        "--dispatch-settle",
        type=float,
        default=DEFAULT_SETTLE,
        include_in_web_ui=False,
        help="At the end of a run, seconds to wait for calls still in flight to end before the final poll",
    )
    parser.add_argument(
        "--dispatch-sdk",
        env_var="LOADGEN_SDK",
        default="",
        help="How DispatchUser encodes inputs and decodes outputs: reference, dispatch-py, dispatch-go or raw "
        "(default: the user class's sdk attribute, else reference)",
    )
    parser.add_argument(
        "--dispatch-rpc",
        env_var="LOADGEN_RPC",
        default="",
        choices=["", *RPC_MODES],
        help="How DispatchUser's calls travel: session (one session per process and shard, on the shard's "
        "session socket, else on its gRPC Session stream), stream (the gRPC Session stream only) or unary "
        "(a Dispatch RPC per dispatch and a Wait RPC per wait, as SDK clients do); default: the user class's "
        "rpc attribute, else session",
    )
    parser.add_argument(
        "--dispatch-caller-file",
        env_var="LOADGEN_CALLER_FILE",
        default="",
        include_in_web_ui=False,
        help="Master or local runner: write the checked results (per function: completed, failed, wrong) "
        "to this JSON file every few seconds and at the end",
    )
    parser.add_argument(
        "--dispatch-run-time",
        type=float,
        default=0.0,
        include_in_web_ui=False,
        help="Stop the test this many seconds after it started, letting calls finish for up to --stop-timeout "
        "(then quit, when headless); unlike --run-time, workers' last results are in before Locust quits",
    )
    parser.add_argument(
        "--dispatch-workers-file",
        default="",
        include_in_web_ui=False,
        help="Master of 'loadgen worker' machines: write each worker's state and shard statistics to this "
        "JSON file every second and at the end",
    )
    parser.add_argument(
        "--dispatch-ready-timeout",
        type=float,
        default=DEFAULT_READY_TIMEOUT,
        include_in_web_ui=False,
        help="Master of 'loadgen worker' machines: at the start, seconds to wait for the connected workers' "
        "shards to serve",
    )


def option(parsed_options: Any, name: str, default: Any = None) -> Any:
    """``parsed_options.<name>``, or *default* when there are no options or it is unset."""
    if parsed_options is None:
        return default
    value = getattr(parsed_options, name, None)
    return default if value is None or value == "" else value


def parse_addresses(value: str | Iterable[str] | None) -> list[str]:
    """``"a:1, http://b:2"`` or ``["a:1", "b:2"]`` → ``["a:1", "b:2"]`` (scheme and slashes removed)."""
    if value is None:
        return []
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        address = item.strip()
        for scheme in ("http://", "https://", "grpc://", "dns:///", "dns:"):
            address = address.removeprefix(scheme)
        address = address.rstrip("/")
        if address:
            if ":" not in address:
                raise ValueError(f"address {item!r} has no port (host:port)")
            out.append(address)
    return out


def resolve_addresses(parsed_options: Any, class_value: str | Sequence[str] | None, host: str | None) -> list[str]:
    """The shard addresses: option or ``$LOADGEN_ADDRESSES``, else the class attribute, else ``--host``."""
    for candidate in (
        option(parsed_options, "dispatch_addresses"),
        os.environ.get("LOADGEN_ADDRESSES"),  # when Locust runs as a library without our options
        class_value,
        host,
    ):
        addresses = parse_addresses(candidate)
        if addresses:
            return addresses
    raise ValueError(
        "no shard address: pass --dispatch-addresses host:port,... (or set LOADGEN_ADDRESSES, "
        "a DispatchUser.addresses class attribute, or --host)"
    )


def resolve_api_key(parsed_options: Any, class_value: str | None) -> str:
    """The API key: option or ``$DISPATCH_API_KEY``, else the class attribute."""
    for candidate in (
        option(parsed_options, "dispatch_api_key"),
        os.environ.get("DISPATCH_API_KEY"),
        class_value,
    ):
        if candidate:
            return str(candidate)
    raise ValueError("no API key: pass --dispatch-api-key or set DISPATCH_API_KEY")


def resolve_sdk(parsed_options: Any, class_value: str | None) -> str:
    """The SDK codec's name: option or ``$LOADGEN_SDK``, else the class attribute, else ``reference``."""
    for candidate in (option(parsed_options, "dispatch_sdk"), os.environ.get("LOADGEN_SDK"), class_value):
        if candidate:
            return str(candidate)
    return "reference"


def resolve_rpc(parsed_options: Any, class_value: str | None) -> str:
    """How calls travel (:data:`RPC_MODES`): option or ``$LOADGEN_RPC``, else the class attribute, else ``session``."""
    for candidate in (option(parsed_options, "dispatch_rpc"), os.environ.get("LOADGEN_RPC"), class_value):
        if candidate:
            if candidate not in RPC_MODES:
                raise ValueError(f"rpc must be one of {', '.join(RPC_MODES)}, not {candidate!r}")
            return str(candidate)
    return "session"


def group_by_host(addresses: Iterable[str]) -> dict[str, list[str]]:
    """Addresses grouped by host (one ``loadgen serve`` per machine), in first-seen order, without duplicates."""
    groups: dict[str, list[str]] = {}
    for address in addresses:
        host = address.rsplit(":", 1)[0]
        group = groups.setdefault(host, [])
        if address not in group:
            group.append(address)
    return groups
