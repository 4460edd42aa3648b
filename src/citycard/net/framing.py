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

__all__ = ["LENGTH_SIZE", "FrameReader", "FramingError", "read_frame", "send_frame", "write_frame"]

LENGTH_SIZE: Final = 2
"""Size of the length prefix in bytes (big-endian binary)."""
READ_SIZE: Final = 65_536
"""The most bytes :class:`FrameReader` asks the stream for at once."""


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
    except Iso8583Error as bad:  # a name of its own: compiled by mypyc, one name holds one type
        raise FramingError(bad.reason) from None
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


class FrameReader:
    """The frames of one stream, cut from what it has received: one read of the stream may bring several
    frames (a busy peer's requests or answers), which are then handed out without waiting or arming a timer
    again (:meth:`buffered`), where :func:`read_frame` waits twice per frame, each wait under a timer.

    The limits are :func:`read_frame`'s: the first byte of a frame may take as long as the caller lets it
    (wrap :meth:`read` in a timeout for an idle limit); once a frame has begun, the whole of it must be in
    within ``body_timeout_s`` of its first byte, however it trickles in. A bad length prefix, the peer
    closing inside a frame or a frame late is a :class:`FramingError`. Bounded: it reads only while it holds
    no whole frame, at most :data:`READ_SIZE` bytes at a time."""

    def __init__(self, reader: asyncio.StreamReader, *, body_timeout_s: float) -> None:
        self._reader = reader
        self._body_timeout_s = body_timeout_s
        self._buffer = bytearray()
        self._read_at = 0.0  # loop time of the last read
        self._begun_at = 0.0  # loop time of the read that brought the first byte of the frame begun

    def buffered(self) -> bytes | None:
        """The next frame if it is whole in what was received already (length prefix included)."""
        buffer = self._buffer
        if len(buffer) < LENGTH_SIZE:
            return None
        try:
            length = frame_length(bytes(buffer[:LENGTH_SIZE]))
        except Iso8583Error as exc:
            raise FramingError(exc.reason) from None
        end = LENGTH_SIZE + length
        if len(buffer) < end:
            return None
        frame = bytes(buffer[:end])
        del buffer[:end]
        if buffer:  # the next frame has begun, in the last read
            self._begun_at = self._read_at
        return frame

    async def read(self) -> bytes | None:
        """The next whole frame (length prefix included), or None when the peer closed between frames."""
        loop = asyncio.get_running_loop()
        while (frame := self.buffered()) is None:
            if not self._buffer:
                chunk = await self._reader.read(READ_SIZE)
                if not chunk:
                    return None
                self._read_at = self._begun_at = loop.time()
            else:
                try:
                    async with asyncio.timeout_at(self._begun_at + self._body_timeout_s):
                        chunk = await self._reader.read(READ_SIZE)
                except TimeoutError:
                    raise FramingError(self._late()) from None
                if not chunk:
                    raise FramingError(self._closed_inside())
                self._read_at = loop.time()
            self._buffer += chunk
        return frame

    def _late(self) -> str:
        if len(self._buffer) < LENGTH_SIZE:
            return f"length prefix not received within {self._body_timeout_s} s"
        length = int.from_bytes(self._buffer[:LENGTH_SIZE], "big")
        return f"frame of {length} bytes not received within {self._body_timeout_s} s"

    def _closed_inside(self) -> str:
        if len(self._buffer) < LENGTH_SIZE:
            return "connection closed inside the length prefix"
        length = int.from_bytes(self._buffer[:LENGTH_SIZE], "big")
        return f"connection closed after {len(self._buffer) - LENGTH_SIZE} of {length} bytes"


async def send_frame(
    writer: asyncio.StreamWriter, frame: bytes, lock: asyncio.Lock, *, timeout_s: float | None = None
) -> None:
    """Write one whole frame on a stream that several tasks write to, ``lock`` keeping frames whole and in
    turn. When nothing waits to be sent before it (no writer holds ``lock``, the transport's buffer is empty)
    the frame goes to the socket at once, without waiting (what the socket does not take waits in the
    buffer, and the next frame then takes the slow way); otherwise, or when the transport is closing, it is
    :func:`write_frame` under ``lock``, which waits for the buffer to drain, the wait for ``lock`` and the
    drain within ``timeout_s`` (``TimeoutError``; None: no limit)."""
    assert int.from_bytes(frame[:LENGTH_SIZE], "big") == len(frame) - LENGTH_SIZE, "frame length prefix"
    transport = writer.transport
    if not lock.locked() and not transport.is_closing() and transport.get_write_buffer_size() == 0:
        writer.write(frame)
        return
    async with lock, asyncio.timeout(timeout_s):
        await write_frame(writer, frame)
