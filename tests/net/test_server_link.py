"""The server and the link over real loopback sockets (issue 8): many requests in flight matched out of
order, timeouts and late answers, garbage, format errors, a wrong MAC, a failing handler, limits,
restarts and echo. Every server listens on 127.0.0.1 and stops at the end of its ``async with``; every
scenario has a deadline (:func:`tests.net.support.run`)."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from citycard.codec.iso8583 import (
    Frame,
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
    mac_matches,
    parse,
    with_mac,
)
from citycard.crypto.pos_mac import pos_mac
from citycard.net.framing import read_frame, write_frame
from citycard.net.link import (
    Busy,
    ConnectionLost,
    DuplicateKey,
    Iso8583Link,
    LinkLimits,
    MalformedResponse,
    NotConnected,
    Silent,
    Timeout,
)
from citycard.net.server import Iso8583Server, ServerLimits

from tests.net.support import answer, echo_handler, echo_test, purchase, run

TPDU = Tpdu(6, 1)
FAST = LinkLimits(timeout_s=5, min_backoff_s=0.01, max_backoff_s=0.1)


class Counting:
    """A handler that answers every request and counts the calls (to prove it was not called)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: Message) -> Message:
        self.calls += 1
        return answer(request)


async def _raw_exchange(port: int, data: bytes) -> bytes | None:
    """Send ``data`` on a fresh connection, half-close, and return the first frame back (None: the server
    closed the connection, with a FIN or, when it left our bytes unread, a reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        return await read_frame(reader, body_timeout_s=5)
    except ConnectionResetError:
        return None
    finally:
        writer.close()


def test_a_thousand_requests_in_flight_on_one_link_get_their_own_answers_in_reverse_order() -> None:
    count = 1000
    waiting: list[tuple[Message, asyncio.Future[Message]]] = []
    all_in = asyncio.Event()

    async def reverse_handler(request: Message) -> Message:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        waiting.append((request, future))
        if len(waiting) == count:
            all_in.set()
        return await future

    async def release_in_reverse() -> list[int]:
        await all_in.wait()
        order = []
        for request, future in reversed(waiting):
            assert request.stan is not None
            order.append(request.stan)
            future.set_result(answer(request))
            await asyncio.sleep(0)
        return order

    async def scenario() -> None:
        async with (
            Iso8583Server(reverse_handler) as server,
            Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as link,
        ):
            releaser = asyncio.create_task(release_in_reverse())
            requests = [purchase(stan, amount_fen=stan * 7) for stan in range(1, count + 1)]
            answers = await asyncio.gather(*(link.request(r) for r in requests))
            order = await releaser
        assert [(a.stan, a.amount_fen) for a in answers] == [(r.stan, r.amount_fen) for r in requests]
        assert order != sorted(order), "the server answered in another order than it was asked"
        assert link.stats.answered == count and link.stats.unmatched == 0

    run(scenario())


def test_a_request_that_times_out_raises_timeout_and_its_late_answer_is_dropped_and_counted() -> None:
    released = asyncio.Event()

    async def slow_for_stan_1(request: Message) -> Message:
        if request.stan == 1:
            await released.wait()
        return answer(request)

    async def scenario() -> None:
        async with (
            Iso8583Server(slow_for_stan_1) as server,
            Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as link,
        ):
            with pytest.raises(Timeout):
                await link.request(purchase(1), timeout_s=0.1)
            released.set()
            while link.stats.late == 0:
                await asyncio.sleep(0.01)
            assert (await link.request(purchase(2))).stan == 2
        assert link.stats.timeouts == 1 and link.stats.late == 1 and link.stats.unmatched == 0

    run(scenario())


def test_random_bytes_close_the_connection_post_nothing_and_the_server_serves_the_next_client() -> None:
    rng = random.Random(8583)
    handler = Counting()

    async def scenario() -> None:
        limits = ServerLimits(frame_timeout_s=0.5)
        async with Iso8583Server(handler, limits=limits) as server:
            for _ in range(30):
                blob = rng.randbytes(rng.randrange(1, 400))
                back = await _raw_exchange(server.port, blob)
                if back is not None:  # a blob that framed and matched: only a format error may come back
                    _, raw = decode_frame(back)
                    assert raw.fields[39] == "30"
            async with Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as link:
                assert (await link.request(purchase(7))).response_code == ResponseCode.APPROVED
            assert handler.calls == 1
            assert server.stats.closed_for_garbage >= 25

    run(scenario())


def test_a_malformed_but_matchable_request_is_answered_30_and_the_connection_goes_on() -> None:
    handler = Counting()
    good = encode_framed(purchase(5), TPDU)
    assert good.count(b"156") == 1
    bad = good.replace(b"156", b"1#6")  # field 49 outside the an alphabet, after 11, 41 and 42

    async def scenario() -> None:
        async with Iso8583Server(handler) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                await write_frame(writer, bad)
                back = await read_frame(reader, body_timeout_s=5)
                assert back is not None
                frame, raw = decode_frame(back)
                assert frame.tpdu == TPDU.reply()
                assert raw.mti == "0210"
                assert dict(raw.fields) == {11: "000005", 39: "30", 41: "10000019", 42: "850100082410002"}
                assert handler.calls == 0
                await write_frame(writer, good)  # the same connection still serves
                back = await read_frame(reader, body_timeout_s=5)
                assert back is not None and decode_frame(back)[1].fields[39] == "00"
            finally:
                writer.close()
            assert server.stats.format_errors == 1 and handler.calls == 1

    run(scenario())


def test_the_link_reports_a_format_error_answer_as_a_malformed_response_with_its_code() -> None:
    async def answers_30(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A host that answers 30 as format_error_response does (11, 41, 42, 39: no field 3)."""
        data = await read_frame(reader, body_timeout_s=5)
        assert data is not None
        frame, raw = decode_frame(data)
        fields = {n: raw.fields[n] for n in (11, 41, 42)} | {39: "30"}
        reply = Frame(frame.tpdu.reply(), frame.header, encode_message(RawMessage("0210", fields)))
        await write_frame(writer, encode_frame(reply))
        await reader.read()  # until the link closes its side
        writer.close()

    async def scenario() -> None:
        plain = await asyncio.start_server(answers_30, "127.0.0.1", 0)
        try:
            port = plain.sockets[0].getsockname()[1]
            async with Iso8583Link("127.0.0.1", port, tpdu=TPDU, limits=FAST) as link:
                with pytest.raises(MalformedResponse) as info:
                    await link.request(purchase(9))
            assert info.value.response_code == "30" and info.value.error.field == "3"
        finally:
            plain.close()

    run(scenario())


