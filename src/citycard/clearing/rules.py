"""What becomes of each offline record of a day: pure, over records sorted by card and ATC.

Checks in order (the first that fails decides; docs/clearing.md has the table):

1. field 55 is a TC (``tc_invalid``), the card is known (``unknown_card``);
2. the TC verifies in the issuer's HSM — when it does not and the amount presented differs from the one the
   TC names, ``amount_changed``, otherwise ``tc_invalid`` (forged or altered: pays nothing);
3. the amount presented (field 4, the journal's) is the TC's (``amount_changed``); the journal's copy of the
   same record has the same cryptogram and amount (``amount_changed``) and terminal (``terminal_changed``);
4. the card's (PAN, PSN, ATC) was not presented before: the same cryptogram again is a ``duplicate``
   (reported, never paid) or, from another terminal, ``terminal_changed``; another cryptogram for the same
   ATC is a ``clone``; so is an ATC going back in time (a higher ATC on an earlier day than a lower one) —
   a clone puts the card on its issuer's deny list at once;
5. the terminal and merchant are registered (``unknown_terminal``); not a fare a validator refused after the
   card paid (``fare_refund``); presented within ``late_days`` of the transaction (``late``); not spent after
   the card was reported lost (``after_loss``: cleared and reported when the cardholder bears it, held for
   an operator when the merchant does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date

from .model import ClearingPolicy, ExceptionReason, ExceptionStatus, LostLiability, Outcome, Verdict
from .tc import TcData

__all__ = ["CardFacts", "JournalCopy", "OfflineRecord", "SeenTc", "TcKey", "classify"]

TcKey = tuple[str, str, int]  # (PAN, PSN, ATC)


@dataclass(frozen=True, slots=True)
class JournalCopy:
    """The terminal journal's record of the same transaction (same terminal, batch and STAN)."""

    amount_fen: int
    terminal_id: str
    cryptogram: bytes


@dataclass(frozen=True, slots=True)
class OfflineRecord:
    ref: str  # 'TID/batch/stan'
    pan: str | None  # None: no card found for the journal's masked PAN
    psn: str
    tc: TcData | None  # None: field 55 unusable (``tc_error`` says why)
    tc_ok: bool  # verified in the issuer's HSM
    presented_amount_fen: int
    terminal_id: str
    registered: bool  # terminal and merchant in the registry
    txn_ns: int
    journal: JournalCopy | None = None
    fare_refund: bool = False
    tc_error: str = ""

    def sort_key(self) -> tuple[str, str, int, str]:
        return (self.pan or "", self.psn, self.tc.atc if self.tc else -1, self.ref)


@dataclass(frozen=True, slots=True)
class SeenTc:
    """A TC presented before (kept by clearing per PAN, PSN and ATC)."""

    atc: int
    cryptogram: bytes
    terminal_id: str
    amount_fen: int
    txn_date: date
    ref: str


@dataclass(frozen=True, slots=True)
class CardFacts:
    lost_at_ns: int | None


class _CardTcs:
    """A card's TCs presented so far (in the order they were seen) and the bounds of their ATCs and dates.

    The clone check compares a new TC with each of them ("the counter went back"); no one of them can fail
    it when the new ATC is at least every earlier one's and its date no earlier than theirs (or it is below
    all of them and no later) — the usual case, a card's TCs arriving in ATC order — and then
    :meth:`may_go_back` returns nothing instead of the whole list, so the check costs the same whatever the
    card's history; otherwise it returns them all, in order, and the first that fails is the one reported,
    as before."""

    __slots__ = ("max_atc", "max_date", "min_atc", "min_date", "tcs")

    def __init__(self) -> None:
        self.tcs: list[SeenTc] = []
        self.min_atc = self.max_atc = 0
        self.min_date = self.max_date = date.min

    def add(self, s: SeenTc) -> None:
        if not self.tcs:
            self.min_atc = self.max_atc = s.atc
            self.min_date = self.max_date = s.txn_date
        else:  # min and max by comparison: a value below the least is not above the greatest
            if s.atc < self.min_atc:
                self.min_atc = s.atc
            elif s.atc > self.max_atc:
                self.max_atc = s.atc
            if s.txn_date < self.min_date:
                self.min_date = s.txn_date
            elif s.txn_date > self.max_date:
                self.max_date = s.txn_date
        self.tcs.append(s)
        assert self.min_atc <= s.atc <= self.max_atc and self.min_date <= s.txn_date <= self.max_date

    def may_go_back(self, atc: int, txn_date: date) -> list[SeenTc]:
        """The TCs to compare with a new one of ``atc`` and ``txn_date``: none when no one can be higher
        and earlier, nor lower and later; else all of them."""
        if not self.tcs:
            return self.tcs
        none_higher_earlier = self.max_atc <= atc or self.min_date >= txn_date
        none_lower_later = self.min_atc >= atc or self.max_date <= txn_date
        return [] if none_higher_earlier and none_lower_later else self.tcs


