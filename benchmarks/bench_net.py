"""ISO 8583 over loopback TCP: round trips per second through :mod:`citycard.net` (server and link).

Baseline, measured in the same run and on the same loop: a raw asyncio echo of the same frame (a server
that reads the 2-byte length and the body and writes them back, a client that writes a frame and reads one
back), so the ratio says what decoding, the typed layer, matching and the task per request cost on top of
the socket round trip. Two shapes: one request at a time (latency-bound) and 100 in flight on the one
connection (throughput). A third row times the codec's share alone, without sockets: what one round trip
asks of :mod:`citycard.codec.iso8583` (encode the request, decode and parse it, build and encode the
answer, decode and parse it). Slices alternate between the cases, best of six kept (as
:func:`benchmarks.timing.rates` does for synchronous cases). Run: ``python -m benchmarks net``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from citycard.codec.iso8583 import (
    AuthorizationRequest,
    AuthorizationResponse,
    Field60,
    Message,
    ResponseCode,
    Tpdu,
    decode_framed,
    encode_framed,
)
from citycard.net.framing import read_frame, write_frame
from citycard.net.link import Iso8583Link
from citycard.net.loop import run as run_loop
from citycard.net.server import Iso8583Server

from benchmarks.timing import ROUNDS, SLICE_S

IN_FLIGHT = 100
TPDU = Tpdu(6, 1)


def _purchase(stan: int) -> AuthorizationRequest:
    return AuthorizationRequest(
        mti="0200",
        pan="6224242900000113",
        processing_code="000000",
        amount_fen=1250,
        stan=stan,
        pos_entry_mode="071",
        condition_code="00",
        terminal_id="10000019",
        merchant_id="850100082410002",
        currency="156",
        field60=Field60("22", 24),
    )


def _answer(request: Message) -> Message:
    return AuthorizationResponse(
        mti="0210",
        processing_code=request.processing_code,
        amount_fen=request.amount_fen,
        stan=request.stan,
        response_code=ResponseCode.APPROVED,
        terminal_id=request.terminal_id,
        merchant_id=request.merchant_id,
    )


async def _trivial(request: Message) -> Message:
    return _answer(request)


def _codec_round_trip(stan: int) -> None:
    request = decode_framed(encode_framed(_purchase(stan), TPDU))[1]
    _, response = decode_framed(encode_framed(_answer(request), TPDU.reply()))
    assert response.stan == stan


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (frame := await read_frame(reader, body_timeout_s=10)) is not None:
        await write_frame(writer, frame)
    writer.close()


class _Stan:
    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value = self.value % 999_999 + 1
        return self.value


async def _rate(batch: Callable[[], Awaitable[int]], seconds: float) -> float:
    clock = time.perf_counter
    done, start = 0, clock()
    while (spent := clock() - start) < seconds:
        done += await batch()
    return done / spent


async def _measure() -> list[tuple[str, float]]:
    frame = encode_framed(_purchase(1), TPDU)
    raw_server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    raw_port = raw_server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", raw_port)
    lock = asyncio.Lock()
    stan = _Stan()

    async def raw_one() -> int:
        await write_frame(writer, frame)
        assert await read_frame(reader, body_timeout_s=10) == frame
        return 1

    async def raw_many() -> int:
        async with lock:
            for _ in range(IN_FLIGHT):
                writer.write(frame)
            await writer.drain()
            for _ in range(IN_FLIGHT):
                assert await read_frame(reader, body_timeout_s=10) is not None
        return IN_FLIGHT

    async with (
        Iso8583Server(_trivial) as server,
        Iso8583Link("127.0.0.1", server.port, tpdu=TPDU) as link,
    ):
        await link.wait_connected(5)

        async def link_one() -> int:
            assert (await link.request(_purchase(stan.next()))).approved
            return 1

        async def codec_only() -> int:
            for _ in range(10):
                _codec_round_trip(stan.next())
            return 10

        async def link_many() -> int:
            answers = await asyncio.gather(*(link.request(_purchase(stan.next())) for _ in range(IN_FLIGHT)))
            assert all(answer.approved for answer in answers)
            return IN_FLIGHT

        cases: list[tuple[str, Callable[[], Awaitable[int]]]] = [
            (f"baseline: raw asyncio echo, 1 in flight ({len(frame)} B frame)", raw_one),
            ("net: link -> server -> handler, 1 in flight", link_one),
            ("codec alone: the encodes and decodes of one round trip", codec_only),
            (f"baseline: raw asyncio echo, {IN_FLIGHT} pipelined", raw_many),
            (f"net: link -> server -> handler, {IN_FLIGHT} in flight", link_many),
        ]
        best = [0.0] * len(cases)
        for _ in range(ROUNDS):
            for i, (_, batch) in enumerate(cases):
                best[i] = max(best[i], await _rate(batch, SLICE_S * 2))
    writer.close()
    await writer.wait_closed()
    raw_server.close()
    await asyncio.sleep(0.05)  # the echo connection sees the close and ends
    return [(name, rate) for (name, _), rate in zip(cases, best, strict=True)]


def main() -> None:
    results = run_loop(_measure())
    print(f"{'operation':<60} {'round trips/s':>14} {'x baseline time':>16}")
    baseline = 0.0
    for name, rate in results:
        if name.startswith("baseline"):
            baseline = rate
        print(f"{name:<60} {rate:>14,.0f} {baseline / rate:>16.1f}")
