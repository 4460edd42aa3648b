"""EC loads from another account (非指定账户圈存, 0200 620000/91) through clearing and settlement, on SQLite
and PostgreSQL, beside the purchases, fares and exceptions of tests/clearing's day (:func:`build_day`).

The legs are answered by the real ``IssuerService`` as the switch sends them (``switch.
split_other_account_load``): the other account's leg (request id ``D`` + 32-37, its online PIN under the
bank's ZPK) and then the EC card's (the chip's own ARQC, the answer's ARPC and PUT DATA 9F79 run on the chip);
reversals as the acquirer's SAF sends them. The day: two cross-bank loads (one each way), a same-bank load
at a terminal of the other bank's merchant, a load reversed at both banks, a card leg declined after the
debit posted (the debit reversed), and one whose debit's reversal has not arrived yet (an exception).
Items, exceptions, positions, the bank files and each bank's network settlement account are asserted to
the fen; a rerun posts nothing and writes the same bytes."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from citycard.clearing import ExceptionAction
from citycard.db import Database
from citycard.db.clearing_repositories import ExceptionStateError
from citycard.db.clearing_tables import clearing_exceptions
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.db.web_tables import web_audit
from citycard.durable import StagedFolder
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest, SetPin
from citycard.issuer.handlers import IssuerService
from citycard.settlement import CENTER, parse_schedule, settle_day
from citycard.settlement.fees import default_schedule
from citycard.settlement.files import write_day_files

from tests.clearing.test_day import DAY, NEXT_DAY, balances, build_day, engine, float_of, items
from tests.clearing.world import PHARMACY, SUPERMARKET, Holder, card
from tests.issuer.conftest import Clock, Terminal, ledger_snapshot

pytestmark = pytest.mark.xdist_group("settlement")

PAYER_PIN = "654321"
ACQUIRER = "48020000"  # field 32 of the acquirer's host legs


class Loads:
    """The loads of the day, as the switch sends their legs."""

    def __init__(self, banks: IssuerService) -> None:
        self.banks = banks
        self.rrn = 612_330_000_000

    def payer(self, sink: Any, bank: str, holder: int, deposit_fen: int) -> str:
        """A card of ``bank`` whose account pays: registered, with ``PAYER_PIN``."""
        pan = card(self.banks, sink, bank, holder, deposit_fen).pan
        zpk = self.banks.hsm.get(f"{bank.lower()}-zpk")
        self.banks.set_pin(SetPin(pan, self.banks.hsm.encrypt_pin(zpk, PAYER_PIN, pan)))
        return pan

    def load(
        self,
        payer: str,
        h: Holder,
        amount_fen: int,
        place: tuple[str, str, str, str],
        *,
        card_ok: bool = True,
    ) -> str:
        """Both legs; returns the load's request id (32-37). ``card_ok``: the EC card's leg must approve
        (else it must decline, as over the EC balance limit)."""
        self.rrn += 1
        rid = f"{ACQUIRER}-{self.rrn:012d}"
        pin = self.banks.hsm.encrypt_pin(self.banks.hsm.get(f"{_bank(payer)}-zpk"), PAYER_PIN, payer)
        debit = AuthorizationRequest(
            "D" + rid, AuthorizationKind.EC_LOAD_OTHER_DEBIT, payer, "00", amount_fen, b"",
            terminal_id=place[3], merchant_id=place[0], pin_block=pin,
        )  # fmt: skip
        answer = self.banks.authorize(debit)
        assert answer.approved, answer.reason
        term = Terminal(h.chip)
        f55 = term.first_ac(amount_fen, un=rid.encode()[-4:], txn_type=0x60)
        leg = AuthorizationRequest(
            rid, AuthorizationKind.EC_LOAD_OTHER, h.pan, h.psn, amount_fen, f55,
            terminal_id=place[3], merchant_id=place[0],
        )  # fmt: skip
        answer = self.banks.authorize(leg)
        assert answer.approved == card_ok, answer.reason
        if card_ok:
            _, sws = term.complete(answer.field55, answer.arc)
            assert sws == [0x9000]
        return rid

    def reverse(self, rid: str, pan: str, amount_fen: int, place: tuple[str, str, str, str]) -> None:
        """The reversal of one leg (``rid`` its request id), as the acquirer's SAF delivers it."""
        request = AuthorizationRequest(
            "R" + rid, AuthorizationKind.REVERSAL, pan, "00", amount_fen, b"",
            terminal_id=place[3], merchant_id=place[0], original_request_id=rid,
        )  # fmt: skip
        answer = self.banks.authorize(request)
        assert answer.approved and answer.reason == "reversed", answer.reason


