"""A card's life at the issuer: issuance (with the holder's deposit account and the chip's image),
activation, PIN set at the counter, cash deposits, application block and unblock by script at the next
online contact, loss, replacement, renewal, closure, the refund of a lost or closed card's EC balance after
the cooling period, and the periodic jobs (annual fees, expiry).

Each handler is ``(command, uow, deps)``: it enters the unit of work, checks, writes and commits; nothing is
written when it refuses (an :class:`~citycard.issuer.model.IssuerError` or a malformed command).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from citycard.codec.pan import mask_pan
from citycard.ledger.model import Account, AccountFlags, CreateTransferResult, Transfer

from ..commands import (
    ActivateCard,
    BlockCard,
    ChargeAnnualFees,
    CheckPin,
    CloseCard,
    Deposit,
    ExpireCards,
    IssueCards,
    LoadEcFromAccount,
    MalformedRequest,
    RecordOfflineClearing,
    RefundEcBalance,
    RefundTarget,
    RenewCard,
    ReplaceCard,
    ReportLost,
    SetPin,
    UnblockCard,
    UnblockPin,
)
from ..model import (
    ONLINE_PIN_TRY_LIMIT,
    BankAccount,
    Card,
    CardAction,
    CardStateError,
    CardStatus,
    DenyListEntry,
    DuplicateIssuance,
    InvalidIdNumber,
    IssuerError,
    NotFound,
    PendingScript,
    Product,
    RecordState,
    UnregisteredCardLoss,
    validate_id_number,
)
from ..ports import IssuerUnitOfWork
from .concessions import TRANSIT_SFI, concession_of, transit_record
from .deps import (
    Deps,
    available,
    beijing_date,
    card_for_update,
    ec_float,
    existing_bank,
    expect_ok,
    expiry_after,
    transfer_id,
    yymm,
)

__all__ = [
    "activate",
    "block",
    "charge_annual_fees",
    "check_pin",
    "close",
    "deposit",
    "expire_cards",
    "issue_cards",
    "issue_for_holders",
    "load_ec_from_account",
    "record_offline_clearing",
    "refund_ec_balance",
    "renew",
    "replace_card",
    "report_lost",
    "set_pin",
    "unblock",
    "unblock_pin",
]

ISSUE_BATCH = 500
"""Cards issued per transaction (an issuance of many cards commits in batches)."""
MAX_CARDS_PER_JOB = 100_000
"""The periodic jobs (annual fees, expiry) read at most this many cards of a bank per run."""

_DEAD = (CardStatus.CLOSED, CardStatus.REPLACED, CardStatus.EXPIRED)
_LIVE = (CardStatus.ACTIVE, CardStatus.BLOCKED)
_SCRIPT_ACTIONS = {PendingScript.BLOCK: CardAction.BLOCK, PendingScript.UNBLOCK: CardAction.UNBLOCK}


# --- issuance -----------------------------------------------------------------------------------------------
def issue_cards(
    cmd: IssueCards,
    uow: IssuerUnitOfWork,
    deps: Deps,
    progress: Callable[[int], None] | None = None,
) -> list[Card]:
    """Issue ``cmd.count`` cards in transactions of at most :data:`ISSUE_BATCH`; ``progress(n)`` after each
    card."""
    issued: list[Card] = []
    remaining = cmd.count
    while remaining:
        n = min(remaining, ISSUE_BATCH)
        issued += _issue_batch(cmd, n, uow, deps, progress)
        remaining -= n
    return issued


def issue_for_holders(
    cmds: Sequence[IssueCards],
    uow: IssuerUnitOfWork,
    deps: Deps,
    progress: Callable[[int], None] | None = None,
) -> list[Card]:
    """Registered cards for many holders in one transaction (a bulk issuance from a list of citizens): each
    command is one holder's card, issued by the rules of :func:`issue_cards`; one that is refused
    (``DuplicateIssuance``, a malformed holder) refuses them all, and nothing is written."""
    if not all(cmd.count == 1 and cmd.holder_name is not None for cmd in cmds):
        raise MalformedRequest("count", "a bulk issuance for holders is one registered card each")
    with deps.issuing(), uow:
        cards = [card for cmd in cmds for card in _issue_in(cmd, 1, uow, deps, progress)]
        uow.commit()
    return cards


def _issue_batch(
    cmd: IssueCards,
    count: int,
    uow: IssuerUnitOfWork,
    deps: Deps,
    progress: Callable[[int], None] | None,
) -> list[Card]:
    with deps.issuing(), uow:
        cards = _issue_in(cmd, count, uow, deps, progress)
        uow.commit()
    return cards


def _issue_in(
    cmd: IssueCards,
    count: int,
    uow: IssuerUnitOfWork,
    deps: Deps,
    progress: Callable[[int], None] | None,
) -> list[Card]:
    """``count`` cards of ``cmd`` in the unit of work already entered (not committed)."""
    now = deps.clock()
    bank = uow.banks.get(cmd.bank_code)
    if bank is None:
        raise NotFound(f"no bank {cmd.bank_code}")
    product = uow.products.get(cmd.bank_code, cmd.product_code)
    if product is None:
        raise NotFound(f"no product {cmd.product_code} at {cmd.bank_code}")
    if uow.banks.get_bin(product.bin) is None:
        raise NotFound(f"BIN {product.bin} of product {product.code} is not assigned")
    # the BIN range row is locked first: simultaneous issuances of the product queue here, so the
    # second to one citizen finds the first's card (DuplicateIssuance), not a unique-key error
    first = uow.banks.take_serials(product.bin, count)
    holder_id, deposit_id, known = _holder_for(cmd, product, uow, deps)
    # the industry applications the holder has enabled on their other live cards go on the new chip too
    holder_pans: list[str] = []
    if known and holder_id is not None:
        holder_pans = [c.pan for c in uow.cards.by_holder(holder_id) if c.status not in _DEAD]
    bin_range = uow.banks.get_bin(product.bin)
    assert bin_range is not None
    ec_ids = uow.ids.allocate(count)
    expect_ok(uow.ledger.create_accounts([ec_float(i, product) for i in ec_ids]))
    expiry = expiry_after(now, product.validity_years)
    concession = concession_of(cmd.concession, cmd.concession_until)
    if concession.valid_until is not None and concession.valid_until < beijing_date(now):
        raise MalformedRequest("concession_until", f"{concession.valid_until.isoformat()} is past")
    # set-based: the batch's PANs checked in one statement, its cards written in one (no read per card)
    pans = [bin_range.pan(first + k) for k in range(count)]
    taken = uow.cards.existing(pans)
    if taken:
        raise DuplicateIssuance(f"card {mask_pan(next(p for p in pans if p in taken))} exists already")
    cards = []
    for k, pan in enumerate(pans):
        card = Card(
            pan=pan,
            psn=cmd.psn,
            bank_code=bank.code,
            product_code=product.code,
            holder_id=holder_id,
            status=CardStatus.ISSUED,
            expiry=expiry,
            ec_float_account_id=ec_ids[k],
            deposit_account_id=deposit_id,
            issued_at_ns=now,
        )
        if cmd.pin_block is not None:  # the holder's PIN: online (offset) and on the chip
            zpk, pvk = deps.key(bank.code, "zpk"), deps.key(bank.code, "pvk_ibm")
            offset = deps.hsm.generate_pin_offset(zpk, pvk, cmd.pin_block, pan, iso_format=1)
            card = replace(card, pin_offset=offset)
        cards.append(card)
    uow.cards.add_many(cards)
    transits = [(pan, transit_record(concession, RecordState.WRITTEN, now)) for pan in pans]  # SFI 21
    uow.card_records.add_transit_files(transits)
    for card, (pan, transit) in zip(cards, transits, strict=True):
        apps = uow.card_records.inherit_apps(holder_pans, pan) if holder_pans else []
        if product.issue_fee_fen:  # paid at the counter: cash -> fee income (a ledger call each, as one
            fee = Transfer(  # card at the counter is: the fees' timestamps in the order of the cards)
                transfer_id(f"issue-fee/{pan}", 1),
                bank.cash_account_id,
                bank.fee_account_id,
                product.issue_fee_fen,
                code=BankAccount.FEE_INCOME,
            )
            expect_ok(uow.ledger.create_transfers([fee]))
        if deps.personaliser is not None:
            deps.personaliser.personalise(
                bank, product, card, cmd.holder_name, cmd.pin_block, records=(transit, *apps)
            )
        if progress is not None:
            progress(1)
    return cards


def _holder_for(
    cmd: IssueCards, product: Product, uow: IssuerUnitOfWork, deps: Deps
) -> tuple[int | None, int | None, bool]:
    """(holder id, deposit account id, whether the holder was known) of a registered product's holder —
    found by the HMAC of the ID number, or created with a new deposit account; (None, None, False) for an
    unregistered product."""
    if not product.registered:
        if cmd.holder_name is not None:
            raise MalformedRequest("holder", f"product {product.code} is unregistered: it has no holder")
        return None, None, False
    if cmd.holder_name is None or cmd.id_number is None:
        raise MalformedRequest(
            "holder", f"product {product.code} is registered: give --holder and --id-number"
        )
    id_number = validate_id_number(cmd.id_number, today=beijing_date(deps.clock()))
    name = cmd.holder_name.strip()
    if not 1 <= len(name) <= 64:
        raise MalformedRequest("holder", "the holder's name is 1-64 characters")
    id_hash = deps.hsm.keyed_hash(deps.key(cmd.bank_code, "id_hash"), id_number.encode()).hex()
    holder = uow.cardholders.by_id_hash(id_hash)
    if holder is not None:
        for card in uow.cards.by_holder(holder.id):
            live = card.status not in _DEAD
            if card.product_code == product.code and card.bank_code == cmd.bank_code and live:
                raise DuplicateIssuance(
                    f"holder ****{holder.id_last4} already has card {mask_pan(card.pan)} of {product.code}"
                )
        return holder.id, holder.deposit_account_id, True
    (deposit_id,) = uow.ids.allocate(1)
    deposit_account = Account(
        deposit_id, code=BankAccount.CARD_DEPOSIT, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    )
    expect_ok(uow.ledger.create_accounts([deposit_account]))
    citizen_key = deps.citizen_key(id_number)
    holder = uow.cardholders.add(name, id_hash, id_number[-4:], cmd.phone, deposit_id, citizen_key)
    return holder.id, deposit_id, False


# --- simple lifecycle -----------------------------------------------------------------------------------
def activate(cmd: ActivateCard, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """``ISSUED`` → ``ACTIVE``."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        card = replace(card, status=card.after(CardAction.ACTIVATE))
        uow.cards.update(card)
        uow.commit()
    return card


