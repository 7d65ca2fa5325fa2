"""Properties of ``loadgen.protocol.signing.verify_request`` (Hypothesis).

* Whatever :class:`Signer` signs verifies, at any age the verifier allows, and not after.
* Mutations of a valid signed request that keep its meaning verify: method and authority
  case, an uncovered query or header, the components in another order (re-signed), more
  components, parameters in another order or optional ones added, another label, a
  sha-256 digest, both digests, whitespace RFC 8941 ignores, other signatures next to ours.
* Mutations that change its meaning raise :class:`SignatureError`: body bytes, covered
  header values, path, method, the component order without re-signing, a missing or
  repeated component, ``created``/``keyid``/``alg``/``expires`` and unknown parameters,
  mismatched or extra labels, unknown digest algorithms, signature bytes, whitespace that
  RFC 8941 does not allow.
* Random edits of any header: the verdict is a pass or a :class:`SignatureError`, never
  another exception.
* The regex fast path and the ``http_sfv`` parser agree on canonical inputs.
"""

from __future__ import annotations

import base64
import hashlib
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.protocol.signing import (
    COVERED_COMPONENTS,
    SignatureError,
    SignedRequest,
    Signer,
    _parse_fast,
    _parse_structured,
    verify_request,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
NOW = 1_750_000_000
RUN_PATH = "/dispatch.sdk.v1.FunctionService/Run"
EXTRA_COMPONENTS = ("@query", "@scheme", "@request-target", "@target-uri", "x-extra")

Draw = Callable[..., Any]  # hypothesis's data.draw
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_KIND = settings(SETTINGS, max_examples=40)  # each kind of mutation is its own test


# -- an independent signer: the signature base of RFC 9421 from a request and a Signature-Input ---------


@dataclass
class Request:
    """An HTTP request and what signs it; ``signed()`` gives its headers signed as declared."""

    body: bytes
    authority: str = "127.0.0.1:8000"
    path: str = RUN_PATH
    method: str = "POST"
    query: str = ""
    content_type: str = "application/proto"
    components: list[str] = field(default_factory=lambda: list(COVERED_COMPONENTS))
    params: list[tuple[str, str]] = field(default_factory=list)  # (name, serialized value), in order
    label: str = "dispatch"
    digest: str | None = None  # the Content-Digest header; None: sha-512 of the body
    extra_headers: dict[str, str] = field(default_factory=dict)
    key: Ed25519PrivateKey = KEY
    signed_as: dict[str, str] = field(default_factory=dict)  # component values to sign instead of the real ones

    def __post_init__(self) -> None:
        if not self.params:
            self.params = [("created", str(NOW)), ("keyid", '"default"'), ("alg", '"ed25519"')]

    def content_digest(self) -> str:
        if self.digest is not None:
            return self.digest
        return "sha-512=:" + base64.b64encode(hashlib.sha512(self.body).digest()).decode() + ":"

    def field_values(self) -> dict[str, str]:
        return {"content-type": self.content_type, "content-digest": self.content_digest(), **self.extra_headers}

    def component(self, name: str) -> str:
        if name in self.signed_as:
            return self.signed_as[name]
        query = f"?{self.query}" if self.query else ""
        derived = {
            "@method": self.method.upper(),
            "@path": self.path,
            "@authority": self.authority.lower(),
            "@scheme": "http",
            "@query": query or "?",
            "@request-target": self.path + query,
            "@target-uri": f"http://{self.authority.lower()}{self.path}{query}",
        }
        return derived[name] if name.startswith("@") else self.field_values()[name]

    def signature_input(self) -> str:
        inner = "(" + " ".join(f'"{c}"' for c in self.components) + ")"
        return inner + "".join(f";{name}={value}" for name, value in self.params)

    def signed(self) -> dict[str, str]:
        lines = [f'"{c}": {self.component(c)}' for c in self.components]
        lines.append(f'"@signature-params": {self.signature_input()}')
        signature = base64.b64encode(self.key.sign("\n".join(lines).encode())).decode()
        return {
            **self.field_values(),
            "signature-input": f"{self.label}={self.signature_input()}",
            "signature": f"{self.label}=:{signature}:",
        }

    def to_verify(self, headers: dict[str, str] | None = None, **changes: str) -> SignedRequest:
        fields = {"method": self.method, "path": self.path, "authority": self.authority, "query": self.query}
        fields.update(changes)
        return SignedRequest(headers=self.signed() if headers is None else headers, body=self.body, **fields)


def verdict(request: SignedRequest, now: float = NOW) -> str:
    """``"ok"`` or ``"refused"``; any other exception propagates and fails the property."""
    try:
        verify_request(request, PUBLIC, now=now)
    except SignatureError as exc:
        assert exc.code in ("permission_denied", "unauthenticated") and exc.http_status in (401, 403)
        assert exc.message
        return "refused"
    return "ok"


# -- strategies ---------------------------------------------------------------------------------------------

bodies = st.binary(max_size=300)
hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
paths = st.text(alphabet=string.ascii_letters + string.digits + "/._-~%", max_size=40).map(lambda p: "/" + p)
content_types = st.sampled_from(["application/proto", "application/grpc+proto", "application/json; charset=utf-8"])
sf_keys = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,12}", fullmatch=True)
requests = st.builds(Request, body=bodies, authority=hosts, path=paths, content_type=content_types)


