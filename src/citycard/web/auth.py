"""Who is asking, and may they: the session cookie (or ``Authorization: Bearer <token>`` for API clients),
the role a route needs, and the CSRF check of every request that changes something.

- The session cookie ``citycard_session`` is ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` and ``Secure``
  whenever the request came over HTTPS (a browser drops a Secure cookie on plain http to a non-local host,
  and the loopback demo serves http).
- A request that changes something (POST, PUT, PATCH, DELETE) with the cookie must carry the session's CSRF
  token: the form field ``csrf_token`` or the header ``X-CSRF-Token``; otherwise it is refused with 403.
  A request authenticated by a bearer token carries no ambient credential, so it needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response

from citycard.bootstrap import WebContext

from . import security
from .store import Principal, Store

__all__ = [
    "COOKIE",
    "Auth",
    "NotSignedIn",
    "check_csrf",
    "clear_cookie",
    "context",
    "current",
    "require",
    "set_cookie",
    "store",
]

COOKIE = "citycard_session"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class NotSignedIn(Exception):
    """No valid session: pages redirect to the sign-in page, the API answers 401."""


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def store(request: Request) -> Store:
    s: Store = request.app.state.store
    return s


def _token(request: Request) -> tuple[str, bool]:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), True
    return request.cookies.get(COOKIE, ""), False


async def current(request: Request) -> Principal:
    """The signed-in principal (:class:`NotSignedIn` otherwise); unsafe requests are CSRF-checked."""
    token, bearer = _token(request)
    ctx = context(request)
    principal = store(request).session(token, ctx.clock()) if token else None
    if principal is None:
        raise NotSignedIn()
    if request.method in UNSAFE and not bearer:
        await check_csrf(request, principal)
    request.state.principal = principal
    return principal


async def check_csrf(request: Request, principal: Principal) -> None:
    sent = request.headers.get("x-csrf-token", "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token", "")
        sent = value if isinstance(value, str) else ""
    if not sent or not security.same(sent, principal.csrf_token):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")


def require(*roles: str) -> Callable[..., Any]:
    """A dependency: the principal, who must have one of ``roles`` (403 otherwise)."""

    async def dependency(principal: Annotated[Principal, Depends(current)]) -> Principal:
        if principal.role not in roles:
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}, not {principal.role}")
        return principal

    return dependency


Auth = Annotated[Principal, Depends(current)]


def set_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")
