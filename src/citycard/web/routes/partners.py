"""Bank and merchant views. A bank user (one bank code) sees that bank's figures, cards (lookup and detail,
through the console's card routes), online authorizations on its cards and its deny list; a merchant user
(one merchant id) sees only that merchant's transactions and sales per day. An operator may open any
merchant's. Another merchant's data is 404 (no such merchant, as far as the asker may know).

Payouts are settlement's (issue 9, read through ``citycard.web.settlement``): per settled day the merchant's
gross, discount, net and payout with its value date. ``/sales`` adds what is not settled yet: the merchant's
approved online sales per business day (Beijing time), gross, as the issuers authorized them.

Settlement reports (operators; a bank user sees its own position and merchants): ``/api/settlement`` and
``/console/settlement``. A merchant's settled day (``/merchant/ID/settlement/YYYYMMDD``,
``GET /api/merchants/ID/settlement/YYYYMMDD/lines``): its payout and, for a bus company, its fares by bus
line (settlement's ``SettlementStore.fares_by_line``), seen by whoever may see the merchant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from citycard.bootstrap import WebContext
from citycard.codec.pan import mask_pan
from citycard.db.center_tables import center_merchants
from citycard.db.issuer_tables import issuer_authorizations, issuer_cards
from citycard.issuer.model import NotFound
from citycard.issuer.views import iso_time

from .. import settlement
from ..auth import context, require
from ..figures import DAYS, figures
from ..store import Principal
from ..templating import page
from .console import FiguresOut, figures_out

router = APIRouter()

Ctx = Annotated[WebContext, Depends(context)]
Bank = Annotated[Principal, Depends(require("bank"))]
MerchantOrStaff = Annotated[Principal, Depends(require("merchant", "operator", "bank"))]
MerchantId = Annotated[str, Path(pattern=r"^[0-9A-Z]{15}$")]
Limit = Annotated[int, Query(ge=1, le=1000)]
MAX_ROWS = 1000


class Authorization(BaseModel):
    at: str
    kind: str
    pan: str = Field(description="masked")
    amount_fen: int
    response_code: str
    merchant_id: str
    terminal_id: str
    reversed: bool


class Payout(BaseModel):
    settlement_date: str = Field(description="YYYYMMDD")
    bank: str
    items: int
    gross_fen: int
    discount_fen: int
    net_fen: int
    payout_fen: int
    payout_date: str = Field(description="YYYYMMDD: the value date of the payout (T+1)")


class Position(BaseModel):
    settlement_date: str
    participant: str
    issued_gross_fen: int
    issuer_fee_fen: int
    acquired_net_fen: int
    acquirer_fee_fen: int
    network_fee_fen: int
    net_fen: int = Field(description="> 0: the participant receives; < 0: it pays")


class FareLine(BaseModel):
    line: int = Field(description="the bus line the validators journaled (field 63 of their uploads)")
    fares: int = Field(description="fares cleared on the line that day")
    gross_fen: int


class DaySales(BaseModel):
    day: str = Field(description="business day, Beijing time")
    count: int
    amount_fen: int


def _authorizations(
    ctx: WebContext, *, bank: str | None = None, merchant: str | None = None, limit: int
) -> list[Authorization]:
    a, c = issuer_authorizations.c, issuer_cards.c
    query = select(
        a.created_ns,
        a.kind,
        a.pan,
        a.amount_fen,
        a.response_code,
        a.merchant_id,
        a.terminal_id,
        a.reversed_by,
    )
    if bank is not None:
        query = query.where(a.pan.in_(select(c.pan).where(c.bank_code == bank)))
    if merchant is not None:
        query = query.where(a.merchant_id == merchant)
    with ctx.database.engine.connect() as conn:
        rows = conn.execute(query.order_by(a.created_ns.desc()).limit(limit)).all()
    return [
        Authorization(
            at=iso_time(r.created_ns),
            kind=r.kind,
            pan=mask_pan(r.pan),
            amount_fen=r.amount_fen,
            response_code=r.response_code,
            merchant_id=r.merchant_id,
            terminal_id=r.terminal_id,
            reversed=r.reversed_by is not None,
        )
        for r in rows
    ]


# --- bank ---------------------------------------------------------------------------------------------------
@router.get("/api/bank/figures", tags=["bank"], responses={401: {}, 403: {}})
def api_bank_figures(ctx: Ctx, principal: Bank) -> FiguresOut:
    """The bank's own figures (its cards, the purchases on them, its EC float; the registry's figures are
    the whole programme's)."""
    return figures_out(figures(ctx.database.engine, ctx.clock(), bank=principal.bank))


