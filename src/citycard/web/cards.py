"""Cards as the web shows them, to whoever may see them: the lookup (PAN suffix, resident ID number, phone),
a card's status and books, its recent transactions, and the card services (report loss, replace, close,
refund the EC balance, top up the EC balance from the deposit account), each through the issuer's use case.

A card is named in URLs and the API by its **card reference**: the id of its EC float account in the ledger
(an internal number, unique per card, that reveals nothing), never by its PAN; PANs are shown masked.
Who may see a card: an operator any card; a bank user its bank's cards; a citizen their own (the cardholders
or the one card of their session); a merchant none. A card someone may not see is "no such card" (404), so
a reference tells nothing about cards of others.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from citycard.bootstrap import WebContext
from citycard.codec.pan import mask_pan
from citycard.db.issuer_tables import issuer_authorizations, issuer_cards
from citycard.issuer.commands import (
    CloseCard,
    LoadEcFromAccount,
    RefundEcBalance,
    ReplaceCard,
    ReportLost,
    RevokeConcession,
    SetConcession,
)
from citycard.issuer.model import Card, CardStatus, NotFound
from citycard.issuer.views import TRANSFER_KINDS, CardSearch, card_status, find_cards, iso_time, transfer_kind

from .store import Principal, Store

__all__ = [
    "CardView",
    "deny_list",
    "detail",
    "lookup",
    "my_cards",
    "resolve",
    "service",
]

MAX_RESULTS = 50
RECENT = 20


@dataclass(frozen=True)
class CardView:
    ref: int
    pan: str  # masked
    bank: str
    product: str
    status: str
    registered: bool
    expiry: str


def view(card: Card) -> CardView:
    return CardView(
        card.ec_float_account_id,
        mask_pan(card.pan),
        card.bank_code,
        card.product_code,
        card.status.value,
        card.registered,
        card.expiry,
    )


def may_see(principal: Principal, card: Card) -> bool:
    if principal.role == "operator":
        return True
    if principal.role == "bank":
        return card.bank_code == principal.bank
    if principal.role == "citizen":
        holders = principal.scope.get("holders") or []
        pans = principal.scope.get("pans") or []
        return (card.holder_id is not None and card.holder_id in holders) or card.pan in pans
    return False


def resolve(ctx: WebContext, principal: Principal, ref: int) -> Card:
    """The card of reference ``ref`` if ``principal`` may see it, else :class:`NotFound`."""
    with ctx.database.engine.connect() as c:
        pan = c.execute(select(issuer_cards.c.pan).where(issuer_cards.c.ec_float_account_id == ref)).scalar()
    card = None
    if pan is not None:
        with ctx.issuer.unit_of_work(read_only=True) as uow:
            card = uow.cards.get(pan)
    if card is None or not may_see(principal, card):
        raise NotFound(f"no card {ref}")
    return card


class OtherBank(PermissionError):
    """A bank user asked for a card service on another bank's card (403 with this reason)."""


def resolve_for_service(ctx: WebContext, store: Store, principal: Principal, ref: int, action: str) -> Card:
    """The card of ``ref`` for a card service by ``principal``: as :func:`resolve`, except that a bank user
    naming another bank's card is refused with :class:`OtherBank` (403, the reason said and audited) rather
    than "no card": card services are staff work, and the refusal says why."""
    if principal.role == "bank":
        with ctx.database.engine.connect() as c:
            row = c.execute(
                select(issuer_cards.c.pan, issuer_cards.c.bank_code).where(
                    issuer_cards.c.ec_float_account_id == ref
                )
            ).first()
        if row is not None and row.bank_code != principal.bank:
            reason = (
                f"card {ref} is not a card of {principal.bank}: a bank's operators serve only their own "
                "bank's cards"
            )
            store.audit(principal, action, mask_pan(row.pan), "refused", reason, ctx.clock())
            raise OtherBank(reason)
    return resolve(ctx, principal, ref)


def lookup(
    ctx: WebContext,
    principal: Principal,
    *,
    pan_suffix: str | None = None,
    id_number: str | None = None,
    phone: str | None = None,
) -> tuple[list[CardView], int]:
    """Cards matching every criterion given (at least one), in PAN order: at most :data:`MAX_RESULTS`, and
    how many match in all; a bank user sees only its bank's."""
    if not (pan_suffix or id_number or phone):
        raise ValueError("give a PAN suffix, an ID number or a phone number")
    search = CardSearch(
        bank_code=principal.bank if principal.role == "bank" else None,
        pan_suffix=pan_suffix or None,
        id_number=id_number or None,
        phone=phone or None,
    )
    with ctx.issuer.unit_of_work(read_only=True) as uow:
        found = find_cards(uow, ctx.hsm, search, limit=MAX_RESULTS)
    return [view(c) for c in found.cards], found.total


def my_cards(ctx: WebContext, principal: Principal) -> list[CardView]:
    """A citizen's own cards."""
    assert principal.role == "citizen"
    cards: dict[str, Card] = {}
    with ctx.issuer.unit_of_work(read_only=True) as uow:
        for holder in principal.scope.get("holders") or []:
            for card in uow.cards.by_holder(int(holder)):
                cards[card.pan] = card
        for pan in principal.scope.get("pans") or []:
            found = uow.cards.get(str(pan))
            if found is not None:
                cards[found.pan] = found
    return [view(cards[pan]) for pan in sorted(cards)]