def set_pin(cmd: SetPin, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """A PIN set at the counter: its IBM 3624 offset for online PINs (the try counter reset), and the PIN
    under the bank's PIN storage key until the PIN CHANGE script takes it to the chip."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        card.require(CardAction.SET_PIN)
        zpk, pvk = deps.key(card.bank_code, "zpk"), deps.key(card.bank_code, "pvk_ibm")
        offset = deps.hsm.generate_pin_offset(zpk, pvk, cmd.pin_block, card.pan)
        for_chip = deps.hsm.translate_pin_block(
            zpk, deps.key(card.bank_code, "pin_store"), cmd.pin_block, card.pan
        )
        card = replace(
            card,
            pvv=None,
            pvki=cmd.pvki,
            pin_offset=offset,
            online_pin_failures=0,
            pending_pin_change=for_chip,
        )
        uow.cards.update(card)
        uow.commit()
    return card


def deposit(cmd: Deposit, uow: IssuerUnitOfWork, deps: Deps) -> int:
    """Cash into the holder's deposit account; returns the available balance. Idempotent by request id."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        if card.deposit_account_id is None:
            raise CardStateError(f"card {mask_pan(card.pan)} is unregistered: it has no deposit account")
        bank = deps.bank(uow, card.bank_code)
        t = Transfer(
            transfer_id(cmd.request_id, 1), bank.cash_account_id, card.deposit_account_id, cmd.amount_fen
        )
        result = uow.ledger.create_transfers([t])[0]
        if result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
            raise IssuerError(f"deposit refused by the ledger: {result.value}")
        uow.commit()
        return available(uow, card.deposit_account_id)


def load_ec_from_account(cmd: LoadEcFromAccount, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """Deposit account → the card's EC float now (the ledger refuses more than the account has or than the
    EC balance limit allows), the credit delivered to the chip at its next online contact; a retry with the
    same request id changes nothing."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        if card.deposit_account_id is None:
            raise CardStateError(f"card {mask_pan(card.pan)} is unregistered: it has no deposit account")
        if card.status not in _LIVE and card.status != CardStatus.ISSUED:
            raise CardStateError(f"card {mask_pan(card.pan)} is {card.status}: cannot load it")
        t = Transfer(
            transfer_id(f"ec-load-account/{cmd.request_id}", 1),
            card.deposit_account_id,
            card.ec_float_account_id,
            cmd.amount_fen,
        )
        (result,) = uow.ledger.create_transfers([t])
        if result == CreateTransferResult.EXISTS:
            return card
        if result == CreateTransferResult.EXCEEDS_CREDITS:
            raise CardStateError("the deposit account does not hold that much")
        if result == CreateTransferResult.EXCEEDS_LIMIT:
            raise CardStateError("the EC balance would exceed the card's EC balance limit")
        if result != CreateTransferResult.OK:
            raise IssuerError(f"EC load refused by the ledger: {result.value}")
        card = replace(card, pending_ec_credit_fen=card.pending_ec_credit_fen + cmd.amount_fen)
        uow.cards.update(card)
        uow.commit()
    return card


def check_pin(cmd: CheckPin, uow: IssuerUnitOfWork, deps: Deps) -> bool:
    """Whether ``cmd.pin`` is the card's PIN (:class:`CheckPin`); a wrong one is counted, a right one resets
    the count; a card without a PIN, or with the tries used up, is a :class:`CardStateError`."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        if card.pin_offset is None:
            raise CardStateError(f"card {mask_pan(card.pan)} has no PIN set")
        if card.online_pin_failures >= ONLINE_PIN_TRY_LIMIT:
            raise CardStateError(f"card {mask_pan(card.pan)}: PIN tries exceeded, the counter re-sets it")
        zpk, pvk = deps.key(card.bank_code, "zpk"), deps.key(card.bank_code, "pvk_ibm")
        block = deps.hsm.encrypt_pin(zpk, cmd.pin, card.pan)
        ok = deps.hsm.verify_pin_offset(zpk, pvk, block, card.pan, card.pin_offset)
        failures = 0 if ok else card.online_pin_failures + 1
        if failures != card.online_pin_failures:
            uow.cards.update(replace(card, online_pin_failures=failures))
            uow.commit()
    return ok


def block(cmd: BlockCard, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """APPLICATION BLOCK by script at the next online contact; denied at once (the deny list)."""
    return _pending_script(cmd.pan, PendingScript.BLOCK, uow, deps)


def unblock(cmd: UnblockCard, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """APPLICATION UNBLOCK by script at the next online contact; off the deny list at once."""
    return _pending_script(cmd.pan, PendingScript.UNBLOCK, uow, deps)


def _pending_script(pan: str, which: PendingScript, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    with uow:
        card = card_for_update(uow, pan)
        card.require(_SCRIPT_ACTIONS[which])
        card = replace(card, pending_script=which)
        uow.cards.update(card)
        now = deps.clock()
        if which is PendingScript.BLOCK:
            uow.deny_list.add(DenyListEntry(card.bank_code, card.pan, card.psn, "blocked", now))
        elif card.status == CardStatus.BLOCKED or card.pending_script:
            uow.deny_list.remove(card.bank_code, card.pan, now)
        uow.commit()
    return card


def unblock_pin(cmd: UnblockPin, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """A PIN UNBLOCK for the chip at its next online contact (its PIN try counter reset, the PIN kept), and
    the online PIN try count reset now."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        card.require(CardAction.UNBLOCK_PIN)
        card = replace(card, pending_pin_unblock=True, online_pin_failures=0)
        uow.cards.update(card)
        uow.commit()
    return card


def record_offline_clearing(cmd: RecordOfflineClearing, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    with uow:
        card = card_for_update(uow, cmd.pan)
        if cmd.cleared_until_ns > card.offline_cleared_until_ns:
            card = replace(card, offline_cleared_until_ns=cmd.cleared_until_ns)
            uow.cards.update(card)
            uow.commit()
    return card


# --- loss, replacement, renewal, closure ----------------------------------------------------------------
def report_lost(cmd: ReportLost, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    with uow:
        card = card_for_update(uow, cmd.pan)
        if not card.registered:
            raise UnregisteredCardLoss(card.pan)
        if cmd.id_number is not None:
            holder = uow.cardholders.get(card.holder_id or 0)
            given = deps.hsm.keyed_hash(
                deps.key(card.bank_code, "id_hash"),
                validate_id_number(cmd.id_number, today=beijing_date(deps.clock())).encode(),
            )
            if holder is None or holder.id_hash != given.hex():
                raise InvalidIdNumber("the ID number is not the card holder's")
        status = card.after(CardAction.REPORT_LOST)
        now = deps.clock()
        card = replace(card, status=status, lost_at_ns=now, pending_script=None)
        uow.cards.update(card)
        uow.deny_list.add(DenyListEntry(card.bank_code, card.pan, card.psn, "lost", now))
        uow.commit()
    return card


def replace_card(cmd: ReplaceCard, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """A new card (new PAN) for the same holder and deposit account; the old one stays denied."""
    with deps.issuing(), uow:
        old = card_for_update(uow, cmd.pan)
        if not old.registered:
            raise UnregisteredCardLoss(old.pan)
        old.require(CardAction.REPLACE)
        if old.replaced_by:
            raise CardStateError(f"card {mask_pan(old.pan)} is replaced already: cannot replace it")
        new = _successor(old, uow, deps)
        # a lost card stays lost: its EC refund waits for the loss report's cooling period
        status = old.status if old.status == CardStatus.LOST else old.after(CardAction.REPLACE)
        uow.cards.update(replace(old, status=status, replaced_by=new.pan))
        if status == CardStatus.REPLACED:
            uow.deny_list.add(DenyListEntry(old.bank_code, old.pan, old.psn, "replaced", deps.clock()))
        uow.commit()
    return new


def renew(cmd: RenewCard, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """Expiry and renewal: a new card with a new expiry; the old card's EC balance follows later."""
    with deps.issuing(), uow:
        old = card_for_update(uow, cmd.pan)
        status = old.after(CardAction.RENEW)
        if old.replaced_by:
            raise CardStateError(f"card {mask_pan(old.pan)} is renewed already: cannot renew it")
        new = _successor(old, uow, deps)
        uow.cards.update(replace(old, status=status, replaced_by=new.pan))
        uow.commit()
    return new


def _successor(old: Card, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    bank = deps.bank(uow, old.bank_code)
    product = uow.products.get(old.bank_code, old.product_code)
    assert product is not None
    bin_range = uow.banks.get_bin(product.bin)
    assert bin_range is not None
    serial = uow.banks.take_serials(product.bin, 1)
    (ec_id,) = uow.ids.allocate(1)
    expect_ok(uow.ledger.create_accounts([ec_float(ec_id, product)]))
    now = deps.clock()
    new = Card(
        pan=bin_range.pan(serial),
        psn=old.psn,
        bank_code=old.bank_code,
        product_code=old.product_code,
        holder_id=old.holder_id,
        status=CardStatus.ISSUED,
        expiry=expiry_after(now, product.validity_years),
        ec_float_account_id=ec_id,
        deposit_account_id=old.deposit_account_id,
        issued_at_ns=now,
        pvv=None,
    )
    uow.cards.add(new)
    records = uow.card_records.carry_over(old.pan, new.pan)  # the applications enabled follow the holder
    if not any(r.sfi == TRANSIT_SFI for r in records):  # and its concession; else an empty transit file
        transit = transit_record(concession_of(None, None), RecordState.WRITTEN, now)
        uow.card_records.put_transit(new.pan, transit, new=True)
        records.append(transit)
    if deps.personaliser is not None:
        holder = uow.cardholders.get(old.holder_id) if old.holder_id is not None else None
        deps.personaliser.personalise(bank, product, new, holder.name if holder else None, records=records)
    return new


def refund_ec_balance(cmd: RefundEcBalance, uow: IssuerUnitOfWork, deps: Deps) -> int:
    """Refund a lost or closed card's EC balance, once the cooling period has passed since the report
    (or closure) and the card's offline transactions up to then have cleared: to the holder's account,
    to the replacement card (delivered by ``PUT DATA 9F79`` at its next online contact), or in cash for
    an unregistered card. Returns the amount moved."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        card.require(CardAction.REFUND_EC)
        since = card.lost_at_ns if card.status == CardStatus.LOST else card.closed_at_ns
        if since is None:
            raise CardStateError(f"card {mask_pan(card.pan)} has no time of its loss report or closure")
        if not card.registered and cmd.to is not RefundTarget.CASH:
            raise UnregisteredCardLoss(card.pan)
        now = deps.clock()
        if now - since < deps.cooling_period_ns:
            days = deps.cooling_period_ns / 86_400e9
            raise CardStateError(f"the cooling period ({days:g} days) is not over")
        if card.offline_cleared_until_ns < since:
            raise CardStateError("the card's offline transactions up to the report have not cleared yet")
        amount = _move_ec_balance(card, cmd.to, f"refund/{card.pan}", uow, deps)
        uow.commit()
    return amount


def _move_ec_balance(card: Card, to: RefundTarget, key: str, uow: IssuerUnitOfWork, deps: Deps) -> int:
    (ec,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
    amount = ec.credit_balance_fen
    if amount == 0:
        return 0
    if to is RefundTarget.REPLACEMENT:
        if card.replaced_by is None:
            raise CardStateError(f"card {mask_pan(card.pan)} has no replacement")
        successor = card_for_update(uow, card.replaced_by)
        target = successor.ec_float_account_id
        uow.cards.update(replace(successor, pending_ec_credit_fen=successor.pending_ec_credit_fen + amount))
    elif to is RefundTarget.ACCOUNT and card.deposit_account_id is not None:
        target = card.deposit_account_id
    elif to is RefundTarget.CASH:
        target = deps.bank(uow, card.bank_code).cash_account_id
    else:
        raise MalformedRequest("to", "the EC balance goes to 'account' or 'replacement'")
    t = Transfer(transfer_id(key, 1), card.ec_float_account_id, target, amount)
    (result,) = uow.ledger.create_transfers([t])
    if result == CreateTransferResult.EXCEEDS_LIMIT:
        raise CardStateError(
            f"the replacement's EC balance would exceed its limit: refund card {mask_pan(card.pan)} "
            "to the holder's account instead"
        )
    expect_ok([result])
    return amount


def close(cmd: CloseCard, uow: IssuerUnitOfWork, deps: Deps) -> Card:
    """Close the card: on the deny list at once; its EC balance is refunded by :func:`refund_ec_balance`
    after the cooling period. The holder's deposit account stays open."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        status = card.after(CardAction.CLOSE)
        now = deps.clock()
        card = replace(card, status=status, closed_at_ns=now, pending_script=None)
        uow.cards.update(card)
        uow.deny_list.add(DenyListEntry(card.bank_code, card.pan, card.psn, "closed", now))
        uow.commit()
    return card


# --- periodic jobs --------------------------------------------------------------------------------------
def charge_annual_fees(cmd: ChargeAnnualFees, uow: IssuerUnitOfWork, deps: Deps) -> tuple[int, list[str]]:
    """Returns (fen charged, PANs whose account could not pay). Idempotent per card and period."""
    charged, unpaid = 0, []
    with uow:
        bank = existing_bank(uow, cmd.bank_code)
        for card in uow.cards.list(cmd.bank_code, limit=MAX_CARDS_PER_JOB):
            product = deps.product(uow, card.bank_code, card.product_code)
            if product is None or not product.annual_fee_fen or card.status not in _LIVE:
                continue
            if card.deposit_account_id is None:
                continue
            fee = Transfer(
                transfer_id(f"annual-fee/{card.pan}/{cmd.period}", 1),
                card.deposit_account_id,
                bank.fee_account_id,
                product.annual_fee_fen,
                code=BankAccount.FEE_INCOME,
            )
            result = uow.ledger.create_transfers([fee])[0]
            if result == CreateTransferResult.OK:
                charged += fee.amount_fen
            elif result != CreateTransferResult.EXISTS:
                unpaid.append(card.pan)
        uow.commit()
    return charged, unpaid


def expire_cards(cmd: ExpireCards, uow: IssuerUnitOfWork, deps: Deps) -> list[str]:
    """PANs marked expired now."""
    now = yymm(deps.clock())
    expired = []
    with uow:
        existing_bank(uow, cmd.bank_code)
        for card in uow.cards.list(cmd.bank_code, limit=MAX_CARDS_PER_JOB):
            if card.expiry < now and card.allows(CardAction.EXPIRE):
                uow.cards.update(replace(card, status=card.after(CardAction.EXPIRE)))
                expired.append(card.pan)
        uow.commit()
    return expired
