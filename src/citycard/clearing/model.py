"""Clearing's values: the kinds of item, the reasons and states of an exception, the programme's policy."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .calendar import Cutovers

__all__ = [
    "NEVER_PAYABLE",
    "ClearingPolicy",
    "ExceptionAction",
    "ExceptionReason",
    "ExceptionStatus",
    "ItemKind",
    "LostLiability",
    "Outcome",
    "Verdict",
]


class ItemKind(enum.StrEnum):
    """``clearing_items.kind`` (docs/clearing.md): the sign says which way the money goes."""

    PURCHASE = "purchase"  # +1
    REFUND = "refund"  # -1
    VOID = "void"  # -1: a void or reversal of a purchase cleared on an earlier day
    EC_CASH_LOAD = "ec_cash_load"  # -1: cash taken at a merchant's counter for the card's EC balance
    FARE = "fare"  # +1: an offline purchase at a transport merchant (a validator's fare)
    # -1: an EC load from another account (0200 620000/91): both legs, counted once; the card's bank
    # receives, ``payer_bank`` (the other account's) pays; no merchant takes part
    EC_ACCOUNT_LOAD = "ec_account_load"


class ExceptionReason(enum.StrEnum):
    """Why an offline record is not simply cleared (each worked by an operator, except ``duplicate``)."""

    DUPLICATE = "duplicate"  # the same TC (PAN, PSN, ATC, cryptogram) presented again: reported, never paid
    CLONE = "clone"  # the ATC reused with another cryptogram, or going back in time: the card is denied
    TC_INVALID = "tc_invalid"  # the TC does not verify under the card's key (forged or altered)
    AMOUNT_CHANGED = "amount_changed"  # the amount presented is not the amount the TC covers (9F02)
    TERMINAL_CHANGED = "terminal_changed"  # the same TC from another terminal, or the journal disagrees
    UNKNOWN_CARD = "unknown_card"  # no card of the platform has this PAN and PSN
    UNKNOWN_TERMINAL = "unknown_terminal"  # the terminal or merchant is not in the registry
    LATE = "late"  # presented more than ``late_days`` after the transaction
    AFTER_LOSS = "after_loss"  # offline spending after the card was reported lost
    FARE_REFUND = "fare_refund"  # a validator refused the fare after the card paid (double tap, deny list)
    FLOAT_SHORT = "float_short"  # the card's EC float in the books cannot pay it
    # an online leg of an EC load from another account approved and not reversed without its partner leg
    # (the card leg declined or reversed after the debit posted): its reversal is still on its way
    REVERSAL_PENDING = "reversal_pending"


class ExceptionStatus(enum.StrEnum):
    OPEN = "open"
    REPORTED = "reported"  # nothing to do (a duplicate; spending after a loss the cardholder bears, cleared)
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CHARGEBACK = "chargeback"
    REVERSED = "reversed"  # closed by clearing: a load leg's reversal was applied at its issuer; no pay


class ExceptionAction(enum.StrEnum):
    """What an operator does with an exception."""

    ACCEPT = "accept"  # pay it: a clearing item of the next run (the date it is accepted)
    REJECT = "reject"  # never pay it
    CHARGEBACK = "chargeback"  # return a record that was paid: a negative item of the next run


NEVER_PAYABLE = frozenset(
    {
        ExceptionReason.TC_INVALID,
        ExceptionReason.AMOUNT_CHANGED,
        ExceptionReason.UNKNOWN_CARD,
        ExceptionReason.DUPLICATE,
        ExceptionReason.CLONE,
        ExceptionReason.TERMINAL_CHANGED,
        ExceptionReason.UNKNOWN_TERMINAL,
        ExceptionReason.REVERSAL_PENDING,
    }
)
"""Reasons whose record an operator may only reject: the TC does not show that this card paid this amount
at this registered terminal (a clone's first TC was cleared; the second is the copy); a load's leg whose
reversal is pending is closed once the reversal has been applied (nothing is paid: the legs net to zero)."""


def allowed_actions(
    reason: str, status: str, cleared: bool, pending_item: str | None
) -> tuple[ExceptionAction, ...]:
    """What an operator may do with an exception in this state (its reason, status, whether its record was
    paid, the item it waits for): ``accept`` an open one whose record may be paid, ``reject`` an open one,
    ``chargeback`` one whose record was paid and is not charged back or waiting for its item yet. The
    engine refuses any other action, with its reason; the console offers only these."""
    actions: list[ExceptionAction] = []
    if status == ExceptionStatus.OPEN:
        if reason not in NEVER_PAYABLE:
            actions.append(ExceptionAction.ACCEPT)
        actions.append(ExceptionAction.REJECT)
    if cleared and status != ExceptionStatus.CHARGEBACK and not pending_item:
        actions.append(ExceptionAction.CHARGEBACK)
    return tuple(actions)


class LostLiability(enum.StrEnum):
    """Who bears offline spending after a loss report (the programme's rule,
    ``CITYCARD_CLEARING_LOST_LIABILITY``).

    ``cardholder``: the EC balance is like cash until the deny list reaches the terminals; the record clears
    from the card's EC float and is reported. ``merchant``: the terminal should have refused a card on the
    deny list; the record waits in the queue (an operator accepts it, or rejects it: the merchant bears
    it)."""

    CARDHOLDER = "cardholder"
    MERCHANT = "merchant"


class Outcome(enum.StrEnum):
    CLEAR = "clear"
    EXCEPTION = "exception"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of one record: cleared, or an exception (``reason``, ``status``, ``detail``); ``deny``:
    put the card on its issuer's deny list now (a clone); ``also_clear``: an exception that clears anyway
    (reported spending after a loss that the cardholder bears)."""

    ref: str
    outcome: Outcome
    reason: ExceptionReason | None = None
    status: ExceptionStatus = ExceptionStatus.OPEN
    detail: str = ""
    deny: bool = False
    also_clear: bool = False

    def __post_init__(self) -> None:  # invariants (TIGER_STYLE): a bug in the rules, not a record's fault
        if self.outcome is Outcome.CLEAR:
            assert self.reason is None and not self.deny and not self.also_clear, f"clear with {self}"
        else:
            assert self.reason is not None, f"exception without a reason: {self.ref}"
            assert not self.also_clear or self.status is ExceptionStatus.REPORTED, f"cleared but open: {self}"
            assert not self.deny or self.reason is ExceptionReason.CLONE, f"denied but not a clone: {self}"

    @property
    def clears(self) -> bool:
        return self.outcome is Outcome.CLEAR or self.also_clear


@dataclass(frozen=True, slots=True)
class ClearingPolicy:
    cutovers: Cutovers = field(default_factory=Cutovers)
    late_days: int = 10
    lost_liability: LostLiability = LostLiability.CARDHOLDER

    def __post_init__(self) -> None:
        if not 0 < self.late_days <= 3650:
            raise ValueError("late presentment: 1 to 3650 days")
