"""Commands the issuer's handlers accept, and the online authorization request and response.

The authorization messages are plain values: the fields an ISO 8583 0100/0200/0400 message carries to
the issuer (PAN field 2, amount field 4, STAN field 11, terminal field 41, merchant field 42, PIN block
field 52, chip data field 55 as BER-TLV) and what it answers (response code field 39, authorization code
field 38, chip data field 55 with ``91`` issuer authentication data and ``72`` issuer scripts). The network
codec (a later issue) maps them onto the wire. A malformed request raises :class:`MalformedRequest` when
built; every business outcome is a response code.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Final

from citycard.codec.apdu import CommandApdu, Ins
from citycard.codec.tlv import encode, encode_many

__all__ = [
    "CONCESSION_CATEGORIES",
    "EC_LOADS",
    "ActivateCard",
    "AddBank",
    "AddBinRange",
    "AddProduct",
    "AuthorizationKind",
    "AuthorizationRequest",
    "AuthorizationResponse",
    "BlockCard",
    "CardCommand",
    "ChargeAnnualFees",
    "CheckPin",
    "CloseCard",
    "Deposit",
    "ExpireCards",
    "ExportDenyList",
    "IssueCards",
    "LoadEcFromAccount",
    "MalformedRequest",
    "RecordOfflineClearing",
    "RefundEcBalance",
    "RefundTarget",
    "RenewCard",
    "ReplaceCard",
    "ReportLost",
    "RevokeConcession",
    "SetConcession",
    "SetPin",
    "UnblockCard",
    "UnblockPin",
    "check_amount",
    "check_phone",
]

MAX_AMOUNT_FEN = 10**12  # n12 on the card and in field 4


class MalformedRequest(ValueError):
    """A command or request that cannot be processed at all; ``field`` says where (ISO 8583 code 30)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_amount(value: object, field: str = "amount_fen", *, allow_zero: bool = False) -> int:
    """A positive whole number of fen (an ``int``, not a float, a bool or a string)."""
    if type(value) is not int:
        raise MalformedRequest(field, f"must be a whole number of fen, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value >= MAX_AMOUNT_FEN:
        raise MalformedRequest(field, f"must be a positive whole number of fen below {MAX_AMOUNT_FEN}")
    return value


def check_phone(text: str) -> str:
    """``text`` if it is a mainland phone number (:data:`_PHONE`), else :class:`MalformedRequest`."""
    if not isinstance(text, str) or not _PHONE.match(re.sub(r"[ -]", "", text)):
        raise MalformedRequest(
            "phone", f"{text!r} is not a phone number (a mobile 1xxxxxxxxxx or 0 area code number)"
        )
    return text


def _check_digits(value: str, field: str, lengths: range) -> None:
    if not isinstance(value, str) or not value.isdigit() or len(value) not in lengths:
        raise MalformedRequest(field, f"must be {lengths.start}-{lengths.stop - 1} decimal digits")


_BANK_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")
_PHONE = re.compile(r"^(?:\+?86)?(?:1[3-9][0-9]{9}|0[1-9][0-9]{8,10})$")
"""A mainland phone number (country code 86, ITU-T E.164): an 11-digit mobile number 13x-19x, or a fixed
line with its trunk prefix 0, area code and local number (10 to 12 digits in all); spaces and hyphens
between the groups are allowed."""
_PERIOD = re.compile(r"^(19|20)[0-9]{2}(-(0[1-9]|1[0-2]))?$")


# --- set-up ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddBank:
    code: str
    name: str
    institution_id: str | None = None
    """8 digits (ISO 8583 field 32, CUP style, e.g. ``01020000``), unique; None: the next free of
    ``01000001``, ``01000002``, …"""

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _BANK_CODE.match(self.code):
            raise MalformedRequest("code", "a bank code is 2-8 upper-case letters or digits")
        if self.institution_id is not None:
            _check_digits(self.institution_id, "institution_id", range(8, 9))


@dataclass(frozen=True)
class AddBinRange:
    bank_code: str
    bin: str
    pan_length: int = 19

    def __post_init__(self) -> None:
        valid_bin = isinstance(self.bin, str) and self.bin.isdigit() and 6 <= len(self.bin) <= 8
        if not valid_bin or type(self.pan_length) is not int or self.pan_length not in range(16, 20):
            raise MalformedRequest("bin", "a BIN is 6-8 digits and a PAN 16-19 digits long")


@dataclass(frozen=True)
class AddProduct:
    bank_code: str
    code: str
    name: str
    bin: str
    registered: bool = True
    ec_balance_limit_fen: int = 100_000
    ec_single_limit_fen: int = 100_000
    ec_reset_threshold_fen: int = 0
    issue_fee_fen: int = 0
    annual_fee_fen: int = 0
    validity_years: int = 10
    card_type: str = "debit"  # CardType: debit | credit


def _check_text(value: object, field: str, limit: int) -> None:
    """1 to ``limit`` printable ASCII characters (ISO 8583 ans)."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= limit
        or not value.isascii()
        or not value.isprintable()
    ):
        raise MalformedRequest(field, f"must be 1 to {limit} printable ASCII characters")


# --- issuance and lifecycle -----------------------------------------------------------------------------
@dataclass(frozen=True)
class IssueCards:
    bank_code: str
    product_code: str
    count: int = 1
    holder_name: str | None = None
    id_number: str | None = None
    phone: str = ""
    psn: str = "01"
    pin_block: bytes | None = field(default=None, repr=False)
    """The PIN the holder chose at the counter, for one card: ISO 9564 format 1 (the card has no PAN yet)
    under the bank's zone PIN key. The chip is personalised with it and its offset kept; not in repr."""
    concession: str | None = None
    """The registered holder's transit concession category (:data:`CONCESSION_CATEGORIES`), written in the
    card's transit file at personalisation, valid until ``concession_until`` (inclusive)."""
    concession_until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.concession is not None or self.concession_until is not None:
            if self.holder_name is None:
                raise MalformedRequest("concession", "only a registered holder has a concession")
            _check_concession(self.concession, self.concession_until)
        if type(self.count) is not int or not 1 <= self.count <= 100_000:
            raise MalformedRequest("count", "must be 1 to 100000")
        if self.pin_block is not None and (len(self.pin_block) != 8 or self.count != 1):
            raise MalformedRequest("pin_block", "a PIN block is 8 bytes, for one card")
        if self.count > 1 and self.holder_name is not None:
            raise MalformedRequest("count", "a registered card is issued one at a time")
        if (self.holder_name is None) != (self.id_number is None):
            raise MalformedRequest("holder", "a registered card needs both the holder's name and ID number")
        if self.phone:
            check_phone(self.phone)


@dataclass(frozen=True)
class CardCommand:
    """A lifecycle command about one card, named by its PAN; each subclass is one command."""

    pan: str


class ActivateCard(CardCommand):
    """``ISSUED`` → ``ACTIVE``."""


@dataclass(frozen=True)
class SetPin:
    pan: str
    pin_block: bytes = field(repr=False)  # ISO 9564 format 0, under the bank's zone PIN key; not in repr
    pvki: int = 1


@dataclass(frozen=True)
class Deposit:
    """Cash paid into a registered card's deposit account at the counter."""

    pan: str
    amount_fen: int
    request_id: str

    def __post_init__(self) -> None:
        check_amount(self.amount_fen)


@dataclass(frozen=True)
class LoadEcFromAccount:
    """Move money from a registered card's deposit account into its EC balance (圈存 away from a terminal,
    e.g. self-service on the web): the EC float is credited now and the chip gets the new balance by
    ``PUT DATA 9F79`` at its next online contact (``pending_ec_credit_fen``). Idempotent by request id."""

    pan: str
    amount_fen: int
    request_id: str

    def __post_init__(self) -> None:
        check_amount(self.amount_fen)
        if not isinstance(self.request_id, str) or not 1 <= len(self.request_id) <= 64:
            raise MalformedRequest("request_id", "must be 1 to 64 characters")


@dataclass(frozen=True)
class CheckPin:
    """Whether ``pin`` is the card's PIN, checked as the issuer checks an online PIN (the PIN enciphered
    under the bank's zone PIN key inside the HSM at once, as a PIN pad would, then verified against the card's
    IBM 3624 offset); a wrong PIN counts towards :data:`~citycard.issuer.model.ONLINE_PIN_TRY_LIMIT` like an
    online one. The PIN is never in repr."""

    pan: str
    pin: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.pin, str) or not self.pin.isdigit() or not 4 <= len(self.pin) <= 12:
            raise MalformedRequest("pin", "a PIN is 4 to 12 digits")


