"""A seeded random day at the issuer (SQLite and PostgreSQL): emulated cards, deposits, purchases, EC loads
with their scripts, retries, forgeries and reversals, checked after every step against a plain model.

Invariants: the ledger sums to zero; each deposit account holds what the model says; each card's EC float
equals the EC balance on the emulated card; no request is ever posted twice; a card's highest ATC never
goes backwards. Replay a failure with its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from citycard.codec.money import bcd_amount
from citycard.codec.tlv import decode_dict, encode_many
from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest, Deposit
from citycard.issuer.handlers import IssuerService

from tests.issuer.conftest import Terminal
from tests.issuer.test_slice import PSN, issue_registered, request

STEPS = 40


@pytest.mark.parametrize("seed", [1, 2])
def test_random_day(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal], seed: int
) -> None:
    rng = random.Random(seed)
    ids = ["11010519491231002X", "440524188001010014"]
    pans = [issue_registered(banks, id_number=i) for i in ids]
    terms = {pan: terminal_for(pan) for pan in pans}
    deposit = dict.fromkeys(pans, 200_000)
    for pan in pans:
        banks.deposit(Deposit(pan, 200_000, f"opening-{pan}"))
    ec = dict.fromkeys(pans, 0)
    approved: list[tuple[str, str, AuthorizationKind, int]] = []  # (request id, pan, kind, amount)
    sent: dict[str, tuple[AuthorizationRequest, object]] = {}  # request id -> (request, first answer)
    reversed_ids: set[str] = set()
    highest = dict.fromkeys(pans, -1)
    for step in range(STEPS):
        pan = rng.choice(pans)
        term = terms[pan]
        action = rng.choice(["deposit", "purchase", "load", "load", "retry", "forge", "reverse"])
        rid = f"s{seed}-{step}"
        amount = rng.randint(1, 20_000 if action != "purchase" else 8_000)
        if action == "deposit":
            banks.deposit(Deposit(pan, amount, rid))
            deposit[pan] += amount
        elif action in ("purchase", "load"):
            kind = AuthorizationKind.PURCHASE if action == "purchase" else AuthorizationKind.EC_LOAD
            f55 = term.first_ac(amount, un=rng.randbytes(4), txn_type=0x60 if action == "load" else 0)
            req = request(pan, kind, amount, f55, rid)
            resp = banks.authorize(req)
            sent[rid] = (req, resp)
            fits = amount <= deposit[pan] and (action == "purchase" or ec[pan] + amount <= 100_000)
            assert resp.approved == fits, (step, resp)
            if resp.approved:
                deposit[pan] -= amount
                approved.append((rid, pan, kind, amount))
                if action == "load":
                    _, sws = term.complete(resp.field55, resp.arc)
                    assert sws == [0x9000]
                    ec[pan] += amount
        elif action == "retry" and sent:
            req0, first = sent[rng.choice(sorted(sent))]
            assert banks.authorize(req0) == first  # same answer, nothing posted again (checked below)
        elif action == "forge":
            f55 = term.first_ac(amount, un=rng.randbytes(4))
            tags = decode_dict(f55)
            tags["9F02"] = bcd_amount(amount + 1)
            resp = banks.authorize(
                request(pan, AuthorizationKind.PURCHASE, amount + 1, encode_many(tags.items()), rid)
            )
            assert resp.response_code == "05" and "arqc_failed" in resp.flags, resp
        elif action == "reverse":
            purchases = [
                a for a in approved if a[2] == AuthorizationKind.PURCHASE and a[0] not in reversed_ids
            ]
            if purchases:
                rid0, pan0, _, amount0 = rng.choice(purchases)
                rev = AuthorizationRequest(
                    rid,
                    AuthorizationKind.REVERSAL,
                    pan0,
                    PSN,
                    amount0,
                    b"",
                    original_request_id=rid0,
                    terminal_id="T0000001",
                )
                assert banks.authorize(rev).approved
                reversed_ids.add(rid0)
                deposit[pan0] += amount0
        _check(database, deposit, ec, terms, highest)
    kinds = {kind for _, _, kind, _ in approved}
    assert kinds == {AuthorizationKind.PURCHASE, AuthorizationKind.EC_LOAD}, kinds  # the day did something


def _check(
    database: Database,
    deposit: dict[str, int],
    ec: dict[str, int],
    terms: dict[str, Terminal],
    highest: dict[str, int],
) -> None:
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        assert uow.ledger.totals().balanced
        for pan in deposit:
            card = uow.cards.get(pan)
            (dep,) = uow.ledger.lookup_accounts([card.deposit_account_id])
            (flt,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
            assert dep.credit_balance_fen == deposit[pan], pan
            assert flt.credit_balance_fen == ec[pan] == terms[pan].ec_balance(), pan
            assert card.highest_atc >= highest[pan]
            highest[pan] = card.highest_atc
        transfer_ids = [t.id for t in uow.ledger.journal(limit=100_000)]
        assert len(transfer_ids) == len(set(transfer_ids))
