"""The terminal's online messages: the kernel's :class:`~citycard.kernel.events.OnlineRequest` as the typed
ISO 8583 request of the UnionPay POS profile, and the host's answer as the kernel's
:class:`~citycard.kernel.events.OnlineResponse` (pure: no I/O, no clock; the caller gives STAN, batch
and time). The sockets, the HSM (MAC, PIN) and the store-and-forward live in ``citycard.hosts.terminal``.

Which transaction is which (``docs/iso8583.md`` "Transactions", :data:`citycard.codec.iso8583.TRANSACTIONS`,
the one table): purchase 0200 000000/00/22, balance inquiry 0200 310000/00/01, EC load from the designated
account 0200 600000/91/45, EC load in cash 0200 630000/91/46, EC load from another account 0200
620000/91/47 (:class:`SourceAccount`), void 0200 200000/00/23 with 61, refund 0220
200000/00/25 with 61, offline EC purchase upload 0320 000000/00/36 with 55 (the TC), reversal 0400 (0420
when repeated) with the original's 3, 25 and 60, the reason in 39 and the original in 61. Field by field
(中国银联《POS终端消息域说明》; docs/network.md):

- 2 PAN, 14 expiry YYMM, 23 card sequence number (``0`` ‖ 5F34), 35 track 2 equivalent data (tag 57,
  ``D`` separator, the ``F`` pad dropped), 55 the chip data (EMV Book 3 Annex B);
- 22 entry mode: ``05`` chip, ``07`` contactless, then ``1`` (the terminal can take a PIN), and 26 the
  PIN capture code ``12`` (12 digits at most, ISO 9564-1) with 52 when a PIN was entered;
- 41 terminal, 42 merchant, 49 currency ``156``, 60 = 60.1 message type code ‖ 60.2 batch;
- 61 original data: batch n6 ‖ STAN n6 ‖ date MMDD n4;
- 64 a placeholder of 8 zero bytes: the caller signs the message (X9.19 under the MAK, in its HSM).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final, Protocol

from citycard.codec import tlv
from citycard.codec.cn import cn_digits
from citycard.codec.iso8583 import (
    BATCH_UPLOAD_DETAIL,
    BATCH_UPLOAD_END,
    TRANSACTIONS,
    AdviceRequest,
    AuthorizationRequest,
    BatchUpload,
    BusRide,
    Field60,
    IccData,
    Message,
    NetworkManagementRequest,
    ResponseCode,
    ServiceReference,
    TransactionType,
    reversal_of,
)
from citycard.kernel.events import OnlineRequest, OnlineResponse, Outcome

from .journal import JournalEntry

__all__ = [
    "CURRENCY",
    "MAC_PLACEHOLDER",
    "OnlineHost",
    "OnlineKind",
    "Original",
    "SourceAccount",
    "TerminalIdentity",
    "authorization_request",
    "balances",
    "batch_upload_end",
    "batch_upload_record",
    "echo_request",
    "online_response",
    "pos_entry_mode",
    "reversal_request",
    "sign_on_request",
    "upload_request",
]

CURRENCY: Final = "156"
MAC_PLACEHOLDER: Final = bytes(8)
PIN_CAPTURE_CODE: Final = "12"
_TID = re.compile(r"[0-9A-Z]{8}")
_MID = re.compile(r"[0-9A-Z]{15}")
_TRACK2 = re.compile(r"[0-9]{12,19}D[0-9]{4,}")


class OnlineKind(enum.Enum):
    """A transaction the terminal sends online, by its row in the table of transactions."""

    PURCHASE = "purchase"
    BALANCE_INQUIRY = "balance inquiry"
    EC_LOAD = "EC load, designated account"
    EC_CASH_LOAD = "EC load, cash"
    EC_LOAD_OTHER = "EC load, other account"
    VOID = "void"
    REFUND = "refund"
    UPLOAD = "offline EC purchase upload"

    @property
    def row(self) -> TransactionType:
        return _ROWS[self.value]


_ROWS: Final = {row.name: row for row in TRANSACTIONS}
assert all(kind.value in _ROWS for kind in OnlineKind)


@dataclass(frozen=True, slots=True)
class TerminalIdentity:
    """Field 41 (8 characters ``[0-9A-Z]``) and field 42 (15 characters ``[0-9A-Z]``): docs/network.md."""

    terminal_id: str
    merchant_id: str

    def __post_init__(self) -> None:
        if not _TID.fullmatch(self.terminal_id):
            raise ValueError(f"a terminal ID (41) is 8 characters 0-9 A-Z, not {self.terminal_id!r}")
        if not _MID.fullmatch(self.merchant_id):
            raise ValueError(f"a merchant ID (42) is 15 characters 0-9 A-Z, not {self.merchant_id!r}")


@dataclass(frozen=True, slots=True)
class Original:
    """Field 61 of a void, a refund or a reversal: the original's batch, STAN and local date (MMDD)."""

    batch: int
    stan: int
    date_mmdd: str

    def __post_init__(self) -> None:
        assert 0 <= self.batch <= 999_999 and 0 < self.stan <= 999_999
        assert len(self.date_mmdd) == 4 and self.date_mmdd.isdigit()

    def digits(self) -> str:
        return f"{self.batch:06d}{self.stan:06d}{self.date_mmdd}"

    @classmethod
    def from_digits(cls, digits: str) -> Original:
        if len(digits) < 16 or not digits[:16].isdigit():
            raise ValueError("field 61 is batch n6, STAN n6 and date MMDD n4")
        return cls(int(digits[:6]), int(digits[6:12]), digits[12:16])


