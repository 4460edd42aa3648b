"""The terminal online over ISO 8583 through the whole chain on loopback sockets — acquirer, switch, the
bank's issuer front end, ``IssuerService`` (``tests/pos/chain.py``): sign-on and MAC, EC load (圈存) with the
chip's balance and the issuer's EC float moving together, online purchase with online PIN, balance inquiry,
void, refund, a pending block script delivered on the next online purchase, a lost answer and a refused
approval reversed from the terminal's journal (the account nets to zero), the offline upload acknowledged
once. Faults come from a proxy between the terminal and the acquirer (``tests/pos/proxy.py``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from citycard import bootstrap
from citycard.chip.card import Card as ChipCard
from citycard.codec.iso8583 import parse
from citycard.codec.iso8583.wire import decode_message
from citycard.config import settings
from citycard.demokeys import DemoKeys
from citycard.files import card_image_path, load_card
from citycard.hosts.acquirer import mak_label, tmk_label
from citycard.hosts.terminal import AcquirerClient, AcquirerUnreachable, FlushResult, RefundRefused
from citycard.hsm import KeyUsage
from citycard.issuer.commands import BlockCard, UnblockCard
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind
from citycard.pos.online import TerminalIdentity, balances
from citycard.pos.terminal import AlreadyVoided, PosTerminal
from citycard.sqlite_journal import SqliteJournal

from tests.chip.conftest import counter_rng
from tests.pos.chain import MID, PIN, TID, Chain, chain
from tests.pos.proxy import Proxy, damaged_arpc, drop

DATA_KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
DEADLINE_S = 20.0


class World:
    def __init__(self, net: Chain, tmp_path: Path) -> None:
        self.net = net
        image = load_card(card_image_path(net.home / "cards", "ICBC", net.pan))
        self.chip = ChipCard(image, counter_rng(net.pan.encode()))
        rid, index, key = DemoKeys.load_or_create(net.home / "demo-keys.json").ca_public_key()
        capk = CaPublicKey(bytes.fromhex(rid), index, key.modulus, key.exponent)
        self.config = TerminalConfig(capks=(capk,))
        self.journal = SqliteJournal(tmp_path / "journal.db", TID)
        self.hsm = bootstrap.terminal_hsm(settings(), TID)

    def client(self, port: int | None = None, timeout_s: float = 10.0) -> AcquirerClient:
        return AcquirerClient(
            "127.0.0.1",
            port or self.net.port,
            identity=TerminalIdentity(TID, MID),
            hsm=self.hsm,
            journal=self.journal,
            data_key=DATA_KEY,
            timeout_s=timeout_s,
        )

    def pos(self, client: AcquirerClient, later: dt.timedelta | None = None) -> PosTerminal:
        """The terminal; ``later``: its clock that much ahead of the machine's."""
        clock = (lambda: dt.datetime.now() + later) if later is not None else dt.datetime.now
        return PosTerminal(
            self.config, self.journal, data_key=DATA_KEY, host=client, pin_pad=client.pin_pad, clock=clock
        )

    def tap(self, interface: str = "contact") -> Callable[[bytes], bytes]:
        self.chip.power_on(interface)
        return self.chip.transmit

    def chip_ec(self, pos: PosTerminal) -> int:
        out = pos.inquiry(self.tap(), TransactionKind.EC_BALANCE)
        assert out.kind is OutcomeKind.COMPLETED and out.ec_balance_fen is not None
        return out.ec_balance_fen

    @contextmanager
    def proxy(self) -> Iterator[Proxy]:
        proxy = Proxy(self.net.port)
        self.net.loop.run(proxy.start())
        try:
            yield proxy
        finally:
            self.net.loop.run(proxy.stop())


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield World(net, tmp_path)


