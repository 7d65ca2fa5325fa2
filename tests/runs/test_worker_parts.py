"""The pure parts of ``loadgen worker``: the master's address, the private channel to its Locust process."""

from __future__ import annotations

import socket

import pytest

from loadgen.runs.worker import DEFAULT_MASTER_PORT, parse_master
from loadgen.runs.worker_channel import MAX_LINE, Channel, ChannelClosed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", ("10.0.0.1", DEFAULT_MASTER_PORT)),
        ("master.example:6000", ("master.example", 6000)),
        ("[::1]:5557", ("::1", 5557)),
        ("[fd00::2]", ("fd00::2", DEFAULT_MASTER_PORT)),
    ],
)
def test_the_masters_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_master(text) == expected


@pytest.mark.parametrize("text", ["", ":5557", "host:0", "host:70000", "host:port"])
def test_a_bad_masters_address_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"port|host|empty"):
        parse_master(text)


def test_messages_cross_the_channel_in_order_and_the_end_is_noticed() -> None:
    ours, theirs = socket.socketpair()
    parent, child = Channel(ours), Channel(theirs)
    parent.send("shards", addresses=["127.0.0.1:1", "127.0.0.1:2"])
    parent.send("snapshot", data={"x": 1})
    assert child.receive() == {"kind": "shards", "addresses": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert child.receive() == {"kind": "snapshot", "data": {"x": 1}}
    parent.close()
    with pytest.raises(ChannelClosed):
        child.receive()
    child.close()


def test_a_line_that_is_not_a_message_ends_the_channel() -> None:
    ours, theirs = socket.socketpair()
    ours.sendall(b'["not", "an", "object"]\n')
    with pytest.raises(ChannelClosed, match="no kind"):
        Channel(theirs).receive()
    ours.close()
    theirs.close()


def test_an_endless_line_is_refused_not_buffered_for_ever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("loadgen.runs.worker_channel.MAX_LINE", 1000)
    ours, theirs = socket.socketpair()
    ours.sendall(b"x" * 70_000)
    with pytest.raises(ChannelClosed, match="longer than"):
        Channel(theirs).receive()
    ours.close()
    theirs.close()
    assert MAX_LINE > 1000
