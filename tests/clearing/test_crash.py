"""A clearing run killed in the middle (a child process that ends itself with ``os._exit`` at a fault point,
as kill -9 would) leaves each batch all or nothing; the next run resumes and every TC is cleared and posted
exactly once, with the same items and ledger as a run that was never interrupted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, func, select, text

from citycard.db import Database
from citycard.db.clearing_tables import (
    clearing_items,
    clearing_outcomes,
    clearing_presentments,
    clearing_runs,
)
from citycard.issuer.handlers import IssuerService

from tests.clearing.test_day import (
    DAY,
    Day,
    banks,
    certify_issuer,
    clock,
    database,
    day,
    demo_ca,
    engine,
    float_of,
    hsm,
    items,
    service,
    sink,
)
from tests.issuer.conftest import Clock

__all__ = ["banks", "certify_issuer", "clock", "database", "day", "demo_ca", "hsm", "service", "sink"]

HERE = Path(__file__).parent


def _target(database: Database) -> tuple[str, str]:
    url = database.engine.url.render_as_string(hide_password=False)
    if database.engine.dialect.name == "sqlite":
        return url, "-"
    with database.engine.connect() as c:
        return url, str(c.execute(text("SELECT current_schema()")).scalar_one())


def _kill_at(database: Database, tmp_path: Path, point: str, nth: int, batch: int) -> None:
    url, schema = _target(database)
    args = [url, schema, str(tmp_path / "keys"), DAY.isoformat(), point, str(nth), str(batch)]
    done = subprocess.run(
        [sys.executable, str(HERE / "killclear.py"), *args], capture_output=True, timeout=300
    )
    assert done.returncode == 137, done.stderr.decode()[-2000:]


def _state(database: Database) -> tuple[int, int, str | None]:
    with database.engine.connect() as c:
        n_items = c.execute(select(func.count()).select_from(clearing_items)).scalar_one()
        decided = c.execute(select(func.count()).select_from(clearing_outcomes)).scalar_one()
        status = c.execute(select(clearing_runs.c.status)).scalar()
    return int(n_items), int(decided), status


@pytest.mark.parametrize(("point", "nth"), [("batch-written", 3), ("decided", 1), ("online", 1)])
def test_killed_run_resumes_without_double_posting(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path, point: str, nth: int
) -> None:
    engine(database, banks, clock).import_journal(tmp_path / "exports", DAY)
    _kill_at(database, tmp_path, point, nth, batch=3)
    _, decided, status = _state(database)
    assert status == "running"  # never reported cleared
    if point == "batch-written":  # two batches committed, the third rolled back with the process
        assert decided > 0 and _undecided_total(database) > 0
        _assert_whole_cards_decided(database)
    summary = engine(database, banks, clock, batch_size=3).run(DAY)
    got = items(database, "20261125")
    assert summary.status == "cleared" and summary.offline_count == 7 and summary.online_count == 2
    assert len(got) == len({(i["source"], i["source_ref"]) for i in got}) == 10
    for h in day.cards.values():
        assert float_of(database, h.pan) == _loaded(h.pan, day) - sum(day.cleared[h.pan])
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced and uow.ledger.audit() == []
        offline = [i for i in got if i["source"] == "offline"]
        posted = uow.ledger.lookup_transfers({i["transfer_id"] for i in offline})  # one per card and batch
        assert len(posted) == len({i["transfer_id"] for i in offline}) <= 7
        assert sum(t.amount_fen for t in posted) == sum(i["amount_fen"] for i in offline)


def _undecided_total(database: Database) -> int:
    with database.engine.connect() as c:
        everything = c.execute(select(func.count()).select_from(clearing_presentments)).scalar_one()
        decided = c.execute(select(func.count()).select_from(clearing_outcomes)).scalar_one()
        return int(everything) - int(decided)


def _assert_whole_cards_decided(database: Database) -> None:
    """A batch takes each card's records of the day whole: no card is part decided, part not."""
    p, o = clearing_presentments, clearing_outcomes
    with database.engine.connect() as c:
        card = p.c.pan_fingerprint
        decided = and_(o.c.clearing_date == p.c.clearing_date, o.c.ref == p.c.ref)
        rows = c.execute(select(card, o.c.outcome).outerjoin(o, decided).where(card.is_not(None))).all()
    by_card: dict[str, set[bool]] = {}
    for pan, outcome in rows:
        by_card.setdefault(pan, set()).add(outcome is None)
    assert all(len(states) == 1 for states in by_card.values()), by_card
    assert {False} in by_card.values() and {True} in by_card.values()


def _loaded(pan: str, day: Day) -> int:
    loads: dict[str, Any] = {"a": 10_000, "b": 5_000, "lost": 3_000, "k": 4_000}
    return next(loads[name] for name, h in day.cards.items() if h.pan == pan)