def _eventually(check: Callable[[], bool]) -> None:
    """The acquirer forwards reversals by its store-and-forward task: wait for the issuer to have it."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, "not applied at the issuer in time"
        time.sleep(0.05)


def _balanced(world: World) -> bool:
    with world.net.issuer.database.unit_of_work() as uow:
        return bool(uow.ledger.totals().balanced)


def test_ec_load_moves_the_chip_and_the_issuers_ec_float_together(world: World) -> None:
    before = world.net.status()
    with world.client() as client:
        pos = world.pos(client)
        result = pos.load(world.tap(), 20_000, pin=lambda _: PIN)
        assert result.approved, result.outcome.reason
        assert world.chip_ec(pos) == before["ec_balance_fen"] + 20_000
    after = world.net.status()
    assert after["ec_balance_fen"] == before["ec_balance_fen"] + 20_000
    assert after["deposit_available_fen"] == before["deposit_available_fen"] - 20_000
    assert world.journal.counter("working_keys") is not None  # signed on first, by itself
    assert _balanced(world)


def test_cash_load_takes_cash_not_the_account(world: World) -> None:
    before = world.net.status()
    with world.client() as client:
        pos = world.pos(client)
        assert pos.load(world.tap(), 5_000, pin=lambda _: PIN, cash=True).approved
        assert world.chip_ec(pos) == before["ec_balance_fen"] + 5_000
    after = world.net.status()
    assert after["ec_balance_fen"] == before["ec_balance_fen"] + 5_000
    assert after["deposit_available_fen"] == before["deposit_available_fen"]


def test_online_purchase_with_online_pin_then_a_pending_block_script(world: World) -> None:
    with world.client() as client:
        pos = world.pos(client)
        asked: list[str] = []

        def pin(request: Any) -> str:
            asked.append(request.kind)
            return PIN

        # qPBOC: the card goes online (no electronic cash) and its CTQ asks for the online PIN
        result = pos.purchase(world.tap("contactless"), 15_000, pin=pin, interface="contactless")
        assert result.approved and result.outcome.kind is OutcomeKind.APPROVED_ONLINE, result.outcome.reason
        assert asked == ["online"]  # enciphered under the PIK, translated PIK -> ZPK, verified by the issuer
        assert world.net.status()["deposit_available_fen"] == 50_000 - 15_000
        world.net.issuer.service.block(BlockCard(world.net.pan))
        assert world.net.status()["pending_script"]
        second = pos.purchase(world.tap(), 12_000, pin=lambda _: PIN)
        assert not second.approved
    assert not world.net.status()["pending_script"]  # delivered to the card on its next online contact
    assert world.net.status()["deposit_available_fen"] == 50_000 - 15_000


def test_a_blocked_card_is_unblocked_by_script_at_a_bank_counters_terminal_and_pays_again(
    world: World,
) -> None:
    """A merchant's terminal leaves a blocked application out (SELECT 6283, EMV Book 1 §12.4), so the
    issuer's pending APPLICATION UNBLOCK can only reach the card at a bank counter's terminal, which selects
    it (``select_blocked``). The script comes in template 71, run before the second GENERATE AC: the card,
    unblocked, approves the very inquiry that carried it."""
    counter_config = dataclasses.replace(world.config, select_blocked=True)
    with world.client() as client:
        shop = world.pos(client)
        counter = PosTerminal(
            counter_config, world.journal, data_key=DATA_KEY, host=client, pin_pad=client.pin_pad
        )
        world.net.issuer.service.block(BlockCard(world.net.pan))
        assert not shop.purchase(world.tap(), 12_000, pin=lambda _: PIN).approved  # the block script runs
        assert world.net.status()["status"] == "blocked" and not world.net.status()["pending_script"]
        world.net.issuer.service.unblock(UnblockCard(world.net.pan))
        refused = shop.balance_inquiry(world.tap(), pin=lambda _: PIN)
        assert not refused.approved and "no mutually supported application" in refused.outcome.reason
        assert world.net.status()["pending_script"]  # the shop's terminal never reached the issuer
        unblocked = counter.balance_inquiry(world.tap(), pin=lambda _: PIN)
        assert unblocked.approved and unblocked.outcome.kind is OutcomeKind.APPROVED_ONLINE, unblocked.outcome
        assert not world.net.status()["pending_script"]
        again = shop.purchase(world.tap(), 12_000, pin=lambda _: PIN)
        assert again.approved and again.outcome.kind is OutcomeKind.APPROVED_ONLINE, again.outcome.reason
    assert world.net.status()["deposit_available_fen"] == 50_000 - 12_000


def test_balance_inquiry_online_reads_the_account(world: World) -> None:
    with world.client() as client:
        result = world.pos(client).balance_inquiry(world.tap(), pin=lambda _: PIN)
        assert result.approved, result.outcome.reason
        assert result.entry is not None and result.entry.kind == "balance" and result.entry.amount_fen == 0
        answer = client.answers[result.entry.txn_id]
    assert answer.balance is not None and balances(answer.balance) == {"02": 50_000}


def test_void_and_refund_give_the_money_back(world: World) -> None:
    with world.client() as client:
        pos = world.pos(client)
        first = pos.purchase(world.tap(), 15_000, pin=lambda _: PIN)
        second = pos.purchase(world.tap(), 20_000, pin=lambda _: PIN)
        assert first.approved and second.approved and first.entry and second.entry
        assert world.net.status()["deposit_available_fen"] == 50_000 - 35_000
        void = pos.void(world.tap(), first.entry, pin=lambda _: PIN)  # the card present: its own ARQC
        assert void.approved and void.entry is not None and void.entry.kind == "void", void.outcome.reason
        assert world.net.status()["deposit_available_fen"] == 50_000 - 20_000
        assert void.entry.original_txn_id == first.entry.txn_id
        with pytest.raises(AlreadyVoided) as refused:  # refused before the card or the host is asked
            pos.void(world.tap(), first.entry, pin=lambda _: PIN)
        assert refused.value.void.txn_id == void.entry.txn_id
        assert [e.txn_id for e in world.journal.entries() if e.kind == "void"] == [void.entry.txn_id]
        refund, code = client.refund(second.entry, 5_000)  # an advice: the acquirer forwards it by SAF
        assert code == "00" and refund.state == "approved" and refund.kind == "refund"
    _eventually(lambda: world.net.status()["deposit_available_fen"] == 50_000 - 15_000)
    assert _balanced(world)


def test_a_refund_beyond_what_is_left_or_of_a_voided_purchase_is_refused_and_nothing_posted(
    world: World,
) -> None:
    """The terminal refuses what its journal shows cannot stand, sending nothing; a refund its journal does
    not link to the earlier ones (a journal from before the link) goes out and the acquirer refuses it (64)
    from its own records: the terminal journals it declined, and the issuer posts nothing."""
    with world.client() as client:
        pos = world.pos(client)
        voided = pos.purchase(world.tap(), 3_000, pin=lambda _: PIN)
        sale = pos.purchase(world.tap(), 20_000, pin=lambda _: PIN)
        assert voided.entry and sale.entry and voided.approved and sale.approved
        assert pos.void(world.tap(), voided.entry, pin=lambda _: PIN).approved
        first, code = client.refund(sale.entry, 15_000)
        assert code == "00" and first.original_txn_id == sale.entry.txn_id
        sent = len(world.journal.entries(limit=1000))
        with pytest.raises(RefundRefused, match=r"only CNY 50\.00 of it is left to refund"):
            client.refund(sale.entry, 6_000)
        with pytest.raises(RefundRefused, match=r"is voided \(.*approved\): nothing to refund"):
            client.refund(voided.entry, 1_000)
        assert len(world.journal.entries(limit=1000)) == sent  # nothing journaled, nothing sent
        _eventually(lambda: world.net.status()["deposit_available_fen"] == 50_000 - 20_000 + 15_000)
        with closing(sqlite3.connect(world.journal.path)) as raw, raw:  # as a journal from before the link
            raw.execute("UPDATE txn SET original_txn_id = '' WHERE txn_id = ?", (first.txn_id,))
        second, code = client.refund(sale.entry, 6_000)  # the terminal no longer sees the first refund
        assert code == "64" and second.state == "declined"
        last, code = client.refund(sale.entry, 5_000)  # what is left is still refundable
        assert code == "00" and last.state == "approved"
    _eventually(lambda: world.net.status()["deposit_available_fen"] == 50_000)
    time.sleep(0.5)  # a 64 that went to the issuer after all would post now
    assert world.net.status()["deposit_available_fen"] == 50_000
    assert _balanced(world)


def test_a_lost_answer_is_reversed_at_the_next_contact_and_nets_to_zero(world: World) -> None:
    before = world.net.status()
    with world.proxy() as proxy:
        proxy.answers.append(drop)  # the load is posted at the issuer; its answer never reaches the terminal
        with world.client(proxy.port, timeout_s=2.0) as client:
            result = world.pos(client).load(world.tap(), 10_000, pin=lambda _: PIN)
        assert not result.approved and result.entry is not None
        (queued,) = world.journal.advices()
        assert queued.reason == "98" and queued.txn_id == result.entry.txn_id  # persisted before the outcome
        assert world.net.status()["deposit_available_fen"] == before["deposit_available_fen"] - 10_000
    with world.client() as client:  # the next contact sends it
        flushed = client.flush()
    assert [a.txn_id for a in flushed.answered] == [queued.txn_id] and flushed.pending == 0
    _eventually(lambda: world.net.status()["deposit_available_fen"] == before["deposit_available_fen"])
    assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"]
    assert _balanced(world)


def test_an_unanswered_reversal_is_repeated_as_0420_and_applied_once(world: World) -> None:
    """The reversal's own answer is lost twice: it stays queued and goes again as 0420 until answered; the
    issuer applies it once (the account nets to zero, not below)."""
    before = world.net.status()
    with world.proxy() as proxy:
        proxy.answers.append(drop)  # the load's answer
        with world.client(proxy.port, timeout_s=2.0) as client:
            assert not world.pos(client).load(world.tap(), 10_000, pin=lambda _: PIN).approved
        proxy.mtis = frozenset({b"\x04\x10", b"\x04\x30"})
        proxy.answers += [drop, drop]  # the 0400's answer, then the first 0420's
        for _ in range(2):
            with world.client(proxy.port, timeout_s=2.0) as client:
                assert client.flush().pending == 1
        with world.client(proxy.port) as client:
            assert client.flush().pending == 0
    (sent,) = world.journal.advices(pending=False)
    assert sent.attempts == 3 and sent.response_code == "00"
    assert [mti for mti in proxy.requests if mti.startswith("04")] == ["0400", "0420", "0420"]
    _eventually(lambda: world.net.status()["deposit_available_fen"] == before["deposit_available_fen"])
    time.sleep(0.5)  # the acquirer's store-and-forward has had time to repeat: still applied once
    assert world.net.status()["deposit_available_fen"] == before["deposit_available_fen"]
    assert _balanced(world)


def test_an_approval_the_card_refuses_is_reversed_before_the_outcome(world: World) -> None:
    """The issuer approves and posts; the card does not recognise the ARPC (damaged on the way) and
    declines: the reversal (39 = 06) is in the journal before the decline is recorded; delivered next time."""
    with world.proxy() as proxy:
        proxy.answers.append(damaged_arpc(world.net.issuer.hsm, mak_label(TID)))
        with world.client(proxy.port) as client:
            result = world.pos(client).purchase(world.tap(), 15_000, pin=lambda _: PIN)
        assert not result.approved and result.outcome.kind is OutcomeKind.DECLINED_ONLINE
        (queued,) = world.journal.advices()
        assert queued.reason == "06" and result.entry is not None and queued.txn_id == result.entry.txn_id
        assert world.net.status()["deposit_available_fen"] == 50_000 - 15_000  # posted at the issuer
    with world.client() as client:
        assert client.flush().pending == 0
    _eventually(lambda: world.net.status()["deposit_available_fen"] == 50_000)


def _second_generate_ac(world: World, fault: str) -> Callable[[bytes], bytes]:
    """The card's link, with the second GENERATE AC (INS ``AE``) faulted: ``pulled`` — the card leaves the
    field before it sees the command; ``fails`` — it answers ``6985`` (conditions of use not satisfied)."""
    inner = world.tap()
    seen = {"gac": 0}

    def transmit(apdu: bytes) -> bytes:
        if apdu[1] == 0xAE:
            seen["gac"] += 1
            if seen["gac"] == 2:
                if fault == "pulled":
                    raise OSError("card left the field")
                return bytes.fromhex("6985")
        return inner(apdu)

    return transmit


@pytest.mark.parametrize("fault", ["pulled", "fails"])
def test_a_purchase_approval_the_card_never_completes_is_reversed(world: World, fault: str) -> None:
    """The issuer approves and posts; the card is pulled (or refuses the command) at the second GENERATE
    AC, so it never gives its TC: the reversal (39 = 06) is queued before the outcome, the journal records
    the purchase declined (not torn: no torn recovery may later call it paid), and the account nets to
    zero when the reversal is delivered."""
    with world.client() as client:
        result = world.pos(client).purchase(_second_generate_ac(world, fault), 15_000, pin=lambda _: PIN)
        assert not result.approved and result.outcome.kind is OutcomeKind.DECLINED_ONLINE
        assert result.entry is not None and result.entry.state == "declined", result.entry
        (queued,) = world.journal.advices()
        assert queued.kind == "reversal" and queued.reason == "06" and queued.txn_id == result.entry.txn_id
        assert world.net.status()["deposit_available_fen"] == 50_000 - 15_000  # posted at the issuer
    with world.client() as client:
        assert client.flush().pending == 0
    _eventually(lambda: world.net.status()["deposit_available_fen"] == 50_000)
    assert _balanced(world)


@pytest.mark.parametrize("form", ["today's", "before 2026-12-08"])
def test_a_void_the_card_never_completes_is_reversed_by_its_own_stan_and_the_purchase_stands(
    world: World, tmp_path: Path, form: str
) -> None:
    """A reversal repeats its original's 11 (UnionPay POS practice: it takes no STAN of its own) and 61: a
    void's reversal carries the void's STAN and, in 61, the purchase the void names. The acquirer reverses
    what 11 and 60.2 name — the void — so the deposit ends debited for the purchase, once. A journal
    written ``before 2026-12-08`` may hold the reversal with a STAN of its own and the void in 61: sent as
    it is, the acquirer would find no such transaction and post nothing; the terminal sends it in today's
    form."""
    with world.client() as client:
        pos = world.pos(client)
        sale = pos.purchase(world.tap(), 15_000, pin=lambda _: PIN)
        assert sale.approved and sale.entry is not None
        void = pos.void(_second_generate_ac(world, "pulled"), sale.entry, pin=lambda _: PIN)
        assert not void.approved and void.entry is not None and void.entry.state == "declined"
        assert world.net.status()["deposit_available_fen"] == 50_000  # the void posted at the issuer
        (queued,) = world.journal.advices()
        sent = parse(decode_message(bytes.fromhex(queued.message)))
        assert queued.stan == sent.stan == void.entry.stan != sale.entry.stan
        assert sent.original is not None and sent.original[6:12] == f"{sale.entry.stan:06d}"
        if form != "today's":
            old = dataclasses.replace(
                sent, stan=void.entry.stan + 40, original=f"{sent.original[:6]}{void.entry.stan:06d}1208"
            )
            with closing(sqlite3.connect(tmp_path / "journal.db")) as db, db:
                db.execute(
                    "UPDATE saf SET stan=?, message=? WHERE saf_id=?",
                    (old.stan, old.to_bytes().hex().upper(), queued.saf_id),
                )
        assert client.flush().pending == 0
    _eventually(lambda: world.net.status()["deposit_available_fen"] == 50_000 - 15_000)
    time.sleep(0.3)  # the acquirer's store-and-forward has had time to repeat: the purchase still stands
    assert world.net.status()["deposit_available_fen"] == 50_000 - 15_000
    assert _balanced(world)


def test_an_ec_load_the_card_never_completes_is_reversed_and_the_chip_keeps_its_balance(world: World) -> None:
    """The load's PUT DATA 9F79 comes after the second GENERATE AC: a card pulled there never took it, so
    the load is reversed — the deposit account and the EC float back where they were, the chip unchanged."""
    before = world.net.status()
    with world.client() as client:
        pos = world.pos(client)
        chip_before = world.chip_ec(pos)
        result = pos.load(_second_generate_ac(world, "pulled"), 10_000, pin=lambda _: PIN)
        assert not result.approved and result.entry is not None and result.entry.state == "declined"
        assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + 10_000  # posted
        assert client.flush().pending == 0
        _eventually(lambda: world.net.status()["ec_balance_fen"] == before["ec_balance_fen"])
        assert world.chip_ec(pos) == chip_before
    assert world.net.status()["deposit_available_fen"] == before["deposit_available_fen"]
    assert _balanced(world)


def test_an_unreachable_acquirer_is_one_clear_error(world: World) -> None:
    world.net.stop("acquirer")
    with pytest.raises(
        AcquirerUnreachable, match=r"acquirer 127\.0\.0\.1:\d+ unreachable \(connection refused\)"
    ):
        world.client().open()


def test_a_purchase_that_cannot_reach_the_acquirer_leaves_no_reversal_behind(world: World) -> None:
    """The 0200 never left (no connection): its in-flight reversal goes with it, so nothing is reversed
    later at the issuer, and the terminal says why it could not go online."""
    world.net.stop("acquirer")
    client = world.client()  # connected on first use, as the CLI's
    try:
        result = world.pos(client).purchase(world.tap(), 20_000, pin=lambda _: PIN)
    finally:
        client.close()
    assert not result.approved and "unreachable" in str(client.failure)
    assert world.journal.advices(pending=False) == []


def test_offline_purchases_upload_once(world: World) -> None:
    with world.client() as client:
        pos = world.pos(client)
        assert pos.load(world.tap(), 10_000, pin=lambda _: PIN).approved  # electronic cash on the chip
        sales = [pos.purchase(world.tap(), amount) for amount in (1_250, 800)]
        for sale in sales:
            assert sale.approved and sale.outcome.kind is OutcomeKind.APPROVED_OFFLINE, sale.outcome.reason
        first = client.upload()
        second = client.upload()
    assert len(first.acknowledged) == 2 and not first.failed
    assert second.acknowledged == () and second.failed == ()
    assert world.net.uploads() == 2
    for sale in sales:
        assert sale.entry is not None
        kept = world.net.upload(sale.entry.batch, sale.entry.stan)
        assert kept is not None and kept.amount_fen == sale.entry.amount_fen


class _FailingMacs:
    """The terminal's HSM, whose retail MAC fails (a damaged key block) from the ``after``-th call on."""

    def __init__(self, hsm: Any, after: int) -> None:
        self._hsm, self.calls, self.after = hsm, 0, after

    def pos_mac(self, key: Any, data: bytes) -> bytes:
        from citycard.hsm.api import HsmError

        self.calls += 1
        if self.calls > self.after:
            raise HsmError("key block damaged")
        return self._hsm.pos_mac(key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hsm, name)


