"""Ed25519 key material: parse, generate and render keys.

Accepted forms, for flags and environment variables alike:

* base64 of the raw 32 bytes (private: the seed; public: the point);
* PEM text (literal ``\\n`` sequences are accepted, as the SDK does);
* a path to a PEM file.

Error messages never contain the key material itself.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "KeyMaterialError",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "private_key_base64",
    "public_key_base64",
]


class KeyMaterialError(ValueError):
    """Key material could not be used; the message names the source, never the key."""


def _pem_text(value: str) -> bytes | None:
    text = value.strip()
    if "-----BEGIN" in text:
        return text.replace("\\n", "\n").encode()
    if len(text) < 4096 and not text.startswith("-") and "\n" not in text:
        path = Path(text)
        try:
            if path.is_file():
                return path.read_bytes()
        except OSError:
            return None
    return None


def _raw32(value: str, source: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{source}: not base64 of a raw 32-byte Ed25519 key, nor PEM, nor a PEM file") from None
    if len(raw) != 32:
        raise KeyMaterialError(f"{source}: expected 32 raw bytes after base64 decoding, got {len(raw)}")
    return raw


def load_private_key(value: str, source: str = "signing key") -> Ed25519PrivateKey:
    """Parse an Ed25519 private key from base64 seed, PEM text or a PEM file path."""
    pem = _pem_text(value)
    if pem is not None:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise KeyMaterialError(f"{source}: PEM could not be read as an unencrypted private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyMaterialError(f"{source}: PEM holds a {type(key).__name__}, not an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw32(value, source))


def load_public_key(value: str, source: str = "verification key") -> Ed25519PublicKey:
    """Parse an Ed25519 public key from base64 raw bytes, PEM text or a PEM file path."""
    if not value.strip():
        raise KeyMaterialError(f"{source}: empty value")
    pem = _pem_text(value)
    if pem is not None:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise KeyMaterialError(f"{source}: PEM could not be read as a public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyMaterialError(f"{source}: PEM holds a {type(key).__name__}, not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw32(value, source))


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_key_base64(key: Ed25519PrivateKey) -> str:
    """Base64 of the raw 32-byte seed (the form ``--signing-key`` takes)."""
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def public_key_base64(key: Ed25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key (the form ``DISPATCH_VERIFICATION_KEY`` takes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()
