"""DispatchService and DispatchServer: real gRPC on 127.0.0.1, an in-process ASGI endpoint with scripted behaviour."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.wrappers_pb2 import StringValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loadgen import DispatchServer, DispatchService, EndpointClient, Outcome, RetryPolicy
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, exit_pb2, function_pb2, poll_pb2
from loadgen.pb import status_pb2 as st
from loadgen.protocol.signing import SignatureError, SignedRequest, verify_request
from loadgen.seed.service import CallType

API_KEY = "sekrit-key-123"
AUTH = (("authorization", f"Bearer {API_KEY}"),)


def text(value: str) -> Any:
    packed = Any()
    packed.Pack(StringValue(value=value))
    return packed


class ScriptedEndpoint:
    """An ASGI endpoint whose behaviour is chosen by the function name; verifies signatures."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.public_key = key.public_key()
        self.attempts: dict[str, int] = {}
        self.app = Starlette(routes=[Route("/dispatch.sdk.v1.FunctionService/Run", self.run, methods=["POST"])])

    async def run(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            verify_request(SignedRequest("POST", request.url.path, headers["host"], headers, body), self.public_key)
        except SignatureError as exc:
            return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.http_status)
        run = function_pb2.RunRequest.FromString(body)
        self.attempts[run.function] = self.attempts.get(run.function, 0) + 1
        name = run.function
        if name == "forbidden":
            return JSONResponse({"code": "permission_denied", "message": "nope"}, status_code=403)
        if name == "boom":
            return Response(b"oops", status_code=503)
        if name == "garbage":
            return Response(b"\xff\xff\xff", media_type="application/proto")
        if name == "flaky" and self.attempts[name] <= 2:
            return self.proto(function_pb2.RunResponse(status=st.STATUS_TEMPORARY_ERROR))
        if name == "unpicklable":
            response = function_pb2.RunResponse(status=st.STATUS_PERMANENT_ERROR)
            response.exit.result.error.type = "mymodule.MyError"
            response.exit.result.error.value = b"\x80\x04\x95cmymodule\nMyError\n"
            return self.proto(response)
        if name == "fanout":
            if run.WhichOneof("directive") == "input":
                children = [call_pb2.Call(function="echo", input=text(str(i)), correlation_id=i) for i in (1, 2)]
                poll = poll_pb2.Poll(coroutine_state=b"state", calls=children)
                return self.proto(function_pb2.RunResponse(status=st.STATUS_OK, poll=poll))
            joined = "+".join(r.output.value[2:].decode() for r in run.poll_result.results)
            return self.proto(self.exit(joined + ":" + run.poll_result.coroutine_state.decode()))
        given = StringValue()
        run.input.Unpack(given)
        return self.proto(self.exit(given.value))

    @staticmethod
    def exit(value: str) -> function_pb2.RunResponse:
        result = call_pb2.CallResult(output=text(value))
        return function_pb2.RunResponse(status=st.STATUS_OK, exit=exit_pb2.Exit(result=result))

    @staticmethod
    def proto(message: function_pb2.RunResponse) -> Response:
        return Response(message.SerializeToString(), media_type="application/proto")


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def endpoint(key: Ed25519PrivateKey) -> ScriptedEndpoint:
    return ScriptedEndpoint(key)


@pytest.fixture
def service(endpoint: ScriptedEndpoint, key: Ed25519PrivateKey) -> DispatchService:
    client = EndpointClient.from_app(endpoint.app, signing_key=key)
    return DispatchService(
        client, api_key=API_KEY, collect_roundtrips=True, retry_policy=RetryPolicy(base_delay=0), concurrency=4
    )


@pytest.fixture
def stub(service: DispatchService) -> Iterator[dispatch_pb2_grpc.DispatchServiceStub]:
    with DispatchServer(service) as server, grpc.insecure_channel(server.url.removeprefix("http://")) as channel:
        yield dispatch_pb2_grpc.DispatchServiceStub(channel)


def dispatch(stub: dispatch_pb2_grpc.DispatchServiceStub, *functions: str) -> list[str]:
    calls = [call_pb2.Call(function=f, input=text(f)) for f in functions]
    return list(stub.Dispatch(dispatch_pb2.DispatchRequest(calls=calls), metadata=AUTH).dispatch_ids)