def _bank(pan: str) -> str:
    return "icbc" if pan.startswith("621226") else "boc"


def _rows(path: Path, kind: str = "D") -> list[list[str]]:
    with path.open(newline="") as fh:
        return [r for r in csv.reader(fh) if r[0] == kind]


def test_a_day_with_loads_from_other_accounts(
    banks: IssuerService, database: Database, sink: Any, clock: Clock, demo_ca: Any, tmp_path: Path
) -> None:
    d = build_day(banks, database, sink, clock, demo_ca, tmp_path)
    a, b = d.cards["a"], d.cards["b"]  # EC cards of ICBC and BOC
    loads = Loads(banks)
    boc_payer = loads.payer(sink, "BOC", 6, 400_000)
    icbc_payer = loads.payer(sink, "ICBC", 7, 400_000)
    ns_before = balances(database, banks)
    floats_before = {h.pan: float_of(database, h.pan) for h in (a, b)}

    # BOC's account loads ICBC's card at the supermarket (ICBC); ICBC's account loads BOC's card at the
    # pharmacy (BOC); ICBC's account loads ICBC's card at the pharmacy (BOC's merchant: same bank)
    l1 = loads.load(boc_payer, a, 2_000, SUPERMARKET)
    l2 = loads.load(icbc_payer, b, 1_500, PHARMACY)
    l3 = loads.load(icbc_payer, a, 700, PHARMACY)
    # reversed at both banks (the answer was lost: the card's leg first, then the debit)
    l4 = loads.load(boc_payer, a, 900, SUPERMARKET)
    loads.reverse(l4, a.pan, 900, SUPERMARKET)
    loads.reverse("D" + l4, boc_payer, 900, SUPERMARKET)
    # the EC card's bank declines (61: over the EC balance limit) after the debit posted; the debit reversed
    l5 = loads.load(boc_payer, a, 150_000, SUPERMARKET, card_ok=False)
    loads.reverse("D" + l5, boc_payer, 150_000, SUPERMARKET)
    # the same, but the debit's reversal has not reached ICBC when the day is cleared
    l6 = loads.load(icbc_payer, b, 120_000, PHARMACY, card_ok=False)
    # the books before clearing: each leg on its bank's network settlement account
    ns_loaded = balances(database, banks)
    assert ns_loaded["ICBC"] - ns_before["ICBC"] == -2_000 + 1_500 + 700 - 700 + 120_000
    assert ns_loaded["BOC"] - ns_before["BOC"] == 2_000 - 1_500
    assert float_of(database, a.pan) == floats_before[a.pan] + 2_000 + 700
    assert float_of(database, b.pan) == floats_before[b.pan] + 1_500

    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    summary = clearing.run(DAY)
    cleared = items(database, "20261125")
    got = sorted(
        (i["source_ref"], i["sign"], i["amount_fen"], i["issuer_bank"], i["payer_bank"], i["acquirer_bank"])
        for i in cleared
        if i["kind"] == "ec_account_load"
    )
    assert got == sorted(
        [
            (l1, -1, 2_000, "ICBC", "BOC", "ICBC"),
            (l2, -1, 1_500, "BOC", "ICBC", "BOC"),
            (l3, -1, 700, "ICBC", "ICBC", "BOC"),
        ]
    )
    load_items = [i for i in cleared if i["kind"] == "ec_account_load"]
    assert all(i["source"] == "online" and "*" in i["pan_masked"] for i in load_items)
    assert {i["pan_masked"][-4:] for i in load_items} == {a.pan[-4:], b.pan[-4:]}  # the EC card's
    assert all(i["payer_bank"] is None for i in cleared if i["kind"] != "ec_account_load")
    assert len(cleared) == 10 + 3  # tests/clearing's day, and the three loads
    assert summary.by_kind["ec_account_load"] == (3, -4_200)
    # the debit whose reversal is pending: an exception with its reason, never paid, only rejected
    (pending,) = [x for x in clearing.exceptions() if x["reason"] == "reversal_pending"]
    assert (pending["ref"], pending["amount_fen"], pending["issuer_bank"]) == (
        f"online/D{l6}",
        120_000,
        "ICBC",
    )
    assert pending["status"] == "open" and pending["cleared"] == 0
    assert pending["pan_masked"][-4:] == icbc_payer[-4:] and "*" in pending["pan_masked"]
    assert "reversal of the debit is pending" in pending["detail"]
    assert summary.exceptions["reversal_pending"] == 1
    with pytest.raises(ExceptionStateError, match="pays no one"):
        clearing.resolve(pending["id"], ExceptionAction.ACCEPT)
    with pytest.raises(ExceptionStateError, match="nothing paid"):
        clearing.resolve(pending["id"], ExceptionAction.CHARGEBACK)
    snapshot = ledger_snapshot(database)
    assert engine(database, banks, clock).run(DAY) == summary  # a rerun adds nothing
    assert ledger_snapshot(database) == snapshot and len(items(database, "20261125")) == 13
    assert len(clearing.exceptions()) == len({x["ref"] for x in clearing.exceptions()})

    def uow() -> SettlementUnitOfWork:
        return database.unit_of_work(SettlementUnitOfWork)

    ns_cleared = balances(database, banks)
    with StagedFolder(tmp_path / "a") as folder:
        result = settle_day(uow, "2026-11-25", clock=clock, sink=folder)
    assert result.posted
    positions = {p.participant: p for p in result.record.positions}
    assert sum(p.net_fen for p in positions.values()) == 0
    # the positions against the items: the purchases' and fares' formula (fees from the schedule), then
    # what the loads add — BOC pays 2000 and gets 1500, ICBC the other way; the same-bank 700 nothing
    schedule = default_schedule()
    without = {"ICBC": 0, "BOC": 0, CENTER: 0}
    issued = {"ICBC": 0, "BOC": 0}
    for i in cleared:
        if i["kind"] == "ec_account_load":
            continue
        f = schedule.fees(
            i["kind"], i["sign"], i["amount_fen"], i["industry"], i["mcc"], card_type=i["card_type"]
        )
        signed = i["sign"] * i["amount_fen"]
        without[i["issuer_bank"]] -= signed - f.issuer_fen
        without[i["acquirer_bank"]] += signed - f.issuer_fen - f.network_fen
        without[CENTER] += f.network_fen
        issued[i["issuer_bank"]] += signed
    loads_effect = {"ICBC": 2_000 - 1_500, "BOC": -2_000 + 1_500, CENTER: 0}
    assert {k: p.net_fen for k, p in positions.items()} == {k: without[k] + loads_effect[k] for k in without}
    assert positions["ICBC"].issued_gross_fen == issued["ICBC"] - 2_000 + 1_500
    assert positions["BOC"].issued_gross_fen == issued["BOC"] + 2_000 - 1_500
    # each bank's network settlement account: settlement took what its cards spent (the payer's loads
    # in, the card's loads out), so the loads leave nothing on it but the debit whose reversal is pending
    ns_settled = balances(database, banks)
    for bank in ("ICBC", "BOC"):
        assert ns_settled[bank] == ns_cleared[bank] - positions[bank].issued_gross_fen
    offline = {"ICBC": 0, "BOC": 0}
    for i in cleared:
        offline[i["issuer_bank"]] += i["amount_fen"] if i["source"] == "offline" else 0
    assert ns_settled["ICBC"] == ns_before["ICBC"] + offline["ICBC"] - issued["ICBC"] + 120_000
    assert ns_settled["BOC"] == ns_before["BOC"] + offline["BOC"] - issued["BOC"]
    with database.unit_of_work(read_only=True) as check:
        assert check.ledger.totals().balanced and check.ledger.audit() == []

    # the files: each bank's clearing file lists its loads with its role and effect; no merchant statement
    # shows them (the merchants took no part), and the reconciliation explains them
    a_dir = tmp_path / "a"
    icbc = {
        r[4]: (r[1], r[5], int(r[-1])) for r in _rows(a_dir / "bank-ICBC.csv") if r[5] == "ec_account_load"
    }
    boc = {r[4]: (r[1], r[5], int(r[-1])) for r in _rows(a_dir / "bank-BOC.csv") if r[5] == "ec_account_load"}
    assert icbc == {
        l1: ("I", "ec_account_load", 2_000),
        l2: ("P", "ec_account_load", -1_500),
        l3: ("IP", "ec_account_load", 0),
    }
    assert boc == {l1: ("P", "ec_account_load", -2_000), l2: ("I", "ec_account_load", 1_500)}
    for bank in ("ICBC", "BOC"):
        (total,) = _rows(a_dir / f"bank-{bank}.csv", "T")[1:]
        assert int(total[-1]) == positions[bank].net_fen
    for statement in a_dir.glob("merchant-*.csv"):
        assert "ec_account_load" not in statement.read_text()
    recon = (a_dir / "reconciliation.csv").read_text()
    assert "D,cleared,online/ec_account_load,3,4200," in recon
    (explained,) = [
        r for r in _rows(a_dir / "reconciliation.csv", "X") if r[2] == "EC loads from another account"
    ]
    assert explained[:5] == ["X", "cleared-settled", "EC loads from another account", "3", "0"]
    assert explained[5].startswith("4200 fen between issuers, no merchant")
    # this day's online records never went through an acquirer (the issuer is called directly): each
    # cleared load is "not captured", as the day's online purchases are; the others are not there at all
    differences = {
        r[2].split(":", 1)[1]: r[5] for r in _rows(a_dir / "reconciliation.csv", "X") if ":" in r[2]
    }
    for ref in (l1, l2, l3, "on-a-1"):
        assert differences[ref].startswith("cleared today, not captured by the acquirer")
    assert not {l4, l5, l6, "D" + l6} & set(differences)

    with StagedFolder(tmp_path / "b") as folder:
        again = settle_day(uow, "20261125", clock=clock, sink=folder)
    assert not again.posted and balances(database, banks) == ns_settled
    assert {p.name: p.read_bytes() for p in a_dir.iterdir()} == {
        p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()
    }

    # each bank's own reconciliation (report --bank): the loads it paid or received, wherever made, beside
    # the items at its merchants' terminals — ICBC's card and BOC's account at ICBC's supermarket (l1), and
    # ICBC's account loading BOC's card (l2) and ICBC's own (l3) at BOC's pharmacy: both banks see all three
    for bank, foreign in (("ICBC", {l2: 1_500, l3: 700}), ("BOC", {l1: 2_000})):
        kinds, differences = _scoped_reconciliation(database, bank, tmp_path / f"scoped-{bank}")
        assert kinds["online/ec_account_load"] == (3, 4_200)
        expected: dict[str, tuple[int, int]] = {}
        for i in cleared:
            if i["acquirer_bank"] == bank or (
                i["kind"] == "ec_account_load" and bank in (i["issuer_bank"], i["payer_bank"])
            ):
                n, fen = expected.get(f"{i['source']}/{i['kind']}", (0, 0))
                expected[f"{i['source']}/{i['kind']}"] = (n + 1, fen + i["amount_fen"])
        assert kinds == expected
        # no acquirer saw this day's online records: each load is "not captured", under the bank whose
        # merchant's terminal took it
        load_differences = {ref: d for ref, d in differences.items() if ref in (l1, l2, l3)}
        assert {ref: (d[0], d[1]) for ref, d in load_differences.items()} == {
            l1: ("ICBC", 2_000),
            l2: ("BOC", 1_500),
            l3: ("BOC", 700),
        }
        assert all(d[2].startswith("cleared today, not captured") for d in load_differences.values())
        assert {ref: d[1] for ref, d in load_differences.items() if d[0] != bank} == foreign
        recon = (tmp_path / f"scoped-{bank}" / "reconciliation.csv").read_text()
        assert "D,cleared,online/ec_account_load,3,4200," in recon
        assert "its EC cards received at other banks'" in recon

    # the next day is cleared before the debit's reversal arrives: the exception stays open
    engine(database, banks, clock).run(NEXT_DAY)
    assert _exception(database, pending["id"])["status"] == "open"
    assert not _closing_audit(database, pending["id"])
    # the reversal arrives: ICBC's settlement account gives the 120000 fen back
    ns_next = balances(database, banks)
    loads.reverse("D" + l6, icbc_payer, 120_000, PHARMACY)
    assert balances(database, banks)["ICBC"] == ns_next["ICBC"] - 120_000
    snapshot = ledger_snapshot(database)
    before_run = clock.now
    # the next run (of any day: here a rerun of the first) closes it by itself, pays nothing, audits it once
    engine(database, banks, clock).run(DAY)
    closed = _exception(database, pending["id"])
    assert (closed["status"], closed["cleared"], closed["pending_item"]) == ("reversed", 0, None)
    assert before_run < closed["resolved_ns"] <= clock.now
    (entry,) = _closing_audit(database, pending["id"])
    assert (entry.actor, entry.role, entry.outcome) == ("clearing", "system", "ok")
    assert entry.at_ns == closed["resolved_ns"]
    assert entry.detail.startswith(f"status=reversed: the reversal RD{l6} of leg D{l6} was applied")
    assert ledger_snapshot(database) == snapshot  # closing it posts nothing
    assert len(items(database, "20261125")) == 13
    assert not [i for i in items(database, "20261126") if i["kind"] == "ec_account_load"]
    assert [x["reason"] for x in clearing.exceptions(status="open")].count("reversal_pending") == 0
    with pytest.raises(ExceptionStateError, match="not open"):
        clearing.resolve(pending["id"], ExceptionAction.REJECT)
    # idempotent: another run changes nothing and audits nothing more
    engine(database, banks, clock).run(NEXT_DAY)
    assert _exception(database, pending["id"]) == closed
    assert len(_closing_audit(database, pending["id"])) == 1


