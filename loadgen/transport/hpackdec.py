"""A lean HPACK decoder (RFC 7541): it keeps the table, and yields a response's ``:status`` or a block's fields.

The client needs one thing from a response's headers, its status, but must
decode every header block to keep the dynamic table in step with the server's
encoder. :class:`hpack.Decoder` does that in about 17 µs for a typical response
whose ``content-length`` is new (a literal that enters the table); this decoder
walks the same block without building header objects, in a few µs. Huffman
strings are decoded with ``hpack``'s own table.

A server usually answers every request with the same header block (the same
status, content type and length, all indexed or literals without indexing).
Such a block neither inserts into the dynamic table nor resizes it, so while the
table stays as it is the block decodes the same way: :meth:`StatusDecoder.decode`
keeps a small memo of those blocks, emptied whenever the table changes.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

__all__ = ["HeaderBlockError", "StatusDecoder"]

_STATIC: Final = HeaderTable.STATIC_TABLE
_STATIC_LEN: Final = len(_STATIC)
_STATUS: Final = b":status"
_CONTENT_LENGTH: Final = b"content-length"
_MEMO_SIZE: Final = 64  # distinct blocks remembered while the table stays as it is


class HeaderBlockError(ValueError):
    """The header block is not valid HPACK (a COMPRESSION_ERROR)."""


class StatusDecoder:
    """Decodes header blocks in order; :meth:`decode` returns the block's ``:status`` (-1 if none)."""

    __slots__ = ("_changes", "_entries", "_limit", "_max", "_memo", "_size", "content_length")

    def __init__(self, max_table_size: int = 4096) -> None:
        self._entries: deque[tuple[bytes, bytes]] = deque()  # newest first
        self._size = 0
        self._max = max_table_size  # our SETTINGS_HEADER_TABLE_SIZE
        self._limit = max_table_size  # the size the encoder chose (dynamic table size updates)
        self.content_length = -1  # of the last block decoded; -1 when it had none (or an invalid one)
        self._changes = 0  # table insertions and size updates so far
        self._memo: dict[bytes, tuple[int, int]] = {}  # block -> (status, content-length), for this table

    @property
    def table_size(self) -> int:
        """Current size of the dynamic table (RFC 7541 §4.1)."""
        return self._size

    @property
    def entries(self) -> list[tuple[bytes, bytes]]:
        """The dynamic table, newest entry first."""
        return list(self._entries)

    def decode(self, block: bytes) -> int:
        """Decode *block* (updating the table); the first ``:status`` as an int, or -1.

        The block's ``content-length`` is left in :attr:`content_length`.
        """
        memo = self._memo
        known = memo.get(block)
        if known is not None:
            self.content_length = known[1]
            return known[0]
        changes = self._changes
        status = length = -1
        for name, value in self.fields(block):
            if status < 0 and name == _STATUS:
                status = int(value) if len(value) == 3 and value.isdigit() else 0
            elif name == _CONTENT_LENGTH and value.isdigit() and len(value) < 16:
                length = int(value)
        self.content_length = length
        if changes == self._changes:  # the block left the table as it was: it will decode the same way again
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[block] = (status, length)
        return status

    def fields(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """Every ``(name, value)`` of *block*, in order, keeping the dynamic table in step with the encoder.

        Raises :class:`HeaderBlockError` on invalid HPACK (the table can no longer be trusted)."""
        fields: list[tuple[bytes, bytes]] = []
        n = len(block)
        i = 0
        try:
            while i < n:
                first = block[i]
                i += 1
                if first & 0x80:  # indexed field
                    index = first & 0x7F
                    if index == 0x7F:
                        index, i = self._integer(block, i, index)
                    fields.append(self._get(index))
                    continue
                if first & 0x40:  # literal with incremental indexing
                    index = first & 0x3F
                    if index == 0x3F:
                        index, i = self._integer(block, i, index)
                    name, i = (self._get(index)[0], i) if index else self._string(block, i)
                    value, i = self._string(block, i)
                    self._add(name, value)
                elif first & 0x20:  # dynamic table size update: only before the first field
                    if fields:
                        raise HeaderBlockError("table size update after a header field")
                    size = first & 0x1F
                    if size == 0x1F:
                        size, i = self._integer(block, i, size)
                    if size > self._max:
                        raise HeaderBlockError(f"table size update to {size} above our limit {self._max}")
                    self._limit = size
                    self._evict()
                    self._changed()
                    continue
                else:  # literal without indexing (0000) or never indexed (0001)
                    index = first & 0x0F
                    if index == 0x0F:
                        index, i = self._integer(block, i, index)
                    name, i = (self._get(index)[0], i) if index else self._string(block, i)
                    value, i = self._string(block, i)
                fields.append((name, value))
        except IndexError:
            raise HeaderBlockError("truncated header block") from None
        except HPACKDecodingError as exc:
            raise HeaderBlockError(str(exc)) from None
        return fields

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _integer(block: bytes, i: int, value: int) -> tuple[int, int]:
        """The continuation bytes of an integer whose prefix was full (*value*); (integer, next offset)."""
        shift = 0
        while True:
            byte = block[i]
            i += 1
            value += (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, i
            shift += 7
            if shift > 28:
                raise HeaderBlockError("integer too large")

    def _string(self, block: bytes, i: int) -> tuple[bytes, int]:
        first = block[i]
        length = first & 0x7F
        i += 1
        if length == 0x7F:
            length, i = self._integer(block, i, length)
        end = i + length
        if end > len(block):
            raise HeaderBlockError("string runs past the header block")
        raw = block[i:end]
        return (decode_huffman(raw) if first & 0x80 else raw), end

    def _get(self, index: int) -> tuple[bytes, bytes]:
        if index <= _STATIC_LEN:
            if index == 0:
                raise HeaderBlockError("index 0")
            return _STATIC[index - 1]
        at = index - _STATIC_LEN - 1
        entries = self._entries
        if at >= len(entries):
            raise HeaderBlockError(f"index {index} beyond the dynamic table")
        return entries[at]

    def _changed(self) -> None:
        """The table changed (or may have): the memo's decodings no longer hold."""
        self._changes += 1
        self._memo.clear()

    def _add(self, name: bytes, value: bytes) -> None:
        self._changed()
        size = len(name) + len(value) + 32
        if size > self._limit:
            self._entries.clear()
            self._size = 0
            return
        self._entries.appendleft((name, value))
        self._size += size
        if self._size > self._limit:
            self._evict()

    def _evict(self) -> None:
        entries = self._entries
        size = self._size
        while size > self._limit:
            name, value = entries.pop()
            size -= len(name) + len(value) + 32
        self._size = size
