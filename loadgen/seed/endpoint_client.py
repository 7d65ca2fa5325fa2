"""``EndpointClient``: the seed API's client for a Dispatch endpoint, over any ``httpx.Client``.

It sends ``POST {base}/dispatch.sdk.v1.FunctionService/Run`` with the raw
``RunRequest`` as body and ``Content-Type: application/grpc+proto``, signs the
request when a key is given, and parses the raw ``RunResponse``. Non-2xx
replies raise ``httpx.HTTPStatusError``, an undecodable body raises
``google.protobuf.message.DecodeError`` (the service maps both to statuses).

``run`` takes loadgen's ``RunRequest`` or the SDK's (any generated copy of the
Dispatch protos), sends its wire bytes, and answers in the request's own
classes: the SDK's ``RunResponse`` for the SDK's ``RunRequest``.

Unlike the old mock, a path prefix in the base URL is kept
(``http://host/api`` → ``/api/dispatch.sdk.v1.FunctionService/Run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message

from loadgen.pb import function_pb2
from loadgen.protocol.constants import RUN_CONTENT_TYPE, RUN_PATH
from loadgen.protocol.signing import Signer
from loadgen.seed.messages import counterpart

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["EndpointClient"]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class EndpointClient:
    """Client for a Dispatch endpoint, as Dispatch itself talks to one."""

    def __init__(self, http_client: httpx.Client, signing_key: Ed25519PrivateKey | None = None) -> None:
        self.http_client = http_client
        self._signer = Signer(signing_key) if signing_key is not None else None
        self._run_url = _run_url(http_client.base_url)

    @property
    def url(self) -> str:
        """The endpoint's base URL."""
        return str(self.http_client.base_url).rstrip("/")

    @overload
    def run(self, request: function_pb2.RunRequest) -> function_pb2.RunResponse: ...

    @overload
    def run(self, request: Message) -> Message: ...

    def run(self, request: Message) -> Message:
        """Send one ``RunRequest`` and return the endpoint's ``RunResponse``, in the request's classes."""
        response_class = _response_class(request)
        body = request.SerializeToString()
        http_request = self.http_client.build_request(
            "POST", self._run_url, content=body, headers={"Content-Type": RUN_CONTENT_TYPE}
        )
        if self._signer is not None:
            http_request.headers.update(
                self._signer.headers(
                    method="POST",
                    path=http_request.url.path,
                    authority=http_request.headers["host"],
                    content_type=RUN_CONTENT_TYPE,
                    body=body,
                )
            )
        response = self.http_client.send(http_request)
        response.raise_for_status()
        return response_class.FromString(response.content)

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self.http_client.close()

    @classmethod
    def from_url(cls, url: str, signing_key: Ed25519PrivateKey | None = None) -> EndpointClient:
        """An ``EndpointClient`` for an endpoint URL (HTTP/1.1, 30 s timeout)."""
        return cls(httpx.Client(base_url=url, timeout=DEFAULT_TIMEOUT), signing_key)

    @classmethod
    def from_app(cls, app: Callable[..., Any], signing_key: Ed25519PrivateKey | None = None) -> EndpointClient:
        """An ``EndpointClient`` for an in-process ASGI app (needs ``starlette``: ``pip install loadgen[asgi]``)."""
        try:
            from starlette.testclient import TestClient
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("EndpointClient.from_app needs starlette: pip install 'loadgen[asgi]'") from exc
        return cls(TestClient(app), signing_key)


def _response_class(request: object) -> type[Message]:
    """``RunResponse`` of the request's own generated copy of the Dispatch protos."""
    if type(request) is function_pb2.RunRequest:
        return function_pb2.RunResponse
    if not isinstance(request, Message) or request.DESCRIPTOR.name != "RunRequest":
        raise TypeError(f"expected a RunRequest message (loadgen's or the SDK's), got {type(request).__qualname__}")
    return counterpart(request, "RunResponse")


def _run_url(base_url: httpx.URL) -> httpx.URL:
    prefix = base_url.path.rstrip("/")
    return base_url.copy_with(path=prefix + RUN_PATH)
