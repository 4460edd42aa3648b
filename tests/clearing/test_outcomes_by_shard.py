"""``clearing_outcomes`` keyed (``clearing_date``, ``card_shard``, ``ref``), migration
``0029_outcomes_by_shard``: the migration gives each existing outcome its presentment's shard (-1 without
one) and its downgrade takes the column away, on SQLite and PostgreSQL; a decided record's outcome follows
its presentment when ``protect_clear_pans`` gives a pre-0022 row its shard, so that the record is not
decided a second time; an accepted exception's record turns ``clear`` in its shard's row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, text, update

from citycard.clearing import ExceptionAction, allowed_actions
from citycard.db import Database, downgrade, migrate
from citycard.db.acquirer_repositories import pan_record
from citycard.db.clearing_tables import (
    NO_CARD_SHARD,
    clearing_exceptions,
    clearing_outcomes,
    clearing_presentments,
)
from citycard.issuer.handlers import IssuerService

from tests.clearing.test_day import DAY, engine
from tests.db.dbtargets import primary_key
from tests.issuer.conftest import Clock

BEFORE = "0028_cards_fillfactor"
D = "20261125"
# (ref, the presentment's card shard or None, whether it has a presentment)
OUTCOMES = (("T0000001/1/1", 5, True), ("T0000001/1/2", None, True), ("T0000001/1/3", None, False))


def test_0029_gives_each_outcome_its_shard_and_its_downgrade_takes_it_away(fresh: Database) -> None:
    downgrade(fresh.engine, BEFORE)
    with fresh.engine.begin() as c:
        for n, (ref, shard, staged) in enumerate(OUTCOMES, 1):
            if staged:
                c.execute(
                    text(
                        "INSERT INTO clearing_presentments (ref, clearing_date, terminal_id, batch, stan,"
                        " pan_masked, psn, received_ns, card_shard) VALUES (:r, :d, 'T0000001', 1, :s, '',"
                        " '01', 1, :shard)"
                    ),
                    {"r": ref, "d": D, "s": n, "shard": shard},
                )
            c.execute(
                text("INSERT INTO clearing_outcomes (clearing_date, ref, outcome, card_account)"
                     " VALUES (:d, :r, 'clear', :a)"),
                {"d": D, "r": ref, "a": n},
            )  # fmt: skip
    migrate(fresh.engine)
    with fresh.engine.connect() as c:
        rows = c.execute(
            text("SELECT ref, card_shard, card_account FROM clearing_outcomes ORDER BY ref")
        ).all()
    assert [tuple(r) for r in rows] == [
        (ref, NO_CARD_SHARD if shard is None else shard, n) for n, (ref, shard, _) in enumerate(OUTCOMES, 1)
    ]
    assert primary_key(fresh, "clearing_outcomes") == ["clearing_date", "card_shard", "ref"]

    downgrade(fresh.engine, BEFORE)
    with fresh.engine.connect() as c:
        back = c.execute(
            text("SELECT clearing_date, ref, outcome, card_account FROM clearing_outcomes")
        ).all()
    assert sorted(tuple(r) for r in back) == [
        (D, ref, "clear", n) for n, (ref, _, _) in enumerate(OUTCOMES, 1)
    ]
    assert "card_shard" not in {col["name"] for col in inspect(fresh.engine).get_columns("clearing_outcomes")}
    assert primary_key(fresh, "clearing_outcomes") == ["clearing_date", "ref"]
    migrate(fresh.engine)


def _outcome_shards(database: Database) -> dict[str, tuple[int, int | None]]:
    """Each outcome's shard and its presentment's."""
    p, o = clearing_presentments, clearing_outcomes
    with database.engine.connect() as c:
        rows = c.execute(
            select(o.c.ref, o.c.card_shard, p.c.card_shard).join(
                p, (p.c.clearing_date == o.c.clearing_date) & (p.c.ref == o.c.ref)
            )
        ).all()
    return {ref: (mine, its) for ref, mine, its in rows}


def test_a_decided_records_outcome_follows_its_presentment_when_its_clear_pan_is_sealed(
    banks: IssuerService, database: Database, clock: Clock, day: Any, tmp_path: Path
) -> None:
    """Decided rows as kept before migration 0022 (PAN in clear, no fingerprint, a shard the sealing will
    change) with outcomes keyed on that shard, as 0029 carries them over: sealing their PANs moves the
    outcomes too, and a second decide finds nothing left to decide."""
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    clearing.run(DAY)
    p, o = clearing_presentments.c, clearing_outcomes.c
    with database.engine.begin() as c:
        decided = c.execute(select(clearing_presentments).where(p.pan_sealed.is_not(None))).all()
        for r in decided:
            pan = clearing.protection.unseal(
                r.pan_sealed, pan_record(r.terminal_id, r.batch, r.stan)
            ).decode()
            legacy = 1 + (r.card_shard or 0)  # never the shard its fingerprint gives
            c.execute(
                update(clearing_presentments)
                .where(p.ref == r.ref)
                .values(pan=pan, pan_sealed=None, pan_fingerprint=None, card_shard=legacy)
            )
            c.execute(update(clearing_outcomes).where(o.ref == r.ref).values(card_shard=legacy))
    assert decided

    assert clearing.protect_clear_pans() == len(decided)
    shards = _outcome_shards(database)
    assert all(mine == its for mine, its in shards.values()), shards
    assert clearing.decide(D, DAY) == 0
    assert clearing.pending(D) == 0


def test_an_accepted_exception_turns_its_records_outcome_clear(
    banks: IssuerService, database: Database, clock: Clock, day: Any, tmp_path: Path
) -> None:
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    clearing.run(DAY)
    e, o = clearing_exceptions.c, clearing_outcomes.c
    with database.engine.connect() as c:
        opened = c.execute(select(clearing_exceptions).where(e.status == "open").order_by(e.id)).all()
    acceptable = [
        x
        for x in opened
        if ExceptionAction.ACCEPT in allowed_actions(x.reason, x.status, bool(x.cleared), x.pending_item)
    ]
    assert acceptable
    chosen = acceptable[0]
    clearing.resolve(chosen.id, ExceptionAction.ACCEPT)
    clearing.resolved_items(D)
    with database.engine.connect() as c:
        outcome, shard = c.execute(select(o.outcome, o.card_shard).where(o.ref == chosen.ref)).one()
        presented = c.execute(select(clearing_presentments.c.card_shard).where(
            clearing_presentments.c.ref == chosen.ref)).scalar_one()  # fmt: skip
    assert outcome == "clear"
    assert shard == (NO_CARD_SHARD if presented is None else presented)