def test_a_request_with_a_wrong_mak_is_answered_a0_and_the_handler_is_not_called() -> None:
    mak = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    wrong = bytes.fromhex("0123456789ABCDEFFEDCBA9876543232")  # differs beyond the parity bits
    handler = Counting()

    async def check(request: Message, message: bytes) -> bool:
        return request.mac is not None and mac_matches(message, lambda block: pos_mac(mak, block))

    def signed(stan: int, key: bytes) -> bytes:
        message = with_mac(purchase(stan, mac=True).to_bytes(), lambda block: pos_mac(key, block))
        frame = encode_framed(purchase(stan, mac=True), TPDU)
        return frame[: len(frame) - len(message)] + message

    async def scenario() -> None:
        async with Iso8583Server(handler, mac_check=check) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                await write_frame(writer, signed(1, wrong))
                back = await read_frame(reader, body_timeout_s=5)
                assert back is not None
                raw = decode_frame(back)[1]
                assert raw.mti == "0210" and raw.fields[39] == "A0" and raw.fields[11] == "000001"
                assert handler.calls == 0
                await write_frame(writer, signed(2, mak))
                back = await read_frame(reader, body_timeout_s=5)
                assert back is not None and decode_frame(back)[1].fields[39] == "00"
            finally:
                writer.close()
            assert handler.calls == 1 and server.stats.mac_errors == 1

    run(scenario())


def test_a_handler_that_raises_is_answered_96_and_the_server_keeps_serving() -> None:
    async def fails_on_stan_1(request: Message) -> Message:
        if request.stan == 1:
            raise RuntimeError("a bug in the service")
        return answer(request)

    async def scenario() -> None:
        async with (
            Iso8583Server(fails_on_stan_1) as server,
            Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as link,
        ):
            first = await link.request(purchase(1))
            second = await link.request(purchase(2))
        assert first.response_code == ResponseCode.SYSTEM_MALFUNCTION and first.stan == 1
        assert second.response_code == ResponseCode.APPROVED
        assert server.stats.handler_errors == 1

    run(scenario())


