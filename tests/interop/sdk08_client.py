"""Dispatch calls with the real dispatch-py 0.8.0 client (Connect over aiohttp); run it with ``.venv-sdk08``.

Usage::

    .venv-sdk08/bin/python tests/interop/sdk08_client.py dispatch CALLS_JSON
    .venv-sdk08/bin/python tests/interop/sdk08_client.py wait IDS_JSON [CONTENT_TYPE]

Both read ``DISPATCH_API_URL`` (the Connect base URL, e.g. loadgen's ``--connect-port`` ingress) and
``DISPATCH_API_KEY`` from the environment, as 0.8.0's ``dispatch.Client`` does.

``dispatch`` sends one ``DispatchRequest`` with ``await dispatch.Client().dispatch(calls)``: a Connect
unary ``POST {api_url}/dispatch.sdk.v1.DispatchService/Dispatch`` (``application/proto``, Bearer key).
CALLS_JSON is a list of ``{"function": NAME, "input": VALUE, "endpoint": URL, "pickle": false}``:
VALUE is any JSON value, encoded by the SDK itself (``dispatch.any.marshal_any``: a string becomes
``StringValue``, an integer ``Int64Value``, a list or object a ``google.protobuf.Value``, …); with
``"pickle": true`` a list is sent as a Python tuple, which the SDK pickles into its
``dispatch.sdk.python.v1.Pickled`` message. ``endpoint`` defaults to ``DISPATCH_ENDPOINT_URL``.
Prints ``{"ids": [...], "inputs": [BASE64 of each serialized Call.input Any]}`` on stdout.

``wait`` asks for each id's result the way 0.8.0's (commented-out) ``Client.wait`` would have: a
``POST {api_url}/dispatch.sdk.v1.DispatchService/Wait`` with the SDK's own Connect headers
(``Client.request``: ``Content-Type: application/proto``, unless CONTENT_TYPE replaces it) and the
dispatch id as UTF-8 body (as 0.8.0's ``dispatch.test.Service`` read it, whatever the Content-Type),
answered by a ``CallResult``. It decodes
that with the SDK (``CallResult._from_proto``, i.e. ``unmarshal_any``) and prints a JSON list of
``{"dispatch_id", "status", "output", "output_type", "output_any", "error"}``; ``status`` is the
``loadgen-status`` response header.

Exit status: 0 on success, 3 on ``PermissionError`` (the API answered 401), 4 on
``dispatch.ClientError`` (another non-200 reply); the SDK's message goes to stderr.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from typing import Any

from dispatch import Call, Client, ClientError
from dispatch.function import current_session
from dispatch.proto import CallResult
from dispatch.sdk.v1 import call_pb2

WAIT_PATH = "/dispatch.sdk.v1.DispatchService/Wait"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return {"bytes_b64": base64.b64encode(value).decode()}
    return repr(value)


def _calls(spec: str) -> list[Call]:
    calls_json = json.loads(spec)
    if not isinstance(calls_json, list) or not calls_json:
        raise SystemExit("sdk08_client: CALLS_JSON must be a non-empty JSON list")
    default_endpoint = os.environ.get("DISPATCH_ENDPOINT_URL")
    calls = []
    for item in calls_json:
        endpoint = item.get("endpoint", default_endpoint)
        if not endpoint:
            raise SystemExit("sdk08_client: no endpoint (set DISPATCH_ENDPOINT_URL or give one per call)")
        value = item.get("input")
        if item.get("pickle"):
            if not isinstance(value, list):
                raise SystemExit("sdk08_client: a pickled input must be a JSON list (sent as a tuple)")
            value = tuple(value)
        calls.append(Call(function=item["function"], input=value, endpoint=endpoint))
    return calls


async def dispatch_calls(spec: str) -> dict[str, list[str]]:
    calls = _calls(spec)
    client = Client()  # api_key/api_url from DISPATCH_API_KEY / DISPATCH_API_URL
    try:
        ids = await client.dispatch(calls)
    finally:
        await current_session().close()
    # The very Any the SDK put in each Call.input (Call._as_proto is what Client.dispatch sends).
    inputs = [base64.b64encode(call._as_proto().input.SerializeToString()).decode() for call in calls]
    return {"ids": [str(i) for i in ids], "inputs": inputs}


async def wait_calls(spec: str, content_type: str | None = None) -> list[dict[str, Any]]:
    ids = json.loads(spec)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise SystemExit("sdk08_client: IDS_JSON must be a JSON list of strings")
    client = Client()
    answers = []
    try:
        for dispatch_id in ids:
            url, headers, timeout = client.request(WAIT_PATH)
            if content_type:
                headers["Content-Type"] = content_type
            async with current_session().post(
                url, headers=headers, data=dispatch_id.encode("utf-8"), timeout=timeout
            ) as res:
                data = await res.read()
                client._check_response(res.status, data)  # 401 → PermissionError, else ClientError
                status = res.headers.get("loadgen-status")
            proto = call_pb2.CallResult.FromString(data)
            result = CallResult._from_proto(proto)
            error = result.error
            answers.append(
                {
                    "dispatch_id": proto.dispatch_id,
                    "status": status,
                    "output": _jsonable(result.output),
                    "output_type": type(result.output).__name__,
                    "output_any": base64.b64encode(proto.output.SerializeToString()).decode()
                    if proto.HasField("output")
                    else None,
                    "error": None if error is None else {"type": error.type, "message": error.message},
                }
            )
    finally:
        await current_session().close()
    return answers


def main(argv: list[str]) -> int:
    commands: dict[str, Any] = {"dispatch": dispatch_calls, "wait": wait_calls}
    if len(argv) < 2 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        out = asyncio.run(commands[argv[0]](*argv[1:3]))
    except PermissionError as exc:
        print(f"sdk08_client: PermissionError: {exc}", file=sys.stderr)
        return 3
    except ClientError as exc:
        print(f"sdk08_client: ClientError: status={exc.status} code={exc.code} message={exc.message}", file=sys.stderr)
        return 4
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
