"""Online authorization at the issuer (EMV Book 3 §10.9 online processing, §10.10 issuer-to-card script
processing; JR/T 0025.13 for the EC load): the handler of :class:`~citycard.issuer.commands.
AuthorizationRequest`.

1. idempotency: a request id seen before gets the stored answer, and nothing is posted again (a reused id
   with other content: ``94``);
2. the edge: the card known and its PSN matching (``14``), the terminal registry (:mod:`..registry`), field 55
   parsed once into :class:`~citycard.issuer.chipdata.ChipData` (``30`` when malformed);
3. the checks with keys, in the HSM (ARQC, the IAD balance's MAC, the online PIN against the card's IBM 3624
   offset) and in the store (a repeated unpredictable number), their results handed to
4. :func:`~citycard.issuer.decision.decide` — pure — whose legs this handler posts (purchases post at once:
   single-message authorization, no pending holds), then the scripts it plans are MACed in the HSM and the
   answer carries the ARPC (method 1 over the ARQC and the ARC, the response code in ASCII);
5. a reversal (:mod:`.reversal`) mirrors the original's transfers.

The terminal: the ARQC does not cover field 41 or 42, so the issuer binds what it can — ``9F1C`` must equal
field 41, every stored answer records fields 41 and 42, and a follow-up must come from the original's
terminal and merchant. Only the network's field 64 MAC ties a message to the terminal that sent it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from citycard.codec.apdu import Ins
from citycard.hsm.api import HsmInputError

from ..chipdata import ChipData, ChipDataError, parse_chip_data
from ..commands import AuthorizationKind, AuthorizationRequest, AuthorizationResponse
from ..decision import (
    Checks,
    Decision,
    IssuerScript,
    decide,
    decide_account_debit,
    decide_refund,
    plan_scripts,
    settle,
)
from ..model import ONLINE_PIN_TRY_LIMIT, Card, CardRecord
from ..ports import AuthorizationStart, IssuerUnitOfWork, StartAhead, StoredAuthorization
from ..registry import registry_refusal
from ..views import decode_response, encode_response
from .deps import Deps, available, link
from .reversal import reverse

__all__ = ["MAX_GROUP", "authorize", "authorize_together", "request_fingerprint"]

MAX_GROUP: Final = 64
"""Most requests answered in one transaction by :func:`authorize_together`."""
_TOGETHER: Final = frozenset(
    {
        AuthorizationKind.PURCHASE,
        AuthorizationKind.BALANCE_INQUIRY,
        AuthorizationKind.EC_LOAD,
        AuthorizationKind.EC_CASH_LOAD,
    }
)
"""Kinds whose legs a group posts in runs, several cards' in one ledger call (``authorize_together``): they
name no original and touch only their card's accounts and the bank's. The others post alone, after the run
before them was posted."""
_SM = 0x84  # CLA of a proprietary command with secure messaging, as every issuer script command (Book 3 §6.3)
_CARD_SCRIPT_HEADERS = {
    IssuerScript.PIN_UNBLOCK: bytes((_SM, Ins.PIN_CHANGE_UNBLOCK, 0x00, 0x00)),
    IssuerScript.APPLICATION_BLOCK: bytes((_SM, Ins.APPLICATION_BLOCK, 0x00, 0x00)),
    IssuerScript.APPLICATION_UNBLOCK: bytes((_SM, Ins.APPLICATION_UNBLOCK, 0x00, 0x00)),
}


def request_fingerprint(req: AuthorizationRequest) -> str:
    """A hash of the request's content: a request id reused with other content is refused (``94``)."""
    parts: tuple[str, ...] = (
        req.kind,
        req.pan,
        req.psn,
        str(req.amount_fen),
        req.field55.hex(),
        req.stan,
        req.terminal_id,
        req.merchant_id,
        (req.pin_block or b"").hex(),
        req.original_request_id or "",
    )
    if req.service_ref is not None:  # only then: the fingerprints stored before field 48 stay the same
        parts = (*parts, req.service_ref)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def authorize(req: AuthorizationRequest, uow: IssuerUnitOfWork, deps: Deps) -> AuthorizationResponse:
    """Answer ``req``; a retry (same request id) gets the stored answer. Two simultaneous first attempts
    meet on the card's row lock, or, for an unknown card, on the request-id row: the one that finds the
    id taken rolls back and answers from the stored row on its second pass."""
    fingerprint = request_fingerprint(req)
    for _ in range(2):
        response = _authorize_once(req, fingerprint, uow, deps)
        if response is not None:
            return response
    raise AssertionError(f"request {req.request_id!r} neither stored nor found")


