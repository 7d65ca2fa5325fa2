"""RFC 9421 HTTP message signatures as Dispatch uses them (Ed25519, label ``dispatch``).

Signing is on the hot path: :class:`Signer` builds the signature base from
pre-rendered pieces and signs it directly, with no generic message-signature
library in between. Verification parses the structured fields with
``http_sfv`` and rebuilds the base in the order ``Signature-Input`` declares,
because the Python SDK emits its components in a per-process order.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import re
import time
from binascii import b2a_base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from hashlib import sha512
from typing import Final, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList

from loadgen.protocol.keys import public_key_base64

try:  # libsodium through PyNaCl: about 1.5x faster than OpenSSL here, for signing and verifying
    from nacl.bindings import crypto_sign, crypto_sign_seed_keypair
    from nacl.bindings import crypto_sign_open as _nacl_sign_open
    from nacl.exceptions import BadSignatureError as _NaclBadSignature
except ImportError:  # pragma: no cover - PyNaCl is a dependency; cryptography is the fallback
    _nacl_sign_open = None  # type: ignore[assignment]

__all__ = [
    "COVERED_COMPONENTS",
    "SignatureError",
    "SignedRequest",
    "Signer",
    "TargetSigner",
    "content_digest",
    "verify_request",
]

LABEL = "dispatch"
KEY_ID = "default"
ALGORITHM = "ed25519"
COVERED_COMPONENTS = ("@method", "@path", "@authority", "content-type", "content-digest")
MAX_AGE = timedelta(minutes=5)
CLOCK_SKEW_SECONDS = 5
_ALLOWED_PARAMS = frozenset({"alg", "created", "expires", "keyid", "nonce"})
_COVERED_LIST = "(" + " ".join(f'"{c}"' for c in COVERED_COMPONENTS) + ")"


def content_digest(body: bytes) -> str:
    """The ``Content-Digest`` header value for *body* (SHA-512, RFC 9530)."""
    return _digest_value(body).decode()


def _digest_value(body: bytes) -> bytes:
    return b"".join((b"sha-512=:", b2a_base64(sha512(body).digest(), newline=False), b":"))


def ed25519_signer(private_key: Ed25519PrivateKey, backend: str = "auto") -> Callable[[bytes], bytes]:
    """A function signing bytes with *private_key*: libsodium through PyNaCl (``"nacl"``, about
    1.5x faster here) or OpenSSL through cryptography (``"cryptography"``); ``"auto"`` picks
    PyNaCl when it is installed. Ed25519 is deterministic, so both give identical signatures."""
    if backend in ("auto", "nacl"):
        if _nacl_sign_open is None:
            if backend == "nacl":
                raise ImportError("the nacl signing backend needs PyNaCl")
        else:
            _, secret = crypto_sign_seed_keypair(private_key.private_bytes_raw())

            def sign(message: bytes) -> bytes:
                return crypto_sign(message, secret)[:64]

            return sign
    elif backend != "cryptography":
        raise ValueError(f"unknown signing backend {backend!r}")
    return private_key.sign


def _ed25519_verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Verify with libsodium when PyNaCl is installed (faster), else with cryptography."""
    if _nacl_sign_open is not None and len(signature) == 64:
        try:
            _nacl_sign_open(signature + message, public_key.public_bytes_raw())
        except _NaclBadSignature:
            return False
        return True
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class Signer:
    """Signs Dispatch ``RunRequest`` POSTs with one Ed25519 key.

    ``headers(...)`` returns the three headers to add: ``Content-Digest``,
    ``Signature-Input`` and ``Signature``. The component order is the one in
    :data:`COVERED_COMPONENTS`, so the output matches the golden vector.
    """

    def __init__(self, private_key: Ed25519PrivateKey, backend: str = "auto") -> None:
        self._sign = ed25519_signer(private_key, backend)
        self.public_key_base64 = public_key_base64(private_key.public_key())
        self._last: tuple[tuple[str, str, str, str], TargetSigner] | None = None  # headers()' last target

    def for_target(self, *, method: str, path: str, authority: str, content_type: str) -> TargetSigner:
        """A signer of the requests to one target, with the parts of the signature base they share
        rendered once."""
        return TargetSigner(self._sign, method, path, authority, content_type)

    def headers(
        self,
        *,
        method: str,
        path: str,
        authority: str,
        content_type: str,
        body: bytes,
        created: int | None = None,
    ) -> dict[str, str]:
        """Return the signature headers for one request (``created`` defaults to now)."""
        key = (method, path, authority, content_type)
        last = self._last
        if last is not None and last[0] == key:
            target = last[1]
        else:
            target = self.for_target(method=method, path=path, authority=authority, content_type=content_type)
            self._last = (key, target)
        digest, signature_input, signature = target.sign(body, created)
        return {
            "Content-Digest": digest.decode(),
            "Signature-Input": signature_input.decode(),
            "Signature": signature.decode(),
        }


