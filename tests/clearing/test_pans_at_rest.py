"""PANs at rest in clearing (docs/clearing.md, "PANs at rest"): after the test day is staged and cleared,
no clear PAN of its cards is in clearing's tables nor in the acquirer's (every row on PostgreSQL and SQLite;
on SQLite also every page of those tables and their indexes in the database file and in its WAL), in ASCII
or BCD; the items and exceptions show masked PANs; a presentment's PAN is sealed for its record only;
presentments and TCs kept with clear PANs before migration 0022 are sealed, fingerprinted and moved before
the next run (their rows then hold none; the old bytes may stay in SQLite's free space until ``VACUUM``), and
clearing then decides them as before."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update

from citycard.codec.pan import mask_pan
from citycard.db import Database
from citycard.db.acquirer_repositories import card_shard, pan_record
from citycard.db.clearing_tables import clearing_presentments, clearing_seen_tcs, clearing_tcs
from citycard.hsm import SealedDataError
from citycard.issuer.handlers import IssuerService

from tests.acquirer.test_pans_at_rest import holds_pan, stored_bytes
from tests.clearing.test_day import DAY, Day, engine
from tests.issuer.conftest import Clock

PREFIXES = ("clearing_", "acquirer_")


def _tables(database: Database) -> list[str]:
    with database.engine.connect() as c:
        if database.engine.dialect.name == "sqlite":
            names = c.execute(text("SELECT name FROM sqlite_schema WHERE type = 'table'")).scalars()
        else:
            names = c.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
            ).scalars()
        return sorted(n for n in names if n.startswith(PREFIXES))


def stored_rows(database: Database) -> bytes:
    """Every column of every row of clearing's and the acquirer's tables, as bytes."""
    return stored_bytes(database, _tables(database))


def stored_pages(database: Database) -> bytes:
    """SQLite: the pages of clearing's and the acquirer's tables and indexes, as the database file holds
    them and as every frame of its WAL holds them (a frame is a page image not yet checkpointed)."""
    path = Path(str(database.engine.url.database))
    with database.engine.connect() as c:
        page_size = int(c.execute(text("PRAGMA page_size")).scalar_one())
        owned = {
            int(n)
            for name, n in c.execute(text("SELECT name, pageno FROM dbstat"))
            if str(name).startswith(PREFIXES) or str(name).startswith(tuple(f"ix_{p}" for p in PREFIXES))
            or str(name).startswith(tuple(f"sqlite_autoindex_{p}" for p in PREFIXES))
        }  # fmt: skip
    out = bytearray()
    data = path.read_bytes()
    for n in owned:
        out += data[(n - 1) * page_size : n * page_size]
    wal = Path(f"{path}-wal")
    if wal.exists():
        frames = wal.read_bytes()
        at = 32  # the WAL header; each frame: 24 bytes of header (page number first), then the page
        while at + 24 + page_size <= len(frames):
            (number,) = struct.unpack(">I", frames[at : at + 4])
            if number in owned:
                out += frames[at + 24 : at + 24 + page_size]
            at += 24 + page_size
    return bytes(out)


def _pans(d: Day) -> list[str]:
    return [h.pan for h in d.cards.values()]


def _clear_pan_found(database: Database, pans: list[str]) -> list[str]:
    rows = stored_rows(database)
    found = [pan for pan in pans if holds_pan(rows, pan)]
    if database.engine.dialect.name == "sqlite":
        pages = stored_pages(database)
        found += [f"{pan} (file)" for pan in pans if holds_pan(pages, pan)]
    return found


def test_no_clear_pan_in_clearing_after_a_day(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    summary = clearing.run(DAY)
    assert summary.offline_count == 7  # the day cleared as tests/clearing/test_day.py asserts in full
    pans = _pans(day)
    assert _clear_pan_found(database, pans) == []
    p = clearing_presentments.c
    with database.engine.connect() as c:
        rows = c.execute(select(clearing_presentments).where(p.pan_sealed.is_not(None))).all()
        masked = c.execute(text("SELECT pan_masked FROM clearing_items WHERE source = 'offline'")).scalars()
        assert all("*" in m for m in masked)
        assert c.execute(select(p.pan).where(p.pan.is_not(None))).first() is None
        assert c.execute(text("SELECT count(*) FROM clearing_tcs")).scalar_one() == 0
        seen = c.execute(text("SELECT count(*) FROM clearing_seen_tcs")).scalar_one()
    assert seen >= 7 and len(rows) >= 10  # uploads and the journal rows whose card was found
    protection = clearing.protection
    for r in rows:  # each sealed PAN opens for its record, is one of the day's cards, matches its fingerprint
        pan = protection.unseal(r.pan_sealed, pan_record(r.terminal_id, r.batch, r.stan)).decode()
        assert pan in pans and protection.pan_fingerprint(pan) == r.pan_fingerprint
        assert r.card_shard == card_shard(r.pan_fingerprint) and r.pan_masked[-4:] == pan[-4:]
    first, second = rows[0], rows[1]
    with pytest.raises(SealedDataError):  # moved to another record, it does not open
        protection.unseal(first.pan_sealed, pan_record(second.terminal_id, second.batch, second.stan))


def test_clear_pans_kept_before_0022_are_sealed_and_the_day_clears_the_same(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    """Rows as clearing kept them before migration 0022 (a staged presentment with its PAN in clear and no
    sealed PAN, a TC remembered by clear PAN): the detector finds them, the next run seals them and the
    records are decided as before (the clone's first TC, remembered by clear PAN only, still catches it)."""
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    clearing.stage("20261125", clearing.windows(DAY))
    k = day.cards["k"]
    p = clearing_presentments.c
    with database.engine.begin() as c:  # undo what 0022 does for the staged rows: as before it
        legacy: list[dict[str, Any]] = []
        for r in c.execute(select(clearing_presentments).where(p.pan_sealed.is_not(None))).all():
            pan = clearing.protection.unseal(
                r.pan_sealed, pan_record(r.terminal_id, r.batch, r.stan)
            ).decode()
            legacy.append({"ref": r.ref, "pan": pan})
        for row in legacy:
            c.execute(
                update(clearing_presentments)
                .where(p.ref == row["ref"])
                .values(pan=row["pan"], pan_sealed=None, pan_fingerprint=None, card_shard=7)
            )
        # the clone's first TC (card k's, ATC of e["k1"]) remembered before 0022, by clear PAN
        k1 = day.entries["k1"]
        c.execute(
            insert(clearing_tcs).values(
                pan=k.pan, psn=k.psn, atc=k1.atc, cryptogram="00" * 8, terminal_id="POS00009",
                amount_fen=900, txn_date="20261125", ref="POS00009/1/1",
            )
        )  # fmt: skip
    assert legacy and k.pan in _clear_pan_found(database, _pans(day))  # the detector sees them
    summary = clearing.run(DAY)
    # the rows hold none (the clear bytes may stay in SQLite's free space until VACUUM, as the acquirer's)
    assert [pan for pan in _pans(day) if holds_pan(stored_rows(database), pan)] == []
    with database.engine.connect() as c:
        assert c.execute(select(clearing_tcs)).first() is None
        moved = c.execute(select(clearing_seen_tcs).where(clearing_seen_tcs.c.ref == "POS00009/1/1")).one()
        assert moved.pan_masked == mask_pan(k.pan)
        assert moved.pan_fingerprint == clearing.protection.pan_fingerprint(k.pan)
    # card k's purchase under the ATC remembered with another cryptogram is now a clone (not paid), the
    # other records clear as in tests/clearing/test_day.py
    assert summary.exceptions.get("clone", 0) == 2
    assert summary.offline_count == 6