@dataclass(frozen=True, slots=True)
class SourceAccount:
    """Where an EC load from a non-designated account (非指定账户圈存, 0200 620000/91/47) takes the money:
    the number of a card of that account, keyed or swiped at the terminal (field 2), and its online PIN
    block (52: ISO 9564 format 0 formed with that number, under the terminal's PIK). The EC card being
    loaded goes in 55 (its chip data, with its PAN ``5A`` and sequence number ``5F34``) and 23. Our reading
    of UnionPay POS terminal practice, where the terminal asks first for the card to load (转入卡, inserted)
    and then for the account's card (转出卡) and its PIN: docs/iso8583.md "EC load from another account"."""

    pan: str
    pin_block: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not (self.pan.isdigit() and 12 <= len(self.pan) <= 19):
            raise ValueError("the account's card number is 12 to 19 digits")
        if len(self.pin_block) != 8:
            raise ValueError("a PIN block is 8 bytes")


def pos_entry_mode(interface: str) -> str:
    """Field 22: ``05`` chip read at the contacts, ``07`` contactless; ``1``: the terminal takes PINs."""
    return ("07" if interface == "contactless" else "05") + "1"


def _track2(value: bytes) -> str | None:
    text = cn_digits(value)
    return text if _TRACK2.fullmatch(text) and len(text) <= 37 else None


def _psn(psn: str) -> str | None:
    return f"0{psn}" if len(psn) == 2 and psn.isdigit() else None


def authorization_request(
    kind: OnlineKind,
    request: OnlineRequest,
    *,
    identity: TerminalIdentity,
    stan: int,
    batch: int,
    interface: str = "contact",
    original: Original | None = None,
    service_ref: str = "",
    source: SourceAccount | None = None,
) -> Message:
    """The 0200 (or 0220 for a refund) for ``request``, with 64 set to :data:`MAC_PLACEHOLDER`.

    A void and a refund name their original (61); the amount (4) is absent for a balance inquiry; a
    purchase at a public-service counter carries the service's reference (``HR-…``) in 48; an EC load
    from another account carries that account's card number and PIN block (``source``) in 2 and 52, and
    the EC card's PAN and sequence number in 55 (``5A``, ``5F34``) beside its chip data."""
    row = kind.row
    assert kind is not OnlineKind.UPLOAD
    assert (original is not None) == (kind in (OnlineKind.VOID, OnlineKind.REFUND)), "61: void, refund"
    assert (source is not None) == (kind is OnlineKind.EC_LOAD_OTHER), "2, 52: the other account's"
    pin = request.pin_block if source is None else source.pin_block
    field55 = request.field55 if source is None else _with_card(request)
    fields = dict(
        mti=row.mti,
        pan=request.pan if source is None else source.pan,
        processing_code=row.processing_code,
        amount_fen=None if kind is OnlineKind.BALANCE_INQUIRY else request.amount_fen,
        stan=stan,
        expiry=(request.expiry or None) if source is None else None,
        pos_entry_mode=pos_entry_mode(interface),
        card_sequence_number=_psn(request.psn),
        condition_code=row.condition_code,
        pin_capture_code=PIN_CAPTURE_CODE if pin is not None else None,
        track2=_track2(request.track2) if source is None else None,
        terminal_id=identity.terminal_id,
        merchant_id=identity.merchant_id,
        currency=CURRENCY,
        additional_data=_field48(kind, service_ref),
        pin_block=pin,
        icc=IccData(field55) if field55 else None,
        field60=Field60(row.message_type_code, batch),
        original=original.digits() if original is not None else None,
        mac=MAC_PLACEHOLDER,
    )
    kind_class = AdviceRequest if row.mti == "0220" else AuthorizationRequest
    return kind_class(**fields)  # type: ignore[arg-type]


