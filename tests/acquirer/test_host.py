"""The acquirer front end over real loopback sockets, with a test double for the switch (unit tests of the
acquirer; the chain through the real switch and issuer is in the end-to-end tests): sign-on and KCVs, MAC
both ways, PIN translation, RRN and field 32, retries, no answer -> 98 and a reversal delivered later,
terminal reversals (repeated, and before their original), voids, refunds by SAF, offline uploads, garbage."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from citycard.acquirer import SafStatus, TransactionKey, TransactionStatus
from citycard.codec.iso8583 import (
    AdviceRequest,
    AuthorizationRequest,
    BatchUpload,
    Field60,
    Frame,
    Header,
    IccData,
    NetworkManagementRequest,
    RawMessage,
    ResponseCode,
    ReversalRequest,
    Tpdu,
    decode_frame,
    encode_frame,
    encode_message,
)
from citycard.db import Database
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work
from citycard.hosts.acquirer import mak_label, pik_label
from citycard.hsm.protection import RecordProtection
from citycard.net.framing import read_frame, write_frame
from citycard.net.server import Iso8583Server

from tests.acquirer.support import (
    FAST_LINK,
    INSTITUTION,
    MERCHANT,
    PAN,
    TERMINAL,
    SwitchDouble,
    Terminal,
    acquirer,
    eventually,
    in_batch,
    platform_hsm,
    signed_on,
    switch,
    terminal_link,
)
from tests.db.dbtargets import fresh_database
from tests.net.support import run, signed


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Database]:
    with fresh_database("sqlite", tmp_path) as db:
        yield db


def records(database: Database, key: TransactionKey) -> TransactionStatus | None:
    with database.unit_of_work(AcquirerUnitOfWork) as uow:
        record = uow.transactions.get(key)
    return None if record is None else record.status


def saf_counts(database: Database) -> tuple[int, int]:
    with database.unit_of_work(AcquirerUnitOfWork) as uow:
        return uow.saf.count(SafStatus.PENDING), uow.saf.count(SafStatus.DONE)


def test_sign_on_gives_keys_whose_kcvs_check_and_a_purchase_goes_through_with_macs_rrn_32_and_pin(
    database: Database,
) -> None:
    hsm = platform_hsm()
    double = SwitchDouble()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(database, hsm, sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            keys = await terminal.sign_on()  # imports check both KCVs
            for made, sent in ((mak_label, keys.mak_check_value), (pik_label, keys.pik_check_value)):
                assert sent.hex().upper().startswith(hsm.get(made(TERMINAL)).kcv.upper())
            request = terminal.purchase(pin="123456")
            answer = await terminal.send(request)
            again = await terminal.send(replace(request, stan=request.stan))  # the terminal's retry
        assert answer.response_code == ResponseCode.APPROVED and terminal.verifies(answer)
        assert answer.rrn == again.rrn == "000000000001" and terminal.verifies(again)
        forwarded = double.received[0]
        assert isinstance(forwarded, AuthorizationRequest)
        assert forwarded.acquirer_id == INSTITUTION and forwarded.rrn == answer.rrn and forwarded.mac is None
        assert forwarded.pin_block is not None and forwarded.pin_block != request.pin_block
        back = hsm.translate_pin_block(
            hsm.get("B1-zpk"), hsm.get(pik_label(TERMINAL)), forwarded.pin_block, PAN
        )
        assert back == request.pin_block  # the same PIN, now under the bank's zone PIN key
        assert double.deliveries == {f"{INSTITUTION}-000000000001": 2}
        assert records(database, TransactionKey(TERMINAL, 1, request.stan or 0)) == TransactionStatus.ANSWERED

    run(scenario())


def test_a_wrong_mak_an_unsigned_request_and_a_terminal_never_signed_on_get_a0_and_nothing_is_forwarded(
    sqlite: Database,
) -> None:
    double = SwitchDouble()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            never = await terminal.link.request(terminal.purchase())
            await terminal.sign_on()
            unsigned = await terminal.link.request(terminal.purchase())
            rogue = terminal.hsm.generate_key("rogue", terminal.hsm.get("mak").usage)
            forged = terminal.purchase()
            wrong = await terminal.link.request(
                signed(forged, lambda block: terminal.hsm.pos_mac(rogue, block))
            )
            assert host.server.stats.mac_errors == 3
        assert [a.response_code for a in (never, unsigned, wrong)] == [ResponseCode.MAC_ERROR] * 3
        assert double.received == []

    run(scenario())


def test_the_registry_refuses_a_closed_terminal_and_another_merchant_without_forwarding(
    sqlite: Database,
) -> None:
    double = SwitchDouble()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            other = await terminal.send(replace(terminal.purchase(), merchant_id="850100082419999"))
            assert other.response_code == ResponseCode.INVALID_MERCHANT and terminal.verifies(other)
            async with terminal_link(host.port, lambda link: Terminal(link, "10000099")) as stranger:
                refused = await stranger.link.request(
                    NetworkManagementRequest(
                        mti="0800",
                        stan=1,
                        terminal_id="10000099",
                        merchant_id=MERCHANT,
                        field60=Field60("00", 1, "003"),
                    )
                )
                assert refused.response_code == ResponseCode.NOT_PERMITTED_TO_TERMINAL
                assert refused.private62 is None
        assert double.received == []

    run(scenario())


def test_no_answer_is_98_to_the_terminal_and_a_reversal_delivered_when_the_switch_answers_again(
    database: Database,
) -> None:
    double = SwitchDouble(mode="silent")

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(database, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            request = terminal.purchase(5000)
            answer = await terminal.send(request)
            assert answer.response_code == ResponseCode.ISSUER_TIMEOUT and terminal.verifies(answer)
            key = TransactionKey(TERMINAL, 1, request.stan or 0)
            assert records(database, key) == TransactionStatus.REVERSAL_QUEUED
            retry = await terminal.send(request)  # never forwarded again once given up
            assert retry.response_code == ResponseCode.ISSUER_TIMEOUT
            await asyncio.sleep(0.3)
            assert saf_counts(database)[0] == 1
            double.mode = "answer"
            await eventually(lambda: saf_counts(database) == (0, 1))
        reversals = [m for m in double.received if isinstance(m, ReversalRequest)]
        assert reversals[0].mti == "0400" and reversals[-1].mti == "0420" and len(reversals) >= 2
        assert (
            reversals[-1].rrn == "000000000001" and reversals[-1].response_code == ResponseCode.ISSUER_TIMEOUT
        )
        originals = [m for m in double.received if isinstance(m, AuthorizationRequest)]
        assert len(originals) == 1
        # the issuer double applied the original when it was silent? it never answered, so it applied nothing;
        # the reversal settles it either way: nothing stays posted
        assert double.net_posted_fen() == 0

    run(scenario())


def test_a_switch_answering_91_for_a_purchase_gets_it_reversed_and_a_switch_down_is_91_with_nothing_queued(
    sqlite: Database,
) -> None:
    double = SwitchDouble(mode="91")

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            answer = await terminal.send(terminal.purchase(stan=5))
            assert answer.response_code == ResponseCode.ISSUER_UNAVAILABLE
            assert saf_counts(sqlite)[0] == 1
            with sqlite.unit_of_work(AcquirerUnitOfWork) as uow:
                record = uow.transactions.get(TransactionKey(TERMINAL, 1, 5))
            assert record is not None and record.response_code == "91"  # as the terminal was told
            double.mode = "answer"
            await eventually(lambda: saf_counts(sqlite) == (0, 1))
            retry = await terminal.send(terminal.purchase(stan=5))  # given up: never forwarded again
            assert retry.response_code == ResponseCode.ISSUER_UNAVAILABLE and len(double.received) == 2
            assert host.status().endswith("1 reversal(s) and advice(s) delivered, 0 to repeat; switch up")
        async with (
            acquirer(sqlite, platform_hsm(), 1, hop_timeout_s=300.0) as host,
            terminal_link(host.port) as terminal,
        ):  # no switch listens on port 1: answered at once, not after the hop's 300 s
            await terminal.sign_on()
            down = await terminal.send(terminal.purchase(stan=77), timeout_s=10)
            assert down.response_code == ResponseCode.ISSUER_UNAVAILABLE
            assert saf_counts(sqlite) == (0, 1)  # never sent: nothing to reverse
            assert "; switch down (" in host.status()

    run(scenario())


def test_while_the_switch_refuses_connections_queued_reversals_wait_without_spending_attempts(
    sqlite: Database,
) -> None:
    """A reversal queued while the switch is down is not tried again and again (each try would fail at once
    and push its next try back, up to a minute): the queue waits for the link, then delivers."""
    double = SwitchDouble()

    def attempts() -> list[int]:
        with sqlite.engine.connect() as connection:
            return [row[0] for row in connection.execute(text("SELECT attempts FROM acquirer_saf"))]

    async def scenario() -> None:
        sw = Iso8583Server(double.handle)
        await sw.start()
        port = sw.port
        async with acquirer(sqlite, platform_hsm(), port) as host, terminal_link(host.port) as terminal:
            await terminal.sign_on()
            approved = await terminal.send(terminal.purchase(stan=10))
            await sw.stop()
            await eventually(lambda: host.link.down is not None)
            ack = await terminal.send(reversal(terminal, 10))
            assert ack.response_code == ResponseCode.APPROVED and saf_counts(sqlite) == (1, 0)
            await asyncio.sleep(1.0)  # 10 of the queue's rounds (saf_idle_s 0.05, backoff 20-100 ms)
            assert attempts() == [0], attempts()
            async with switch(double, port=port):
                await eventually(lambda: saf_counts(sqlite) == (0, 1))
        assert double.deliveries[f"R{INSTITUTION}-{approved.rrn}"] == 1

    run(scenario())


def test_a_switch_that_answers_nothing_is_found_silent_and_terminals_get_91_at_once_until_it_answers(
    sqlite: Database,
) -> None:
    """A hung switch (connected, answering nothing): once a purchase has waited with nothing received, and
    an echo test is unanswered too, the acquirer takes it as silent; the purchase is answered 98 or 91, its
    reversal queued. A purchase is then answered 91 at once, not sent and with nothing to reverse, and the
    queue spends no attempts. Once the switch answers an echo test again, the queue delivers the reversal and
    purchases go through."""
    double = SwitchDouble(mode="silent")
    limits = replace(FAST_LINK, silent_after_s=0.1, probe_interval_s=0.05)

    def attempts() -> list[int]:
        with sqlite.engine.connect() as connection:
            return [row[0] for row in connection.execute(text("SELECT attempts FROM acquirer_saf"))]

    def forwarded() -> int:
        return sum(not isinstance(m, NetworkManagementRequest) for m in double.received)

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, platform_hsm(), sw.port, link_limits=limits) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            answer = await terminal.send(terminal.purchase(stan=1))  # 91 when the silent switch's connection
            assert answer.response_code in {  # is dropped; 98 if its hop timeout came first (a slow machine)
                ResponseCode.ISSUER_TIMEOUT,
                ResponseCode.ISSUER_UNAVAILABLE,
            }
            await eventually(lambda: host.link.silent is not None)
            assert re.search(
                r"; switch silent \(nothing received for 0\.\d s: 1 request\(s\) and an echo test"
                r" unanswered\)$",
                host.status(),
            ), host.status()
            sent = forwarded()
            down = await terminal.send(terminal.purchase(stan=2), timeout_s=10)
            assert down.response_code == ResponseCode.ISSUER_UNAVAILABLE and forwarded() == sent
            await asyncio.sleep(0.3)  # the queue's round under way when the switch was found silent ends
            tried = attempts()
            await asyncio.sleep(0.5)  # 10 of the queue's rounds
            assert attempts() == tried and saf_counts(sqlite) == (1, 0) and forwarded() == sent
            double.mode = "answer"
            await eventually(lambda: host.link.silent is None)
            await eventually(lambda: saf_counts(sqlite) == (0, 1))
            assert (await terminal.send(terminal.purchase(stan=3))).response_code == ResponseCode.APPROVED
        assert double.net_posted_fen() == 1250  # the last purchase; the first reversed, the second never sent

    run(scenario())


def reversal(terminal: Terminal, original_stan: int) -> ReversalRequest:
    """The terminal's 0400 of its purchase ``original_stan``: 11 and 60.2 name it (UnionPay POS practice)."""
    return ReversalRequest(
        mti="0400",
        pan=PAN,
        processing_code="000000",
        amount_fen=1250,
        stan=original_stan,
        pos_entry_mode="071",
        condition_code="00",
        response_code=ResponseCode.ISSUER_TIMEOUT,
        terminal_id=terminal.terminal_id,
        merchant_id=terminal.merchant_id,
        currency="156",
        field60=Field60("22", 1),
        mac=bytes(8),
    )