def test_the_link_reconnects_after_the_server_restarts_on_the_same_port() -> None:
    async def scenario() -> None:
        first = Iso8583Server(echo_handler)
        await first.start()
        port = first.port
        async with Iso8583Link("127.0.0.1", port, tpdu=TPDU, limits=FAST) as link:
            assert (await link.request(purchase(1))).approved
            await first.stop()
            while link.connected:
                await asyncio.sleep(0.01)
            with pytest.raises(NotConnected):
                await link.request(purchase(2), timeout_s=0.2)
            async with Iso8583Server(echo_handler, port=port):
                assert (await link.request(purchase(3))).approved
        assert link.stats.connects == 2

    run(scenario())


async def _refused_port() -> int:
    """A loopback port nothing listens on (a server's, stopped)."""
    server = Iso8583Server(echo_handler)
    await server.start()
    port = server.port
    await server.stop()
    return port


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.005)


def test_requests_on_a_link_whose_peer_refuses_end_not_connected_at_once_sharing_one_attempt() -> None:
    """A link that is down (its last connection attempt failed) does not keep a request for the request's
    timeout: the request asks for an attempt at once and ends when it fails. Twenty requests at once share
    that attempt."""

    async def scenario() -> None:
        port = await _refused_port()
        limits = LinkLimits(timeout_s=300, min_backoff_s=0.01, max_backoff_s=300)
        async with Iso8583Link("127.0.0.1", port, tpdu=TPDU, limits=limits) as link:
            await _until(lambda: link.stats.connect_failures >= 6)  # the next attempt >= 0.64 s away
            assert link.down is not None and not link.connected
            failures = link.stats.connect_failures
            async with asyncio.timeout(30):  # far below the requests' 300 s
                outcomes = await asyncio.gather(
                    *(link.request(purchase(stan)) for stan in range(1, 21)), return_exceptions=True
                )
            assert all(isinstance(outcome, NotConnected) for outcome in outcomes), outcomes
            assert "cannot connect to 127.0.0.1" in str(outcomes[0])
            assert link.stats.connect_failures - failures in (1, 2)  # theirs, and perhaps the backoff's own
            assert link.stats.sent == 0

    run(scenario())


def test_a_down_link_whose_peer_is_back_connects_for_the_next_request_without_waiting_its_backoff() -> None:
    async def scenario() -> None:
        port = await _refused_port()
        limits = LinkLimits(timeout_s=300, min_backoff_s=0.01, max_backoff_s=300)
        async with Iso8583Link("127.0.0.1", port, tpdu=TPDU, limits=limits) as link:
            await _until(lambda: link.stats.connect_failures >= 9)  # the next attempt 2.56 s away
            async with Iso8583Server(echo_handler, port=port):
                async with asyncio.timeout(1.5):  # within its backoff, well before the next attempt
                    assert (await link.request(purchase(1))).approved
            assert link.stats.connects == 1 and link.down is None

    run(scenario())


def test_a_request_before_the_first_attempt_waits_for_it_and_a_closed_link_releases_its_waiters() -> None:
    async def scenario() -> None:
        async with Iso8583Server(echo_handler) as server:
            link = Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST)
            await link.start()  # not connected yet, not down: the request waits for the attempt under way
            assert (await link.request(purchase(1))).approved
            await link.close()
        never_started = Iso8583Link("127.0.0.1", await _refused_port(), tpdu=TPDU, limits=FAST)
        waiting = asyncio.create_task(never_started.request(purchase(2), timeout_s=300))
        await asyncio.sleep(0.05)
        await never_started.close()
        with pytest.raises(NotConnected, match="closed"):
            await asyncio.wait_for(waiting, 10)

    run(scenario())


def test_requests_waiting_when_the_connection_drops_end_in_connection_lost() -> None:
    hold = asyncio.Event()

    async def never_answers(request: Message) -> Message:
        await hold.wait()
        return answer(request)

    async def scenario() -> None:
        server = Iso8583Server(never_answers, limits=ServerLimits(drain_timeout_s=0.1))
        await server.start()
        async with Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as link:
            waiting = asyncio.create_task(link.request(purchase(1)))
            while server.stats.requests == 0:
                await asyncio.sleep(0.01)
            await server.stop()
            with pytest.raises(ConnectionLost):
                await waiting

    run(scenario())


