"""The switch and the issuers' front ends over real loopback sockets (SQLite and PostgreSQL): a test
acquirer's 0200 goes through the switch to the issuer of the card's bank, with real cards and real ARQCs
(the chip emulator and tests/issuer), and the ledger is checked before and after every fault."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import socket
from collections.abc import Callable

import pytest

from citycard.codec.iso8583 import (
    AdviceRequest,
    Field60,
    IccData,
    Message,
    NetworkManagementRequest,
    RawMessage,
    ResponseCode,
    ReversalRequest,
    decode_frame,
    encode_frame,
    encode_message,
    with_fields,
)
from citycard.codec.iso8583.wire import Frame, Header
from citycard.codec.pan import mask_pan
from citycard.codec.tlv import decode_dict
from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hosts.answers import answer
from citycard.hosts.switch import SwitchLimits, echo_test
from citycard.hosts.zone import ZoneMac
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AddBank, AddBinRange, SetPin
from citycard.issuer.handlers import IssuerService
from citycard.net.framing import read_frame, write_frame
from citycard.net.link import Iso8583Link, LinkLimits, Timeout
from citycard.net.server import Iso8583Server, ServerLimits

from tests.hosts.conftest import (
    ACQUIRER_TPDU,
    BOC_ID,
    FAST_LINK,
    ICBC_ID,
    chain,
    funded,
    purchase,
)
from tests.issuer.conftest import Terminal, ledger_snapshot
from tests.net.support import run

TC = 0x40


def deposit_fen(database: Database, pan: str) -> int:
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
        assert card is not None and card.deposit_account_id is not None
        (account,) = uow.ledger.lookup_accounts([card.deposit_account_id])
        return account.credit_balance_fen


def reversal_of(original: Message, reason: ResponseCode = ResponseCode.ISSUER_TIMEOUT) -> ReversalRequest:
    """The acquirer's 0400 for ``original``: its 2, 3, 4, 11, 22, 23, 25, 32, 37, 41, 42, 49, 55, 60."""
    return ReversalRequest(
        mti="0400",
        pan=original.pan,
        processing_code=original.processing_code,
        amount_fen=original.amount_fen,
        stan=original.stan,
        pos_entry_mode=original.pos_entry_mode,
        card_sequence_number=original.card_sequence_number,
        condition_code=original.condition_code,
        acquirer_id=original.acquirer_id,
        rrn=original.rrn,
        response_code=reason,
        terminal_id=original.terminal_id,
        merchant_id=original.merchant_id,
        currency=original.currency,
        icc=original.icc,
        field60=original.field60,
    )


