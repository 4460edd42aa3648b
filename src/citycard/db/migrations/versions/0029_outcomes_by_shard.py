"""``clearing_outcomes`` keyed in the order clearing decides (issue 9, speed): (``clearing_date``,
``card_shard``, ``ref``).

A run decides the day's records card shard by card shard (``ClearingEngine.decide_shards``), and every read of
the presentments asks, row by row, whether each has an outcome (``_undecided``, a probe of this key). Keyed on
(``clearing_date``, ``ref``) the outcomes of one batch, whose records are of one shard and spread over every
terminal, went each to a page of its own anywhere in the day's index (at 1 M records 127 MB, as large as
PostgreSQL's shared buffers), and each probe of a batch's read went to another: most of them pages out of
the buffers, each insert the first change of its page since the last checkpoint (a full page in the WAL).
With the presentment's shard in the key the day's outcomes are 64 ranges, one per shard; a batch inserts
into, and its probes read, its shard's only (at 1 M some 2 MB), which stays in memory while that shard is
decided.

A presentment without a card shard (its card not known) has ``card_shard`` -1 (``NO_CARD_SHARD``: a key
column cannot be NULL); so has a row inserted without it (the column's default). The existing outcomes take
their presentment's shard (-1 when it has none, or when the presentment is gone). The downgrade drops the
column and restores the key (``clearing_date``, ``ref``).

Revision ID: 0029_outcomes_by_shard
Revises: 0028_cards_fillfactor
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_outcomes_by_shard"
down_revision = "0028_cards_fillfactor"
branch_labels = None
depends_on = None

_NO_CARD_SHARD = -1  # citycard.db.clearing_tables.NO_CARD_SHARD (a migration keeps its own copy)


def upgrade() -> None:
    op.add_column(
        "clearing_outcomes",
        sa.Column("card_shard", sa.SmallInteger(), nullable=False, server_default=str(_NO_CARD_SHARD)),
    )
    presentment = (
        "FROM clearing_presentments p WHERE p.clearing_date = clearing_outcomes.clearing_date "
        "AND p.ref = clearing_outcomes.ref AND p.card_shard IS NOT NULL"
    )
    op.execute(
        f"UPDATE clearing_outcomes SET card_shard = (SELECT p.card_shard {presentment}) "
        f"WHERE EXISTS (SELECT 1 {presentment})"
    )
    with op.batch_alter_table("clearing_outcomes") as outcomes:
        outcomes.drop_constraint("pk_clearing_outcomes", type_="primary")
        outcomes.create_primary_key("pk_clearing_outcomes", ["clearing_date", "card_shard", "ref"])


def downgrade() -> None:
    with op.batch_alter_table("clearing_outcomes") as outcomes:
        outcomes.drop_constraint("pk_clearing_outcomes", type_="primary")
        outcomes.drop_column("card_shard")
        outcomes.create_primary_key("pk_clearing_outcomes", ["clearing_date", "ref"])