def test_a_terminal_whose_key_store_fails_declines_and_reverses_what_it_cannot_check(world: World) -> None:
    """The terminal's HSM failing is not a bug to raise out of the transaction: before sending, the card
    declines unable to go online and nothing reaches the issuer; on the answer's MAC, the approval is not
    believed and is reversed, so the deposit nets to zero."""
    with world.client() as client:
        assert world.pos(client).purchase(world.tap(), 12_000, pin=lambda _: PIN).approved  # signed on
    spent = 50_000 - 12_000
    assert world.net.status()["deposit_available_fen"] == spent

    failing = _FailingMacs(world.hsm, after=0)  # the request's own MAC cannot be made
    world.hsm = failing  # type: ignore[assignment]
    with world.client() as client:
        result = world.pos(client).purchase(world.tap(), 12_000, pin=lambda _: PIN)
        assert not result.approved and result.outcome.kind is OutcomeKind.DECLINED_OFFLINE
    assert world.net.status()["deposit_available_fen"] == spent  # nothing was sent

    failing.calls, failing.after = 0, 1  # the request signed; the answer's MAC cannot be checked
    with world.client() as client:
        result = world.pos(client).purchase(world.tap(), 12_000, pin=lambda _: PIN)
        assert not result.approved  # an approval it cannot believe: declined at the card, reversal queued
    assert world.net.status()["deposit_available_fen"] == spent - 12_000  # the issuer had approved it
    world.hsm = failing._hsm  # the key store mended: the next contact delivers the queued reversal
    with world.client() as client:
        client.flush()
    _eventually(lambda: world.net.status()["deposit_available_fen"] == spent)


