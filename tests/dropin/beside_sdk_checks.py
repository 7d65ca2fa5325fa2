"""loadgen and the real SDK in one process: run inside .venv-dropin (0.7.1) and .venv-dropin08 (0.8.0).

tests/seed/test_dropin.py runs this file with pytest in each drop-in venv. It checks that
both import in either order (each order in a fresh interpreter), that loadgen's
messages and the SDK's are distinct classes of one wire format with the same gRPC
method paths, and that messages cross the boundary: the seed API takes the SDK's
``RunRequest`` and ``Call`` messages and answers with what the SDK's own helpers
decode, with a FastAPI app on the real SDK as the endpoint. With 0.7.1 the
``DispatchService`` is also fed by the SDK's ``dispatch.Client`` over gRPC.
"""

from __future__ import annotations

import importlib.metadata
import os
import pickle
import secrets
import subprocess
import sys
import textwrap
from typing import Any

import dispatch
import fastapi
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dispatch.sdk.v1 import call_pb2 as sdk_call_pb
from dispatch.sdk.v1 import function_pb2 as sdk_function_pb
from google.protobuf import any_pb2, wrappers_pb2

from loadgen import DispatchServer, DispatchService, EndpointClient
from loadgen.pb import call_pb2, function_pb2
from loadgen.seed.service import CallType

SDK_VERSION = importlib.metadata.version("dispatch-py")
SDK07 = SDK_VERSION.startswith("0.7.")
API_KEY = "beside-the-sdk"
MESSAGES = ("RunRequest", "RunResponse", "Call", "CallResult", "Error", "Exit", "Poll", "PollResult")

# In a fresh interpreter: import one side completely, then the other; then check both.
IMPORTS = textwrap.dedent(
    """
    import sys
    from google.protobuf import any_pb2, descriptor_pool

    def sdk():
        import dispatch, dispatch.fastapi, dispatch.function, dispatch.proto
        from dispatch.sdk.v1 import call_pb2, dispatch_pb2, error_pb2, exit_pb2, function_pb2, poll_pb2, status_pb2
        return {"RunRequest": function_pb2.RunRequest, "Call": call_pb2.Call, "Poll": poll_pb2.Poll,
                "DispatchRequest": dispatch_pb2.DispatchRequest}

    def loadgen():
        import loadgen, loadgen.engine.shard, loadgen.endpoint.functions
        from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc, function_pb2, poll_pb2, shard_pb2
        return {"RunRequest": function_pb2.RunRequest, "Call": call_pb2.Call, "Poll": poll_pb2.Poll,
                "DispatchRequest": dispatch_pb2.DispatchRequest}

    first, second = (sdk, loadgen) if sys.argv[1] == "sdk" else (loadgen, sdk)
    classes = {first.__name__: first(), second.__name__: second()}
    pool = descriptor_pool.Default()
    assert pool.FindFileByName("dispatch/sdk/v1/function.proto").package == "dispatch.sdk.v1"
    assert pool.FindFileByName("loadgen/pb/function.proto").package == "loadgen.dispatch.sdk.v1"
    for name, sdk_class in classes["sdk"].items():
        own = classes["loadgen"][name]
        assert own is not sdk_class, name
        assert sdk_class.DESCRIPTOR.full_name == "dispatch.sdk.v1." + name
        assert own.DESCRIPTOR.full_name == "loadgen.dispatch.sdk.v1." + name
        fields = lambda cls: {(f.name, f.number, f.type) for f in cls.DESCRIPTOR.fields}
        assert fields(sdk_class) <= fields(own), name  # loadgen's protos are the newest SDK's: a superset
    assert type(classes["sdk"]["RunRequest"]().input) is any_pb2.Any
    assert type(classes["loadgen"]["RunRequest"]().input) is any_pb2.Any
    print("ok", sys.argv[1], "first")
    """
)


def test_loadgen_is_this_checkout() -> None:
    import loadgen

    checkout = os.environ.get("LOADGEN_CHECKOUT")
    assert checkout, "run by tests/seed/test_dropin.py, which names the checkout"
    assert loadgen.__file__ is not None and loadgen.__file__.startswith(os.path.join(checkout, "loadgen", ""))