@dataclass(frozen=True)
class ReportLost:
    pan: str
    id_number: str | None = None  # the holder proves who they are (checked against the stored hash)


class RefundTarget(enum.StrEnum):
    """Where a lost or closed card's EC balance goes."""

    ACCOUNT = "account"  # the holder's deposit account
    REPLACEMENT = "replacement"  # the replacement card's EC balance (PUT DATA 9F79 at its next contact)
    CASH = "cash"  # an unregistered card returned at a counter

    @classmethod
    def parse(cls, text: str) -> RefundTarget:
        """The target named ``text``, or :class:`MalformedRequest` naming the field ``to``."""
        try:
            return cls(text)
        except ValueError:
            raise MalformedRequest(
                "to", "the EC balance goes to 'account', 'replacement' or 'cash'"
            ) from None


@dataclass(frozen=True)
class RefundEcBalance:
    """After the cooling period: move a lost or closed card's EC balance elsewhere."""

    pan: str
    to: RefundTarget = RefundTarget.ACCOUNT

    def __post_init__(self) -> None:
        object.__setattr__(self, "to", RefundTarget.parse(self.to))  # a plain string is accepted


class ReplaceCard(CardCommand):
    """A new card (new PAN) for the same holder and deposit account."""


class RenewCard(CardCommand):
    """The successor of an expiring card."""


