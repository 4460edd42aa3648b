"""Events the kernel emits and answers it consumes (the sans-I/O pattern of h11).

The kernel never touches a card, a clock, a network or a PIN pad. It says what it needs next —
:class:`SendApdu`, :class:`ChooseApplication`, :class:`RequestPin`, :class:`GoOnline` — and the caller
answers with :class:`CardResponse` (or :class:`CardRemoved`), an application index, :class:`PinEntry`
or :class:`OnlineResponse`. The last event is always an :class:`Outcome` (EMV 4.3 Book 3 §10; EMV Book A
"outcomes" for contactless: approved, declined, online request, try another interface, end application).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Answer",
    "ApplicationChoice",
    "Candidate",
    "CardRemoved",
    "CardResponse",
    "ChooseApplication",
    "Event",
    "GoOnline",
    "LogEntry",
    "OnlineRequest",
    "OnlineResponse",
    "OnlineUnavailable",
    "Outcome",
    "OutcomeKind",
    "PinEntry",
    "RequestPin",
    "SendApdu",
]


class OnlineUnavailable(Exception):
    """Raised by an online callable that cannot get the issuer's answer (no link, nothing sent, a message it
    cannot build from the card's data): the kernel goes on unable to go online (EMV Book 3 §10.8). Any
    other exception from it is a bug, and the runner lets it out rather than turn it into a decision."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One application on the candidate list (Book 1 §12.3)."""

    aid: bytes
    label: str
    priority: int  # 1 highest … 15 lowest; 0 = none given (ranked last)
    needs_confirmation: bool


@dataclass(frozen=True, slots=True)
class SendApdu:
    """Send this command APDU to the card; answer with :class:`CardResponse` or :class:`CardRemoved`."""

    apdu: bytes
    purpose: str = ""  # e.g. "GENERATE AC 1", for traces only: nothing steers on it
    cryptogram: bool = False
    """The card answers this command with an application cryptogram, and may take money from its offline
    balance in doing so: a GENERATE AC, or a qPBOC card's GET PROCESSING OPTIONS. A terminal journals the
    transaction from the first such command on (written ahead of it), so that a tear after it is recovered
    and an offline approval uploaded, never lost."""


@dataclass(frozen=True, slots=True)
class ChooseApplication:
    """Cardholder confirmation / choice (Book 1 §12.4); answer with :class:`ApplicationChoice`."""

    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class RequestPin:
    """Ask the cardholder for a PIN; answer with :class:`PinEntry` (``pin=None`` means bypassed).

    ``wrong_pin``: the card has just rejected the PIN entered before (VERIFY ``63Cx``) and ``tries_left``
    says how many tries remain. A PIN pad asks again or cancels; it never offers the same value twice (the
    kernel does not send a rejected value again)."""

    kind: Literal["offline_plaintext", "offline_enciphered", "online"]
    amount_fen: int
    tries_left: int | None = None
    wrong_pin: bool = False


@dataclass(frozen=True, slots=True)
class OnlineRequest:
    """What the acquirer needs for an authorization (ISO 8583 fields 2, 35, 52, 55 …)."""

    pan: str
    psn: str
    track2: bytes  # tag 57 value
    amount_fen: int
    transaction_type: int  # 9C
    field55: bytes  # BER-TLV, EMV data elements for the authorization request
    pin_block: bytes | None  # ISO 9564 format 0, enciphered under the terminal PIN key
    expiry: str  # YYMM


@dataclass(frozen=True, slots=True)
class GoOnline:
    """Send the authorization request; answer with :class:`OnlineResponse`."""

    request: OnlineRequest


@dataclass(frozen=True, slots=True)
class CardResponse:
    """The card's response APDU (data ‖ SW1 SW2)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CardRemoved:
    """The transport failed: card pulled from the field or the slot, reader gone."""

    reason: str = "card removed"


@dataclass(frozen=True, slots=True)
class ApplicationChoice:
    index: int | None  # None: cardholder cancelled


@dataclass(frozen=True, slots=True)
class PinEntry:
    pin: str | None  # None: PIN bypassed / not entered
    cancel: bool = False  # the cardholder cancelled: the transaction ends (terminated)


@dataclass(frozen=True, slots=True)
class OnlineResponse:
    """The issuer's answer. ``unable_to_go_online`` when there was none (Book 3 §10.9, default action)."""

    response_code: str = ""  # field 39 / tag 8A, two ASCII characters, "00" approved
    issuer_authentication_data: bytes = b""  # tag 91
    authorization_code: bytes = b""  # tag 89
    scripts: bytes = b""  # BER-TLV: templates 71 and 72
    unable_to_go_online: bool = False


class OutcomeKind(enum.Enum):
    APPROVED_OFFLINE = "approved offline"
    APPROVED_ONLINE = "approved online"
    DECLINED_OFFLINE = "declined offline"
    DECLINED_ONLINE = "declined online"
    TERMINATED = "terminated"
    TRY_ANOTHER_INTERFACE = "try another interface"
    COMPLETED = "completed"  # inquiries (EC balance, logs)

    @property
    def approved(self) -> bool:
        return self in (OutcomeKind.APPROVED_OFFLINE, OutcomeKind.APPROVED_ONLINE)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One transaction-log or load-log record, split by its log format (9F4F / DF4F)."""

    fields: tuple[tuple[str, bytes], ...]

    def get(self, tag: str) -> bytes | None:
        return dict(self.fields).get(tag)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of a transaction. ``data`` holds every data object seen (card and terminal) by tag."""

    kind: OutcomeKind
    reason: str = ""
    tvr: bytes = bytes(5)
    tsi: bytes = bytes(2)
    cryptogram: bytes = b""  # 9F26 of the final GENERATE AC (TC, AAC) or of the qPBOC GPO
    cid: int | None = None
    atc: int | None = None
    ec: bool = False  # electronic cash path taken
    ec_balance_fen: int | None = None  # after the transaction, when known
    aid: bytes = b""
    label: str = ""
    pan: str = ""
    psn: str = ""
    expiry: str = ""  # YYMM: 5F24, else the track 2 equivalent data 57 (qPBOC cards may omit 5F24)
    field55: bytes = b""
    data: dict[str, bytes] = field(default_factory=dict, compare=False)
    logs: tuple[LogEntry, ...] = ()
    torn: bool = False  # the card went away after a debiting command was sent
    script_results: bytes = b""  # 9F5B

    @property
    def approved(self) -> bool:
        return self.kind.approved


Event = SendApdu | ChooseApplication | RequestPin | GoOnline | Outcome
Answer = CardResponse | CardRemoved | ApplicationChoice | PinEntry | OnlineResponse | None