@pytest.mark.parametrize("first", ["sdk", "loadgen"])
def test_both_import_in_one_process_in_either_order(first: str) -> None:
    done = subprocess.run([sys.executable, "-c", IMPORTS, first], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok {first} first"


def test_grpc_method_paths_are_the_wire_contract() -> None:
    from loadgen.pb import dispatch_pb2_grpc, function_pb2_grpc

    class Recorder:
        def __init__(self) -> None:
            self.paths: list[str] = []

        def unary_unary(self, path: str, *args: Any, **kwargs: Any) -> None:
            self.paths.append(path)

    channel = Recorder()
    dispatch_pb2_grpc.DispatchServiceStub(channel)
    function_pb2_grpc.FunctionServiceStub(channel)
    assert channel.paths == [
        "/dispatch.sdk.v1.DispatchService/Dispatch",
        "/dispatch.sdk.v1.DispatchService/Wait",
        "/dispatch.sdk.v1.FunctionService/Run",
    ]
    if SDK07:  # 0.7.1 ships gRPC stubs of its own: the same paths
        from dispatch.sdk.v1 import dispatch_pb2_grpc as sdk_dispatch_grpc
        from dispatch.sdk.v1 import function_pb2_grpc as sdk_function_grpc

        theirs = Recorder()
        sdk_dispatch_grpc.DispatchServiceStub(theirs)
        sdk_function_grpc.FunctionServiceStub(theirs)
        assert theirs.paths == channel.paths[::2]  # the SDK has no Wait


# ------------------------------------------------------------------ an SDK app
# Module level, as in an app: the SDK pickles a durable coroutine's state by reference to its function.

KEY = Ed25519PrivateKey.generate()
app = fastapi.FastAPI()
if SDK07:
    from dispatch.fastapi import Dispatch

    endpoint = Dispatch(
        app,
        endpoint="http://127.0.0.1:9",  # never called: loadgen dispatches in-process
        verification_key=KEY.public_key(),
        api_key=API_KEY,
        api_url="http://127.0.0.1:9",
    )
else:
    from dispatch import Client, Registry
    from dispatch.asyncio.fastapi import Dispatch as AsyncDispatch

    registry = Registry(
        "beside-the-sdk", client=Client(api_key=API_KEY, api_url="http://127.0.0.1:9"), endpoint="http://127.0.0.1:9"
    )
    endpoint = AsyncDispatch(app, registry=registry, verification_key=KEY.public_key())


@endpoint.function
async def greet(name: str) -> str:
    return f"Hello {name}"


@endpoint.function
async def double(x: int) -> int:
    return 2 * x


@endpoint.function
async def total(n: int) -> int:
    values = await dispatch.gather(*[double(i) for i in range(n)])
    return sum(values)


def decode(value: any_pb2.Any) -> Any:
    """An output or input as the SDK's own helpers decode it."""
    if not SDK07:
        from dispatch.any import unmarshal_any

        return unmarshal_any(value)
    from dispatch.proto import _any_unpickle

    unpacked = wrappers_pb2.BytesValue()
    assert value.Unpack(unpacked)
    assert pickle.loads(unpacked.value) == _any_unpickle(value)
    return _any_unpickle(value)


def endpoint_client() -> EndpointClient:
    return EndpointClient.from_app(app, signing_key=KEY)


def _sdk_call(function: Any, *args: Any) -> sdk_call_pb.Call:
    return function.build_call(*args)._as_proto()  # the SDK's own Call message, input in its encoding


def _run_request(cls: Any, call: Any) -> Any:
    """A first RunRequest for *call*, with an id of its own (dispatch-py 0.8 keeps state per dispatch id)."""
    dispatch_id = secrets.token_hex(16)
    return cls(function=call.function, input=call.input, dispatch_id=dispatch_id, root_dispatch_id=dispatch_id)


# ------------------------------------------------------- EndpointClient.run


def test_endpoint_client_answers_the_sdks_run_request_in_the_sdks_classes() -> None:
    call = _sdk_call(greet, "SDK")
    response = endpoint_client().run(_run_request(sdk_function_pb.RunRequest, call))
    assert isinstance(response, sdk_function_pb.RunResponse)
    assert decode(response.exit.result.output) == "Hello SDK"
    if not SDK07:  # 0.8 encodes a str as a StringValue (0.7 pickles it: decode() unpacks that)
        unpacked = wrappers_pb2.StringValue()
        assert response.exit.result.output.Unpack(unpacked) and unpacked.value == "Hello SDK"


def test_endpoint_client_answers_loadgens_run_request_in_loadgens_classes() -> None:
    call = _sdk_call(greet, "loadgen")
    response = endpoint_client().run(_run_request(function_pb2.RunRequest, call))
    assert isinstance(response, function_pb2.RunResponse)
    assert decode(response.exit.result.output) == "Hello loadgen"


def test_endpoint_client_rejects_other_messages() -> None:
    with pytest.raises(TypeError, match="expected a RunRequest"):
        endpoint_client().run(_sdk_call(greet, "x"))


# -------------------------------------------------------- DispatchService


def _run_to_completion(service: DispatchService, rounds: int = 20) -> set[CallType]:
    """``dispatch_calls()`` until nothing is in flight; the kinds of attempt seen in ``queue``."""
    kinds = set()
    for _ in range(rounds):
        if not service.counters.in_flight:
            return kinds
        kinds.update(kind for _, _, kind in service.queue)
        service.dispatch_calls()
    raise AssertionError(f"calls still in flight after {rounds} rounds: {service.counters}")


def test_dispatch_service_takes_the_sdks_calls_in_process() -> None:
    service = DispatchService(endpoint_client(), api_key=API_KEY, collect_roundtrips=True)
    greet_id, total_id = service.dispatch([_sdk_call(greet, "in-process"), _sdk_call(total, 4)])
    queued = service.queue
    assert [(dispatch_id, kind) for dispatch_id, _, kind in queued] == [
        (greet_id, CallType.CALL),
        (total_id, CallType.CALL),
    ]
    assert all(isinstance(request, sdk_function_pb.RunRequest) for _, request, _ in queued)
    assert _run_to_completion(service) == {CallType.CALL, CallType.RESUME}
    assert decode(service.result(greet_id, timeout=0).output) == "Hello in-process"
    assert decode(service.result(total_id, timeout=0).output) == 2 * (0 + 1 + 2 + 3)
    assert isinstance(service.result(total_id, timeout=0), call_pb2.CallResult)
    # the endpoint client saw the SDK's classes, and so do the round trips: a poll, resumes, the exit
    trips = service.roundtrips[total_id]
    assert all(
        isinstance(q, sdk_function_pb.RunRequest) and isinstance(a, sdk_function_pb.RunResponse) for q, a in trips
    )
    (_, first), *resumes, (_, last) = trips
    assert len(first.poll.calls) == 4
    assert sum(len(request.poll_result.results) for request, _ in [*resumes, trips[-1]]) == 4
    assert decode(last.exit.result.output) == 12
    children = [dispatch_id for dispatch_id in service.roundtrips if dispatch_id not in (greet_id, total_id)]
    assert len(children) == 4


def test_dispatch_service_rejects_other_messages() -> None:
    service = DispatchService(endpoint_client(), api_key=API_KEY)
    with pytest.raises(TypeError, match="expected a Call"):
        service.dispatch([sdk_function_pb.RunRequest(function="greet")])
    assert service.counters.accepted == 0


def _test_dispatch_service_fed_by_the_sdks_client_over_grpc() -> None:
    service = DispatchService(endpoint_client(), api_key=API_KEY, collect_roundtrips=True)
    with DispatchServer(service) as server:
        client = dispatch.Client(API_KEY, api_url=server.url)
        [dispatch_id] = client.dispatch([greet.build_call("gRPC")])
        [(queued_id, request, kind)] = service.queue
        assert (queued_id, kind) == (dispatch_id, CallType.CALL)
        assert isinstance(request, sdk_function_pb.RunRequest)
        from dispatch.proto import Arguments, _any_unpickle

        arguments = _any_unpickle(request.input)
        assert isinstance(arguments, Arguments) and arguments.args == ("gRPC",)
        service.dispatch_calls()
        assert decode(service.result(dispatch_id, timeout=0).output) == "Hello gRPC"
        # and in the background, as a user's app would run it
        with service:
            [total_id] = client.dispatch([total.build_call(3)])
            assert decode(service.result(total_id, timeout=30).output) == 6


if SDK07:  # dispatch-py 0.8's Client speaks Connect, which the shards serve (`loadgen serve --connect-port`)
    test_dispatch_service_fed_by_the_sdks_client_over_grpc = _test_dispatch_service_fed_by_the_sdks_client_over_grpc
