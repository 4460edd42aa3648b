"""Read-side shapes of the issuer: stored authorization answers, the deny-list file, card summaries,
card searches and a card's status, and what each ledger transfer was.

**Card searches** (:func:`find_cards`) take any of bank, PAN, PAN suffix (4-19 digits), resident ID number,
phone and status, and return one page in PAN order with the total count. An ID number is never looked up
in clear: it is validated (GB 11643-1999), hashed in the HSM under each bank's ``M7`` key (the one bank's
with ``bank_code``), and the holders with those hashes are looked up. Phone numbers are stored as given,
so a phone is matched as given.

**Deny-list file** (``citycard denylist export``): :func:`deny_list_body` makes the bank's live entries
the signed body; the file's format, written and read, is :mod:`citycard.kernel.denylist` (docs/issuer.md,
"Deny list file"). PANs are in clear in the body: the list is for acceptance devices, which must match the
card they read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from citycard.codec.transitfile import Concession
from citycard.hsm.api import Hsm
from citycard.kernel import denylist as denylist_file
from citycard.ledger.model import Transfer

from .commands import AuthorizationResponse, MalformedRequest, check_phone
from .model import (
    BankAccount,
    Card,
    CardStatus,
    DenyListEntry,
    NotFound,
    bank_key_labels,
    mask_pan,
    validate_id_number,
)
from .ports import AccountOwner, CardQuery, IssuerUnitOfWork

__all__ = [
    "MAX_PAGE",
    "TRANSFER_KINDS",
    "CardPage",
    "CardSearch",
    "card_status",
    "card_summary",
    "decode_response",
    "deny_list_body",
    "encode_response",
    "find_cards",
    "iso_date",
    "iso_time",
    "owner_label",
    "transfer_kind",
]

MAX_PAGE = 1000
"""Most cards one page of a search returns."""


def iso_time(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_date(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d")


def encode_response(r: AuthorizationResponse) -> bytes:
    value = {
        "request_id": r.request_id,
        "response_code": r.response_code,
        "reason": r.reason,
        "authorization_code": r.authorization_code,
        "arpc": r.arpc.hex(),
        "arc": r.arc.hex(),
        "scripts": [s.hex() for s in r.scripts],
        "balance_fen": r.balance_fen,
        "ec_balance_fen": r.ec_balance_fen,
        "flags": list(r.flags),
    }
    return json.dumps(value, sort_keys=True).encode()


def decode_response(data: bytes) -> AuthorizationResponse:
    v = json.loads(data)
    return AuthorizationResponse(
        request_id=v["request_id"],
        response_code=v["response_code"],
        reason=v["reason"],
        authorization_code=v["authorization_code"],
        arpc=bytes.fromhex(v["arpc"]),
        arc=bytes.fromhex(v["arc"]),
        scripts=tuple(bytes.fromhex(s) for s in v["scripts"]),
        balance_fen=v["balance_fen"],
        ec_balance_fen=v["ec_balance_fen"],
        flags=tuple(v["flags"]),
    )


def deny_list_body(
    bank_code: str, version: int, updated_ns: int, generated_ns: int, entries: Sequence[DenyListEntry]
) -> bytes:
    """The bank's live entries as the signed body of its deny-list file (the format:
    :func:`citycard.kernel.denylist.encode_body`, which the terminals' reader sits beside)."""
    return denylist_file.encode_body(
        bank_code,
        version,
        _utc(updated_ns),
        _utc(generated_ns),
        (denylist_file.DenyListEntry(e.pan, e.psn, e.reason, _utc(e.added_ns)) for e in entries),
    )


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, UTC)


def card_summary(card: Card, *, show_pan: bool = False) -> dict[str, Any]:
    return {
        "pan": card.pan if show_pan else mask_pan(card.pan),
        "psn": card.psn,
        "bank": card.bank_code,
        "product": card.product_code,
        "status": card.status.value,
        "registered": card.registered,
        "expiry": card.expiry,
        "replaced_by": (card.replaced_by if show_pan else mask_pan(card.replaced_by))
        if card.replaced_by
        else None,
    }


# --- card searches and status -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CardSearch:
    """What an operator searches cards by (any of them; all given must match)."""

    bank_code: str | None = None
    pan: str | None = None
    pan_suffix: str | None = None
    id_number: str | None = field(default=None, repr=False)  # never in repr or logs
    phone: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class CardPage:
    cards: list[Card]
    total: int  # cards matching, on all pages
    limit: int
    offset: int


def _digits(value: str, where: str, lengths: range) -> str:
    text = value.strip()
    if not text.isdigit() or len(text) not in lengths:
        raise MalformedRequest(where, f"must be {lengths.start}-{lengths.stop - 1} digits, not {value!r}")
    return text


