"""A client link for ISO 8583 (UnionPay POS profile): one TCP connection, many requests in flight.

A terminal, an acquirer front end or a switch keeps one :class:`Iso8583Link` to the next hop. Requests are
sent as callers make them and answers are matched by key, whatever their order (:func:`request_key`): the
MTI class (the second MTI digit: ``0200`` and ``0210`` are both class 2) with the retrieval reference
number (37) when the request carries one, else with the STAN (11) and the terminal (41). The matching is
ISO 8583:1987 practice (a response echoes 11, 37 and 41 of its request; 中国银联 POS终端消息域说明).

What a caller gets (a business outcome is a response code in the message; the rest are typed errors):

- the typed response (:class:`~citycard.codec.iso8583.Message`), approved or not;
- :class:`NotSent` (:class:`NotConnected`, :class:`Busy`, :class:`DuplicateKey`): the request never left,
  nothing can have been posted, it may be retried;
- :class:`NoAnswer` (:class:`Timeout`, :class:`ConnectionLost`): the request left and no answer came in
  time, so it **may have been posted**: the caller answers its own peer 91/98 and reverses it;
- :class:`MalformedResponse`: an answer that matched but is not a valid typed message (the 39 it carried,
  when it decoded, is on the error).

An answer that comes after its request timed out is dropped and counted (``stats.late``): the caller has
already decided "no answer", and its reversal settles it. The connection is kept up in the background: on
loss, every request in flight ends in :class:`ConnectionLost`, and the link reconnects with a backoff that
doubles up to ``max_backoff_s``. A request made while the link is down does not wait the backoff or its
timeout out: it asks for an attempt at once (at most one every ``min_backoff_s``) and ends in
:class:`NotConnected` as soon as an attempt fails, so a switch whose issuer is down answers 91 at once, not
after the hop's timeout. When ``keepalive`` is given and nothing was received for
``echo_interval_s``, an echo test (0820, 60.3 = 301) is sent; if it gets no answer the connection is
dropped and made again. Everything is bounded (:class:`LinkLimits`).

A peer can also be connected and **silent**: a front end whose process hangs, or whose host accepts
connections for it, answers nothing, so each request waits its whole timeout. With ``silent_after_s`` (and a
``keepalive``), once requests have waited that long with nothing at all received meanwhile, an echo test is
sent at once; if it is not answered either, within ``probe_interval_s``, the link says so (``silent``,
``state``) and a request ends at once in :class:`Silent` (not sent: a switch answers 91 at once, an
acquirer's store-and-forward queue keeps its entry for later) instead of waiting its timeout. As for any
echo test unanswered, the connection is dropped and made again: the requests waiting end at once in
:class:`ConnectionLost` (no answer: their callers reverse them), not at their timeout. (The echo test keeps a
slow peer, and one that leaves some requests unanswered on purpose, as a switch does with a reversal its
issuer did not answer, from being taken as silent.) Echo tests, every ``probe_interval_s``, find out when the
peer answers again: anything received ends the silence.

An answer comes with its bytes as received (``codec.iso8583.note_received``): its MAC is checked over them
and a switch passes it back with field 64 patched in them, not encoded again; a request whose bytes are
noted (received, patched or signed) is sent as those bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from citycard.codec.iso8583 import (
    Field60,
    Header,
    Iso8583Error,
    Message,
    NetworkManagementRequest,
    Tpdu,
    decode_frame,
    encode_framed,
    note_received,
    parse,
)

from .framing import FrameReader, FramingError, send_frame

__all__ = [
    "Busy",
    "ConnectionLost",
    "DuplicateKey",
    "Iso8583Link",
    "LinkError",
    "LinkLimits",
    "LinkStats",
    "MalformedResponse",
    "NoAnswer",
    "NotConnected",
    "NotSent",
    "Silent",
    "Timeout",
    "echo_keepalive",
    "echo_test",
    "request_key",
    "response_keys",
]

log = logging.getLogger(__name__)

Key = tuple[str, ...]
"""What matches an answer to its request (:func:`request_key`)."""

_LATE_MEMORY: Final = 4096
"""How many timed-out keys are remembered to tell a late answer from a stray one."""


class LinkError(Exception):
    """Base of the link's typed outcomes other than an answer."""