def test_a_terminal_reversal_sent_5_times_is_applied_once_and_one_before_its_original_refuses_it(
    database: Database,
) -> None:
    double = SwitchDouble()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(database, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            purchase = terminal.purchase(stan=10)
            approved = await terminal.send(purchase)
            acks = [await terminal.send(replace(reversal(terminal, 10), mti="0420")) for _ in range(5)]
            assert {a.response_code for a in acks} == {ResponseCode.APPROVED}
            assert {a.rrn for a in acks} == {approved.rrn} and all(terminal.verifies(a) for a in acks)
            await eventually(lambda: saf_counts(database) == (0, 1))
            early = await terminal.send(reversal(terminal, 20))
            assert early.response_code == ResponseCode.APPROVED
            late = await terminal.send(terminal.purchase(stan=20))
            assert late.response_code == ResponseCode.INVALID_TRANSACTION
        assert double.deliveries[f"R{INSTITUTION}-{approved.rrn}"] == 1
        assert double.net_posted_fen() == 0
        forwarded_stans = [m.stan for m in double.received if isinstance(m, AuthorizationRequest)]
        assert forwarded_stans == [10]  # the late original never left the acquirer
        assert records(database, TransactionKey(TERMINAL, 1, 20)) == TransactionStatus.TOMBSTONE

    run(scenario())


def test_a_void_carries_its_original_rrn_and_a_refund_advice_is_acknowledged_then_forwarded(
    sqlite: Database,
) -> None:
    double = SwitchDouble()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            original = await terminal.send(terminal.purchase(stan=30))
            void = terminal.void(stan=31, original_stan=30)
            voided = await terminal.send(void)
            orphan = await terminal.send(replace(void, stan=32, original="0000010000091203"))
            of_voided = await terminal.send(terminal.refund(500, stan=33, original="0000010000301203"))
            second = await terminal.send(terminal.purchase(stan=34))
            double.mode = "silent"
            refund = terminal.refund(500, stan=35, original="0000010000341203")
            acked = await terminal.send(refund)
            assert acked.response_code == ResponseCode.APPROVED and terminal.verifies(acked)
            double.mode = "answer"
            await eventually(lambda: saf_counts(sqlite) == (0, 1))
        assert voided.response_code == ResponseCode.APPROVED
        assert orphan.response_code == ResponseCode.NO_ORIGINAL_TRANSACTION
        assert of_voided.response_code == ResponseCode.INVALID_TRANSACTION  # refused at once, not kept
        void_sent = next(m for m in double.received if m.stan == 31)
        assert void_sent.original == "0000010000301203" + (original.rrn or "")
        [advice] = [m for m in double.received if isinstance(m, AdviceRequest)]
        assert advice.rrn == acked.rrn and advice.original == "0000010000341203" + (second.rrn or "")
        assert advice.mac is None and advice.acquirer_id == INSTITUTION

    run(scenario())


def test_a_void_of_a_purchase_of_another_batch_is_refused_12_and_nothing_forwarded(sqlite: Database) -> None:
    """消费撤销 is of the terminal's current batch (UnionPay POS practice): a void whose 61 names a purchase
    of another batch than its own 60.2 is answered 12, nothing forwarded or recorded; the terminal refunds
    a settled purchase instead."""
    double = SwitchDouble()

    async def scenario() -> None:
        async with signed_on(double, sqlite) as (_, terminal):
            assert (await terminal.send(terminal.purchase(stan=60))).approved
            forwarded = len(double.received)
            void = in_batch(terminal.void(stan=61, original_stan=60), 2)
            refused = await terminal.send(void)
            assert refused.response_code == ResponseCode.INVALID_TRANSACTION and terminal.verifies(refused)
            assert len(double.received) == forwarded
        assert records(sqlite, TransactionKey(TERMINAL, 2, 61)) is None

    run(scenario())


def test_a_voids_reversal_names_the_void_by_its_11_though_its_61_repeats_the_purchases(
    sqlite: Database,
) -> None:
    """A reversal repeats its original's fields, 61 too: a void's 61 names the purchase it voids. The
    acquirer takes the reversed transaction from the reversal's own 11 and 60.2 (UnionPay POS practice,
    docs/iso8583.md's sources), so the void is reversed and the purchase left as it was."""
    double = SwitchDouble()

    async def scenario() -> None:
        async with signed_on(double, sqlite) as (_, terminal):
            purchase = await terminal.send(terminal.purchase(stan=50))
            void = terminal.void(stan=51, original_stan=50)
            voided = await terminal.send(void)
            assert purchase.approved and voided.approved
            of_void = replace(reversal(terminal, 51), processing_code="200000", original=void.original)
            ack = await terminal.send(of_void)
            assert ack.response_code == ResponseCode.APPROVED and ack.rrn == voided.rrn
            await eventually(lambda: saf_counts(sqlite) == (0, 1))
        [sent] = [m for m in double.received if isinstance(m, ReversalRequest)]
        assert (sent.stan, sent.rrn) == (51, voided.rrn)
        assert records(sqlite, TransactionKey(TERMINAL, 1, 51)) == TransactionStatus.REVERSAL_QUEUED
        assert records(sqlite, TransactionKey(TERMINAL, 1, 50)) == TransactionStatus.ANSWERED

    run(scenario())


def test_an_offline_upload_is_kept_once_and_acknowledged_each_time(sqlite: Database) -> None:
    double = SwitchDouble()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            upload = BatchUpload(
                mti="0320",
                pan=PAN,
                processing_code="000000",
                amount_fen=200,
                stan=40,
                terminal_id=TERMINAL,
                merchant_id=MERCHANT,
                currency="156",
                icc=IccData.of([("9F26", bytes(8)), ("9F27", b"\x40")]),
                field60=Field60("36", 1),
                mac=bytes(8),
            )
            first = await terminal.send(upload)
            second = await terminal.send(upload)
        assert first.response_code == second.response_code == ResponseCode.APPROVED
        assert terminal.verifies(first) and terminal.verifies(second)
        with acquirer_unit_of_work(sqlite, RecordProtection.open(host.hsm)) as uow:
            assert uow.uploads.count() == 1
            kept = uow.uploads.get(TransactionKey(TERMINAL, 1, 40))
        assert kept is not None and kept.pan_masked == "622424******0113" and kept.amount_fen == 200
        assert double.received == []  # kept for clearing, not forwarded

    run(scenario())


def test_random_bytes_and_malformed_messages_close_or_get_30_nothing_is_forwarded_and_it_keeps_serving(
    sqlite: Database,
) -> None:
    double = SwitchDouble()

    async def scenario() -> None:
        async with switch(double) as sw, acquirer(sqlite, platform_hsm(), sw.port) as host:
            for garbage in (b"\x00\x05hello", bytes(range(256)), b"\x00\x1a" + b"\x60" + bytes(25)):
                reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
                writer.write(garbage)
                await writer.drain()
                async with asyncio.timeout(5):
                    rest = await reader.read()
                writer.close()
                assert rest == b""  # closed
            async with terminal_link(host.port) as terminal:
                await terminal.sign_on()
                fields = dict(terminal.sign(terminal.purchase()).to_fields().fields)
                fields[55] = b"\x9f\x26\x08\x01\x02"  # 9F26 says 8 bytes, 2 follow: not BER-TLV
                frame = encode_frame(Frame(Tpdu(6, 1), Header(), encode_message(RawMessage("0200", fields))))
                reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
                await write_frame(writer, frame)
                back = await read_frame(reader, body_timeout_s=5)
                writer.close()
                assert back is not None
                _, raw = decode_frame(back)
                assert raw.mti == "0210" and raw.fields[39] == "30" and raw.fields[41] == TERMINAL
                answer = await terminal.send(terminal.purchase())
                assert answer.response_code == ResponseCode.APPROVED
            assert host.server.stats.closed_for_garbage == 3 and host.server.stats.format_errors == 1
        assert len(double.received) == 1
        with sqlite.unit_of_work(AcquirerUnitOfWork) as uow:
            assert uow.transactions.get(TransactionKey(TERMINAL, 1, 2)) is None  # the malformed one

    run(scenario())


def test_stopping_with_a_request_in_flight_waits_for_it_and_its_reversal_is_on_disk(sqlite: Database) -> None:
    double = SwitchDouble(mode="silent")

    async def scenario() -> None:
        async with switch(double) as sw:
            host_cm = acquirer(sqlite, platform_hsm(), sw.port, hop_timeout_s=1.0)
            host = await host_cm.__aenter__()
            try:
                async with terminal_link(host.port) as terminal:
                    await terminal.sign_on()
                    pending = asyncio.create_task(terminal.send(terminal.purchase(), timeout_s=5))
                    await eventually(lambda: len(double.received) == 1)
                    await host.stop()  # Ctrl-C while the purchase waits for the switch
                    answer = await pending
            finally:
                await host_cm.__aexit__(None, None, None)
        assert answer.response_code == ResponseCode.ISSUER_TIMEOUT
        assert saf_counts(sqlite) == (1, 0)  # kept for the next start

    run(scenario())
