"""Migration ``0030_presentment_field55``: a staged upload keeps its field 55 only when the acquirer could
not decode a TC from it (the decoded ``tc_*`` columns are all clearing reads of it), a journal row merged
with an upload is still told from one alone, the undecodable upload is still decided ``tc_invalid`` with the
reason its bytes give, an accepted exception's item is made from the decoded TC; the downgrade copies the
bytes back from the uploads and the upgrade drops them again — on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from citycard.clearing import ExceptionAction
from citycard.db import Database, downgrade, migrate
from citycard.db.acquirer_tables import acquirer_uploads
from citycard.db.clearing_tables import clearing_presentments
from citycard.issuer.handlers import IssuerService

from tests.clearing.test_day import DAY, IN_DAY, NEXT_DAY, Day, engine, items
from tests.issuer.conftest import Clock

BEFORE = "0029_outcomes_by_shard"
NOT_A_TC = bytes.fromhex("9F2701409F36020001")  # a CID and an ATC, no cryptogram: no usable TC
UNDECODED = "POS00001/1/97"


def _staged(database: Database) -> dict[str, Any]:
    p = clearing_presentments.c
    query = select(p.ref, p.field55, p.journal_field55, p.tc_cryptogram).order_by(p.ref)
    with database.engine.connect() as c:
        return {r.ref: r for r in c.execute(query)}


def _upload_field55(database: Database) -> dict[str, bytes]:
    u = acquirer_uploads.c
    with database.engine.connect() as c:
        rows = c.execute(select(u.terminal_id, u.batch, u.stan, u.field55)).all()
    return {f"{r.terminal_id}/{r.batch}/{r.stan}": bytes(r.field55) for r in rows}


def test_a_staged_upload_keeps_field55_only_when_its_tc_did_not_decode(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    shop, a = day.tills["shop"], day.cards["a"]
    assert shop.upload(database, shop.buy(a, 150), IN_DAY, stan=97, field55=NOT_A_TC)
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    summary = clearing.run(DAY)
    assert summary.offline_count == 7  # the test day's, the undecodable upload paid nothing

    staged, uploaded = _staged(database), _upload_field55(database)
    decoded = {ref for ref, r in staged.items() if r.tc_cryptogram is not None}
    assert decoded and decoded < set(uploaded)
    assert all(staged[ref].field55 is None for ref in decoded)  # the copies 0030 no longer makes
    assert bytes(staged[UNDECODED].field55) == NOT_A_TC and staged[UNDECODED].tc_cryptogram is None
    merged = {ref for ref in decoded if staged[ref].journal_field55 is not None}
    assert merged  # journal rows that an upload reached: compared with it, not decided as journal rows
    assert all(r.journal_field55 is not None for ref, r in staged.items() if ref not in uploaded)
    queue = {(x["reason"], x["ref"]): x for x in clearing.exceptions()}
    assert "lacks 9F26" in queue[("tc_invalid", UNDECODED)]["detail"]  # parsed from the bytes kept

    # the downgrade puts each upload's bytes back, the upgrade takes them out again
    downgrade(database.engine, BEFORE)
    back = _staged(database)
    assert {ref: bytes(back[ref].field55) for ref in set(uploaded) & set(back)} == {
        ref: uploaded[ref] for ref in set(uploaded) & set(back)
    }
    assert all(back[ref].field55 is None for ref in set(back) - set(uploaded))
    migrate(database.engine)
    assert _staged(database) == staged
    assert engine(database, banks, clock).run(DAY) == summary  # a rerun decides nothing again

    # an accepted exception becomes an item from the decoded TC (its presentment has no field 55)
    late = queue[("late", "POS00002/1/1")]
    assert staged[late["ref"]].field55 is None
    clearing.resolve(late["id"], ExceptionAction.ACCEPT)
    engine(database, banks, clock).run(NEXT_DAY)
    made = [i for i in items(database, "20261126") if i["source_ref"] == late["ref"]]
    assert [(i["amount_fen"], i["atc"] is not None) for i in made] == [(400, True)]