def authorize_together(
    reqs: Sequence[AuthorizationRequest], uow: IssuerUnitOfWork, deps: Deps
) -> list[AuthorizationResponse] | None:
    """Group commit: answer every request of ``reqs`` in ONE transaction, in order (each with its own
    request id, checks, postings and stored answer, exactly as :func:`authorize` would), then commit once.
    None, with nothing written (rolled back), when one of them met a simultaneous first attempt of its
    request id; an exception (a database error, a bug) rolls back all of them too. Either way the caller
    answers nobody yet and runs each request alone with :func:`authorize`, so that one request's failure
    never costs another its answer. Requests of one card must come in their order of arrival (ATCs)."""
    assert 0 < len(reqs) <= MAX_GROUP, len(reqs)
    with uow:
        uow.authorizations.prefetch([_ahead(req) for req in reqs])  # one round trip for the group's starts
        responses: list[AuthorizationResponse | None] = [None] * len(reqs)
        run = _Run()  # decided, their legs posted together when the run ends
        for i, req in enumerate(reqs):
            joins = req.kind in _TOGETHER and req.pan not in run.pans
            if run.items and not joins and not _end_run(run, responses, uow, deps):  # before it reads
                return None
            fingerprint = request_fingerprint(req)
            if req.kind not in _TOGETHER:
                done = _authorize_in(req, fingerprint, uow, deps)
                if done is None:
                    return None  # rolled back on leaving the block
                responses[i] = done[0]
                continue
            decided = _decide_in(req, fingerprint, uow, deps)
            if decided is None:
                return None
            if isinstance(decided, _Decided):
                if not run.add(i, decided):
                    return None  # two cards of one account (a replacement card): each runs alone
            else:
                responses[i] = decided[0]
        if run.items and not _end_run(run, responses, uow, deps):
            return None
        uow.commit()
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


class _Run:
    """Requests of a group decided one after the other, their legs not yet posted (:func:`_end_run`): each
    with its place in the group; their cards' PANs and ledger accounts, none twice."""

    def __init__(self) -> None:
        self.items: list[tuple[int, _Decided]] = []
        self.pans: set[str] = set()
        self.accounts: set[int] = set()

    def add(self, place: int, decided: _Decided) -> bool:
        """Add it; False (nothing added) when its card shares an account with one of the run."""
        if decided.accounts & self.accounts:
            return False
        self.items.append((place, decided))
        self.pans.add(decided.req.pan)
        self.accounts |= decided.accounts
        return True

    def take(self) -> list[tuple[int, _Decided]]:
        """Its requests, in order; the run is empty again."""
        items, self.items = self.items, []
        self.pans, self.accounts = set(), set()
        return items


def _end_run(
    run: _Run,
    responses: list[AuthorizationResponse | None],
    uow: IssuerUnitOfWork,
    deps: Deps,
) -> bool:
    """Post the legs of every request of ``run`` in one ledger call (each request's legs a linked chain of
    their own, in order: the ledger applies a batch as it would one call after the other), then answer and
    store each; False when one's request id was stored meanwhile (the group is rolled back). ``run`` is
    emptied."""
    items = run.take()
    decisions = _post_together([decided.decision for _, decided in items], uow)
    records = []
    for (i, decided), decision in zip(items, decisions, strict=True):
        response, transfers, card = _answer_card(decided, decision, uow, deps)
        if card is not None:
            uow.cards.update(card)
        records.append(_record(decided.req, decided.fingerprint, response, transfers, deps))
        responses[i] = response
    return uow.authorizations.add_many(records)


