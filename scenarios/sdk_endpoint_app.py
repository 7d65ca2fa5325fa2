"""An example Dispatch endpoint on the Python SDK (dispatch-py 0.7 or 0.8), to load-test with
``scenarios/sdk-endpoint.toml``. It is your application in miniature: FastAPI, uvicorn, a few functions.

Run it in a Python that has the SDK (``make sdk`` makes two: ``.venv-sdk`` with dispatch-py 0.7.1,
``.venv-sdk08`` with 0.8.0), with the public half of loadgen's signing key::

    eval "$(.venv/bin/loadgen keygen)"                  # exports LOADGEN_SIGNING_KEY and DISPATCH_VERIFICATION_KEY
    .venv-sdk/bin/python scenarios/sdk_endpoint_app.py  # serves on http://127.0.0.1:8000 (--port to change)

The SDK reads ``DISPATCH_VERIFICATION_KEY`` and refuses requests that are not signed with its
private half. ``DISPATCH_ENDPOINT_URL`` (how the endpoint names itself in the calls it makes:
``squares`` calls ``square``) defaults to the address it serves on; the SDK also wants a
``DISPATCH_API_KEY``, which these functions never use (a placeholder is set).

Functions (a Dispatch function's name is its Python name):

* ``greet(name, punct="!")`` → ``"hello NAME!"``: a coroutine, so it takes keyword arguments on both
  SDK generations (0.8.0 passes keyword arguments of *blocking* functions to
  ``run_in_executor``, which refuses them: a bug of that release);
* ``add(a, b)`` → ``a + b``;
* ``squares(n)`` → ``[0, 1, 4, ...]``: ``n`` calls of ``square`` in parallel (``dispatch.gather``).
"""

from __future__ import annotations

import argparse
import os
import sys

import dispatch
import fastapi
import uvicorn

try:  # dispatch-py 0.8: the asyncio integration (the blocking one cannot gather)
    from dispatch.asyncio.fastapi import Dispatch
except ImportError:  # dispatch-py 0.7
    from dispatch.fastapi import Dispatch  # type: ignore[no-redef]

parser = argparse.ArgumentParser(description="An example Dispatch endpoint for scenarios/sdk-endpoint.toml")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
options = parser.parse_args()

if not os.environ.get("DISPATCH_VERIFICATION_KEY"):
    sys.exit('sdk_endpoint_app: set DISPATCH_VERIFICATION_KEY first (eval "$(.venv/bin/loadgen keygen)")')
os.environ.setdefault("DISPATCH_ENDPOINT_URL", f"http://{options.host}:{options.port}")
os.environ.setdefault("DISPATCH_API_KEY", "not-used-by-these-functions")

app = fastapi.FastAPI()
endpoint = Dispatch(app)  # reads DISPATCH_ENDPOINT_URL, DISPATCH_VERIFICATION_KEY, DISPATCH_API_KEY


@endpoint.function
async def greet(name: str, punct: str = "!") -> str:
    return f"hello {name}{punct}"


@endpoint.function
def add(a: int, b: int) -> int:
    return a + b


@endpoint.function
def square(x: int) -> int:
    return x * x


@endpoint.function
async def squares(n: int) -> list[int]:
    return await dispatch.gather(*[square(i) for i in range(n)])


if __name__ == "__main__":
    print(f"sdk_endpoint_app: serving on {os.environ['DISPATCH_ENDPOINT_URL']} (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning")