def _query(uow: IssuerUnitOfWork, hsm: Hsm, search: CardSearch) -> CardQuery:
    """The repository query for a search: inputs checked, an ID number turned into holder ids."""
    status = None
    if search.status is not None:
        try:
            status = CardStatus(search.status.strip().lower())
        except ValueError:
            choices = ", ".join(s.value for s in CardStatus)
            raise MalformedRequest("status", f"{search.status!r} is not one of {choices}") from None
    if search.bank_code is not None and uow.banks.get(search.bank_code) is None:
        raise NotFound(f"no bank {search.bank_code}")
    holder_ids = None
    if search.id_number is not None:
        # a search needs no clock: a birth date in the future is no error here, it just matches no one
        id_number = validate_id_number(search.id_number, today=date.max).encode()
        banks = [search.bank_code] if search.bank_code else [b.code for b in uow.banks.list()]
        hashes = [hsm.keyed_hash(hsm.get(bank_key_labels(b)["id_hash"]), id_number).hex() for b in banks]
        holder_ids = tuple(h.id for h in uow.cardholders.by_id_hashes(hashes))
    phone = search.phone.strip() if search.phone is not None else None
    if phone is not None:
        check_phone(phone)
    return CardQuery(
        bank_code=search.bank_code,
        pan=_digits(search.pan, "pan", range(12, 20)) if search.pan is not None else None,
        pan_suffix=_digits(search.pan_suffix, "pan suffix", range(4, 20)) if search.pan_suffix else None,
        holder_ids=holder_ids,
        phone=phone,
        status=status,
    )


