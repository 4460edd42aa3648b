"""``clearing_seen_tcs`` narrower: bytes and numbers where it kept text, no masked PAN (issue 9, speed).

Clearing keeps a row per TC presented (one per record: 1 M a day of 1 M records, a table that grows every
day) and reads a batch's neighbours of each TC on its key. The key held the PAN's fingerprint as 64 hex
digits and each row the cryptogram as 16, the date as 8 characters and the masked PAN, which nothing reads
(the card's records and items hold it): some 176 bytes a row and 90 an entry of the key. Now the
fingerprint is its 32 bytes (``pan_fingerprint``, still the key with ``psn`` and ``atc``), the cryptogram
its 8 (``cryptogram``), the date the number ``YYYYMMDD`` (``txn_date``), ``pan_masked`` is gone, and the
columns are in an order that needs no padding (the numbers after the key): about a third less to write,
read and cache. The acquirer's tables keep their hex fingerprints (clearing converts when it reads and
writes here).

The table is made again in the new order and its rows copied (converted in SQL on PostgreSQL; on SQLite,
which has no ``unhex`` before 3.41, in batches here). The downgrade makes the old table again, the masked
PAN taken from the TC's presentment (its ``ref``; empty when that is gone).

Revision ID: 0031_seen_tcs_narrow
Revises: 0030_presentment_field55
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031_seen_tcs_narrow"
down_revision = "0030_presentment_field55"
branch_labels = None
depends_on = None

_TABLE = "clearing_seen_tcs"
_OLD = "clearing_seen_tcs_0031"  # the table being replaced, while its rows are copied
_KEY = ("pan_fingerprint", "psn", "atc")
_SQLITE_BATCH = 10_000  # rows converted per statement on SQLite


def _set_aside() -> None:
    """Rename the table (and on PostgreSQL its key, whose name the new table's takes)."""
    op.rename_table(_TABLE, _OLD)
    if op.get_context().dialect.name == "postgresql":
        key = op.get_bind().execute(
            sa.text(
                "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype = 'p'"
            ),
            {"t": _OLD},
        )
        op.execute(f'ALTER TABLE {_OLD} RENAME CONSTRAINT "{key.scalar_one()}" TO pk_{_OLD}')


def upgrade() -> None:
    _set_aside()
    op.create_table(
        _TABLE,
        sa.Column("pan_fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("psn", sa.String(2), nullable=False),
        sa.Column("atc", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("txn_date", sa.Integer(), nullable=False),
        sa.Column("cryptogram", sa.LargeBinary(), nullable=False),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint(*_KEY, name=f"pk_{_TABLE}"),
    )
    columns = "pan_fingerprint, psn, atc, amount_fen, txn_date, cryptogram, terminal_id, ref"
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            f"INSERT INTO {_TABLE} ({columns}) SELECT decode(pan_fingerprint, 'hex'), psn, atc, amount_fen,"
            f" CAST(txn_date AS INTEGER), decode(cryptogram, 'hex'), terminal_id, ref FROM {_OLD}"
        )
    else:
        _copy_converted_sqlite(columns)
    op.drop_table(_OLD)


def _copy_converted_sqlite(columns: str) -> None:
    connection = op.get_bind()
    read = sa.text(
        f"SELECT {columns} FROM {_OLD} WHERE (pan_fingerprint, psn, atc) > (:f, :p, :a)"
        " ORDER BY pan_fingerprint, psn, atc LIMIT :n"
    )
    write = sa.text(
        f"INSERT INTO {_TABLE} ({columns}) VALUES (:f, :p, :a, :amount, :day, :cryptogram, :terminal, :ref)"
    )
    after: dict[str, object] = {"f": "", "p": "", "a": -1}
    while True:
        rows = connection.execute(read, after | {"n": _SQLITE_BATCH}).all()
        if not rows:
            return
        connection.execute(
            write,
            [
                {
                    "f": bytes.fromhex(r.pan_fingerprint),
                    "p": r.psn,
                    "a": r.atc,
                    "amount": r.amount_fen,
                    "day": int(r.txn_date),
                    "cryptogram": bytes.fromhex(r.cryptogram),
                    "terminal": r.terminal_id,
                    "ref": r.ref,
                }
                for r in rows
            ],
        )
        last = rows[-1]
        after = {"f": last.pan_fingerprint, "p": last.psn, "a": last.atc}


def downgrade() -> None:
    _set_aside()
    op.create_table(
        _TABLE,
        sa.Column("pan_fingerprint", sa.String(64), nullable=False),
        sa.Column("psn", sa.String(2), nullable=False),
        sa.Column("atc", sa.Integer(), nullable=False),
        sa.Column("pan_masked", sa.String(19), nullable=False),
        sa.Column("cryptogram", sa.String(16), nullable=False),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("txn_date", sa.String(8), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint(*_KEY, name=f"pk_{_TABLE}"),
    )
    if op.get_context().dialect.name == "postgresql":
        fingerprint, cryptogram = "encode(t.pan_fingerprint, 'hex')", "upper(encode(t.cryptogram, 'hex'))"
    else:
        fingerprint, cryptogram = "lower(hex(t.pan_fingerprint))", "hex(t.cryptogram)"
    op.execute(
        f"INSERT INTO {_TABLE} (pan_fingerprint, psn, atc, pan_masked, cryptogram, terminal_id, amount_fen,"
        f" txn_date, ref) SELECT {fingerprint}, t.psn, t.atc, coalesce(("
        "SELECT p.pan_masked FROM clearing_presentments p WHERE p.ref = t.ref), ''),"
        f" {cryptogram}, t.terminal_id, t.amount_fen, CAST(t.txn_date AS VARCHAR(8)), t.ref FROM {_OLD} t"
    )
    op.drop_table(_OLD)
