"""The old mock as a benchmark target: dispatch-py 0.7.1 ``dispatch.test`` in its own process.

Run with the SDK venv's interpreter (``.venv-sdk/bin/python loadgen/bench/_oldmock_runner.py
--endpoint URL``), never imported by loadgen (``dispatch`` is not installed in loadgen's
venv, hence the ``importlib`` imports). ``LOADGEN_BENCH_SIGNING_KEY`` holds the Ed25519
private key (base64 of the raw 32-byte seed) and ``LOADGEN_BENCH_API_KEY`` the API key.

It runs the SDK's own ``DispatchService`` (its background dispatch thread started, as
``with service:`` does) and ``DispatchServer`` (gRPC on 127.0.0.1, any free port),
with the SDK's ``EndpointClient`` (httpx over HTTP/1.1, signing every request) behind a
thin wrapper that counts root calls the endpoint finished: a response with status OK,
an ``exit`` and no tail call, to a request whose ``dispatch_id`` is its root's. That is
exactly when the old mock is done with an ``echo`` call; it has no ``Wait`` RPC to ask.
Nothing else of the mock is touched.

Protocol (one line each way, stdout flushed):

* at start → ``listening http://127.0.0.1:PORT``
* ``wait N T`` → ``done COMPLETED QUEUED`` once N root calls completed in all, or when
  no call completed for T seconds (then COMPLETED < N);
* ``count`` → ``count COMPLETED QUEUED`` (QUEUED: ``len(service.queue)``, calls waiting);
* ``quit`` (or end of input) → stops the server and the service, exits.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures.thread  # DispatchServer uses concurrent.futures.thread without importing it
import importlib
import os
import sys
import threading
from typing import Any

assert concurrent.futures.thread  # imported for its side effect


class CountingClient:
    """The SDK's ``EndpointClient``, counting root calls the endpoint finished (see the module docstring)."""

    def __init__(self, inner: Any, status_ok: int) -> None:
        self.inner = inner
        self.status_ok = status_ok
        self.completed = 0
        self.changed = threading.Condition()

    def run(self, request: Any) -> Any:
        response = self.inner.run(request)
        if (
            request.dispatch_id == request.root_dispatch_id
            and response.status == self.status_ok
            and response.HasField("exit")
            and not response.exit.HasField("tail_call")
        ):
            with self.changed:
                self.completed += 1
                self.changed.notify_all()
        return response

    def wait(self, target: int, idle_timeout: float) -> int:
        """Block until *target* calls completed, or *idle_timeout* seconds passed without progress."""
        with self.changed:
            while self.completed < target:
                seen = self.completed
                self.changed.wait(idle_timeout)
                if self.completed == seen:
                    break
            return self.completed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--endpoint", required=True, help="the endpoint URL the mock calls")
    args = parser.parse_args()

    ed25519 = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ed25519")
    httpx = importlib.import_module("httpx")
    sdk_test = importlib.import_module("dispatch.test")
    status_pb2 = importlib.import_module("dispatch.sdk.v1.status_pb2")

    seed = base64.b64decode(os.environ["LOADGEN_BENCH_SIGNING_KEY"])
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    inner = sdk_test.EndpointClient(httpx.Client(base_url=args.endpoint), signing_key=key)
    client = CountingClient(inner, status_pb2.STATUS_OK)
    service = sdk_test.DispatchService(client, api_key=os.environ["LOADGEN_BENCH_API_KEY"])
    server = sdk_test.DispatchServer(service, hostname="127.0.0.1", port=0)
    service.start()
    server.start()
    try:
        print(f"listening {server.url}", flush=True)
        for line in sys.stdin:
            command = line.split()
            if not command or command[0] == "quit":
                break
            if command[0] == "wait":
                completed = client.wait(int(command[1]), float(command[2]))
                print(f"done {completed} {len(service.queue)}", flush=True)
            elif command[0] == "count":
                print(f"count {client.completed} {len(service.queue)}", flush=True)
            else:
                print(f"error unknown command {command[0]!r}", flush=True)
    finally:
        server.stop()
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
