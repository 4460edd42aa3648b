"""The chain's transport with hosts that do no work: the floor under ``e2e``'s CPU per authorization.

Three processes stand where the acquirer, the switch and the issuer front end stand, each forked, each on
the platform's event loop (``net.loop``: uvloop), each reading with the platform's ``FrameReader`` and
writing with its ``send_frame``, as ``net.server`` and ``net.link`` do: the two relays take each request
frame in a task of its own, send it on over one upstream connection under a future matched by a key (the
frame's first 8 bytes after the length prefix, as a link matches STAN and terminal) and a timeout, and write
the answer back; the last process writes each frame back as it came. N terminals (one connection each, one
frame in flight, as ``e2e``'s terminals) send frames of a purchase's size and check that each answer is
their frame. No codec, no MAC, no database, no decision: what the three hops cost by themselves, so that
``e2e``'s figure minus this one is the work per message in the hosts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import time
from dataclasses import dataclass
from functools import partial

from citycard.net.framing import FrameReader, send_frame
from citycard.net.loop import run as run_loop

from .timing import process_cpu_s

__all__ = ["Floor", "measure"]

FRAME_BODY = 230
"""Bytes after the length prefix: about a chip purchase's TPDU, header and message."""
KEY = slice(2, 10)
"""Where a frame's key is: the terminal's number and its frame's number."""
HOP_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 5.0
PLACES = ("acquirer's place", "switch's place", "issuer's place")


@dataclass(frozen=True)
class Floor:
    """Round trips per second in the measured window, and CPU ms per round trip by process."""

    rate: float
    cpu_ms: dict[str, float]


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    return sock


async def _echo(listener: socket.socket) -> None:
    """The issuer's place: every frame written back as it came."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames, lock = FrameReader(reader, body_timeout_s=BODY_TIMEOUT_S), asyncio.Lock()
        while (frame := await frames.read()) is not None:
            await send_frame(writer, frame, lock)

    server = await asyncio.start_server(connection, sock=listener)
    async with server:
        await server.serve_forever()


async def _relay(listener: socket.socket, upstream: int) -> None:
    """The acquirer's or the switch's place: each request frame sent on upstream, its answer written back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream)
    upstream_lock = asyncio.Lock()
    pending: dict[bytes, asyncio.Future[bytes]] = {}

    async def answers() -> None:
        frames = FrameReader(reader, body_timeout_s=BODY_TIMEOUT_S)
        while (frame := await frames.read()) is not None:
            future = pending.pop(frame[KEY], None)
            if future is not None and not future.done():
                future.set_result(frame)

    async def forward(frame: bytes, downstream: asyncio.StreamWriter, lock: asyncio.Lock) -> None:
        future = asyncio.get_running_loop().create_future()
        pending[frame[KEY]] = future
        await send_frame(writer, frame, upstream_lock)
        async with asyncio.timeout(HOP_TIMEOUT_S):
            answer = await future
        await send_frame(downstream, answer, lock)

    async def connection(reader: asyncio.StreamReader, downstream: asyncio.StreamWriter) -> None:
        frames, lock = FrameReader(reader, body_timeout_s=BODY_TIMEOUT_S), asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()
        while (frame := await frames.read()) is not None:
            task = asyncio.create_task(forward(frame, downstream, lock))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    reading = asyncio.create_task(answers())
    server = await asyncio.start_server(connection, sock=listener)
    async with server:
        await server.serve_forever()
    await reading


async def _terminals(port: int, terminals: int, warm_up_s: float, seconds: float) -> tuple[int, int]:
    """Round trips made in the measured window and in all; each answer checked to be its frame."""
    loop = asyncio.get_running_loop()
    start = loop.time() + warm_up_s
    stop = start + seconds
    counts = [0, 0]

    async def terminal(number: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frames, lock = FrameReader(reader, body_timeout_s=BODY_TIMEOUT_S), asyncio.Lock()
        sent = 0
        try:
            while (now := loop.time()) < stop:
                sent += 1
                body = number.to_bytes(4, "big") + sent.to_bytes(4, "big") + bytes(FRAME_BODY - 8)
                frame = len(body).to_bytes(2, "big") + body
                await send_frame(writer, frame, lock)
                answer = await asyncio.wait_for(frames.read(), HOP_TIMEOUT_S)
                assert answer == frame, f"terminal {number}: frame {sent} came back changed"
                counts[1] += 1
                if now >= start:
                    counts[0] += 1
        finally:
            writer.close()

    await asyncio.gather(*(terminal(number) for number in range(terminals)))
    return counts[0], counts[1]


def measure(terminals: int, *, warm_up_s: float = 2.0, seconds: float = 8.0) -> Floor:
    """One run of ``terminals`` through three forked no-work hops (module docstring)."""
    fork = multiprocessing.get_context("fork")
    listeners = [_listener() for _ in PLACES]
    ports = [listener.getsockname()[1] for listener in listeners]
    mains = (
        partial(_relay, listeners[0], ports[1]),
        partial(_relay, listeners[1], ports[2]),
        partial(_echo, listeners[2]),
    )
    children: list[multiprocessing.process.BaseProcess] = []
    try:
        for make in reversed(mains):  # upstream first: each relay connects at its start
            child = fork.Process(target=lambda make=make: run_loop(make()), daemon=True)
            child.start()
            children.insert(0, child)
            time.sleep(0.3)
        for listener in listeners:
            listener.close()  # the children hold their copies
        pids = {"terminals": os.getpid()} | {
            place: child.pid for place, child in zip(PLACES, children, strict=True) if child.pid is not None
        }
        before = {name: process_cpu_s(pid) for name, pid in pids.items()}
        measured, made = run_loop(_terminals(ports[0], terminals, warm_up_s, seconds))
        after = {name: process_cpu_s(pid) for name, pid in pids.items()}
    finally:
        for process in children:
            process.terminate()
            process.join()
        for listener in listeners:
            listener.close()
    assert made > 0, "no round trip made"
    return Floor(measured / seconds, {name: (after[name] - before[name]) / made * 1e3 for name in after})
