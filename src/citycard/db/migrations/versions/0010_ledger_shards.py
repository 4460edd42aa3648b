"""Sharded ledger accounts: ``ledger_accounts.shards`` and ``ledger_account_shards`` (a hot account's balance
changes spread over N rows, summed on read); the banks' network settlement accounts become sharded.

Revision ID: 0010_ledger_shards
Revises: 0009_acquirer
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_ledger_shards"
down_revision = "0009_acquirer"
branch_labels = None
depends_on = None

SETTLEMENT_SHARDS = 16  # citycard.db.repositories.DEFAULT_SHARDS when this revision was written


def upgrade() -> None:
    op.add_column(
        "ledger_accounts", sa.Column("shards", sa.SmallInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.create_table(
        "ledger_account_shards",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_account_shards_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", "shard", name=op.f("pk_ledger_account_shards")),
    )
    # existing banks' settlement accounts (no balance rule: flags 0, no limit) become sharded
    settlement = (
        "SELECT settlement_account_id FROM issuer_banks b JOIN ledger_accounts a"
        " ON a.id = b.settlement_account_id WHERE a.flags = 0 AND a.limit_fen IS NULL"
    )
    for shard in range(SETTLEMENT_SHARDS):
        op.execute(
            "INSERT INTO ledger_account_shards"
            " (account_id, shard, debits_pending, debits_posted, credits_pending, credits_posted)"
            f" SELECT settlement_account_id, {shard}, 0, 0, 0, 0 FROM ({settlement}) s"
        )
    op.execute(f"UPDATE ledger_accounts SET shards = {SETTLEMENT_SHARDS} WHERE id IN ({settlement})")


def downgrade() -> None:
    # fold the shards back into their accounts, then drop them
    for column in ("debits_pending", "debits_posted", "credits_pending", "credits_posted"):
        op.execute(
            f"UPDATE ledger_accounts SET {column} = {column} + COALESCE((SELECT SUM(s.{column})"
            " FROM ledger_account_shards s WHERE s.account_id = ledger_accounts.id), 0)"
            " WHERE shards > 0"
        )
    op.drop_table("ledger_account_shards")
    # not a batch (SQLite would copy the table, which other tables' foreign keys refer to): a plain
    # DROP COLUMN, which SQLite has since 3.35
    op.execute("ALTER TABLE ledger_accounts DROP COLUMN shards")