def test_echo_keeps_the_link_alive_and_an_unanswered_echo_makes_it_reconnect() -> None:
    stans = iter(range(1, 1000))
    answered_echoes = 2

    async def answers_two_echoes(request: Message) -> Message | None:
        nonlocal answered_echoes
        if request.mti == "0820":
            if answered_echoes == 0:
                return None
            answered_echoes -= 1
        return answer(request)

    async def scenario() -> None:
        # an echo waits up to 1 s for its answer: a loaded machine must not turn an answered echo into a miss
        limits = LinkLimits(timeout_s=1.0, min_backoff_s=0.01, max_backoff_s=0.05, echo_interval_s=0.05)
        async with (
            Iso8583Server(answers_two_echoes) as server,
            Iso8583Link(
                "127.0.0.1", server.port, tpdu=TPDU, limits=limits, keepalive=lambda: echo_test(next(stans))
            ) as link,
        ):
            while link.stats.connects < 2:
                await asyncio.sleep(0.01)
            assert link.stats.echoes == 2 and link.stats.timeouts >= 1
            await link.wait_connected(2)
            assert (await link.request(purchase(500))).approved

    run(scenario())


@asynccontextmanager
async def _echoing_link(
    handler: Callable[[Message], Awaitable[Message | None]], limits: LinkLimits
) -> AsyncIterator[Iso8583Link]:
    """A server answering with ``handler``, and a connected link to it that sends echo tests (fresh STANs)."""
    stans = iter(range(900, 10_000))
    async with (
        Iso8583Server(handler) as server,
        Iso8583Link(
            "127.0.0.1", server.port, tpdu=TPDU, limits=limits, keepalive=lambda: echo_test(next(stans))
        ) as link,
    ):
        await link.wait_connected(5)
        yield link


def test_a_peer_that_answers_nothing_is_found_silent_refused_at_once_and_used_again_once_it_answers() -> None:
    """A connected peer that answers nothing (a hung front end) costs each request its whole timeout. Once
    requests have waited ``silent_after_s`` with nothing received, and the echo test sent then is unanswered
    too, the link refuses requests at once (``Silent``, not sent), long before the waiting ones would time
    out; the connection is dropped and made again, which ends the waiting requests in ``ConnectionLost``
    (no answer: may be posted, reversed by the caller). Echo tests go on; an answer ends the silence."""
    heard: list[str] = []
    awake = False

    async def hung_until_awake(request: Message) -> Message | None:
        heard.append(request.mti)
        return answer(request) if awake else None

    async def scenario() -> None:
        nonlocal awake
        limits = LinkLimits(
            timeout_s=3.0, min_backoff_s=0.01, max_backoff_s=0.1, silent_after_s=0.2, probe_interval_s=0.5
        )
        async with _echoing_link(hung_until_awake, limits) as link:
            loop = asyncio.get_running_loop()
            started = loop.time()
            waiting = [asyncio.create_task(link.request(purchase(stan))) for stan in (1, 2, 3)]
            await _until(lambda: link.silent is not None)  # the echo test sent after 0.2 s is not answered
            done, _ = await asyncio.wait(waiting, timeout=0.25)  # the connection dropped at once, not at the
            assert len(done) == 3  # next echo test unanswered (0.5 s on)
            outcomes = [task.exception() for task in waiting]
            assert all(isinstance(outcome, ConnectionLost) for outcome in outcomes), outcomes
            assert loop.time() - started < 2.0  # not their 3 s timeout
            assert heard[:3] == ["0200"] * 3 and set(heard[3:]) == {"0820"} and link.stats.silences == 1
            assert re.fullmatch(
                r"silent \(nothing received for \d\.\d s: 3 request\(s\) and an echo test unanswered\)",
                link.state,
            ), link.state
            with pytest.raises(Silent, match="is silent"):
                await link.request(purchase(4), timeout_s=300)  # refused at once, not after 300 s
            assert heard.count("0200") == 3 and link.stats.refused_silent == 1
            awake = True
            # the answer ends the silence as it is read; its echo test is counted once its caller resumes
            await _until(lambda: link.silent is None and link.stats.echoes >= 1)
            assert link.state == "up"
            assert (await link.request(purchase(5))).approved
            assert heard.count("0200") == 4 and link.stats.silences == 1

    run(scenario())