def _authorize_once(
    req: AuthorizationRequest, fingerprint: str, uow: IssuerUnitOfWork, deps: Deps
) -> AuthorizationResponse | None:
    with uow:
        uow.authorizations.prefetch([_ahead(req)])  # its start and UN check in one round trip
        done = _authorize_in(req, fingerprint, uow, deps)
        if done is None:
            return None  # rolled back on leaving the block: the stored answer is read next time
        response, wrote = done
        if wrote:
            uow.commit()
    return response


def _ahead(req: AuthorizationRequest) -> StartAhead:
    """What ``req``'s start and unpredictable-number check will ask (``Authorizations.prefetch``)."""
    chip = _chip_data(req.field55) if req.field55 else None
    un = chip.unpredictable_number if isinstance(chip, ChipData) else None  # malformed: answered 30 later
    return StartAhead(req.pan, req.request_id, req.terminal_id, un)


@lru_cache(maxsize=256)
def _chip_data(field55: bytes) -> ChipData | ChipDataError:
    """Field 55 parsed (or why it does not parse), once for the read ahead and the decision both: the last
    few hundred kept (immutable values, keyed by the bytes)."""
    try:
        return parse_chip_data(field55)
    except ChipDataError as exc:
        return exc


def _authorize_in(
    req: AuthorizationRequest,
    fingerprint: str,
    uow: IssuerUnitOfWork,
    deps: Deps,
    *,
    start: AuthorizationStart | None = None,
) -> tuple[AuthorizationResponse, bool] | None:
    """``req`` answered in the transaction of ``uow``: the answer and whether it wrote anything (a stored
    answer read again writes nothing); None when its request id was stored meanwhile by a simultaneous
    first attempt (the transaction must then be rolled back and the request run again). ``start``: its
    start, when read already."""
    if start is None:
        start = uow.authorizations.start(req.pan, req.request_id, req.terminal_id)
    card = start.card
    stored = uow.authorizations.get(req.request_id) if start.request_id_stored else None
    if stored is not None:
        if stored.fingerprint != fingerprint and not stored.tombstone:
            return AuthorizationResponse(req.request_id, "94", "request id reused with other content"), False
        return decode_response(stored.response), False  # a tombstone: the reversal came first, declined
    if req.kind == AuthorizationKind.REVERSAL:
        reversed_ = reverse(req, uow, deps)
        if reversed_ is None:
            return None  # the original was stored meanwhile: read again
        response, transfers = reversed_
    elif req.kind == AuthorizationKind.REFUND:
        response, transfers = _refund(req, card, uow, deps)
    elif req.kind == AuthorizationKind.EC_LOAD_OTHER_DEBIT:
        response, transfers, card = _debit_other_account(req, start, uow, deps)
        if card is not None:
            uow.cards.update(card)
    else:
        decided = _decide_card(req, fingerprint, start, uow, deps)
        if isinstance(decided, _Decided):
            response, transfers, card = _answer_card(decided, _post(decided.decision, req, uow), uow, deps)
        else:
            response, transfers, card = decided
        if card is not None:
            uow.cards.update(card)
    return (response, True) if _store(req, fingerprint, response, transfers, uow, deps) else None