class TargetSigner:
    """Signs the requests to one (method, path, authority, content type): :meth:`sign` gives the values of
    ``Content-Digest``, ``Signature-Input`` and ``Signature`` as bytes. The signature parameters, which
    change only with ``created`` (a second), are rendered once per second."""

    __slots__ = ("_head", "_params", "_sign")

    def __init__(
        self, sign: Callable[[bytes], bytes], method: str, path: str, authority: str, content_type: str
    ) -> None:
        self._sign = sign
        self._head = (
            f'"@method": {method.upper()}\n'
            f'"@path": {path}\n'
            f'"@authority": {authority.lower()}\n'
            f'"content-type": {content_type}\n'
            '"content-digest": '
        ).encode()
        self._params: tuple[int, bytes, bytes] = (-1, b"", b"")
        """``created``, ``"\\n"`` + the ``@signature-params`` line and the ``Signature-Input`` value for it (one
        tuple, replaced whole, so that threads sharing the signer never see parts of two seconds)."""

    def sign(self, body: bytes, created: int | None = None) -> tuple[bytes, bytes, bytes]:
        """``(Content-Digest, Signature-Input, Signature)`` values for *body* (``created`` defaults to now)."""
        if created is None:
            created = int(time.time())
        params = self._params
        if created != params[0]:
            text = f'{_COVERED_LIST};created={created};keyid="{KEY_ID}";alg="{ALGORITHM}"'
            params = self._params = (created, f'\n"@signature-params": {text}'.encode(), f"{LABEL}={text}".encode())
        digest = _digest_value(body)
        signature = b2a_base64(self._sign(b"".join((self._head, digest, params[1]))), newline=False)
        return digest, params[2], b"".join((_SIGNATURE_OPEN, signature, b":"))


_SIGNATURE_OPEN: Final = f"{LABEL}=:".encode()


