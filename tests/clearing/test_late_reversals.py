"""Reversals that reach the issuer after their original cleared (a torn load's held reversal released at the
card's next tap, a timed-out answer's reversal delivered after the cut-over), on SQLite and PostgreSQL: the
day they arrive in clears each one as its original's item given back — the same kind (a purchase's is a
void) with the opposite sign — so that the two days' settlements together move nothing between the banks.

Before this, any such reversal was cleared as a ``void`` with sign -1, right only for a purchase: a cash
load's (-1, the counter's bank owes the issuer the cash) was charged to the counter's bank a second time,
and an EC load from another account's was charged to the merchant's bank instead of given back between the
two issuers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from citycard.clearing import ClearingPolicy, parse_cutovers
from citycard.db import Database
from citycard.db.clearing_repositories import ClearingEngine
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.durable import StagedFolder
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest
from citycard.issuer.handlers import IssuerService
from citycard.settlement import settle_day

from tests.clearing.test_account_loads import Loads
from tests.clearing.test_day import DAY, NEXT_DAY, balances, engine, items
from tests.clearing.world import PHARMACY, SUPERMARKET, Holder, card, online_purchase, register
from tests.issuer.conftest import DAY_NS, Clock, Terminal, ledger_snapshot

pytestmark = pytest.mark.xdist_group("settlement")


def _cash_load(banks: IssuerService, h: Holder, amount_fen: int, rid: str, place: Any) -> None:
    """Cash paid at ``place``'s counter for the card's EC balance (0200 630000), the chip given its script."""
    term = Terminal(h.chip)
    f55 = term.first_ac(amount_fen, un=rid.encode()[-4:].rjust(4, b"\0"), txn_type=0x63)
    request = AuthorizationRequest(
        rid, AuthorizationKind.EC_CASH_LOAD, h.pan, h.psn, amount_fen, f55,
        terminal_id=place[3], merchant_id=place[0],
    )  # fmt: skip
    answer = banks.authorize(request)
    assert answer.approved, answer.reason
    _, sws = term.complete(answer.field55, answer.arc)
    assert sws == [0x9000]


def _reverse(banks: IssuerService, rid: str, pan: str, amount_fen: int, place: Any) -> None:
    """The reversal of ``rid`` as the acquirer's store-and-forward delivers it."""
    request = AuthorizationRequest(
        "R" + rid, AuthorizationKind.REVERSAL, pan, "00", amount_fen, b"",
        terminal_id=place[3], merchant_id=place[0], original_request_id=rid,
    )  # fmt: skip
    answer = banks.authorize(request)
    assert answer.approved and answer.reason == "reversed", answer.reason


def _cleared(database: Database, day: str) -> dict[str, tuple[str, int, int, str, str, str | None]]:
    return {
        i["source_ref"]: (
            i["kind"], i["sign"], i["amount_fen"], i["issuer_bank"], i["acquirer_bank"], i["payer_bank"]
        )
        for i in items(database, day)
    }  # fmt: skip


def test_loads_and_a_purchase_reversed_after_their_day_cleared_are_given_back_the_next_day(
    banks: IssuerService, database: Database, sink: Any, clock: Clock, tmp_path: Path
) -> None:
    register(database, clock)
    a = card(banks, sink, "ICBC", 2, 100_000)
    loads = Loads(banks)
    payer = loads.payer(sink, "BOC", 6, 100_000)
    ns_before = balances(database, banks)
    _cash_load(banks, a, 5_000, "cash-a-1", PHARMACY)  # cash at BOC's pharmacy for ICBC's card
    online_purchase(banks, a, 1_200, "on-a-1", SUPERMARKET)
    other = loads.load(payer, a, 2_000, PHARMACY)  # BOC's account loads ICBC's card
    engine(database, banks, clock).run(DAY)
    assert _cleared(database, "20261125") == {
        "cash-a-1": ("ec_cash_load", -1, 5_000, "ICBC", "BOC", None),
        "on-a-1": ("purchase", 1, 1_200, "ICBC", "ICBC", None),
        other: ("ec_account_load", -1, 2_000, "ICBC", "BOC", "BOC"),
    }

    clock.advance(DAY_NS)  # the reversals reach the issuers the next day, after the first day cleared
    _reverse(banks, "cash-a-1", a.pan, 5_000, PHARMACY)
    _reverse(banks, "on-a-1", a.pan, 1_200, SUPERMARKET)
    _reverse(banks, other, a.pan, 2_000, PHARMACY)  # the switch reverses both legs
    _reverse(banks, "D" + other, payer, 2_000, PHARMACY)
    engine(database, banks, clock).run(NEXT_DAY)
    assert _cleared(database, "20261126") == {
        "Rcash-a-1": ("ec_cash_load", 1, 5_000, "ICBC", "BOC", None),
        "Ron-a-1": ("void", -1, 1_200, "ICBC", "ICBC", None),
        "R" + other: ("ec_account_load", 1, 2_000, "ICBC", "BOC", "BOC"),
    }
    snapshot = ledger_snapshot(database)
    engine(database, banks, clock).run(NEXT_DAY)  # a rerun adds nothing
    assert len(items(database, "20261126")) == 3 and ledger_snapshot(database) == snapshot

    # the two days settled: everything was undone, so each participant's two positions cancel out and
    # each bank's network settlement account ends where it began
    def uow() -> SettlementUnitOfWork:
        return database.unit_of_work(SettlementUnitOfWork)

    nets: dict[str, int] = {}
    kinds: dict[str, dict[str, tuple[int, int]]] = {}
    for day in ("2026-11-25", "2026-11-26"):
        with StagedFolder(tmp_path / day) as folder:
            result = settle_day(uow, day, clock=clock, sink=folder)
        assert result.posted
        assert sum(p.net_fen for p in result.record.positions) == 0
        for p in result.record.positions:
            nets[p.participant] = nets.get(p.participant, 0) + p.net_fen
        kinds[day] = {k.key: (k.item_count, k.gross_fen) for k in result.record.kinds}
    # the day's totals by kind say what was given back, each on a line of its own
    assert kinds["2026-11-26"] == {
        "online/ec_cash_load reversed": (1, 5_000),
        "online/void": (1, 1_200),
        "online/ec_account_load reversed": (1, 2_000),
    }
    recon = (tmp_path / "2026-11-26" / "reconciliation.csv").read_text()
    assert "D,cleared,online/ec_cash_load reversed,1,5000," in recon
    assert nets and set(nets.values()) == {0}, nets
    ns_after = balances(database, banks)
    assert {b: ns_after[b] for b in ("ICBC", "BOC")} == {b: ns_before[b] for b in ("ICBC", "BOC")}
    with database.unit_of_work(read_only=True) as check:
        assert check.ledger.totals().balanced and check.ledger.audit() == []


