"""``clearing_seen_tcs`` keyed (``card_shard``, ``pan_fingerprint``, ``psn``, ``atc``), migration
``0031_seen_tcs_by_shard``: the migration gives each kept TC its card's shard, computed from its fingerprint
as the acquirer computes it (``card_shard``), and its downgrade takes the column away, on SQLite and
PostgreSQL. (Clearing's reads by this key: ``test_seen_bounded``, ``test_day``.)"""

from __future__ import annotations

from sqlalchemy import inspect, text

from citycard.db import Database, downgrade, migrate
from citycard.db.acquirer_repositories import CARD_SHARDS, card_shard

from tests.db.dbtargets import primary_key

BEFORE = "0030_presentment_field55"
# fingerprints whose first 32 bits give shards 0, 63 and one between (the key's order is not the shard's)
FINGERPRINTS = ("00000040" + "a" * 56, "ffffffff" + "0" * 56, "7fffff85" + "c" * 56)


def test_0031_gives_each_seen_tc_its_cards_shard_and_its_downgrade_takes_it_away(fresh: Database) -> None:
    assert sorted(card_shard(f) for f in FINGERPRINTS) == [0, 5, CARD_SHARDS - 1]
    downgrade(fresh.engine, BEFORE)
    rows = [(f, atc) for f in FINGERPRINTS for atc in (1, 2)]
    with fresh.engine.begin() as c:
        for f, atc in rows:
            c.execute(
                text("INSERT INTO clearing_seen_tcs (pan_fingerprint, psn, atc, pan_masked, cryptogram,"
                     " terminal_id, amount_fen, txn_date, ref) VALUES (:f, '01', :atc, '621234******4566',"
                     " '0011223344556677', 'T0000001', 100, '20261125', :ref)"),
                {"f": f, "atc": atc, "ref": f"T0000001/1/{f[:4]}{atc}"},
            )  # fmt: skip
    migrate(fresh.engine)
    with fresh.engine.connect() as c:
        got = c.execute(text("SELECT pan_fingerprint, atc, card_shard FROM clearing_seen_tcs")).all()
    assert sorted(tuple(r) for r in got) == sorted((f, atc, card_shard(f)) for f, atc in rows)
    assert primary_key(fresh, "clearing_seen_tcs") == ["card_shard", "pan_fingerprint", "psn", "atc"]

    downgrade(fresh.engine, BEFORE)
    with fresh.engine.connect() as c:
        back = c.execute(text("SELECT pan_fingerprint, atc FROM clearing_seen_tcs")).all()
    assert sorted(tuple(r) for r in back) == sorted(rows)
    assert "card_shard" not in {col["name"] for col in inspect(fresh.engine).get_columns("clearing_seen_tcs")}
    assert primary_key(fresh, "clearing_seen_tcs") == ["pan_fingerprint", "psn", "atc"]
    migrate(fresh.engine)
