"""Citizen self-service (role ``citizen``): my cards with their EC balance as the bank's books see it and the
transaction details, report a card lost, top up the EC balance from the linked deposit account (the issuer's
``LoadEcFromAccount``: the EC float is credited now and the chip receives the new balance at its next online
contact). Pages under ``/me``, the API under ``/api/me`` and ``/api/cards``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from citycard.bootstrap import WebContext
from citycard.codec.money import parse_yuan
from citycard.issuer.commands import MAX_AMOUNT_FEN
from citycard.issuer.model import IssuerError

from .. import cards
from ..auth import context, require, store
from ..store import Principal, Store
from ..templating import page

router = APIRouter()

Ctx = Annotated[WebContext, Depends(context)]
St = Annotated[Store, Depends(store)]
Citizen = Annotated[Principal, Depends(require("citizen"))]
Ref = Annotated[int, Path(ge=1, le=2**62, description="card reference")]


class MyCard(BaseModel):
    ref: int
    pan: str = Field(description="masked")
    bank: str
    product: str
    status: str
    registered: bool
    expiry: str
    ec_balance_fen: int
    pending_ec_credit_fen: int
    deposit_available_fen: int | None


class TopUp(BaseModel):
    amount_fen: int = Field(gt=0, lt=MAX_AMOUNT_FEN, description="fen to move from the deposit account")
    request_id: str | None = Field(
        default=None, min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.-]+$", description="idempotency key"
    )


def _mine(ctx: WebContext, principal: Principal) -> list[dict[str, Any]]:
    out = []
    for v in cards.my_cards(ctx, principal):
        d = cards.detail(ctx, cards.resolve(ctx, principal, v.ref))["card"]
        out.append(
            {
                **v.__dict__,
                **{k: d[k] for k in ("ec_balance_fen", "pending_ec_credit_fen", "deposit_available_fen")},
            }
        )
    return out


@router.get("/api/me/cards", tags=["self-service"], responses={401: {}, 403: {}})
def api_my_cards(ctx: Ctx, principal: Citizen) -> list[MyCard]:
    """My cards and their balances."""
    return [MyCard(**c) for c in _mine(ctx, principal)]


@router.post("/api/cards/{ref}/top-up", tags=["self-service"], responses={401: {}, 403: {}, 404: {}, 409: {}})
def api_top_up(ref: Ref, body: TopUp, ctx: Ctx, st: St, principal: Citizen) -> dict[str, Any]:
    """Move money from my deposit account into my card's EC balance (on the chip at its next online
    contact)."""
    card = cards.resolve(ctx, principal, ref)
    return cards.service(
        ctx, st, principal, card, "top_up", amount_fen=body.amount_fen, request_id=body.request_id or ""
    )


@router.get("/me", include_in_schema=False)
def home(request: Request, ctx: Ctx, principal: Citizen) -> Response:
    return page(request, "citizen/home.html", mine=_mine(ctx, principal))


@router.get("/me/cards/{ref}", include_in_schema=False)
def my_card(request: Request, ref: Ref, ctx: Ctx, principal: Citizen) -> Response:
    return page(request, "citizen/card.html", d=cards.detail(ctx, cards.resolve(ctx, principal, ref)))


@router.post("/me/cards/{ref}/report-lost", include_in_schema=False)
def report_lost_form(request: Request, ref: Ref, ctx: Ctx, st: St, principal: Citizen) -> Response:
    card = cards.resolve(ctx, principal, ref)
    try:
        cards.service(ctx, st, principal, card, "report_lost")
    except IssuerError as exc:
        return page(request, "citizen/card.html", status_code=409, d=cards.detail(ctx, card), error=str(exc))
    return page(
        request, "citizen/card.html", d=cards.detail(ctx, card), notice="Reported lost: the card is blocked."
    )


@router.post("/me/cards/{ref}/top-up", include_in_schema=False)
def top_up_form(
    request: Request,
    ref: Ref,
    ctx: Ctx,
    st: St,
    principal: Citizen,
    amount: Annotated[str, Form(max_length=16)],
    request_id: Annotated[str, Form(max_length=48, pattern=r"^[A-Za-z0-9_.-]*$")] = "",
) -> Response:
    card = cards.resolve(ctx, principal, ref)
    text = amount.strip()
    try:
        fen = parse_yuan(text, max_whole_digits=9)
    except ValueError:
        fen = 0
    if fen <= 0:
        raise HTTPException(422, f"amount: {amount!r} is not an amount in yuan, such as 50 or 12.50")
    try:
        cards.service(ctx, st, principal, card, "top_up", amount_fen=fen, request_id=request_id)
    except IssuerError as exc:
        return page(request, "citizen/card.html", status_code=409, d=cards.detail(ctx, card), error=str(exc))
    notice = f"¥{text} moved to the EC balance: your card receives it at its next online payment or load."
    return page(request, "citizen/card.html", d=cards.detail(ctx, card), notice=notice)
