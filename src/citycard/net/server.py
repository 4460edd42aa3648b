"""An asyncio TCP server for ISO 8583 (UnionPay POS profile): frames in, an async handler, frames out.

Per connection, frames are read in order and each decoded request is handed to the handler in its own
task, so many requests are in flight at once and each answer is written as soon as it is ready (answers
need not follow the order of the requests: the peer matches them by STAN and terminal, or RRN; see
:mod:`.link`). Everything is bounded (:class:`ServerLimits`): connections, requests in flight per
connection (reading pauses when the bound is reached, so TCP pushes back on the peer), idle time, the time a
frame body may take, the time a write may take, and the drain on stop.

Faults (issue 8; the h11 rule: the peer's malformed input is one typed error, never a crash):

- a stream that cannot be cut into frames (:class:`~.framing.FramingError`): the connection is closed;
- a frame whose message is malformed (:class:`~citycard.codec.iso8583.Iso8583Error`) but whose MTI, STAN
  (11), terminal (41) and merchant (42) decoded: answered with 39 = ``30`` by
  :func:`~citycard.codec.iso8583.format_error_response`; the handler is not called;
- a malformed message that cannot be matched (no STAN, terminal or merchant): the connection is closed;
- a request whose MAC (field 64) does not verify (the optional ``mac_check`` hook, under the terminal's
  MAK in the HSM): answered with 39 = ``A0``; the handler is not called;
- a handler that raises (a bug): logged, answered with 39 = ``96``; the server keeps serving;
- a response message (a peer that answers the server): dropped and counted.

Requests in flight when a connection ends still run to their end (their answer is dropped if it cannot be
written), so a handler is never cut in the middle of posting. :meth:`Iso8583Server.stop` stops accepting
connections and starting requests (one that arrives meanwhile is answered ``91`` without calling the
handler), waits for the requests in flight (at most ``drain_timeout_s``), then closes every connection.
Only MTI, STAN and terminal reach the log, never a PAN or a field value.

Each request is handed on with its bytes as received (``codec.iso8583.note_received``): its ``to_bytes``
gives them, so a handler that checks its MAC or forwards it with only fixed-length binary fields changed
(the switch: 52 and 64) patches those bytes rather than encoding the decoded message again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from citycard.codec.iso8583 import (
    KINDS,
    Frame,
    Header,
    Iso8583Error,
    Message,
    RawMessage,
    ResponseCode,
    Tpdu,
    decode_frame,
    encode_frame,
    encode_framed,
    encode_message,
    format_error_response,
    note_received,
    parse,
    response_mti,
)

from .framing import FrameReader, FramingError, send_frame

__all__ = ["Handler", "Iso8583Server", "MacCheck", "ServerLimits", "ServerStats", "refusal"]

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[Message | None]]
"""The service: a request in, its response out (or None: nothing is sent back)."""

MacCheck = Callable[[Message, bytes], Awaitable[bool]]
"""Whether a request may pass on: the typed request and its encoded ISO message (MTI to field 64, as
:func:`~citycard.codec.iso8583.mac_matches` takes it). False is answered with ``A0``. The hook decides
which requests must carry a MAC (a sign-on comes before the terminal has a MAK)."""

_HEAD: Final = 2 + 5 + 6
"""Length prefix, TPDU and header: where the ISO message starts in a frame."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every bound of the server (seconds end in ``_s``)."""

    max_connections: int = 256
    max_in_flight: int = 1024
    """Requests being handled at once on one connection; reading waits while the bound is reached."""
    idle_timeout_s: float = 300.0
    """A connection that sends no frame for this long is closed."""
    frame_timeout_s: float = 10.0
    """Once a length prefix is in, the rest of the frame must arrive within this."""
    write_timeout_s: float = 10.0
    """A peer that does not take an answer within this is cut off."""
    drain_timeout_s: float = 5.0
    """On stop, how long requests in flight may take to finish."""

    def __post_init__(self) -> None:
        assert self.max_connections > 0 and self.max_in_flight > 0
        assert min(self.idle_timeout_s, self.frame_timeout_s, self.write_timeout_s) > 0
        assert self.drain_timeout_s >= 0