def test_a_bug_after_the_issuers_approval_is_raised_and_the_approval_reversed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REVIEW.md: a bug is raised, never turned into an outcome. A kernel bug after the issuer approved
    (here, in issuer authentication) comes out of ``purchase``, but only once the money is safe: the
    approval the card never completed is recorded declined with its reversal queued, which the next contact
    delivers; the deposit nets to zero."""
    from citycard.kernel.kernel import Kernel

    with world.client() as client:
        assert world.pos(client).purchase(world.tap(), 12_000, pin=lambda _: PIN).approved
    spent = 50_000 - 12_000

    def buggy(self: Any, data: bytes) -> Any:
        raise KeyError("a kernel bug")
        yield  # a generator, as the step it replaces

    with monkeypatch.context() as patch, world.client() as client:
        patch.setattr(Kernel, "_issuer_authentication", buggy)
        with pytest.raises(KeyError, match="a kernel bug"):
            world.pos(client).purchase(world.tap(), 12_000, pin=lambda _: PIN)
    assert world.net.status()["deposit_available_fen"] == spent - 12_000  # the issuer had approved it
    last = world.journal.entries(limit=1)[0]
    assert last.state == "declined" and "reversal queued" in last.reason, last
    with world.client() as client:
        client.flush()
    _eventually(lambda: world.net.status()["deposit_available_fen"] == spent)


def test_a_request_under_a_mak_another_sign_on_replaced_gets_a0_and_goes_again_after_a_new_sign_on(
    world: World,
) -> None:
    """No grace period for an old MAK (docs/network.md): another process signing on as this terminal
    replaces the acquirer's MAK; this terminal's next request, under the old one, is answered A0, and the
    terminal signs on again and sends it once more, approved and posted once."""
    acquirer = world.net.servers["acquirer"]
    with world.client() as client:
        client.ensure_signed_on()
        hsm = world.net.issuer.hsm  # the acquirer's: as its sign-on of the other process would
        hsm.generate_working_key(mak_label(TID), hsm.get(tmk_label(TID)), KeyUsage.MAC_X9_19, replace=True)
        result = world.pos(client).purchase(world.tap(), 1_000, pin=lambda _: PIN)
    assert result.approved
    assert acquirer.server.stats.mac_errors == 1
    assert world.net.status()["deposit_available_fen"] == 50_000 - 1_000


def _put_data_lost(world: World, fault: str) -> Callable[[bytes], bytes]:
    """The card's link, the card gone at the load's PUT DATA 9F79 (INS ``DA``, after the TC of the second
    GENERATE AC): ``never sent`` — before the card saw it; ``answer lost`` — the card ran it, its answer
    never came back."""
    inner = world.tap()

    def transmit(apdu: bytes) -> bytes:
        if apdu[1] == 0xDA:
            if fault == "answer lost":
                inner(apdu)
            raise OSError("card left the field")
        return inner(apdu)

    return transmit


@pytest.mark.parametrize("back", ["at once", "the next day", "the next day, its batch settled"])
@pytest.mark.parametrize("fault", ["never sent", "answer lost"])
def test_an_ec_load_torn_after_the_cards_tc_is_settled_by_its_load_log_at_the_next_tap(
    world: World, fault: str, back: str
) -> None:
    """The card gives its TC and leaves before the issuer's PUT DATA is answered: whether it took the load
    only its load log can say. The load stays torn with its reversal held (not sent); at the card's next
    load the log decides: not there — the torn load is void and its reversal sent, the deposit nets back;
    there — it is recovered and the held reversal dropped. Either way the issuer's books end where the chip
    is, and nothing is lost or made. A holder who comes back ``the next day``: a contact purchase then, past
    the hour, does not read the load log (a cashier's tap stays short), but the card's next load here does,
    whatever the torn load's age, since its held reversal keeps the holder's money waiting. The terminal's
    batch may be settled meanwhile (loads are not in its totals): the reversal released into the closed
    batch is still taken by the acquirer and delivered (not answered ``77``)."""
    before = world.net.status()
    with world.client() as client:
        pos = world.pos(client)
        chip_before = world.chip_ec(pos)
        assert chip_before == before["ec_balance_fen"]
        torn = pos.load(_put_data_lost(world, fault), 10_000, pin=lambda _: PIN)
        assert not torn.approved and torn.entry is not None and torn.entry.state == "torn", torn.entry
        assert "reversal held" in torn.outcome.reason
        assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + 10_000  # posted
        flushed = client.flush()
        assert flushed.pending == 0 and flushed.held == 1  # held: not sent
        assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + 10_000
        took = 10_000 if fault == "answer lost" else 0
        assert world.chip_ec(pos) == chip_before + took
        spent = 0
        if back.startswith("the next day"):
            pos = world.pos(client, later=dt.timedelta(hours=20))
            spent = chip_before + took + 1_000  # above the chip's EC balance: online, with the PIN
            bought = pos.purchase(world.tap(), spent, pin=lambda _: PIN)
            assert bought.approved and bought.recovered == (), bought
            assert bought.outcome.kind is OutcomeKind.APPROVED_ONLINE, bought.outcome
            assert client.flush().held == 1  # past the hour: a purchase leaves it held
        if back.endswith("settled"):
            closed = client.settle()
            assert (closed.batch, closed.response_code, closed.new_batch) == (torn.entry.batch, "00", 2)
        again = pos.load(world.tap(), 5_000, pin=lambda _: PIN)  # the next tap: a load of 50.00
        assert again.approved, again.outcome
        assert [(e.txn_id, e.state) for e in again.recovered] == [
            (torn.entry.txn_id, "recovered" if took else "void")
        ]
        settled = world.journal.find(torn.entry.batch, torn.entry.stan)
        assert settled is not None
        assert settled.state == ("recovered" if took else "void"), settled
        (held,) = [a for a in world.journal.advices(pending=False) if a.txn_id == torn.entry.txn_id]
        assert (held.hold, held.response_code) == (("dropped", "") if took else ("", "00")), held
        assert client.flush().held == 0
        assert world.chip_ec(pos) == chip_before + took + 5_000
    _eventually(lambda: world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + took + 5_000)
    after = world.net.status()
    assert after["deposit_available_fen"] == before["deposit_available_fen"] - took - 5_000 - spent
    assert _balanced(world)


@pytest.mark.parametrize(
    ("fault", "next_tap", "cash"),
    [
        ("never sent", "purchase", False),
        ("answer lost", "purchase", False),
        ("never sent", "balance", True),
        ("answer lost", "balance", True),
    ],
)
def test_a_torn_load_is_settled_at_the_cards_next_contact_purchase_or_balance_inquiry_too(
    world: World, fault: str, next_tap: str, cash: bool
) -> None:
    """A card torn at a load and not loaded again here: its next contact purchase or online balance inquiry
    at this terminal reads the load log as a load would, and settles the held reversal ahead of its own
    online message (sent, answered 00) or drops it. A cash load the chip never took is journaled so that the
    clerk gives the cash back: its reversal takes the cash off the issuer's EC float."""
    before = world.net.status()
    with world.client() as client:
        pos = world.pos(client)
        chip_before = world.chip_ec(pos)
        torn = pos.load(_put_data_lost(world, fault), 10_000, pin=lambda _: PIN, cash=cash)
        assert torn.entry is not None and torn.entry.state == "torn", torn.entry
        assert torn.entry.funding == ("cash" if cash else "account")
        took = 10_000 if fault == "answer lost" else 0
        spent = 0
        if next_tap == "purchase":  # above the chip's EC balance: online, with the PIN
            spent = chip_before + took + 1_000
            tap = pos.purchase(world.tap(), spent, pin=lambda _: PIN)
        else:
            tap = pos.balance_inquiry(world.tap(), pin=lambda _: PIN)
        assert tap.approved and tap.entry is not None and tap.entry.kind != "ec_load", tap.outcome
        (settled,) = tap.recovered
        assert (settled.txn_id, settled.state) == (torn.entry.txn_id, "recovered" if took else "void")
        assert ("cash paid for it goes back" in settled.reason) == (cash and not took), settled.reason
        reversal = world.journal.advice_for(torn.entry.txn_id, "reversal")
        assert reversal is not None
        if took:
            assert (reversal.hold, reversal.response_code) == ("dropped", "")
        else:  # released and sent ahead of the tap's own 0200, in the same contact
            assert (reversal.hold, reversal.response_code) == ("", "00")
        assert client.flush().held == 0
        assert world.chip_ec(pos) == chip_before + took
    _eventually(lambda: world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + took)
    after = world.net.status()
    paid = 0 if cash else took  # a cash load never touches the deposit account
    assert after["deposit_available_fen"] == before["deposit_available_fen"] - paid - spent
    assert _balanced(world)


def test_a_purchase_whose_card_leaves_during_the_issuers_scripts_after_its_tc_is_approved_once(
    world: World,
) -> None:
    """The chain's card has a PIN change pending (``chain`` sets its PIN), delivered by the issuer in
    template 72 after the second GENERATE AC. The card gives its TC and leaves at the script: the purchase
    is approved online (the scripts do not change the outcome), counted in the batch, never exported or
    uploaded as an offline purchase, and not "recovered" at the next tap — the deposit pays it once."""
    inner = world.tap()

    def transmit(apdu: bytes) -> bytes:
        if apdu[1] == 0x24:  # PIN CHANGE/UNBLOCK, the issuer's script after the TC
            raise OSError("card left the field")
        return inner(apdu)

    before = world.net.status()
    with world.client() as client:
        pos = world.pos(client)
        result = pos.purchase(transmit, 20_000, pin=lambda _: PIN)
        assert result.approved and result.outcome.kind is OutcomeKind.APPROVED_ONLINE, result.outcome
        assert result.entry is not None and (result.entry.state, result.entry.outcome) == (
            "approved",
            "approved online",
        )
        assert "issuer's scripts" in result.outcome.reason
        assert world.journal.batch_totals(result.entry.batch)[:2] == (20_000, 1)
        assert client.flush().pending == 0  # nothing reversed
        again = pos.purchase(world.tap(), 300, pin=lambda _: PIN)
        assert again.approved and again.recovered == ()
    assert result.entry.txn_id not in {e.txn_id for e in world.journal.upload_queue()}
    assert result.entry.txn_id not in {e.txn_id for e in world.journal.offline_purchases()}
    spent_online = 20_000 + (0 if again.outcome.kind is OutcomeKind.APPROVED_OFFLINE else 300)
    assert world.net.status()["deposit_available_fen"] == before["deposit_available_fen"] - spent_online
    assert _balanced(world)


class Killed(BaseException):
    """The terminal's process killed at this point: nothing after it runs (not an ``Exception``, so none of
    the terminal's own handlers sees it), and the next process opens the journal as the kill left it."""


def _killed_at(world: World, at: str) -> Callable[[bytes], bytes]:
    """The card's link, the terminal killed when it sends the second GENERATE AC (the issuer's approval in
    hand, the card not yet asked) or the issuer's script after the card's TC (template 72)."""
    inner = world.tap()
    acs = 0

    def transmit(apdu: bytes) -> bytes:
        nonlocal acs
        acs += apdu[1] == 0xAE
        if (at == "second GENERATE AC" and acs == 2) or (at == "script" and apdu[1] in (0x24, 0xDA)):
            raise Killed
        return inner(apdu)

    return transmit


def _restart(world: World) -> None:
    path = world.journal.path
    world.journal.close()
    world.journal = SqliteJournal(path, TID)


@pytest.mark.parametrize("at", ["second GENERATE AC", "script"])
def test_a_terminal_killed_during_an_online_purchase_reverses_it_when_it_starts_again(
    world: World, at: str
) -> None:
    """The issuer approved and posted; the terminal dies before it records the outcome (the card asked for
    its TC or not). The reversal it persisted before the 0200 left is released when the journal is opened
    again — the transaction ``void``, never "recovered" from the card's log nor exported as an offline
    purchase — and the next contact sends it: the deposit is as before."""
    before = world.net.status()["deposit_available_fen"]
    with world.client() as client, pytest.raises(Killed):
        world.pos(client).purchase(_killed_at(world, at), 20_000, pin=lambda _: PIN)
    assert world.net.status()["deposit_available_fen"] == before - 20_000  # posted at the issuer
    (flying,) = world.journal.advices(pending=False)
    assert flying.hold == "in flight"
    _restart(world)
    (entry,) = world.journal.entries(None, 10)
    assert (entry.kind, entry.state) == ("purchase", "void") and "stopped" in entry.reason, entry
    reversal = world.journal.advice_for(entry.txn_id, "reversal")
    assert reversal is not None and reversal.hold == ""
    assert flying.stan == reversal.stan == entry.stan  # the 0400 carries its original's STAN (11)
    with world.client() as client:
        pos = world.pos(client)
        (answered,) = client.flush().answered
        assert (answered.txn_id, answered.response_code) == (entry.txn_id, "00")
        again = pos.purchase(world.tap(), 300, pin=lambda _: PIN)
        assert again.approved and again.recovered == ()
    assert entry.txn_id not in {e.txn_id for e in world.journal.upload_queue()}
    spent = 0 if again.outcome.kind is OutcomeKind.APPROVED_OFFLINE else 300
    _eventually(lambda: world.net.status()["deposit_available_fen"] == before - spent)
    assert _balanced(world)


def test_a_terminal_killed_during_an_ec_load_leaves_it_to_the_cards_load_log(world: World) -> None:
    """A load's in-flight reversal is held when the journal is opened again (whether the chip took the
    load, only its load log says): the card's next load — the next morning, long past the hour of torn
    recovery — reads it, finds no record, and releases it."""
    before = world.net.status()
    with world.client() as client, pytest.raises(Killed):
        world.pos(client).load(_killed_at(world, "second GENERATE AC"), 10_000, pin=lambda _: PIN)
    assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + 10_000  # posted
    _restart(world)
    (entry,) = world.journal.entries(None, 10)
    assert entry.state == "torn"
    assert world.journal.advice_for(entry.txn_id, "reversal").hold == "held"  # type: ignore[union-attr]
    with world.client() as client:
        pos = world.pos(client, later=dt.timedelta(hours=14))  # the counter opens again the next morning
        chip = world.chip_ec(pos)
        assert chip == before["ec_balance_fen"]
        result = pos.load(world.tap(), 5_000, pin=lambda _: PIN)
        assert result.approved and [(e.txn_id, e.state) for e in result.recovered] == [(entry.txn_id, "void")]
        assert world.chip_ec(pos) == chip + 5_000
    _eventually(lambda: world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + 5_000)
    assert world.net.status()["deposit_available_fen"] == before["deposit_available_fen"] - 5_000
    assert _balanced(world)


def test_an_online_transactions_in_flight_reversal_is_gone_once_its_outcome_is_recorded(world: World) -> None:
    """Every 0200 that posts persists its reversal before it leaves; the outcome decides it. Approved and
    completed by the card: deleted at the next flush (the queue keeps only reversals that are needed);
    declined by the issuer: deleted at once; a balance inquiry posts nothing and has none. An in-flight
    reversal takes no STAN until it is needed, so the transactions' STANs (voucher numbers) run on."""
    with world.client() as client:
        client.ensure_signed_on()  # its 0800 takes a STAN: before the transactions
        pos = world.pos(client)
        approved = pos.purchase(world.tap(), 20_000, pin=lambda _: PIN)
        assert approved.approved and approved.entry is not None
        assert [a.hold for a in world.journal.advices(pending=False)] == ["in flight"]
        declined = pos.purchase(world.tap(), 40_000, pin=lambda _: PIN)  # 51: 300.00 left on deposit
        assert not declined.approved and declined.entry is not None
        assert declined.entry.stan == approved.entry.stan + 1  # the in-flight reversal took no STAN
        assert world.journal.advice_for(declined.entry.txn_id, "reversal") is None
        assert pos.balance_inquiry(world.tap(), pin=lambda _: PIN).approved
        assert client.flush() == FlushResult((), 0, 0)
    assert world.journal.advices(pending=False) == []
    assert world.net.status()["deposit_available_fen"] == 50_000 - 20_000
