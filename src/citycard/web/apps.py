"""A card's industry applications in the console (issue 11, docs/public-services.md "Industry
applications"): the registry's applications with their state on the card — enabled or disabled, their data,
and where their record stands on the chip (SFI 22: pending, sent, written) — and the operator's enable and
disable, through the public services' own use cases (``citycard.public.handlers``, as ``citycard public
apps``), audited, refusals too.

Who: an operator (the service center) sees and changes them; a bank user sees them on its own bank's cards
(read-only: enabling an application is the service center's work, not a bank's card service; a bank user's
attempt is refused with 403 and audited); merchants and citizens get "no such card" (404: a citizen sees the
applications on their cards in the portal, ``/me/public``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from citycard.bootstrap import PublicServices, WebContext
from citycard.codec.pan import mask_pan
from citycard.issuer.model import Card, NotFound
from citycard.public.commands import DisableApplication, EnableApplication
from citycard.public.handlers import applications_of, disable_application, enable_application
from citycard.public.model import APPLICATIONS, CardApplication

from .store import Principal, Store

__all__ = ["ACTIONS", "change", "check_reader", "refuse_bank", "states"]

ACTIONS = ("enable", "disable")


def check_reader(principal: Principal, ref: int) -> None:
    """Operators and bank users only (the bank's own cards: :func:`citycard.web.cards.resolve`); anyone
    else is answered as for a card that does not exist."""
    if principal.role not in ("operator", "bank"):
        raise NotFound(f"no card {ref}")


def _state(code: str, app: CardApplication | None) -> dict[str, Any]:
    reg = APPLICATIONS[code]
    return {
        "app": code,
        "name": reg.name,
        "provider": reg.provider,
        "fields": [{"name": f.name, "meaning": f.meaning} for f in reg.fields],
        "status": app.status.value if app else "not enabled",
        "data": dict(app.data) if app else {},
        "on_chip": app.chip if app else None,
    }


def states(ctx: WebContext, card: Card) -> list[dict[str, Any]]:
    """Every application of the registry with its state on ``card`` (in the registry's order)."""
    found = applications_of(card.pan, _public(ctx).unit_of_work(read_only=True))
    return [_state(code, app) for code, app in found.items()]


def change(
    ctx: WebContext,
    store: Store,
    principal: Principal,
    card: Card,
    action: str,
    app: str,
    data: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Enable (with ``data``) or disable ``app`` on ``card`` through the public use case; audited (the
    application and the outcome, not its data: a health insurance number has no place in the audit log).
    Returns the application's new state."""
    assert principal.role == "operator"
    target = mask_pan(card.pan)
    audit_action = f"app_{action}"
    public = _public(ctx)
    try:
        if action == "enable":
            command = EnableApplication(card.pan, app, dict(data or {}))
            done = enable_application(command, public.unit_of_work(), public.clock)
        elif action == "disable":
            done = disable_application(DisableApplication(card.pan, app), public.unit_of_work(), public.clock)
        else:
            raise ValueError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    except Exception as exc:
        store.audit(principal, audit_action, target, "refused", f"{app}: {exc}", ctx.clock())
        raise
    store.audit(
        principal, audit_action, target, "ok", f"{app} {done.status.value} (on the chip: {done.chip})",
        ctx.clock(),
    )  # fmt: skip
    return _state(done.app_code, done)


def refuse_bank(
    ctx: WebContext, store: Store, principal: Principal, action: str, app: str, target: str
) -> str:
    """A bank user's enable or disable: refused (403) and audited; the reason."""
    assert principal.role == "bank"
    reason = (
        "industry applications are enabled and disabled by the service center: a bank's operators see them "
        "read-only"
    )
    store.audit(principal, f"app_{action}", target, "refused", f"{app}: {reason}", ctx.clock())
    return reason


def _public(ctx: WebContext) -> PublicServices:
    return PublicServices(ctx.settings, ctx.database, ctx.clock)
