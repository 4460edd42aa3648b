"""Alembic revisions: 0001_ledger, 0002_issuer, ... (a package, so that they ship in the wheel)."""