def find_cards(
    uow: IssuerUnitOfWork, hsm: Hsm, search: CardSearch, *, limit: int = 50, offset: int = 0
) -> CardPage:
    """One page of the cards that match ``search``, in PAN order, and how many match in all."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise MalformedRequest("limit", f"must be 1 to {MAX_PAGE}")
    if type(offset) is not int or offset < 0:
        raise MalformedRequest("offset", "must not be negative")
    query = _query(uow, hsm, search)
    return CardPage(uow.cards.find(query, limit=limit, offset=offset), uow.cards.count(query), limit, offset)


def _expiry_month(yymm: str) -> str:
    return f"20{yymm[:2]}-{yymm[2:]}"


def card_status(uow: IssuerUnitOfWork, pan: str, *, show_pan: bool = False) -> dict[str, Any]:
    """The card as the bank's books see it: status, product, holder (ID number's last 4 only), EC balance
    (its EC float in the ledger: what the bank owes for the cash on the chip, offline spending not yet
    cleared included), deposit balance, scripts and credits waiting for its next online contact."""
    card = uow.cards.get(_digits(pan, "pan", range(12, 20)))
    if card is None:
        raise NotFound(f"no card {mask_pan(pan) if pan.isdigit() else repr(pan)}")
    product = uow.products.get(card.bank_code, card.product_code)
    assert product is not None, card.product_code
    (ec,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
    deposit = None
    if card.deposit_account_id is not None:
        (account,) = uow.ledger.lookup_accounts([card.deposit_account_id])
        deposit = account.available_fen
    holder = uow.cardholders.get(card.holder_id) if card.holder_id is not None else None

    def when(ns: int | None) -> str | None:
        return iso_time(ns) if ns is not None else None

    return {
        **card_summary(card, show_pan=show_pan),
        "product_name": product.name,
        "expiry": _expiry_month(card.expiry),
        "issued": iso_date(card.issued_at_ns),
        "holder": holder.name if holder else None,
        "holder_id_last4": holder.id_last4 if holder else None,
        "ec_balance_fen": ec.credit_balance_fen,
        "ec_balance_limit_fen": product.ec_balance_limit_fen,
        "deposit_available_fen": deposit,
        "pending_script": card.pending_script,
        "pending_ec_credit_fen": card.pending_ec_credit_fen,
        "pending_pin_unblock": card.pending_pin_unblock,
        "pin_set": card.pin_offset is not None,
        "pin_change_pending": card.pending_pin_change is not None,
        "online_pin_failures": card.online_pin_failures,
        "highest_atc": card.highest_atc if card.highest_atc >= 0 else None,
        "lost_at": when(card.lost_at_ns),
        "closed_at": when(card.closed_at_ns),
        "transit": _transit(uow, card.pan),
    }


def _transit(uow: IssuerUnitOfWork, pan: str) -> dict[str, Any] | None:
    """The card's transit file as the bank keeps it: its concession (category, last valid day) and where
    that record stands on the chip (pending, sent, written); None: no transit file on the chip."""
    record = uow.card_records.transit(pan)
    if record is None:
        return None
    concession = Concession.decode(record.data)
    until = concession.valid_until
    return {
        "concession": concession.category.name.lower(),
        "valid_until": until.isoformat() if until else None,
        "on_chip": record.state.value,
    }


# --- the books ----------------------------------------------------------------------------------------
TRANSFER_KINDS = {
    "cash_deposit": "cash deposit",
    "purchase": "purchase",
    "purchase_reversal": "purchase reversal",
    "ec_load": "EC load",
    "ec_load_reversal": "EC load reversal",
    "ec_cash_load": "EC cash load",
    "ec_cash_load_reversal": "EC cash load reversal",
    "ec_load_of_another_card": "EC load of another card (非指定账户圈存)",
    "ec_load_of_another_card_reversal": "EC load of another card reversal",
    "ec_load_from_another_account": "EC load from another account (非指定账户圈存)",
    "ec_load_from_another_account_reversal": "EC load from another account reversal",
    "ec_refund_to_account": "EC refund to account",
    "ec_refund_in_cash": "EC refund in cash",
    "ec_moved_to_replacement": "EC to replacement card",
    "ec_offline_cleared": "EC offline spending cleared",
    "issue_fee": "issue fee",
    "annual_fee": "annual fee",
    "transfer": "transfer",
}
"""What a ledger transfer was, by key (stable, for ``--json``) and in words."""

_B = BankAccount
_KINDS_BY_LEGS = {
    (_B.CASH, _B.CARD_DEPOSIT): "cash_deposit",
    (_B.CARD_DEPOSIT, _B.NETWORK_SETTLEMENT): "purchase",
    (_B.NETWORK_SETTLEMENT, _B.CARD_DEPOSIT): "purchase_reversal",
    (_B.CARD_DEPOSIT, _B.CARD_EC_FLOAT): "ec_load",
    (_B.CASH, _B.CARD_EC_FLOAT): "ec_cash_load",
    (_B.CARD_EC_FLOAT, _B.CARD_EC_FLOAT): "ec_moved_to_replacement",
    (_B.CARD_EC_FLOAT, _B.NETWORK_SETTLEMENT): "ec_offline_cleared",
    (_B.CASH, _B.FEE_INCOME): "issue_fee",
    (_B.CARD_DEPOSIT, _B.FEE_INCOME): "annual_fee",
}
# the two legs of an EC load from another account (usecases.authorize), and their reversals: code EC float
_OTHER_ACCOUNT_LOAD = {
    (_B.CARD_DEPOSIT, _B.NETWORK_SETTLEMENT): "ec_load_of_another_card",
    (_B.NETWORK_SETTLEMENT, _B.CARD_DEPOSIT): "ec_load_of_another_card_reversal",
    (_B.NETWORK_SETTLEMENT, _B.CARD_EC_FLOAT): "ec_load_from_another_account",
    (_B.CARD_EC_FLOAT, _B.NETWORK_SETTLEMENT): "ec_load_from_another_account_reversal",
}
# EC float back to the deposit account or the counter: a reversal keeps the load's code (the EC float's),
# a refund after a loss or closure carries none
_EC_BACK = {
    _B.CARD_DEPOSIT: ("ec_load_reversal", "ec_refund_to_account"),
    _B.CASH: ("ec_cash_load_reversal", "ec_refund_in_cash"),
}


def transfer_kind(transfer: Transfer, debit: AccountOwner | None, credit: AccountOwner | None) -> str:
    """What the transfer was (a key of :data:`TRANSFER_KINDS`), from the kinds of the accounts on its two
    sides and its code (the issuer's handlers: ``citycard.issuer.handlers``)."""
    if debit is None or credit is None:
        return "transfer"
    if transfer.code == _B.CARD_EC_FLOAT and (debit.kind, credit.kind) in _OTHER_ACCOUNT_LOAD:
        return _OTHER_ACCOUNT_LOAD[debit.kind, credit.kind]
    if debit.kind == _B.CARD_EC_FLOAT and credit.kind in _EC_BACK:
        reversal, refund = _EC_BACK[credit.kind]
        return reversal if transfer.code == _B.CARD_EC_FLOAT else refund
    return _KINDS_BY_LEGS.get((debit.kind, credit.kind), "transfer")


_OWNER_WORDS = {
    _B.CASH: "counter cash",
    _B.NETWORK_SETTLEMENT: "network settlement",
    _B.FEE_INCOME: "fee income",
    _B.CARD_EC_FLOAT: "EC",
    _B.CARD_DEPOSIT: "deposit",
}


def owner_label(owner: AccountOwner | None, *, show_pan: bool = False, short: bool = False) -> str:
    """``"ICBC EC 621226*********0018"``, ``"ICBC counter cash"`` (``short``: ``"EC"``, ``"counter cash"``);
    ``"-"`` for an account that is not the issuer's."""
    if owner is None:
        return "-"
    kind = _OWNER_WORDS.get(owner.kind, str(owner.kind))
    if short:
        return kind
    words = f"{owner.bank_code} {kind}"
    if owner.pan is None:
        return words
    return f"{words} {owner.pan if show_pan else mask_pan(owner.pan)}"