class CloseCard(CardCommand):
    """Close the card (denied at once; EC balance refunded after the cooling period)."""


class UnblockPin(CardCommand):
    """Reset the chip's offline PIN try counter (PIN CHANGE/UNBLOCK, P2 ``00``: the PIN is kept) by issuer
    script at the card's next online contact, and the online PIN try count at once (the holder proved who
    they are at the counter)."""


CONCESSION_CATEGORIES = ("elderly", "student", "disabled")
"""The registered holder's transit concession categories (the concession record's byte 1: 01, 02, 03;
docs/transit.md)."""


def _check_concession(category: str | None, until: dt.date | None) -> None:
    if category not in CONCESSION_CATEGORIES:
        raise MalformedRequest("category", f"{category!r}: one of {', '.join(CONCESSION_CATEGORIES)}")
    if type(until) is not dt.date:
        raise MalformedRequest("valid_until", "the concession's last valid day, a date")
    if not dt.date(2000, 1, 1) <= until <= dt.date(9999, 12, 31):
        raise MalformedRequest("valid_until", "a date from 2000-01-01")


@dataclass(frozen=True)
class SetConcession:
    """Grant or renew a registered holder's transit concession on their card: the concession record of the
    card's transit file (SFI 21 record 1) rewritten by issuer script UPDATE RECORD at the card's next online
    contact (docs/transit.md, "Concessions from the issuer")."""

    pan: str
    category: str
    valid_until: dt.date

    def __post_init__(self) -> None:
        _check_concession(self.category, self.valid_until)


class RevokeConcession(CardCommand):
    """Withdraw the card's transit concession: the concession record written as all zeros by script at the
    card's next online contact."""


class BlockCard(CardCommand):
    """APPLICATION BLOCK by issuer script at the card's next online contact (denied at once)."""


class UnblockCard(CardCommand):
    """APPLICATION UNBLOCK by issuer script at the card's next online contact."""


@dataclass(frozen=True)
class ChargeAnnualFees:
    """Debit each live registered card's annual fee (its product's) from the holder's account, once per
    ``period`` (e.g. ``"2026"``); a card whose account cannot pay is reported, not charged."""

    bank_code: str
    period: str

    def __post_init__(self) -> None:
        if not isinstance(self.period, str) or not _PERIOD.match(self.period):
            raise MalformedRequest("period", f"{self.period!r} is not a year (2026) or a month (2026-07)")


@dataclass(frozen=True)
class ExpireCards:
    """Mark the bank's cards whose expiry month has passed as expired (renew them with ``RenewCard``)."""

    bank_code: str


@dataclass(frozen=True)
class ExportDenyList:
    """The bank's deny list, signed, for terminals."""

    bank_code: str


@dataclass(frozen=True)
class RecordOfflineClearing:
    """Clearing reports that the card's offline (EC) transactions up to ``cleared_until_ns`` are settled."""

    pan: str
    cleared_until_ns: int


# --- online authorization -------------------------------------------------------------------------------
class AuthorizationKind(enum.StrEnum):
    PURCHASE = "purchase"  # against the deposit account
    BALANCE_INQUIRY = "balance_inquiry"
    EC_LOAD = "ec_load"  # 圈存: deposit account -> EC wallet, answered with PUT DATA 9F79
    EC_CASH_LOAD = "ec_cash_load"  # cash at a service counter -> EC wallet
    # 非指定账户圈存 (0200 620000/91/47), two legs that the switch sends in turn (docs/network.md):
    EC_LOAD_OTHER_DEBIT = "ec_load_other_debit"  # the other account's leg: PIN, deposit -> settlement
    EC_LOAD_OTHER = "ec_load_other"  # the EC card's leg: settlement -> EC wallet, PUT DATA 9F79
    REVERSAL = "reversal"  # 0400/0420: the original's transfers mirrored (or a tombstone if it is unknown)
    VOID = (
        "void"  # 消费撤销: a purchase of the same day cancelled, card present (ARQC), the original's amount
    )
    REFUND = "refund"  # 退货 advice (0220): part of a purchase credited back, card not present

    @property
    def follows_up(self) -> bool:
        """A follow-up of an earlier request (named by ``original_request_id``)."""
        return self in _FOLLOW_UPS

    @property
    def loads_ec(self) -> bool:
        """An EC load — from the account, in cash or from another account: the money reaches the chip by the
        issuer's script PUT DATA 9F79 (template 72), so its reversal stands down when the card's script
        results (9F5B) say the chip ran it."""
        return self in EC_LOADS