def _decide_in(
    req: AuthorizationRequest, fingerprint: str, uow: IssuerUnitOfWork, deps: Deps
) -> _Decided | tuple[AuthorizationResponse, bool] | None:
    """:func:`_authorize_in` for a request of the kinds posted in runs (:data:`_TOGETHER`), up to its
    decision: a :class:`_Decided` whose legs wait to be posted; or, when it posts nothing (a stored answer,
    a decline), its answer, stored; None as :func:`_authorize_in`."""
    assert req.kind in _TOGETHER, req.kind
    start = uow.authorizations.start(req.pan, req.request_id, req.terminal_id)
    if start.request_id_stored or start.card is None:  # a stored answer, or an unknown card: nothing posted
        return _authorize_in(req, fingerprint, uow, deps, start=start)
    decided = _decide_card(req, fingerprint, start, uow, deps)
    if isinstance(decided, _Decided):
        return decided
    response, transfers, card = decided
    assert card is None and not transfers
    return (response, True) if _store(req, fingerprint, response, transfers, uow, deps) else None


def _store(
    req: AuthorizationRequest,
    fingerprint: str,
    response: AuthorizationResponse,
    transfers: Sequence[int],
    uow: IssuerUnitOfWork,
    deps: Deps,
) -> bool:
    """Store the answer (with the writes held back: the card, the unpredictable number); False when the
    request id was stored meanwhile (the transaction must be rolled back and the request run again)."""
    return uow.authorizations.add(_record(req, fingerprint, response, transfers, deps))


def _record(
    req: AuthorizationRequest,
    fingerprint: str,
    response: AuthorizationResponse,
    transfers: Sequence[int],
    deps: Deps,
) -> StoredAuthorization:
    return StoredAuthorization(
        request_id=req.request_id,
        pan=req.pan,
        kind=req.kind.value,
        fingerprint=fingerprint,
        response_code=response.response_code,
        amount_fen=req.amount_fen,
        response=encode_response(response),
        transfer_ids=tuple(transfers),
        created_ns=deps.clock(),
        terminal_id=req.terminal_id,
        merchant_id=req.merchant_id,
        original_request_id=req.original_request_id,
        service_ref=req.service_ref,
    )


@dataclass(frozen=True, slots=True)
class _Decided:
    """A request decided, its legs not yet posted (:func:`_decide_card`), and what answering it needs."""

    req: AuthorizationRequest
    fingerprint: str
    card: Card
    chip: ChipData
    decision: Decision
    ec_before: int | None

    @property
    def accounts(self) -> frozenset[int]:
        """The ledger accounts of its card (two cards of one account are never in one run)."""
        card = self.card
        return frozenset(a for a in (card.deposit_account_id, card.ec_float_account_id) if a is not None)


def _decide_card(
    req: AuthorizationRequest, fingerprint: str, start: AuthorizationStart, uow: IssuerUnitOfWork, deps: Deps
) -> tuple[AuthorizationResponse, list[int], Card | None] | _Decided:
    """The request decided (:class:`_Decided`, its legs to post), or its decline: the answer, no transfer,
    the card unchanged (None)."""
    card = start.card

    def decline(code: str, reason: str, *flags: str) -> tuple[AuthorizationResponse, list[int], None]:
        return AuthorizationResponse(req.request_id, code, reason, flags=flags), [], None

    if card is None or card.psn != req.psn:
        return decline("14", "unknown card")
    refused = registry_refusal(start.registry_in_use, start.terminal, req)
    if refused is not None:
        return decline(*refused)
    chip = _chip_data(req.field55)
    if isinstance(chip, ChipDataError):
        return decline("30", f"field 55: {chip.detail}")
    checks, ec_before = _checks(req, card, chip, uow, deps)
    product = deps.product(uow, card.bank_code, card.product_code)
    assert product is not None
    ec_books = None
    if req.kind.loads_ec and (chip.ec_balance is None or not checks.iad_mac_ok):
        ec_books = ec_before if ec_before is not None else _ec_balance(uow, card)
    original = None
    if req.kind == AuthorizationKind.VOID:
        assert req.original_request_id is not None
        original = uow.authorizations.get(req.original_request_id, for_update=True)
    decision = decide(
        req,
        card,
        chip,
        checks,
        bank=deps.bank(uow, card.bank_code),
        product=product,
        now_ns=deps.clock(),
        ec_books_balance_fen=ec_books,
        original=original,
    )
    if decision.record_unpredictable_number:
        uow.authorizations.add_unpredictable_number(card.pan, chip.unpredictable_number, chip.atc)
    if decision.card is None:  # refused before the card's ATC moved on: nothing about the card is stored
        return decline(decision.code, decision.reason, *decision.flags)
    return _Decided(req, fingerprint, card, chip, decision, ec_before)


