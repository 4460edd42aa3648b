"""Clearing stages with SQL, and holds no clear PAN (issue 9; issue 8's uploads).

``acquirer_uploads`` gains what clearing needs of an upload, decoded when the acquirer stores it: the PSN,
field 55, the TC's values (ATC, amount, date, cryptogram, the CDOL1 data it covers and, for qPBOC, the same
with the GPO's zero TVR), the PAN sealed alone (``pan_sealed``) and the card's shard.
``clearing_presentments`` gains the same TC columns, the PAN's fingerprint, the sealed PAN and the card's EC
float account; its card index runs by fingerprint instead of PAN, over the undecided records only (a
partial index); the uploads get an index by receipt time (a day's are staged in that order).
``clearing_seen_tcs`` replaces ``clearing_tcs`` (TCs presented, by PAN fingerprint instead of PAN).

A migration cannot fill these from existing rows (the messages are sealed and the keys are in the HSM, which
Alembic does not open): the acquirer fills its uploads' columns when it starts
(``citycard.db.acquirer_repositories.fill_upload_columns``), clearing those of the day's uploads before it
stages them, and clearing seals and fingerprints the clear PANs of ``clearing_presentments`` and moves the
rows of ``clearing_tcs`` before each run (``ClearingEngine.protect_clear_pans``). Downgrading is refused
while a presentment or TC holds only a sealed PAN (it cannot be put back in clear here).

Revision ID: 0022_clearing_staged_columns
Revises: 0021_clearing_card_shard
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_clearing_staged_columns"
down_revision = "0021_clearing_card_shard"
branch_labels = None
depends_on = None


def _tc_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("tc_atc", sa.Integer(), nullable=True),
        sa.Column("tc_amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("tc_date", sa.String(8), nullable=True),
        sa.Column("tc_cryptogram", sa.LargeBinary(), nullable=True),
        sa.Column("tc_ac_data", sa.LargeBinary(), nullable=True),
        sa.Column("tc_gpo_ac_data", sa.LargeBinary(), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("acquirer_uploads") as uploads:
        uploads.add_column(sa.Column("psn", sa.String(2), nullable=True))
        uploads.add_column(sa.Column("field55", sa.LargeBinary(), nullable=True))
        uploads.add_column(sa.Column("pan_sealed", sa.LargeBinary(), nullable=True))
        uploads.add_column(sa.Column("card_shard", sa.SmallInteger(), nullable=True))
        for column in _tc_columns():
            uploads.add_column(column)
    op.create_index(
        "ix_acquirer_uploads_received", "acquirer_uploads", ["received_ns", "terminal_id", "batch", "stan"]
    )
    op.drop_index("ix_clearing_presentments_card", table_name="clearing_presentments")
    with op.batch_alter_table("clearing_presentments") as presentments:
        presentments.add_column(sa.Column("pan_fingerprint", sa.String(64), nullable=True))
        presentments.add_column(sa.Column("pan_sealed", sa.LargeBinary(), nullable=True))
        presentments.add_column(sa.Column("card_account", sa.BigInteger(), nullable=True))
        for column in _tc_columns():
            presentments.add_column(column)
    op.create_index(  # the undecided records only: a run's batches never walk the decided ones
        "ix_clearing_presentments_card",
        "clearing_presentments",
        ["clearing_date", "card_shard", "pan_fingerprint", "ref"],
        postgresql_where=sa.text("outcome IS NULL"),
        sqlite_where=sa.text("outcome IS NULL"),
    )
    op.create_table(
        "clearing_seen_tcs",
        sa.Column("pan_fingerprint", sa.String(64), nullable=False),
        sa.Column("psn", sa.String(2), nullable=False),
        sa.Column("atc", sa.Integer(), nullable=False),
        sa.Column("pan_masked", sa.String(19), nullable=False),
        sa.Column("cryptogram", sa.String(16), nullable=False),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("txn_date", sa.String(8), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("pan_fingerprint", "psn", "atc"),
    )


def downgrade() -> None:
    connection = op.get_bind()
    for table, where in (
        ("clearing_seen_tcs", "1 = 1"),
        ("clearing_presentments", "pan IS NULL AND pan_sealed IS NOT NULL"),
    ):
        protected = connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar()
        if protected:
            raise RuntimeError(
                f"{table} holds {protected} row(s) with a sealed PAN only: it cannot be put back in clear by "
                "a migration (the key is in the HSM); empty the table first"
            )
    op.drop_table("clearing_seen_tcs")
    op.drop_index("ix_clearing_presentments_card", table_name="clearing_presentments")
    with op.batch_alter_table("clearing_presentments") as presentments:
        for name in ("tc_gpo_ac_data", "tc_ac_data", "tc_cryptogram", "tc_date", "tc_amount_fen", "tc_atc"):
            presentments.drop_column(name)
        for name in ("card_account", "pan_sealed", "pan_fingerprint"):
            presentments.drop_column(name)
    op.create_index(
        "ix_clearing_presentments_card",
        "clearing_presentments",
        ["clearing_date", "card_shard", "pan", "ref"],
    )
    op.drop_index("ix_acquirer_uploads_received", table_name="acquirer_uploads")
    with op.batch_alter_table("acquirer_uploads") as uploads:
        for name in ("tc_gpo_ac_data", "tc_ac_data", "tc_cryptogram", "tc_date", "tc_amount_fen", "tc_atc"):
            uploads.drop_column(name)
        for name in ("card_shard", "pan_sealed", "field55", "psn"):
            uploads.drop_column(name)
