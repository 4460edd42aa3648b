"""A staged upload keeps its field 55 only when its TC did not decode (issue 9, speed).

Since migration 0022 the acquirer decodes an upload's TC when it receives it (``tc_atc``, ``tc_amount_fen``,
``tc_date``, ``tc_cryptogram``, ``tc_ac_data``, ``tc_gpo_ac_data``) and clearing stages those columns, which
are all that deciding and an accepted exception's item read of the TC — yet each presentment also copied
the upload's field 55 itself (some 100 bytes of a row of 400): written by staging, read back by every batch,
cached and evicted with the rest of a day many times PostgreSQL's shared buffers, and never read. From now
on ``clearing_presentments.field55`` holds the upload's bytes only when the acquirer found no usable TC in
them (``tc_cryptogram`` NULL: deciding parses them for the ``tc_invalid`` detail), and an upload's row is
told from a journal row's by ``tc_cryptogram`` or ``field55`` (``ClearingEngine``'s ``_has_upload``).

The upgrade clears the copies the staged rows hold beside a decoded TC; the downgrade copies them back from
``acquirer_uploads`` (uploads are never deleted; a presentment is ``TID/batch/stan`` of its upload's key).
No column changes.

Revision ID: 0030_presentment_field55
Revises: 0029_outcomes_by_shard
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0030_presentment_field55"
down_revision = "0029_outcomes_by_shard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE clearing_presentments SET field55 = NULL"
        " WHERE tc_cryptogram IS NOT NULL AND field55 IS NOT NULL"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE clearing_presentments SET field55 = ("
        "SELECT u.field55 FROM acquirer_uploads u WHERE u.terminal_id = clearing_presentments.terminal_id"
        " AND u.batch = clearing_presentments.batch AND u.stan = clearing_presentments.stan)"
        " WHERE tc_cryptogram IS NOT NULL AND field55 IS NULL"
    )