@dataclass(slots=True)
class ServerStats:
    """Counters since start (for tests, logs and the benchmark)."""

    connections: int = 0
    refused_connections: int = 0
    requests: int = 0
    answered: int = 0
    format_errors: int = 0
    """Malformed requests answered with 30."""
    mac_errors: int = 0
    """Requests answered with A0."""
    handler_errors: int = 0
    """Handler exceptions answered with 96."""
    closed_for_garbage: int = 0
    """Connections closed because a frame could not be cut or matched."""
    dropped: int = 0
    """Responses received (not requests), and answers that could not be written."""

    def summary(self, open_connections: int) -> str:
        """One line for an operator: ``2 connection(s) open (5 in all), 1 234 request(s), 1 234 answered``,
        then the refusals that happened (``3 A0`` …)."""
        parts = [
            f"{open_connections} connection(s) open ({self.connections:,} in all)",
            f"{self.requests:,} request(s)",
            f"{self.answered:,} answered",
        ]
        for count, what in (
            (self.mac_errors, "A0 (MAC)"),
            (self.format_errors, "30 (format)"),
            (self.handler_errors, "96 (handler failed)"),
            (self.closed_for_garbage, "closed for garbage"),
            (self.refused_connections, "connection(s) refused"),
        ):
            if count:
                parts.append(f"{count:,} {what}")
        return ", ".join(parts)


_HOST_KEYS = frozenset({32, 37})
"""Fields of a host-to-host request that its refusal echoes (the acquiring institution and the RRN)."""


def refusal(request: RawMessage, code: ResponseCode) -> RawMessage:
    """The answer to ``request`` with only response code ``code``: the response MTI, 39, and the request's
    fields that the response kind requires (11, 41, 42, and 3, 48 or 60 where the kind needs them), so the
    answer decodes as a typed response at the terminal; and 32 and 37 when the request has them (a host
    leg), so that the sender, which matches answers by RRN there, gets it."""
    mti = response_mti(request.mti)
    kind = next(kind for kind in KINDS if mti in kind.MTIS)
    allowed = kind.REQUIRED | (kind.OPTIONAL & _HOST_KEYS)
    fields: dict[int, str | bytes] = {n: v for n, v in request.fields.items() if n in allowed}
    fields[39] = str(code)
    return RawMessage(mti, fields)


