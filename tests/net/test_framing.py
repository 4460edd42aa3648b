"""Framing on asyncio streams: whole frames, clean EOF, and every way a stream cannot be cut into frames —
the same for :func:`read_frame` (one frame per call) and :class:`FrameReader` (frames cut from what each
read brought, several per read)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from citycard.codec.iso8583 import MAX_FRAME_SIZE, Tpdu, encode_framed
from citycard.net.framing import FrameReader, FramingError, read_frame

from tests.net.support import purchase, run

FRAME = encode_framed(purchase(1), Tpdu(6, 1))
OTHER = encode_framed(purchase(2), Tpdu(6, 1))

Reader = Callable[[asyncio.StreamReader, float], Callable[[], Awaitable[bytes | None]]]


def _one_at_a_time(
    reader: asyncio.StreamReader, body_timeout_s: float
) -> Callable[[], Awaitable[bytes | None]]:
    return lambda: read_frame(reader, body_timeout_s=body_timeout_s)


def _cut(reader: asyncio.StreamReader, body_timeout_s: float) -> Callable[[], Awaitable[bytes | None]]:
    return FrameReader(reader, body_timeout_s=body_timeout_s).read


READERS = pytest.mark.parametrize("reader_of", [_one_at_a_time, _cut], ids=["read_frame", "FrameReader"])


async def _read(
    reader_of: Reader, data: bytes, *, eof: bool = True, body_timeout_s: float = 5.0
) -> bytes | None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return await reader_of(reader, body_timeout_s)()


@READERS
def test_two_frames_back_to_back_are_read_one_at_a_time_then_eof_is_none(reader_of: Reader) -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(FRAME + OTHER)
        reader.feed_eof()
        read = reader_of(reader, 1.0)
        assert await read() == FRAME
        assert await read() == OTHER
        assert await read() is None

    run(scenario())


@READERS
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00" + FRAME[2:], "cannot hold"),
        ((MAX_FRAME_SIZE + 1).to_bytes(2, "big") + bytes(30), "exceeds"),
        (b"\xff\xff", "exceeds"),
        (FRAME[:-1], f"after {len(FRAME) - 3} of {len(FRAME) - 2} bytes"),
        (FRAME[:1], "inside the length prefix"),
        (FRAME + FRAME[:-1], f"after {len(FRAME) - 3} of {len(FRAME) - 2} bytes"),
    ],
    ids=["zero length", "one over the maximum", "65535", "eof mid-frame", "eof mid-prefix", "eof mid-second"],
)
def test_a_stream_that_cannot_be_cut_into_frames_is_a_framing_error(
    reader_of: Reader, data: bytes, reason: str
) -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        read = reader_of(reader, 5.0)
        with pytest.raises(FramingError, match=reason):
            while await read() is not None:
                pass

    run(scenario())


@READERS
def test_a_frame_body_that_does_not_arrive_in_time_is_a_framing_error(reader_of: Reader) -> None:
    async def scenario() -> None:
        with pytest.raises(FramingError, match="not received within"):
            await _read(reader_of, FRAME[:20], eof=False, body_timeout_s=0.05)

    run(scenario())


@READERS
def test_a_frame_that_trickles_in_must_be_whole_within_the_body_time(reader_of: Reader) -> None:
    """Each piece comes well within the body time, the whole frame does not: a slow sender cannot hold a
    connection by sending a byte now and then."""

    async def scenario() -> None:
        reader = asyncio.StreamReader()

        async def trickle() -> None:
            for i in range(len(FRAME)):
                reader.feed_data(FRAME[i : i + 1])
                await asyncio.sleep(0.01)

        feeding = asyncio.create_task(trickle())
        with pytest.raises(FramingError, match="not received within"):
            await reader_of(reader, 0.3)()
        feeding.cancel()

    run(scenario())


def test_frames_that_came_in_one_read_are_handed_out_without_reading_again() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        frames = FrameReader(reader, body_timeout_s=1.0)
        assert frames.buffered() is None
        reader.feed_data(FRAME + OTHER + FRAME[:5])
        assert await frames.read() == FRAME
        assert frames.buffered() == OTHER  # already in: no wait
        assert frames.buffered() is None  # the third has only begun
        reader.feed_data(FRAME[5:])
        assert await frames.read() == FRAME
        reader.feed_eof()
        assert await frames.read() is None

    run(scenario())
