"""Signing and verification against the golden vector of the real SDK."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadgen.protocol.keys import KeyMaterialError, load_private_key, load_public_key, public_key_base64
from loadgen.protocol.signing import SignatureError, SignedRequest, Signer, content_digest, verify_request

SEED_HEX = "0ecafbc9a94763276652e49779f0ae9001e8d994a6d440f6a72190625c217a21"
PUBLIC_B64 = "Z+nTe2VRcw8t8Ihx++D+nXtbO28nwjWIOTLRgzrelYs="
BODY = bytes.fromhex(
    "0a046563686f12360a2e747970652e676f6f676c65617069732e636f6d2f676f6f676c652e70726f746f6275662e427974"
    "657356616c756512040a0268692220303030303030303030303030303030303030303030303030303030303030303132"
    "203030303030303030303030303030303030303030303030303030303030303031"
)
CREATED = 1717000000
PATH = "/dispatch.sdk.v1.FunctionService/Run"
COVERED = '("@method" "@path" "@authority" "content-type" "content-digest")'
GOLDEN = {
    "Content-Digest": "sha-512=:eJd6djM/Fgy9i7wwyaBhNkNVMsO10dl66Mj5XLFaCOo4TN4tblJmXv3twQ691Zm5jhnj346QVBH5Ik50ign4jQ==:",  # noqa: E501
    "Signature-Input": f'dispatch={COVERED};created=1717000000;keyid="default";alg="ed25519"',
    "Signature": "dispatch=:0d92QY98fRBivFPZzntsCvmbWOYNUoNUetceIO1SSMvyjNbOJxTeuSgy9gGJQ5/KnG+DiR0uIM3qdFHUCj0YAw==:",
}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED_HEX))


def golden_headers(key: Ed25519PrivateKey) -> dict[str, str]:
    return Signer(key).headers(
        method="POST",
        path=PATH,
        authority="127.0.0.1:8000",
        content_type="application/grpc+proto",
        body=BODY,
        created=CREATED,
    )


def request(headers: dict[str, str], body: bytes = BODY, **overrides: str) -> SignedRequest:
    merged = {"content-type": "application/grpc+proto"} | {k.lower(): v for k, v in headers.items()}
    fields = {"method": "POST", "path": PATH, "authority": "127.0.0.1:8000"} | overrides
    return SignedRequest(headers=merged, body=body, **fields)


@pytest.mark.parametrize("backend", ["nacl", "cryptography"])
def test_golden_vector_byte_for_byte(key: Ed25519PrivateKey, backend: str) -> None:
    signer = Signer(key, backend=backend)
    headers = signer.headers(
        method="POST", path=PATH, authority="127.0.0.1:8000", content_type="application/grpc+proto",
        body=BODY, created=CREATED,
    )  # fmt: skip
    assert headers == GOLDEN
    assert signer.public_key_base64 == PUBLIC_B64


def test_golden_vector_verifies(key: Ed25519PrivateKey) -> None:
    verify_request(request(GOLDEN), load_public_key(PUBLIC_B64), now=CREATED + 10)


def test_component_order_follows_signature_input(key: Ed25519PrivateKey) -> None:
    order = ["content-digest", "@authority", "@method", "content-type", "@path"]
    params = "(" + " ".join(f'"{c}"' for c in order) + f');created={CREATED};keyid="default";alg="ed25519"'
    values = {
        "@method": "POST",
        "@path": PATH,
        "@authority": "127.0.0.1:8000",
        "content-type": "application/grpc+proto",
        "content-digest": content_digest(BODY),
    }
    base = "\n".join([f'"{c}": {values[c]}' for c in order] + [f'"@signature-params": {params}'])
    signature = base64.b64encode(key.sign(base.encode())).decode()
    headers = {
        "content-digest": values["content-digest"],
        "signature-input": f"other={params}",
        "signature": f"other=:{signature}:",
    }
    verify_request(request(headers), key.public_key(), now=CREATED)


@pytest.mark.parametrize(
    ("offset", "message"),
    [(6, "in the future"), (-306, "maximum allowable age")],
)
def test_created_outside_window_rejected(key: Ed25519PrivateKey, offset: int, message: str) -> None:
    with pytest.raises(SignatureError, match=message) as info:
        verify_request(request(golden_headers(key)), key.public_key(), now=CREATED - offset)
    assert info.value.http_status == 403


def test_age_within_skew_accepted(key: Ed25519PrivateKey) -> None:
    verify_request(request(golden_headers(key)), key.public_key(), now=CREATED + 304)


def test_wrong_key_rejected(key: Ed25519PrivateKey) -> None:
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_request(request(golden_headers(key)), Ed25519PrivateKey.generate().public_key(), now=CREATED)


def test_tampered_body_rejected(key: Ed25519PrivateKey) -> None:
    with pytest.raises(SignatureError, match="digest of the request body does not match"):
        verify_request(request(golden_headers(key), body=BODY + b"x"), key.public_key(), now=CREATED)


def test_sha256_digest_accepted_and_md5_refused(key: Ed25519PrivateKey) -> None:
    for digest, ok in [
        ("sha-256=:" + base64.b64encode(hashlib.sha256(BODY).digest()).decode() + ":", True),
        ("md5=:" + base64.b64encode(hashlib.md5(BODY).digest()).decode() + ":", False),
    ]:
        params = f'{COVERED};created={CREATED};keyid="default";alg="ed25519"'
        base = (
            f'"@method": POST\n"@path": {PATH}\n"@authority": 127.0.0.1:8000\n'
            f'"content-type": application/grpc+proto\n"content-digest": {digest}\n"@signature-params": {params}'
        )
        sig = base64.b64encode(key.sign(base.encode())).decode()
        headers = {"content-digest": digest, "signature-input": f"dispatch={params}", "signature": f"dispatch=:{sig}:"}
        if ok:
            verify_request(request(headers), key.public_key(), now=CREATED)
        else:
            with pytest.raises(SignatureError, match="missing content digest") as info:
                verify_request(request(headers), key.public_key(), now=CREATED)
            assert info.value.http_status == 401


def test_missing_headers_and_created(key: Ed25519PrivateKey) -> None:
    with pytest.raises(SignatureError, match='"Signature-Input" header field to be present'):
        verify_request(request({}), key.public_key())
    headers = golden_headers(key)
    headers["Signature-Input"] = headers["Signature-Input"].replace(f";created={CREATED}", "")
    with pytest.raises(SignatureError, match='missing a required "created"'):
        verify_request(request(headers), key.public_key(), now=CREATED)


def test_keyid_and_required_components(key: Ed25519PrivateKey) -> None:
    headers = golden_headers(key)
    headers["Signature-Input"] = headers["Signature-Input"].replace('"default"', '"other"')
    with pytest.raises(SignatureError, match="public key 'other' not available") as info:
        verify_request(request(headers), key.public_key(), now=CREATED)
    assert info.value.http_status == 401
    headers = golden_headers(key)
    headers["Signature-Input"] = headers["Signature-Input"].replace(' "content-digest"', "")
    with pytest.raises(SignatureError, match="covered all required components"):
        verify_request(request(headers), key.public_key(), now=CREATED)


def test_key_forms(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    seed_b64 = base64.b64encode(bytes.fromhex(SEED_HEX)).decode()
    key = load_private_key(seed_b64)
    assert public_key_base64(key.public_key()) == PUBLIC_B64
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    (tmp_path / "k.pem").write_text(pem)
    assert public_key_base64(load_private_key(str(tmp_path / "k.pem")).public_key()) == PUBLIC_B64
    pub_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert public_key_base64(load_public_key(pub_pem.replace("\n", "\\n"))) == PUBLIC_B64
    for bad in ["", "not-base64!!", base64.b64encode(b"short").decode()]:
        with pytest.raises(KeyMaterialError) as info:
            load_public_key(bad)
        assert bad not in str(info.value) or bad == ""


def test_non_canonical_header_text_uses_the_structured_parser(key: Ed25519PrivateKey) -> None:
    headers = golden_headers(key)
    headers["Signature-Input"] = headers["Signature-Input"].replace('"@method" "@path"', '"@method"  "@path"')
    headers["Signature"] = headers["Signature"] + ", other=:AAAA:"
    verify_request(request(headers), key.public_key(), now=CREATED)


def test_fast_and_structured_parsers_agree(key: Ed25519PrivateKey) -> None:
    from loadgen.protocol.signing import _parse_fast, _parse_structured

    headers = {k.lower(): v for k, v in golden_headers(key).items()}
    assert _parse_fast(headers) == _parse_structured(headers)
