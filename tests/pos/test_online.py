"""The terminal online over ISO 8583 on a real loopback socket, to the real ``IssuerService`` (through the
small acquirer of ``tests/pos/loopback_acquirer.py``): sign-on and MAC, EC load (圈存) with the chip's
balance and the issuer's EC float moving together, online purchase with online PIN, a pending block
script delivered on the next online purchase, a lost answer reversed from the terminal's journal, the
offline upload acknowledged once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from citycard.chip.card import Card as ChipCard
from citycard.db import Database
from citycard.hosts.terminal import AcquirerClient, AcquirerUnreachable
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import ActivateCard, BlockCard, Deposit, IssueCards, SetPin
from citycard.issuer.handlers import IssuerService
from citycard.issuer.views import card_status
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.kernel.events import OutcomeKind
from citycard.pos.online import TerminalIdentity, balances
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal

from tests.chip.conftest import counter_rng
from tests.issuer.conftest import MemorySink
from tests.pos.loopback_acquirer import LoopbackAcquirer, inject_tmk, serving

NOW = dt.datetime(2026, 11, 25, 10, 0, 0)
TID, MID = "CITY0001", "CITYMERCHANT001"
DATA_KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
PIN = "246810"


@pytest.fixture
def world(
    banks: IssuerService, hsm: SoftHsm, sink: MemorySink, demo_ca: Any, tmp_path: Path
) -> dict[str, Any]:
    terminal_hsm = SoftHsm(bytes([7]) * 32)
    inject_tmk(hsm, terminal_hsm, TID)
    (card,) = banks.issue_cards(
        IssueCards("ICBC", "debit-ec", holder_name="Li Ming", id_number="11010519491231002X")
    )
    banks.activate(ActivateCard(card.pan))
    banks.set_pin(SetPin(card.pan, hsm.encrypt_pin(hsm.get("icbc-zpk"), PIN, card.pan)))
    banks.deposit(Deposit(card.pan, 50_000, "dep-1"))
    chip = ChipCard(sink.images[card.pan], counter_rng(card.pan.encode()))
    capk = CaPublicKey(bytes.fromhex("A000000333"), 0xF1, demo_ca.public.modulus, demo_ca.public.exponent)
    return {
        "pan": card.pan,
        "chip": chip,
        "config": TerminalConfig(capks=(capk,)),
        "terminal_hsm": terminal_hsm,
        "journal": SqliteJournal(tmp_path / "journal.db", TID),
        "acquirer": LoopbackAcquirer(banks, hsm),
    }


def _client(world: dict[str, Any], port: int, timeout_s: float = 10.0) -> AcquirerClient:
    return AcquirerClient(
        "127.0.0.1",
        port,
        identity=TerminalIdentity(TID, MID),
        hsm=world["terminal_hsm"],
        journal=world["journal"],
        data_key=DATA_KEY,
        timeout_s=timeout_s,
        clock=lambda: NOW,
    )


def _pos(world: dict[str, Any], client: AcquirerClient) -> PosTerminal:
    return PosTerminal(
        world["config"],
        world["journal"],
        clock=lambda: NOW,
        data_key=DATA_KEY,
        host=client,
        pin_pad=client.pin_pad,
    )


def _tap(world: dict[str, Any]):
    chip = world["chip"]
    chip.power_on("contact")
    return chip.transmit


def _status(banks: IssuerService, pan: str) -> dict[str, Any]:
    with banks._uow() as uow:  # read-only look at the books
        return card_status(uow, pan)


def _chip_ec(world: dict[str, Any], pos: PosTerminal) -> int:
    from citycard.kernel.kernel import TransactionKind

    out = pos.inquiry(_tap(world), TransactionKind.EC_BALANCE)
    assert out.kind is OutcomeKind.COMPLETED
    return out.ec_balance_fen


def test_ec_load_moves_the_chip_and_the_issuers_ec_float_together(world, banks, database: Database) -> None:
    with serving(world["acquirer"]) as port, _client(world, port) as client:
        pos = _pos(world, client)
        before = _status(banks, world["pan"])
        result = pos.load(_tap(world), 20_000, pin=lambda _: PIN)
        assert result.approved, result.outcome.reason
        assert _chip_ec(world, pos) == before["ec_balance_fen"] + 20_000
    after = _status(banks, world["pan"])
    assert after["ec_balance_fen"] == before["ec_balance_fen"] + 20_000
    assert after["deposit_available_fen"] == before["deposit_available_fen"] - 20_000
    sent = [m.mti for m in world["acquirer"].received]
    assert sent == ["0800", "0200"]  # signed on first (no keys yet), then the load with its MAC
    assert world["acquirer"].received[1].mac is not None
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced


def test_online_purchase_with_online_pin_then_a_pending_block_script(world, banks) -> None:
    with serving(world["acquirer"]) as port, _client(world, port) as client:
        pos = _pos(world, client)
        asked: list[str] = []
        result = pos.purchase(_tap(world), 150_000 // 10, pin=lambda r: asked.append(r.kind) or PIN)
        if not asked:  # the card's CVM list did not ask for an online PIN at this amount: force online
            pytest.skip("card profile does not ask for online PIN")
        assert result.approved and result.outcome.kind is OutcomeKind.APPROVED_ONLINE, result.outcome.reason
        assert world["acquirer"].received[-1].pin_block is not None
        assert _status(banks, world["pan"])["deposit_available_fen"] == 50_000 - 15_000
        banks.block(BlockCard(world["pan"]))
        assert _status(banks, world["pan"])["pending_script"]
        second = pos.purchase(_tap(world), 12_000, pin=lambda r: PIN)
        assert not second.approved
    status = _status(banks, world["pan"])
    assert not status["pending_script"]  # delivered to the card on its next online contact


def test_no_answer_queues_a_reversal_that_the_next_contact_delivers(world, banks) -> None:
    acquirer = world["acquirer"]
    acquirer.drop = 1  # the load is posted at the issuer, its answer lost
    journal: SqliteJournal = world["journal"]
    before = _status(banks, world["pan"])
    with serving(acquirer) as port:
        with _client(world, port, timeout_s=1.0) as client:
            pos = _pos(world, client)
            result = pos.load(_tap(world), 10_000, pin=lambda _: PIN)
            assert not result.approved
            (queued,) = journal.advices()
            assert queued.reason == "98" and queued.txn_id == result.entry.txn_id
            posted = _status(banks, world["pan"])
            assert posted["deposit_available_fen"] == before["deposit_available_fen"] - 10_000
        with _client(world, port) as client:  # the next contact flushes the queue
            flushed = client.flush()
    assert [a.txn_id for a in flushed.answered] == [queued.txn_id] and flushed.pending == 0
    after = _status(banks, world["pan"])
    assert after["deposit_available_fen"] == before["deposit_available_fen"]  # nets to zero
    assert after["ec_balance_fen"] == before["ec_balance_fen"]
    assert [m.mti for m in acquirer.received if m.mti.startswith("04")] == ["0400"]
    assert acquirer.received[-1].original[:12] == f"{result.entry.batch:06d}{result.entry.stan:06d}"


def test_unreachable_acquirer_is_one_clear_error(world) -> None:
    with pytest.raises(
        AcquirerUnreachable, match=r"acquirer 127\.0\.0\.1:\d+ unreachable \(connection refused\)"
    ):
        with serving(world["acquirer"]) as port:
            pass
        _client(world, port).open()


def test_offline_purchases_upload_once(world, banks) -> None:
    with serving(world["acquirer"]) as port, _client(world, port) as client:
        pos = _pos(world, client)
        # an EC load first so the card holds electronic cash, then two offline EC purchases
        assert pos.load(_tap(world), 10_000, pin=lambda _: PIN).approved
        for amount in (1_250, 800):
            sale = pos.purchase(_tap(world), amount)
            assert sale.approved and sale.outcome.kind is OutcomeKind.APPROVED_OFFLINE, sale.outcome.reason
        first = client.upload()
        second = client.upload()
    assert len(first.acknowledged) == 2 and not first.failed
    assert second.acknowledged == () and second.failed == ()
    uploads = world["acquirer"].uploads
    assert len(uploads) == 2
    for message in uploads.values():
        assert message.field60.message_type_code == "36" and message.icc.get("9F26") is not None


def test_balance_inquiry_online_reads_the_account(world, banks) -> None:
    with serving(world["acquirer"]) as port, _client(world, port) as client:
        pos = _pos(world, client)
        result = pos.balance_inquiry(_tap(world), pin=lambda _: PIN)
        assert result.approved, result.outcome.reason
        answer = client.answers[result.entry.txn_id]
    assert balances(answer.balance) == {"02": 50_000}
    assert result.entry.kind == "balance" and result.entry.amount_fen == 0
    request = world["acquirer"].received[-1]
    assert (request.processing_code, request.field60.message_type_code, request.amount_fen) == (
        "310000",
        "01",
        None,
    )


def test_an_approval_the_card_refuses_is_reversed_before_the_outcome(world, banks) -> None:
    """The issuer approves and posts; the card does not recognise the ARPC and declines (AAC): the reversal
    (39 = 06) is in the journal before the decline is recorded, and the next contact delivers it."""
    acquirer, journal = world["acquirer"], world["journal"]
    acquirer.corrupt_arpc = 1
    with serving(acquirer) as port:
        with _client(world, port) as client:
            pos = _pos(world, client)
            result = pos.purchase(_tap(world), 15_000, pin=lambda _: PIN)
            assert not result.approved and result.outcome.kind is OutcomeKind.DECLINED_ONLINE
            (queued,) = journal.advices()
            assert queued.reason == "06" and queued.txn_id == result.entry.txn_id
            assert _status(banks, world["pan"])["deposit_available_fen"] == 50_000 - 15_000  # posted
        with _client(world, port) as client:
            assert client.flush().pending == 0
    assert _status(banks, world["pan"])["deposit_available_fen"] == 50_000  # nets to zero
    reversal = acquirer.received[-1]
    assert reversal.mti == "0400" and str(reversal.response_code) == "06"
