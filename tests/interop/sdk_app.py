"""A Dispatch endpoint written with the real dispatch-py 0.7.1 SDK (FastAPI integration).

It runs in the SDK virtualenv (``.venv-sdk``), never in the loadgen one. Two ways to start it:

* ``.venv-sdk/bin/python tests/interop/sdk_app.py [--host 127.0.0.1] [--port 0] [--server uvicorn]``:
  binds the port itself (0 = a free one), sets ``DISPATCH_ENDPOINT_URL`` to ``http://HOST:PORT``
  unless it is already set, and prints ``ready http://HOST:PORT`` (flushed) once the server is
  serving. ``--server uvicorn`` (the default) speaks HTTP/1.1 only. ``--server hypercorn`` serves
  the same app with hypercorn: HTTP/1.1 and HTTP/2 cleartext with prior knowledge (a client that
  opens with the h2 preface on plain TCP gets HTTP/2), closing each connection with a GOAWAY after
  ``SDK_APP_KEEP_ALIVE_MAX_REQUESTS`` requests (default 20, hypercorn's ``keep_alive_max_requests``);
* ``.venv-sdk/bin/python -m uvicorn tests.interop.sdk_app:app --port P`` with
  ``DISPATCH_ENDPOINT_URL`` set by the caller.

Configuration comes from the environment, as the SDK reads it: ``DISPATCH_ENDPOINT_URL``,
``DISPATCH_VERIFICATION_KEY`` (required here, so that signatures are always checked),
``DISPATCH_API_KEY`` and ``DISPATCH_API_URL`` (only used if a function dispatched calls itself;
the SDK refuses to start without an API key, so a placeholder is fine).

Functions (the Dispatch function name is the Python ``__qualname__``):

* ``add(a, b)``: plain result ``a + b``;
* ``square(x)``: ``x * x``, the child of ``fanout``;
* ``fanout(n)``: ``await dispatch.gather(*[square(i) for i in range(n)])``, returns the list;
* ``flaky(key, n, kind="temporary")``: raises a retryable error the first *n* times it runs for
  *key* (``dispatch.error.TemporaryError`` → TEMPORARY_ERROR, or with ``kind="timeout"`` the
  built-in ``TimeoutError`` → TIMEOUT), then returns ``"ok"``;
* ``doomed(key="default")``: raises ``ValueError("doomed to fail: KEY")`` → INVALID_ARGUMENT,
  a permanent failure;
* ``tail(n)``: a *primitive* function answering ``Output.tail_call(tail_step(n, 0))`` (status OK);
* ``tail_step(k, acc)``: a regular function that tail-calls itself by raising
  ``dispatch.proto.TailCall(call, status=Status.OK)`` until ``k == 0``, then returns
  ``"tail done: ACC"``, ACC being ``n + (n-1) + … + 1``;
* ``greet(name, punct="?")``: ``"hello NAME PUNCT"`` without the spaces (``greet("bob", punct="!")``
  is ``"hello bob!"``);
* ``wobbly()``: every other run raises ``TemporaryError`` (retryable), the others return ``"steady"``:
  under load, calls fail some attempts and then complete;
* ``stuck()``: always raises ``TemporaryError``: a call retried until it expires;
* ``evil(path)``: returns an object whose pickle is ``os.system("touch PATH")``: an output that runs
  code when unpickled with ``pickle.loads`` (the SDK pickles it; nothing runs in the endpoint).

Every run of a function body is counted; ``GET /counts`` returns the counters as JSON,
``{"add": 1, "flaky:KEY": 3, …}`` (``name`` or ``name:key``), and ``POST /counts/reset`` clears them.
``GET /http-versions`` returns how many requests to the Dispatch routes
(``/dispatch.sdk.v1.FunctionService/…``) arrived with each ASGI ``scope["http_version"]``,
e.g. ``{"1.1": 12}`` or ``{"2": 130}``; ``GET /connections`` returns those requests per client
connection (``scope["client"]`` as ``HOST:PORT``) and version, e.g. ``{"2": {"127.0.0.1:50312": 21}}``.
Both are cleared by ``POST /counts/reset`` too.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from typing import Any

_listener: socket.socket | None = None
_server = "uvicorn"


def _bind_before_configuring() -> None:
    """When run as a script, bind first so that DISPATCH_ENDPOINT_URL can name the real port."""
    global _listener, _server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--server",
        choices=("uvicorn", "hypercorn"),
        default="uvicorn",
        help="uvicorn (HTTP/1.1, the default) or hypercorn (HTTP/1.1 and h2c with prior knowledge)",
    )
    options = parser.parse_args()
    _listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    _listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn serving a socket it did not make leaves Nagle on: each answer would wait ~40 ms for an ACK.
    _listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    _listener.bind((options.host, options.port))
    _listener.listen(128)
    _listener.set_inheritable(True)
    host, port = _listener.getsockname()[:2]
    os.environ.setdefault("DISPATCH_ENDPOINT_URL", f"http://{host}:{port}")
    os.environ["SDK_APP_LOG_LEVEL"] = options.log_level
    _server = options.server


if __name__ == "__main__":
    _bind_before_configuring()

import dispatch  # noqa: E402
import fastapi  # noqa: E402
from dispatch.error import TemporaryError  # noqa: E402
from dispatch.fastapi import Dispatch  # noqa: E402
from dispatch.proto import Error, Input, Output, TailCall  # noqa: E402
from dispatch.status import Status  # noqa: E402

if not os.environ.get("DISPATCH_VERIFICATION_KEY"):
    sys.exit("sdk_app: DISPATCH_VERIFICATION_KEY must be set (the interop endpoint always verifies signatures)")
if not os.environ.get("DISPATCH_ENDPOINT_URL"):
    sys.exit("sdk_app: DISPATCH_ENDPOINT_URL must be set")
os.environ.setdefault("DISPATCH_API_KEY", "sdk-app-unused-api-key")
os.environ.setdefault("DISPATCH_API_URL", "http://127.0.0.1:1")

app = fastapi.FastAPI()
# All four settings come from the environment; passing them explicitly would read the same values.
dispatch_endpoint = Dispatch(
    app,
    endpoint=os.environ["DISPATCH_ENDPOINT_URL"],
    verification_key=os.environ["DISPATCH_VERIFICATION_KEY"],
    api_key=os.environ["DISPATCH_API_KEY"],
    api_url=os.environ["DISPATCH_API_URL"],
)

_counts_lock = threading.Lock()
_counts: dict[str, int] = {}
_http_versions: dict[str, int] = {}
_connections: dict[str, dict[str, int]] = {}
_DISPATCH_ROUTES = "/dispatch.sdk.v1.FunctionService/"


class _RecordHttpVersion:
    """Pure ASGI middleware: counts the ``http_version`` of the requests to the Dispatch routes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(_DISPATCH_ROUTES):
            version = str(scope.get("http_version", "?"))
            client = scope.get("client") or ("?", 0)
            peer = f"{client[0]}:{client[1]}"
            with _counts_lock:
                _http_versions[version] = _http_versions.get(version, 0) + 1
                per_peer = _connections.setdefault(version, {})
                per_peer[peer] = per_peer.get(peer, 0) + 1
        await self.app(scope, receive, send)


