"""Batch settlement (0500/0510) at the acquirer over real loopback sockets: the terminal's totals in field 48
against the acquirer's own records of that terminal and batch — 00 and settlement code 1 when they balance,
95 and code 2 (with the acquirer's totals) when not, 30 for a malformed field 48; a batch settled balanced is
closed (77 until the terminal signs on to the next)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from citycard.codec.iso8583 import (
    BatchUpload,
    Field60,
    IccData,
    Message,
    ResponseCode,
)
from citycard.codec.iso8583.messages import SettlementRequest, reversal_of
from citycard.codec.iso8583.totals import BatchTotals, SettleCode
from citycard.db import Database
from citycard.pos.online import OnlineKind, TerminalIdentity, batch_upload_end, batch_upload_record

from tests.acquirer.support import (
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
from tests.net.support import run


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Database]:
    with fresh_database("sqlite", tmp_path) as db:
        yield db


def settlement(stan: int, totals: BatchTotals | str, batch: int = 1) -> SettlementRequest:
    return SettlementRequest(
        mti="0500",
        stan=stan,
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        additional_data=totals if isinstance(totals, str) else totals.field48(),
        currency="156",
        field60=Field60("00", batch, "201"),
        mac=bytes(8),
    )


def test_field48_layout() -> None:
    totals = BatchTotals(debit_fen=12345, debit_count=3, credit_fen=500, credit_count=1)
    digits = totals.field48()
    assert digits == "0000000123450030000000005000010" + "0" * 30 + "0"
    assert BatchTotals.parse(totals.field48(SettleCode.BALANCED)) == (totals, SettleCode.BALANCED)
    for bad in ("1" * 61, "x" * 62, digits[:30] + "7" + digits[31:], digits[:40] + "1" + digits[41:]):
        with pytest.raises(ValueError, match="field 48"):
            BatchTotals.parse(bad)
    with pytest.raises(ValueError, match="n3"):
        BatchTotals(debit_count=1000)


def test_balanced_batch_is_00_and_out_of_balance_95(sqlite: Database) -> None:
    double = SwitchDouble()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, platform_hsm(), sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            first = await terminal.send(terminal.purchase(1250, stan=30))
            await terminal.send(terminal.purchase(800, stan=31))
            void = terminal.void(800, stan=32, original_stan=31)
            assert (await terminal.send(void)).response_code == ResponseCode.APPROVED
            refund = terminal.refund(500, stan=33, original="0000010000301203")
            assert (await terminal.send(refund)).response_code == ResponseCode.APPROVED
            upload = BatchUpload(
                mti="0320",
                pan=PAN,
                processing_code="000000",
                amount_fen=200,
                stan=34,
                terminal_id=TERMINAL,
                merchant_id=MERCHANT,
                currency="156",
                icc=IccData.of([("9F26", bytes(8)), ("9F27", b"\x40")]),
                field60=Field60("36", 1),
                mac=bytes(8),
            )
            assert (await terminal.send(upload)).response_code == ResponseCode.APPROVED
            assert first.response_code == ResponseCode.APPROVED

            right = BatchTotals(
                debit_fen=1250 + 800 - 800 + 200, debit_count=2, credit_fen=500, credit_count=1
            )
            answer = await terminal.send(settlement(35, right))
            assert answer.mti == "0510" and terminal.verifies(answer)
            assert answer.response_code == ResponseCode.APPROVED
            assert BatchTotals.parse(answer.additional_data) == (right, SettleCode.BALANCED)

            wrong = replace(right, debit_fen=right.debit_fen + 1)
            answer = await terminal.send(settlement(36, wrong))
            assert answer.response_code == ResponseCode.RECONCILE_ERROR and terminal.verifies(answer)
            assert BatchTotals.parse(answer.additional_data) == (right, SettleCode.OUT_OF_BALANCE)

            other_batch = await terminal.send(settlement(37, right, batch=2))
            assert other_batch.response_code == ResponseCode.RECONCILE_ERROR
            assert BatchTotals.parse(other_batch.additional_data) == (
                BatchTotals(),
                SettleCode.OUT_OF_BALANCE,
            )

            malformed = await terminal.send(settlement(38, "9" * 61))
            assert malformed.response_code == ResponseCode.FORMAT_ERROR

    run(scenario())


def test_a_batch_settled_balanced_is_closed_77_until_the_terminal_signs_on_to_the_next(
    sqlite: Database,
) -> None:
    """After a 0500 answered 00 a request into that batch (or an earlier one) is answered 77, nothing
    forwarded or recorded; the settlement itself may be sent again (00); the sign-on's 0810 names the next
    batch, in which the terminal goes on; an acquirer started again on the same database knows it too."""
    double = SwitchDouble()
    hsm = platform_hsm()

    async def scenario() -> None:
        async with switch(double) as sw:
            async with acquirer(sqlite, hsm, sw.port) as host, terminal_link(host.port) as terminal:
                await terminal.sign_on()
                assert (await terminal.send(terminal.purchase(1250, stan=40))).response_code == "00"
                settled = await terminal.send(settlement(41, BatchTotals(1250, 1)))
                assert settled.response_code == ResponseCode.APPROVED
                forwarded = len(double.received)

                for late in (terminal.purchase(300, stan=42), in_batch(terminal.purchase(300, stan=43), 0)):
                    answer = await terminal.send(late)
                    assert answer.response_code == ResponseCode.BATCH_MISMATCH and terminal.verifies(answer)
                assert len(double.received) == forwarded  # nothing forwarded
                again = await terminal.send(settlement(44, BatchTotals(1250, 1)))
                assert again.response_code == ResponseCode.APPROVED  # a settlement may be sent again

                await terminal.sign_on()
                answer = terminal.signed_on
                assert answer is not None and answer.field60 is not None
                assert answer.field60.batch_number == 2  # the next batch
                next_batch = in_batch(terminal.purchase(500, stan=45), 2)
                assert (await terminal.send(next_batch)).response_code == ResponseCode.APPROVED

            async with acquirer(sqlite, hsm, sw.port) as host, terminal_link(host.port) as terminal:
                await terminal.sign_on()
                late = await terminal.send(terminal.purchase(300, stan=46))
                assert late.response_code == ResponseCode.BATCH_MISMATCH  # the settled batch, read at start

    run(scenario())
    with sqlite.engine.connect() as db:
        stans = {row[0] for row in db.execute(text("SELECT stan FROM acquirer_transactions"))}
    assert stans == {40, 45}  # the refused ones were never recorded


def _record(terminal: Terminal, amount_fen: int, stan: int, rrn: str) -> Message:
    """A batch-upload record (批上送, 60.3 201) of the terminal's purchase of batch 1, as terminals send."""
    identity = TerminalIdentity(terminal.terminal_id, terminal.merchant_id)
    return batch_upload_record(
        OnlineKind.PURCHASE, identity=identity, amount_fen=amount_fen, stan=stan, batch=1, rrn=rrn
    )


