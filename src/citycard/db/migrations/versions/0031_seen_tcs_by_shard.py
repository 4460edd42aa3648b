"""``clearing_seen_tcs`` keyed by the card's shard first (issue 9, speed): (``card_shard``,
``pan_fingerprint``, ``psn``, ``atc``).

A run decides the day's records card shard by card shard, a batch the cards of a range of fingerprints within
one shard (``ClearingEngine.decide_shards``), and reads then adds the TCs of its cards here. Keyed on the
fingerprint alone, a batch's cards were spread over the whole key (the shard is the fingerprint's first 32
bits modulo 64: the cards of one shard are one in 64 of every fingerprint range), each read and insert a leaf
of its own — at 1 M records over 400 000 cards an index larger than PostgreSQL's shared buffers, most of them
misses. With the shard first they are one contiguous part of the key (at 1 M, two processes: PostgreSQL's
CPU 54.5–56.0 → 49.3–51.8 µs a record, 17 229–17 629 → 17 804–18 492 records/s).

The existing rows get their card's shard from their fingerprint (``citycard.db.acquirer_repositories.
card_shard``: the fingerprint's first eight hex digits as an integer, modulo 64): in SQL on PostgreSQL, row by
fingerprint elsewhere. The downgrade drops the column and restores the key (``pan_fingerprint``, ``psn``,
``atc``).

Revision ID: 0031_seen_tcs_by_shard
Revises: 0030_presentment_field55
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031_seen_tcs_by_shard"
down_revision = "0030_presentment_field55"
branch_labels = None
depends_on = None

_CARD_SHARDS = 64  # citycard.db.acquirer_repositories.CARD_SHARDS (a migration keeps its own copy)


def upgrade() -> None:
    op.add_column(
        "clearing_seen_tcs", sa.Column("card_shard", sa.SmallInteger(), nullable=False, server_default="0")
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "UPDATE clearing_seen_tcs SET card_shard ="
            f" (('x' || substr(pan_fingerprint, 1, 8))::bit(32)::bigint % {_CARD_SHARDS})::smallint"
        )
    else:
        fingerprints = bind.execute(
            sa.text("SELECT DISTINCT pan_fingerprint FROM clearing_seen_tcs")
        ).scalars()
        shards = [{"f": f, "s": int(f[:8], 16) % _CARD_SHARDS} for f in fingerprints]
        if shards:
            bind.execute(
                sa.text("UPDATE clearing_seen_tcs SET card_shard = :s WHERE pan_fingerprint = :f"), shards
            )
    with op.batch_alter_table("clearing_seen_tcs") as seen:
        seen.drop_constraint("pk_clearing_seen_tcs", type_="primary")
        seen.alter_column("card_shard", server_default=None)
        seen.create_primary_key("pk_clearing_seen_tcs", ["card_shard", "pan_fingerprint", "psn", "atc"])


def downgrade() -> None:
    with op.batch_alter_table("clearing_seen_tcs") as seen:
        seen.drop_constraint("pk_clearing_seen_tcs", type_="primary")
        seen.drop_column("card_shard")
        seen.create_primary_key("pk_clearing_seen_tcs", ["pan_fingerprint", "psn", "atc"])
