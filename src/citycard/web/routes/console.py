"""The service-center console (role ``operator``): the dashboard and its figures, the audit log.
Pages under ``/console``, the API under ``/api``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from citycard.bootstrap import WebContext

from ..auth import context, require, store
from ..figures import DAYS, Figures, figures
from ..store import MAX_AUDIT_PAGE, Principal, Store
from ..templating import page, when

router = APIRouter()

Ctx = Annotated[WebContext, Depends(context)]
St = Annotated[Store, Depends(store)]
Operator = Annotated[Principal, Depends(require("operator"))]


class Count(BaseModel):
    key: str
    count: int


class Amounts(BaseModel):
    key: str
    count: int
    amount_fen: int


class CardsIssued(BaseModel):
    bank: str
    product: str
    count: int


class FiguresOut(BaseModel):
    cards_total: int
    cards_active: int
    cards_registered: int
    cards_by_bank_product: list[CardsIssued]
    merchants_total: int
    merchants_by_industry: list[Count]
    merchants_by_district: list[Count]
    terminals_total: int
    validators: int
    terminals_by_industry: list[Count]
    terminals_by_district: list[Count]
    purchases_by_day: list[Amounts]
    purchases_by_industry: list[Amounts]
    purchases_by_district: list[Amounts]
    ec_float_fen: int


def figures_out(f: Figures) -> FiguresOut:
    return FiguresOut(
        cards_total=f.cards_total,
        cards_active=f.cards_active,
        cards_registered=f.cards_registered,
        cards_by_bank_product=[
            CardsIssued(bank=b, product=p, count=n) for b, p, n in f.cards_by_bank_product
        ],
        merchants_total=f.merchants_total,
        merchants_by_industry=[Count(key=k, count=n) for k, n in f.merchants_by_industry],
        merchants_by_district=[Count(key=k, count=n) for k, n in f.merchants_by_district],
        terminals_total=f.terminals_total,
        validators=f.validators,
        terminals_by_industry=[Count(key=k, count=n) for k, n in f.terminals_by_industry],
        terminals_by_district=[Count(key=k, count=n) for k, n in f.terminals_by_district],
        purchases_by_day=[Amounts(key=d, count=n, amount_fen=a) for d, n, a in f.days],
        purchases_by_industry=[Amounts(key=k, count=n, amount_fen=a) for k, n, a in f.txn_by_industry],
        purchases_by_district=[Amounts(key=k, count=n, amount_fen=a) for k, n, a in f.txn_by_district],
        ec_float_fen=f.ec_float_fen,
    )


@router.get("/api/figures", tags=["console"], responses={401: {}, 403: {}})
def api_figures(ctx: Ctx, principal: Operator) -> FiguresOut:
    """The programme's figures (the dashboard's)."""
    return figures_out(figures(ctx.database.engine, ctx.clock()))


@router.get("/console", include_in_schema=False)
def dashboard(request: Request, ctx: Ctx, principal: Operator) -> Response:
    f = figures(ctx.database.engine, ctx.clock())
    return page(
        request,
        "console/dashboard.html",
        f=f,
        days=DAYS,
        bank=None,
        day_amounts=[(d[5:], fen) for d, _, fen in f.days],
    )


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    detail: str


class AuditPage(BaseModel):
    entries: list[AuditOut]
    total: int


Limit = Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)]
Before = Annotated[int | None, Query(ge=1, le=2**62)]


def _audit(st: Store, limit: int, before: int | None) -> AuditPage:
    entries, total = st.audit_log(limit=limit, before_id=before)
    return AuditPage(
        entries=[
            AuditOut(
                id=e.id,
                at=when(e.at_ns),
                actor=e.actor,
                role=e.role,
                action=e.action,
                target=e.target,
                outcome=e.outcome,
                detail=e.detail,
            )
            for e in entries
        ],
        total=total,
    )


@router.get("/api/audit", tags=["console"], responses={401: {}, 403: {}})
def api_audit(st: St, principal: Operator, limit: Limit = 100, before: Before = None) -> AuditPage:
    """The audit log of operator actions, newest first (``before``: an entry id, for the next page)."""
    return _audit(st, limit, before)


@router.get("/console/audit", include_in_schema=False)
def audit_page(request: Request, st: St, principal: Operator, before: Before = None) -> Response:
    return page(request, "console/audit.html", log=_audit(st, 100, before))
