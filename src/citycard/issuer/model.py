"""The issuing bank's domain values: banks, BIN ranges, card products, cardholders, cards, authorizations.

Pure values and checks, no I/O. Standards: PANs are ISO/IEC 7812-1 (issuer identification number, Luhn
check digit); resident identity numbers are GB 11643-1999 (18 characters: 6-digit region, 8-digit birth
date, 3-digit sequence, check character by ISO 7064 MOD 11-2); money is integer fen of CNY (ISO 4217 156).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from citycard.codec.pan import luhn_check_digit, mask_pan
from citycard.ledger.model import MAX_ID

__all__ = [
    "ACCOUNT_CODES",
    "CARD_TRANSITIONS",
    "CITIZEN_KEY_LABEL",
    "FIRST_INSTITUTION_ID",
    "ONLINE_PIN_TRY_LIMIT",
    "AlreadyExists",
    "Bank",
    "BankAccount",
    "BinOverlap",
    "BinRange",
    "Card",
    "CardAction",
    "CardRecord",
    "CardStateError",
    "CardStatus",
    "CardType",
    "Cardholder",
    "DenyListEntry",
    "DuplicateIssuance",
    "InstitutionIdTaken",
    "InvalidIdNumber",
    "IssuerError",
    "NoTransitFile",
    "NotFound",
    "PendingScript",
    "Product",
    "RecordState",
    "RegisteredTerminal",
    "TerminalStatus",
    "UnregisteredCardLoss",
    "bank_key_labels",
    "id_number_check_character",
    "institution_id_text",
    "luhn_check_digit",
    "mask_pan",
    "transfer_id",
    "validate_id_number",
]


class IssuerError(Exception):
    """A lifecycle or set-up command that cannot be carried out; the message says why (HTTP 4xx)."""


class NotFound(IssuerError):
    pass


class AlreadyExists(IssuerError):
    pass


class DuplicateIssuance(IssuerError):
    pass


class InstitutionIdTaken(IssuerError):
    """Another bank has the institution id already (field 32 must name one bank)."""


class BinOverlap(IssuerError):
    """A new BIN range that would share PANs with an assigned one (one BIN is a prefix of the other)."""


class CardStateError(IssuerError):
    """The card is not in a state that allows the command (closed, already lost, not yet refundable)."""


class UnregisteredCardLoss(IssuerError):
    """An unregistered card is like cash: its loss is the holder's loss."""

    def __init__(self, pan: str) -> None:
        super().__init__(
            f"card {mask_pan(pan)} is unregistered: like cash, its loss is the holder's loss; the bank "
            "cannot block it, refund its electronic cash balance or move it to another card"
        )


class NoTransitFile(IssuerError):
    """The card's chip has no transit file (SFI 21): it was personalised before the issuer's products carried
    one, so no concession can be written to it; a replacement or renewal card has the file."""

    def __init__(self, pan: str) -> None:
        super().__init__(
            f"card {mask_pan(pan)} has no transit file (personalised before cards carried one): "
            "replace or renew it to give it a concession"
        )


class InvalidIdNumber(IssuerError, ValueError):
    """A resident identity number that is not 18 characters or fails its GB 11643-1999 check."""


_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54}
    | {61, 62, 63, 64, 65, 71, 81, 82, 83}
)
"""First two digits of the GB/T 2260 administrative division codes: the provinces, autonomous regions and
municipalities, Taiwan (71), Hong Kong (81) and Macao (82), and 83 of the residence permits for Taiwan
residents (81, 82 and 83 since 2018)."""
_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
_ID_CHECK = "10X98765432"


def id_number_check_character(first17: str) -> str:
    """The check character of GB 11643-1999 §8 (ISO 7064:1983 MOD 11-2) over the first 17 digits."""
    assert len(first17) == 17 and first17.isdigit()
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def validate_id_number(text: str, *, today: date) -> str:
    """The normalised (upper-case ``X``) 18-character resident ID number, or :class:`InvalidIdNumber`:
    the region code must start with a province's code (GB/T 2260), the date of birth be a date not after
    ``today``, and the check character match."""
    value = text.strip().upper()
    if len(value) != 18 or not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise InvalidIdNumber("a resident ID number is 17 digits and a check character (digit or X)")
    if int(value[:2]) not in _PROVINCES:
        raise InvalidIdNumber(f"characters 1-6 ({value[:6]}) are not a region code (GB/T 2260)")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidIdNumber(f"characters 7-14 ({value[6:14]}) are not a date of birth") from None
    if born > today:
        raise InvalidIdNumber(f"characters 7-14 ({value[6:14]}): the date of birth is in the future")
    if id_number_check_character(value[:17]) != value[17]:
        raise InvalidIdNumber("the check character does not match (GB 11643-1999, ISO 7064 MOD 11-2)")
    return value


