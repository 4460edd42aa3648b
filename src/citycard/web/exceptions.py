"""Clearing's exception queue in the console, worked through clearing's own engine
(``citycard.db.clearing_repositories.ClearingEngine.exceptions`` and ``resolve``, issue 9): an operator sees
the queue and accepts (paid as an item of the next run), rejects or charges back an exception; a bank user
sees the exceptions of its cards or its merchants. Every resolution is in the audit log."""

from __future__ import annotations

from typing import Any

from citycard.bootstrap import WebContext
from citycard.clearing import ClearingPolicy, ExceptionAction, LostLiability, allowed_actions, parse_cutovers
from citycard.db.clearing_repositories import ClearingEngine, ExceptionNotFound, ExceptionStateError
from citycard.issuer.model import NotFound

from .store import Principal, Store

__all__ = ["STATUSES", "Refused", "engine", "queue", "resolve"]

STATUSES = ("open", "reported", "accepted", "rejected", "chargeback")
MAX_ROWS = 1000


def engine(ctx: WebContext) -> ClearingEngine:
    """Clearing's engine on the web's database and HSM, with the settings' policy (as ``citycard clearing``
    builds it; a setting that cannot be used is a ``ValueError``, answered 422)."""
    s = ctx.settings
    policy = ClearingPolicy(
        parse_cutovers(s.clearing_cutover), s.clearing_late_days, LostLiability(s.clearing_lost_liability)
    )
    return ClearingEngine(
        ctx.database,
        ctx.hsm,
        policy,
        clock=ctx.clock,
        record_offline_clearing=ctx.issuer.service.record_offline_clearing,
    )


def queue(ctx: WebContext, principal: Principal, status: str | None = "open") -> list[dict[str, Any]]:
    """The exceptions (of ``status``; None: all), oldest first; a bank user's: its cards' or merchants'."""
    rows = engine(ctx).exceptions(status=status, limit=MAX_ROWS)
    if principal.role == "bank":
        rows = [r for r in rows if principal.bank in (r["issuer_bank"], r["acquirer_bank"])]
    keep = (
        "id", "opened_date", "reason", "status", "detail", "pan_masked", "atc", "amount_fen", "terminal_id",
        "merchant_id", "issuer_bank", "acquirer_bank",
    )  # fmt: skip
    return [
        {k: r.get(k) for k in keep}
        | {
            "actions": [
                a.value
                for a in allowed_actions(r["reason"], r["status"], bool(r["cleared"]), r["pending_item"])
            ]
        }
        for r in rows
    ]


class Refused(Exception):
    """The exception's state does not allow the action (HTTP 409; the message says why)."""


def resolve(
    ctx: WebContext, store: Store, principal: Principal, exception_id: int, action: str
) -> dict[str, Any]:
    """Work exception ``exception_id`` (``accept``, ``reject``, ``chargeback``), audited either way:
    :class:`NotFound` for no such exception, :class:`Refused` when its state does not allow it."""
    chosen = ExceptionAction(action)
    target = f"exception {exception_id}"
    try:
        row = engine(ctx).resolve(exception_id, chosen)
    except ExceptionNotFound as exc:
        raise NotFound(str(exc)) from None
    except ExceptionStateError as exc:
        store.audit(principal, f"exception_{chosen.value}", target, "refused", str(exc), ctx.clock())
        raise Refused(str(exc)) from None
    store.audit(principal, f"exception_{chosen.value}", target, "ok", f"status={row['status']}", ctx.clock())
    return {"id": row["id"], "status": row["status"], "reason": row["reason"]}
