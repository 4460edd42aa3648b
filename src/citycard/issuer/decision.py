"""The issuer's decision on one card-present authorization, as a pure function: no I/O, no HSM, no clock.

:func:`decide` takes the request, the card, its chip data (:mod:`.chipdata`), the results of the checks made
before in the HSM and the store (:class:`Checks`: ARQC, the IAD balance's MAC, the online PIN, a repeated
unpredictable number) and what the books say, and returns a :class:`Decision`: the response code and reason,
the ledger legs to post, the card as it is to be stored. The handler posts the legs; :func:`settle` turns
the ledger's answer into the final decision (51 insufficient funds, 61 over a limit), and
:func:`plan_scripts` says which issuer scripts go back to the card (EMV Book 3 §10.10).

The checks, in order (the first that fails answers): the terminal identification ``9F1C`` equals field 41
(``58``); the chip's amount ``9F02`` equals field 4 (``13``); the ARQC verifies (``05``); the ATC is above the
highest seen (``05``, a replay) — from here the unpredictable number is recorded and the card's highest ATC
moves on; the IAD's EC balance has a valid MAC (``05``); the CVM results do not claim an offline PIN the card
did not verify (``05``); the card's status and expiry allow it (``41``, ``54``, ``62``); an online PIN the
chip data ask for was sent (``55``) and is right (``55``; ``75`` after :data:`ONLINE_PIN_TRY_LIMIT` wrong ones
in a row); then the business of the kind (:class:`~.commands.AuthorizationKind`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone

from citycard.codec.emvbits import cvr_scripts
from citycard.ledger.model import CreateTransferResult, Transfer

from .chipdata import ChipData
from .commands import AuthorizationKind, AuthorizationRequest
from .model import (
    ONLINE_PIN_TRY_LIMIT,
    Bank,
    BankAccount,
    Card,
    CardRecord,
    CardStatus,
    PendingScript,
    Product,
    RecordState,
    transfer_id,
)
from .ports import StoredAuthorization

__all__ = [
    "Checks",
    "Decision",
    "IssuerScript",
    "ScriptPlan",
    "decide",
    "decide_account_debit",
    "decide_refund",
    "plan_scripts",
    "refusal_for",
    "settle",
]

_STATUS_REFUSALS = {
    CardStatus.LOST: ("41", "card reported lost"),
    CardStatus.CLOSED: ("62", "card closed"),
    CardStatus.REPLACED: ("62", "card replaced"),
    CardStatus.EXPIRED: ("54", "card expired"),
    CardStatus.ISSUED: ("62", "card not activated"),
}


@dataclass(frozen=True, slots=True)
class Checks:
    """What was checked before deciding: in the HSM (ARQC, the IAD balance's MAC, the PIN) and the store."""

    arqc_ok: bool
    iad_mac_ok: bool | None = None  # None: the IAD carries no EC balance
    pin_ok: bool | None = None  # None: no PIN block, or the card's PIN cannot be checked (no offset, locked)
    unpredictable_number_seen: bool = False
    pin_block_readable: bool = True  # False: field 52 is no ISO 9564 block once deciphered under the ZPK


@dataclass(frozen=True, slots=True)
class Decision:
    code: str  # ISO 8583 field 39
    reason: str = ""
    flags: tuple[str, ...] = ()
    card: Card | None = None  # the card as it is to be stored; None: the card is not written
    legs: tuple[Transfer, ...] = ()  # to post, linked (all or none)
    new_ec_balance_fen: int | None = None  # an EC load: the card's balance once the PUT DATA 9F79 runs
    card_ec_balance_fen: int | None = None  # the card's own EC balance (its IAD, MAC verified)
    record_unpredictable_number: bool = False
    reverses: str | None = None  # a void: the purchase it cancels, marked reversed once the legs post
    refunds: str | None = None  # a refund: the purchase whose refunded amount grows once the legs post

    @property
    def approved(self) -> bool:
        return self.code == "00"


def beijing_date(now_ns: int) -> date:
    """The date in China (UTC+8): a void is for a purchase of the same (Beijing) day."""
    return datetime.fromtimestamp(now_ns / 1e9, timezone(timedelta(hours=8))).date()


def yymm(now_ns: int) -> str:
    """The month as a card's expiry date has it (``YYMM``, UTC)."""
    return datetime.fromtimestamp(now_ns / 1e9, UTC).strftime("%y%m")


def refusal_for(card: Card, yymm_now: str) -> tuple[str, str] | None:
    """(code, reason) when the card's status or expiry refuses any transaction (a pending block counts)."""
    if card.status in _STATUS_REFUSALS:
        return _STATUS_REFUSALS[card.status]
    if card.status == CardStatus.BLOCKED and card.pending_script is not PendingScript.UNBLOCK:
        return "62", "card blocked"
    if card.pending_script is PendingScript.BLOCK:
        return "62", "card blocked by the issuer"
    if card.expiry < yymm_now:
        return "54", "card expired"
    return None


def decide(
    req: AuthorizationRequest,
    card: Card,
    chip: ChipData,
    checks: Checks,
    *,
    bank: Bank,
    product: Product,
    now_ns: int,
    ec_books_balance_fen: int | None = None,
    original: StoredAuthorization | None = None,
) -> Decision:
    """The decision on a card-present request (purchase, balance inquiry, EC load, EC cash load, void).
    ``ec_books_balance_fen``: the issuer's EC float of the card, needed for a load when the card's IAD
    carries no balance; ``original``: a void's original (None when unknown)."""
    if chip.terminal_id is not None and chip.terminal_id != req.terminal_id.rstrip():
        reason = "the terminal identification in field 55 (9F1C) differs from field 41"
        return Decision("58", reason, ("terminal_mismatch",))
    if req.kind != AuthorizationKind.BALANCE_INQUIRY and chip.amount_fen != req.amount_fen:
        return Decision("13", "the amount in the chip data differs from the amount of the request")
    if not checks.arqc_ok:
        return Decision("05", "ARQC does not verify", ("arqc_failed",))
    if chip.atc <= card.highest_atc:
        reason = f"ATC {chip.atc} is not above the highest seen ({card.highest_atc})"
        return Decision("05", reason, ("atc_replay",))
    record_un = not checks.unpredictable_number_seen
    if checks.iad_mac_ok is False:
        reason = "the EC balance in 9F10 fails its MAC"
        return Decision("05", reason, ("iad_mac_failed",), record_unpredictable_number=record_un)
    flags = ("repeated_unpredictable_number",) if checks.unpredictable_number_seen else ()
    card = replace(card, highest_atc=chip.atc)
    card_ec = chip.ec_balance.balance_fen if chip.ec_balance is not None and checks.iad_mac_ok else None
    base = Decision("05", "", flags, card, card_ec_balance_fen=card_ec, record_unpredictable_number=record_un)
    if chip.offline_pin_claim_unsupported:
        reason = "CVM results claim an offline PIN the card did not verify"
        return replace(base, reason=reason, flags=(*flags, "cvm_mismatch"))
    refused = refusal_for(card, yymm(now_ns))
    if refused is not None:
        return replace(base, code=refused[0], reason=refused[1])
    pin_elsewhere = req.kind == AuthorizationKind.EC_LOAD_OTHER  # the other account's PIN, at its issuer
    if req.pin_block is None and chip.online_pin_asked and not pin_elsewhere:
        reason = "online PIN required (CTQ or CVM results) but no PIN block was sent"
        return replace(base, code="55", reason=reason, flags=(*flags, "online_pin_missing"))
    if req.pin_block is not None and not checks.pin_block_readable:
        # a key or PIN pad fault between terminal and issuer, not a wrong PIN: the try counter stays
        reason = "PIN block does not decipher under the zone PIN key (PIN format error)"
        return replace(base, code="99", reason=reason, flags=(*flags, "pin_format_error"))
    if req.pin_block is not None:
        pinned = _online_pin(base, card, checks.pin_ok)
        if isinstance(pinned, Decision):
            return pinned
        card = pinned
        base = replace(base, card=card, flags=(*base.flags, "online_pin_verified"))
    if req.kind == AuthorizationKind.VOID:
        return _void(req, card, base, bank, original, now_ns)
    return _business(req, card, base, bank, product, ec_books_balance_fen)


def decide_account_debit(
    req: AuthorizationRequest, card: Card, checks: Checks, *, bank: Bank, now_ns: int
) -> Decision:
    """The other account's leg of an EC load from a non-designated account (非指定账户圈存, 620000/91/47):
    the card of that account is keyed or swiped at the terminal (no chip data of its own: the chip data of
    the request is the EC card's, which its own issuer checks), so its online PIN is the cardholder
    verification and is required. Its status and expiry (``41``, ``54``, ``62``), a deposit account
    (``57``), the PIN (``55``, ``75``, ``99``; the try counter as for any online PIN), then one leg: the
    deposit account to the bank's network settlement account, as a purchase (``51`` when it lacks the
    funds, from :func:`settle`). The card is always stored (its PIN try counter)."""
    base = Decision("05", "", (), card)
    refused = refusal_for(card, yymm(now_ns))
    if refused is not None:
        return replace(base, code=refused[0], reason=refused[1])
    if card.deposit_account_id is None:
        return replace(base, code="57", reason="an unregistered card has no account to load from")
    if req.pin_block is None:
        reason = "the other account's PIN is required (no PIN block was sent)"
        return replace(base, code="55", reason=reason, flags=("online_pin_missing",))
    if not checks.pin_block_readable:
        reason = "PIN block does not decipher under the zone PIN key (PIN format error)"
        return replace(base, code="99", reason=reason, flags=("pin_format_error",))
    pinned = _online_pin(base, card, checks.pin_ok)
    if isinstance(pinned, Decision):
        return pinned
    leg = Transfer(
        transfer_id(req.request_id, 1),
        card.deposit_account_id,
        bank.settlement_account_id,
        req.amount_fen,
        code=BankAccount.CARD_EC_FLOAT,  # for an EC load (the statement tells it from a purchase by it)
    )
    return Decision("00", "", ("online_pin_verified",), pinned, legs=(leg,))


def _online_pin(base: Decision, card: Card, pin_ok: bool | None) -> Decision | Card:
    """The online PIN (field 52) against the card's IBM 3624 offset: the card with its try counter reset,
    or a decline (55, or 75 once :data:`ONLINE_PIN_TRY_LIMIT` wrong PINs in a row are
    reached; only ``card set-pin`` lifts that) with the counter moved on."""
    if card.pin_offset is None:
        reason = "the PIN was set under the retired 4-digit PVV: re-set it" if card.pvv else "no PIN set"
        return replace(base, code="55", reason=reason)
    if card.online_pin_failures >= ONLINE_PIN_TRY_LIMIT:
        reason = "allowable number of PIN tries exceeded: the PIN must be re-set"
        return replace(base, code="75", reason=reason, flags=(*base.flags, "pin_tries_exceeded"))
    assert pin_ok is not None, "a checkable PIN is checked before deciding"
    if pin_ok:
        return replace(card, online_pin_failures=0)
    failures = card.online_pin_failures + 1
    counted = replace(base, card=replace(card, online_pin_failures=failures))
    if failures >= ONLINE_PIN_TRY_LIMIT:
        reason = "incorrect PIN: allowable number of PIN tries exceeded"
        return replace(counted, code="75", reason=reason, flags=(*base.flags, "pin_tries_exceeded"))
    return replace(counted, code="55", reason=f"incorrect PIN ({ONLINE_PIN_TRY_LIMIT - failures} tries left)")


def _business(
    req: AuthorizationRequest,
    card: Card,
    base: Decision,
    bank: Bank,
    product: Product,
    ec_books_balance_fen: int | None,
) -> Decision:
    kind = req.kind
    if kind == AuthorizationKind.BALANCE_INQUIRY:
        return replace(base, code="00")
    if kind in (AuthorizationKind.PURCHASE, AuthorizationKind.EC_LOAD) and card.deposit_account_id is None:
        return replace(
            base, code="57", reason="an unregistered card has no account: only cash loads at a counter"
        )
    if kind == AuthorizationKind.PURCHASE:
        assert card.deposit_account_id is not None
        leg = Transfer(
            transfer_id(req.request_id, 1),
            card.deposit_account_id,
            bank.settlement_account_id,
            req.amount_fen,
            code=BankAccount.NETWORK_SETTLEMENT,
        )
        return replace(base, code="00", legs=(leg,))
    assert kind.loads_ec, kind
    card_balance = base.card_ec_balance_fen
    if card_balance is None:
        assert ec_books_balance_fen is not None, "a load without the card's balance needs the books'"
        card_balance = ec_books_balance_fen
    new_balance = card_balance + req.amount_fen + card.pending_ec_credit_fen
    if new_balance > product.ec_balance_limit_fen:
        reason = f"the EC balance would exceed its limit of {product.ec_balance_limit_fen} fen"
        return replace(base, code="61", reason=reason)
    source = {
        AuthorizationKind.EC_LOAD: card.deposit_account_id,
        AuthorizationKind.EC_CASH_LOAD: bank.cash_account_id,
        AuthorizationKind.EC_LOAD_OTHER: bank.settlement_account_id,  # paid by the other account's bank
    }[kind]
    assert source is not None
    leg = Transfer(
        transfer_id(req.request_id, 1),
        source,
        card.ec_float_account_id,
        req.amount_fen,
        code=BankAccount.CARD_EC_FLOAT,
    )
    return replace(base, code="00", legs=(leg,), new_ec_balance_fen=new_balance)


def _original_refusal(
    req: AuthorizationRequest, original: StoredAuthorization | None
) -> tuple[str, str, tuple[str, ...]] | None:
    """(code, reason, flags) when ``original`` cannot be voided or refunded: unknown, or another card's
    (``25``); not an approved purchase that posted, or reversed or voided already (``12``); a void from
    another terminal or merchant, a refund from another merchant, than the purchase's (``58``)."""
    if original is None or original.pan != req.pan or original.tombstone:
        return "25", "no such original transaction", ()
    if original.kind != AuthorizationKind.PURCHASE:
        return "12", f"the original is a {original.kind}: only a purchase is voided or refunded", ()
    if original.response_code != "00" or not original.transfer_ids:
        return "12", "the original purchase was declined: nothing to give back", ()
    if original.reversed_by is not None:
        return "12", f"the original purchase was reversed or voided already (by {original.reversed_by})", ()
    same_place = original.merchant_id == req.merchant_id and (
        req.kind == AuthorizationKind.REFUND or original.terminal_id == req.terminal_id
    )
    if not same_place:
        where = "merchant (field 42)" if req.kind == AuthorizationKind.REFUND else "terminal or merchant"
        return "58", f"the {req.kind}'s {where} is not the original purchase's", ("terminal_mismatch",)
    return None


def _void(
    req: AuthorizationRequest,
    card: Card,
    base: Decision,
    bank: Bank,
    original: StoredAuthorization | None,
    now_ns: int,
) -> Decision:
    """消费撤销: the purchase's amount back to the deposit account, if it is the same day's, unrefunded, and
    the void is for its whole amount (``64`` otherwise)."""
    refused = _original_refusal(req, original)
    if refused is not None:
        code, reason, flags = refused
        return replace(base, code=code, reason=reason, flags=(*base.flags, *flags))
    assert original is not None
    if beijing_date(original.created_ns) != beijing_date(now_ns):
        return replace(base, code="12", reason="a void is for a purchase of the same day: refund it instead")
    if original.refunded_fen:
        return replace(base, code="12", reason="the purchase is partly refunded: refund the rest instead")
    if req.amount_fen != original.amount_fen:
        reason = f"a void is for the purchase's whole amount ({original.amount_fen} fen)"
        return replace(base, code="64", reason=reason)
    assert card.deposit_account_id is not None, "an approved purchase had a deposit account"
    leg = Transfer(
        transfer_id(req.request_id, 1),
        bank.settlement_account_id,
        card.deposit_account_id,
        req.amount_fen,
        code=BankAccount.NETWORK_SETTLEMENT,
    )
    return replace(base, code="00", legs=(leg,), reverses=original.request_id)


def decide_refund(
    req: AuthorizationRequest, card: Card | None, original: StoredAuthorization | None, bank: Bank | None
) -> Decision:
    """退货 (an advice, card not present): up to the purchase's amount not refunded yet, back to the holder's
    deposit account — several partial refunds add up to at most the purchase. The card's status does not
    matter (the money goes to the account, not the card)."""
    if card is None or card.psn != req.psn:
        return Decision("14", "unknown card")
    refused = _original_refusal(req, original)
    if refused is not None:
        return Decision(*refused)
    assert original is not None and bank is not None
    remaining = original.amount_fen - original.refunded_fen
    if req.amount_fen > remaining:
        reason = f"the refund exceeds what is left of the purchase to refund ({remaining} fen)"
        return Decision("64", reason)
    if card.deposit_account_id is None:
        return Decision("57", "an unregistered card has no account to refund to")
    leg = Transfer(
        transfer_id(req.request_id, 1),
        bank.settlement_account_id,
        card.deposit_account_id,
        req.amount_fen,
        code=BankAccount.NETWORK_SETTLEMENT,
    )
    return Decision("00", legs=(leg,), refunds=original.request_id)


def settle(decision: Decision, results: Sequence[CreateTransferResult]) -> Decision:
    """The decision once its legs were offered to the ledger: kept when they all posted (an EC load then
    delivers the card's pending EC credit with it), else declined — ``51`` insufficient funds, ``61`` over the
    account's limit, ``96`` any other refusal — with nothing posted and no new EC balance."""
    if all(r == CreateTransferResult.OK for r in results):
        if decision.new_ec_balance_fen is not None and decision.card is not None:
            return replace(decision, card=replace(decision.card, pending_ec_credit_fen=0))
        return decision
    first = next(
        r for r in results if r not in (CreateTransferResult.OK, CreateTransferResult.LINKED_EVENT_FAILED)
    )
    if first in (CreateTransferResult.EXCEEDS_CREDITS, CreateTransferResult.EXCEEDS_DEBITS):
        code, reason = "51", "insufficient funds"
    elif first == CreateTransferResult.EXCEEDS_LIMIT:
        code, reason = "61", "exceeds the account limit"
    else:
        code, reason = "96", f"ledger refused the transfer: {first.value}"
    return replace(
        decision, code=code, reason=reason, legs=(), new_ec_balance_fen=None, reverses=None, refunds=None
    )


class IssuerScript(enum.Enum):
    """The issuer scripts the issuer sends (EMV Book 3 §10.10; PBOC commands, docs/card-profile.md)."""

    EC_BALANCE = "PUT DATA 9F79"  # the EC balance after a load or a credit moved from a predecessor card
    PIN_CHANGE = "PIN CHANGE/UNBLOCK 84 24 00 02"  # the PIN the bank set
    PIN_UNBLOCK = "PIN CHANGE/UNBLOCK 84 24 00 00"  # the chip's PIN try counter reset, the PIN kept
    APPLICATION_BLOCK = "APPLICATION BLOCK 84 1E 00 00"
    APPLICATION_UNBLOCK = "APPLICATION UNBLOCK 84 18 00 00"
    UPDATE_RECORD = "UPDATE RECORD 84 DC"  # a record of a proprietary file (ScriptPlan.records)


_CARD_SCRIPTS = {
    PendingScript.BLOCK: (IssuerScript.APPLICATION_BLOCK, CardStatus.BLOCKED),
    PendingScript.UNBLOCK: (IssuerScript.APPLICATION_UNBLOCK, CardStatus.ACTIVE),
}


@dataclass(frozen=True, slots=True)
class ScriptPlan:
    """The scripts to send, in order, and the card once they are sent (each pending item is sent once)."""

    scripts: tuple[IssuerScript, ...]
    card: Card
    ec_balance_fen: int | None = None  # the value of the PUT DATA 9F79
    records: tuple[CardRecord, ...] = ()  # what each UPDATE_RECORD of ``scripts`` writes, in order
    record_states: tuple[CardRecord, ...] = ()  # the card's records whose state changed, to store


def plan_scripts(
    decision: Decision,
    card: Card,
    chip: ChipData,
    records: Sequence[CardRecord] = (),
    last_atc: int = -1,
) -> ScriptPlan:
    """What goes back to the card with the answer: the EC balance after a load (or, on an approved
    contact transaction of an active card whose own balance is known, a credit moved from its predecessor),
    then the PIN the bank set (or else a PIN unblock), then a pending application block or unblock. A qPBOC
    card has left the field after its GPO, so only a load's balance is sent to it; what is pending waits for
    its next contact. Last, the card's proprietary records still pending (``records``, read when the card
    has any pending or sent): those sent in its last online transaction are settled first
    (:func:`confirm_records`, ``last_atc``: the highest ATC seen before this one), the pending ones are
    written by UPDATE RECORD to a contact card that is active."""
    scripts: list[IssuerScript] = []
    balance: int | None = None
    reachable = not chip.contactless
    if decision.new_ec_balance_fen is not None:
        scripts.append(IssuerScript.EC_BALANCE)
        balance = decision.new_ec_balance_fen
    elif (
        card.pending_ec_credit_fen
        and reachable
        and card.status == CardStatus.ACTIVE
        and decision.approved
        and decision.card_ec_balance_fen is not None
    ):
        scripts.append(IssuerScript.EC_BALANCE)
        balance = decision.card_ec_balance_fen + card.pending_ec_credit_fen
        card = replace(card, pending_ec_credit_fen=0)
    live = reachable and card.status in (CardStatus.ACTIVE, CardStatus.BLOCKED)
    if card.pending_pin_change is not None and live:  # it resets the PIN try counter too
        scripts.append(IssuerScript.PIN_CHANGE)
        card = replace(card, pending_pin_change=None, pending_pin_unblock=False)
    elif card.pending_pin_unblock and live:
        scripts.append(IssuerScript.PIN_UNBLOCK)
        card = replace(card, pending_pin_unblock=False)
    if card.pending_script is not None and live:
        script, status = _CARD_SCRIPTS[card.pending_script]
        scripts.append(script)
        card = replace(card, status=status, pending_script=None)
    if not records:
        if card.records_pending:  # a mark without records left: cleared
            card = replace(card, records_pending=False)
        return ScriptPlan(tuple(scripts), card, balance)
    checked = confirm_records(records, chip, last_atc)
    deliver = live and card.status == CardStatus.ACTIVE
    send = [r for r in checked if r.state is RecordState.PENDING] if deliver else []
    count = len(scripts) + len(send)
    sent = {(r.sfi, r.record): replace(r, state=RecordState.SENT, sent_atc=chip.atc, sent_count=count)
            for r in send}  # fmt: skip
    after = [sent.get((r.sfi, r.record), r) for r in checked]
    changed = tuple(r for r, was in zip(after, records, strict=True) if r != was)
    scripts += [IssuerScript.UPDATE_RECORD] * len(send)
    card = replace(card, records_pending=any(r.state is not RecordState.WRITTEN for r in after))
    return ScriptPlan(tuple(scripts), card, balance, tuple(sent.values()), changed)


def confirm_records(records: Sequence[CardRecord], chip: ChipData, last_atc: int) -> list[CardRecord]:
    """The records sent by script, settled by what this ARQC's CVR says of the card's last online
    transaction (byte 3: bits 8-5 the issuer script commands processed, bit 4 one failed; JR/T 0025.5 CVR,
    as VIS): written when that transaction was the one they were sent in (``last_atc``, the highest ATC the
    issuer had seen) and the card processed every command of its scripts; otherwise pending again (sent
    again: an UPDATE RECORD writes the same bytes twice harmlessly)."""
    processed, failed = cvr_scripts(chip.cvr[1:])
    out = []
    for r in records:
        if r.state is RecordState.SENT:
            ok = r.sent_atc == last_atc and processed == min(r.sent_count, 15) and not failed
            r = replace(
                r, state=RecordState.WRITTEN if ok else RecordState.PENDING, sent_atc=None, sent_count=0
            )
        out.append(r)
    return out
