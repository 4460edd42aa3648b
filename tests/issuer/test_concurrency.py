"""Concurrent retries of one authorization (SQLite and PostgreSQL): one answer, posted once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from citycard.db import Database
from citycard.issuer.commands import AuthorizationKind
from citycard.issuer.handlers import IssuerService

from tests.issuer.conftest import Terminal
from tests.issuer.test_authorization import funded_card
from tests.issuer.test_slice import request


def test_concurrent_retries_post_once(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    req = request(pan, AuthorizationKind.PURCHASE, 1_000, terminal_for(pan).first_ac(1_000), "p-1")
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: banks.authorize(req), range(12)))
    assert all(a == answers[0] for a in answers) and answers[0].approved
    with database.unit_of_work() as uow:
        purchases = [t for t in uow.ledger.journal(limit=1000) if t.amount_fen == 1_000]
        assert len(purchases) == 1 and uow.ledger.totals().balanced
    assert answers[0].balance_fen == 9_000