app.add_middleware(_RecordHttpVersion)


def _count(name: str, key: Any = None) -> int:
    counter = name if key is None else f"{name}:{key}"
    with _counts_lock:
        _counts[counter] = _counts.get(counter, 0) + 1
        return _counts[counter]


@app.get("/counts")
def get_counts() -> dict[str, int]:
    with _counts_lock:
        return dict(_counts)


@app.post("/counts/reset")
def reset_counts() -> dict[str, int]:
    with _counts_lock:
        _counts.clear()
        _http_versions.clear()
        _connections.clear()
    return {}


@app.get("/http-versions")
def get_http_versions() -> dict[str, int]:
    with _counts_lock:
        return dict(_http_versions)


@app.get("/connections")
def get_connections() -> dict[str, dict[str, int]]:
    with _counts_lock:
        return {version: dict(peers) for version, peers in _connections.items()}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"endpoint": dispatch_endpoint.endpoint}


@dispatch_endpoint.function
def add(a: int, b: int) -> int:
    _count("add")
    return a + b


@dispatch_endpoint.function
def square(x: int) -> int:
    _count("square")
    return x * x


@dispatch_endpoint.function
async def fanout(n: int) -> list[int]:
    _count("fanout")
    # square(i) builds a durable coroutine awaiting dispatch.coroutine.call(Call(...));
    # gather (an alias of dispatch.all) suspends fanout with one Poll holding all n calls.
    return await dispatch.gather(*[square(i) for i in range(n)])


