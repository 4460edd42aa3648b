"""The web console's own rows (``citycard.db.web_tables``): staff users, sessions, the sign-in rate limit,
citizens' one-time codes and the audit log. SQLAlchemy Core on the platform's database, one short
transaction per call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from citycard.db import Database
from citycard.db.web_tables import web_audit, web_one_time_codes, web_sessions, web_signin_failures, web_users

from . import security

__all__ = [
    "MAX_FAILURES",
    "ROLES",
    "SESSION_NS",
    "AuditEntry",
    "Principal",
    "Store",
    "UserExists",
]

ROLES = ("operator", "bank", "merchant", "citizen")
SESSION_NS = 8 * 3600 * 10**9
"""A session lasts 8 hours (a counter clerk's shift)."""
MAX_FAILURES = 5
"""Failed sign-ins per key within :data:`FAILURE_WINDOW_NS` after which sign-in is refused (HTTP 429)."""
FAILURE_WINDOW_NS = 15 * 60 * 10**9
CODE_NS = 5 * 60 * 10**9
"""A one-time code is good for 5 minutes."""
MAX_AUDIT_PAGE = 500


class UserExists(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a session is: ``role``, a name (``subject``: a user name, or a masked PAN / ID number's last 4 for
    a citizen) and what it may see (``scope``: ``bank`` for a bank user, ``merchant`` for a merchant user,
    ``holders`` and ``pans`` for a citizen)."""

    role: str
    subject: str
    scope: dict[str, Any]
    csrf_token: str
    token_hash: str = ""

    @property
    def bank(self) -> str | None:
        value = self.scope.get("bank")
        return str(value) if value else None

    @property
    def merchant(self) -> str | None:
        value = self.scope.get("merchant")
        return str(value) if value else None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at_ns: int
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    detail: str


class Store:
    def __init__(self, database: Database) -> None:
        self.engine = database.engine

    # --- users ----------------------------------------------------------------------------------------------
    def add_user(self, username: str, password: str, role: str, scope: str, now_ns: int) -> None:
        if role not in ("operator", "bank", "merchant"):
            raise ValueError(f"role {role!r} is not operator, bank or merchant")
        if not 1 <= len(username) <= 64 or not username.isprintable():
            raise ValueError("a user name is 1 to 64 printable characters")
        if (role == "operator") != (scope == ""):
            raise ValueError("a bank user names its bank, a merchant user its merchant, an operator neither")
        hashed = security.hash_password(password)
        with self.engine.begin() as c:
            if c.execute(select(web_users.c.username).where(web_users.c.username == username)).first():
                raise UserExists(f"user {username!r} exists already")
            c.execute(
                insert(web_users).values(
                    username=username, password_hash=hashed, role=role, scope=scope, created_ns=now_ns
                )
            )

    def check_user(self, username: str, password: str) -> tuple[str, str] | None:
        """``(role, scope)`` of the user if the password is theirs, else None (the same time either way:
        an unknown user's check hashes a dummy)."""
        with self.engine.connect() as c:
            row = c.execute(
                select(web_users.c.password_hash, web_users.c.role, web_users.c.scope).where(
                    web_users.c.username == username
                )
            ).first()
        if row is None:
            security.verify_password(password, _DUMMY_HASH)
            return None
        if not security.verify_password(password, row.password_hash):
            return None
        return row.role, row.scope

    # --- sessions -------------------------------------------------------------------------------------------
    def open_session(
        self, role: str, subject: str, scope: dict[str, Any], now_ns: int
    ) -> tuple[str, Principal]:
        """A new session: its token (for the cookie) and who it is."""
        assert role in ROLES
        token, csrf = security.new_token(), security.new_token()
        hashed = security.token_hash(token)
        with self.engine.begin() as c:
            c.execute(delete(web_sessions).where(web_sessions.c.expires_ns < now_ns))
            c.execute(
                insert(web_sessions).values(
                    token_hash=hashed,
                    csrf_token=csrf,
                    role=role,
                    subject=subject,
                    scope=json.dumps(scope, sort_keys=True),
                    created_ns=now_ns,
                    expires_ns=now_ns + SESSION_NS,
                )
            )
        return token, Principal(role, subject, scope, csrf, hashed)

    def session(self, token: str, now_ns: int) -> Principal | None:
        if not token or len(token) > 128:
            return None
        hashed = security.token_hash(token)
        s = web_sessions.c
        with self.engine.connect() as c:
            row = c.execute(
                select(s.csrf_token, s.role, s.subject, s.scope).where(
                    s.token_hash == hashed, s.expires_ns >= now_ns
                )
            ).first()
        if row is None:
            return None
        return Principal(row.role, row.subject, json.loads(row.scope), row.csrf_token, hashed)

    def close_session(self, principal: Principal) -> None:
        with self.engine.begin() as c:
            c.execute(delete(web_sessions).where(web_sessions.c.token_hash == principal.token_hash))

    # --- rate limit -----------------------------------------------------------------------------------------
    def refused(self, key: str, now_ns: int) -> bool:
        """Whether sign-in for ``key`` is refused now (too many failures in the window)."""
        f = web_signin_failures.c
        with self.engine.connect() as c:
            row = c.execute(select(f.failures, f.window_start_ns).where(f.key == key[:96])).first()
        return (
            row is not None
            and row.failures >= MAX_FAILURES
            and now_ns - row.window_start_ns < FAILURE_WINDOW_NS
        )

    def failed(self, key: str, now_ns: int) -> None:
        f = web_signin_failures.c
        key = key[:96]
        with self.engine.begin() as c:
            row = c.execute(select(f.failures, f.window_start_ns).where(f.key == key)).first()
            if row is None:
                c.execute(insert(web_signin_failures).values(key=key, failures=1, window_start_ns=now_ns))
            elif now_ns - row.window_start_ns >= FAILURE_WINDOW_NS:
                c.execute(
                    update(web_signin_failures).where(f.key == key).values(failures=1, window_start_ns=now_ns)
                )
            else:
                c.execute(update(web_signin_failures).where(f.key == key).values(failures=f.failures + 1))

    def succeeded(self, key: str) -> None:
        with self.engine.begin() as c:
            c.execute(delete(web_signin_failures).where(web_signin_failures.c.key == key[:96]))

    # --- one-time codes -------------------------------------------------------------------------------------
    def put_code(self, key: str, code: str, holders: list[int], now_ns: int) -> None:
        o = web_one_time_codes.c
        with self.engine.begin() as c:
            c.execute(delete(web_one_time_codes).where(or_(o.key == key, o.expires_ns < now_ns)))
            c.execute(
                insert(web_one_time_codes).values(
                    key=key,
                    code_hash=security.token_hash(code),
                    holders=json.dumps(holders),
                    expires_ns=now_ns + CODE_NS,
                )
            )

    def take_code(self, key: str, code: str, now_ns: int) -> list[int] | None:
        """The holders the code was for, if it is the code for ``key`` and still good (it is used up)."""
        o = web_one_time_codes.c
        with self.engine.begin() as c:
            row = c.execute(select(o.code_hash, o.holders, o.expires_ns).where(o.key == key)).first()
            if row is None or row.expires_ns < now_ns:
                return None
            if not security.same(row.code_hash, security.token_hash(code)):
                return None
            c.execute(delete(web_one_time_codes).where(o.key == key))
        return [int(h) for h in json.loads(row.holders)]

    # --- audit ----------------------------------------------------------------------------------------------
    def audit(
        self, principal: Principal | None, action: str, target: str, outcome: str, detail: str, now_ns: int
    ) -> None:
        with self.engine.begin() as c:
            c.execute(
                insert(web_audit).values(
                    at_ns=now_ns,
                    actor=(principal.subject if principal else "-")[:64],
                    role=(principal.role if principal else "-")[:16],
                    action=action[:32],
                    target=target[:64],
                    outcome=outcome[:16],
                    detail=detail[:2000],
                )
            )

    def audit_log(self, *, limit: int = 100, before_id: int | None = None) -> tuple[list[AuditEntry], int]:
        assert 0 < limit <= MAX_AUDIT_PAGE
        a = web_audit.c
        query = select(web_audit)
        if before_id is not None:
            query = query.where(a.id < before_id)
        with self.engine.connect() as c:
            rows = c.execute(query.order_by(a.id.desc()).limit(limit)).all()
            total = int(c.execute(select(func.count()).select_from(web_audit)).scalar_one())
        return [AuditEntry(*row) for row in rows], total


_DUMMY_HASH = security.hash_password("not-a-password-of-anyone")