def _exception(database: Database, exception_id: int) -> dict[str, Any]:
    with database.engine.connect() as c:
        e = clearing_exceptions
        return dict(c.execute(select(e).where(e.c.id == exception_id)).one()._mapping)


def _closing_audit(database: Database, exception_id: int) -> list[Any]:
    with database.engine.connect() as c:
        a = web_audit
        query = select(a).where(a.c.action == "exception_reversed", a.c.target == f"exception {exception_id}")
        return list(c.execute(query))


def _scoped_reconciliation(
    database: Database, bank: str, folder: Path
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[str, int, str]]]:
    """``citycard settlement report --bank`` of the day, as the CLI makes it: the scope's cleared kinds
    (count, fen), its captured-vs-cleared differences by reference (bank, fen, reason), and its files in
    ``folder`` (the scoped ``reconciliation.csv`` among them)."""
    with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        record = uow.settlement.load("20261125")
        assert record is not None
        kinds = uow.settlement.cleared_kinds("20261125", bank=bank)
        scoped = replace(record.scoped(bank), kinds=kinds)
        totals, differences = uow.settlement.captured("20261125", bank=bank)
        captured = (totals, list(differences))
        with StagedFolder(folder) as stage:
            write_day_files(
                stage,
                record,
                parse_schedule(record.schedule_toml),
                uow.settlement.items("20261125", by_merchant=True),
                captured,
                bank=bank,
                scoped=scoped,
            )
    return (
        {k.key: (k.item_count, k.gross_fen) for k in kinds},
        {d.reference: (d.bank, d.amount_fen, d.reason) for d in captured[1]},
    )