def _with_card(request: OnlineRequest) -> bytes:
    """Field 55 of an EC load from another account: the chip data, then the card's PAN (``5A``, padded
    with ``F`` to whole bytes) and sequence number (``5F34``) unless the chip data carry them already."""
    have = {obj.tag for obj in tlv.decode(request.field55)} if request.field55 else set()
    out = request.field55
    if "5A" not in have:
        digits = request.pan + ("F" if len(request.pan) % 2 else "")
        out += tlv.encode("5A", bytes.fromhex(digits))
    if "5F34" not in have and len(request.psn) == 2 and request.psn.isdigit():
        out += tlv.encode("5F34", bytes.fromhex(request.psn))
    return out


def reversal_request(original: Message, *, reason: ResponseCode, repeat: bool) -> Message:
    """The 0400 (``repeat``: 0420) reversing ``original`` (a 0200 this terminal sent): its 2, 3, 4, **11**,
    14, 22, 23, 25, 49, 55, 60 and 61, the reason in 39; 64 a placeholder. The acquirer finds the reversed
    transaction by the original's 11 with 41 and 60.2, as UnionPay POS practice does (docs/iso8583.md,
    its sources): a reversal takes no STAN of its own.

    The PIN block (52) and track 2 (35) are not repeated: a reversal moves money back, it needs no PIN."""
    assert original.mti == "0200" and original.field60 is not None and original.stan is not None
    return reversal_of(
        original,
        reason,
        mti="0420" if repeat else "0400",
        track2=None,
        mac=MAC_PLACEHOLDER,
    )


def upload_request(
    *,
    identity: TerminalIdentity,
    pan: str,
    psn: str,
    expiry: str,
    amount_fen: int,
    stan: int,
    batch: int,
    interface: str,
    field55: bytes,
    service_ref: str = "",
    bus: BusRide | None = None,
) -> Message:
    """The 0320 of one offline EC purchase (60.1 = ``36``) with its chip data and TC in 55, in 48 the
    reference of the public service it paid (``service_ref``, ``HR-…``), if any, and in 63 a validator's
    fare's bus line and vehicle (``bus``, :mod:`citycard.codec.iso8583.busride`), if any."""
    row = OnlineKind.UPLOAD.row
    return BatchUpload(
        mti=row.mti,
        pan=pan,
        processing_code=row.processing_code,
        amount_fen=amount_fen,
        stan=stan,
        expiry=expiry or None,
        pos_entry_mode=pos_entry_mode(interface),
        card_sequence_number=_psn(psn),
        condition_code=row.condition_code,
        terminal_id=identity.terminal_id,
        merchant_id=identity.merchant_id,
        currency=CURRENCY,
        additional_data=_field48(OnlineKind.UPLOAD, service_ref),
        icc=IccData(field55),
        field60=Field60(row.message_type_code, batch),
        private63=bus.to_field63() if bus is not None else None,
        mac=MAC_PLACEHOLDER,
    )


def batch_upload_record(
    kind: OnlineKind, *, identity: TerminalIdentity, amount_fen: int, stan: int, batch: int, rrn: str
) -> Message:
    """One online transaction of a batch out of balance, uploaded (批上送, 0320): its 3, 4, 11 and 37, 60.1
    its transaction's type, 60.3 :data:`BATCH_UPLOAD_DETAIL`; no card data."""
    assert kind in (OnlineKind.PURCHASE, OnlineKind.VOID, OnlineKind.REFUND), kind
    row = kind.row
    return BatchUpload(
        mti="0320",
        processing_code=row.processing_code,
        amount_fen=amount_fen,
        stan=stan,
        condition_code=row.condition_code,
        rrn=rrn or None,
        terminal_id=identity.terminal_id,
        merchant_id=identity.merchant_id,
        currency=CURRENCY,
        field60=Field60(row.message_type_code, batch, BATCH_UPLOAD_DETAIL),
        mac=MAC_PLACEHOLDER,
    )


def batch_upload_end(*, identity: TerminalIdentity, stan: int, batch: int, records: int) -> Message:
    """The end of a batch upload (0320, 60.3 :data:`BATCH_UPLOAD_END`, 48 the records sent, n4)."""
    assert 0 <= records <= 9999, records
    return BatchUpload(
        mti="0320",
        stan=stan,
        terminal_id=identity.terminal_id,
        merchant_id=identity.merchant_id,
        additional_data=f"{records:04d}",
        field60=Field60("00", batch, BATCH_UPLOAD_END),
        mac=MAC_PLACEHOLDER,
    )