class SignatureError(Exception):
    """A request failed verification.

    ``code`` is the Connect error code the SDK endpoint answers with:
    ``permission_denied`` (HTTP 403) or ``unauthenticated`` (HTTP 401).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return 401 if self.code == "unauthenticated" else 403


def _denied(message: str) -> SignatureError:
    return SignatureError("permission_denied", message)


@dataclass(frozen=True)
class SignedRequest:
    """What verification needs to know of an HTTP request.

    ``headers`` keys must be lower-case; ``authority`` is the Host header.
    """

    method: str
    path: str
    authority: str
    headers: Mapping[str, str]
    body: bytes
    scheme: str = "http"
    query: str = ""


def _component_value(name: str, request: SignedRequest) -> str:
    if not name.startswith("@"):
        value = request.headers.get(name)
        if value is None:
            raise _denied(f'covered header field "{name}" is absent from the request')
        return value
    query = f"?{request.query}" if request.query else ""
    if name == "@method":
        return request.method.upper()
    if name == "@path":
        return request.path
    if name == "@authority":
        return request.authority.lower()
    if name == "@scheme":
        return request.scheme.lower()
    if name == "@query":
        return query or "?"
    if name == "@target-uri":
        return f"{request.scheme}://{request.authority}{request.path}{query}"
    if name == "@request-target":
        return request.path + query
    raise _denied(f'unsupported derived component "{name}"')


def _parse_dictionary(header: str, value: str | None) -> Dictionary:
    if value is None:
        raise _denied(f'Expected "{header}" header field to be present')
    parsed = Dictionary()
    try:
        parsed.parse(value.encode())
    except ValueError as exc:
        raise _denied(f'malformed "{header}" header field: {exc}') from None
    return parsed


@dataclass(frozen=True, slots=True)
class _ParsedSignature:
    label: str
    covered: Sequence[str]
    params: Mapping[str, object]  # never changed: the fast parse shares it between requests
    params_text: str  # the serialized inner list with parameters, as signed
    signature: bytes
    problem: tuple[str, str] | None  # _declared_problem's verdict


# The shape every Dispatch signer emits, in canonical RFC 8941 form (so the raw
# text is its own serialization). Anything else goes through http_sfv.
_FAST_INPUT = re.compile(
    r'^([a-z*][a-z0-9_.*-]*)=(\((?:"[\x21\x23-\x5b\x5d-\x7e]+"(?: "[\x21\x23-\x5b\x5d-\x7e]+")*)?\))'
    r'((?:;[a-z*][a-z0-9_.*-]*=(?:-?[1-9][0-9]{0,14}|0|"[\x20\x21\x23-\x5b\x5d-\x7e]*"))*)$'
)
_FAST_PARAM = re.compile(r';([a-z*][a-z0-9_.*-]*)=(-?[1-9][0-9]{0,14}|0|"[\x20\x21\x23-\x5b\x5d-\x7e]*")')
_FAST_SIGNATURE = re.compile(r"^([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*={0,2}):$")
_SINGLE_DIGEST = re.compile(r"^(sha-512|sha-256)=:([A-Za-z0-9+/]*={0,2}):$")


@functools.lru_cache(maxsize=64)
def _parse_input_fast(
    raw_input: str,
) -> tuple[str, tuple[str, ...], Mapping[str, object], str, tuple[str, str] | None] | None:
    """A canonical ``Signature-Input``: (label, covered, params, params text, problem), or ``None``
    ("use http_sfv"); the problem is :func:`_declared_problem`'s.

    Cached: a signer's requests of one second carry the very same text (only ``created`` moves).
    """
    declared = _FAST_INPUT.match(raw_input)
    if declared is None:
        return None
    params: dict[str, object] = {}
    for name, value in _FAST_PARAM.findall(declared.group(3)):
        if name in params:
            return None
        params[name] = value[1:-1] if value.startswith('"') else int(value)
    inner = declared.group(2)[1:-1]
    covered = tuple(item[1:-1] for item in inner.split(" ")) if inner else ()
    return declared.group(1), covered, params, declared.group(2) + declared.group(3), _declared_problem(covered, params)


def _parse_fast(headers: Mapping[str, str]) -> _ParsedSignature | None:
    """Parse the common canonical shape with regular expressions; ``None`` means "use http_sfv"."""
    raw_input, raw_signature = headers.get("signature-input"), headers.get("signature")
    if raw_input is None or raw_signature is None:
        return None
    declared = _parse_input_fast(raw_input)
    signed = _FAST_SIGNATURE.match(raw_signature)
    if declared is None or signed is None or declared[0] != signed.group(1):
        return None
    try:
        signature = binascii.a2b_base64(signed.group(2))  # the pattern admits base64 characters only
    except ValueError:
        return None
    return _ParsedSignature(*declared[:4], signature, declared[4])


def _parse_structured(headers: Mapping[str, str]) -> _ParsedSignature:
    """Parse with http_sfv (any valid RFC 8941 form); raise :class:`SignatureError` when malformed."""
    inputs = _parse_dictionary("Signature-Input", headers.get("signature-input"))
    if len(inputs) != 1:
        raise _denied("Signature-Input must hold exactly one signature")
    ((label, declared),) = inputs.items()
    if not isinstance(declared, InnerList):
        raise _denied("Signature-Input member is not an inner list")
    signatures = _parse_dictionary("Signature", headers.get("signature"))
    if label not in signatures:
        raise _denied(f'Signature has no member labelled "{label}"')
    member = signatures[label]
    signature = None if isinstance(member, InnerList) else member.value
    if not isinstance(signature, bytes):
        raise _denied("Signature member is not a byte sequence")
    covered = tuple(item.value for item in declared)
    params = dict(declared.params)
    return _ParsedSignature(label, covered, params, str(declared), signature, _declared_problem(covered, params))


def _declared_problem(covered: Sequence[object], params: Mapping[str, object]) -> tuple[str, str] | None:
    """What makes a declared signature unacceptable whatever the request and the time, as
    (Connect code, message), or ``None``."""
    unknown = set(params) - _ALLOWED_PARAMS
    if unknown:
        return "permission_denied", f"Signature-Input has unknown parameters {sorted(unknown)}"
    if "alg" in params and params["alg"] != ALGORITHM:
        return "permission_denied", f"unsupported signature algorithm {params['alg']!r}"
    keyid = params.get("keyid")
    if keyid != KEY_ID:
        return "unauthenticated", f"public key {keyid!r} not available"
    if not all(isinstance(c, str) for c in covered) or len(set(covered)) != len(covered):
        return "permission_denied", "Signature-Input covers malformed or repeated components"
    if not set(COVERED_COMPONENTS) <= set(covered):
        return (
            "unauthenticated",
            f"no signatures found that covered all required components ({sorted(COVERED_COMPONENTS)})",
        )
    created = params.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        return "permission_denied", 'Signature is missing a required "created" parameter'
    return None


def verify_request(
    request: SignedRequest,
    public_key: Ed25519PublicKey,
    *,
    max_age: timedelta = MAX_AGE,
    now: float | None = None,
) -> None:
    """Verify *request* as the Dispatch SDK endpoints do; raise :class:`SignatureError`.

    Rules: exactly one signature (any label) present in both ``Signature-Input``
    and ``Signature``; ``created`` required, ``keyid`` must be ``default``,
    ``alg`` if present must be ``ed25519``; the five Dispatch components must be
    covered (extra ones are allowed); age at most *max_age* with 5 s skew; then
    ``Content-Digest`` (sha-512 or sha-256) must match the body.
    """
    now = time.time() if now is None else now
    parsed = _parse_fast(request.headers) or _parse_structured(request.headers)
    if parsed.problem is not None:
        raise SignatureError(*parsed.problem)
    params = parsed.params
    covered = parsed.covered
    created = cast(int, params["created"])
    if created > now + CLOCK_SKEW_SECONDS:
        raise _denied('Signature "created" parameter is set to a time in the future')
    if created + max_age.total_seconds() < now - CLOCK_SKEW_SECONDS:
        raise _denied(f"Signature age exceeds maximum allowable age {max_age}")
    expires = params.get("expires")
    if isinstance(expires, int) and expires < now - CLOCK_SKEW_SECONDS:
        raise _denied('Signature "expires" parameter is set to a time in the past')

    headers = request.headers
    if covered == COVERED_COMPONENTS and "content-type" in headers and "content-digest" in headers:
        base = (  # what the loop below builds, for the components in the order Dispatch signers use
            f'"@method": {request.method.upper()}\n'
            f'"@path": {request.path}\n'
            f'"@authority": {request.authority.lower()}\n'
            f'"content-type": {headers["content-type"]}\n'
            f'"content-digest": {headers["content-digest"]}\n'
            f'"@signature-params": {parsed.params_text}'
        )
    else:
        lines = [f'"{name}": {_component_value(name, request)}' for name in covered]
        lines.append(f'"@signature-params": {parsed.params_text}')
        base = "\n".join(lines)
    if not _ed25519_verify(public_key, parsed.signature, base.encode()):
        raise _denied("invalid signature") from None
    _verify_digest(request)


def _verify_digest(request: SignedRequest) -> None:
    header = request.headers.get("content-digest")
    fast = _SINGLE_DIGEST.match(header) if header is not None else None
    if fast is not None:
        algorithm = hashlib.sha512 if fast.group(1) == "sha-512" else hashlib.sha256
        try:
            expected = binascii.a2b_base64(fast.group(2))  # the pattern admits base64 characters only
        except ValueError:
            raise _denied('malformed "Content-Digest" header field') from None
        if not hmac.compare_digest(expected, algorithm(request.body).digest()):
            raise _denied("digest of the request body does not match the Content-Digest header")
        return
    digests = _parse_dictionary("Content-Digest", header)
    for name, algorithm in (("sha-512", hashlib.sha512), ("sha-256", hashlib.sha256)):
        if name in digests:
            member = digests[name]
            given = None if isinstance(member, InnerList) else member.value
            if not isinstance(given, bytes) or not hmac.compare_digest(given, algorithm(request.body).digest()):
                raise _denied("digest of the request body does not match the Content-Digest header")
            return
    raise SignatureError("unauthenticated", "missing content digest in http request header")
