"""Alembic migration environment of citycard (a package, so that it ships in the wheel)."""