def _field48(kind: OnlineKind, service_ref: str) -> str | None:
    """Field 48 of a purchase or an upload paying a public service (:mod:`citycard.codec.iso8583.service`):
    the journal keeps the reference as text (``HR-202612030017``), checked when it was journaled."""
    if not service_ref:
        return None
    assert kind in (OnlineKind.PURCHASE, OnlineKind.UPLOAD), "only a purchase pays a public service"
    return ServiceReference.parse(service_ref).to_field48()


def _network(mti: str, code: str, identity: TerminalIdentity, stan: int, batch: int) -> Message:
    return NetworkManagementRequest(
        mti=mti,
        stan=stan,
        terminal_id=identity.terminal_id,
        merchant_id=identity.merchant_id,
        field60=Field60("00", batch, code),
    )


def sign_on_request(identity: TerminalIdentity, *, stan: int, batch: int) -> Message:
    """0800, 60.3 = ``003`` (double-length keys); no MAC (the terminal has no MAK yet)."""
    return _network("0800", "003", identity, stan, batch)


def echo_request(identity: TerminalIdentity, *, stan: int, batch: int) -> Message:
    """0820, 60.3 = ``301``: the echo test."""
    return _network("0820", "301", identity, stan, batch)


def online_response(response: Message) -> OnlineResponse:
    """The kernel's view of a 0210/0230: 39 → ``8A``; from 55, ``91`` (ARPC ‖ ARC) and the script
    templates ``71``/``72`` as they came; 38 → ``89``."""
    assert response.response_code is not None
    icc = response.icc
    iad = b""
    scripts = b""
    if icc is not None:
        for obj in icc.objects:
            if obj.tag == "91":
                iad = obj.value
            elif obj.tag in ("71", "72"):
                scripts += obj.to_bytes()
    return OnlineResponse(
        response_code=str(response.response_code),
        issuer_authentication_data=iad,
        authorization_code=(response.auth_code or "").encode("ascii"),
        scripts=scripts,
    )


class OnlineHost(Protocol):
    """The terminal's way online (``citycard.hosts.terminal.AcquirerClient``): the terminal application
    calls :meth:`authorize` when the kernel goes online for the journaled ``entry`` (its STAN and batch are
    fields 11 and 60.2), and :meth:`completed` when the kernel has finished, before the outcome is shown
    (an approval the card then refused is reversed: the reversal is persisted first)."""

    def authorize(
        self,
        kind: OnlineKind,
        request: OnlineRequest,
        entry: JournalEntry,
        interface: str,
        follows: JournalEntry | None = None,
        source: SourceAccount | None = None,
    ) -> OnlineResponse:
        """``follows``: the purchase a void cancels (field 61); ``source``: the other account of an EC load
        from a non-designated account."""
        ...

    def completed(self, entry: JournalEntry, outcome: Outcome) -> Outcome:
        """The outcome to record: ``outcome``, or a torn approval the host reversed, recorded declined (an
        EC load torn after the card's TC: recorded torn, its reversal held)."""
        ...

    def release_reversal(self, txn_id: str) -> bool:
        """Send the reversal held for ``txn_id`` (the card's load log shows it never took the load)."""
        ...

    def drop_reversal(self, txn_id: str) -> bool:
        """Never send the reversal held for ``txn_id`` (the card's load log shows the load)."""
        ...

    def held_reversals(self, limit: int) -> list[str]:
        """The transactions whose reversal is held (EC loads torn after the card's TC), newest first, at
        most ``limit``: the card's next load here decides them, however long ago they tore."""
        ...


def balances(field54: str) -> dict[str, int]:
    """Field 54 (UnionPay: entries of 20 characters, account type n2, amount type n2, currency n3, ``C`` or
    ``D``, amount n12) as fen by amount type (``01`` ledger, ``02`` available); ValueError if malformed."""
    out: dict[str, int] = {}
    if not field54 or len(field54) % 20:
        raise ValueError("field 54 is entries of 20 characters")
    for start in range(0, len(field54), 20):
        entry = field54[start : start + 20]
        sign, digits = entry[7], entry[8:]
        if sign not in "CD" or not digits.isdigit() or not entry[:7].isdigit():
            raise ValueError(f"field 54 entry {start // 20 + 1} is not n2 n2 n3 C/D n12")
        out[entry[2:4]] = int(digits) * (1 if sign == "C" else -1)
    return out