def test_auth_missing_and_wrong_key_never_echoes_it(stub: dispatch_pb2_grpc.DispatchServiceStub) -> None:
    request = dispatch_pb2.DispatchRequest(calls=[call_pb2.Call(function="echo")])
    with pytest.raises(grpc.RpcError) as info:
        stub.Dispatch(request)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stub.Dispatch(request, metadata=(("authorization", "Bearer nope"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert API_KEY not in (info.value.details() or "")


def test_api_key_required(endpoint: ScriptedEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCH_API_KEY", raising=False)
    with pytest.raises(ValueError, match="API key is required"):
        DispatchService(EndpointClient.from_app(endpoint.app))
    monkeypatch.setenv("DISPATCH_API_KEY", "from-env")
    assert DispatchService(EndpointClient.from_app(endpoint.app)) is not None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (call_pb2.Call(function="1bad"), "does not match"),
        (call_pb2.Call(function="echo", endpoint="bridge://x"), "only reaches http"),
        (call_pb2.Call(function="echo", endpoint="ftp://x"), "must start with"),
    ],
)
def test_invalid_calls_rejected_whole(
    stub: dispatch_pb2_grpc.DispatchServiceStub, service: DispatchService, call: call_pb2.Call, message: str
) -> None:
    good = call_pb2.Call(function="echo")
    with pytest.raises(grpc.RpcError) as info:
        stub.Dispatch(dispatch_pb2.DispatchRequest(calls=[good, call]), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "calls[1]" in (info.value.details() or "") and message in (info.value.details() or "")
    assert service.counters.accepted == 0


def test_dispatch_calls_runs_one_round_at_a_time(
    stub: dispatch_pb2_grpc.DispatchServiceStub, service: DispatchService
) -> None:
    (root,) = dispatch(stub, "fanout")
    service.dispatch_calls()  # the parent polls
    assert service.counters.in_flight == 1 and len(service.roundtrips) == 1
    service.dispatch_calls()  # both children
    assert len(service.roundtrips) == 3
    service.dispatch_calls()  # the resume
    result = service.result(root, timeout=0)
    assert result.output == text("1+2:state")
    requests = [req for req, _ in service.roundtrips[root]]
    assert [r.WhichOneof("directive") for r in requests] == ["input", "poll_result"]
    children = [dispatch_id for dispatch_id in service.roundtrips if dispatch_id != root]
    for child in children:
        ((request, _),) = service.roundtrips[child]
        assert request.parent_dispatch_id == root and request.root_dispatch_id == root


def test_queue_shows_the_attempts_due_with_why(
    stub: dispatch_pb2_grpc.DispatchServiceStub, service: DispatchService
) -> None:
    """The old mock's ``queue``: ``(dispatch_id, RunRequest, CallType)`` of what the next round sends."""
    flaky, fanout = dispatch(stub, "flaky", "fanout")
    assert [(i, r.function, k) for i, r, k in service.queue] == [
        (flaky, "flaky", CallType.CALL),
        (fanout, "fanout", CallType.CALL),
    ]
    service.dispatch_calls()  # flaky answers TEMPORARY_ERROR (retried at once: base_delay 0); fanout polls
    kinds = {(request.function, kind) for _, request, kind in service.queue}
    assert kinds == {("flaky", CallType.RETRY), ("echo", CallType.CALL)}
    service.dispatch_calls()  # flaky fails again; the children end, so fanout is due to resume
    kinds = {(request.function, kind) for _, request, kind in service.queue}
    assert kinds == {("flaky", CallType.RETRY), ("fanout", CallType.RESUME)}
    assert all(isinstance(request, function_pb2.RunRequest) for _, request, _ in service.queue)
    service.dispatch_calls()
    assert service.queue == [] and service.counters.in_flight == 0


def test_dispatch_ids_differ_between_services(endpoint: ScriptedEndpoint, key: Ed25519PrivateKey) -> None:
    """32 hex digits; a random prefix per service, so two services in one process never share an id."""
    ids = [
        DispatchService(EndpointClient.from_app(endpoint.app, key), api_key=API_KEY).dispatch(
            [call_pb2.Call(function="echo")]
        )[0]
        for _ in range(2)
    ]
    assert all(len(i) == 32 and int(i, 16) for i in ids) and ids[0] != ids[1]
    assert [i[8:] for i in ids] == ["0" * 23 + "1"] * 2


def test_wait_rpc(stub: dispatch_pb2_grpc.DispatchServiceStub, service: DispatchService) -> None:
    (dispatch_id,) = dispatch(stub, "echo")
    with pytest.raises(grpc.RpcError) as info:
        stub.Wait(dispatch_pb2.WaitRequest(dispatch_id=dispatch_id, timeout=Duration(nanos=50_000_000)), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    service.dispatch_calls()
    result, call = stub.Wait.with_call(dispatch_pb2.WaitRequest(dispatch_id=dispatch_id), metadata=AUTH)
    assert result.output == text("echo") and result.dispatch_id == dispatch_id  # echo returns its input
    assert ("loadgen-status", "STATUS_OK") in call.trailing_metadata()
    with pytest.raises(grpc.RpcError) as info:
        stub.Wait(dispatch_pb2.WaitRequest(dispatch_id="f" * 32), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_background_mode_and_fault_mapping(
    stub: dispatch_pb2_grpc.DispatchServiceStub, service: DispatchService, endpoint: ScriptedEndpoint
) -> None:
    with service:
        ids = dispatch(stub, "forbidden", "garbage", "flaky", "unpicklable", "echo")
        outcomes = [service.outcome(i, timeout=10) for i in ids]
    forbidden, garbage, flaky, unpicklable, echo = outcomes
    assert (forbidden.outcome, forbidden.status) == (Outcome.FAILED, st.STATUS_PERMISSION_DENIED)
    assert forbidden.result.error.message == "HTTP 403: nope" and endpoint.attempts["forbidden"] == 1
    assert (garbage.status, garbage.result.error.type) == (st.STATUS_INVALID_RESPONSE, "INVALID_RESPONSE")
    assert flaky.outcome is Outcome.COMPLETED and flaky.attempts == 3
    assert unpicklable.result.error.type == "mymodule.MyError" and unpicklable.status == st.STATUS_PERMANENT_ERROR
    assert echo.outcome is Outcome.COMPLETED
    assert service.counters.retries == {"TEMPORARY_ERROR": 2}
    assert service.counters.in_flight == 0


def test_5xx_is_retried_until_expiration(endpoint: ScriptedEndpoint, key: Ed25519PrivateKey) -> None:
    service = DispatchService(
        EndpointClient.from_app(endpoint.app, key),
        api_key=API_KEY,
        retry_policy=RetryPolicy(base_delay=0.01, max_delay=0.02),
    )
    with service:
        (dispatch_id,) = service.dispatch([call_pb2.Call(function="boom", expiration=Duration(nanos=300_000_000))])
        outcome = service.outcome(dispatch_id, timeout=10)
    assert outcome.outcome is Outcome.EXPIRED and outcome.status == st.STATUS_TIMEOUT
    assert "TEMPORARY_ERROR" in outcome.result.error.message and "HTTP 503" in outcome.result.error.message
    assert endpoint.attempts["boom"] >= 3


def test_refused_connection_is_tcp_error(key: Ed25519PrivateKey) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = EndpointClient(httpx.Client(base_url=f"http://127.0.0.1:{port}"), key)
    service = DispatchService(client, api_key=API_KEY, retry_on_status=[], collect_roundtrips=True)
    (dispatch_id,) = service.dispatch([call_pb2.Call(function="echo")])
    service.dispatch_calls()
    outcome = service.outcome(dispatch_id, timeout=0)
    assert outcome.status == st.STATUS_TCP_ERROR and outcome.outcome is Outcome.FAILED


def test_wrong_signing_key_is_permission_denied(endpoint: ScriptedEndpoint) -> None:
    client = EndpointClient.from_app(endpoint.app, Ed25519PrivateKey.generate())
    service = DispatchService(client, api_key=API_KEY)
    (dispatch_id,) = service.dispatch([call_pb2.Call(function="echo")])
    service.dispatch_calls()
    outcome = service.outcome(dispatch_id, timeout=0)
    assert outcome.status == st.STATUS_PERMISSION_DENIED
    assert outcome.result.error.message == "HTTP 403: invalid signature"


def test_endpoint_client_keeps_path_prefix(endpoint: ScriptedEndpoint, key: Ed25519PrivateKey) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, content=ScriptedEndpoint.exit("x").SerializeToString())

    client = EndpointClient(httpx.Client(base_url="http://h/api/", transport=httpx.MockTransport(handler)), key)
    assert client.run(function_pb2.RunRequest(function="f")).exit.result.output == text("x")
    assert seen == ["/api/dispatch.sdk.v1.FunctionService/Run"]
