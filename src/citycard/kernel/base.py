"""The kernel's common ground: the transaction, the typed card error, the state every step reads and
writes (card and terminal data objects, TVR, TSI), terminal data for the DOLs, card I/O with response
chaining, and the h11-style surface (``start`` / ``send``) that turns any card failure into an outcome.

The steps themselves live in :mod:`.selection`, :mod:`.authentication`, :mod:`.verification`,
:mod:`.risk`, :mod:`.contactless`, :mod:`.inquiries` and :mod:`.kernel` (EMV 4.3 Book 3 §10).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any, Literal

from citycard.codec import commands, tlv
from citycard.codec.cn import cn_digits
from citycard.codec.dol import build_dol_data
from citycard.codec.emvbits import TVR_ONLINE_PIN_ENTERED
from citycard.codec.money import amount_from_bcd, bcd_amount
from citycard.codec.tlv import Tlv
from citycard.crypto import des
from citycard.crypto.pin import pin_block_iso0

from . import oda
from .config import TerminalAid, TerminalConfig
from .events import Answer, CardRemoved, CardResponse, Event, OnlineRequest, Outcome, OutcomeKind, SendApdu
from .extension import Extension
from .tvr import Bits

__all__ = [
    "APPROVED_CODES",
    "EC_AUTH_CODE",
    "FIELD55_TAGS",
    "Cancelled",
    "CardError",
    "KernelBase",
    "Transaction",
    "TransactionKind",
]

EC_AUTH_CODE = b"ECC001"
MAX_RECORDS = 64
MAX_DIRECTORY_RECORDS = 16
MAX_CANDIDATES = 16
MAX_RESPONSE_CHAINING = 4
MAX_SCRIPT_COMMANDS = 16
MAX_LOG_RECORDS = 32
APPROVED_CODES = frozenset({"00", "10", "11"})

FIELD55_TAGS = (
    "9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A", "9F03",
    "9F33", "9F34", "9F35", "9F1E", "84", "9F09", "9F41", "9F74", "9F63", "9F66", "9F6C", "9F5D",
)  # fmt: skip
"""Data elements of the authorization request, in the UnionPay field-55 order."""


class TransactionKind(enum.Enum):
    PURCHASE = 0x00
    EC_LOAD = 0x60  # 指定账户圈存 (designated-account load), JR/T 0025.13
    EC_BALANCE = 0x31  # inquiry
    TRANSACTION_LOG = 0xF1  # not a 9C value: terminal-local inquiries
    LOAD_LOG = 0xF2


@dataclass(frozen=True, slots=True)
class Transaction:
    """What the terminal is asked to do. ``now`` is the terminal's clock, read by the caller."""

    kind: TransactionKind
    now: dt.datetime
    amount_fen: int = 0
    other_amount_fen: int = 0
    interface: Literal["contact", "contactless"] = "contact"
    force_online: bool = False
    log_records: int = 0  # log inquiries: read at most this many records, most recent first (0: all)
    identify: bool = False  # log inquiries: then learn the card's PAN and PSN by a GPO that moves no money
    transaction_type: int | None = (
        None  # 9C other than the kind's (0x31: an online balance inquiry, amount 0)
    )
    extension: Extension | None = None  # contactless purchase: records read and staged before the GPO

    def __post_init__(self) -> None:
        assert 0 <= self.amount_fen < 10**12 and 0 <= self.other_amount_fen < 10**12


class CardError(Exception):
    """The card answered something the kernel cannot accept; ends the transaction (typed remote error)."""

    def __init__(self, reason: str, kind: OutcomeKind = OutcomeKind.TERMINATED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class _Removed(Exception):
    pass


class Cancelled(Exception):
    """The cardholder cancelled (at the PIN pad): the transaction ends, terminated, with this reason."""


class _NextCandidate(Exception):
    """Book 3 §10.1 / Book 1 §12.4: drop this application and select the next one."""


def _bcd_to_int(value: bytes) -> int:
    """An amount the card gave (``9F79``, ``9F5D``, the IAD's balance): a nibble that is not a digit is the
    card's fault (:class:`CardError`)."""
    try:
        return amount_from_bcd(value)
    except ValueError as exc:
        raise CardError(str(exc)) from None


def _date(value: bytes, tag: str) -> dt.date:
    text = value.hex()
    if len(text) != 6 or not text.isdigit():
        raise CardError(f"{tag} {text.upper()} is not a YYMMDD date")
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:6])
    year = 2000 + yy if yy < 50 else 1900 + yy
    try:
        return dt.date(year, mm, dd)
    except ValueError:
        raise CardError(f"{tag} {text} is not a valid date") from None


