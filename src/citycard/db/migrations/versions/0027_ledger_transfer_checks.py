"""A ledger transfer's row costs PostgreSQL half as much to insert (issue 9, speed).

Measured on a scratch schema (40 000 transfers of a clearing run, 55 statements of 728 rows; backend CPU):
0.61–0.73 s before, 0.26–0.29 s after; the two foreign keys of the accounts were 0.35 s of it, two
``SELECT … FOR KEY SHARE`` per row through SPI (docs/performance.md, ledger section, 2026-12-05).

- ``fk_ledger_transfers_debit_account_id_ledger_accounts`` and ``…credit_account_id…`` are dropped. What
  they guarded still holds: the ledger writes a transfer only after ``create_transfers`` has read both of
  its accounts in the same transaction (``debit_account_not_found`` / ``credit_account_not_found``
  otherwise), each plain account locked ``FOR UPDATE`` until the commit and each sharded one written through
  its shard rows, which refer to the account by a foreign key of their own. An account is never deleted by
  the application; the referenced side of the old keys — no account named by a transfer may be deleted or
  change its id — is kept by the triggers ``ledger_accounts_keep_referenced*`` added here, which cost
  nothing on a transfer's insert. ``SqlLedgerRepository.audit`` reports a transfer of an unknown account.
- ``uq_ledger_transfers_pending_id`` (a unique constraint) becomes a unique index of the same name over the
  rows that have a ``pending_id`` only (posts and voids): a NULL key was an index entry in every row, and
  NULLs never conflicted. ``ON CONFLICT DO NOTHING`` takes every unique index as an arbiter, partial ones
  too, and ``pending_id = ANY(…)`` implies the index's predicate.
- ``ix_ledger_transfers_expires`` covers only the open pending transfers with a timeout (``expires_at_ns
  IS NOT NULL``), all that the expiry sweep (``expires_at_ns <= :now``) looks for.

The foreign key of ``pending_id`` stays: it is checked for posts and voids only (a NULL key returns at
once), about 0.4 µs a row. On SQLite the table is copied (batch mode); its triggers are SQLite's own. A
later revision that copies ``ledger_accounts`` on SQLite must create these triggers again.

Revision ID: 0027_ledger_transfer_checks
Revises: 0026_clearing_outcomes
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027_ledger_transfer_checks"
down_revision = "0026_clearing_outcomes"
branch_labels = None
depends_on = None

_ACCOUNT_FKS = ("debit_account_id", "credit_account_id")
_NAMED = (
    "EXISTS (SELECT 1 FROM ledger_transfers WHERE debit_account_id = OLD.id)"
    " OR EXISTS (SELECT 1 FROM ledger_transfers WHERE credit_account_id = OLD.id)"
)
_PG_GUARD = f"""CREATE FUNCTION ledger_accounts_keep_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {_NAMED} THEN
        RAISE foreign_key_violation USING MESSAGE = format('ledger account %s is named by transfers', OLD.id);
    END IF;
    RETURN NULL;
END $$"""
_PG_TRIGGERS = (
    "CREATE TRIGGER ledger_accounts_keep_referenced AFTER DELETE ON ledger_accounts"
    " FOR EACH ROW EXECUTE FUNCTION ledger_accounts_keep_referenced()",
    "CREATE TRIGGER ledger_accounts_keep_referenced_id AFTER UPDATE OF id ON ledger_accounts"
    " FOR EACH ROW WHEN (OLD.id <> NEW.id) EXECUTE FUNCTION ledger_accounts_keep_referenced()",
)
"""AFTER, not BEFORE: a BEFORE row trigger on UPDATE makes PostgreSQL lock the old row of every update of the
table, the balance writes' too, before it looks at the trigger's columns; an AFTER one is a test of the
updated columns (the old row is fetched for the shard rows' foreign key anyway), and its error undoes the
statement all the same."""
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER ledger_accounts_keep_referenced AFTER DELETE ON ledger_accounts"
    f" WHEN {_NAMED} BEGIN SELECT RAISE(ABORT, 'ledger account is named by transfers'); END",
    "CREATE TRIGGER ledger_accounts_keep_referenced_id AFTER UPDATE OF id ON ledger_accounts"
    f" WHEN OLD.id <> NEW.id AND ({_NAMED})"
    " BEGIN SELECT RAISE(ABORT, 'ledger account is named by transfers'); END",
)


def upgrade() -> None:
    with op.batch_alter_table("ledger_transfers") as transfers:
        for column in _ACCOUNT_FKS:
            transfers.drop_constraint(f"fk_ledger_transfers_{column}_ledger_accounts", type_="foreignkey")
        transfers.drop_constraint("uq_ledger_transfers_pending_id", type_="unique")
    op.drop_index("ix_ledger_transfers_expires", table_name="ledger_transfers")
    op.create_index(
        "uq_ledger_transfers_pending_id",
        "ledger_transfers",
        ["pending_id"],
        unique=True,
        postgresql_where=sa.text("pending_id IS NOT NULL"),
        sqlite_where=sa.text("pending_id IS NOT NULL"),
    )
    op.create_index(
        "ix_ledger_transfers_expires",
        "ledger_transfers",
        ["expires_at_ns"],
        postgresql_where=sa.text("expires_at_ns IS NOT NULL"),
        sqlite_where=sa.text("expires_at_ns IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
        for trigger in _PG_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    for trigger in ("ledger_accounts_keep_referenced", "ledger_accounts_keep_referenced_id"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {trigger} ON ledger_accounts")
        else:
            op.execute(f"DROP TRIGGER {trigger}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_accounts_keep_referenced()")
    op.drop_index("ix_ledger_transfers_expires", table_name="ledger_transfers")
    op.drop_index("uq_ledger_transfers_pending_id", table_name="ledger_transfers")
    op.create_index("ix_ledger_transfers_expires", "ledger_transfers", ["expires_at_ns"])
    with op.batch_alter_table("ledger_transfers") as transfers:
        transfers.create_unique_constraint("uq_ledger_transfers_pending_id", ["pending_id"])
        for column in _ACCOUNT_FKS:
            transfers.create_foreign_key(
                f"fk_ledger_transfers_{column}_ledger_accounts", "ledger_accounts", [column], ["id"]
            )