def test_a_purchase_goes_through_the_switch_to_the_card_issuer_and_the_chip_accepts_the_answer(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC", 100_000)
    term = terminal_for(pan)
    request = purchase(pan, term.first_ac(2_500), 2_500, "000000000101")
    before = ledger_snapshot(database)

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            answer = await c.send(request)
            assert answer.mti == "0210" and answer.response_code is ResponseCode.APPROVED
            assert answer.rrn == "000000000101" and answer.acquirer_id == BOC_ID
            assert answer.stan == 1 and answer.terminal_id == request.terminal_id
            assert answer.auth_code is not None and len(answer.auth_code) == 6
            assert answer.icc is not None and answer.icc.get("91") is not None
            icc = answer.icc
            cid, _ = term.complete(icc.raw, icc.get("91")[8:])  # type: ignore[index]
            assert cid == TC  # the chip verified the ARPC of the real issuer
            assert deposit_fen(database, pan) == 100_000 - 2_500
            again = await c.send(request)  # the acquirer repeats it: the stored answer, posted once
            assert again == answer
            assert deposit_fen(database, pan) == 100_000 - 2_500
            assert c.issuers["ICBC"].stats.authorizations == 2 and c.issuers["BOC"].stats.authorizations == 0
            assert c.switch.stats.forwarded == 2 and c.switch.stats.answered_by_issuer == 2

    run(scenario())
    assert ledger_snapshot(database) != before


def test_two_banks_are_routed_by_bin_with_requests_in_flight_together(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    icbc, boc = funded(banks, "ICBC", 50_000), funded(banks, "BOC", 70_000)
    requests = [
        purchase(icbc, terminal_for(icbc).first_ac(1_000), 1_000, "000000000201", stan=11),
        purchase(boc, terminal_for(boc).first_ac(3_000), 3_000, "000000000202", stan=12, acquirer=ICBC_ID),
    ]

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            answers = await asyncio.gather(*(c.send(r) for r in requests))
            assert [a.rrn for a in answers] == ["000000000201", "000000000202"]
            assert all(a.response_code is ResponseCode.APPROVED for a in answers)
            assert c.issuers["ICBC"].stats.authorizations == 1 and c.issuers["BOC"].stats.authorizations == 1

    run(scenario())
    assert deposit_fen(database, icbc) == 49_000 and deposit_fen(database, boc) == 67_000


def test_an_unroutable_pan_is_answered_15_by_the_switch_and_reaches_no_issuer(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC")
    f55 = terminal_for(pan).first_ac(1_000)
    before = ledger_snapshot(database)

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            answer = await c.send(purchase("6230000000000000011", f55, 1_000, "000000000301"))
            assert answer.response_code is ResponseCode.NO_SUCH_ISSUER and answer.rrn == "000000000301"
            assert sum(front.stats.authorizations for front in c.issuers.values()) == 0
            assert c.switch.stats.refused == 1 and c.switch.stats.forwarded == 0

    run(scenario())
    assert ledger_snapshot(database) == before


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_issuer_that_is_down_or_silent_gets_91_within_the_hop_timeout_and_nothing_is_posted(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    icbc, boc = funded(banks, "ICBC"), funded(banks, "BOC")
    down = purchase(icbc, terminal_for(icbc).first_ac(1_000), 1_000, "000000000401")
    silent = purchase(boc, terminal_for(boc).first_ac(1_000), 1_000, "000000000402")
    before = ledger_snapshot(database)
    hop_s = 0.5
    heard: list[Message] = []

    async def never(message: Message) -> Message | None:
        heard.append(message)
        await asyncio.sleep(3600)
        return None

    async def scenario() -> None:
        mute = Iso8583Server(never, limits=ServerLimits(drain_timeout_s=0.1))
        async with mute:
            addresses = {"ICBC": ("127.0.0.1", _closed_port()), "BOC": ("127.0.0.1", mute.port)}
            limits = SwitchLimits(hop_timeout_s=hop_s)
            async with chain(banks, hsm, database, banks=(), addresses=addresses, limits=limits) as c:
                # the acquirer waits ten hops: the switch answers well before
                for request in (down, silent):
                    answer = await c.send(request, timeout_s=10 * hop_s)
                    assert answer.response_code is ResponseCode.ISSUER_UNAVAILABLE
                    assert answer.rrn == request.rrn
                assert [m.rrn for m in heard] == ["000000000402"]
                # a reversal sent to an issuer that does not answer is not answered: the acquirer keeps it
                # and repeats it
                try:
                    await c.send(reversal_of(silent), timeout_s=4 * hop_s)
                    raise AssertionError("a reversal without an issuer answer must not be answered")
                except Timeout:
                    pass
                # one that cannot even be sent (the issuer's link is down) is answered 91 at once, which the
                # acquirer's queue takes as "not delivered": it repeats it without waiting out its timeout
                back = await c.send(reversal_of(down), timeout_s=4 * hop_s)
                assert back.response_code is ResponseCode.ISSUER_UNAVAILABLE and back.rrn == down.rrn
                assert c.switch.stats.unanswered == 4

    run(scenario())
    assert ledger_snapshot(database) == before


def test_an_issuer_that_refuses_connections_is_answered_91_at_once_not_after_the_hop_timeout(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """A switch whose link to a bank is down (its last connection attempt refused) answers that bank's
    purchases 91 as soon as one more attempt fails, not after the hop's timeout: the city's terminals are
    not kept waiting while a bank's front end is down."""
    icbc = funded(banks, "ICBC")
    before = ledger_snapshot(database)

    async def scenario() -> None:
        addresses = {"ICBC": ("127.0.0.1", _closed_port())}
        limits = SwitchLimits(hop_timeout_s=300.0)
        async with chain(banks, hsm, database, banks=(), addresses=addresses, limits=limits) as c:
            for n in range(3):
                request = purchase(icbc, terminal_for(icbc).first_ac(1_000), 1_000, f"00000000041{n}")
                answer = await c.send(request, timeout_s=10.0)  # far below the hop's 300 s
                assert answer.response_code is ResponseCode.ISSUER_UNAVAILABLE
            assert c.switch.stats.unanswered == 3
            status = c.switch.status()  # what `citycard serve switch` prints for the operator
            assert "3 forwarded, 0 answered by the issuers, 3 unanswered" in status
            assert "; ICBC down (" in status and "refused" in status.rpartition("ICBC down")[2], status

    run(scenario())
    assert ledger_snapshot(database) == before


def test_a_silent_issuer_is_answered_91_within_a_second_and_forwarded_again_once_it_answers(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """A bank's front end that is connected but answers nothing (hung) kept every purchase of its cards
    waiting the hop timeout, and every reversal one of the acquirer's queue places. Once requests have waited
    ``silent_after_s`` with nothing received, and the echo test sent then is unanswered too, the switch
    takes it as silent: the purchases waiting are answered 91 well before the hop timeout (the connection is
    dropped, as for any echo test unanswered), and later purchases and reversals 91 at once, not sent.
    Its echo tests find out when it answers again, and the next purchase is forwarded."""
    boc = funded(banks, "BOC")
    before = ledger_snapshot(database)
    hop_s = 3.0
    heard: list[Message] = []
    awake = False

    async def hung_until_awake(message: Message) -> Message | None:
        heard.append(message)
        return answer(message, ResponseCode.APPROVED) if awake else None

    def requests(n: int) -> list[Message]:
        card = terminal_for(boc)
        return [purchase(boc, card.first_ac(1_000), 1_000, f"0000000005{k:02d}") for k in range(n)]

    def purchases_heard() -> list[str | None]:
        return [m.rrn for m in heard if m.mti == "0200"]

    async def scenario() -> None:
        nonlocal awake
        async with Iso8583Server(hung_until_awake, limits=ServerLimits(drain_timeout_s=0.1)) as hung:
            limits = SwitchLimits(
                hop_timeout_s=hop_s,
                silent_after_s=0.1,
                link=LinkLimits(min_backoff_s=0.01, max_backoff_s=0.1, probe_interval_s=0.05),
            )
            addresses = {"BOC": ("127.0.0.1", hung.port)}
            async with chain(
                banks, hsm, database, banks=(), addresses=addresses, limits=limits, mac=False
            ) as c:
                made = requests(7)
                first, later = made[:5], made[5:]
                loop = asyncio.get_running_loop()
                started = loop.time()
                answers = await asyncio.gather(*(c.send(r, timeout_s=10 * hop_s) for r in first))
                assert {a.response_code for a in answers} == {ResponseCode.ISSUER_UNAVAILABLE}
                assert loop.time() - started < hop_s and len(purchases_heard()) == 5
                assert c.switch.links["BOC"].silent is not None
                assert re.search(
                    r"BOC silent \(nothing received for \d\.\d s: 5 request\(s\) and an echo test"
                    r" unanswered\)",
                    c.switch.status(),
                ), c.switch.status()
                # not sent: a purchase and a reversal answered 91 (a reversal the queue then repeats later)
                assert (await c.send(later[0], timeout_s=60)).response_code is ResponseCode.ISSUER_UNAVAILABLE
                back = await c.send(reversal_of(first[0]), timeout_s=60)
                assert back.response_code is ResponseCode.ISSUER_UNAVAILABLE and back.rrn == first[0].rrn
                assert len(purchases_heard()) == 5 and not any(m.mti == "0400" for m in heard)
                awake = True
                async with asyncio.timeout(20):
                    while c.switch.links["BOC"].silent is not None:  # until an echo test is answered
                        await asyncio.sleep(0.01)
                assert (await c.send(later[1], timeout_s=10 * hop_s)).response_code is ResponseCode.APPROVED
                assert purchases_heard()[-1] == later[1].rrn and "BOC up" in c.switch.status()

    run(scenario())
    assert ledger_snapshot(database) == before


def test_a_reversal_through_the_chain_nets_the_account_to_zero_and_its_repeat_applies_once(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC", 20_000)
    request = purchase(pan, terminal_for(pan).first_ac(4_000), 4_000, "000000000501")

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            assert (await c.send(request)).response_code is ResponseCode.APPROVED
            assert deposit_fen(database, pan) == 16_000
            reversal = reversal_of(request)
            answer = await c.send(reversal)
            assert answer.mti == "0410" and answer.response_code is ResponseCode.APPROVED
            assert answer.rrn == request.rrn
            assert deposit_fen(database, pan) == 20_000
            repeat = await c.send(dataclasses.replace(reversal, mti="0420"))  # repeated as 0420
            assert repeat.mti == "0430" and repeat.response_code is ResponseCode.APPROVED
            assert deposit_fen(database, pan) == 20_000

    run(scenario())


def _frame(message: Message, replace: dict[int, str | bytes]) -> bytes:
    fields = dict(message.to_fields().fields)
    fields.update(replace)
    return encode_frame(Frame(ACQUIRER_TPDU, Header(), encode_message(RawMessage(message.mti, fields))))


async def _exchange(port: int, frames: list[bytes]) -> list[RawMessage]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        answers = []
        for frame in frames:
            await write_frame(writer, frame)
            back = await read_frame(reader, body_timeout_s=10)
            assert back is not None
            answers.append(decode_frame(back)[1])
        return answers
    finally:
        writer.close()


def test_a_malformed_field_55_is_answered_30_posts_nothing_and_the_servers_keep_serving(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC", 10_000)
    good = purchase(pan, terminal_for(pan).first_ac(1_000), 1_000, "000000000601")
    not_tlv = _frame(good, {55: b"\x9f\x26\x08\x01\x02"})  # 9F26 says 8 bytes, 2 follow
    tags = decode_dict(good.icc.raw)  # type: ignore[union-attr]
    del tags["9F26"]
    no_arqc = dataclasses.replace(good, rrn="000000000602", icc=IccData.of(list(tags.items())))
    before = ledger_snapshot(database)

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            for port in (
                c.switch.port,
                c.issuers["ICBC"].port,
            ):  # the switch decodes first; so does the issuer
                (answer,) = await _exchange(port, [not_tlv])
                assert answer.mti == "0210" and answer.fields[39] == "30" and answer.fields[11] == "000001"
            # well-formed TLV that the issuer cannot use (no ARQC): 30 from the issuer, through the switch
            answer = await c.send(no_arqc)
            assert answer.response_code is ResponseCode.FORMAT_ERROR and answer.rrn == "000000000602"
            # field 23 missing and no 5F34: the front end refuses it before the issuer is called
            calls = c.issuers["ICBC"].stats.authorizations
            no_psn = dataclasses.replace(good, rrn="000000000603", card_sequence_number=None)
            assert (await c.send(no_psn)).response_code is ResponseCode.FORMAT_ERROR
            assert c.issuers["ICBC"].stats.authorizations == calls
            assert ledger_snapshot(database) == before
            assert (await c.send(good)).response_code is ResponseCode.APPROVED  # and they go on serving

    run(scenario())
    assert deposit_fen(database, pan) == 9_000


def test_random_bytes_close_the_connection_and_the_switch_and_issuer_serve_the_next_client(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    rng = random.Random(9584)
    pan = funded(banks, "ICBC", 10_000)
    good = purchase(pan, terminal_for(pan).first_ac(500), 500, "000000000701")
    before = ledger_snapshot(database)

    async def garbage(port: int) -> None:
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(
                    b"\xff\xff" + rng.randbytes(rng.randrange(1, 300))
                )  # a length above the frame limit
                await writer.drain()
                assert await reader.read() == b""  # closed by the server, nothing answered
            finally:
                writer.close()

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            await garbage(c.switch.port)
            await garbage(c.issuers["ICBC"].port)
            assert c.switch.server.stats.closed_for_garbage == 10
            assert c.issuers["ICBC"].server.stats.closed_for_garbage == 10
            assert "10 closed for garbage" in c.switch.status()
            assert c.issuers["ICBC"].status().startswith("issuer ICBC: ")
            assert "10 closed for garbage" in c.issuers["ICBC"].status()
            assert ledger_snapshot(database) == before
            assert (await c.send(good)).response_code is ResponseCode.APPROVED

    run(scenario())


def test_an_online_pin_is_translated_from_the_acquirers_zone_key_to_the_issuers_and_verified(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC", 10_000)
    banks.set_pin(SetPin(pan, hsm.encrypt_pin(hsm.get("icbc-zpk"), "147258", pan)))
    term = terminal_for(pan)

    def under_boc(pin: str) -> bytes:  # the acquiring bank's zone PIN key (after the acquirer's PIK -> ZPK)
        return hsm.encrypt_pin(hsm.get("boc-zpk"), pin, pan)

    wrong = purchase(pan, term.first_ac(800, un=b"\x01\x02\x03\x04"), 800, "000000000801")
    wrong = dataclasses.replace(wrong, pin_block=under_boc("147200"))
    right = purchase(pan, term.first_ac(800, un=b"\x05\x06\x07\x08"), 800, "000000000802")
    right = dataclasses.replace(right, pin_block=under_boc("147258"))
    untranslated = purchase(pan, term.first_ac(800, un=b"\x09\x0a\x0b\x0c"), 800, "000000000803")
    untranslated = dataclasses.replace(untranslated, pin_block=under_boc("147258"))

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            assert (await c.send(wrong)).response_code is ResponseCode.INCORRECT_PIN
            assert (await c.send(right)).response_code is ResponseCode.APPROVED
            assert c.switch.stats.pin_translations == 2
            # the same block sent straight to the issuer, not translated: under the wrong key, refused
            async with Iso8583Link(
                "127.0.0.1", c.issuers["ICBC"].port, tpdu=ACQUIRER_TPDU, limits=FAST_LINK
            ) as direct:
                signed = ZoneMac.open(hsm, "ICBC").sign(untranslated)  # MACed as the switch would
                answer = await direct.request(signed)  # 99, or 55 when it happens to decode
                assert answer.response_code in (ResponseCode.PIN_FORMAT_ERROR, ResponseCode.INCORRECT_PIN)

    run(scenario())
    assert deposit_fen(database, pan) == 9_200


def test_the_switch_forwards_the_bytes_it_received_with_only_the_pin_block_and_the_mac_patched(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """The request the issuer gets is the acquirer's bytes with 52 (translated) and 64 (the issuer leg's
    MAC) changed in place, and the answer the acquirer gets is the issuer's bytes with 64 changed: the
    bytes encoding the changed messages afresh gives (the old path)."""
    pan = funded(banks, "ICBC", 10_000)
    banks.set_pin(SetPin(pan, hsm.encrypt_pin(hsm.get("icbc-zpk"), "147258", pan)))
    term = terminal_for(pan)
    request = purchase(pan, term.first_ac(800, un=b"\x01\x02\x03\x04"), 800, "000000000811")
    request = dataclasses.replace(request, pin_block=hsm.encrypt_pin(hsm.get("boc-zpk"), "147258", pan))
    legs: list[tuple[Message, Message]] = []

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            assert c.zone is not None
            link = c.switch.links["ICBC"]
            forward = link.request

            async def seen(message: Message, *, timeout_s: float | None = None) -> Message:
                answered = await forward(message, timeout_s=timeout_s)
                legs.append((message, answered))
                return answered

            link.request = seen  # type: ignore[method-assign]
            sent = c.zone.sign(request)
            answer = await c.acquirer.request(sent, timeout_s=20.0)
            assert answer.response_code is ResponseCode.APPROVED and c.zone.answer_ok(answer)
            [(forwarded, issued)] = legs
            assert forwarded.pin_block is not None and forwarded.pin_block != sent.pin_block
            patched = with_fields(sent.to_bytes(), {52: forwarded.pin_block})
            assert forwarded.to_bytes()[:-8] == patched[:-8]
            assert forwarded.to_bytes() == dataclasses.replace(forwarded, mti=forwarded.mti).to_bytes()
            assert answer.to_bytes()[:-8] == issued.to_bytes()[:-8] and answer.mac != issued.mac
            assert answer.to_bytes() == dataclasses.replace(answer, mti=answer.mti).to_bytes()

    run(scenario())


def test_a_card_of_another_bank_at_an_issuer_front_end_is_answered_15_and_echoes_are_answered_locally(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    boc = funded(banks, "BOC")
    request = purchase(boc, terminal_for(boc).first_ac(1_000), 1_000, "000000000901")
    before = ledger_snapshot(database)

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            async with Iso8583Link(
                "127.0.0.1", c.issuers["ICBC"].port, tpdu=ACQUIRER_TPDU, limits=FAST_LINK
            ) as direct:
                icbc = ZoneMac.open(hsm, "ICBC")  # as the switch sends on that leg
                answer = await direct.request(icbc.sign(request))
                assert answer.response_code is ResponseCode.NO_SUCH_ISSUER and icbc.verifies(answer)
                assert c.issuers["ICBC"].stats.not_ours == 1
                echo = await direct.request(icbc.sign(echo_test(5)))
                assert isinstance(echo.response_code, ResponseCode) and echo.approved
            echo = await c.send(echo_test(6))
            assert echo.mti == "0830" and echo.approved and c.switch.stats.echoes == 1
            assert c.issuers["ICBC"].stats.echoes == 1
            sign_on = NetworkManagementRequest(
                mti="0800",
                stan=7,
                terminal_id="T0000001",
                merchant_id="M00000000000001",
                field60=Field60("00", 1, "003"),
            )
            assert (await c.send(sign_on)).response_code is ResponseCode.FUNCTION_NOT_SUPPORTED

    run(scenario())
    assert ledger_snapshot(database) == before


def test_a_balance_inquiry_answers_the_available_balance_in_field_54(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC", 12_345)
    f55 = terminal_for(pan).first_ac(0, txn_type=0x31)
    inquiry = purchase(pan, f55, 0, "000000001001", processing_code="310000", type_code="01")
    inquiry = dataclasses.replace(inquiry, amount_fen=None)
    before = ledger_snapshot(database)

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            answer = await c.send(inquiry)
            assert answer.response_code is ResponseCode.APPROVED
            assert answer.balance == "1002156C000000012345"

    run(scenario())
    assert ledger_snapshot(database) == before


def test_a_void_and_a_refund_through_the_chain_name_their_original_by_the_rrn_in_field_61(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC", 20_000)
    term = terminal_for(pan)
    first = purchase(pan, term.first_ac(4_000, un=b"\x01" * 4), 4_000, "000000001101", stan=21)
    second = purchase(pan, term.first_ac(3_000, un=b"\x02" * 4), 3_000, "000000001102", stan=22)

    def original(rrn: str, stan: int) -> str:  # batch, trace, date of the terminal, then the RRN (acquirer)
        return f"000001{stan:06d}1125{rrn}"

    void = purchase(pan, term.first_ac(4_000, un=b"\x03" * 4), 4_000, "000000001103", stan=23)
    void = dataclasses.replace(
        void, processing_code="200000", field60=Field60("23", 1), original=original("000000001101", 21)
    )
    fields = {f.name: getattr(second, f.name) for f in dataclasses.fields(second)}
    refund = AdviceRequest(
        **{**fields, "mti": "0220", "processing_code": "200000", "amount_fen": 1_000, "icc": None}
        | {"rrn": "000000001104", "stan": 24, "field60": Field60("25", 1)}
        | {"original": original("000000001102", 22)}
    )
    no_rrn = dataclasses.replace(refund, rrn="000000001105", original="000001000022" + "1125")

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            for request in (first, second):
                assert (await c.send(request)).response_code is ResponseCode.APPROVED
            assert deposit_fen(database, pan) == 13_000
            answer = await c.send(void)
            assert answer.mti == "0210" and answer.response_code is ResponseCode.APPROVED, answer
            assert deposit_fen(database, pan) == 17_000
            answer = await c.send(refund)
            assert answer.mti == "0230" and answer.response_code is ResponseCode.APPROVED, answer
            assert deposit_fen(database, pan) == 18_000
            assert (await c.send(refund)).response_code is ResponseCode.APPROVED  # repeated: applied once
            assert deposit_fen(database, pan) == 18_000
            assert (await c.send(no_rrn)).response_code is ResponseCode.FORMAT_ERROR

    run(scenario())


def test_a_wrong_or_missing_zone_mac_is_answered_a0_at_each_hop_and_nothing_is_forwarded_or_posted(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """Field 64 on the host legs (docs/network.md, "Field 64 on the host legs"): the switch checks the
    acquirer's MAC, the issuer front end the switch's; an answer that does not verify is no answer."""
    pan = funded(banks, "ICBC", 10_000)
    term = terminal_for(pan)
    good = purchase(pan, term.first_ac(1_000), 1_000, "000000001001")
    before = ledger_snapshot(database)
    acquirer_zak, icbc_zak = ZoneMac.open(hsm, "acquirer"), ZoneMac.open(hsm, "ICBC")
    stranger = ZoneMac.open(SoftHsm(bytes(32)), "acquirer")  # a key of the same name in another HSM
    forged = dataclasses.replace(acquirer_zak.sign(good), amount_fen=1)  # MACed, then altered

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            for bad in (good, stranger.sign(good), forged):  # no 64, another key, altered after MACing
                answer = await c.acquirer.request(bad)
                assert answer.response_code is ResponseCode.MAC_ERROR and answer.rrn == good.rrn
            assert c.switch.stats.forwarded == 0 and c.switch.server.stats.mac_errors == 3
            async with Iso8583Link(
                "127.0.0.1", c.issuers["ICBC"].port, tpdu=ACQUIRER_TPDU, limits=FAST_LINK
            ) as direct:  # as a switch without the ICBC leg's key
                for bad in (good, stranger.sign(good)):
                    assert (await direct.request(bad)).response_code is ResponseCode.MAC_ERROR
            assert c.issuers["ICBC"].stats.authorizations == 0
            assert ledger_snapshot(database) == before
            answer = await c.acquirer.request(acquirer_zak.sign(good))  # the right key: through
            assert answer.response_code is ResponseCode.APPROVED and acquirer_zak.verifies(answer)
            assert not icbc_zak.verifies(answer)  # re-MACed for the acquirer's leg
            assert deposit_fen(database, pan) == 9_000

    run(scenario())


def test_an_issuer_answer_without_a_good_mac_is_no_answer_the_switch_answers_91(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded(banks, "ICBC", 10_000)
    request = purchase(pan, terminal_for(pan).first_ac(1_000), 1_000, "000000001101")
    heard: list[Message] = []

    async def approves_unmaced(message: Message) -> Message | None:
        heard.append(message)
        return answer(message, ResponseCode.APPROVED)  # an impostor: no key, so no MAC

    async def scenario() -> None:
        async with Iso8583Server(approves_unmaced) as impostor:
            addresses = {"ICBC": ("127.0.0.1", impostor.port)}
            async with chain(banks, hsm, database, banks=(), addresses=addresses) as c:
                reply = await c.send(request)
                assert reply.response_code is ResponseCode.ISSUER_UNAVAILABLE
                assert c.switch.stats.unanswered == 1
        assert len(heard) == 1 and ZoneMac.open(hsm, "ICBC").verifies(heard[0])  # it was sent MACed

    run(scenario())


def test_banks_and_bins_added_while_the_network_runs_are_routed_without_a_restart(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """docs/network.md, "Routing table reload": the switch and the issuer front ends read the table again
    every ``reload_s`` (and on ``reload_routing()``, which SIGHUP calls)."""
    icbc_pan = funded(banks, "ICBC", 10_000)
    template = purchase(icbc_pan, terminal_for(icbc_pan).first_ac(100), 100, "000000001201")
    new_bin = dataclasses.replace(template, pan="6212270000000001", rrn="000000001202")  # not issued
    new_bank = dataclasses.replace(template, pan="6227000000000019", rrn="000000001203")

    async def eventually(check: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not check():
                await asyncio.sleep(0.05)

    async def scenario() -> None:
        async with chain(banks, hsm, database, reload_s=0.1) as c:
            for request in (new_bin, new_bank):  # no BIN is theirs yet
                assert (await c.send(request)).response_code is ResponseCode.NO_SUCH_ISSUER
            assert c.switch.stats.forwarded == 0
            await asyncio.to_thread(banks.add_bin_range, AddBinRange("ICBC", "621227"))
            await asyncio.to_thread(banks.add_bank, AddBank("CCB", "CCB city branch"))
            await asyncio.to_thread(banks.add_bin_range, AddBinRange("CCB", "622700"))
            front = c.issuers["ICBC"]
            assert front.reload is not None and c.switch.reload is not None
            await eventually(lambda: "622700" in c.switch.table.bins)
            await eventually(lambda: "621227" in front.table.bins)
            # the new BIN reaches ICBC's front end and its issuer, which does not know the card (not 15)
            answer = await c.send(new_bin)
            assert answer.response_code not in (ResponseCode.NO_SUCH_ISSUER, ResponseCode.ISSUER_UNAVAILABLE)
            assert front.stats.authorizations == 1 and front.stats.not_ours == 0
            # the new bank is routed; the switch has no link to its front end: an issuer that does not answer,
            # and its reversals are answered 91 at once, as for a bank whose link is down (nothing was sent)
            assert (await c.send(new_bank)).response_code is ResponseCode.ISSUER_UNAVAILABLE
            reversed_ = await c.send(reversal_of(new_bank), timeout_s=5.0)
            assert reversed_.response_code is ResponseCode.ISSUER_UNAVAILABLE
            assert c.switch.stats.forwarded == 3
            assert await c.switch.reload_routing() is False  # nothing changed since
            assert (await c.send(template)).response_code is ResponseCode.APPROVED  # and ICBC as before

    run(scenario())


def test_each_issuer_decision_is_a_log_line_with_the_card_masked(
    banks: IssuerService,
    hsm: SoftHsm,
    database: Database,
    terminal_for: Callable[[str], Terminal],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """REVIEW.md: an issuer decision is a log line, not only a database row (``serve issuer --verbose``)."""
    pan = funded(banks, "ICBC", 2_000)
    term = terminal_for(pan)

    async def scenario() -> None:
        async with chain(banks, hsm, database) as c:
            first = await c.send(purchase(pan, term.first_ac(1_500), 1_500, "000000000301"))
            second = await c.send(purchase(pan, term.first_ac(1_500), 1_500, "000000000302", stan=2))
            assert first.response_code is ResponseCode.APPROVED
            assert second.response_code is ResponseCode.INSUFFICIENT_FUNDS

    with caplog.at_level(logging.INFO, logger="citycard.hosts.issuer"):
        run(scenario())
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "citycard.hosts.issuer" and " card " in r.getMessage()
    ]
    masked = mask_pan(pan)
    assert len(lines) == 2, lines
    assert lines[0].startswith("ICBC 0200 purchase stan 000001 rrn 000000000301 terminal ")
    assert f"card {masked} amount 15.00: 00 " in lines[0]
    assert f"card {masked} amount 15.00: 51 " in lines[1]
    assert all(pan not in line for line in caplog.text.splitlines())
