"""HTTP/2 framing (RFC 9113) and the HPACK request encoding (RFC 7541) of the hot path.

Everything here is plain bytes work, no IO. Frame headers are packed and
unpacked with one :class:`struct.Struct` each: ``>LBL`` reads as
``(length << 8 | type, flags, stream id)``.

Request header blocks: ``:method POST`` and ``:scheme`` are static-table
indexed fields; the three per-target constants (``:path``, ``:authority``,
``content-type``) are either literals without indexing
(:func:`encode_header_block_prefix`), or, for the first target a connection
carries, inserted into the dynamic table by its first request
(:func:`encode_header_block_insert`) and sent as three one-byte indexed fields
afterwards (:func:`indexed_header_block_prefix`); the three signature headers
are always literals without indexing, and no string is Huffman coded (RFC 7541
allows both choices). Only those three entries ever enter the table, so their
indices never move and the encoder needs no table model. Responses are decoded
with :class:`hpack.Decoder` by the connection.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = [
    "ACK",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "GOAWAY",
    "HEADERS",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "PUSH_PROMISE",
    "RST_STREAM",
    "SETTINGS",
    "WINDOW_UPDATE",
    "ErrorCode",
    "Setting",
    "encode_header_block_insert",
    "encode_header_block_prefix",
    "encode_int",
    "encode_literal",
    "encode_signature_fields",
    "encode_table_size_update",
    "error_name",
    "frame_header",
    "goaway_frame",
    "header_entries_size",
    "indexed_header_block_prefix",
    "ping_frame",
    "rst_stream_frame",
    "settings_frame",
    "window_update_frame",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface; a SETTINGS frame must follow it."""

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20


class Setting:
    """SETTINGS parameter identifiers."""

    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class ErrorCode:
    """RST_STREAM and GOAWAY error codes."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


_ERROR_NAMES = {value: name for name, value in vars(ErrorCode).items() if name.isupper()}


def error_name(code: int) -> str:
    """``REFUSED_STREAM`` for 7; ``0x2a`` for an unknown code."""
    return _ERROR_NAMES.get(code, f"0x{code:x}")


FRAME_HEADER = struct.Struct(">LBL")
"""``(length << 8 | type, flags, reserved bit + stream id)``: the 9-byte frame header."""
_pack_header = FRAME_HEADER.pack
_U32 = struct.Struct(">L")
_U32X2 = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of a frame with *length* payload bytes."""
    return _pack_header(length << 8 | frame_type, flags, stream_id)


def settings_frame(settings: Mapping[int, int], *, ack: bool = False) -> bytes:
    """A SETTINGS frame (or an empty SETTINGS ACK when *ack*)."""
    if ack:
        return _pack_header(SETTINGS, ACK, 0)
    payload = b"".join(_SETTING.pack(ident, value) for ident, value in settings.items())
    return _pack_header(len(payload) << 8 | SETTINGS, 0, 0) + payload


def window_update_frame(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame; *increment* must be in 1..2**31-1."""
    return _pack_header(4 << 8 | WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    """A RST_STREAM frame."""
    return _pack_header(4 << 8 | RST_STREAM, 0, stream_id) + _U32.pack(code)


def ping_frame(payload: bytes, *, ack: bool = False) -> bytes:
    """A PING frame; *payload* must be 8 bytes."""
    return _pack_header(8 << 8 | PING, ACK if ack else 0, 0) + payload


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame."""
    return _pack_header((8 + len(debug)) << 8 | GOAWAY, 0, 0) + _U32X2.pack(last_stream_id, code) + debug


# -- HPACK, encoding side ---------------------------------------------------------------------------

_SMALL = [bytes((n,)) for n in range(127)]  # string lengths below 127: one byte, H bit clear


def encode_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) with an N-bit prefix; *first* holds the pattern bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: bytes) -> bytes:
    """An HPACK string literal, not Huffman coded."""
    n = len(value)
    return (_SMALL[n] if n < 127 else encode_int(n, 7)) + value


def encode_literal(name: bytes | int, value: bytes) -> bytes:
    """A literal header field without indexing (§6.2.2).

    *name* is a static-table index or the lower-case name itself.
    """
    if isinstance(name, int):
        return encode_int(name, 4) + _string(value)
    return b"\x00" + _string(name) + _string(value)


# Static-table indices (RFC 7541 Appendix A).
_AUTHORITY = 1
_PATH = 4
_CONTENT_TYPE = 31
_METHOD_POST = b"\x83"  # indexed field 3
_SCHEME = {"http": b"\x86", "https": b"\x87"}  # indexed fields 6 and 7


def encode_header_block_prefix(scheme: str, path: bytes, authority: bytes, content_type: bytes) -> bytes:
    """The constant part of a request's header block: pseudo-headers and ``content-type``."""
    return (
        _METHOD_POST
        + _SCHEME[scheme]
        + encode_literal(_PATH, path)
        + encode_literal(_AUTHORITY, authority)
        + encode_literal(_CONTENT_TYPE, content_type)
    )


def encode_header_block_insert(scheme: str, path: bytes, authority: bytes, content_type: bytes) -> bytes:
    """Like :func:`encode_header_block_prefix`, but the three literals are *incrementally indexed* (§6.2.1).

    Sent as the first block of a connection, it leaves ``content-type`` at dynamic index 62,
    ``:authority`` at 63 and ``:path`` at 64, as :func:`indexed_header_block_prefix` expects.
    """
    return (
        _METHOD_POST
        + _SCHEME[scheme]
        + encode_int(_PATH, 6, 0x40)
        + _string(path)
        + encode_int(_AUTHORITY, 6, 0x40)
        + _string(authority)
        + encode_int(_CONTENT_TYPE, 6, 0x40)
        + _string(content_type)
    )


def indexed_header_block_prefix(scheme: str) -> bytes:
    """The prefix once :func:`encode_header_block_insert` went first: five one-byte indexed fields."""
    return _METHOD_POST + _SCHEME[scheme] + bytes((0x80 | 64, 0x80 | 63, 0x80 | 62))


def header_entries_size(path: bytes, authority: bytes, content_type: bytes) -> int:
    """Dynamic-table size (RFC 7541 §4.1) of the three entries :func:`encode_header_block_insert` adds."""
    return len(path) + 5 + len(authority) + 10 + len(content_type) + 12 + 3 * 32


def encode_table_size_update(size: int) -> bytes:
    """A dynamic table size update (§6.3), for the start of a header block."""
    return encode_int(size, 5, 0x20)


_DIGEST_NAME = b"\x00" + _string(b"content-digest")
_INPUT_NAME = b"\x00" + _string(b"signature-input")
_SIGNATURE_NAME = b"\x00" + _string(b"signature")


def encode_signature_fields(prefix: bytes, digest: bytes, signature_input: bytes, signature: bytes) -> bytes:
    """*prefix* followed by the three signature headers as literals without indexing."""
    small = _SMALL
    a, b, c = len(digest), len(signature_input), len(signature)
    if a < 127 and b < 127 and c < 127:  # always, for the values Signer produces
        return b"".join(
            (
                prefix,
                _DIGEST_NAME,
                small[a],
                digest,
                _INPUT_NAME,
                small[b],
                signature_input,
                _SIGNATURE_NAME,
                small[c],
                signature,
            )
        )
    return b"".join(
        (
            prefix,
            _DIGEST_NAME,
            _string(digest),
            _INPUT_NAME,
            _string(signature_input),
            _SIGNATURE_NAME,
            _string(signature),
        )
    )