def _pan_digits(value: bytes) -> str:
    return cn_digits(value)


def _with_le(command: bytes, le: int) -> bytes | None:
    """ISO 7816-3 §12.2 (``6Cxx``): the command again with Le = ``le``; None for a case-3 command (no Le)."""
    if len(command) == 4:  # case 1
        return command + bytes((le,))
    if len(command) == 5:  # case 2
        return command[:4] + bytes((le,))
    if len(command) == 6 + command[4]:  # case 4
        return command[:-1] + bytes((le,))
    return None


def _sw(raw: bytes) -> int:
    return int.from_bytes(raw[-2:], "big")


class KernelBase:
    """One transaction. ``start()`` gives the first event; ``send(answer)`` the next, up to an Outcome.

    ``rng(n)`` returns ``n`` random bytes from a CSPRNG (unpredictable number, random selection).
    """

    def __init__(
        self,
        config: TerminalConfig,
        txn: Transaction,
        rng: Callable[[int], bytes],
        *,
        pin_pad: Callable[[str, str], bytes] | None = None,
    ) -> None:
        """``pin_pad(pin, pan)``: the PIN pad's encipherment of an online PIN (ISO 9564 format 0 under the
        terminal's PIN key, kept in its own HSM); without it, ``config.pin_key`` (demo) is used."""
        self.config = config
        self._pin_pad = pin_pad
        self.txn = txn
        self._rng = rng
        self._gen: Generator[Event, Answer, Outcome] = self._run()
        self._outcome: Outcome | None = None
        self.tvr = Bits(5)
        self.tsi = Bits(2)
        self.card: dict[str, bytes] = {}  # primitive objects from the card, by tag
        self.term: dict[str, bytes] = {}
        self.aid = b""
        self.terminal_aid: TerminalAid | None = None
        self.label = ""
        self._debit_sent = False
        self._ec = False
        self._pin_block: bytes | None = None
        self._script_results = b""
        self._static_data = b""
        self._oda_missing_records = False
        self._icc_key: oda.PublicKey | None = None
        self._oda_failure = ""
        self._record_tags: set[str] = set()
        self._cda = False
        self._cid: int | None = None  # the cryptogram type read from the CVR when the card sent no 9F27
        self._pdol_data = b""
        self._cdol1_data = b""

    def _run(self) -> Generator[Event, Answer, Outcome]:
        """The whole transaction; :class:`citycard.kernel.kernel.Kernel` composes it from the steps."""
        raise NotImplementedError

    # -- the h11-style surface -------------------------------------------------------------------------

    def start(self) -> Event:
        return self._step(None, first=True)

    def send(self, answer: Answer) -> Event:
        if self._outcome is not None:
            raise RuntimeError("the transaction is over")
        return self._step(answer, first=False)

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    def interrupted(self, reason: str) -> Outcome:
        """End the transaction where it stands, when its driver stopped on an error (a bug it raises): the
        outcome *terminated*, ``torn`` when a debiting command was sent, with what the card gave so far
        (its cryptogram, ATC), for the driver to record and reverse before it raises."""
        if self._outcome is None:
            self._outcome = self._finish(OutcomeKind.TERMINATED, reason, torn=self._debit_sent)
            self._gen.close()
        return self._outcome

    def _step(self, answer: Answer, *, first: bool) -> Event:
        try:
            event = next(self._gen) if first else self._gen.send(answer)
        except StopIteration as stop:
            event = stop.value
        except CardError as exc:
            event = self._finish(exc.kind, exc.reason)
        except _Removed as exc:
            event = self._finish(OutcomeKind.TERMINATED, str(exc) or "card removed", torn=self._debit_sent)
        except Cancelled as exc:
            event = self._finish(OutcomeKind.TERMINATED, str(exc))
        except ValueError as exc:  # TlvError, DolError, CvmListError, CertificateError: malformed card data
            event = self._finish(OutcomeKind.TERMINATED, f"card data error: {exc}")
        # anything else (KeyError, IndexError, AssertionError …) is a bug of the kernel's: it is raised from
        # here, never turned into an outcome (REVIEW.md); the caller's journal keeps the transaction
        # pending, which its next opening marks torn, so a card that paid is still recovered from its log
        if isinstance(event, Outcome):
            self._outcome = event
            self._gen.close()
        return event

    def _finish(self, kind: OutcomeKind, reason: str, **extra: Any) -> Outcome:
        if kind is OutcomeKind.TERMINATED and self._debit_sent:
            extra.setdefault("torn", True)  # the card may have moved money: its log decides later
        balance = extra.pop("ec_balance_fen", None)
        if balance is None:
            balance = self._ec_balance_after()
        cryptogram = self.card.get("9F26", b"")
        cid = self.card.get("9F27")
        cid_value = cid[0] if cid else self._cid  # a qPBOC card may state the type only in its CVR
        atc = self.card.get("9F36")
        pan = _pan_digits(self.card.get("5A", b"")) or self._track2_pan()
        self.term["95"] = self.tvr.value()
        self.term["9B"] = self.tsi.value()
        if self._oda_failure and kind is not OutcomeKind.COMPLETED:
            reason = f"{reason}; offline data authentication: {self._oda_failure}"
        outcome = Outcome(
            kind=kind,
            reason=reason,
            tvr=self.tvr.value(),
            tsi=self.tsi.value(),
            cryptogram=cryptogram,
            cid=cid_value,
            atc=int.from_bytes(atc, "big") if atc and len(atc) == 2 else None,
            ec=self._ec,
            ec_balance_fen=balance,
            aid=self.aid,
            label=self.label,
            pan=pan,
            psn=self.card.get("5F34", b"").hex(),
            expiry=self._expiry_yymm(),
            field55=self._field55() if cryptogram else b"",
            data={**self.card, **self.term},
            script_results=self._script_results,
        )
        return replace(outcome, **extra)

    # -- data helpers ------------------------------------------------------------------------------------

    def _track2_pan(self) -> str:
        t2 = self.card.get("57", b"").hex().upper()
        return t2.split("D", 1)[0] if "D" in t2 else ""

    def _expiry_yymm(self) -> str:
        """``YYMM`` of the application expiration date ``5F24``, else of the track 2 equivalent data ``57``
        (``PAN D YYMM service-code …``, EMV Book 3 Annex A; qPBOC cards may omit ``5F24``); "" if neither."""
        if "5F24" in self.card:
            return self.card["5F24"].hex()[:4]
        t2 = self.card.get("57", b"").hex().upper()
        yymm = t2.split("D", 1)[1][:4] if "D" in t2 else ""
        return yymm if len(yymm) == 4 and yymm.isdigit() else ""

    def _expiry_date(self) -> dt.date | None:
        """The last day the card is valid: ``5F24``, else the last day of the month in ``57``; None when the
        card gives neither (a malformed date is a :class:`CardError`)."""
        if "5F24" in self.card:
            return _date(self.card["5F24"], "5F24")
        yymm = self._expiry_yymm()
        if not yymm:
            return None
        month = _date(bytes.fromhex(yymm + "01"), "57")
        return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)

    def _ec_balance_after(self) -> int | None:
        try:
            if "9F5D" in self.card and self.txn.interface == "contactless":
                return _bcd_to_int(self.card["9F5D"])
            iad = self.card.get("9F10", b"")
            if self._ec and len(iad) >= 15 and iad[8] == 0x0A and iad[9] == 0x01:
                return _bcd_to_int(iad[10:15])
            if "9F79" in self.card:
                return _bcd_to_int(self.card["9F79"])
        except CardError:
            return None
        return None

    def _rid(self) -> str:
        return self.aid[:5].hex().upper()

    def _source(self) -> dict[str, bytes]:
        self.term["95"] = self.tvr.value()
        self.term["9B"] = self.tsi.value()
        return {**self.card, **self.term}

    def _dol_data(self, dol: bytes) -> bytes:
        return build_dol_data(dol, self._source(), rid=self._rid() or None)

    def _field55(self) -> bytes:
        # term["95"] is the TVR as last sent to the card (PDOL or CDOL1): the one its cryptogram covers
        source = {**self.card, **self.term}
        if self.aid:
            source["84"] = self.aid
        return tlv.encode_many((t, source[t]) for t in FIELD55_TAGS if t in source)

    def _store(self, objects: list[Tlv], *, unique: bool, record: bool = False) -> None:
        """Keep the primitive objects; Book 3 §7.5: a repeated primitive in card data is an error."""
        for obj in tlv.iter_flat(objects):
            if obj.children is not None:
                continue
            # a qPBOC GPO may repeat a record's object (57, 5F34): tolerated only when identical
            repeated = obj.tag in self._record_tags or self.card.get(obj.tag, obj.value) != obj.value
            if unique and obj.tag in self.card and repeated:
                raise CardError(f"card data: {obj.tag} appears twice")
            if record:
                self._record_tags.add(obj.tag)
            self.card[obj.tag] = obj.value

    def _terminal_data(self) -> None:
        c, t = self.config, self.txn
        now = t.now
        un = self._rng(4)
        assert len(un) == 4
        kind = t.kind.value if t.kind.value < 0xF0 else 0x31
        if t.transaction_type is not None:
            assert t.kind is TransactionKind.PURCHASE and t.force_online
            kind = t.transaction_type
        amount = t.amount_fen if t.kind in (TransactionKind.PURCHASE, TransactionKind.EC_LOAD) else 0
        ec_ok = (
            c.ec_support
            and t.kind is TransactionKind.PURCHASE
            and (amount > 0 or t.extension is not None)  # a record-only tap: a TC for amount 0
            and amount <= c.ec_terminal_limit_fen
            and t.other_amount_fen == 0
            and not t.force_online
        )
        self.term.update(
            {
                "9F02": bcd_amount(amount),
                "9F03": bcd_amount(t.other_amount_fen),
                "9F1A": c.country,
                "5F2A": c.currency,
                "5F36": bytes((c.currency_exponent,)),
                "9A": bytes.fromhex(now.strftime("%y%m%d")),
                "9F21": bytes.fromhex(now.strftime("%H%M%S")),
                "9C": bytes((kind,)),
                "9F37": un,
                "9F35": bytes((c.terminal_type,)),
                "9F33": c.capabilities,
                "9F40": c.additional_capabilities,
                "9F1C": c.terminal_id,
                "9F16": c.merchant_id,
                "9F4E": c.merchant_name,
                "9F15": c.mcc,
                "9F1E": c.ifd_serial,
                "9F01": c.acquirer_id,
                "9F1B": c.floor_limit_fen.to_bytes(4, "big"),
                "9F7A": b"\x01" if ec_ok else b"\x00",
                "9F7B": bcd_amount(c.ec_terminal_limit_fen),
                "9F39": b"\x07" if t.interface == "contactless" else b"\x05",
                "95": bytes(5),
                "9B": bytes(2),
            }
        )
        if t.interface == "contactless":
            self.term["9F66"] = self._ttq(amount, ec_ok)

    def _set_amount(self, amount: int) -> None:
        """The amount an :class:`~.extension.Extension` decided, before the GPO: 9F02, 9F7A and the TTQ."""
        assert self.txn.extension is not None and self.txn.interface == "contactless"
        self.txn = replace(self.txn, amount_fen=amount)
        ec_ok = self.config.ec_support and amount <= self.config.ec_terminal_limit_fen
        self.term["9F02"] = bcd_amount(amount)
        self.term["9F7A"] = b"\x01" if ec_ok else b"\x00"
        self.term["9F66"] = self._ttq(amount, ec_ok)

    def _ttq(self, amount: int, ec_ok: bool) -> bytes:
        """JR/T 0025.12 TTQ: byte 2 b8 online cryptogram required, b7 CVM required."""
        c = self.config
        ttq = bytearray(c.ttq.ljust(4, b"\x00")[:4])
        if c.offline_only:
            ttq[0] |= 0x08
        else:
            ttq[0] &= ~0x08 & 0xFF
        over_floor = amount > c.contactless_floor_limit_fen and not ec_ok
        stale = c.exception_file.stale(self.txn.now)  # a stale deny list cannot clear a card offline
        if (over_floor or stale or self.txn.force_online) and not c.offline_only:
            ttq[1] |= 0x80
        if amount >= c.contactless_cvm_limit_fen and c.contactless_cvm_limit_fen > 0:
            ttq[1] |= 0x40
        return bytes(ttq)

    # -- card I/O ------------------------------------------------------------------------------------------

    def _apdu(
        self, command: bytes, purpose: str, *, cryptogram: bool = False
    ) -> Generator[Event, Answer, tuple[bytes, int]]:
        """Send ``command``; follows ``61xx`` (GET RESPONSE) and ``6Cxx`` (resend with Le), bounded.
        ``cryptogram``: the card answers it with an application cryptogram (:attr:`SendApdu.cryptogram`)."""
        data = b""
        for _ in range(MAX_RESPONSE_CHAINING):
            answer = yield SendApdu(command, purpose, cryptogram)
            cryptogram = False  # a GET RESPONSE or a resend with Le only fetches that answer
            if isinstance(answer, CardRemoved):
                raise _Removed(answer.reason)
            if not isinstance(answer, CardResponse):
                raise CardError(f"{purpose}: expected a card response, got {type(answer).__name__}")
            raw = answer.data
            if len(raw) < 2:
                raise CardError(f"{purpose}: response of {len(raw)} bytes has no status word")
            sw = _sw(raw)
            data += raw[:-2]
            if sw >> 8 == 0x61:
                command = commands.get_response(sw & 0xFF)
                purpose = "GET RESPONSE"
                continue
            if sw >> 8 == 0x6C and not data:
                resent = _with_le(command, sw & 0xFF)
                if resent is not None:
                    command = resent
                    continue
            return data, sw
        raise CardError(f"{purpose}: too many response chaining steps")

    def _select(
        self, name: bytes, *, next_occurrence: bool = False
    ) -> Generator[Event, Answer, tuple[bytes, int]]:
        command = commands.select(name, next_occurrence=next_occurrence)
        return (yield from self._apdu(command, f"SELECT {name.hex().upper()}"))

    def _get_data(self, tag: str) -> Generator[Event, Answer, bytes | None]:
        data, sw = yield from self._apdu(commands.get_data(tag), f"GET DATA {tag}")
        if sw != 0x9000:
            return None
        found = tlv.find(tlv.decode(data), tag)
        return found.value if found is not None else None

    # -- 3. read application data ----------------------------------------------------------------------

    def _read_records(self) -> Generator[Event, Answer, None]:
        afl = self.card.get("94", b"")
        if not afl or len(afl) % 4:
            raise CardError("AFL (94) missing or of a wrong length")
        static: list[bytes] = []
        total = 0
        for i in range(0, len(afl), 4):
            sfi, first, last, oda_count = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            if not 1 <= sfi <= 30 or first == 0 or last < first or oda_count > last - first + 1:
                raise CardError(f"AFL entry {afl[i : i + 4].hex().upper()} is invalid")
            for record in range(first, last + 1):
                total += 1
                if total > MAX_RECORDS:
                    raise CardError("AFL lists too many records")
                data, sw = yield from self._apdu(
                    commands.read_record(sfi, record), f"READ RECORD SFI {sfi} #{record}"
                )
                if sw != 0x9000:
                    raise CardError(f"READ RECORD SFI {sfi} record {record}: status {sw:04X}")
                objs = tlv.decode(data)
                if sfi <= 10 and (len(objs) != 1 or objs[0].tag != "70"):
                    raise CardError(f"record SFI {sfi} #{record} is not one 70 template")
                if record < first + oda_count:
                    if sfi <= 10:
                        static.append(objs[0].value)
                    elif len(objs) == 1 and objs[0].tag == "70":
                        static.append(data)
                    else:
                        self._oda_missing_records = True
                self._store(objs, unique=True, record=True)
        tag_list = self.card.get("9F4A")
        if tag_list is not None:
            if tag_list != b"\x82":
                self._oda_missing_records = True  # Book 3 §10.3: only the AIP may be listed
            else:
                static.append(self.card["82"])
        self._static_data = b"".join(static)

    def _mandatory(self, tags: tuple[str, ...]) -> None:
        missing = [t for t in tags if t not in self.card]
        if missing:
            raise CardError(f"mandatory data missing: {', '.join(missing)}")

    def _oda_context(self) -> oda.OdaContext:
        return oda.OdaContext(
            config=self.config,
            rid=self.aid[:5],
            card=self.card,
            pan=_pan_digits(self.card.get("5A", b"")) or self._track2_pan(),
            today=self.txn.now.date(),
            static_data=self._static_data,
            records_ok=not self._oda_missing_records,
        )

    def _encipher_online_pin(self, pin: str) -> None:
        """ISO 9564 format-0 PIN block under the terminal PIN key (3DES) for the authorization (field 52)."""
        pan = _pan_digits(self.card.get("5A", b"")) or self._track2_pan()
        if self._pin_pad is not None:
            self._pin_block = self._pin_pad(pin, pan)
        else:
            self._pin_block = des.ecb_encrypt(self.config.pin_key, pin_block_iso0(pin, pan))
        self.tvr.set(TVR_ONLINE_PIN_ENTERED)

    @property
    def online_pin_pad(self) -> bool:
        """Whether the terminal can encipher an online PIN (a PIN pad with a key, or a demo key)."""
        return self._pin_pad is not None or bool(self.config.pin_key)

    def _online_request(self) -> OnlineRequest:
        pan = _pan_digits(self.card.get("5A", b"")) or self._track2_pan()
        return OnlineRequest(
            pan=pan,
            psn=self.card.get("5F34", b"").hex(),
            track2=self.card.get("57", b""),
            amount_fen=self.txn.amount_fen,
            transaction_type=self.term["9C"][0],
            field55=self._field55(),
            pin_block=self._pin_block,
            expiry=self._expiry_yymm(),
        )
