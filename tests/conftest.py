"""Fixtures shared by the engine, Locust and browser tests: a signing key and the reference endpoint."""

from __future__ import annotations

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
