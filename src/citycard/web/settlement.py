"""Settlement as the web shows it, read through settlement's own store (``citycard.settlement``, issue 9:
``SqlSettlementStore.settled_days`` and ``load``); nothing is computed again here. An operator sees every
settled day (net positions of the banks and the service center, totals by industry, merchants' payouts);
a bank user its own position and the payouts of the merchants it acquires for; a merchant user only its own
payouts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from citycard.bootstrap import WebContext
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.db.settlement_tables import settlement_merchants
from citycard.settlement.ports import DayRecord

from .store import Principal

__all__ = [
    "MAX_DAYS",
    "day_record",
    "fares_by_line",
    "is_settled",
    "latest_lines",
    "lines_of_day",
    "merchant_payouts",
    "positions_of",
    "settled_days",
]

MAX_DAYS = 60
"""The most settled days a listing reads (newest first)."""


def settled_days(ctx: WebContext, limit: int = MAX_DAYS) -> list[str]:
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        return sorted(uow.settlement.settled_days(limit), reverse=True)[:limit]


def day_record(ctx: WebContext, day: str) -> DayRecord | None:
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        return uow.settlement.load(day)


def fares_by_line(ctx: WebContext, day: str, merchant_id: str) -> list[dict[str, int]]:
    """A bus company's fares of the settled ``day`` by bus line (settlement's
    ``SettlementStore.fares_by_line``, as ``citycard settlement report --merchant ID`` prints them): line,
    fares, gross fen; fares uploaded without a line are not in it."""
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        rows = uow.settlement.fares_by_line(day, merchant_id)
    return [{"line": line, "fares": n, "gross_fen": fen} for line, n, fen in rows]


def lines_of_day(ctx: WebContext, record: DayRecord, principal: Principal) -> list[dict[str, Any]]:
    """The fares by line of every bus company (industry ``transport``) ``principal`` may see on the settled
    day (an operator: all; a bank user: the ones it acquires for), one row per company and line."""
    if principal.role == "bank":
        record = record.scoped(bank=principal.bank or "")
    return _lines(ctx, record.day, [m.merchant_id for m in record.merchants if m.industry == "transport"])


def latest_lines(ctx: WebContext) -> tuple[str, list[dict[str, Any]]]:
    """The latest settled day (YYYYMMDD, "" if none) and its bus companies' fares by line (the operator's
    dashboard): the day's transport merchants from ``settlement_merchants``, the lines from the store."""
    days = settled_days(ctx, 1)
    if not days:
        return "", []
    m = settlement_merchants.c
    with ctx.database.engine.connect() as conn:
        companies = conn.execute(
            select(m.merchant_id).where(m.settlement_date == days[0], m.industry == "transport")
        ).scalars()
        return days[0], _lines(ctx, days[0], [str(c) for c in companies])


def _lines(ctx: WebContext, day: str, companies: list[str]) -> list[dict[str, Any]]:
    """The fares by line of the bus companies ``companies`` on ``day``: one query for all of them."""
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        rows = uow.settlement.fares_by_lines(day, companies)
    return [{"merchant_id": m, "line": line, "fares": n, "gross_fen": fen} for m, line, n, fen in rows]


def is_settled(ctx: WebContext, day: str) -> bool:
    """Whether ``day`` is settled, however old (the listings show the newest :data:`MAX_DAYS` only)."""
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        return uow.settlement.is_settled(day)


def merchant_payouts(
    ctx: WebContext, merchant_id: str, limit: int = MAX_DAYS, day: str | None = None
) -> list[dict[str, Any]]:
    """The merchant's rows of the settled days (only ``day``'s when given), newest first: gross, discount,
    net, payout and its date; read by merchant (``ix_settlement_merchants_merchant``), not day by day."""
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        rows = uow.settlement.merchant_days(merchant_id, limit, day)
    return [
        {
            "settlement_date": settled,
            "bank": m.bank,
            "items": m.item_count,
            "gross_fen": m.gross_fen,
            "discount_fen": m.discount_fen,
            "net_fen": m.net_fen,
            "payout_fen": m.payout_fen,
            "payout_date": m.payout_date,
        }
        for settled, m in rows
    ]


def positions_of(ctx: WebContext, participant: str, limit: int = MAX_DAYS) -> list[dict[str, Any]]:
    """A participant's (a bank's) net position on each settled day, newest first."""
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        rows = uow.settlement.participant_days(participant, limit)
    return [{"settlement_date": settled, **position_json(p)} for settled, p in rows]


def position_json(p: Any) -> dict[str, Any]:
    return {
        "participant": p.participant,
        "issued_gross_fen": p.issued_gross_fen,
        "issuer_fee_fen": p.issuer_fee_fen,
        "acquired_net_fen": p.acquired_net_fen,
        "acquirer_fee_fen": p.acquirer_fee_fen,
        "network_fee_fen": p.network_fee_fen,
        "net_fen": p.net_fen,
    }


def day_json(record: DayRecord, principal: Principal) -> dict[str, Any]:
    """A settled day for an operator (everything) or a bank user (its position, its merchants and their
    industries: :meth:`DayRecord.scoped`, the filter of ``citycard settlement report --bank``)."""
    if principal.role == "bank":
        record = record.scoped(bank=principal.bank or "")
    return {
        "settlement_date": record.day,
        "items": record.item_count,
        "positions": [position_json(p) for p in record.positions],
        "industries": [
            {
                "industry": t.key,
                "items": t.item_count,
                "gross_fen": t.gross_fen,
                "discount_fen": t.discount_fen,
            }
            for t in record.industries
        ],
        "merchants": [
            {
                "merchant_id": m.merchant_id,
                "bank": m.bank,
                "industry": m.industry,
                "items": m.item_count,
                "gross_fen": m.gross_fen,
                "net_fen": m.net_fen,
                "payout_fen": m.payout_fen,
                "payout_date": m.payout_date,
            }
            for m in record.merchants
        ],
        "payout_total_fen": record.payout_total_fen,
    }
