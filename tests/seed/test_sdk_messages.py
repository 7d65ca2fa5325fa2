"""Messages of another generated copy of the Dispatch protos cross into the seed API by wire bytes.

The copy here is loadgen's own files renamed to the SDK's names (``dispatch/sdk/v1/*.proto``,
package ``dispatch.sdk.v1``) in a descriptor pool of their own, so this runs without the SDK;
tests/seed/test_dropin.py does the same with the real SDK in one process.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory, timestamp_pb2
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import StringValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loadgen import DispatchService, EndpointClient
from loadgen.pb import call_pb2, dispatch_pb2, error_pb2, exit_pb2, function_pb2, poll_pb2, status_pb2
from loadgen.seed.messages import as_own, counterpart, sdk_class

API_KEY = "copy-key"


def text(value: str) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(StringValue(value=value))
    return packed


def echo_app() -> Starlette:
    """An endpoint that exits with its input (no signature check: the signing is tested elsewhere)."""

    async def run(request: Request) -> Response:
        given = function_pb2.RunRequest.FromString(await request.body())
        answer = function_pb2.RunResponse(status=status_pb2.STATUS_OK)
        answer.exit.result.output.CopyFrom(given.input)
        return Response(answer.SerializeToString(), media_type="application/proto")

    return Starlette(routes=[Route("/dispatch.sdk.v1.FunctionService/Run", run, methods=["POST"])])


def _sdk_named_copy() -> SimpleNamespace:
    """Classes of loadgen's protos under the SDK's file and package names, in a private pool."""
    pool = descriptor_pool.DescriptorPool()
    for wkt in (any_pb2, duration_pb2, timestamp_pb2):
        pool.AddSerializedFile(wkt.DESCRIPTOR.serialized_pb)
    for module in (error_pb2, status_pb2, call_pb2, exit_pb2, poll_pb2, function_pb2, dispatch_pb2):
        proto = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        proto.name = proto.name.replace("loadgen/pb/", "dispatch/sdk/v1/")
        proto.dependency[:] = [d.replace("loadgen/pb/", "dispatch/sdk/v1/") for d in proto.dependency]
        proto.package = "dispatch.sdk.v1"
        for message in proto.message_type:
            for field in message.field:
                if field.type_name:
                    field.type_name = field.type_name.replace(".loadgen.dispatch.sdk.v1.", ".dispatch.sdk.v1.")
        for service in proto.service:
            for method in service.method:
                method.input_type = method.input_type.replace(".loadgen.dispatch.sdk.v1.", ".dispatch.sdk.v1.")
                method.output_type = method.output_type.replace(".loadgen.dispatch.sdk.v1.", ".dispatch.sdk.v1.")
        pool.Add(proto)
    names = ("Call", "CallResult", "RunRequest", "RunResponse", "Poll", "DispatchRequest")
    return SimpleNamespace(
        **{n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"dispatch.sdk.v1.{n}")) for n in names}
    )


@pytest.fixture(scope="module")
def sdk() -> SimpleNamespace:
    return _sdk_named_copy()


def test_the_copy_is_another_class_of_the_same_wire_format(sdk: SimpleNamespace) -> None:
    assert sdk.Call is not call_pb2.Call and sdk.Call.DESCRIPTOR.full_name == "dispatch.sdk.v1.Call"
    theirs = sdk.Call(function="echo", correlation_id=7)
    theirs.expiration.seconds = 5
    ours = as_own(theirs, call_pb2.Call)
    assert type(ours) is call_pb2.Call
    assert (ours.function, ours.correlation_id, ours.expiration.seconds) == ("echo", 7, 5)
    mine = call_pb2.Call(function="x")
    assert as_own(mine, call_pb2.Call) is mine  # no copy of loadgen's own


def test_as_own_takes_only_a_message_of_that_name(sdk: SimpleNamespace) -> None:
    with pytest.raises(TypeError, match="expected a Call message"):
        as_own(sdk.RunRequest(function="x"), call_pb2.Call)
    with pytest.raises(TypeError, match="expected a Call message"):
        as_own({"function": "x"}, call_pb2.Call)


def test_counterpart_finds_the_class_beside_it(sdk: SimpleNamespace) -> None:
    assert counterpart(sdk.RunRequest(), "RunResponse") is sdk.RunResponse
    assert counterpart(function_pb2.RunRequest, "RunResponse") is function_pb2.RunResponse
    with pytest.raises(TypeError, match="has no Nothing beside it"):
        counterpart(sdk.RunRequest(), "Nothing")


def test_sdk_class_is_none_without_the_sdk() -> None:
    assert sdk_class("RunRequest") is None  # the copy above is in a private pool, not the default one


def test_endpoint_client_answers_in_the_requests_classes(sdk: SimpleNamespace) -> None:
    client = EndpointClient.from_app(echo_app(), Ed25519PrivateKey.generate())
    theirs = sdk.RunRequest(function="echo", dispatch_id="a" * 32)
    theirs.input.ParseFromString(text("hi").SerializeToString())
    answer: Message = client.run(theirs)
    assert type(answer) is sdk.RunResponse
    assert as_own(answer, function_pb2.RunResponse).exit.result.output == text("hi")
    ours = client.run(function_pb2.RunRequest(function="echo", input=text("hi")))
    assert type(ours) is function_pb2.RunResponse and ours.exit.result.output == text("hi")
    with pytest.raises(TypeError, match="expected a RunRequest"):
        client.run(sdk.Call(function="echo"))


def test_dispatch_service_takes_the_copys_calls(sdk: SimpleNamespace) -> None:
    service = DispatchService(EndpointClient.from_app(echo_app()), api_key=API_KEY)
    theirs = sdk.Call(function="echo")
    theirs.input.ParseFromString(text("from the copy").SerializeToString())
    (dispatch_id,) = service.dispatch([theirs, call_pb2.Call(function="echo", input=text("mine"))])[:1]
    service.dispatch_calls()
    result = service.result(dispatch_id, timeout=0)
    assert type(result) is call_pb2.CallResult and result.output == text("from the copy")
    with pytest.raises(TypeError, match="expected a Call message"):
        service.dispatch([sdk.Poll()])