@dispatch_endpoint.function
def flaky(key: str, n: int, kind: str = "temporary") -> str:
    attempt = _count("flaky", key)
    if attempt <= n:
        if kind == "timeout":
            raise TimeoutError(f"flaky {key}: attempt {attempt} of {n} failing")
        raise TemporaryError(f"flaky {key}: attempt {attempt} of {n} failing")
    return "ok"


@dispatch_endpoint.function
def doomed(key: str = "default") -> None:
    _count("doomed", key)
    raise ValueError(f"doomed to fail: {key}")


@dispatch_endpoint.primitive_function
def tail(input: Input) -> Output:
    # A primitive function receives the raw Input and must not raise.
    try:
        _count("tail")
        args, kwargs = input.input_arguments()
        return Output.tail_call(tail_step.build_call(*args, 0, **kwargs), status=Status.OK)
    except Exception as exc:
        return Output.error(Error.from_exception(exc))


@dispatch_endpoint.function
def tail_step(k: int, acc: int) -> str:
    _count("tail_step")
    if k <= 0:
        return f"tail done: {acc}"
    # dispatch.Reset(tail_step, ...) would do the same with status TEMPORARY_ERROR, which an
    # orchestrator that checks retryable statuses first (the SDK's own mock) retries forever.
    raise TailCall(call=tail_step.build_call(k - 1, acc + k), status=Status.OK)


@dispatch_endpoint.function
def greet(name: str, punct: str = "?") -> str:
    _count("greet")
    return f"hello {name}{punct}"


_wobbles = [0]


@dispatch_endpoint.function
def wobbly() -> str:
    with _counts_lock:
        _wobbles[0] += 1
        odd = _wobbles[0] % 2 == 1
    if odd:
        raise TemporaryError("wobbly: this attempt fails, the next one works")
    return "steady"


@dispatch_endpoint.function
def stuck() -> None:
    raise TemporaryError("stuck: never works")


class _Boom:
    """Pickles as ``os.system("touch PATH")``: whoever calls ``pickle.loads`` on it runs that command."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


@dispatch_endpoint.function
def evil(path: str) -> Any:
    _count("evil")
    return _Boom(path)


def _serve_uvicorn() -> None:
    import uvicorn

    assert _listener is not None
    endpoint = os.environ["DISPATCH_ENDPOINT_URL"]

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print(f"ready {endpoint}", flush=True)

    config = uvicorn.Config(app, log_level=os.environ.get("SDK_APP_LOG_LEVEL", "warning"), lifespan="off")
    Server(config).run(sockets=[_listener])


def _serve_hypercorn() -> None:
    """Serve with hypercorn on the bound socket: HTTP/1.1, and h2c when the client sends the h2 preface."""
    import asyncio
    import signal

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    assert _listener is not None
    endpoint = os.environ["DISPATCH_ENDPOINT_URL"]
    config = Config()
    config.bind = [f"fd://{_listener.detach()}"]  # hypercorn owns (and closes) the listening socket
    # After this many requests on one connection hypercorn sends a GOAWAY (HTTP/2) or closes it (HTTP/1.1).
    config.keep_alive_max_requests = int(os.environ.get("SDK_APP_KEEP_ALIVE_MAX_REQUESTS", "20"))
    config.loglevel = os.environ.get("SDK_APP_LOG_LEVEL", "warning").upper()
    config.accesslog = None
    config.graceful_timeout = 1.0

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

        async def shutdown_trigger() -> None:
            # hypercorn awaits this once its listening servers are started: the app is serving.
            print(f"ready {endpoint}", flush=True)
            await stop.wait()

        await serve(app, config, shutdown_trigger=shutdown_trigger)

    asyncio.run(main())


if __name__ == "__main__":
    if _server == "hypercorn":
        _serve_hypercorn()
    else:
        _serve_uvicorn()
