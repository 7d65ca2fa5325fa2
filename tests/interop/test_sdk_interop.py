"""Interop with the real dispatch-py 0.7.1 SDK: its FastAPI endpoint and its gRPC client.

Two groups:

* direct: requests signed by ``loadgen.protocol.signing.Signer`` posted straight to the SDK endpoint
  (needs only the SDK venv);
* end to end: ``dispatch.Client`` (SDK) → ``loadgen serve`` → SDK endpoint, results read back
  with loadgen's ``Wait`` RPC.

See conftest.py for the processes; all run on 127.0.0.1.
"""

from __future__ import annotations

import signal
import time
import uuid
from typing import Any

import httpx
import pytest

from loadgen.pb import function_pb2
from loadgen.protocol.signing import Signer

pytestmark = [pytest.mark.system, pytest.mark.timeout(90)]

RUN_PATH = "/dispatch.sdk.v1.FunctionService/Run"


def _key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _post(sdk_app: Any, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{sdk_app.url}{RUN_PATH}", content=body, headers=headers, timeout=10)


def _signed_headers(signer: Signer, sdk_app: Any, body: bytes, content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        **signer.headers(
            method="POST", path=RUN_PATH, authority=sdk_app.authority, content_type=content_type, body=body
        ),
    }


def _run_request(sdk_app: Any, function: str, *args: Any) -> bytes:
    request = function_pb2.RunRequest(
        function=function,
        input=sdk_app.encode_input(*args),
        dispatch_id="interop-direct",
        root_dispatch_id="interop-direct",
    )
    return request.SerializeToString()


# ------------------------------------------------------------- direct: loadgen signer → SDK endpoint


@pytest.mark.parametrize("content_type", ["application/grpc+proto", "application/proto"])
def test_sdk_endpoint_accepts_loadgen_signature(sdk_app: Any, keys: Any, content_type: str) -> None:
    body = _run_request(sdk_app, "add", 2, 3)
    before = sdk_app.counts().get("add", 0)

    reply = _post(sdk_app, body, _signed_headers(Signer(keys.golden_private), sdk_app, body, content_type))

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/proto"
    response = function_pb2.RunResponse.FromString(reply.content)
    assert response.status == 1  # STATUS_OK
    assert response.WhichOneof("directive") == "exit"
    assert sdk_app.decode_output(response.exit.result.output) == 5
    assert sdk_app.counts().get("add", 0) == before + 1


def test_sdk_endpoint_rejects_unsigned_request(sdk_app: Any) -> None:
    body = _run_request(sdk_app, "add", 2, 3)
    reply = _post(sdk_app, body, {"Content-Type": "application/grpc+proto"})
    assert reply.status_code == 403
    assert reply.json() == {
        "code": "permission_denied",
        "message": 'Expected "Signature-Input" header field to be present',
    }


def test_sdk_endpoint_rejects_other_key(sdk_app: Any, keys: Any) -> None:
    body = _run_request(sdk_app, "add", 2, 3)
    headers = _signed_headers(Signer(keys.other_private), sdk_app, body, "application/grpc+proto")
    reply = _post(sdk_app, body, headers)
    assert reply.status_code == 403
    assert reply.json() == {"code": "permission_denied", "message": "invalid signature"}


def test_sdk_endpoint_rejects_tampered_body(sdk_app: Any, keys: Any) -> None:
    signed_body = _run_request(sdk_app, "add", 2, 3)
    headers = _signed_headers(Signer(keys.golden_private), sdk_app, signed_body, "application/grpc+proto")
    reply = _post(sdk_app, _run_request(sdk_app, "add", 2, 4), headers)
    assert reply.status_code == 403
    assert reply.json() == {
        "code": "permission_denied",
        "message": "digest of the request body does not match the Content-Digest header",
    }


def test_sdk_endpoint_unknown_function_after_valid_signature(sdk_app: Any, keys: Any) -> None:
    body = _run_request(sdk_app, "no_such_function", 1)
    reply = _post(sdk_app, body, _signed_headers(Signer(keys.golden_private), sdk_app, body, "application/grpc+proto"))
    assert reply.status_code == 404
    assert reply.json() == {"code": "not_found", "message": "function 'no_such_function' does not exist"}


# ------------------------------------------------------------- end to end: SDK client → loadgen → SDK endpoint


def test_loadgen_serve_prints_settings_for_the_endpoint(loadgen: Any, sdk_app: Any, keys: Any) -> None:
    assert loadgen.exports["DISPATCH_ENDPOINT_URL"] == sdk_app.url
    assert loadgen.exports["DISPATCH_VERIFICATION_KEY"] == keys.golden_public
    assert loadgen.api_url.startswith("http://127.0.0.1:")
    # The API key was given on the command line, so it is not echoed.
    assert "DISPATCH_API_KEY" not in loadgen.exports


def test_plain_result(loadgen: Any) -> None:
    [dispatch_id] = loadgen.dispatch(("add", [20, 22]))
    outcome = loadgen.wait(dispatch_id)
    assert not outcome.result.HasField("error"), outcome.result
    assert outcome.value == 42
    assert outcome.status == "STATUS_OK"


def test_several_calls_in_one_request(loadgen: Any) -> None:
    ids = loadgen.dispatch(("add", [1, 2]), ("add", [10, 20]), ("add", [], {"a": 100, "b": 200}))
    assert len(set(ids)) == 3
    assert [loadgen.wait(i).value for i in ids] == [3, 30, 300]


def test_fanout_with_gather(loadgen: Any, sdk_app: Any) -> None:
    before = sdk_app.counts()
    [dispatch_id] = loadgen.dispatch(("fanout", [3]))
    outcome = loadgen.wait(dispatch_id)
    assert not outcome.result.HasField("error"), outcome.result
    assert outcome.value == [0, 1, 4]
    assert outcome.status == "STATUS_OK"
    after = sdk_app.counts()
    assert after.get("fanout", 0) - before.get("fanout", 0) == 1  # resumed from its state, not re-run
    assert after.get("square", 0) - before.get("square", 0) == 3


def test_retryable_failures_then_success(loadgen: Any, sdk_app: Any) -> None:
    temporary, timeout = _key("temporary"), _key("timeout")
    ids = loadgen.dispatch(("flaky", [temporary, 2]), ("flaky", [timeout, 2, "timeout"]))
    for dispatch_id in ids:
        outcome = loadgen.wait(dispatch_id)
        assert not outcome.result.HasField("error"), outcome.result
        assert outcome.value == "ok"
        assert outcome.status == "STATUS_OK"
    counts = sdk_app.counts()
    assert counts[f"flaky:{temporary}"] == 3  # TemporaryError twice, then success
    assert counts[f"flaky:{timeout}"] == 3  # built-in TimeoutError twice, then success


def test_permanent_failure_attempted_once(loadgen: Any, sdk_app: Any) -> None:
    key = _key("doomed")
    [dispatch_id] = loadgen.dispatch(("doomed", [key]))
    outcome = loadgen.wait(dispatch_id)
    assert not outcome.result.HasField("output"), outcome.result
    assert outcome.result.error.type == "ValueError"
    assert outcome.result.error.message == f"doomed to fail: {key}"
    assert outcome.status == "STATUS_INVALID_ARGUMENT"
    assert sdk_app.counts()[f"doomed:{key}"] == 1


def test_tail_call_chain(loadgen: Any, sdk_app: Any) -> None:
    before = sdk_app.counts()
    [dispatch_id] = loadgen.dispatch(("tail", [3]))
    outcome = loadgen.wait(dispatch_id)
    assert not outcome.result.HasField("error"), outcome.result
    assert outcome.value == "tail done: 6"  # tail(3) → tail_step(3,0) → (2,3) → (1,5) → (0,6)
    assert outcome.status == "STATUS_OK"
    after = sdk_app.counts()
    assert after.get("tail", 0) - before.get("tail", 0) == 1
    assert after.get("tail_step", 0) - before.get("tail_step", 0) == 4


def test_wrong_signing_key_ends_permission_denied(loadgen_factory: Any, sdk_app: Any, keys: Any) -> None:
    service = loadgen_factory(sdk_app.url, keys.other_seed)
    assert service.exports["DISPATCH_VERIFICATION_KEY"] == keys.other_public != keys.golden_public
    before = sdk_app.counts().get("add", 0)
    started = time.monotonic()
    [dispatch_id] = service.dispatch(("add", [1, 2]))
    outcome = service.wait(dispatch_id, timeout=20)
    took = time.monotonic() - started  # includes the SDK client's start-up (about 1 s)
    assert took < 10, f"PERMISSION_DENIED took {took:.1f}s (retried?)"
    assert not outcome.result.HasField("output"), outcome.result
    assert outcome.result.error.type == "PERMISSION_DENIED", outcome.result
    assert outcome.status == "STATUS_PERMISSION_DENIED"
    assert sdk_app.counts().get("add", 0) == before  # the endpoint never ran it


def test_sdk_client_with_wrong_api_key_gets_permission_error(loadgen: Any) -> None:
    out = loadgen.sdk_client([{"function": "add", "args": [1, 2]}], api_key="not-the-key")
    # The SDK turns gRPC UNAUTHENTICATED into PermissionError (sdk_client exits 3 on it).
    assert out.returncode == 3, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "invalid authentication token" in out.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_loadgen_serve_stops_cleanly(loadgen_factory: Any, sdk_app: Any, keys: Any, signum: int) -> None:
    service = loadgen_factory(sdk_app.url, keys.golden_seed)
    service.close()
    service.process.signal(signum)
    rc = service.process.wait(timeout=10)
    assert rc == 0, service.process.describe()