def test_a_void_reversed_after_the_cut_over_of_its_cleared_purchase_is_not_cleared(
    banks: IssuerService, database: Database, sink: Any, clock: Clock
) -> None:
    """A purchase at 17:00 Beijing cleared in its business day (ICBC's cut-over 23:00); its void at 23:10 —
    the issuer's same calendar day, so allowed — is reversed (its answer lost). The void was undone before
    it cleared, so it clears as nothing (the purchase stands, paid once), and so does its reversal."""

    def run(day: Any) -> None:
        policy = ClearingPolicy(cutovers=parse_cutovers("*=23:00"))
        ClearingEngine(
            database, banks.hsm, policy, clock=clock, record_offline_clearing=banks.record_offline_clearing
        ).run(day)

    register(database, clock)
    a = card(banks, sink, "ICBC", 2, 100_000)
    online_purchase(banks, a, 1_200, "on-a-1", SUPERMARKET)  # 17:00 Beijing, 25 November
    clock.advance((6 * 3600 + 600) * 10**9)  # 23:10: the next business day, the same calendar day
    term = Terminal(a.chip)
    void = AuthorizationRequest(
        "void-a-1", AuthorizationKind.VOID, a.pan, a.psn, 1_200, term.first_ac(1_200, un=b"\x07" * 4),
        terminal_id=SUPERMARKET[3], merchant_id=SUPERMARKET[0], original_request_id="on-a-1",
    )  # fmt: skip
    assert banks.authorize(void).approved
    _reverse(banks, "void-a-1", a.pan, 1_200, SUPERMARKET)
    run(DAY)
    run(NEXT_DAY)
    assert _cleared(database, "20261125") == {"on-a-1": ("purchase", 1, 1_200, "ICBC", "ICBC", None)}
    assert _cleared(database, "20261126") == {}


def test_refunds_reversed_before_and_after_they_cleared(
    banks: IssuerService, database: Database, sink: Any, clock: Clock
) -> None:
    """A refund reversed before it cleared clears as nothing; one reversed after clears back (``refund``,
    +1) the day its reversal arrives. The purchase stands, cleared once."""
    register(database, clock)
    a = card(banks, sink, "ICBC", 2, 100_000)
    online_purchase(banks, a, 3_000, "on-a-1", SUPERMARKET)
    for rid, amount in (("rf-a-1", 500), ("rf-a-2", 400)):
        refund = AuthorizationRequest(
            rid, AuthorizationKind.REFUND, a.pan, a.psn, amount, b"",
            terminal_id=SUPERMARKET[3], merchant_id=SUPERMARKET[0], original_request_id="on-a-1",
        )  # fmt: skip
        assert banks.authorize(refund).approved
    _reverse(banks, "rf-a-2", a.pan, 400, SUPERMARKET)
    engine(database, banks, clock).run(DAY)
    assert _cleared(database, "20261125") == {
        "on-a-1": ("purchase", 1, 3_000, "ICBC", "ICBC", None),
        "rf-a-1": ("refund", -1, 500, "ICBC", "ICBC", None),
    }
    clock.advance(DAY_NS)
    _reverse(banks, "rf-a-1", a.pan, 500, SUPERMARKET)
    engine(database, banks, clock).run(NEXT_DAY)
    assert _cleared(database, "20261126") == {"Rrf-a-1": ("refund", 1, 500, "ICBC", "ICBC", None)}