def detail(ctx: WebContext, card: Card) -> dict[str, Any]:
    """The card as its bank's books see it (``issuer.views.card_status``, PAN masked), its recent ledger
    movements and its recent online authorizations."""
    with ctx.issuer.unit_of_work(read_only=True) as uow:
        status = card_status(uow, card.pan)
        accounts = [card.ec_float_account_id] + ([card.deposit_account_id] if card.deposit_account_id else [])
        transfers = uow.books.journal(account_ids=accounts, limit=RECENT)
        owners = uow.books.owners({a for t in transfers for a in (t.debit_account_id, t.credit_account_id)})
    movements = []
    for t in transfers:
        kind = transfer_kind(t, owners.get(t.debit_account_id), owners.get(t.credit_account_id))
        side = "ec" if card.ec_float_account_id in (t.debit_account_id, t.credit_account_id) else "deposit"
        into = t.credit_account_id in accounts
        out = t.debit_account_id in accounts
        sign = 0 if into and out else (1 if into else -1)
        movements.append(
            {
                "at": iso_time(t.timestamp_ns),
                "kind": kind,
                "what": TRANSFER_KINDS.get(kind, kind),
                "account": side,
                "amount_fen": sign * t.amount_fen if sign else t.amount_fen,
            }
        )
    a = issuer_authorizations.c
    with ctx.database.engine.connect() as c:
        rows = c.execute(
            select(a.created_ns, a.kind, a.amount_fen, a.response_code, a.merchant_id, a.terminal_id)
            .where(a.pan == card.pan)
            .order_by(a.created_ns.desc())
            .limit(RECENT)
        ).all()
    authorizations = [
        {
            "at": iso_time(r.created_ns),
            "kind": r.kind,
            "amount_fen": r.amount_fen,
            "response_code": r.response_code,
            "merchant_id": r.merchant_id,
            "terminal_id": r.terminal_id,
        }
        for r in rows
    ]
    status["ref"] = card.ec_float_account_id
    return {"card": status, "movements": movements, "authorizations": authorizations}


SERVICES = ("report_lost", "replace", "close", "refund", "top_up", "concession", "revoke_concession")


def service(
    ctx: WebContext,
    store: Store,
    principal: Principal,
    card: Card,
    action: str,
    *,
    to: str = "account",
    amount_fen: int = 0,
    request_id: str = "",
    category: str = "",
    until: date | None = None,
) -> dict[str, Any]:
    """Carry out a card service through the issuer's use case; an operator's (and a bank user's) is audited,
    refused ones too. Returns what changed. A citizen may report a loss and top up, nothing else."""
    if principal.role == "citizen" and action not in ("report_lost", "top_up"):
        raise PermissionError(f"a cardholder cannot {action.replace('_', ' ')} a card here: ask the counter")
    if principal.role == "merchant":
        raise PermissionError("a merchant has no card services")
    svc = ctx.issuer.service
    target = mask_pan(card.pan)
    try:
        result: dict[str, Any]
        if action == "report_lost":
            done = svc.report_lost(ReportLost(card.pan))
            result = {"status": done.status.value}
        elif action == "replace":
            new = svc.replace_card(ReplaceCard(card.pan))
            result = {"replacement": view(new).__dict__}
        elif action == "close":
            done = svc.close(CloseCard(card.pan))
            result = {"status": done.status.value}
        elif action == "refund":
            moved = svc.refund_ec_balance(RefundEcBalance(card.pan, to))  # type: ignore[arg-type]
            result = {"refunded_fen": moved, "to": to}
        elif action == "concession":  # the holder's transit concession, by script at the next contact
            assert until is not None
            record = svc.set_concession(SetConcession(card.pan, category, until))
            result = {"concession": category, "valid_until": until.isoformat(), "on_chip": record.state.value}
        elif action == "revoke_concession":
            record = svc.revoke_concession(RevokeConcession(card.pan))
            result = {"concession": "none", "on_chip": record.state.value}
        elif action == "top_up":
            rid = request_id or f"web-{uuid.uuid4().hex}"
            done = svc.load_ec_from_account(LoadEcFromAccount(card.pan, amount_fen, rid))
            result = {"pending_ec_credit_fen": done.pending_ec_credit_fen, "request_id": rid}
        else:
            raise ValueError(f"unknown card service {action!r}")
    except Exception as exc:
        if principal.role in ("operator", "bank"):
            store.audit(principal, action, target, "refused", str(exc), ctx.clock())
        raise
    if principal.role in ("operator", "bank"):
        store.audit(
            principal, action, target, "ok", ", ".join(f"{k}={v}" for k, v in result.items()), ctx.clock()
        )
    return result


def deny_list(ctx: WebContext, principal: Principal) -> list[dict[str, Any]]:
    """The deny list entries of every bank (a bank user: its own), PANs masked, newest first."""
    out: list[dict[str, Any]] = []
    with ctx.issuer.unit_of_work(read_only=True) as uow:
        banks = [b.code for b in uow.banks.list()]
        if principal.role == "bank":
            banks = [b for b in banks if b == principal.bank]
        for bank in banks:
            version, _ = uow.deny_list.version(bank)
            for e in uow.deny_list.entries(bank):
                if e.removed_ns is not None:
                    continue
                card = uow.cards.get(e.pan)
                out.append(
                    {
                        "bank": bank,
                        "pan": mask_pan(e.pan),
                        "ref": card.ec_float_account_id if card else None,
                        "reason": e.reason,
                        "added": iso_time(e.added_ns),
                        "added_ns": e.added_ns,
                        "version": version,
                    }
                )
    out.sort(key=lambda e: -int(e["added_ns"]))
    return out


__all__ += ["MAX_RESULTS", "SERVICES", "CardStatus", "OtherBank", "may_see", "resolve_for_service", "view"]
