"""Settlement as the web shows it, read through settlement's own store (``citycard.settlement``, issue 9:
``SqlSettlementStore.settled_days`` and ``load``); nothing is computed again here. An operator sees every
settled day (net positions of the banks and the service center, totals by industry, merchants' payouts);
a bank user its own position and the payouts of the merchants it acquires for; a merchant user only its own
payouts."""

from __future__ import annotations

from typing import Any

from citycard.bootstrap import WebContext
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.settlement.ports import DayRecord

from .store import Principal

__all__ = ["MAX_DAYS", "day_record", "merchant_payouts", "positions_of", "settled_days"]

MAX_DAYS = 60
"""The most settled days a listing reads (newest first)."""


def settled_days(ctx: WebContext, limit: int = MAX_DAYS) -> list[str]:
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        return sorted(uow.settlement.settled_days(limit), reverse=True)[:limit]


def day_record(ctx: WebContext, day: str) -> DayRecord | None:
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        return uow.settlement.load(day)


def _records(ctx: WebContext, limit: int) -> list[DayRecord]:
    days = settled_days(ctx, limit)
    with ctx.database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        loaded = [uow.settlement.load(d) for d in days]
    return [r for r in loaded if r is not None]


def merchant_payouts(ctx: WebContext, merchant_id: str, limit: int = MAX_DAYS) -> list[dict[str, Any]]:
    """The merchant's rows of the settled days, newest first: gross, discount, net, payout and its date."""
    out = []
    for record in _records(ctx, limit):
        for m in record.merchants:
            if m.merchant_id == merchant_id:
                out.append(
                    {
                        "settlement_date": record.day,
                        "bank": m.bank,
                        "items": m.item_count,
                        "gross_fen": m.gross_fen,
                        "discount_fen": m.discount_fen,
                        "net_fen": m.net_fen,
                        "payout_fen": m.payout_fen,
                        "payout_date": m.payout_date,
                    }
                )
    return out


def positions_of(ctx: WebContext, participant: str, limit: int = MAX_DAYS) -> list[dict[str, Any]]:
    """A participant's (a bank's) net position on each settled day, newest first."""
    out = []
    for record in _records(ctx, limit):
        for p in record.positions:
            if p.participant == participant:
                out.append({"settlement_date": record.day, **position_json(p)})
    return out


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
