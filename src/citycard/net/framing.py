"""One ISO 8583 frame on an asyncio stream: a 2-byte big-endian length, then that many bytes.

The frame is the UnionPay POS profile's (:mod:`citycard.codec.iso8583.wire`; 中国银联 POS终端消息域说明 and
the public POS traces cited in ``docs/iso8583.md``): the length counts TPDU, header and message and is
bounded by :data:`~citycard.codec.iso8583.MAX_FRAME_SIZE` (and from below by TPDU + header + MTI + bitmap)
through :func:`~citycard.codec.iso8583.frame_length`.

A stream that cannot be cut into frames is a :class:`FramingError`: a length prefix of zero, too small or
too large, the peer closing inside a frame, or a frame body that does not arrive in time. After it the
stream is out of step, so the only answer is to close the connection. A peer that closes between two
frames is not an error: :func:`read_frame` returns None.
"""

from __future__ import annotations

import asyncio
from typing import Final

from citycard.codec.iso8583 import Iso8583Error, frame_length

__all__ = ["LENGTH_SIZE", "FramingError", "read_frame", "write_frame"]

LENGTH_SIZE: Final = 2
"""Size of the length prefix in bytes (big-endian binary)."""


class FramingError(Exception):
    """The byte stream cannot be cut into frames; the connection must be closed. Names what, never bytes."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"framing: {reason}")
        self.reason = reason


async def read_frame(reader: asyncio.StreamReader, *, body_timeout_s: float) -> bytes | None:
    """The next whole frame, length prefix included (as :func:`~citycard.codec.iso8583.decode_frame` takes
    it), or None when the peer closed between frames.

    Waits for the prefix as long as the caller lets it (wrap it in a timeout for an idle limit); once the
    prefix is in, the rest must follow within ``body_timeout_s``. Raises :class:`FramingError`.
    """
    try:
        prefix = await reader.readexactly(LENGTH_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FramingError("connection closed inside the length prefix") from None
    try:
        length = frame_length(prefix)
    except Iso8583Error as exc:
        raise FramingError(exc.reason) from None
    try:
        async with asyncio.timeout(body_timeout_s):
            body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FramingError(f"connection closed after {len(exc.partial)} of {length} bytes") from None
    except TimeoutError:
        raise FramingError(f"frame of {length} bytes not received within {body_timeout_s} s") from None
    return prefix + body


async def write_frame(writer: asyncio.StreamWriter, frame: bytes) -> None:
    """Write one whole frame (length prefix included, as the codec encodes it) and wait for the buffer to
    drain. The frame must be well formed: it was made by the codec (an assertion, not input checking)."""
    assert int.from_bytes(frame[:LENGTH_SIZE], "big") == len(frame) - LENGTH_SIZE, "frame length prefix"
    writer.write(frame)
    await writer.drain()
