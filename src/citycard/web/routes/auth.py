"""Sign-in and sign-out: the page ``/signin`` (staff, citizen by card and PIN, citizen by ID number and
one-time code) and the API ``/api/session``. The sign-in forms carry a pre-session CSRF token (a cookie set
with the page and the same value in the form)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from citycard.bootstrap import WebContext

from .. import security, signin
from ..auth import Auth, clear_cookie, context, set_cookie, store
from ..store import Principal, Store
from ..templating import page

router = APIRouter()

PRE = "citycard_signin"
Ctx = Annotated[WebContext, Depends(context)]
St = Annotated[Store, Depends(store)]

PAN = Field(pattern=r"^[0-9]{12,19}$", description="the card number (12 to 19 digits)")
PIN = Field(pattern=r"^[0-9]{4,12}$", description="the card's PIN (4 to 12 digits)")
ID_NUMBER = Field(pattern=r"^[0-9]{17}[0-9Xx]$", description="resident ID number (GB 11643-1999)")
CODE = Field(pattern=r"^[0-9]{6}$", description="the 6-digit one-time code")


class StaffSignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class CardSignIn(BaseModel):
    pan: str = PAN
    pin: str = PIN


class CodeRequest(BaseModel):
    id_number: str = ID_NUMBER


class CodeSignIn(BaseModel):
    id_number: str = ID_NUMBER
    code: str = CODE


class Session(BaseModel):
    token: str = Field(description="send as 'Authorization: Bearer <token>'")
    csrf_token: str = Field(description="send as 'X-CSRF-Token' with the cookie instead")
    role: str
    subject: str
    home: str


class Me(BaseModel):
    role: str
    subject: str
    bank: str | None = None
    merchant: str | None = None


def _session(done: signin.SignedIn) -> Session:
    p = done.principal
    return Session(
        token=done.token, csrf_token=p.csrf_token, role=p.role, subject=p.subject, home=signin.HOME[p.role]
    )


# --- API ----------------------------------------------------------------------------------------------------
@router.post("/api/session", tags=["session"], responses={401: {}, 429: {}})
def api_staff(body: StaffSignIn, ctx: Ctx, st: St, request: Request, response: Response) -> Session:
    """Sign in as staff (operator, bank, merchant)."""
    done = signin.staff(ctx, st, body.username, body.password)
    set_cookie(request, response, done.token)
    return _session(done)


@router.post("/api/session/card", tags=["session"], responses={401: {}, 403: {}, 429: {}})
def api_card(body: CardSignIn, ctx: Ctx, st: St, request: Request, response: Response) -> Session:
    """Sign in as a citizen with a card number and its PIN."""
    done = signin.citizen_by_card(ctx, st, body.pan, body.pin)
    set_cookie(request, response, done.token)
    return _session(done)


@router.post("/api/session/code-request", tags=["session"], status_code=202, responses={429: {}})
def api_code_request(body: CodeRequest, ctx: Ctx, st: St) -> dict[str, str]:
    """Ask for a one-time code for a resident ID number (sent if it is a cardholder's)."""
    signin.request_code(ctx, st, body.id_number)
    return {"detail": "if the ID number is a cardholder's, a one-time code was sent"}


@router.post("/api/session/code", tags=["session"], responses={401: {}, 429: {}})
def api_code(body: CodeSignIn, ctx: Ctx, st: St, request: Request, response: Response) -> Session:
    """Sign in as a citizen with a resident ID number and the one-time code."""
    done = signin.citizen_by_code(ctx, st, body.id_number, body.code)
    set_cookie(request, response, done.token)
    return _session(done)


@router.get("/api/me", tags=["session"], responses={401: {}})
def api_me(principal: Auth) -> Me:
    """Who the session is."""
    return Me(
        role=principal.role, subject=principal.subject, bank=principal.bank, merchant=principal.merchant
    )


@router.delete("/api/session", tags=["session"], status_code=204, responses={401: {}, 403: {}})
def api_signout(principal: Auth, st: St, response: Response) -> None:
    """Sign out (the session ends)."""
    st.close_session(principal)
    clear_cookie(response)


# --- pages --------------------------------------------------------------------------------------------------
def _presession(request: Request) -> str:
    return request.cookies.get(PRE, "")


def _check_pre(request: Request, csrf_token: str) -> None:
    cookie = _presession(request)
    if not cookie or not csrf_token or not security.same(cookie, csrf_token):
        raise HTTPException(403, "the sign-in form expired: reload the page and try again")


def _signin_page(
    request: Request, *, status: int = 200, error: str = "", notice: str = "", tab: str = "staff"
) -> Response:
    token = _presession(request) or security.new_token()
    response = page(
        request, "signin.html", status_code=status, pre_token=token, error=error, notice=notice, tab=tab
    )
    response.set_cookie(
        PRE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return response


@router.get("/", include_in_schema=False)
def root(request: Request) -> Response:
    return RedirectResponse("/signin", status_code=303)


@router.get("/signin", include_in_schema=False)
def signin_page(request: Request) -> Response:
    return _signin_page(request)


def _signed_in(request: Request, done: signin.SignedIn) -> Response:
    response = RedirectResponse(signin.HOME[done.principal.role], status_code=303)
    set_cookie(request, response, done.token)
    return response


def _attempt(request: Request, tab: str, action: object) -> Response:
    try:
        done = action()  # type: ignore[operator]
    except HTTPException as exc:
        return _signin_page(request, status=exc.status_code, error=str(exc.detail), tab=tab)
    except ValueError as exc:
        return _signin_page(request, status=422, error=str(exc), tab=tab)
    return _signed_in(request, done)


@router.post("/signin", include_in_schema=False)
def signin_staff(
    request: Request,
    ctx: Ctx,
    st: St,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    _check_pre(request, csrf_token)
    return _attempt(request, "staff", lambda: signin.staff(ctx, st, username, password))


@router.post("/signin/card", include_in_schema=False)
def signin_card(
    request: Request,
    ctx: Ctx,
    st: St,
    pan: Annotated[str, Form(pattern=r"^[0-9 ]{12,23}$")],
    pin: Annotated[str, Form(pattern=r"^[0-9]{4,12}$")],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    _check_pre(request, csrf_token)
    return _attempt(request, "card", lambda: signin.citizen_by_card(ctx, st, pan.replace(" ", ""), pin))


@router.post("/signin/code-request", include_in_schema=False)
def signin_code_request(
    request: Request,
    ctx: Ctx,
    st: St,
    id_number: Annotated[str, Form(max_length=18)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    _check_pre(request, csrf_token)
    try:
        signin.request_code(ctx, st, id_number)
    except HTTPException as exc:
        return _signin_page(request, status=exc.status_code, error=str(exc.detail), tab="id")
    except ValueError as exc:
        return _signin_page(request, status=422, error=str(exc), tab="id")
    return _signin_page(
        request, notice="If the ID number is a cardholder's, a one-time code was sent.", tab="code"
    )


@router.post("/signin/code", include_in_schema=False)
def signin_code(
    request: Request,
    ctx: Ctx,
    st: St,
    id_number: Annotated[str, Form(max_length=18)],
    code: Annotated[str, Form(pattern=r"^[0-9]{6}$")],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    _check_pre(request, csrf_token)
    return _attempt(request, "code", lambda: signin.citizen_by_code(ctx, st, id_number, code))


@router.post("/signout", include_in_schema=False)
def signout(principal: Auth, st: St) -> Response:
    st.close_session(principal)
    response = RedirectResponse("/signin", status_code=303)
    clear_cookie(response)
    return response


__all__ = ["Principal", "router"]
