"""dispatch-py 0.8.0's own Connect client against loadgen's Connect ingress.

``dispatch.Client`` (0.8.0: Connect unary over aiohttp, ``.venv-sdk08``) → ``loadgen serve REFERENCE
--connect-port 0`` → loadgen's reference endpoint (``echo``). Inputs are encoded by the 0.8 SDK itself
(``marshal_any``), so ``echo`` hands back the very ``Any`` the SDK sent. Results are read back both
with loadgen's gRPC ``Wait`` and with the Connect ``Wait`` route (0.8.0's test-service shape: the
dispatch id as UTF-8 body), decoded there by the 0.8 SDK's ``unmarshal_any``.

See conftest.py for the processes; all run on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import struct_pb2, wrappers_pb2

# The first test here may spend 20-60 s building .venv-sdk08 (setup_sdk08_venv.sh, from PyPI) in its
# fixture setup, which pytest-timeout counts; each test itself takes about a second.
pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

# What the 0.8 SDK makes of each input (marshal_any): type URL suffix, then how loadgen's side decodes it.
_CALLS: list[dict[str, Any]] = [
    {"function": "echo", "input": "hello from dispatch-py 0.8"},  # StringValue
    {"function": "echo", "input": 42},  # Int64Value
    {"function": "echo", "input": {"a": [1, 2.5, "x"], "b": None, "c": True}},  # google.protobuf.Value (Struct)
    {"function": "echo", "input": [1, "two", 3.0], "pickle": True},  # a tuple: dispatch.sdk.python.v1.Pickled
]
_TYPE_URLS = [
    "type.googleapis.com/google.protobuf.StringValue",
    "type.googleapis.com/google.protobuf.Int64Value",
    "type.googleapis.com/google.protobuf.Value",
    "buf.build/stealthrocket/dispatch-proto/dispatch.sdk.python.v1.Pickled",
]


def test_connect_ingress_is_announced(connect_loadgen: Any) -> None:
    assert connect_loadgen.connect_url.startswith("http://127.0.0.1:")
    assert connect_loadgen.connect_url != connect_loadgen.service.api_url  # its own port, next to gRPC


def test_sdk08_dispatch_then_grpc_wait_echoes_input(connect_loadgen: Any) -> None:
    ids, inputs = connect_loadgen.dispatch(_CALLS)
    assert len(set(ids)) == len(_CALLS)
    assert [i.type_url for i in inputs] == _TYPE_URLS

    for dispatch_id, sent in zip(ids, inputs, strict=True):
        outcome = connect_loadgen.service.wait(dispatch_id)  # loadgen's gRPC Wait on DISPATCH_API_URL
        assert outcome.status == "STATUS_OK", outcome.result
        assert not outcome.result.HasField("error"), outcome.result
        assert outcome.result.dispatch_id == dispatch_id
        assert outcome.result.output == sent  # echo: the very Any the 0.8 SDK encoded

    # Decoded on loadgen's side, too: the values are what was sent.
    string_value, int_value, struct_value = wrappers_pb2.StringValue(), wrappers_pb2.Int64Value(), struct_pb2.Value()
    assert inputs[0].Unpack(string_value) and string_value.value == "hello from dispatch-py 0.8"
    assert inputs[1].Unpack(int_value) and int_value.value == 42
    assert inputs[2].Unpack(struct_value)
    assert struct_value.struct_value["a"][1] == 2.5 and struct_value.struct_value["c"] is True


def test_sdk08_dispatch_then_connect_wait_decoded_by_sdk(connect_loadgen: Any) -> None:
    ids, inputs = connect_loadgen.dispatch(_CALLS)
    # The 0.8 SDK's Connect headers, with the UTF-8 id body sent as text.
    answers = connect_loadgen.sdk08("wait", json.dumps(ids), "text/plain; charset=utf-8").json
    assert [a["dispatch_id"] for a in answers] == ids
    assert [a["status"] for a in answers] == ["STATUS_OK"] * len(ids)
    assert [a["error"] for a in answers] == [None] * len(ids)
    assert [a["output_type"] for a in answers] == ["str", "int", "dict", "tuple"]
    assert [a["output"] for a in answers] == [
        "hello from dispatch-py 0.8",
        42,
        {"a": [1.0, 2.5, "x"], "b": None, "c": True},
        [1, "two", 3.0],  # the tuple, unpickled by the SDK (JSON has no tuples)
    ]
    assert [a["output_any"] for a in answers] == [base64.b64encode(i.SerializeToString()).decode() for i in inputs]


def test_sdk08_connect_wait_with_the_sdk_content_type(connect_loadgen: Any) -> None:
    ids, _ = connect_loadgen.dispatch(_CALLS[:1])
    run = connect_loadgen.sdk08("wait", json.dumps(ids))  # Content-Type: application/proto, as Client.request sets
    assert run.out.returncode == 0, run.out.stderr
    assert run.json[0]["status"] == "STATUS_OK"


def test_sdk08_wrong_api_key_raises_permission_error(connect_loadgen: Any) -> None:
    run = connect_loadgen.sdk08("dispatch", json.dumps(_CALLS[:1]), api_key="not-the-key")
    # The ingress answers 401; the 0.8 client turns that into PermissionError (sdk08_client exits 3).
    assert run.out.returncode == 3, f"exit {run.out.returncode}\n{run.out.stdout}\n{run.out.stderr}"
    assert "PermissionError: Dispatch received an invalid authentication token" in run.out.stderr
    assert "not-the-key" not in run.out.stderr

    [dispatch_id], _ = connect_loadgen.dispatch(_CALLS[:1])  # with the right key
    run = connect_loadgen.sdk08("wait", json.dumps([dispatch_id]), "text/plain", api_key="not-the-key")
    assert run.out.returncode == 3, f"exit {run.out.returncode}\n{run.out.stdout}\n{run.out.stderr}"  # Wait: 401 too