@router.get("/api/bank/settlement", tags=["bank"], responses={401: {}, 403: {}})
def api_bank_settlement(ctx: Ctx, principal: Bank) -> list[Position]:
    """The bank's net position on each settled day, newest first."""
    return [Position(**p) for p in settlement.positions_of(ctx, principal.bank or "")]


@router.get("/api/bank/authorizations", tags=["bank"], responses={401: {}, 403: {}})
def api_bank_authorizations(ctx: Ctx, principal: Bank, limit: Limit = 100) -> list[Authorization]:
    """Online authorizations on the bank's cards, newest first."""
    return _authorizations(ctx, bank=principal.bank, limit=limit)


@router.get("/bank", include_in_schema=False)
def bank_home(request: Request, ctx: Ctx, principal: Bank) -> Response:
    f = figures(ctx.database.engine, ctx.clock(), bank=principal.bank)
    return page(
        request,
        "partners/bank.html",
        f=f,
        days=DAYS,
        bank=principal.bank,
        day_amounts=[(d[5:], fen) for d, _, fen in f.days],
        authorizations=_authorizations(ctx, bank=principal.bank, limit=50),
        positions=settlement.positions_of(ctx, principal.bank or ""),
    )


# --- merchant -----------------------------------------------------------------------------------------------
def _merchant(ctx: WebContext, principal: Principal, merchant_id: str) -> str:
    """``merchant_id`` if ``principal`` may see it (its own; an operator any; a bank the merchants it
    acquires for), else :class:`NotFound`."""
    m = center_merchants.c
    with ctx.database.engine.connect() as conn:
        bank = conn.execute(select(m.bank_code).where(m.merchant_id == merchant_id)).first()
    allowed = bank is not None and (
        principal.role == "operator"
        or (principal.role == "merchant" and principal.merchant == merchant_id)
        or (principal.role == "bank" and bank[0] == principal.bank)
    )
    if not allowed:
        raise NotFound(f"no merchant {merchant_id}")
    return merchant_id