def classify(
    records: Iterable[OfflineRecord],
    seen: MutableMapping[TcKey, SeenTc],
    cards: Mapping[str, CardFacts],
    policy: ClearingPolicy,
    day: date,
) -> list[Verdict]:
    """A verdict per record, in card and ATC order; ``seen`` gains each TC presented for the first time."""
    by_card: dict[tuple[str, str], _CardTcs] = {}
    for (pan, psn, _), s in seen.items():
        by_card.setdefault((pan, psn), _CardTcs()).add(s)
    verdicts = []
    for record in sorted(records, key=OfflineRecord.sort_key):
        verdict = _verdict(record, seen, by_card, cards, policy, day)
        assert verdict.ref == record.ref, "a verdict is the record's"
        assert not verdict.clears or (record.tc is not None and record.tc_ok), "only a verified TC clears"
        verdicts.append(verdict)
    return verdicts


def _exception(record: OfflineRecord, reason: ExceptionReason, detail: str, **kw: object) -> Verdict:
    return Verdict(record.ref, Outcome.EXCEPTION, reason, detail=detail, **kw)  # type: ignore[arg-type]


def _verdict(
    record: OfflineRecord,
    seen: MutableMapping[TcKey, SeenTc],
    by_card: dict[tuple[str, str], _CardTcs],
    cards: Mapping[str, CardFacts],
    policy: ClearingPolicy,
    day: date,
) -> Verdict:
    tc = record.tc
    R = ExceptionReason
    if tc is None:
        return _exception(record, R.TC_INVALID, record.tc_error or "field 55 is not a TC")
    if record.pan is None:
        return _exception(record, R.UNKNOWN_CARD, "no card of the platform has this PAN and PSN")
    if not record.tc_ok:
        if record.presented_amount_fen != tc.amount_fen:
            return _exception(
                record,
                R.AMOUNT_CHANGED,
                f"presented {record.presented_amount_fen} fen, the TC fails and names {tc.amount_fen}",
            )
        return _exception(record, R.TC_INVALID, "the TC does not verify under the card's key")
    if record.presented_amount_fen != tc.amount_fen:
        detail = f"presented {record.presented_amount_fen} fen, the TC covers {tc.amount_fen}"
        return _exception(record, R.AMOUNT_CHANGED, detail)
    journal = record.journal
    if journal is not None:
        if journal.cryptogram != tc.cryptogram or journal.amount_fen != tc.amount_fen:
            detail = f"the journal has {journal.amount_fen} fen and another cryptogram"
            return _exception(record, R.AMOUNT_CHANGED, detail)
        if journal.terminal_id != record.terminal_id:
            detail = f"uploaded by {record.terminal_id}, journaled by {journal.terminal_id}"
            return _exception(record, R.TERMINAL_CHANGED, detail)
    key = (record.pan, record.psn, tc.atc)
    before = seen.get(key)
    if before is not None:
        if before.cryptogram != tc.cryptogram:
            detail = f"ATC {tc.atc} was presented with another cryptogram ({before.ref})"
            return _exception(record, R.CLONE, detail, deny=True)
        if before.terminal_id != record.terminal_id:
            detail = f"the TC of {before.ref} presented again from terminal {record.terminal_id}"
            return _exception(record, R.TERMINAL_CHANGED, detail)
        return _exception(
            record, R.DUPLICATE, f"the TC of {before.ref} again", status=ExceptionStatus.REPORTED
        )
    card_seen = by_card.get((record.pan, record.psn))
    if card_seen is None:
        card_seen = by_card[record.pan, record.psn] = _CardTcs()
    for other in card_seen.may_go_back(tc.atc, tc.txn_date):
        earlier_but_higher = other.atc > tc.atc and other.txn_date < tc.txn_date
        later_but_lower = other.atc < tc.atc and other.txn_date > tc.txn_date
        if earlier_but_higher or later_but_lower:
            detail = (
                f"ATC {tc.atc} on {tc.txn_date}, ATC {other.atc} on {other.txn_date}: the counter went back"
            )
            return _exception(record, R.CLONE, detail, deny=True)
    first = SeenTc(tc.atc, tc.cryptogram, record.terminal_id, tc.amount_fen, tc.txn_date, record.ref)
    seen[key] = first
    card_seen.add(first)
    if not record.registered:
        return _exception(record, R.UNKNOWN_TERMINAL, f"terminal {record.terminal_id} is not registered")
    if record.fare_refund:
        return _exception(record, R.FARE_REFUND, "the validator refused the fare after the card paid")
    age = (day - tc.txn_date).days
    if age > policy.late_days:
        return _exception(record, R.LATE, f"presented {age} days after the transaction")
    facts = cards.get(record.pan)
    lost_at = facts.lost_at_ns if facts is not None else None
    if lost_at is not None and record.txn_ns > lost_at:
        if policy.lost_liability is LostLiability.CARDHOLDER:
            detail = "spent offline after the loss report: the cardholder bears it (cleared)"
            return _exception(record, R.AFTER_LOSS, detail, status=ExceptionStatus.REPORTED, also_clear=True)
        return _exception(record, R.AFTER_LOSS, "spent offline after the loss report: the merchant bears it")
    return Verdict(record.ref, Outcome.CLEAR)
