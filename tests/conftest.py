"""Fixtures shared by the engine, Locust and browser tests: a signing key and the reference endpoint."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.endpoint.process import reference_endpoint
from loadgen.protocol.keys import public_key_base64


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def endpoint_url(signing_key: Ed25519PrivateKey) -> Iterator[str]:
    """The reference endpoint in a child process, verifying *signing_key*'s signatures."""
    with reference_endpoint(public_key_base64(signing_key.public_key())) as url:
        yield url


@pytest.fixture(autouse=True)
def _locust_stays_out_of_the_test_process() -> Iterator[None]:
    """Importing Locust patches the whole process with gevent (sockets, threads, gRPC): every later test
    in the run would then hang or fail. Tests drive Locust in processes of their own."""
    yield
    assert "locust" not in sys.modules, "this test imported Locust into the test process: run it in a subprocess"