_FOLLOW_UPS = frozenset({AuthorizationKind.REVERSAL, AuthorizationKind.VOID, AuthorizationKind.REFUND})
EC_LOADS: Final = frozenset(
    {AuthorizationKind.EC_LOAD, AuthorizationKind.EC_CASH_LOAD, AuthorizationKind.EC_LOAD_OTHER}
)
"""The kinds of :attr:`AuthorizationKind.loads_ec` (a stored kind, a plain string, is found in it too)."""


@dataclass(frozen=True)
class AuthorizationRequest:
    request_id: str  # idempotency key: the acquirer's retries carry the same id
    kind: AuthorizationKind
    pan: str
    psn: str
    amount_fen: int
    field55: bytes  # chip data: BER-TLV of the ARQC and the data it covers
    stan: str = "000000"
    terminal_id: str = ""
    merchant_id: str = ""
    pin_block: bytes | None = field(default=None, repr=False)  # field 52, under the zone PIN key; not in repr
    original_request_id: str | None = None  # for a reversal, a void, a refund
    service_ref: str | None = None  # a purchase at a public-service counter: field 48 as text (HR-…)

    def __post_init__(self) -> None:
        if not isinstance(self.request_id, str) or not 1 <= len(self.request_id) <= 64:
            raise MalformedRequest("request_id", "must be 1 to 64 characters")
        try:
            object.__setattr__(self, "kind", AuthorizationKind(self.kind))  # a plain string is accepted
        except ValueError:
            raise MalformedRequest("kind", f"unknown kind {self.kind!r}") from None
        _check_digits(self.pan, "pan", range(12, 20))
        _check_digits(self.psn, "psn", range(2, 3))
        zero_ok = self.kind in (AuthorizationKind.BALANCE_INQUIRY, AuthorizationKind.REVERSAL)
        check_amount(self.amount_fen, allow_zero=zero_ok)
        if not isinstance(self.field55, bytes) or len(self.field55) > 999:
            raise MalformedRequest("field55", "must be at most 999 bytes")
        _check_digits(self.stan, "stan", range(6, 7))
        for name, limit in (
            ("terminal_id", 8),
            ("merchant_id", 15),
        ):  # ISO 8583 fields 41 (ans 8), 42 (ans 15)
            value = getattr(self, name)
            if (
                not isinstance(value, str)
                or len(value) > limit
                or not value.isascii()
                or not value.isprintable()
            ):
                raise MalformedRequest(name, f"must be at most {limit} printable ASCII characters")
        if self.service_ref is not None and (
            self.kind != AuthorizationKind.PURCHASE
            or not isinstance(self.service_ref, str)
            or not 4 <= len(self.service_ref) <= 32
            or not self.service_ref.isascii()
            or not self.service_ref.isprintable()
        ):
            raise MalformedRequest("service_ref", "a purchase's public-service reference: 4-32 characters")
        if self.pin_block is not None and len(self.pin_block) != 8:
            raise MalformedRequest("pin_block", "must be 8 bytes")
        if self.kind.follows_up and (
            not isinstance(self.original_request_id, str) or not 1 <= len(self.original_request_id) <= 64
        ):
            raise MalformedRequest("original_request_id", f"a {self.kind} names the request it follows up")


@dataclass(frozen=True)
class AuthorizationResponse:
    request_id: str
    response_code: str  # ISO 8583 field 39: 00 approved, 05, 13, 14, 41, 51, 54, 55, 57, 61, 62, 94 ...
    reason: str = ""
    authorization_code: str = ""
    arpc: bytes = b""
    arc: bytes = b""
    scripts: tuple[bytes, ...] = ()
    balance_fen: int | None = None  # deposit available balance (balance inquiry, purchase)
    ec_balance_fen: int | None = None  # the issuer's EC balance after this transaction
    flags: tuple[str, ...] = field(default=())

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    @property
    def field55(self) -> bytes:
        """Response chip data: ``91`` ARPC ‖ ARC, then a template per script (``9F18`` id, ``86``): ``71``
        (run before the second GENERATE AC) for APPLICATION UNBLOCK, so that the card, unblocked, can
        approve the transaction that carried it; ``72`` (after it) for the others (EMV 4.3 Book 3 §10.10)."""
        out = b""
        if self.arpc:
            out += encode("91", self.arpc + self.arc)
        for i, command in enumerate(self.scripts):
            template = "71" if CommandApdu.parse(command).ins == Ins.APPLICATION_UNBLOCK else "72"
            out += encode(template, encode_many([("9F18", i.to_bytes(4, "big")), ("86", command)]))
        return out