class NotSent(LinkError):
    """The request never left this process: nothing can have been posted."""


class NotConnected(NotSent):
    """No connection within the request's time."""


class Silent(NotSent):
    """The peer is connected but answered neither the requests that waited ``silent_after_s`` nor the echo
    test then: this one was not sent (module docstring)."""


class Busy(NotSent):
    """``max_pending`` requests are already waiting for an answer."""


class DuplicateKey(NotSent):
    """A request with the same key (class, STAN and terminal, or RRN) is already waiting."""


class NoAnswer(LinkError):
    """The request was sent (or may have been) and no answer came: it may have been posted; reverse it."""


class Timeout(NoAnswer):
    """No answer within the request's timeout."""


class ConnectionLost(NoAnswer):
    """The connection ended while the request waited for its answer."""


class MalformedResponse(LinkError):
    """The answer matched the request but is not a valid typed message of the profile."""

    def __init__(self, error: Iso8583Error, response_code: str | None) -> None:
        super().__init__(f"malformed answer: {error}")
        self.error = error
        self.response_code = response_code


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """Every bound of the link (seconds end in ``_s``)."""

    timeout_s: float = 30.0
    """Default time a request waits for its answer (connecting included)."""
    connect_timeout_s: float = 5.0
    min_backoff_s: float = 0.05
    max_backoff_s: float = 5.0
    max_pending: int = 1024
    frame_timeout_s: float = 10.0
    """Once a length prefix is in, the rest of the frame must arrive within this."""
    echo_interval_s: float = 30.0
    """With a ``keepalive``: an echo test after this long without receiving anything."""
    silent_after_s: float = 0.0
    """With a ``keepalive``: once requests have waited this long with nothing received meanwhile, an echo
    test; the peer is silent if that goes unanswered too (0: never; module docstring)."""
    probe_interval_s: float = 2.0
    """How long that echo test waits for its answer; while the peer is silent, an echo test after this long
    without receiving anything."""

    def __post_init__(self) -> None:
        assert 0 < self.min_backoff_s <= self.max_backoff_s
        assert min(self.timeout_s, self.connect_timeout_s, self.frame_timeout_s, self.echo_interval_s) > 0
        assert self.max_pending > 0 and self.silent_after_s >= 0 and self.probe_interval_s > 0


@dataclass(slots=True)
class LinkStats:
    """Counters since start."""

    connects: int = 0
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    late: int = 0
    """Answers that came after their request timed out (dropped)."""
    unmatched: int = 0
    """Answers that matched no request ever sent on the link, or were not responses (dropped)."""
    echoes: int = 0
    connect_failures: int = 0
    """Connection attempts refused or timed out."""
    silences: int = 0
    """Times the peer was found silent (module docstring)."""
    refused_silent: int = 0
    """Requests ended in :class:`Silent`, not sent."""


def _keys(mti: str, fields: Mapping[int, object]) -> list[Key]:
    keys: list[Key] = []
    rrn, stan, terminal = fields.get(37), fields.get(11), fields.get(41)
    if isinstance(rrn, str):
        keys.append((mti[1], "37", rrn))
    if isinstance(stan, str) and isinstance(terminal, str):
        keys.append((mti[1], "11", stan, terminal))
    return keys


def echo_test(stan: int, terminal_id: str, merchant_id: str) -> Message:
    """An echo test (0820, 60.3 = ``301``) a host sends on its own link, as ``terminal_id`` (41) and
    ``merchant_id`` (42)."""
    return NetworkManagementRequest(
        mti="0820",
        stan=stan,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        field60=Field60("00", 0, "301"),
    )


def echo_keepalive(
    terminal_id: str, merchant_id: str, sign: Callable[[Message], Message] | None = None
) -> Callable[[], Message]:
    """A ``keepalive`` for :class:`Iso8583Link`: at each call the next :func:`echo_test` (STAN 1..999999,
    wrapping), through ``sign`` when given (field 64 under the leg's zone MAC key)."""
    stan = 0

    def next_echo() -> Message:
        nonlocal stan
        stan = stan % 999_999 + 1
        echo = echo_test(stan, terminal_id, merchant_id)
        return echo if sign is None else sign(echo)

    return next_echo