def test_a_slow_peer_is_probed_and_never_taken_as_silent() -> None:
    """Waiting alone does not make a peer silent: a peer that answers each request after 0.5 s, slower than
    ``silent_after_s``, answers the echo test sent while its requests wait, so each request is answered."""

    async def slow(request: Message) -> Message | None:
        if request.mti != "0820":
            await asyncio.sleep(0.5)
        return answer(request)

    async def scenario() -> None:
        limits = LinkLimits(timeout_s=3.0, min_backoff_s=0.01, silent_after_s=0.1, probe_interval_s=0.2)
        async with _echoing_link(slow, limits) as link:
            for stans in ([1, 2], [3], [4, 5, 6]):
                outcomes = await asyncio.gather(*(link.request(purchase(stan)) for stan in stans))
                assert all(outcome.approved for outcome in outcomes)
                assert link.silent is None and link.state == "up"
            assert link.stats.echoes >= 3 and link.stats.silences == 0 and link.stats.refused_silent == 0

    run(scenario())


def test_a_peer_that_answers_requests_but_no_echo_test_is_not_silent() -> None:
    """The echo test unanswered makes a peer silent only when nothing else came meanwhile: a peer that answers
    each request after 0.4 s and no echo test at all is never silent, and its requests are answered."""

    async def no_echoes(request: Message) -> Message | None:
        if request.mti == "0820":
            return None
        await asyncio.sleep(0.4)
        return answer(request)

    async def scenario() -> None:
        limits = LinkLimits(timeout_s=3.0, min_backoff_s=0.01, silent_after_s=0.1, probe_interval_s=1.0)
        async with _echoing_link(no_echoes, limits) as link:
            for stans in ([1], [2, 3]):
                outcomes = await asyncio.gather(*(link.request(purchase(stan)) for stan in stans))
                assert all(outcome.approved for outcome in outcomes)
            await asyncio.sleep(1.0)  # the last echo test times out with an answer received meanwhile
            assert link.silent is None and link.stats.silences == 0 and link.stats.timeouts >= 1

    run(scenario())


def test_a_peer_that_leaves_requests_unanswered_but_answers_echo_tests_is_not_silent() -> None:
    """A switch leaves some requests unanswered on purpose (a reversal its issuer did not answer: the acquirer
    repeats it later). Requests that wait with nothing received are not silence while the peer answers the
    echo test they bring."""
    echoes = 0

    async def answers_only_echoes(request: Message) -> Message | None:
        nonlocal echoes
        if request.mti == "0820":
            echoes += 1
            return answer(request)
        return None

    async def scenario() -> None:
        limits = LinkLimits(timeout_s=0.5, min_backoff_s=0.01, silent_after_s=0.1, probe_interval_s=0.3)
        async with _echoing_link(answers_only_echoes, limits) as link:
            for stan in range(1, 5):
                with pytest.raises(Timeout):
                    await link.request(purchase(stan))
            assert echoes >= 4 and link.silent is None and link.stats.silences == 0
            assert link.stats.timeouts == 4 and link.stats.refused_silent == 0

    run(scenario())


def test_a_duplicate_key_in_flight_and_a_full_pending_map_are_refused_before_sending() -> None:
    hold = asyncio.Event()

    async def held(request: Message) -> Message:
        await hold.wait()
        return answer(request)

    async def scenario() -> None:
        limits = LinkLimits(timeout_s=5, min_backoff_s=0.01, max_pending=2)
        async with (
            Iso8583Server(held) as server,
            Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=limits) as link,
        ):
            await link.wait_connected(5)
            first = asyncio.create_task(link.request(purchase(1)))
            await asyncio.sleep(0.05)
            with pytest.raises(DuplicateKey):
                await link.request(purchase(1))
            second = asyncio.create_task(link.request(purchase(2)))
            await asyncio.sleep(0.05)
            with pytest.raises(Busy):
                await link.request(purchase(3))
            hold.set()
            assert [(await first).stan, (await second).stan] == [1, 2]
            assert link.stats.sent == 2

    run(scenario())


