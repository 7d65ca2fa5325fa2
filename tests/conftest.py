"""Fixtures shared by the engine, Locust and browser tests: a signing key and the reference endpoint."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.endpoint.process import reference_endpoint
from loadgen.keys import public_key_base64


def read_line(process: subprocess.Popen[str], marker: str, timeout: float = 30) -> str:
    """The first line of *process*'s stdout containing *marker*, within *timeout* seconds."""
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if marker in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, f"no line with {marker!r} within {timeout}s"
    return found[0]


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def endpoint_url(signing_key: Ed25519PrivateKey) -> Iterator[str]:
    """The reference endpoint in a child process, verifying *signing_key*'s signatures."""
    with reference_endpoint(public_key_base64(signing_key.public_key())) as url:
        yield url
