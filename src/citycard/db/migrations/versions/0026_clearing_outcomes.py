"""Clearing's outcomes in a narrow table of their own (issue 9, speed).

``clearing_outcomes`` (``clearing_date``, ``ref``, ``outcome``, ``card_account``; key ``(clearing_date,
ref)``): a presentment's decision, one row inserted (COPY on PostgreSQL) in the transaction of the batch that
decides it. Before, the batch updated ``clearing_presentments.outcome`` and ``card_account`` in place: a new
version of the whole wide staged row (sealed PAN, field 55, the TC's columns) and an entry in each of its
indexes, since ``outcome`` was in one index and in the predicate of another. A presentment is undecided when
it has no row here (``NOT EXISTS`` on the key).

``clearing_presentments`` loses ``outcome`` and ``card_account`` (the existing decisions are moved here
first), and keeps two indexes, its key ``ref`` and ``ix_clearing_presentments_card`` — now over every record
of the day, no longer only the undecided (the batches walk it by keyset, so they never go back over the
decided cards) — where each staged row had four: ``ix_clearing_presentments_day`` (``clearing_date``,
``outcome``, ``ref``) is gone (the day's rows are the card index's prefix) and so is the unique
``ix_clearing_presentments_key`` (``terminal_id``, ``batch``, ``stan``): ``ref`` is ``TID/batch/stan`` made
of those three columns, so the key already makes them unique, and staging finds an upload's presentment by
``ref``.

The downgrade puts the decisions back in the presentments' columns and restores the three indexes.

Revision ID: 0026_clearing_outcomes
Revises: 0025_account_loads
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_clearing_outcomes"
down_revision = "0025_account_loads"
branch_labels = None
depends_on = None

_CARD = ["clearing_date", "card_shard", "pan_fingerprint", "ref"]


def upgrade() -> None:
    op.create_table(
        "clearing_outcomes",
        sa.Column("clearing_date", sa.String(length=8), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("card_account", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("clearing_date", "ref", name=op.f("pk_clearing_outcomes")),
    )
    op.execute(
        "INSERT INTO clearing_outcomes (clearing_date, ref, outcome, card_account) SELECT clearing_date, "
        "ref, outcome, card_account FROM clearing_presentments WHERE outcome IS NOT NULL"
    )
    op.drop_index("ix_clearing_presentments_card", table_name="clearing_presentments")
    op.drop_index("ix_clearing_presentments_day", table_name="clearing_presentments")
    op.drop_index("ix_clearing_presentments_key", table_name="clearing_presentments")
    with op.batch_alter_table("clearing_presentments") as presentments:
        presentments.drop_column("card_account")
        presentments.drop_column("outcome")
    op.create_index("ix_clearing_presentments_card", "clearing_presentments", _CARD)


def downgrade() -> None:
    op.drop_index("ix_clearing_presentments_card", table_name="clearing_presentments")
    with op.batch_alter_table("clearing_presentments") as presentments:
        presentments.add_column(sa.Column("outcome", sa.String(16), nullable=True))
        presentments.add_column(sa.Column("card_account", sa.BigInteger(), nullable=True))
    decided = "FROM clearing_outcomes o WHERE o.clearing_date = p.clearing_date AND o.ref = p.ref"
    op.execute(
        f"UPDATE clearing_presentments AS p SET outcome = (SELECT o.outcome {decided}), "
        f"card_account = (SELECT o.card_account {decided}) WHERE EXISTS (SELECT 1 {decided})"
    )
    op.drop_table("clearing_outcomes")
    op.create_index(
        "ix_clearing_presentments_card",
        "clearing_presentments",
        _CARD,
        postgresql_where=sa.text("outcome IS NULL"),
        sqlite_where=sa.text("outcome IS NULL"),
    )
    op.create_index(
        "ix_clearing_presentments_day", "clearing_presentments", ["clearing_date", "outcome", "ref"]
    )
    op.create_index(
        "ix_clearing_presentments_key", "clearing_presentments", ["terminal_id", "batch", "stan"], unique=True
    )
