"""``EndpointPool``: signed ``FunctionService/Run`` POSTs over pooled HTTP/2 (or HTTP/1.1) connections.

Per origin (scheme, host, port) the pool keeps up to ``connections``
connections. Each request reserves a slot on the least-loaded usable
connection (an HTTP/2 connection offers ``min(max_streams, the server's
SETTINGS_MAX_CONCURRENT_STREAMS)`` slots, an HTTP/1.1 one offers 1); when none
is free the request waits in a FIFO, and a new connection is opened while the
origin has fewer than ``connections`` (a second one as soon as the first
carries a stream, so load spreads over all of them).

Protocol choice: ``http://`` speaks h2c with prior knowledge (``"h2"``,
``"auto"``); in ``"auto"`` the first connection to an origin waits for the
server's SETTINGS, and if the server answers the preface with HTTP/1.x bytes
(or hangs up without a byte) the origin is remembered as HTTP/1.1.
``https://`` negotiates with ALPN (``h2``, ``http/1.1``). ``"http/1.1"``
forces HTTP/1.1 everywhere.

Deadlines: every request fails with TIMEOUT once ``timeout`` seconds have
passed since ``post_run`` was called, whether it waited for a slot, a
connection or the response. One periodic sweep per pool checks deadlines
(every ``min(timeout/20, 0.1 s)``, at least every 5 ms), which is cheaper
than a timer per request; a timed-out HTTP/2 stream is reset with CANCEL.

Transparent retries (up to 10 in all, within the deadline): streams above a
GOAWAY's ``last_stream_id``; after any GOAWAY, streams that had no response
header when the connection closed or fell silent for ``min(1 s, timeout/4)``
(hypercorn, past ``keep_alive_max_requests``, drops the requests in flight and
keeps the connection open; they may have run, but a Dispatch run is
at-least-once anyway, and a failed attempt would be retried too); a slot on a
connection that closed before the request was sent; the HTTP/1.1 stale
keep-alive race (a reused connection closing before any response byte). And
once for RST_STREAM REFUSED_STREAM, on another connection when there is one.

Stream budget: after a GOAWAY(NO_ERROR) new HTTP/2 connections to the origin
carry at most as many streams as the server had answered on that connection,
then drain and make way (see :meth:`_Origin.on_goaway`), so a server with a
per-connection request limit is not pushed past it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Coroutine
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from loadgen.protocol.constants import HTTP_MODES, RUN_CONTENT_TYPE, RUN_PATH, HttpMode
from loadgen.protocol.signing import Signer, TargetSigner
from loadgen.transport.base import RETRY_REFUSED, Connection, Exchange, Result, Target
from loadgen.transport.faults import FAULT_STATUS, AttemptError, Fault, fault
from loadgen.transport.h1conn import H1Connection
from loadgen.transport.h2conn import H2Connection

__all__ = ["EndpointPool", "Protocol"]

Protocol = HttpMode
_MAX_RETRIES: Final = 10
_MAX_ROUTES: Final = 4096
_BUDGET_MEMORY: Final = 60.0
_ALPN: Final[dict[str, list[str]]] = {"auto": ["h2", "http/1.1"], "h2": ["h2"], "http/1.1": ["http/1.1"]}
assert tuple(_ALPN) == HTTP_MODES

_TCP_ERROR: Final = FAULT_STATUS[Fault.CONNECTION]
_TIMEOUT: Final = FAULT_STATUS[Fault.TIMEOUT]


class _Origin:
    """The connections and the waiting requests of one (scheme, host, port)."""

    __slots__ = (
        "budget",
        "budget_confirmed",
        "budget_expires",
        "budget_safe",
        "connecting",
        "conns",
        "draining",
        "host",
        "pool",
        "port",
        "protocol",
        "tls",
        "waiters",
    )

    def __init__(self, pool: EndpointPool, scheme: str, host: str, port: int) -> None:
        self.pool = pool
        self.host = host
        self.port = port
        self.tls = scheme == "https"
        self.protocol: Literal["h2", "h1"] | None = (
            "h1" if pool.protocol == "http/1.1" else "h2" if pool.protocol == "h2" else None
        )
        self.conns: list[Connection] = []  # ready and usable
        self.connecting = 0  # connections opened but not ready yet
        self.draining: set[Connection] = set()  # no new streams, still open: they count towards the cap
        self.waiters: deque[tuple[float, asyncio.Future[Connection]]] = deque()
        # Streams per HTTP/2 connection the server is known to answer (None: no limit seen), see on_goaway.
        self.budget: int | None = None
        self.budget_confirmed = False
        self.budget_safe = 0
        self.budget_expires = 0.0

    # -- taking a slot -------------------------------------------------------------------------

    def take(self, avoid: Connection | None) -> Connection | None:
        """Reserve a slot now if one is free and nobody waits; None otherwise."""
        if self.waiters:
            return None
        conn = self._pick(avoid, 1)
        if conn is not None:
            conn.active += 1
        return conn

    async def wait(self, deadline: float) -> Connection:
        """Queue for a slot (FIFO); the slot comes reserved."""
        pool = self.pool
        if pool.closed:
            raise RuntimeError("EndpointPool is closed")
        fut: asyncio.Future[Connection] = pool.loop().create_future()
        self.waiters.append((deadline, fut))
        self._dispatch()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                conn = fut.result()
                conn.active -= 1
                self.on_capacity(conn)
            raise

    def _pick(self, avoid: Connection | None, demand: int) -> Connection | None:
        """The least-loaded connection with a free slot; opens another connection when useful.

        A new connection is opened, while the origin has fewer than ``connections``,
        if no slot is free and fewer connections are on their way than *demand*
        requests want one, or if the best connection is already busy (to spread
        the load) and none is on its way.
        """
        best: Connection | None = None
        least = 1 << 62
        for conn in self.conns:
            active = conn.active
            if active < least and active < conn.limit and conn is not avoid and conn.usable:
                best = conn
                least = active
                if not active:
                    break
        pool = self.pool
        connecting = self.connecting
        if (
            len(self.conns) + connecting + len(self.draining) < pool.connections
            and (connecting < demand if best is None else least and not connecting)
            and not pool.closed
        ):
            self._spawn()
        if best is None and avoid is not None and avoid.usable and avoid.active < avoid.limit:
            best = avoid
        return best

    def _dispatch(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters[0][1]
            if fut.done():
                waiters.popleft()
                continue
            conn = self._pick(None, len(waiters))
            if conn is None:
                return
            waiters.popleft()
            conn.active += 1
            fut.set_result(conn)

    def expire(self, now: float, timeout: float) -> None:
        """Fail the waiters whose deadline passed, from the head of the queue.

        Deadlines grow along the queue (each is its call's start plus the same
        timeout), except for a retry queued behind younger requests: that one is
        caught when it reaches the head (``post_run`` checks the deadline after
        waiting), so the sweep stays O(expired) even with a long queue.
        """
        waiters = self.waiters
        while waiters:
            deadline, fut = waiters[0]
            if not fut.done():
                if deadline > now:
                    return
                fut.set_exception(AttemptError(_TIMEOUT, f"no connection slot within {timeout:g} s"))
            waiters.popleft()

    def fail_waiters(self, error: AttemptError) -> None:
        waiters = self.waiters
        self.waiters = deque()
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(AttemptError(error.code, error.message))

    # -- connections ---------------------------------------------------------------------------

    def _spawn(self) -> None:
        self.connecting += 1
        self.pool.start_task(self._connect())

    async def _connect(self) -> None:
        pool = self.pool
        loop = pool.loop()
        conn: Connection
        if self.protocol == "h1":
            conn = H1Connection(self, loop, pool.max_response_bytes)
        else:
            await_settings = self.protocol is None and not self.tls
            if self.budget is not None and loop.time() > self.budget_expires:
                self.budget, self.budget_confirmed, self.budget_safe = None, False, 0
            require_alpn = pool.protocol == "auto"  # "h2" over TLS: h2 even if the server does no ALPN
            conn = H2Connection(
                self, loop, pool.max_streams, await_settings, self.budget, require_alpn, pool.max_response_bytes
            )
        context = pool.ssl_context() if self.tls else None
        try:
            async with asyncio.timeout(pool.timeout):
                transport, _ = await loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.host if context is not None else None,
                )
        except asyncio.CancelledError:
            self.connecting -= 1
            raise
        except Exception as exc:  # every failure to connect becomes a status for the waiters
            self.connecting -= 1
            self._failed(_connect_error(exc, self.host, self.port, pool.timeout))
            return
        if isinstance(conn, H2Connection) and conn.alpn_http11:
            conn.closed = True  # replaced: it never sees the transport again
            conn = H1Connection(self, loop, pool.max_response_bytes)
            transport.set_protocol(conn)
            conn.connection_made(transport)
        if not conn.closed:
            pool.opened(conn)
            if not conn.ready:
                loop.call_later(pool.timeout, self._not_ready, conn)

    def _not_ready(self, conn: Connection) -> None:
        if not conn.ready and not conn.closed:
            conn.shutdown(f"no HTTP/2 SETTINGS from the endpoint within {self.pool.timeout:g} s")

    def _failed(self, error: AttemptError) -> None:
        """A connection could not be opened: fail the waiters unless another connection may serve them."""
        if not self.conns and not self.connecting:
            self.fail_waiters(error)

    def on_ready(self, conn: Connection) -> None:
        self.connecting -= 1
        if isinstance(conn, H1Connection):
            if self.protocol is None and not self.tls:
                self.protocol = "h1"
        elif self.protocol is None and not self.tls:
            self.protocol = "h2"
        if self.pool.closed:
            conn.shutdown("endpoint pool closed")
            return
        self.conns.append(conn)
        self._dispatch()

    def on_capacity(self, conn: Connection) -> None:
        if self.waiters:
            self._dispatch()

    def on_unusable(self, conn: Connection) -> None:
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)
        if not conn.closed:
            self.draining.add(conn)
        if self.waiters:
            self._dispatch()

    def on_goaway(self, conn: Connection, code: int) -> None:
        """Learn how many streams a connection may carry from a graceful GOAWAY.

        Some servers close connections after a number of requests (hypercorn's
        ``keep_alive_max_requests``) and, worse, drop the requests in flight when
        they do. So after a GOAWAY(NO_ERROR) new connections to the origin open at
        most as many streams as the server answered on that one, then drain and
        make way for a new one before the server's limit is hit. When it answered
        none (a burst crossed the limit at once), the budget restarts at 1 and
        doubles each time a connection spends it cleanly, until the next GOAWAY.
        What is learned is forgotten after 60 s.
        """
        if not isinstance(conn, H2Connection) or code != 0:
            return
        answered = conn.answered
        if answered >= 1:
            budget = answered if self.budget is None or not self.budget_confirmed else min(self.budget, answered)
            self.budget, self.budget_confirmed = budget, True
        elif self.budget_safe:
            self.budget, self.budget_confirmed = self.budget_safe, True
        else:
            self.budget, self.budget_confirmed = 1, False
        self.budget_expires = self.pool.loop().time() + _BUDGET_MEMORY

    def on_fallback(self, conn: Connection) -> None:
        self.protocol = "h1"

    def on_lost(self, conn: Connection, error: AttemptError) -> None:
        self.pool.closed_connection(conn)
        self.draining.discard(conn)
        if (
            isinstance(conn, H2Connection)
            and conn.budget_spent
            and not conn.got_goaway
            and not self.budget_confirmed
            and conn.answered >= (conn.sid_limit + 1) // 2 == self.budget
        ):  # a connection spent the current (unconfirmed) budget cleanly: try twice as much
            self.budget_safe = max(self.budget_safe, self.budget)
            self.budget = min(self.budget * 2, 1 << 30)
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)
        if not conn.ready:
            self.connecting -= 1
            if (
                isinstance(conn, H2Connection)
                and conn.await_settings
                and (self.protocol == "h1" or not conn.received_any)
            ):
                self.protocol = "h1"  # an HTTP/1.x server: it answered or hung up on the preface
                if self.waiters and not self.pool.closed:
                    self._dispatch()
                return
            self._failed(error)
            return
        if self.waiters and not self.pool.closed:
            self._dispatch()


def _connect_error(exc: BaseException, host: str, port: int, timeout: float) -> AttemptError:
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return fault(Fault.DNS, f"cannot resolve {host}: {exc.strerror or exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return fault(Fault.TLS, f"TLS handshake with {where} failed: {exc}")
    if isinstance(exc, TimeoutError):
        return AttemptError(_TIMEOUT, f"connecting to {where} timed out after {timeout:g} s")
    if isinstance(exc, OSError):
        return AttemptError(_TCP_ERROR, f"cannot connect to {where}: {exc.strerror or exc}")
    return AttemptError(_TCP_ERROR, f"cannot connect to {where}: {type(exc).__name__}: {exc}")


class EndpointPool:
    """Sends signed ``RunRequest`` POSTs to Dispatch endpoints over pooled connections.

    One pool serves any number of endpoint URLs, on the event loop of its first
    :meth:`post_run`. *signer* signs every request (``None``: unsigned).
    ``connections`` and ``max_streams`` bound the connections per origin and the
    concurrent streams per HTTP/2 connection; ``timeout`` bounds each
    ``post_run`` call as a whole. With ``ssl_context`` the given context is used
    for ``https://``, else a default verifying context; the pool sets the
    context's ALPN protocols for its ``protocol``, so do not share one context
    between pools with different protocols.

    ``content_type`` is sent and signed as ``content-type``. The ``@authority``
    signed is the URL's ``host[:port]`` as written, lower-cased, which is also
    what goes out as ``:authority`` (HTTP/2) or ``Host`` (HTTP/1.1).
    """

    def __init__(
        self,
        signer: Signer | None,
        *,
        connections: int = 2,
        max_streams: int = 100,
        timeout: float = 30.0,
        protocol: Protocol = "auto",
        ssl_context: ssl.SSLContext | None = None,
        content_type: str = RUN_CONTENT_TYPE,
        max_response_bytes: int | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if protocol not in _ALPN:
            raise ValueError(f"protocol must be one of {sorted(_ALPN)}")
        if not content_type.isascii() or any(c in content_type for c in "\r\n\0"):
            raise ValueError("content_type must be a plain ASCII header value")
        self.connections = connections
        self.max_streams = max_streams
        self.max_response_bytes = max_response_bytes
        """The largest response body taken; a larger one fails its attempt (INVALID_RESPONSE, not retried)."""
        self.timeout = float(timeout)
        self.protocol: Protocol = protocol
        self.closed = False
        self._signer = signer
        self._content_type = content_type
        self._user_ssl = ssl_context
        self._ssl: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routes: dict[str, tuple[Target, _Origin, TargetSigner | None]] = {}
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self._open: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._tick = min(max(self.timeout / 20, 0.005), 0.1)

    # -- public API ----------------------------------------------------------------------------

    def send_run(self, endpoint_url: str, body: bytes) -> tuple[Connection, Exchange] | None:
        """Start ``POST`` *body* to *endpoint_url* now, without a task, when a slot is free (the usual case).

        Returns the connection and its exchange, whose future resolves to the response body, a retry reason
        (then :meth:`post_run` with ``retry_of=(connection, exchange, reason)`` does the rest) or raises
        :class:`~loadgen.transport.faults.AttemptError` as :meth:`post_run` would; ``Connection.cancel``
        abandons it. ``None`` when no slot is free or the URL was never posted to: use :meth:`post_run`.
        """
        route = self._routes.get(endpoint_url)
        loop = self._loop
        if route is None or loop is None or self.closed:
            return None
        target, origin, signer = route
        conn = origin.take(None)
        if conn is None:
            return None
        signature = None if signer is None else signer.sign(body)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._tick, self._sweep)
        return conn, conn.submit(target, signature, body, loop.time() + self.timeout)

    async def post_run(
        self, endpoint_url: str, body: bytes, retry_of: tuple[Connection, Exchange, Result] | None = None
    ) -> bytes:
        """``POST {endpoint_url path}/dispatch.sdk.v1.FunctionService/Run`` with *body*, signed.

        Returns the body of a 2xx response. Every failure raises
        :class:`~loadgen.transport.faults.AttemptError`: a non-2xx status maps through
        :func:`~loadgen.transport.faults.status_for_http` (message from
        :func:`~loadgen.transport.faults.describe_http_error`); refused, reset or lost
        connections and streams reset by the server → TCP_ERROR; the deadline →
        TIMEOUT; TLS → TLS_ERROR; name resolution → DNS_ERROR; a protocol
        violation by the server → HTTP_ERROR; a bad URL → INVALID_ARGUMENT.

        *retry_of*: the connection, exchange and retry reason of a first try started by :meth:`send_run`,
        which this one goes on from as from its own (within the same deadline).
        """
        route = self._routes.get(endpoint_url)
        if route is None:
            route = self._route(endpoint_url)
        target, origin, signer = route
        signature = None if signer is None else signer.sign(body)
        loop = self._loop
        if loop is None:
            loop = self.loop()
        deadline = loop.time() + self.timeout
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._tick, self._sweep)
        avoid: Connection | None = None
        refused = False
        retries = 0
        if retry_of is not None:
            first, tried, reason = retry_of
            deadline = tried.deadline
            if reason == RETRY_REFUSED:
                refused = True
                avoid = first
            else:
                retries = 1
            if self.closed:
                raise AttemptError(_TCP_ERROR, "endpoint pool closed")
        while True:
            conn = origin.take(avoid)
            if conn is None:
                conn = await origin.wait(deadline)
                if loop.time() >= deadline:  # a retry that waited behind younger requests
                    conn.active -= 1
                    origin.on_capacity(conn)
                    raise AttemptError(_TIMEOUT, f"no connection slot within {self.timeout:g} s")
            exchange = conn.submit(target, signature, body, deadline)
            try:
                result = await exchange.fut
            except asyncio.CancelledError:
                conn.cancel(exchange)
                raise
            if type(result) is bytes:
                return result
            if result == RETRY_REFUSED:
                if refused:
                    raise AttemptError(_TCP_ERROR, "stream refused by the endpoint twice (REFUSED_STREAM)")
                refused = True
                avoid = conn
            else:
                retries += 1
                if retries > _MAX_RETRIES:
                    raise AttemptError(_TCP_ERROR, f"request not accepted by the endpoint in {retries} attempts")
            if self.closed:
                raise AttemptError(_TCP_ERROR, "endpoint pool closed")

    def capacity(self, endpoint_url: str) -> int:
        """Requests to *endpoint_url* that can be in progress at once without waiting for a slot: the
        slots of its usable connections (an HTTP/2 one's limit is the server's, once known; an HTTP/1.1
        one has one) plus those of the connections it may still open."""
        per_connection = 1 if self.protocol == "http/1.1" else self.max_streams
        route = self._routes.get(endpoint_url)
        if route is None:
            return self.connections * per_connection
        origin = route[1]
        if origin.protocol == "h1":
            per_connection = 1
        slots = 0
        for conn in origin.conns:
            if conn.usable:
                slots += conn.limit
                if origin.protocol == "h2":
                    per_connection = min(per_connection, conn.limit)
        spare = max(0, self.connections - len(origin.conns) - len(origin.draining))
        return slots + spare * per_connection

    @property
    def open_connections(self) -> int:
        """Connections whose transport is open (ready, draining or still negotiating)."""
        return len(self._open)

    async def aclose(self) -> None:
        """Close every connection (GOAWAY on HTTP/2); pending requests fail with TCP_ERROR."""
        if self.closed:
            return
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        closing = AttemptError(_TCP_ERROR, "endpoint pool closed")
        for origin in self._origins.values():
            origin.fail_waiters(closing)
        conns = list(self._open)
        for conn in conns:
            conn.shutdown("endpoint pool closed")
        waits: list[asyncio.Future[None]] = [conn.wait_closed() for conn in conns]
        waits.extend(self._tasks)
        if waits:
            await asyncio.wait(waits, timeout=5.0)

    async def __aenter__(self) -> EndpointPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- for the origins -----------------------------------------------------------------------

    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the pool is bound to (the running one at first use)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS client context, with ALPN set for the pool's protocol."""
        if self._ssl is None:
            context = self._user_ssl if self._user_ssl is not None else ssl.create_default_context()
            context.set_alpn_protocols(_ALPN[self.protocol])
            self._ssl = context
        return self._ssl

    def start_task(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run *coro* as a task the pool cancels when it closes."""
        task = self.loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def opened(self, conn: Connection) -> None:
        self._open.add(conn)

    def closed_connection(self, conn: Connection) -> None:
        self._open.discard(conn)

    # -- internals -----------------------------------------------------------------------------

    def _route(self, url: str) -> tuple[Target, _Origin, TargetSigner | None]:
        if self.closed:
            raise RuntimeError("EndpointPool is closed")
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise fault(Fault.BAD_URL, f"bad endpoint URL {url!r}: {exc}") from None
        if scheme not in ("http", "https") or not host:
            raise fault(Fault.BAD_URL, f"bad endpoint URL {url!r}: need http(s)://host")
        if port is None:
            port = 443 if scheme == "https" else 80
        authority = parts.netloc.rpartition("@")[2].lower()
        path = parts.path.rstrip("/") + RUN_PATH
        if not (authority.isascii() and path.isascii()) or any(c in path + authority for c in " \r\n\t\0"):
            raise fault(Fault.BAD_URL, f"bad endpoint URL {url!r}: not plain ASCII")
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self, scheme, host, port)
        target = Target(key, path, authority, self._content_type)
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        signer = (
            None
            if self._signer is None
            else self._signer.for_target(method="POST", path=path, authority=authority, content_type=self._content_type)
        )
        route = self._routes[url] = (target, origin, signer)
        return route

    def _sweep(self) -> None:
        loop = self.loop()
        now = loop.time()
        timeout = self.timeout
        busy = False
        for origin in self._origins.values():  # waiters first: a slot freed below must not go to an expired one
            if origin.waiters:
                busy = True
                origin.expire(now, timeout)
            if origin.connecting:
                busy = True
        for conn in list(self._open):
            if conn.active:
                busy = True
                conn.expire(now, timeout)
        self._sweeper = loop.call_later(self._tick, self._sweep) if busy and not self.closed else None
