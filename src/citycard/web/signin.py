"""Signing in, for the pages and the API alike: staff by name and password, a citizen by card number and PIN
(checked by the issuer in the HSM, never stored or logged) or by resident ID number and a one-time code (the
code goes to the log: the demo's stand-in for a text message). Failures are counted per key (a user, a card,
a cardholder) and sign-in is refused with 429 after :data:`~citycard.web.store.MAX_FAILURES` in the window.
Every staff sign-in, good or bad, is in the audit log."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date

from fastapi import HTTPException

from citycard.bootstrap import WebContext
from citycard.codec.pan import mask_pan
from citycard.issuer.commands import CheckPin
from citycard.issuer.model import CardStateError, bank_key_labels, validate_id_number

from . import security
from .store import Principal, Store

__all__ = ["HOME", "SignedIn", "citizen_by_card", "citizen_by_code", "request_code", "staff"]

log = logging.getLogger("citycard.web")

HOME = {"operator": "/console", "bank": "/bank", "merchant": "/merchant", "citizen": "/me"}
"""Where each role lands after signing in."""


@dataclass(frozen=True)
class SignedIn:
    token: str
    principal: Principal


def _too_many(store: Store, key: str, now: int) -> None:
    if store.refused(key, now):
        raise HTTPException(429, "too many failed sign-ins: wait 15 minutes and try again")


def staff(ctx: WebContext, store: Store, username: str, password: str) -> SignedIn:
    now = ctx.clock()
    key = f"user:{username}"
    _too_many(store, key, now)
    found = store.check_user(username, password)
    if found is None:
        store.failed(key, now)
        store.audit(None, "signin", username, "refused", "wrong user name or password", now)
        raise HTTPException(401, "wrong user name or password")
    store.succeeded(key)
    role, scope = found
    scope_map = {"bank": scope} if role == "bank" else {"merchant": scope} if role == "merchant" else {}
    token, principal = store.open_session(role, username, scope_map, now)
    store.audit(principal, "signin", username, "ok", "", now)
    return SignedIn(token, principal)


def citizen_by_card(ctx: WebContext, store: Store, pan: str, pin: str) -> SignedIn:
    now = ctx.clock()
    key = "card:" + hashlib.sha256(pan.encode()).hexdigest()
    _too_many(store, key, now)
    with ctx.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan)
    refused = HTTPException(401, "wrong card number or PIN")
    if card is None:
        store.failed(key, now)
        raise refused
    try:
        ok = ctx.issuer.service.check_pin(CheckPin(pan, pin))
    except CardStateError as exc:
        store.failed(key, now)
        raise HTTPException(403, str(exc)) from None
    if not ok:
        store.failed(key, now)
        raise refused
    store.succeeded(key)
    scope = {"holders": [card.holder_id]} if card.holder_id is not None else {"pans": [card.pan]}
    token, principal = store.open_session("citizen", mask_pan(card.pan), scope, now)
    return SignedIn(token, principal)


def _holders(ctx: WebContext, id_number: str) -> tuple[str, list[int]]:
    """The normalised ID number's last 4 and the ids of its holders at every bank (hashed in the HSM under
    each bank's ID key, as the issuer stores them)."""
    value = validate_id_number(id_number, today=date.max)
    with ctx.issuer.unit_of_work(read_only=True) as uow:
        banks = [b.code for b in uow.banks.list()]
        hashes = [
            ctx.hsm.keyed_hash(ctx.hsm.get(bank_key_labels(b)["id_hash"]), value.encode()).hex()
            for b in banks
        ]
        holders = sorted(h.id for h in uow.cardholders.by_id_hashes(hashes))
    return value[-4:], holders


def _code_key(holders: list[int]) -> str:
    return "holders:" + ",".join(str(h) for h in holders)


def request_code(ctx: WebContext, store: Store, id_number: str) -> None:
    """Send a one-time code to the holder of ``id_number`` (to the log); nothing is said about whether the
    number is a cardholder's."""
    now = ctx.clock()
    last4, holders = _holders(ctx, id_number)
    if not holders:
        return
    _too_many(store, _code_key(holders), now)
    code = security.new_one_time_code()
    store.put_code(_code_key(holders), code, holders, now)
    log.warning(
        "one-time sign-in code for the cardholder with ID number ending %s: %s (5 minutes)", last4, code
    )


def citizen_by_code(ctx: WebContext, store: Store, id_number: str, code: str) -> SignedIn:
    now = ctx.clock()
    last4, holders = _holders(ctx, id_number)
    refused = HTTPException(401, "wrong or expired one-time code")
    if not holders:
        raise refused
    key = _code_key(holders)
    _too_many(store, key, now)
    taken = store.take_code(key, code, now)
    if taken is None:
        store.failed(key, now)
        raise refused
    store.succeeded(key)
    token, principal = store.open_session("citizen", f"ID …{last4}", {"holders": taken}, now)
    return SignedIn(token, principal)