class _Connection:
    """One peer: its writer, the lock that keeps frames whole, and its tasks in flight."""

    def __init__(self, writer: asyncio.StreamWriter, max_in_flight: int) -> None:
        self.writer = writer
        self.write_lock = asyncio.Lock()
        self.slots = asyncio.Semaphore(max_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()


class Iso8583Server:
    """The server (module docstring). ``async with Iso8583Server(handler) as server:`` listens on
    127.0.0.1 on a free port (``server.port``) and stops on exit."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        mac_check: MacCheck | None = None,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self.limits = limits or ServerLimits()
        self._mac_check = mac_check
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._serving: set[asyncio.Task[object]] = set()
        self._stopping = False

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose when 0 was asked)."""
        assert self._server is not None, "server not started"
        port = self._server.sockets[0].getsockname()[1]
        assert isinstance(port, int)
        return port

    async def start(self) -> None:
        assert self._server is None, "server started twice"
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (at most ``drain_timeout_s``), close everything."""
        if self._server is None or self._stopping:
            return
        self._stopping = True
        self._server.close()
        tasks = [task for connection in self._connections for task in connection.tasks]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.limits.drain_timeout_s)
            for task in late:
                task.cancel()
        for connection in list(self._connections):
            connection.writer.close()
        if self._serving:  # each connection's task ends once its writer is closed
            await asyncio.wait(list(self._serving), timeout=self.limits.drain_timeout_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.limits.drain_timeout_s):
                await self._server.wait_closed()

    async def __aenter__(self) -> Iso8583Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- one connection -------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping or len(self._connections) >= self.limits.max_connections:
            self.stats.refused_connections += 1
            writer.close()
            return
        self.stats.connections += 1
        connection = _Connection(writer, self.limits.max_in_flight)
        self._connections.add(connection)
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        try:
            await self._read_loop(reader, connection)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            if connection.tasks:
                await asyncio.wait(list(connection.tasks), timeout=self.limits.drain_timeout_s)
            self._connections.discard(connection)
            self._serving.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(self.limits.write_timeout_s):
                    await writer.wait_closed()

    async def _read_loop(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        limits = self.limits
        frames = FrameReader(reader, body_timeout_s=limits.frame_timeout_s)
        while not self._stopping:
            try:
                data = frames.buffered()  # several requests in one read: no wait, no timer
                if data is None:
                    async with asyncio.timeout(limits.idle_timeout_s):
                        data = await frames.read()
            except FramingError as exc:
                self.stats.closed_for_garbage += 1
                log.info("closing a connection: %s", exc)
                return
            if data is None:
                return
            answer = self._decode(data)
            if answer is None:
                self.stats.closed_for_garbage += 1
                return
            if isinstance(answer, bytes):  # a format-error answer, ready to send
                await self._send(connection, answer)
                continue
            if isinstance(answer, _Drop):
                continue
            frame, raw, message = answer
            if self._stopping:  # not started: answered 91, so the terminal knows nothing was posted
                refused = refusal(raw, ResponseCode.ISSUER_UNAVAILABLE)
                await self._send(connection, _frame_of(frame.tpdu.reply(), frame.header, refused))
                return
            await connection.slots.acquire()
            task = asyncio.create_task(self._answer(connection, frame, raw, message))
            connection.tasks.add(task)
            task.add_done_callback(lambda done: _finished(connection, done))

    def _decode(self, data: bytes) -> tuple[Frame, RawMessage, Message] | bytes | _Drop | None:
        """The request of a frame; or a format-error answer (bytes); or :data:`_DROP`; or None: close."""
        try:
            frame, raw = decode_frame(data)
            message = parse(raw)
        except Iso8583Error as exc:
            answer = format_error_response(exc)
            log.info("malformed message (%s), %s", exc, "answered 30" if answer else "closing")
            if answer is None:
                return None
            self.stats.format_errors += 1
            mti, fields = answer
            return _encode_answer(data, RawMessage(mti, fields))
        if raw.mti[2] in "13579":  # a response (or a repeat of one), not a request
            self.stats.dropped += 1
            return _DROP
        self.stats.requests += 1
        note_received(message, frame.message)  # its MAC checked, and forwarded, as these bytes
        return frame, raw, message

    async def _answer(self, connection: _Connection, frame: Frame, raw: RawMessage, message: Message) -> None:
        reply = frame.tpdu.reply()
        try:
            if self._mac_check is not None and not await self._mac_check(message, frame.message):
                self.stats.mac_errors += 1
                log.info(
                    "MAC does not verify: %s stan %s terminal %s",
                    message.mti,
                    message.stan,
                    message.terminal_id,
                )
                await self._send(
                    connection, _frame_of(reply, frame.header, refusal(raw, ResponseCode.MAC_ERROR))
                )
                return
            response = await self._handler(message)
            if response is None:
                return
            data = encode_framed(response, reply, frame.header)
        except Exception:  # a bug in the handler or the hook: logged, answered 96, the server goes on
            self.stats.handler_errors += 1
            log.exception(
                "handler failed on %s stan %s terminal %s", message.mti, message.stan, message.terminal_id
            )
            data = _frame_of(reply, frame.header, refusal(raw, ResponseCode.SYSTEM_MALFUNCTION))
        await self._send(connection, data)

    async def _send(self, connection: _Connection, data: bytes) -> None:
        try:
            await send_frame(
                connection.writer, data, connection.write_lock, timeout_s=self.limits.write_timeout_s
            )
            self.stats.answered += 1
        except (ConnectionError, TimeoutError):
            self.stats.dropped += 1
            connection.writer.close()


class _Drop:
    """A frame that is dropped (counted) without an answer."""


_DROP: Final = _Drop()


def _finished(connection: _Connection, task: asyncio.Task[None]) -> None:
    connection.tasks.discard(task)
    connection.slots.release()
    if not task.cancelled() and task.exception() is not None:  # not reached: _answer catches everything
        log.error("answer task failed", exc_info=task.exception())


def _frame_of(tpdu: Tpdu, header: Header, message: RawMessage) -> bytes:
    return encode_frame(Frame(tpdu, header, encode_message(message)))


def _encode_answer(request: bytes, message: RawMessage) -> bytes:
    """The frame of a format-error answer: TPDU and header of the request (they decoded, since the MTI
    did), the TPDU addresses swapped."""
    tpdu = Tpdu.from_bytes(request[2:7]).reply()
    header = Header.from_bytes(request[7:_HEAD])
    return _frame_of(tpdu, header, message)