def _answer_card(
    decided: _Decided, decision: Decision, uow: IssuerUnitOfWork, deps: Deps
) -> tuple[AuthorizationResponse, list[int], Card]:
    """The answer of a request decided once its legs were offered to the ledger (``decision``: settled),
    the transfers posted and the card to store."""
    card, ec_before = decided.card, decided.ec_before
    if any(card.ec_float_account_id in (t.debit_account_id, t.credit_account_id) for t in decision.legs):
        ec_before = None  # posted to: read it again (the ledger holds it locked, so no query)
    return _answer(decided.req, decided.chip, decision, uow, deps, ec_before, last_atc=card.highest_atc)


def _post_together(decisions: Sequence[Decision], uow: IssuerUnitOfWork) -> list[Decision]:
    """:func:`_post` of several requests' decisions in one ledger call: each one's legs a linked chain of
    their own (one request's refusal never fails another's), settled with its own results. Only kinds
    without an original (:data:`_TOGETHER`) come here."""
    chains = [link(d.legs) if d.legs else [] for d in decisions]
    assert all(d.reverses is None and d.refunds is None for d in decisions)
    transfers = [t for chain in chains for t in chain]
    results = iter(uow.ledger.create_transfers(transfers) if transfers else [])
    settled = []
    for decision, chain in zip(decisions, chains, strict=True):
        mine = [next(results) for _ in chain]
        settled.append(settle(decision, mine) if chain else decision)
    assert next(results, None) is None
    return settled


def _post(decision: Decision, req: AuthorizationRequest, uow: IssuerUnitOfWork) -> Decision:
    """Post the decision's legs (linked) and what follows once they posted: a voided purchase marked
    reversed, a refunded purchase's refunded amount grown."""
    if not decision.legs:
        return decision
    decision = settle(decision, uow.ledger.create_transfers(link(decision.legs)))
    if decision.reverses is not None:
        uow.authorizations.mark_reversed(decision.reverses, req.request_id)
    if decision.refunds is not None:
        uow.authorizations.add_refunded(decision.refunds, req.amount_fen)
    return decision


def _debit_other_account(
    req: AuthorizationRequest, start: AuthorizationStart, uow: IssuerUnitOfWork, deps: Deps
) -> tuple[AuthorizationResponse, list[int], Card | None]:
    """The other account's leg of an EC load from a non-designated account: no chip data (the card is
    found by its PAN alone: a keyed or swiped card carries no sequence number), the registry, the online
    PIN in the HSM, then :func:`~citycard.issuer.decision.decide_account_debit` posted."""
    card = start.card
    if card is None:
        return AuthorizationResponse(req.request_id, "14", "unknown card"), [], None
    refused = registry_refusal(start.registry_in_use, start.terminal, req)
    if refused is not None:
        return AuthorizationResponse(req.request_id, refused[0], refused[1], flags=refused[2:]), [], None
    pin_ok = _online_pin(req, card, deps)
    if isinstance(pin_ok, _Unreadable):
        checks = Checks(arqc_ok=True, pin_block_readable=False)
    else:
        checks = Checks(arqc_ok=True, pin_ok=pin_ok)
    decision = decide_account_debit(
        req, card, checks, bank=deps.bank(uow, card.bank_code), now_ns=deps.clock()
    )
    decision = _post(decision, req, uow)
    return _card_absent_response(req, decision, card, uow), [t.id for t in decision.legs], decision.card


