"""A fault injector between the terminal and the acquirer: a TCP proxy that passes ISO 8583 frames both
ways, and lets a test drop an answer (the response lost on the way back) or change it (an ARPC damaged on
the way, signed again under the terminal's MAK from the platform HSM so that only the card can tell)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from citycard.codec.iso8583 import IccData, Message, decode_framed, encode_framed, with_mac
from citycard.hsm.api import Hsm
from citycard.net.framing import read_frame, write_frame

Rewrite = Callable[[bytes], bytes | None]


@dataclass
class Proxy:
    target_port: int
    answers: list[Rewrite] = field(default_factory=list)
    """One rewrite per coming answer of an MTI in ``mtis`` (oldest first); None drops the answer."""
    mtis: frozenset[bytes] = frozenset({b"\x02\x10"})
    requests: list[str] = field(default_factory=list)
    """The MTI of every request the terminal sent through, in order."""
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            try:
                with contextlib.suppress(Exception):
                    while (frame := await read_frame(src, body_timeout_s=10)) is not None:
                        if not down:
                            self.requests.append(frame[13:15].hex())
                        if down and self.answers and frame[7 + 6 : 7 + 6 + 2] in self.mtis:
                            changed = self.answers.pop(0)(frame)
                            if changed is None:
                                continue
                            frame = changed
                        await write_frame(dst, frame)
            finally:  # also when stop() cancels the pump
                dst.close()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, False)),
            asyncio.create_task(pump(up_reader, writer, True)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)


def drop(_: bytes) -> None:
    return None


def damaged_arpc(hsm: Hsm, mak_label: str) -> Rewrite:
    """The answer with the first byte of its ARPC (tag 91) flipped, MAC'd again under the terminal's MAK."""

    def rewrite(frame: bytes) -> bytes:
        parsed, message = decode_framed(frame)
        assert message.icc is not None
        raw = bytearray(message.icc.raw)
        raw[raw.index(0x91) + 2] ^= 0xFF
        changed: Message = replace(message, icc=IccData(bytes(raw)), mac=bytes(8))
        mak = hsm.get(mak_label)
        signed = with_mac(changed.to_bytes(), lambda block: hsm.pos_mac(mak, block))
        return encode_framed(replace(changed, mac=signed[-8:]), parsed.tpdu, parsed.header)

    return rewrite
