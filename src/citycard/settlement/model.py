"""Settlement of one cleared day: the items, their totals, the net positions and the ledger postings.

Pure values and functions (no I/O, no clock). The day's ``clearing_items`` (docs/settlement.md, the
contract of clearing → settlement) stream through :class:`DayTotals` once; from the totals come

- the **net position** of every participant: each bank (what it receives as an acquirer for its merchants,
  less what it owes as an issuer for its cards) and the Citizen Card Service Center (the network fees);
  they sum to zero, to the fen;
- the **ledger postings** on each bank's books (:func:`plan_postings`), as transfers with ids derived from
  the settlement date and what they post (:func:`settlement_transfer_id`): a rerun finds them ``exists``;
- the **merchant payouts** (T+1, net of the discount): :func:`plan_payouts`.

Signs: an item's ``sign`` is +1 when money flows from the card to the merchant's side (purchase, fare) and
−1 when it flows back to the card (refund, void, EC cash load, EC load from another account). Every total
here is signed that way.

An **EC load from another account** (``ec_account_load``, 0200 620000/91) has no merchant side: the other
account's bank (``payer_bank``) debited that account and the EC card's bank (``issuer_bank``) credited the
card's EC float, each through its network settlement account. It counts as the payer's card spending its
amount and the EC card's bank's card getting it back: the payer's issued gross rises by the amount, the
EC card's bank's falls by it, so the payer's net position falls and the other's rises; no fee, no merchant,
no industry. When both accounts are at one bank the two cancel: nothing moves between banks.

A reversal that reached the issuer after its original cleared is its original's item given back, the same
kind with the opposite sign: a cash load's ``+1``, an EC load from another account's ``+1`` (back from the EC
card's bank to the payer's).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from citycard.ledger.model import MAX_ID, Transfer

from .fees import FeeSchedule, ItemFees

__all__ = [
    "ACCOUNT_LOAD",
    "CENTER",
    "ITEM_KINDS",
    "USUAL_SIGN",
    "Account",
    "AccountKey",
    "ClearedItem",
    "DayTotals",
    "IssuerTotals",
    "MalformedDate",
    "MerchantTotals",
    "NotCleared",
    "Payout",
    "Position",
    "SettlementError",
    "SettlementRefused",
    "clearing_date",
    "given_back",
    "payout_date",
    "plan_payouts",
    "plan_postings",
    "settlement_transfer_id",
]

CENTER = "CENTER"
"""The Citizen Card Service Center as a participant of net settlement (it keeps the network fees)."""
ACCOUNT_LOAD = "ec_account_load"
"""An EC load from another account: between two issuers (``payer_bank`` pays), no merchant."""
ITEM_KINDS = frozenset({"purchase", "refund", "void", "ec_cash_load", "fare", ACCOUNT_LOAD})
USUAL_SIGN: Mapping[str, int] = {
    "purchase": 1, "fare": 1, "refund": -1, "void": -1, "ec_cash_load": -1, ACCOUNT_LOAD: -1,
}  # fmt: skip
"""Each kind's sign when it is not a reversal given back (clearing: a reversal that reached the issuer after
its original cleared is the original's item with the opposite sign). The day's totals by kind are unsigned
sums, so an item of the other sign is counted under ``<kind> reversed``: a cash load and its late
reversal are two lines, not 2 x the amount under one."""
assert set(USUAL_SIGN) == ITEM_KINDS


def given_back(kind: str, sign: int) -> bool:
    """An item of the other sign than its kind's (:data:`USUAL_SIGN`): a reversal given back."""
    return sign != USUAL_SIGN[kind]


_DATE = re.compile(r"[0-9]{8}")


class SettlementError(Exception):
    """Settlement cannot be carried out (exit status 1): the ledger refused a posting, say."""


class MalformedDate(SettlementError, ValueError):
    """A settlement date that is not a date (exit status 2)."""


class NotCleared(SettlementError, ValueError):
    """The day has no finished clearing run (exit status 2: the input named a day that cannot settle)."""


class SettlementRefused(SettlementError):
    """The ledger refused a posting of the day: nothing of the day is kept."""