def mixed_case(draw: Draw, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(text, flips, strict=True))


# -- Signer output ------------------------------------------------------------------------------------------


@SETTINGS
@given(
    body=bodies,
    authority=hosts,
    path=paths,
    content_type=content_types,
    age=st.integers(-5, 305),
    backend=st.sampled_from(["nacl", "cryptography"]),
)
def test_signer_output_verifies_within_the_allowed_age(
    body: bytes, authority: str, path: str, content_type: str, age: int, backend: str
) -> None:
    headers = Signer(KEY, backend=backend).headers(
        method="POST", path=path, authority=authority, content_type=content_type, body=body, created=NOW - age
    )
    lowered = {k.lower(): v for k, v in headers.items()} | {"content-type": content_type}
    assert verdict(SignedRequest("POST", path, authority, lowered, body)) == "ok"


@SETTINGS
@given(body=bodies, age=st.one_of(st.integers(306, 10**9), st.integers(-(10**9), -6)))
def test_signer_output_is_refused_outside_the_allowed_age(body: bytes, age: int) -> None:
    headers = Signer(KEY).headers(
        method="POST", path=RUN_PATH, authority="h:1", content_type="application/proto", body=body, created=NOW - age
    )
    lowered = {k.lower(): v for k, v in headers.items()} | {"content-type": "application/proto"}
    assert verdict(SignedRequest("POST", RUN_PATH, "h:1", lowered, body)) == "refused"


@SETTINGS
@given(request=requests)
def test_the_independent_signer_matches_signer(request: Request) -> None:
    """The test's own RFC 9421 signer produces exactly Signer's headers (so it is a fair oracle)."""
    ours = request.signed()
    theirs = Signer(KEY).headers(
        method="POST",
        path=request.path,
        authority=request.authority,
        content_type=request.content_type,
        body=request.body,
        created=NOW,
    )
    assert {k.lower(): v for k, v in theirs.items()} == {k: v for k, v in ours.items() if k != "content-type"}


# -- mutations that keep the meaning ------------------------------------------------------------------------