def test_connections_over_the_limit_are_closed_and_stop_drains_requests_in_flight() -> None:
    release = asyncio.Event()

    async def slow(request: Message) -> Message:
        await release.wait()
        return answer(request)

    async def scenario() -> None:
        server = Iso8583Server(slow, limits=ServerLimits(max_connections=1, drain_timeout_s=5))
        await server.start()
        async with Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as link:
            in_flight = asyncio.create_task(link.request(purchase(1)))
            while server.stats.requests == 0:
                await asyncio.sleep(0.01)
            assert await _raw_exchange(server.port, encode_framed(purchase(2), TPDU)) is None
            assert server.stats.refused_connections == 1
            stopping = asyncio.create_task(server.stop())
            await asyncio.sleep(0.05)
            release.set()
            await stopping
            assert (await in_flight).approved  # answered during the drain

    run(scenario())


def test_a_server_that_accepts_and_closes_at_once_is_retried_with_a_growing_backoff() -> None:
    async def scenario() -> None:
        limits = LinkLimits(timeout_s=1, min_backoff_s=0.01, max_backoff_s=0.1)
        async with (
            Iso8583Server(echo_handler, limits=ServerLimits(max_connections=1)) as server,
            Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as first,
        ):
            assert (await first.request(purchase(1))).approved  # holds the one connection allowed
            async with Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=limits) as second:
                await asyncio.sleep(0.6)
            # backoff 0.01, 0.02, 0.04, 0.08, then 0.1: about 9 attempts in 0.6 s, not hundreds
            assert 2 <= second.stats.connects <= 12
            assert second.stats.connects - 1 <= server.stats.refused_connections <= second.stats.connects

    run(scenario())


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async def scenario() -> None:
        async with Iso8583Server(echo_handler, limits=ServerLimits(idle_timeout_s=0.1)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                assert await reader.read(1) == b""  # closed by the server, nothing sent either way
            finally:
                writer.close()
            assert server.stats.connections == 1 and server.stats.closed_for_garbage == 0

    run(scenario(), deadline_s=10)


def test_mutated_frames_get_exactly_the_answer_the_codec_predicts_and_only_valid_ones_are_handled() -> None:
    rng = random.Random(20261203)
    handler = Counting()
    original = encode_framed(purchase(42, mac=True), TPDU)

    def mutate() -> bytes:
        data = bytearray(original)
        for _ in range(rng.randrange(1, 4)):  # the length prefix is kept: one frame in, one frame's worth
            data[rng.randrange(2, len(data))] = rng.randrange(256)
        return bytes(data)

    def predicted(data: bytes) -> str | None:
        """What the server must do: "handled", "30", or None (close or drop: no answer)."""
        try:
            message = parse(decode_frame(data)[1])
        except Iso8583Error as exc:
            return "30" if format_error_response(exc) is not None else None
        return "handled" if message.mti[2] in "02" else None

    async def scenario() -> None:
        seen: dict[str | None, int] = {}
        async with Iso8583Server(handler, limits=ServerLimits(frame_timeout_s=0.5)) as server:
            for _ in range(150):
                data = mutate()
                expected = predicted(data)
                seen[expected] = seen.get(expected, 0) + 1
                calls = handler.calls
                back = await _raw_exchange(server.port, data)
                if expected is None:
                    assert back is None
                    continue
                assert back is not None
                code = decode_frame(back)[1].fields[39]
                if expected == "30":
                    assert code == "30" and handler.calls == calls
                else:
                    assert code in ("00", "96") and handler.calls == calls + 1
        assert len(seen) == 3, f"the mutations should reach every path: {seen}"

    run(scenario())


def test_a_request_that_arrives_while_the_server_drains_is_answered_91_and_not_started() -> None:
    release = asyncio.Event()
    handled: list[int | None] = []

    async def slow(request: Message) -> Message:
        handled.append(request.stan)
        await release.wait()
        return answer(request)

    async def scenario() -> None:
        server = Iso8583Server(slow, limits=ServerLimits(drain_timeout_s=5))
        await server.start()
        async with Iso8583Link("127.0.0.1", server.port, tpdu=TPDU, limits=FAST) as link:
            first = asyncio.create_task(link.request(purchase(1)))
            while not handled:
                await asyncio.sleep(0.01)
            stopping = asyncio.create_task(server.stop())
            await asyncio.sleep(0.05)
            second = asyncio.create_task(link.request(purchase(2)))
            await asyncio.sleep(0.1)
            release.set()
            await stopping
            assert (await first).approved
            assert (await second).response_code == ResponseCode.ISSUER_UNAVAILABLE
        assert handled == [1]

    run(scenario())
