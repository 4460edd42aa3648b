"""What an operator may do with an exception (``citycard.clearing.allowed_actions``), checked against what
the engine accepts: for every reason, status, paid or not and pending item or not, an action is offered if
and only if ``ClearingEngine.resolve`` does it (on a fresh SQLite database, one exception per case)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import insert

from citycard.clearing import (
    ClearingPolicy,
    ExceptionAction,
    ExceptionReason,
    ExceptionStatus,
    allowed_actions,
)
from citycard.db.clearing_repositories import ClearingEngine, ExceptionStateError
from citycard.db.clearing_tables import clearing_exceptions
from citycard.hsm.soft import SoftHsm

from tests.db.dbtargets import fresh_database

CASES = list(
    itertools.product(
        list(ExceptionReason), list(ExceptionStatus), (False, True), (None, "accepted", "chargeback")
    )
)


def test_the_offered_actions_are_those_the_engine_does(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as db:
        engine = ClearingEngine(db, SoftHsm(bytes(32)), ClearingPolicy())
        rows = [
            {
                "ref": f"T/{n}", "opened_date": "20261125", "reason": reason.value, "status": status.value,
                "detail": "", "pan_masked": "621226******0017", "atc": 1, "amount_fen": 100,
                "terminal_id": "T", "merchant_id": "M", "issuer_bank": "ICBC", "acquirer_bank": "ICBC",
                "cleared": int(paid), "opened_ns": 0, "pending_item": pending,
            }
            for n, (reason, status, paid, pending) in enumerate(CASES)
        ]  # fmt: skip
        with db.engine.begin() as c:
            c.execute(insert(clearing_exceptions), rows)
        ids = {r["ref"]: i for i, r in enumerate(rows, 1)}
        for n, (reason, status, paid, pending) in enumerate(CASES):
            offered = allowed_actions(reason, status, paid, pending)
            for action in ExceptionAction:
                done = True
                try:  # each action on its own copy of the case: the row is put back after a success
                    engine.resolve(ids[f"T/{n}"], action)
                except ExceptionStateError:
                    done = False
                finally:
                    with db.engine.begin() as c:
                        c.execute(
                            clearing_exceptions.update()
                            .where(clearing_exceptions.c.id == ids[f"T/{n}"])
                            .values(status=status.value, pending_item=pending, resolved_ns=None)
                        )
                assert done == (action in offered), (reason, status, paid, pending, action)


@pytest.mark.parametrize("reason", [ExceptionReason.LATE, ExceptionReason.CLONE])
def test_an_open_exception_is_accepted_only_when_it_may_be_paid(reason: ExceptionReason) -> None:
    expected = (
        (ExceptionAction.REJECT,)
        if reason is ExceptionReason.CLONE
        else (
            ExceptionAction.ACCEPT,
            ExceptionAction.REJECT,
        )
    )
    assert allowed_actions(reason, ExceptionStatus.OPEN, False, None) == expected
    assert allowed_actions(reason, ExceptionStatus.OPEN, True, None)[-1] is ExceptionAction.CHARGEBACK