def bank_key_labels(bank_code: str) -> dict[str, str]:
    """HSM labels of a bank's keys, by role."""
    b = bank_code.lower()
    return {
        "imk_ac": f"{b}-imk-ac",
        "imk_smi": f"{b}-imk-smi",
        "imk_smc": f"{b}-imk-smc",
        "pvk": f"{b}-pvk",
        "zpk": f"{b}-zpk",
        "issuer_rsa": f"{b}-issuer-rsa",
        "deny_list": f"{b}-deny-list",
        "id_hash": f"{b}-id-hash",
        "pvk_ibm": f"{b}-pvk-3624",
        "pin_store": f"{b}-pin-store",
    }


def transfer_id(request_id: str, leg: int) -> int:
    """A ledger transfer id derived from the request id and the leg number (1..MAX_ID): a retry that
    slipped past the stored answer is still refused by the ledger as ``exists``."""
    digest = hashlib.blake2b(f"{request_id}/{leg}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % MAX_ID + 1


class BankAccount:
    """Ledger ``code`` of each kind of account a bank keeps (per card, or one per bank); plain ints."""

    CARD_DEPOSIT: Final = 10  # the holder's deposit account (credit-normal: the bank owes it)
    CARD_EC_FLOAT: Final = 11  # the EC balance on one card (credit-normal, limit = the EC balance limit)
    CASH: Final = 20  # counter cash (debit-normal asset)
    NETWORK_SETTLEMENT: Final = 21  # owed to acquirers through the network for approved purchases
    FEE_INCOME: Final = 22


ACCOUNT_CODES = {
    BankAccount.CARD_DEPOSIT: "card deposit",
    BankAccount.CARD_EC_FLOAT: "card EC float",
    BankAccount.CASH: "counter cash",
    BankAccount.NETWORK_SETTLEMENT: "network settlement",
    BankAccount.FEE_INCOME: "fee income",
}


@dataclass(frozen=True, slots=True)
class Bank:
    code: str  # "ICBC"
    name: str
    cash_account_id: int
    settlement_account_id: int
    fee_account_id: int
    institution_id: str  # 8 digits, unique: the bank in ISO 8583 field 32 (acquirer) and the switch's routes


FIRST_INSTITUTION_ID = 1_000_001
"""Banks added without an institution id get the next free of 01000001, 01000002, … (CUP style: 8 digits)."""


def institution_id_text(number: int) -> str:
    """An institution id as its 8 digits (``1000001`` → ``"01000001"``)."""
    assert 0 <= number < 10**8, number
    return f"{number:08d}"


@dataclass(frozen=True, slots=True)
class BinRange:
    bin: str  # 6 to 8 digits
    bank_code: str
    pan_length: int = 19
    next_serial: int = 1

    def pan(self, serial: int) -> str:
        body_length = self.pan_length - 1 - len(self.bin)
        assert 0 < serial < 10**body_length, serial
        body = self.bin + str(serial).rjust(body_length, "0")
        return body + luhn_check_digit(body)


class CardType(enum.StrEnum):
    """The product's kind of account, which decides the interbank fees' caps (发改价格〔2016〕557号: a debit
    card's issuer fee is capped per transaction, a credit card's is not; ``docs/settlement.md``)."""

    DEBIT = "debit"  # 借记卡 (the programme's cards: a deposit account, with an EC purse)
    CREDIT = "credit"  # 贷记卡


@dataclass(frozen=True, slots=True)
class Product:
    code: str  # "debit-ec"
    bank_code: str
    name: str
    bin: str
    registered: bool = True
    ec_balance_limit_fen: int = 100_000  # 9F77: 1000 yuan
    ec_single_limit_fen: int = 100_000  # 9F78
    ec_reset_threshold_fen: int = 0  # 9F6D
    issue_fee_fen: int = 0
    annual_fee_fen: int = 0
    validity_years: int = 10
    card_type: CardType = CardType.DEBIT  # 0023


CITIZEN_KEY_LABEL = "center-citizen-key"
"""HSM label of the service center's HMAC key over resident ID numbers: the same citizen gets the same
``Cardholder.citizen_key`` at every bank (a bank's own ``id_hash`` differs from bank to bank)."""


@dataclass(frozen=True, slots=True)
class Cardholder:
    """A registered holder at one bank. ``id_hash``: the bank's HMAC of the resident ID number (the bank
    finds its holder by it); ``citizen_key``: the service center's HMAC of it, the same at every bank (the
    citizen's public-service records are keyed by it). A holder registered before migration 0017 keeps its
    ``id_hash`` as ``citizen_key`` (what the records were keyed by then)."""

    id: int
    name: str
    id_hash: str
    id_last4: str
    phone: str
    deposit_account_id: int
    citizen_key: str


class CardStatus(enum.StrEnum):
    ISSUED = "issued"  # personalised, not yet activated
    ACTIVE = "active"
    BLOCKED = "blocked"  # application blocked by issuer script
    LOST = "lost"  # reported lost: on the deny list
    REPLACED = "replaced"
    CLOSED = "closed"
    EXPIRED = "expired"


class CardAction(enum.StrEnum):
    """What the bank does to a card at the counter or in a job; the value completes "cannot …"."""

    ACTIVATE = "activate it"
    SET_PIN = "set its PIN"
    BLOCK = "block it"
    UNBLOCK = "unblock it"
    UNBLOCK_PIN = "unblock its PIN"
    REPORT_LOST = "report it lost"
    REPLACE = "replace it"
    RENEW = "renew it"
    REFUND_EC = "refund its EC balance"
    CLOSE = "close it"
    EXPIRE = "expire it"
    SET_CONCESSION = "change its transit concession"


_S = CardStatus
CARD_TRANSITIONS: dict[CardAction, tuple[frozenset[CardStatus], CardStatus | None]] = {
    CardAction.ACTIVATE: (frozenset({_S.ISSUED}), _S.ACTIVE),
    CardAction.SET_PIN: (frozenset({_S.ISSUED, _S.ACTIVE, _S.BLOCKED, _S.LOST}), None),
    CardAction.BLOCK: (frozenset({_S.ACTIVE}), None),  # BLOCKED when the card runs the script
    CardAction.UNBLOCK: (frozenset({_S.BLOCKED, _S.ACTIVE}), None),  # ACTIVE when it runs the script
    CardAction.UNBLOCK_PIN: (frozenset({_S.ACTIVE, _S.BLOCKED}), None),
    CardAction.REPORT_LOST: (frozenset({_S.ISSUED, _S.ACTIVE, _S.BLOCKED}), _S.LOST),
    CardAction.REPLACE: (frozenset({_S.ISSUED, _S.ACTIVE, _S.BLOCKED, _S.LOST, _S.EXPIRED}), _S.REPLACED),
    CardAction.RENEW: (frozenset({_S.ISSUED, _S.ACTIVE, _S.EXPIRED}), _S.EXPIRED),
    CardAction.REFUND_EC: (frozenset({_S.LOST, _S.CLOSED}), None),
    CardAction.CLOSE: (frozenset({_S.ISSUED, _S.ACTIVE, _S.BLOCKED, _S.EXPIRED}), _S.CLOSED),
    CardAction.EXPIRE: (frozenset({_S.ISSUED, _S.ACTIVE, _S.BLOCKED}), _S.EXPIRED),
    CardAction.SET_CONCESSION: (frozenset({_S.ISSUED, _S.ACTIVE, _S.BLOCKED}), None),  # by script
}
"""Every status change the bank makes, in one table (h11 style): action → (the statuses it is allowed
from, the status it leads to; None: the status stays). A lost card that is replaced stays LOST (the loss
is what its refund waits on); the scripts' own changes (BLOCKED, ACTIVE) happen when the card runs them
(``decision.plan_scripts``)."""
del _S


class PendingScript(enum.StrEnum):
    """An application block or unblock the issuer sends by script at the card's next online contact."""

    BLOCK = "block"  # APPLICATION BLOCK (84 1E 00 00)
    UNBLOCK = "unblock"  # APPLICATION UNBLOCK (84 18 00 00)


class RecordState(enum.StrEnum):
    """Where a record the issuer keeps on the card stands (:class:`CardRecord`)."""

    PENDING = "pending"  # to be written by script at the card's next online contact
    SENT = "sent"  # sent by script; the card's next ARQC says whether it applied it
    WRITTEN = "written"  # on the chip: the card confirmed it (or it was personalised so)


@dataclass(frozen=True, slots=True)
class CardRecord:
    """A record of a proprietary file on the card that the issuer writes by issuer script (UPDATE RECORD
    under secure messaging) at the next online contact: ``sfi``, ``record``, its bytes, and whether it is
    pending, sent (in the answer to the ARQC with ATC ``sent_atc``, among ``sent_count`` script commands)
    or written. ``version`` is the writer's own version of the record (a change made after it was read
    is not overwritten)."""

    sfi: int
    record: int
    data: bytes
    state: RecordState
    version: int
    sent_atc: int | None = None
    sent_count: int = 0

    def __post_init__(self) -> None:
        assert 1 <= self.sfi <= 30 and 1 <= self.record <= 254 and isinstance(self.state, RecordState)
        assert (self.state is RecordState.SENT) == (self.sent_atc is not None)


@dataclass(frozen=True, slots=True)
class Card:
    pan: str
    psn: str
    bank_code: str
    product_code: str
    holder_id: int | None
    status: CardStatus
    expiry: str  # YYMM
    ec_float_account_id: int
    deposit_account_id: int | None
    issued_at_ns: int
    highest_atc: int = -1
    pvv: str | None = field(default=None, repr=False)  # Visa PVV of a PIN set before offsets: never checked
    pvki: int = 1
    pin_offset: str | None = field(default=None, repr=False)  # IBM 3624 offset: verifies the whole PIN
    online_pin_failures: int = 0  # wrong online PINs in a row; at ONLINE_PIN_TRY_LIMIT: 75 until re-set
    pending_pin_change: bytes | None = field(default=None, repr=False)  # new PIN for the chip, see below
    pending_script: PendingScript | None = None  # sent at the next online contact
    pending_ec_credit_fen: int = 0  # moved from a predecessor card, delivered by PUT DATA 9F79
    pending_pin_unblock: bool = False  # PIN CHANGE/UNBLOCK P2=00 (reset the chip's PIN tries) to send
    records_pending: bool = False  # a CardRecord of the card is pending or sent (not yet confirmed)
    lost_at_ns: int | None = None
    offline_cleared_until_ns: int = 0  # clearing has settled this card's offline transactions until then
    replaced_by: str | None = None
    closed_at_ns: int | None = None

    @property
    def registered(self) -> bool:
        return self.holder_id is not None

    def allows(self, action: CardAction) -> bool:
        """Whether the card's status allows ``action`` (:data:`CARD_TRANSITIONS`)."""
        return self.status in CARD_TRANSITIONS[action][0]

    def require(self, action: CardAction) -> None:
        """:class:`CardStateError` ("card … is lost: cannot close it") unless the status allows ``action``."""
        if not self.allows(action):
            raise CardStateError(f"card {mask_pan(self.pan)} is {self.status}: cannot {action}")

    def after(self, action: CardAction) -> CardStatus:
        """The status ``action`` leads to (checked first with :meth:`require`)."""
        self.require(action)
        return CARD_TRANSITIONS[action][1] or self.status


ONLINE_PIN_TRY_LIMIT = 3
"""Wrong online PINs in a row after which the issuer answers 75 (PIN tries exceeded) until the PIN is re-set;
a right PIN before that resets the count.

``Card.pending_pin_change``: a PIN set by the bank travels to the chip by PIN CHANGE/UNBLOCK script at the
card's next online contact. Until then it is kept as an ISO 9564 format-0 block under the bank's PIN storage
key — an HSM key that never leaves the HSM and is not the zone key shared with the network — and dropped
once the script is sent; the PIN itself is never in clear outside the HSM."""


class TerminalStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"  # withdrawn, lost or stolen: its authorizations are refused


@dataclass(frozen=True, slots=True)
class RegisteredTerminal:
    """A terminal as the issuer's check sees it: ISO 8583 field 41 (card acceptor terminal ID), the merchant
    (field 42) it belongs to and its status. The Citizen Card Service Center registers terminals
    (``citycard.center``); the issuer reads the same registry through its own port (``ports.Terminals``)."""

    terminal_id: str
    merchant_id: str
    status: TerminalStatus = TerminalStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class DenyListEntry:
    bank_code: str
    pan: str
    psn: str
    reason: str  # "lost", "closed", "blocked", "replaced"
    added_ns: int
    removed_ns: int | None = None


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """What issuance hands back for one card: the record, and where its image and keys went."""

    card: Card
    image_ref: str = ""
    extra: dict[str, str] = field(default_factory=dict)
