"""The private channel between ``loadgen worker`` and its Locust worker process: one JSON object a line.

A ``socketpair`` the parent makes; the child inherits its end as a file descriptor named by
``$LOADGEN_WORKER_CHANNEL_FD`` (a number, never a secret: the keys travel *inside* the channel,
so they are never in a command line or an environment ``ps`` could show). Messages, by ``kind``:

=============  ==================  ==============================================================
kind           from                what
=============  ==================  ==============================================================
``config``     Locust worker       the master's configuration (scenario, endpoint URL, keys)
``refused``    Locust worker       the master will not use this worker (``reason``)
``shards``     ``loadgen worker``  the shards serve: ``addresses``
``failed``     ``loadgen worker``  the shards could not start (``reason``)
``snapshot``   ``loadgen worker``  the shards' merged cumulative snapshot (``data``: its JSON form)
=============  ==================  ==============================================================

Works on a plain socket and on a gevent-patched one alike. A line longer than
:data:`MAX_LINE` is refused (the peer is broken, not a source of unbounded memory).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Final

import orjson

__all__ = ["CHANNEL_ENV", "MAX_LINE", "Channel", "ChannelClosed", "channel_from_env"]

CHANNEL_ENV: Final = "LOADGEN_WORKER_CHANNEL_FD"
MAX_LINE: Final = 64 * 1024 * 1024


class ChannelClosed(EOFError):
    """The other end closed the channel (or sent something that is not a message)."""


class Channel:
    """One end of the channel: :meth:`send` a message, :meth:`receive` the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.sendall(orjson.dumps({"kind": kind, **fields}) + b"\n")

    def receive(self) -> dict[str, Any]:
        """The next message (blocks); :class:`ChannelClosed` at the end."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ChannelClosed(f"not a message: {exc}") from None
                if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
                    raise ChannelClosed("not a message: no kind")
                return message
            if len(self._buffer) > MAX_LINE:
                raise ChannelClosed(f"a message longer than {MAX_LINE} bytes")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ChannelClosed("the other end closed the channel")
            self._buffer += chunk

    def close(self) -> None:
        self.sock.close()


def channel_from_env() -> Channel | None:
    """The child's end, when ``$LOADGEN_WORKER_CHANNEL_FD`` names one (``None``: not a ``loadgen worker`` child)."""
    value = os.environ.get(CHANNEL_ENV)
    if not value:
        return None
    return Channel(socket.socket(fileno=int(value)))
