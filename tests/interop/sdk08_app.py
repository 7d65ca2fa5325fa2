"""A Dispatch endpoint written with the real dispatch-py 0.8.0 SDK (FastAPI, asyncio integration).

It runs in the 0.8 virtualenv (``.venv-sdk08``), never in the loadgen one::

    .venv-sdk08/bin/python tests/interop/sdk08_app.py [--host 127.0.0.1] [--port 0]

binds the port itself (0 = a free one), sets ``DISPATCH_ENDPOINT_URL`` to ``http://HOST:PORT``
unless it is already set, and prints ``ready http://HOST:PORT`` (flushed) once uvicorn serves
(HTTP/1.1). ``DISPATCH_VERIFICATION_KEY`` is required: signatures are always checked. 0.8.0's
default registry also needs ``DISPATCH_API_KEY`` (a placeholder is set when missing).

It uses ``dispatch.asyncio.fastapi.Dispatch``: in 0.8.0 the blocking ``dispatch.fastapi.Dispatch``
wraps every function so that calling one inside a coroutine (``gather``) runs ``asyncio.run`` in a
running loop and fails. Functions (the name is the Python ``__qualname__``):

* ``greet(name, punct="?")``: a regular (blocking) function. 0.8.0 runs those with
  ``loop.run_in_executor(None, func, *args, **kwargs)``, which takes no keyword arguments, so a call
  with ``kwargs`` fails with ``TypeError`` (INVALID_ARGUMENT, not retried): an SDK bug, kept here;
* ``agreet(name, punct="?")``: the same as a coroutine, which takes keyword arguments;
* ``add(a, b)``, ``square(x)``; ``fanout(n)``: ``await dispatch.gather(*[square(i) ...])``;
* ``wobbly()``: every other run raises ``TemporaryError``, the others return ``"steady"``;
* ``doomed()``: raises ``ValueError`` (INVALID_ARGUMENT, permanent);
* ``evil(path)``: returns an object whose pickle is ``os.system("touch PATH")`` (0.8.0 sends it as
  ``Pickled``).

0.8.0 writes outputs as well-known types: ``str`` → ``StringValue``, ``int`` → ``Int64Value``, a list
→ ``google.protobuf.Value`` (its integers as doubles), anything else ``Pickled``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from typing import Any

_listener: socket.socket | None = None


def _bind_before_configuring() -> None:
    """Bind first, so that DISPATCH_ENDPOINT_URL can name the real port."""
    global _listener
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="warning")
    options = parser.parse_args()
    _listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    _listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn serving a socket it did not make leaves Nagle on: each answer would wait ~40 ms for an ACK.
    _listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    _listener.bind((options.host, options.port))
    _listener.listen(128)
    host, port = _listener.getsockname()[:2]
    os.environ.setdefault("DISPATCH_ENDPOINT_URL", f"http://{host}:{port}")
    os.environ["SDK_APP_LOG_LEVEL"] = options.log_level


if __name__ == "__main__":
    _bind_before_configuring()

if not os.environ.get("DISPATCH_VERIFICATION_KEY"):
    sys.exit("sdk08_app: DISPATCH_VERIFICATION_KEY must be set (the interop endpoint always verifies signatures)")
if not os.environ.get("DISPATCH_ENDPOINT_URL"):
    sys.exit("sdk08_app: DISPATCH_ENDPOINT_URL must be set")
os.environ.setdefault("DISPATCH_API_KEY", "sdk-app-unused-api-key")

import dispatch  # noqa: E402
import fastapi  # noqa: E402
from dispatch.asyncio.fastapi import Dispatch  # noqa: E402
from dispatch.error import TemporaryError  # noqa: E402

app = fastapi.FastAPI()
dispatch_endpoint = Dispatch(app)  # the default registry: DISPATCH_ENDPOINT_URL, DISPATCH_API_KEY
_lock = threading.Lock()
_wobbles = [0]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"sdk": "dispatch-py 0.8"}


@dispatch_endpoint.function
def greet(name: str, punct: str = "?") -> str:
    return f"hello {name}{punct}"


@dispatch_endpoint.function
async def agreet(name: str, punct: str = "?") -> str:
    return f"hello {name}{punct}"


@dispatch_endpoint.function
def add(a: int, b: int) -> int:
    return a + b


@dispatch_endpoint.function
def square(x: int) -> int:
    return x * x


@dispatch_endpoint.function
async def fanout(n: int) -> list[int]:
    return await dispatch.gather(*[square(i) for i in range(n)])


@dispatch_endpoint.function
def wobbly() -> str:
    with _lock:
        _wobbles[0] += 1
        odd = _wobbles[0] % 2 == 1
    if odd:
        raise TemporaryError("wobbly: this attempt fails, the next one works")
    return "steady"


@dispatch_endpoint.function
def doomed() -> None:
    raise ValueError("doomed to fail")


class _Boom:
    """Pickles as ``os.system("touch PATH")``: whoever calls ``pickle.loads`` on it runs that command."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


@dispatch_endpoint.function
def evil(path: str) -> Any:
    return _Boom(path)


def _serve() -> None:
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


if __name__ == "__main__":
    _serve()