def request_key(message: Message) -> Key:
    """The key an answer to ``message`` is matched by: MTI class and RRN (37) when the request has one,
    else MTI class, STAN (11) and terminal (41), which every kind of the profile requires."""
    if message.rrn is not None:  # read from the typed message: the wire forms of 37, 11 and 41 (n6)
        return (message.mti[1], "37", message.rrn)
    assert message.stan is not None and message.terminal_id is not None, "every request kind requires them"
    return (message.mti[1], "11", f"{message.stan:06d}", message.terminal_id)


def response_keys(mti: str, fields: Mapping[int, object]) -> list[Key]:
    """The keys an answer may match, RRN first (an answer carries 37 even when its request did not)."""
    return _keys(mti, fields)


class Iso8583Link:
    """The link (module docstring). ``async with Iso8583Link(host, port, tpdu=Tpdu(6, 1)) as link:``
    then ``await link.request(message)``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tpdu: Tpdu,
        header: Header | None = None,
        limits: LinkLimits | None = None,
        keepalive: Callable[[], Message] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self._tpdu = tpdu
        self._header = header or Header()
        self.limits = limits or LinkLimits()
        self._keepalive = keepalive
        probed = keepalive is not None or not self.limits.silent_after_s
        assert probed, "a silent peer is probed by echo tests"
        self._clock = clock
        self.stats = LinkStats()
        self._pending: dict[Key, asyncio.Future[Message]] = {}
        self._timed_out: OrderedDict[Key, None] = OrderedDict()
        self._writer: asyncio.StreamWriter | None = None
        self._write_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._down: str | None = None
        """Why the last connection attempt failed; None once one succeeds."""
        self._attempt: asyncio.Future[None] | None = None
        """Done when the connection attempt under way (or the next one) has ended, either way."""
        self._kick = asyncio.Event()
        """Set by a request on a down link: the next attempt now, not after the backoff."""
        self._runner: asyncio.Task[None] | None = None
        self._last_received = 0.0
        self._frames_received = 0
        self._busy_since = 0.0
        """When the requests waiting now began to wait: the time the first was sent to a link with none."""
        self._silent: str | None = None
        """Why the peer is taken as silent; None once anything is received."""
        self._probe: asyncio.Task[None] | None = None
        """The echo test that decides whether the peer is silent, while it runs."""

    # --- life -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        assert self._runner is None, "link started twice"
        self._runner = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop reconnecting, close the connection; requests still waiting end in :class:`ConnectionLost`."""
        for task in (self._runner, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._drop_connection()
        self._attempted("the link is closed")  # a request waiting for a connection gets none

    async def __aenter__(self) -> Iso8583Link:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def state(self) -> str:
        """``up``, ``silent (<why>)`` (connected or connecting again), ``connecting``, or ``down (<why the
        last attempt failed>)``: for a status line."""
        if self._down is not None and not self._connected.is_set():
            return f"down ({self._down})"
        if self._silent is not None:  # connected, or connecting again after an echo test unanswered
            return f"silent ({self._silent})"
        return "up" if self._connected.is_set() else "connecting"

    @property
    def silent(self) -> str | None:
        """Why the peer is taken as silent (module docstring), while nothing was received since; else None."""
        return self._silent

    @property
    def down(self) -> str | None:
        """Why the last connection attempt failed, while no connection has been made since; else None."""
        return self._down  # cleared by the attempt that connects

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until the link is connected: :class:`NotConnected` as soon as a connection attempt fails
        while waiting, or after ``timeout_s``. On a link that is down an attempt is asked for at once."""
        if self._connected.is_set():  # the common case: no timer to arm and cancel
            return
        try:
            async with asyncio.timeout(timeout_s):
                if self._down is not None:
                    self._kick.set()
                while not self._connected.is_set():
                    await asyncio.shield(self._next_attempt())
                    if self._down is not None:
                        raise NotConnected(f"cannot connect to {self.host}:{self.port}: {self._down}")
        except TimeoutError:
            raise NotConnected(f"not connected to {self.host}:{self.port} within {timeout_s} s") from None

    def _next_attempt(self) -> asyncio.Future[None]:
        if self._attempt is None or self._attempt.done():
            self._attempt = asyncio.get_running_loop().create_future()
        return self._attempt

    def _attempted(self, failure: str | None) -> None:
        """A connection attempt ended: made (``failure`` None, the link already marked connected) or not."""
        self._down = failure
        attempt, self._attempt = self._attempt, None
        if attempt is not None and not attempt.done():
            attempt.set_result(None)

    # --- requests -------------------------------------------------------------------------------------
    async def request(self, message: Message, *, timeout_s: float | None = None) -> Message:
        """Send ``message`` and wait for its answer (module docstring for the outcomes)."""
        return await self._exchange(message, timeout_s, probe=False)

    async def _exchange(self, message: Message, timeout_s: float | None, *, probe: bool) -> Message:
        """:meth:`request`; a ``probe`` (an echo test) is sent to a silent peer too."""
        timeout = self.limits.timeout_s if timeout_s is None else timeout_s
        deadline = self._clock() + timeout
        key = request_key(message)
        frame = encode_framed(message, self._tpdu, self._header)
        if self._silent is not None and not probe:  # connected or between two connections: not waited for
            self.stats.refused_silent += 1
            raise Silent(f"{self.host}:{self.port} is silent ({self._silent}): {message.mti} not sent")
        await self.wait_connected(timeout)
        if key in self._pending:
            raise DuplicateKey(f"a request {message.mti} with the same key is waiting for its answer")
        if len(self._pending) >= self.limits.max_pending:
            raise Busy(f"{len(self._pending)} requests already wait for an answer")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._busy_since = self._clock()
        self._pending[key] = future
        self._timed_out.pop(key, None)
        try:
            await self._write(frame)
            self.stats.sent += 1
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                return await future
        except TimeoutError:
            self.stats.timeouts += 1
            self._timed_out[key] = None
            if len(self._timed_out) > _LATE_MEMORY:
                self._timed_out.popitem(last=False)
            raise Timeout(f"no answer to {message.mti} within {timeout} s") from None
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a write failure may leave a ConnectionLost nobody awaited

    def _check_waiting(self) -> None:
        """An echo test once requests have waited ``silent_after_s`` with nothing received."""
        limit = self.limits.silent_after_s
        if not limit or not self._pending or self._silent is not None or self._probe is not None:
            return
        since = max(self._last_received, self._busy_since)
        if self._clock() - since >= limit:
            self._probe = asyncio.create_task(self._probe_silence(since, len(self._pending)))

    async def _probe_silence(self, since: float, waiting: int) -> None:
        """An echo test: the peer is silent if it goes unanswered too, nothing received since ``since``
        (when ``waiting`` requests were found waiting without an answer)."""
        try:
            await self.echo(timeout_s=self.limits.probe_interval_s)
        except Timeout:
            if self._last_received <= since and self._silent is None:  # nothing received meanwhile
                quiet = self._clock() - since
                unanswered = f"{waiting} request(s) and an echo test unanswered"
                self._silent = f"nothing received for {quiet:.1f} s: {unanswered}"
                self.stats.silences += 1
                log.warning(
                    "%s:%s is silent (%s): requests not sent until it answers",
                    self.host,
                    self.port,
                    self._silent,
                )
                self._drop_connection()  # as for any echo test unanswered: the requests waiting end now
        except LinkError:  # not sent, or the connection ended: looked at again on the echo loop's next turn
            pass
        finally:
            self._probe = None

    async def echo(self, *, timeout_s: float | None = None) -> Message:
        """One echo test now (the ``keepalive`` message), sent to a silent peer too."""
        assert self._keepalive is not None, "no keepalive message given"
        answer = await self._exchange(self._keepalive(), timeout_s, probe=True)
        self.stats.echoes += 1
        return answer

    async def _write(self, frame: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise ConnectionLost("the connection ended before the request was written")
        try:
            await send_frame(writer, frame, self._write_lock)
        except ConnectionError:
            self._drop_connection()
            raise ConnectionLost("the connection ended while the request was written") from None

    # --- the connection -------------------------------------------------------------------------------
    async def _run(self) -> None:
        """Connect, read answers until the connection ends, wait, connect again. The wait starts at
        ``min_backoff_s`` and doubles up to ``max_backoff_s`` while connections fail or end without a frame
        received (a peer that accepts and closes at once must not be hammered)."""
        least = self.limits.min_backoff_s
        backoff = least
        while True:
            self._kick.clear()
            try:
                async with asyncio.timeout(self.limits.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError) as exc:
                self.stats.connect_failures += 1
                self._attempted(str(exc) or f"no connection within {self.limits.connect_timeout_s:g} s")
                log.info(
                    "cannot connect to %s:%s (%s), retrying in %.2f s", self.host, self.port, exc, backoff
                )
            else:
                if await self._connection(reader, writer):
                    backoff = least
            await asyncio.sleep(least)  # never more often than this, asked for or not
            if backoff > least and not self._kick.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff - least):
                        await self._kick.wait()
            backoff = min(backoff * 2, self.limits.max_backoff_s)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one connection until it ends; whether any frame was received on it."""
        self.stats.connects += 1
        self._writer = writer
        self._last_received = self._clock()
        self._connected.set()
        self._attempted(None)
        self._frames_received = 0
        echo = asyncio.create_task(self._echo_loop()) if self._keepalive is not None else None
        try:
            await self._read_loop(reader)
        except (FramingError, ConnectionError) as exc:
            log.info("connection to %s:%s lost: %s", self.host, self.port, exc)
        except Exception:  # a bug: logged, and the link goes on with a new connection rather than die
            log.exception("link to %s:%s failed", self.host, self.port)
        finally:
            if echo is not None:
                echo.cancel()
            self._drop_connection()
        return self._frames_received > 0

    def _drop_connection(self) -> None:
        """Forget the connection; each request waiting for an answer on it ends in :class:`ConnectionLost`."""
        self._connected.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLost("the connection ended before the answer came"))

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        frames = FrameReader(reader, body_timeout_s=self.limits.frame_timeout_s)
        while True:
            data = await frames.read()  # several answers in one read: handed out without waiting
            if data is None:
                return
            self._last_received = self._clock()
            self._frames_received += 1
            if self._silent is not None:
                log.warning("%s:%s answers again (it was silent: %s)", self.host, self.port, self._silent)
                self._silent = None
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        try:
            frame, raw = decode_frame(data)
        except Iso8583Error as exc:  # match it by what decoded, if anything
            self._settle(exc.mti or "", exc.echo, None, exc, None)
            return
        try:
            message = parse(raw)
        except Iso8583Error as exc:
            code = raw.fields.get(39)
            self._settle(raw.mti, raw.fields, None, exc, code if isinstance(code, str) else None)
            return
        note_received(message, frame.message)  # its MAC checked, and passed back, as these bytes
        self._settle(raw.mti, raw.fields, message, None, None)

    def _settle(
        self,
        mti: str,
        fields: Mapping[int, object],
        message: Message | None,
        error: Iso8583Error | None,
        code: str | None,
    ) -> None:
        keys = response_keys(mti, fields) if len(mti) == 4 and mti[2] in "13579" else []
        for key in keys:
            future = self._pending.pop(key, None)
            if future is None or future.done():
                continue
            if message is not None:
                self.stats.answered += 1
                future.set_result(message)
            else:
                assert error is not None
                future.set_exception(MalformedResponse(error, code))
            return
        if any(key in self._timed_out for key in keys):
            self.stats.late += 1
            log.info("late answer %s dropped (its request timed out)", mti)
        else:
            self.stats.unmatched += 1
            log.info("answer %s matches no request, dropped", mti or "(undecodable)")

    async def _echo_loop(self) -> None:
        limits = self.limits
        tick = limits.probe_interval_s  # a peer found silent is probed that soon; requests waiting looked at
        if limits.silent_after_s:  # twice within silent_after_s
            tick = min(tick, limits.silent_after_s / 2)
        while True:
            self._check_waiting()
            interval = limits.echo_interval_s if self._silent is None else limits.probe_interval_s
            quiet = self._clock() - self._last_received
            if quiet < interval:
                await asyncio.sleep(min(interval - quiet, tick))
                continue
            try:
                await self.echo(timeout_s=min(interval, limits.timeout_s))
            except LinkError as exc:
                log.info("echo test to %s:%s failed (%s): reconnecting", self.host, self.port, exc)
                self._drop_connection()
                return