def clearing_date(text: str) -> str:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` → ``YYYYMMDD`` (``clearing_items.clearing_date``), or MalformedDate."""
    value = text.replace("-", "") if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text) else text
    if not _DATE.fullmatch(value):
        raise MalformedDate(f"--date {text!r}: not a date (YYYY-MM-DD)")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise MalformedDate(f"--date {text!r}: not a date (YYYY-MM-DD)") from None
    return value


def payout_date(day: str) -> str:
    """T+1: the calendar day after the settlement date (``YYYYMMDD``)."""
    d = date(int(day[:4]), int(day[4:6]), int(day[6:])) + timedelta(days=1)
    return d.strftime("%Y%m%d")


@dataclass(frozen=True, slots=True)
class ClearedItem:
    """One row of ``clearing_items`` (the columns settlement reads)."""

    id: int
    source: str
    source_ref: str
    kind: str
    sign: int
    amount_fen: int
    issuer_bank: str
    acquirer_bank: str
    merchant_id: str
    terminal_id: str
    mcc: str
    industry: str | None
    pan_masked: str
    txn_ns: int
    rrn: str | None
    card_type: str | None = None  # the card's product's: debit | credit; None (before 0023): as debit
    bus_line: int | None = None  # a fare: the bus line the validator journaled (field 63 of its upload)
    payer_bank: str | None = None  # an EC load from another account: the bank of the account that paid

    def __post_init__(self) -> None:
        assert self.sign in (1, -1) and self.amount_fen > 0, self
        assert self.kind in ITEM_KINDS, self.kind
        assert (self.kind == ACCOUNT_LOAD) == (self.payer_bank is not None), self

    @property
    def account_load(self) -> bool:
        """An EC load from another account: between two issuers, no merchant (the module's docstring)."""
        return self.payer_bank is not None

    @property
    def signed_fen(self) -> int:
        return self.sign * self.amount_fen


@dataclass(slots=True)
class MerchantTotals:
    merchant_id: str
    acquirer_bank: str
    industry: str | None
    item_count: int = 0
    gross_fen: int = 0  # signed sum of the amounts
    discount_fen: int = 0
    issuer_fee_fen: int = 0
    network_fee_fen: int = 0
    acquirer_fee_fen: int = 0

    @property
    def net_fen(self) -> int:
        """What the merchant is owed for the day: gross less the discount."""
        return self.gross_fen - self.discount_fen


@dataclass(slots=True)
class IssuerTotals:
    bank: str
    item_count: int = 0
    gross_fen: int = 0  # the day's signed card spending at this bank's cards
    issuer_fee_fen: int = 0


@dataclass(frozen=True, slots=True)
class Position:
    """A participant's net position: ``net_fen`` > 0 it receives, < 0 it pays."""

    participant: str
    issued_gross_fen: int  # its cards' spending (it owes this, less its issuer fees)
    issuer_fee_fen: int
    acquired_net_fen: int  # owed to its merchants (gross less discount)
    acquirer_fee_fen: int
    network_fee_fen: int  # the center's income

    @property
    def net_fen(self) -> int:
        return (
            self.acquired_net_fen
            + self.acquirer_fee_fen
            + self.network_fee_fen
            - (self.issued_gross_fen - self.issuer_fee_fen)
        )


@dataclass(slots=True)
class KindTotals:
    count: int = 0
    amount_fen: int = 0  # unsigned sum


@dataclass
class DayTotals:
    """The day's items folded once (:meth:`add`); every figure settlement posts or reports."""

    schedule: FeeSchedule
    merchants: dict[tuple[str, str], MerchantTotals] = field(default_factory=dict)  # (bank, merchant)
    issuers: dict[str, IssuerTotals] = field(default_factory=dict)
    kinds: dict[tuple[str, str], KindTotals] = field(default_factory=dict)  # (source, kind [reversed])
    industries: dict[str, MerchantTotals] = field(default_factory=dict)  # industry or "" → sums
    item_count: int = 0
    last_id: int = 0

    def add(self, item: ClearedItem) -> ItemFees:
        """Fold one item in (items come in id order); its fees."""
        assert item.id > self.last_id, "items in id order, each once"
        self.last_id = item.id
        fees = self.schedule.fees(
            item.kind, item.sign, item.amount_fen, item.industry, item.mcc, card_type=item.card_type
        )
        kind = f"{item.kind} reversed" if given_back(item.kind, item.sign) else item.kind
        k = self.kinds.setdefault((item.source, kind), KindTotals())
        k.count += 1
        k.amount_fen += item.amount_fen
        self.item_count += 1
        if item.payer_bank is not None:
            self._account_load(item, item.payer_bank)
            return fees
        key = (item.acquirer_bank, item.merchant_id)
        m = self.merchants.get(key)
        if m is None:
            m = self.merchants[key] = MerchantTotals(item.merchant_id, item.acquirer_bank, item.industry)
        i = self.issuers.get(item.issuer_bank)
        if i is None:
            i = self.issuers[item.issuer_bank] = IssuerTotals(item.issuer_bank)
        label = item.industry or ""
        ind = self.industries.get(label)
        if ind is None:
            ind = self.industries[label] = MerchantTotals("", "", item.industry)
        for t in (m, ind):
            t.item_count += 1
            t.gross_fen += item.signed_fen
            t.discount_fen += fees.discount_fen
            t.issuer_fee_fen += fees.issuer_fen
            t.network_fee_fen += fees.network_fen
            t.acquirer_fee_fen += fees.acquirer_fen
        i.item_count += 1
        i.gross_fen += item.signed_fen
        i.issuer_fee_fen += fees.issuer_fen
        return fees

    def _account_load(self, item: ClearedItem, payer: str) -> None:
        """An EC load from another account: the payer's card spent the amount, the EC card got it back
        (no fee: :data:`~citycard.settlement.fees.FEE_KINDS` has no such kind)."""
        for bank, signed in ((item.issuer_bank, item.signed_fen), (payer, -item.signed_fen)):
            i = self.issuers.get(bank)
            if i is None:
                i = self.issuers[bank] = IssuerTotals(bank)
            i.item_count += 1
            i.gross_fen += signed

    def add_all(self, items: Iterable[ClearedItem]) -> DayTotals:
        for item in items:
            self.add(item)
        return self

    @property
    def gross_fen(self) -> int:
        return sum(i.gross_fen for i in self.issuers.values())

    @property
    def network_fee_fen(self) -> int:
        return sum(m.network_fee_fen for m in self.merchants.values())

    def positions(self) -> list[Position]:
        """Every bank's net position (sorted by code), then the center's; they sum to zero."""
        banks = sorted({*self.issuers, *(b for b, _ in self.merchants)})
        rows = []
        for bank in banks:
            issued = self.issuers.get(bank, IssuerTotals(bank))
            mine = [m for (b, _), m in self.merchants.items() if b == bank]
            rows.append(
                Position(
                    bank,
                    issued.gross_fen,
                    issued.issuer_fee_fen,
                    sum(m.net_fen for m in mine),
                    sum(m.acquirer_fee_fen for m in mine),
                    0,
                )
            )
        rows.append(Position(CENTER, 0, 0, 0, 0, self.network_fee_fen))
        assert sum(p.net_fen for p in rows) == 0, "net positions sum to zero"
        return rows


# --- accounts and postings ----------------------------------------------------------------------------


class Account:
    """Ledger ``code`` of the accounts settlement keeps (beside the issuer's ``BankAccount`` 10-22)."""

    NETWORK_SETTLEMENT = 21  # the issuer's: what its cards spent, owed to the network (issuer's code)
    INTERBANK = 23  # per bank: its position with the service center for the day (zero once settled)
    INTERCHANGE_INCOME = 24  # per bank: issuer fees earned on its cards
    ACQUIRING_INCOME = 25  # per bank: its share of the merchant discount
    MERCHANT_PAYOUTS = 26  # per bank: paid out to its merchants' own bank accounts
    MERCHANT_PAYABLE = 27  # per merchant, on its acquiring bank's books: owed to the merchant
    CENTER_SETTLEMENT = 30  # the service center's settlement account (zero once a day is settled)
    NETWORK_FEE_INCOME = 31  # the service center's network fees


ACCOUNT_NAMES = {
    Account.NETWORK_SETTLEMENT: "network settlement",
    Account.INTERBANK: "interbank clearing",
    Account.INTERCHANGE_INCOME: "issuer fee income",
    Account.ACQUIRING_INCOME: "acquiring fee income",
    Account.MERCHANT_PAYOUTS: "merchant payouts",
    Account.MERCHANT_PAYABLE: "merchant payable",
    Account.CENTER_SETTLEMENT: "center settlement",
    Account.NETWORK_FEE_INCOME: "network fee income",
}


@dataclass(frozen=True, slots=True, order=True)
class AccountKey:
    """An account settlement needs: its owner (a bank code, ``CENTER``, or a merchant id with its bank
    as ``BANK/MERCHANT``) and its code."""

    owner: str
    code: int


def merchant_owner(bank: str, merchant_id: str) -> str:
    return f"{bank}/{merchant_id}"


def required_accounts(totals: DayTotals) -> list[AccountKey]:
    """The accounts the day's postings need, other than the issuers' network settlement accounts."""
    keys = {AccountKey(CENTER, Account.CENTER_SETTLEMENT), AccountKey(CENTER, Account.NETWORK_FEE_INCOME)}
    for p in totals.positions()[:-1]:
        keys |= {
            AccountKey(p.participant, code)
            for code in (
                Account.INTERBANK,
                Account.INTERCHANGE_INCOME,
                Account.ACQUIRING_INCOME,
                Account.MERCHANT_PAYOUTS,
            )
        }
    keys |= {AccountKey(merchant_owner(b, m), Account.MERCHANT_PAYABLE) for b, m in totals.merchants}
    return sorted(keys)


def settlement_transfer_id(day: str, what: str) -> int:
    """The id of the settlement transfer ``what`` of ``day`` (1..MAX_ID): a rerun of the day offers the same
    ids, which the ledger answers ``exists``."""
    digest = hashlib.blake2b(f"settlement/{day}/{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % MAX_ID + 1


def _move(day: str, what: str, from_id: int, to_id: int, amount_fen: int, code: int) -> list[Transfer]:
    """``amount_fen`` (signed) from ``from_id`` (debited) to ``to_id`` (credited); reversed when negative,
    nothing when zero."""
    if amount_fen == 0:
        return []
    debit, credit = (from_id, to_id) if amount_fen > 0 else (to_id, from_id)
    return [Transfer(settlement_transfer_id(day, what), debit, credit, abs(amount_fen), code=code)]


def plan_postings(
    day: str, totals: DayTotals, ids: Mapping[AccountKey, int], network_settlement: Mapping[str, int]
) -> list[Transfer]:
    """The day's transfers, in a fixed order (docs/settlement.md, "Postings"):

    1. each issuer: its network settlement account → its issuer fee income (issuer fees) and → its
       interbank account (the rest of its cards' spending);
    2. each acquirer: its interbank account → each merchant's payable (gross less discount) and → its
       acquiring fee income (its share);
    3. each bank's interbank account ↔ the center's settlement account: the bank's net position (the
       interbank account is back to zero for the day);
    4. the center's settlement account → its network fee income (back to zero).
    """
    out: list[Transfer] = []
    for bank in sorted(totals.issuers):
        i = totals.issuers[bank]
        ns, interbank = network_settlement[bank], ids[AccountKey(bank, Account.INTERBANK)]
        fee_income = ids[AccountKey(bank, Account.INTERCHANGE_INCOME)]
        out += _move(day, f"issuer-fee/{bank}", ns, fee_income, i.issuer_fee_fen, Account.INTERCHANGE_INCOME)
        out += _move(day, f"issued/{bank}", ns, interbank, i.gross_fen - i.issuer_fee_fen, Account.INTERBANK)
    for bank, merchant in sorted(totals.merchants):
        m = totals.merchants[bank, merchant]
        payable = ids[AccountKey(merchant_owner(bank, merchant), Account.MERCHANT_PAYABLE)]
        interbank = ids[AccountKey(bank, Account.INTERBANK)]
        out += _move(
            day, f"merchant/{bank}/{merchant}", interbank, payable, m.net_fen, Account.MERCHANT_PAYABLE
        )
    center = ids[AccountKey(CENTER, Account.CENTER_SETTLEMENT)]
    for p in totals.positions()[:-1]:
        interbank = ids[AccountKey(p.participant, Account.INTERBANK)]
        income = ids[AccountKey(p.participant, Account.ACQUIRING_INCOME)]
        out += _move(
            day,
            f"acquirer-fee/{p.participant}",
            interbank,
            income,
            p.acquirer_fee_fen,
            Account.ACQUIRING_INCOME,
        )
        out += _move(day, f"net/{p.participant}", center, interbank, p.net_fen, Account.INTERBANK)
    fee_income = ids[AccountKey(CENTER, Account.NETWORK_FEE_INCOME)]
    out += _move(day, "network-fee", center, fee_income, totals.network_fee_fen, Account.NETWORK_FEE_INCOME)
    return out


@dataclass(frozen=True, slots=True)
class Payout:
    """A merchant's payout (T+1): everything its payable account holds once the day is posted, when that
    is positive (a negative balance — more refunds than sales — waits for later days)."""

    bank: str
    merchant_id: str
    day_net_fen: int
    balance_fen: int  # the payable's credit balance after the day's posting, before the payout
    payout_fen: int
    transfer: Transfer | None


def plan_payouts(
    day: str, totals: DayTotals, ids: Mapping[AccountKey, int], payable_balances: Mapping[int, int]
) -> list[Payout]:
    """One payout per merchant of the day (``payable_balances``: account id → credit balance after the
    day's postings)."""
    out = []
    for bank, merchant in sorted(totals.merchants):
        account = ids[AccountKey(merchant_owner(bank, merchant), Account.MERCHANT_PAYABLE)]
        balance = payable_balances[account]
        amount = max(balance, 0)
        moves = _move(
            day,
            f"payout/{bank}/{merchant}",
            account,
            ids[AccountKey(bank, Account.MERCHANT_PAYOUTS)],
            amount,
            Account.MERCHANT_PAYOUTS,
        )
        out.append(
            Payout(
                bank,
                merchant,
                totals.merchants[bank, merchant].net_fen,
                balance,
                amount,
                moves[0] if moves else None,
            )
        )
    return out