def _neutral_mutations() -> dict[str, Callable[[Draw, Request], SignedRequest]]:
    def method_case(draw: Draw, r: Request) -> SignedRequest:
        return r.to_verify(method=mixed_case(draw, "post"))

    def authority_case(draw: Draw, r: Request) -> SignedRequest:
        return r.to_verify(authority=mixed_case(draw, r.authority))

    def uncovered_query(draw: Draw, r: Request) -> SignedRequest:
        return r.to_verify(query=draw(st.text(alphabet=string.ascii_letters + "=&", min_size=1, max_size=20)))

    def uncovered_header(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed() | {"x-uncovered": draw(st.text(max_size=20)), "content-length": str(len(r.body))}
        return r.to_verify(headers)

    def component_order(draw: Draw, r: Request) -> SignedRequest:
        r.components = draw(st.permutations(list(COVERED_COMPONENTS)))
        return r.to_verify()

    def more_components(draw: Draw, r: Request) -> SignedRequest:
        extra = draw(st.lists(st.sampled_from(EXTRA_COMPONENTS), unique=True, min_size=1))
        r.components = draw(st.permutations([*COVERED_COMPONENTS, *extra]))
        r.query = draw(st.sampled_from(["", "a=1", "x=%20y&z"]))
        r.extra_headers = {"x-extra": draw(st.text(alphabet=string.printable.strip(), max_size=20))}
        return r.to_verify()

    def params_order_and_optional(draw: Draw, r: Request) -> SignedRequest:
        params = [("created", str(NOW - draw(st.integers(-5, 305)))), ("keyid", '"default"')]
        if draw(st.booleans()):
            params.append(("alg", '"ed25519"'))
        if draw(st.booleans()):
            params.append(("nonce", '"' + draw(st.text(alphabet=string.ascii_letters, max_size=16)) + '"'))
        if draw(st.booleans()):
            params.append(("expires", str(NOW + draw(st.integers(-5, 10**6)))))
        r.params = draw(st.permutations(params))
        return r.to_verify()

    def label(draw: Draw, r: Request) -> SignedRequest:
        r.label = draw(sf_keys)
        return r.to_verify()

    def digests(draw: Draw, r: Request) -> SignedRequest:
        sha256 = "sha-256=:" + base64.b64encode(hashlib.sha256(r.body).digest()).decode() + ":"
        sha512 = "sha-512=:" + base64.b64encode(hashlib.sha512(r.body).digest()).decode() + ":"
        r.digest = draw(st.sampled_from([sha256, f"{sha256}, {sha512}", f"{sha512}, {sha256}", f"{sha512},{sha256}"]))
        return r.to_verify()

    def sfv_whitespace(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        spaces = st.text(alphabet=" ", max_size=3)
        trailing = st.text(alphabet=" \t", max_size=3)
        signature_input = headers["signature-input"]
        if draw(st.booleans()):
            signature_input = signature_input.replace('" "', '"' + " " * draw(st.integers(1, 3)) + '"')
        if draw(st.booleans()):
            signature_input = signature_input.replace(";", "; ")
        headers["signature-input"] = draw(spaces) + signature_input + draw(trailing)
        headers["signature"] = draw(spaces) + headers["signature"] + draw(trailing)
        return r.to_verify(headers)

    def other_signatures(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        others = draw(st.lists(sf_keys.filter(lambda k: k != r.label), max_size=3, unique=True))
        members = [f"{name}=:{base64.b64encode(draw(st.binary(max_size=64))).decode()}:" for name in others]
        members.insert(draw(st.integers(0, len(members))), headers["signature"])
        headers["signature"] = ", ".join(members)
        return r.to_verify(headers)

    return {
        "method case": method_case,
        "authority case": authority_case,
        "uncovered query": uncovered_query,
        "uncovered header": uncovered_header,
        "component order, re-signed": component_order,
        "more components": more_components,
        "parameters": params_order_and_optional,
        "label": label,
        "digests": digests,
        "RFC 8941 whitespace": sfv_whitespace,
        "other signatures": other_signatures,
    }


NEUTRAL = _neutral_mutations()


@pytest.mark.parametrize("kind", sorted(NEUTRAL))
@PER_KIND
@given(request=requests, data=st.data())
def test_neutral_mutations_verify(kind: str, request: Request, data: st.DataObject) -> None:
    mutated = NEUTRAL[kind](data.draw, request)
    assert verdict(mutated) == "ok", (kind, mutated)


# -- mutations that change the meaning ----------------------------------------------------------------------


def _breaking_mutations() -> dict[str, Callable[[Draw, Request], SignedRequest]]:
    def body(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        changed = draw(st.binary(max_size=300).filter(lambda b: b != r.body))
        return replace(r.to_verify(headers), body=changed)

    def covered_header(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        name = draw(st.sampled_from(["content-type", "content-digest"]))
        headers[name] = draw(
            st.text(alphabet=string.printable.strip(), max_size=40).filter(lambda v: v != headers[name])
        )
        return r.to_verify(headers)

    def path(draw: Draw, r: Request) -> SignedRequest:
        return r.to_verify(r.signed(), path=draw(paths.filter(lambda p: p != r.path)))

    def method(draw: Draw, r: Request) -> SignedRequest:
        return r.to_verify(r.signed(), method=draw(st.sampled_from(["GET", "PUT", "PATCH", "POSTX", ""])))

    def authority(draw: Draw, r: Request) -> SignedRequest:
        return r.to_verify(r.signed(), authority=draw(hosts.filter(lambda h: h.lower() != r.authority.lower())))

    def component_order_unsigned(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        order = draw(st.permutations(list(COVERED_COMPONENTS)).filter(lambda o: list(o) != list(COVERED_COMPONENTS)))
        declared = "(" + " ".join(f'"{c}"' for c in COVERED_COMPONENTS) + ")"
        reordered = "(" + " ".join(f'"{c}"' for c in order) + ")"
        headers["signature-input"] = headers["signature-input"].replace(declared, reordered)
        return r.to_verify(headers)

    def missing_component(draw: Draw, r: Request) -> SignedRequest:
        dropped = draw(st.sampled_from(COVERED_COMPONENTS))
        r.components = [c for c in COVERED_COMPONENTS if c != dropped]
        return r.to_verify()

    def repeated_component(draw: Draw, r: Request) -> SignedRequest:
        r.components = [*COVERED_COMPONENTS, draw(st.sampled_from(COVERED_COMPONENTS))]
        return r.to_verify()

    def absent_or_unknown_component(draw: Draw, r: Request) -> SignedRequest:
        name = draw(st.sampled_from(["x-absent", "@unknown", "@status", "@query-param"]))
        r.components = [*COVERED_COMPONENTS, name]
        r.signed_as = {name: "v"}  # a correct signature over a value the request does not carry
        return r.to_verify()

    def bad_params(draw: Draw, r: Request) -> SignedRequest:
        good: dict[str, str | None] = {"created": str(NOW), "keyid": '"default"', "alg": '"ed25519"'}
        bad: dict[str, str | None] = draw(
            st.sampled_from(
                [
                    {"created": None},
                    {"created": f'"{NOW}"'},
                    {"created": "?1"},
                    {"created": f"{NOW}.0"},
                    {"created": str(NOW - 306)},
                    {"created": str(NOW + 6)},
                    {"keyid": None},
                    {"keyid": '"other"'},
                    {"alg": '"rsa-pss-sha512"'},
                    {"alg": '"ED25519"'},
                    {"expires": str(NOW - 6)},
                    {"foo": '"bar"'},
                ]
            )
        )
        merged = good | bad
        r.params = [(name, value) for name, value in merged.items() if value is not None]
        return r.to_verify()

    def labels(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        other = draw(sf_keys.filter(lambda k: k != r.label))
        which = draw(st.sampled_from(["input", "signature", "two inputs"]))
        if which == "input":
            headers["signature-input"] = other + headers["signature-input"][len(r.label) :]
        elif which == "signature":
            headers["signature"] = other + headers["signature"][len(r.label) :]
        else:
            headers["signature-input"] += f", {other}={r.signature_input()}"
            headers["signature"] += f", {other}=:{headers['signature'].split(':')[1]}:"
        return r.to_verify(headers)

    def digest(draw: Draw, r: Request) -> SignedRequest:
        wrong = base64.b64encode(hashlib.sha256(r.body + b"x").digest()).decode()
        md5 = base64.b64encode(hashlib.md5(r.body).digest()).decode()
        r.digest = draw(st.sampled_from([f"sha-256=:{wrong}:", f"md5=:{md5}:", "sha-512=:AAAA:", "sha-512=1", ""]))
        return r.to_verify()

    def signature_bytes(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        raw = bytearray(base64.b64decode(headers["signature"].split(":")[1]))
        choice = draw(st.sampled_from(["flip", "truncate", "other key"]))
        if choice == "flip":
            raw[draw(st.integers(0, 63))] ^= 1 << draw(st.integers(0, 7))
        elif choice == "truncate":
            raw = raw[: draw(st.integers(0, 63))]
        else:
            r.key = OTHER
            return r.to_verify()
        headers["signature"] = f"{r.label}=:{base64.b64encode(bytes(raw)).decode()}:"
        return r.to_verify(headers)

    def bad_whitespace(draw: Draw, r: Request) -> SignedRequest:
        headers = r.signed()
        where = draw(st.sampled_from([") ;", "; =", "tab", "= ", "inside"]))
        value = headers["signature-input"]
        if where == ") ;":
            value = value.replace(");", ") ;")
        elif where == "; =":
            value = value.replace("created=", "created =")
        elif where == "tab":
            value = "\t" + value
        elif where == "= ":
            value = value.replace("=(", "= (", 1)
        else:
            value = value.replace('"@method"', '" @method"')
        headers["signature-input"] = value
        return r.to_verify(headers)

    return {
        "body": body,
        "covered header": covered_header,
        "path": path,
        "method": method,
        "authority": authority,
        "component order, not re-signed": component_order_unsigned,
        "missing component": missing_component,
        "repeated component": repeated_component,
        "absent or unknown component": absent_or_unknown_component,
        "parameters": bad_params,
        "labels": labels,
        "digest": digest,
        "signature bytes": signature_bytes,
        "whitespace RFC 8941 refuses": bad_whitespace,
    }


BREAKING = _breaking_mutations()


@pytest.mark.parametrize("kind", sorted(BREAKING))
@PER_KIND
@given(request=requests, data=st.data())
def test_meaningful_mutations_are_refused(kind: str, request: Request, data: st.DataObject) -> None:
    mutated = BREAKING[kind](data.draw, request)
    assert verdict(mutated) == "refused", (kind, mutated)


# -- random edits: a verdict, never a crash -----------------------------------------------------------------

SFV_CHARS = string.ascii_letters + string.digits + ' "():;=,*-_.?@/+!\\\t' + "é\x00\x7f"


@SETTINGS
@given(
    request=requests,
    header=st.sampled_from(["signature-input", "signature", "content-digest", "content-type"]),
    edits=st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 3), st.text(alphabet=SFV_CHARS, max_size=4)), max_size=4
    ),
    drop=st.booleans(),
)
def test_random_header_edits_give_a_verdict_never_a_crash(
    request: Request, header: str, edits: Sequence[tuple[int, int, str]], drop: bool
) -> None:
    headers = request.signed()
    value = headers[header]
    for position, length, text in edits:
        at = position % (len(value) + 1)
        value = value[:at] + text + value[at + length :]
    if drop and not edits:
        del headers[header]
    else:
        headers[header] = value
    outcome = verdict(request.to_verify(headers))
    if header in ("content-type", "content-digest") and value != request.signed()[header]:
        assert outcome == "refused"  # a covered value changed


@SETTINGS
@given(
    signature_input=st.text(alphabet=SFV_CHARS, max_size=80),
    signature=st.text(alphabet=SFV_CHARS, max_size=80),
    digest=st.one_of(st.none(), st.text(alphabet=SFV_CHARS, max_size=60)),
)
def test_arbitrary_signature_headers_give_a_verdict_never_a_crash(
    signature_input: str, signature: str, digest: str | None
) -> None:
    headers = {"signature-input": signature_input, "signature": signature, "content-type": "application/proto"}
    if digest is not None:
        headers["content-digest"] = digest
    assert verdict(SignedRequest("POST", RUN_PATH, "h:1", headers, b"")) == "refused"


@pytest.mark.parametrize(
    "header",
    ["signature", "content-digest"],
)
def test_inner_list_members_are_refused(header: str) -> None:
    request = Request(body=b"body")
    if header == "content-digest":
        request.digest = 'sha-512=("not" "bytes")'  # signed: only the key holder can send this one
        headers = request.signed()
    else:
        headers = request.signed() | {"signature": 'dispatch=("not" "bytes")'}  # anyone can send this one
    assert verdict(request.to_verify(headers)) == "refused"


# -- the two parsers ---------------------------------------------------------------------------------------

sf_strings = st.text(alphabet=[c for c in map(chr, range(0x21, 0x7F)) if c not in '"\\'], min_size=1, max_size=20)
param_values = st.one_of(
    st.integers(-(10**15) + 1, 10**15 - 1).map(str),
    st.text(alphabet=[c for c in map(chr, range(0x20, 0x7F)) if c not in '"\\'], max_size=20).map(lambda s: f'"{s}"'),
)


@SETTINGS
@given(
    label=sf_keys,
    components=st.lists(sf_strings, max_size=8),
    params=st.dictionaries(sf_keys, param_values, max_size=6),
    signature=st.binary(max_size=80),
)
def test_fast_and_structured_parsers_agree_on_canonical_input(
    label: str, components: list[str], params: dict[str, str], signature: bytes
) -> None:
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")"
    headers = {
        "signature-input": f"{label}={inner}" + "".join(f";{k}={v}" for k, v in params.items()),
        "signature": f"{label}=:{base64.b64encode(signature).decode()}:",
    }
    fast = _parse_fast(headers)
    assert fast is not None, headers  # every canonical input of this shape takes the fast path
    assert fast == _parse_structured(headers)


@SETTINGS
@given(request=requests, data=st.data())
def test_fast_path_and_structured_path_give_the_same_verdict(request: Request, data: st.DataObject) -> None:
    """The same signed request, once in canonical text (fast path) and once with RFC 8941 whitespace
    that only the structured parser takes: the verdict is the same."""
    if data.draw(st.booleans()):
        request.params = data.draw(st.permutations(request.params))
    headers = request.signed()
    if data.draw(st.booleans()):  # break it, or not
        label, _, rest = headers["signature"].partition("=")
        raw = bytearray(base64.b64decode(rest.strip(":")))
        raw[data.draw(st.integers(0, 63))] ^= 0x80
        headers["signature"] = f"{label}=:{base64.b64encode(bytes(raw)).decode()}:"
    spaced = headers | {"signature-input": " " + headers["signature-input"]}
    assert _parse_fast(spaced) is None
    assert verdict(request.to_verify(headers)) == verdict(request.to_verify(spaced))


@pytest.mark.parametrize("created", [f"0{NOW}", "-0"], ids=["leading zero", "minus zero"])
def test_non_canonical_signature_input_gets_one_verdict(created: str) -> None:
    request = Request(body=b"body", params=[("created", created), ("keyid", '"default"'), ("alg", '"ed25519"')])
    headers = request.signed()  # signed over the raw, non-canonical text
    spaced = headers | {"signature-input": " " + headers["signature-input"]}  # the same header to RFC 8941
    now = NOW if created != "-0" else 0
    assert verdict(request.to_verify(headers), now) == verdict(request.to_verify(spaced), now)
