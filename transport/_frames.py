"""Length-prefixed frames: how messages are cut out of a byte stream.

A frame is a 5-byte header then the payload::

    +-----------------------+---------+-------------------------+
    | length: u32 big-endian| version | payload (length bytes)  |
    +-----------------------+---------+-------------------------+

``length`` counts the payload only, which must be 1 to ``max_frame_size`` bytes (64 KiB by
default). ``version`` is the protocol version the payload is written in. Both are checked as
soon as the header has arrived, so an oversized or foreign frame is refused before its body is
buffered.
"""

from __future__ import annotations

import struct

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "FrameReader",
    "frame",
]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})
DEFAULT_MAX_FRAME_SIZE = 64 * 1024

_HEADER = struct.Struct(">IB")
HEADER_SIZE = _HEADER.size


def frame(payload: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Wrap ``payload`` in a frame of the current protocol version.

    Raises:
        LocalProtocolError: the payload is empty or larger than ``max_frame_size``.
    """
    size = len(payload)
    if size > max_frame_size:
        raise LocalProtocolError(
            f"frame payload of {size} bytes exceeds {max_frame_size}", "frame_too_large"
        )
    if not size:
        raise LocalProtocolError("empty frame payload", "bad_frame")
    return _HEADER.pack(size, PROTOCOL_VERSION) + payload


class FrameReader:
    """Incremental frame parser: feed bytes in any chunks, take whole payloads out.

    Bytes are appended to one ``bytearray`` and consumed by advancing an offset; the consumed
    prefix is dropped on the next :meth:`feed`, which CPython does without moving the rest
    when it is at the front. No step copies more than the frame it returns, so cost stays
    linear however the stream is split.
    """

    __slots__ = ("_buffer", "_max_frame_size", "_offset")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError("max_frame_size must be positive")
        self._buffer = bytearray()
        self._offset = 0
        self._max_frame_size = max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    def next_payload(self) -> bytearray | None:
        """Return the next whole frame's payload, or None if more bytes are needed.

        Raises:
            RemoteProtocolError: the next frame is empty, oversized or of an unknown version.
        """
        buffer = self._buffer
        start = self._offset
        if len(buffer) - start < HEADER_SIZE:
            return None
        size, version = _HEADER.unpack_from(buffer, start)
        if size > self._max_frame_size:
            raise RemoteProtocolError(
                f"frame payload of {size} bytes exceeds {self._max_frame_size}",
                "frame_too_large",
            )
        if not size:
            raise RemoteProtocolError("empty frame payload", "bad_frame")
        if version not in SUPPORTED_VERSIONS:
            raise RemoteProtocolError(
                f"unsupported protocol version {version}", "unsupported_version"
            )
        start += HEADER_SIZE
        end = start + size
        if len(buffer) < end:
            return None
        self._offset = end
        return buffer[start:end]
