"""Framing on asyncio streams: whole frames, clean EOF, and every way a stream cannot be cut into frames."""

from __future__ import annotations

import asyncio

import pytest

from citycard.codec.iso8583 import MAX_FRAME_SIZE, Tpdu, encode_framed
from citycard.net.framing import FramingError, read_frame

from tests.net.support import purchase, run

FRAME = encode_framed(purchase(1), Tpdu(6, 1))


async def _read(data: bytes, *, eof: bool = True, body_timeout_s: float = 5.0) -> bytes | None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return await read_frame(reader, body_timeout_s=body_timeout_s)


def test_two_frames_back_to_back_are_read_one_at_a_time_then_eof_is_none() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(FRAME + FRAME)
        reader.feed_eof()
        assert await read_frame(reader, body_timeout_s=1) == FRAME
        assert await read_frame(reader, body_timeout_s=1) == FRAME
        assert await read_frame(reader, body_timeout_s=1) is None

    run(scenario())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00" + FRAME[2:], "cannot hold"),
        ((MAX_FRAME_SIZE + 1).to_bytes(2, "big") + bytes(30), "exceeds"),
        (b"\xff\xff", "exceeds"),
        (FRAME[:-1], f"after {len(FRAME) - 3} of {len(FRAME) - 2} bytes"),
        (FRAME[:1], "inside the length prefix"),
    ],
    ids=["zero length", "one over the maximum", "65535", "eof mid-frame", "eof mid-prefix"],
)
def test_a_stream_that_cannot_be_cut_into_frames_is_a_framing_error(data: bytes, reason: str) -> None:
    async def scenario() -> None:
        with pytest.raises(FramingError, match=reason):
            await _read(data)

    run(scenario())


def test_a_frame_body_that_does_not_arrive_in_time_is_a_framing_error() -> None:
    async def scenario() -> None:
        with pytest.raises(FramingError, match="not received within"):
            await _read(FRAME[:20], eof=False, body_timeout_s=0.05)

    run(scenario())