def _refund(
    req: AuthorizationRequest, card: Card | None, uow: IssuerUnitOfWork, deps: Deps
) -> tuple[AuthorizationResponse, list[int]]:
    """A refund advice: no chip data to check (card not present); the decision is ``decide_refund``'s."""
    assert req.original_request_id is not None
    original = uow.authorizations.get(req.original_request_id, for_update=True)
    bank = deps.bank(uow, card.bank_code) if card is not None else None
    decision = _post(decide_refund(req, card, original, bank), req, uow)
    return _card_absent_response(req, decision, card, uow), [t.id for t in decision.legs]


def _card_absent_response(
    req: AuthorizationRequest, decision: Decision, card: Card | None, uow: IssuerUnitOfWork
) -> AuthorizationResponse:
    """The answer to a request without chip data to answer (no ARPC, no scripts): the posted decision's
    code and flags, an authorization code when approved, and the deposit account's available balance."""
    balance = None
    if decision.approved and card is not None and card.deposit_account_id is not None:
        balance = available(uow, card.deposit_account_id)
    return AuthorizationResponse(
        req.request_id,
        decision.code,
        decision.reason,
        authorization_code=_authorization_code(req) if decision.approved else "",
        balance_fen=balance,
        flags=decision.flags,
    )


def _authorization_code(req: AuthorizationRequest) -> str:
    """Field 38: six digits derived from the request id (the same on a retry)."""
    return f"{int(hashlib.sha256(req.request_id.encode()).hexdigest(), 16) % 10**6:06d}"


