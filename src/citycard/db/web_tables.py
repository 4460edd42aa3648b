"""SQL tables of the web console (SQLAlchemy 2 Core) on the shared :data:`citycard.db.tables.metadata`.

- ``web_users``: staff who sign in with a name and password (operator, bank, merchant); the password is kept
  as an scrypt hash (``citycard.web.security``), never in clear; ``scope`` is the bank code of a bank user,
  the merchant id of a merchant user, empty for an operator.
- ``web_sessions``: one row per signed-in browser or API client; the cookie carries a random token and the
  row keeps only its SHA-256, the CSRF token of the session's forms, who it is (``role``, ``subject``) and
  what it may see (``scope``: JSON). A citizen's session names their cardholder ids or their one card.
- ``web_signin_failures``: failed sign-ins per key (a user name, a card, an ID number's hash) in a window,
  for the rate limit.
- ``web_one_time_codes``: a citizen's one-time code (its SHA-256), who it is for and until when.
- ``web_audit``: every operator action (and every staff sign-in), who, what, on what, with what outcome.

Migration ``0012_web``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Integer, String, Table, Text

from .tables import metadata

__all__ = ["web_audit", "web_one_time_codes", "web_sessions", "web_signin_failures", "web_users"]

web_users = Table(
    "web_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    CheckConstraint("role IN ('operator', 'bank', 'merchant')", name="role"),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("csrf_token", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Index("ix_web_sessions_expires", "expires_ns"),
)

web_signin_failures = Table(
    "web_signin_failures",
    metadata,
    Column("key", String(96), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start_ns", BigInteger, nullable=False),
)

web_one_time_codes = Table(
    "web_one_time_codes",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("holders", Text, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
)

web_audit = Table(
    "web_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at_ns", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_web_audit_at", "at_ns"),
)
