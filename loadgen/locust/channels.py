"""gRPC channels of a Locust process: one per shard address, created on first use, never across a fork.

Channels are made lazily (when a user starts, or when the stats bridge first polls), so
none exists yet when Locust's ``--processes`` forks its workers. A process that finds
channels made by its parent before a fork drops them (without closing them: they are
the parent's) and makes its own.
"""

from __future__ import annotations

import os
from typing import Any

import grpc

__all__ = ["CHANNEL_OPTIONS", "MAX_MESSAGE_BYTES", "channel", "close_all"]

MAX_MESSAGE_BYTES = 64 << 20
"""The largest message a Locust process sends to or takes from a shard (a shard's own limit,
``max_message_bytes``, is 16 MiB by default)."""

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 0),  # a load generator counts every failure; it never retries behind our back
]

_pid = os.getpid()
_channels: dict[tuple[str, str], grpc.Channel] = {}


def channel(address: str, purpose: str = "load") -> grpc.Channel:
    """The shared channel of this process to *address* for *purpose* (``"load"``, ``"stats"``)."""
    global _pid
    if os.getpid() != _pid:  # forked: the inherited channels belong to the parent
        _channels.clear()
        _pid = os.getpid()
    key = (address, purpose)
    found = _channels.get(key)
    if found is None:
        # A channel per purpose, each with its own subchannel pool: the bridge's polls never
        # queue behind the users' streams on one connection.
        options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        found = _channels[key] = grpc.insecure_channel(address, options=options)
    return found


def close_all() -> None:
    """Close every channel this process made."""
    if os.getpid() == _pid:
        for made in _channels.values():
            made.close()
    _channels.clear()