def _ec_balance(uow: IssuerUnitOfWork, card: Card) -> int:
    (ec,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
    return ec.credit_balance_fen


def _checks(
    req: AuthorizationRequest, card: Card, chip: ChipData, uow: IssuerUnitOfWork, deps: Deps
) -> tuple[Checks, int | None]:
    """The checks that need keys (in the HSM) or the store, made before deciding; and the card's EC float
    balance in the books, read with the unpredictable number (None when the checks stopped before)."""
    imk = deps.key(card.bank_code, "imk_ac")
    arqc_ok = deps.hsm.verify_arqc(imk, card.pan, card.psn, chip.atc, chip.ac_data, chip.arqc)
    if not arqc_ok or chip.atc <= card.highest_atc:
        return Checks(arqc_ok=arqc_ok), None  # declined before anything else counts
    seen, ec_before = uow.authorizations.seen_with_ec_balance(
        card.pan, chip.unpredictable_number, card.ec_float_account_id
    )
    iad_mac_ok = None
    if chip.ec_balance is not None:  # the card's EC balance is trusted only with its MAC (not under the ARQC)
        iad = chip.ec_balance
        iad_mac_ok = deps.hsm.verify_ac_session_mac(
            imk, card.pan, card.psn, chip.atc, iad.mac_input + chip.atc_bytes, iad.mac
        )
    pin_ok = None if iad_mac_ok is False else _online_pin(req, card, deps)
    if isinstance(pin_ok, _Unreadable):  # answered 99, the tries not counted
        return Checks(arqc_ok, iad_mac_ok, None, seen, pin_block_readable=False), ec_before
    return Checks(arqc_ok, iad_mac_ok, pin_ok, seen), ec_before


class _Unreadable:
    """:func:`_online_pin`'s answer for a PIN block that is not a format-0 block once deciphered."""


_UNREADABLE: Final = _Unreadable()


def _online_pin(req: AuthorizationRequest, card: Card, deps: Deps) -> bool | _Unreadable | None:
    """The online PIN of ``req`` against the card's IBM 3624 offset, in the HSM: None when there is none to
    check (no PIN block, no offset, or the online tries used up: the decision says what that means);
    :data:`_UNREADABLE` when the block does not decipher to a format-0 block (answered ``99``, the tries
    not counted)."""
    if req.pin_block is None or card.pin_offset is None or card.online_pin_failures >= ONLINE_PIN_TRY_LIMIT:
        return None
    zpk, pvk = deps.key(card.bank_code, "zpk"), deps.key(card.bank_code, "pvk_ibm")
    try:
        return deps.hsm.verify_pin_offset(zpk, pvk, req.pin_block, card.pan, card.pin_offset)
    except HsmInputError:
        return _UNREADABLE


def _answer(
    req: AuthorizationRequest,
    chip: ChipData,
    decision: Decision,
    uow: IssuerUnitOfWork,
    deps: Deps,
    ec_balance_fen: int | None,
    *,
    last_atc: int,
) -> tuple[AuthorizationResponse, list[int], Card]:
    """The scripts MACed in the HSM, the ARPC, the balances after the transaction (``ec_balance_fen``: the
    EC float's as read already in this transaction and not posted to since; None: read it)."""
    before = decision.card
    assert before is not None
    records = uow.card_records.of_card(before.pan) if before.records_pending else []
    plan = plan_scripts(decision, before, chip, records, last_atc)
    card = plan.card
    writes = iter(plan.records)
    scripts = [
        _record_script(next(writes), before, chip, deps)
        if s is IssuerScript.UPDATE_RECORD
        else _script(s, before, chip, plan.ec_balance_fen, deps)
        for s in plan.scripts
    ]
    if plan.record_states:
        uow.card_records.update(card.pan, plan.record_states)
    imk = deps.key(card.bank_code, "imk_ac")
    arc = decision.code.encode("ascii")
    arpc = deps.hsm.generate_arpc(imk, card.pan, card.psn, chip.atc, chip.arqc, arc)
    balance = available(uow, card.deposit_account_id) if card.deposit_account_id else None
    if ec_balance_fen is None:
        ec_balance_fen = _ec_balance(uow, card)
    response = AuthorizationResponse(
        request_id=req.request_id,
        response_code=decision.code,
        reason=decision.reason,
        authorization_code=_authorization_code(req) if decision.approved else "",
        arpc=arpc,
        arc=arc,
        scripts=tuple(scripts),
        balance_fen=balance,
        ec_balance_fen=ec_balance_fen,
        flags=decision.flags,
    )
    return response, [t.id for t in decision.legs], card


def _record_script(record: CardRecord, card: Card, chip: ChipData, deps: Deps) -> bytes:
    """UPDATE RECORD ``84 DC <record> <SFI ‖ 100>`` with the record's bytes and the MAC under the card's
    secure-messaging session key (EMV Book 3 §6.5.13 UPDATE RECORD is ISO 7816-4's; the MAC as every
    script command's, ``crypto.cryptograms.script_command``)."""
    smi = deps.key(card.bank_code, "imk_smi")
    header = bytes((_SM, Ins.UPDATE_RECORD, record.record, record.sfi << 3 | 0x04))
    return deps.hsm.script_command(smi, card.pan, card.psn, chip.atc, chip.arqc, header, record.data)


def _script(script: IssuerScript, card: Card, chip: ChipData, balance: int | None, deps: Deps) -> bytes:
    """One issuer script command, MACed (and a PIN enciphered) in the HSM under the card's session keys;
    ``card`` as it was before the plan (with what is pending)."""
    smi = deps.key(card.bank_code, "imk_smi")
    pan, psn, atc, arqc = card.pan, card.psn, chip.atc, chip.arqc
    if script is IssuerScript.EC_BALANCE:
        assert balance is not None
        return deps.hsm.ec_load_script(smi, pan, psn, atc, arqc, balance)
    if script is IssuerScript.PIN_CHANGE:
        pending = card.pending_pin_change
        assert pending is not None
        smc, store = deps.key(card.bank_code, "imk_smc"), deps.key(card.bank_code, "pin_store")
        return deps.hsm.pin_change_script(smi, smc, pan, psn, atc, arqc, store, pending)
    return deps.hsm.script_command(smi, pan, psn, atc, arqc, _CARD_SCRIPT_HEADERS[script], b"")
