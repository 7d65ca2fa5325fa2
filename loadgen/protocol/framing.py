"""Length-prefixed frames of the session socket: a 4-byte big-endian length, then that many bytes.

Pure: :func:`frame` makes one, :func:`take_frames` cuts the complete ones off the front of a
receive buffer (the shard's and the client's reader both use it).
"""

from __future__ import annotations

from typing import Final

__all__ = ["LENGTH_BYTES", "FrameTooLarge", "frame", "take_frames"]

LENGTH_BYTES: Final = 4


class FrameTooLarge(ValueError):
    """A frame announced more bytes than the reader takes."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"a frame of {length} bytes is larger than {limit} bytes")
        self.length = length
        self.limit = limit


def frame(message: bytes) -> bytes:
    """*message* as one frame: its length (4 bytes, big-endian), then its bytes."""
    return len(message).to_bytes(LENGTH_BYTES, "big") + message


def take_frames(buffer: bytearray, limit: int, most: int | None = None) -> list[bytes]:
    """The complete frames at the front of *buffer* (at most *most*), removed from it.

    Raises :class:`FrameTooLarge` as soon as a frame announces more than *limit* bytes
    (the frames before it are removed from *buffer* and lost with the connection)."""
    frames: list[bytes] = []
    position = 0
    available = len(buffer)
    view = memoryview(buffer)
    try:
        while available - position >= LENGTH_BYTES and (most is None or len(frames) < most):
            length = int.from_bytes(view[position : position + LENGTH_BYTES], "big")
            if length > limit:
                raise FrameTooLarge(length, limit)
            end = position + LENGTH_BYTES + length
            if end > available:
                break
            frames.append(bytes(view[position + LENGTH_BYTES : end]))
            position = end
    finally:
        view.release()
        if position:
            del buffer[:position]
    return frames
