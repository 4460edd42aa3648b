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
once), about 0.4 µs a row. On SQLite the table is made again (see ``_copy_on_sqlite``); its triggers are
SQLite's own. A later revision that copies ``ledger_accounts`` on SQLite must create these triggers again.

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


_COLUMNS = (
    ("id", sa.BigInteger, False),
    ("debit_account_id", sa.BigInteger, False),
    ("credit_account_id", sa.BigInteger, False),
    ("amount_fen", sa.BigInteger, False),
    ("pending_id", sa.BigInteger, True),
    ("ledger", sa.Integer, False),
    ("code", sa.Integer, False),
    ("flags", sa.Integer, False),
    ("user_data", sa.BigInteger, False),
    ("timeout_s", sa.Integer, False),
    ("timestamp_ns", sa.BigInteger, False),
    ("expires_at_ns", sa.BigInteger, True),
    ("expired_at_ns", sa.BigInteger, True),
)


def _partial_index(name: str, column: str, *, unique: bool = False) -> None:
    """An index of ``column`` over the rows where it is not NULL, on PostgreSQL and SQLite alike."""
    where = sa.text(f"{column} IS NOT NULL")
    op.create_index(
        name, "ledger_transfers", [column], unique=unique, postgresql_where=where, sqlite_where=where
    )


def _copy_on_sqlite(*, account_keys: bool) -> None:
    """SQLite cannot drop or add a constraint: the table is made again, with (``account_keys``) or without
    the accounts' foreign keys. Not Alembic's batch copy: it drops the old table while the copy's
    ``pending_id`` already refers to ``ledger_transfers`` by name, and that drop's implicit delete breaks
    the copy's foreign key (foreign keys are on, and cannot be turned off inside the migration's
    transaction). Renamed first, the old table takes its own self-reference with it (SQLite >= 3.26
    rewrites references on a rename), so the new table refers only to itself."""
    op.rename_table("ledger_transfers", "ledger_transfers_old")
    keys = [
        sa.ForeignKeyConstraint(
            [column], ["ledger_accounts.id"], name=f"fk_ledger_transfers_{column}_ledger_accounts"
        )
        for column in _ACCOUNT_FKS
        if account_keys
    ]
    op.create_table(
        "ledger_transfers",
        *(
            sa.Column(name, kind(), nullable=nullable, autoincrement=False)
            for name, kind, nullable in _COLUMNS
        ),
        sa.CheckConstraint("amount_fen > 0", name="ck_ledger_transfers_amount_positive"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ck_ledger_transfers_accounts_different"
        ),
        *keys,
        sa.ForeignKeyConstraint(
            ["pending_id"], ["ledger_transfers.id"], name="fk_ledger_transfers_pending_id_ledger_transfers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_transfers"),
        *([sa.UniqueConstraint("pending_id", name="uq_ledger_transfers_pending_id")] if account_keys else []),
    )
    names = ", ".join(name for name, _, _ in _COLUMNS)
    op.execute(f"INSERT INTO ledger_transfers ({names}) SELECT {names} FROM ledger_transfers_old")
    op.drop_table("ledger_transfers_old")  # with its indexes: their names are free again
    op.create_index(
        "ix_ledger_transfers_credit_time", "ledger_transfers", ["credit_account_id", "timestamp_ns"]
    )
    op.create_index(
        "ix_ledger_transfers_debit_time", "ledger_transfers", ["debit_account_id", "timestamp_ns"]
    )
    op.create_index("ix_ledger_transfers_time", "ledger_transfers", ["timestamp_ns", "id"])


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _copy_on_sqlite(account_keys=False)
    else:
        for column in _ACCOUNT_FKS:
            op.drop_constraint(
                f"fk_ledger_transfers_{column}_ledger_accounts", "ledger_transfers", type_="foreignkey"
            )
        op.drop_constraint("uq_ledger_transfers_pending_id", "ledger_transfers", type_="unique")
        op.drop_index("ix_ledger_transfers_expires", table_name="ledger_transfers")
    _partial_index("uq_ledger_transfers_pending_id", "pending_id", unique=True)
    _partial_index("ix_ledger_transfers_expires", "expires_at_ns")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
        for trigger in _PG_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in ("ledger_accounts_keep_referenced", "ledger_accounts_keep_referenced_id"):
        op.execute(f"DROP TRIGGER {trigger} ON ledger_accounts" if postgresql else f"DROP TRIGGER {trigger}")
    if postgresql:
        op.execute("DROP FUNCTION ledger_accounts_keep_referenced()")
        op.drop_index("ix_ledger_transfers_expires", table_name="ledger_transfers")
        op.drop_index("uq_ledger_transfers_pending_id", table_name="ledger_transfers")
        op.create_unique_constraint("uq_ledger_transfers_pending_id", "ledger_transfers", ["pending_id"])
        for column in _ACCOUNT_FKS:
            op.create_foreign_key(
                f"fk_ledger_transfers_{column}_ledger_accounts",
                "ledger_transfers",
                "ledger_accounts",
                [column],
                ["id"],
            )
    else:
        _copy_on_sqlite(account_keys=True)
    op.create_index("ix_ledger_transfers_expires", "ledger_transfers", ["expires_at_ns"])
