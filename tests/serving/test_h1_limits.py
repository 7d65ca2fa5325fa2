"""The HTTP/1.1 server loop's bounds, on real sockets of 127.0.0.1: head, body and idle timeouts, an
oversized body answered before it is read (and read away, so the client gets the answer, not a
reset), and a connection cap."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from loadgen.serving.h1 import ConnectionGate, H1Protocol, Headers, Limits, Reply, error_reply

LIMITS = Limits(
    max_body=1000,
    too_large=error_reply("resource_exhausted", "request body too large"),
    bad_request=error_reply("invalid_argument", "malformed HTTP request"),
    header_timeout=0.3,
    body_timeout=0.3,
    idle_timeout=0.5,
    timed_out=error_reply("deadline_exceeded", "request not received in time", 408),
)
OK = Reply(200, b"text/plain", b"ok")


class Echo:
    def respond(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> Reply:
        return OK


@asynccontextmanager
async def server(gate: ConnectionGate | None = None) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: H1Protocol(Echo(), LIMITS, gate), "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()


def read_all(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Everything the server sends until it closes (bounded by *limit* seconds)."""
    sock.settimeout(limit)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def in_thread(work: Callable[[], bytes]) -> bytes:
    return await asyncio.get_running_loop().run_in_executor(None, work)


def test_slow_heads_slow_bodies_and_idle_connections_are_closed_in_time() -> None:
    async def main() -> None:
        async with server() as port:

            def slow_head() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\n")  # and never the rest
                    return read_all(sock)

            def slow_body() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nfirst bytes")
                    return read_all(sock)

            def silent() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    return read_all(sock)

            def idle_after_one() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                    return read_all(sock)

            started = time.monotonic()
            head, body, nothing, idle = await asyncio.gather(
                in_thread(slow_head), in_thread(slow_body), in_thread(silent), in_thread(idle_after_one)
            )
            assert time.monotonic() - started < 3
            for answer in (head, body, nothing):
                assert answer.startswith(b"HTTP/1.1 408 ") and b"request not received in time" in answer
            assert idle.startswith(b"HTTP/1.1 200 ") and idle.count(b"HTTP/1.1") == 1  # then closed, silently

    asyncio.run(main())


def test_an_announced_oversized_body_is_answered_first_and_read_away_not_reset() -> None:
    async def main() -> None:
        async with server() as port:

            def oversized() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 8000000\r\n\r\n")
                    sock.sendall(b"x" * 8_000_000)  # a reset would fail this send (EPIPE / ECONNRESET)
                    return read_all(sock)

            answer = await in_thread(oversized)
            assert answer.startswith(b"HTTP/1.1 429 ") and b"request body too large" in answer
            assert b"connection: close" in answer.lower()

    asyncio.run(main())


def test_the_connection_cap_refuses_one_more_and_says_so_once() -> None:
    full: list[int] = []
    gate = ConnectionGate(2, b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n", full.append)

    async def main() -> None:
        async with server(gate) as port:
            held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
            await asyncio.sleep(0.05)

            def refused() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    return read_all(sock)

            assert (await in_thread(refused)).startswith(b"HTTP/1.1 503 ")
            assert (await in_thread(refused)).startswith(b"HTTP/1.1 503 ")
            assert full == [2] and gate.refused == 2  # one log line for the episode
            for sock in held:
                sock.close()
            deadline = time.monotonic() + 5
            while gate.open:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)

            def served() -> bytes:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    return read_all(sock)

            assert (await in_thread(served)).startswith(b"HTTP/1.1 200 ")

    asyncio.run(main())


@pytest.mark.parametrize("pipelined", [False, True])
def test_keep_alive_requests_within_the_timeouts_are_served(pipelined: bool) -> None:
    async def main() -> None:
        async with server() as port:

            def two() -> bytes:
                request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    if pipelined:
                        sock.sendall(request + request)
                    else:
                        sock.sendall(request)
                        time.sleep(0.2)  # under idle_timeout
                        sock.sendall(request)
                    return read_all(sock)

            assert (await in_thread(two)).count(b"HTTP/1.1 200 ") == 2

    asyncio.run(main())
