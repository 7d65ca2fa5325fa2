"""The engine most process tests run: two shards on a free port of 127.0.0.1, quick retries."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.engine.settings import EngineSetup
from loadgen.protocol.keys import private_key_base64


def quick_engine(endpoint_url: str, key: Ed25519PrivateKey, api_key: str, **overrides: Any) -> EngineSetup:
    """An :class:`EngineSetup` signing with *key*; *overrides* are settings or setup fields."""
    given: dict[str, Any] = {"shards": 2, "port": 0, "backoff": 0.01, "max_backoff": 0.05, **overrides}
    return EngineSetup.create(
        endpoint_url=endpoint_url, api_key=api_key, signing_key=private_key_base64(key), **given
    )
