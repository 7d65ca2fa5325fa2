"""Dispatch calls with the real dispatch-py 0.7.1 client; run it with the SDK venv's python.

Usage::

    .venv-sdk/bin/python tests/interop/sdk_client.py dispatch CALLS_JSON
    .venv-sdk/bin/python tests/interop/sdk_client.py encode-input ARGS_JSON [KWARGS_JSON]

``dispatch`` sends one ``DispatchRequest`` through ``dispatch.Client`` (gRPC; ``DISPATCH_API_URL``
and ``DISPATCH_API_KEY`` from the environment, ``http://`` URLs must be loopback). CALLS_JSON is a
list of ``{"function": NAME, "args": [...], "kwargs": {...}, "endpoint": URL}``; ``endpoint``
defaults to ``DISPATCH_ENDPOINT_URL``. Each input is the SDK's own encoding: a pickled
``dispatch.proto.Arguments(args, kwargs)`` in ``Any(BytesValue)``. Prints the dispatch ids as a
JSON list on stdout. An authentication failure exits with status 3 and the SDK's message on stderr.

``encode-input`` prints, as JSON ``{"any": BASE64}``, the serialized ``google.protobuf.Any`` the
SDK would put in ``Call.input`` / ``RunRequest.input`` for those arguments, so that callers in
another virtualenv (without the ``dispatch`` package) can build valid requests.
"""

from __future__ import annotations

import base64
import json
import os
import sys

from dispatch import Call, Client
from dispatch.proto import Arguments, _pb_any_pickle


def _arguments(args: object, kwargs: object) -> Arguments:
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise SystemExit("sdk_client: args must be a JSON list and kwargs a JSON object")
    return Arguments(args=tuple(args), kwargs=kwargs)


def dispatch_calls(spec: str) -> list[str]:
    calls_json = json.loads(spec)
    if not isinstance(calls_json, list) or not calls_json:
        raise SystemExit("sdk_client: CALLS_JSON must be a non-empty JSON list")
    default_endpoint = os.environ.get("DISPATCH_ENDPOINT_URL")
    calls = []
    for item in calls_json:
        endpoint = item.get("endpoint", default_endpoint)
        if not endpoint:
            raise SystemExit("sdk_client: no endpoint (set DISPATCH_ENDPOINT_URL or give one per call)")
        calls.append(
            Call(
                function=item["function"],
                input=_arguments(item.get("args", []), item.get("kwargs", {})),
                endpoint=endpoint,
            )
        )
    client = Client()  # api_key/api_url from DISPATCH_API_KEY / DISPATCH_API_URL
    return [str(dispatch_id) for dispatch_id in client.dispatch(calls)]


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "dispatch":
        try:
            ids = dispatch_calls(argv[1])
        except PermissionError as exc:
            print(f"sdk_client: PermissionError: {exc}", file=sys.stderr)
            return 3
        print(json.dumps(ids), flush=True)
        return 0
    if len(argv) >= 2 and argv[0] == "encode-input":
        kwargs = json.loads(argv[2]) if len(argv) > 2 else {}
        encoded = _pb_any_pickle(_arguments(json.loads(argv[1]), kwargs)).SerializeToString()
        print(json.dumps({"any": base64.b64encode(encoded).decode()}), flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