def test_a_batch_out_of_balance_is_uploaded_each_difference_logged_and_closed_at_the_end(
    sqlite: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """After a 95 the terminal uploads the batch's online transactions (批上送, 0320 60.3 201): each is
    compared with the acquirer's record, a difference logged (WARNING), nothing recorded or changed; the end
    of the upload (0320 60.3 202, 48 the count) closes the batch out of balance, our records ruling: 77
    to later requests into it, as after a balanced settlement."""
    double = SwitchDouble()

    async def scenario() -> None:
        async with signed_on(double, sqlite) as (_, terminal):
            sale = await terminal.send(terminal.purchase(1250, stan=70))
            assert sale.approved and sale.rrn is not None
            theirs = BatchTotals(1250 + 900, 2)  # a purchase of 9.00 the acquirer never saw
            out = await terminal.send(settlement(71, theirs))
            assert out.response_code == ResponseCode.RECONCILE_ERROR
            for record in (
                _record(terminal, 1250, 70, sale.rrn),  # as ours: nothing said
                _record(terminal, 900, 72, "000000000099"),
                _record(terminal, 1000, 70, sale.rrn),  # another amount than ours
            ):
                answer = await terminal.send(record)
                assert answer.response_code == ResponseCode.APPROVED and terminal.verifies(answer)
            offline = replace(_record(terminal, 300, 73, "000000000098"), field60=Field60("36", 1, "201"))
            assert (await terminal.send(offline)).response_code == ResponseCode.INVALID_TRANSACTION
            identity = TerminalIdentity(terminal.terminal_id, terminal.merchant_id)
            end = batch_upload_end(identity=identity, stan=74, batch=1, records=3)
            assert (await terminal.send(end)).response_code == ResponseCode.APPROVED
            late = await terminal.send(terminal.purchase(500, stan=75))
            assert late.response_code == ResponseCode.BATCH_MISMATCH

    with caplog.at_level(logging.WARNING, logger="citycard.hosts.acquirer"):
        run(scenario())
    said = [r.getMessage() for r in caplog.records if r.name == "citycard.hosts.acquirer"]
    differences = [m for m in said if m.startswith("batch upload:")]
    assert len(differences) == 2, said
    assert "stan 000072, a purchase of 900 fen approved there: we have no record of it" in differences[0]
    assert (
        "stan 000070, a purchase of 1000 fen approved there: we have a purchase of 1250 fen" in differences[1]
    )
    assert any("batch 1 closed out of balance after a batch upload of 0003" in m for m in said), said
    with sqlite.engine.connect() as db:
        stans = sorted(row[0] for row in db.execute(text("SELECT stan FROM acquirer_transactions")))
    assert stans == [70]  # the uploaded records changed nothing


def test_the_reversal_of_a_load_in_a_settled_batch_is_still_taken_a_purchases_is_answered_77(
    sqlite: Database,
) -> None:
    """EC loads are not in a batch's totals, so settling the batch does not close them: the reversal of a
    load into a settled batch (one a terminal held for the card's load log, released the next day) is
    acknowledged and forwarded, where the reversal of a purchase the settlement counted is answered 77 and
    nothing is forwarded."""
    double = SwitchDouble()

    async def scenario() -> None:
        async with signed_on(double, sqlite) as (_, terminal):
            sale = terminal.purchase(1250, stan=50)
            load = replace(
                terminal.purchase(10_000, stan=51),
                processing_code="630000",
                condition_code="91",
                field60=Field60("46", 1),
            )
            assert (await terminal.send(sale)).response_code == ResponseCode.APPROVED
            loaded = await terminal.send(load)
            assert loaded.response_code == ResponseCode.APPROVED
            settled = await terminal.send(settlement(52, BatchTotals(1250, 1)))  # the load is not counted
            assert settled.response_code == ResponseCode.APPROVED
            forwarded = len(double.received)

            of_sale = await terminal.send(reversal_of(sale, ResponseCode.ERROR))
            assert of_sale.response_code == ResponseCode.BATCH_MISMATCH and terminal.verifies(of_sale)
            of_load = await terminal.send(reversal_of(load, ResponseCode.ERROR))
            assert of_load.response_code == ResponseCode.APPROVED and terminal.verifies(of_load)
            assert of_load.rrn == loaded.rrn
            await eventually(lambda: len(double.received) > forwarded)
        sent = double.received[forwarded:]
        assert [(m.mti, m.stan, m.rrn) for m in sent] == [("0400", 51, loaded.rrn)]

    run(scenario())


def test_a_batch_settled_through_another_acquirer_on_the_database_is_closed_here_within_its_reload(
    sqlite: Database,
) -> None:
    """Two acquirers on one database (a pair behind one address): the terminal settles through A; B, which
    the terminal has not signed on to since, answers 77 to a request into that batch once its reload
    (``settled_reload_s``) has read it, with no sign-on in between."""
    double = SwitchDouble()
    hsm = platform_hsm()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(sqlite, hsm, sw.port) as a,
            acquirer(sqlite, hsm, sw.port, settled_reload_s=0.2) as b,
            terminal_link(a.port) as at_a,
            terminal_link(b.port, lambda link: Terminal(link, hsm=at_a.hsm)) as at_b,  # one terminal
        ):
            await at_a.sign_on()  # its keys, which both acquirers read from the registry
            assert (await at_b.send(at_b.purchase(700, stan=50))).response_code == ResponseCode.APPROVED
            answer = await at_a.send(settlement(51, BatchTotals(700, 1)))
            assert answer.response_code == ResponseCode.APPROVED
            deadline = asyncio.get_running_loop().time() + 10
            while b._settled.get(TERMINAL) != 1:  # the reload's next look
                assert asyncio.get_running_loop().time() < deadline, "B never read the settlement made at A"
                await asyncio.sleep(0.05)
            late = await at_b.send(at_b.purchase(300, stan=52))
            assert late.response_code == ResponseCode.BATCH_MISMATCH and at_b.verifies(late)

    run(scenario())
    with sqlite.engine.connect() as db:
        stans = {row[0] for row in db.execute(text("SELECT stan FROM acquirer_transactions"))}
    assert stans == {50}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_settled_batches_are_kept_per_terminal_and_never_go_back(kind: str, tmp_path: Path) -> None:
    from citycard.db.acquirer_repositories import AcquirerUnitOfWork

    with fresh_database(kind, tmp_path) as db:

        def record(terminal: str, batch: int) -> int:
            with db.unit_of_work(AcquirerUnitOfWork) as uow:
                last = uow.batches.record_settled(terminal, batch, 1_796_000_000 * 10**9)
                uow.commit()
            return last

        assert (record("T0000001", 3), record("T0000001", 5), record("T0000002", 1)) == (3, 5, 1)
        assert record("T0000001", 4) == 5 and record("T0000001", 5) == 5  # older, or again: stays 5
        with db.unit_of_work(AcquirerUnitOfWork, read_only=True) as uow:
            assert uow.batches.settled() == {"T0000001": 5, "T0000002": 1}
            assert uow.batches.settled("T0000002") == {"T0000002": 1}
            assert uow.batches.settled("T0000009") == {}
            assert uow.batches.settled(since_ns=1_796_000_000 * 10**9) == {"T0000001": 5, "T0000002": 1}
            assert uow.batches.settled(since_ns=1_796_000_001 * 10**9) == {}  # none settled since