def _sales(ctx: WebContext, merchant_id: str) -> list[DaySales]:
    a = issuer_authorizations.c
    day = (a.created_ns // 10**9 + 28_800) // 86_400  # the Beijing day (integer division)
    with ctx.database.engine.connect() as conn:
        rows = conn.execute(
            select(day, func.count(), func.sum(a.amount_fen))
            .where(
                a.merchant_id == merchant_id,
                a.kind == "purchase",
                a.response_code == "00",
                a.reversed_by.is_(None),
            )
            .group_by(day)
            .order_by(day.desc())
            .limit(366)
        ).all()
    from datetime import date, timedelta

    return [
        DaySales(
            day=(date(1970, 1, 1) + timedelta(days=int(r[0]))).isoformat(),
            count=int(r[1]),
            amount_fen=int(r[2] or 0),
        )
        for r in rows
    ]


@router.get(
    "/api/merchants/{merchant_id}/transactions", tags=["merchant"], responses={401: {}, 403: {}, 404: {}}
)
def api_merchant_transactions(
    merchant_id: MerchantId, ctx: Ctx, principal: MerchantOrStaff, limit: Limit = 100
) -> list[Authorization]:
    """The merchant's online transactions, newest first (PANs masked)."""
    return _authorizations(ctx, merchant=_merchant(ctx, principal, merchant_id), limit=limit)


@router.get("/api/merchants/{merchant_id}/payouts", tags=["merchant"], responses={401: {}, 403: {}, 404: {}})
def api_merchant_payouts(merchant_id: MerchantId, ctx: Ctx, principal: MerchantOrStaff) -> list[Payout]:
    """The merchant's settled days (settlement's): gross, discount, net, payout and its value date."""
    return [Payout(**p) for p in settlement.merchant_payouts(ctx, _merchant(ctx, principal, merchant_id))]


@router.get("/api/merchants/{merchant_id}/sales", tags=["merchant"], responses={401: {}, 403: {}, 404: {}})
def api_merchant_sales(merchant_id: MerchantId, ctx: Ctx, principal: MerchantOrStaff) -> list[DaySales]:
    """The merchant's approved online sales per business day (Beijing time), gross, settled or not."""
    return _sales(ctx, _merchant(ctx, principal, merchant_id))


@router.get("/merchant", include_in_schema=False)
def merchant_home(
    request: Request, ctx: Ctx, principal: Annotated[Principal, Depends(require("merchant"))]
) -> Response:
    mid = principal.merchant or ""
    return page(
        request,
        "partners/merchant.html",
        merchant_id=mid,
        transactions=_authorizations(ctx, merchant=_merchant(ctx, principal, mid), limit=100),
        sales=_sales(ctx, mid),
        payouts=settlement.merchant_payouts(ctx, mid),
    )


@router.get("/merchant/{merchant_id}/payouts", include_in_schema=False)
def merchant_payouts_page(
    request: Request, merchant_id: MerchantId, ctx: Ctx, principal: MerchantOrStaff
) -> Response:
    mid = _merchant(ctx, principal, merchant_id)
    return page(
        request,
        "partners/payouts.html",
        merchant_id=mid,
        sales=_sales(ctx, mid),
        payouts=settlement.merchant_payouts(ctx, mid),
    )


# --- settlement reports (operators; a bank user: its own position and merchants) ----------------------------
Day = Annotated[str, Path(pattern=r"^[0-9]{8}$", description="settlement date YYYYMMDD")]


def _settled(ctx: WebContext, day: str) -> str:
    if not settlement.is_settled(ctx, day):
        raise NotFound(f"day {day} is not settled")
    return day


@router.get(
    "/api/merchants/{merchant_id}/settlement/{day}/lines",
    tags=["merchant"],
    responses={401: {}, 403: {}, 404: {}},
)
def api_merchant_fares_by_line(
    merchant_id: MerchantId, day: Day, ctx: Ctx, principal: MerchantOrStaff
) -> list[FareLine]:
    """A bus company's fares of a settled day by bus line (line, fares, gross), by line; fares uploaded
    without a line are left out. Another merchant's, or a day not settled: 404."""
    mid = _merchant(ctx, principal, merchant_id)
    return [FareLine(**f) for f in settlement.fares_by_line(ctx, _settled(ctx, day), mid)]


@router.get("/merchant/{merchant_id}/settlement/{day}", include_in_schema=False)
def merchant_day_page(
    request: Request, merchant_id: MerchantId, day: Day, ctx: Ctx, principal: MerchantOrStaff
) -> Response:
    mid = _merchant(ctx, principal, merchant_id)
    chosen = _settled(ctx, day)
    lines = settlement.fares_by_line(ctx, chosen, mid)
    return page(
        request,
        "partners/merchant_day.html",
        merchant_id=mid,
        day=chosen,
        payouts=settlement.merchant_payouts(ctx, mid, day=chosen),
        lines=lines,
        line_chart=[(f"line {f['line']}", f["gross_fen"]) for f in lines],
    )


Staff = Annotated[Principal, Depends(require("operator", "bank"))]


@router.get("/api/settlement", tags=["settlement"], responses={401: {}, 403: {}})
def api_settled_days(ctx: Ctx, principal: Staff) -> list[str]:
    """The settled days, newest first (at most 60)."""
    return settlement.settled_days(ctx)


@router.get("/api/settlement/{day}", tags=["settlement"], responses={401: {}, 403: {}, 404: {}})
def api_settlement_day(day: Day, ctx: Ctx, principal: Staff) -> dict[str, Any]:
    """A settled day: net positions, totals by industry, merchants' payouts and the bus companies' fares by
    line (a bank user: its own position and merchants)."""
    record = settlement.day_record(ctx, day)
    if record is None:
        raise NotFound(f"day {day} is not settled")
    return {
        **settlement.day_json(record, principal),
        "fares_by_line": settlement.lines_of_day(ctx, record, principal),
    }


@router.get("/console/settlement", include_in_schema=False)
def settlement_page(request: Request, ctx: Ctx, principal: Staff, day: str = "") -> Response:
    days = settlement.settled_days(ctx)
    chosen = day if day in days else (days[0] if days else "")
    record = settlement.day_record(ctx, chosen) if chosen else None
    lines = settlement.lines_of_day(ctx, record, principal) if record else []
    return page(
        request,
        "console/settlement.html",
        days=days,
        chosen=chosen,
        d=settlement.day_json(record, principal) if record else None,
        lines=lines,
        line_chart=[(f"{f['merchant_id'][-6:]} line {f['line']}", f["gross_fen"]) for f in lines],
    )
