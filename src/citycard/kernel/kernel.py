"""The terminal level-2 kernel: PBOC 2.0 debit/credit, electronic cash and qPBOC as one sans-I/O state
machine (EMV 4.3 Book 3 §10 "functions used in transaction processing", Book 4 §6; JR/T 0025.5/.6
debit/credit, JR/T 0025.12 qPBOC, JR/T 0025.13 electronic cash).

:class:`Kernel` emits events (:mod:`citycard.kernel.events`) and consumes answers, like h11: it never
touches a card, a clock, a PIN pad or a network. The transaction is written as a generator that yields an
event and receives its answer; the class around it turns *every* failure of the card — a wrong status word,
malformed or duplicated TLV, a missing mandatory object, a lying cryptogram information data — into an
:class:`~citycard.kernel.events.Outcome` (declined or terminated, with a reason). Nothing the card sends can
raise out of :meth:`Kernel.send`.

Steps (Book 3 §10): application selection (PSE/PPSE or list of AIDs, priority, ASI partial match,
confirmation, next candidate on failure) → GET PROCESSING OPTIONS with the PDOL → READ RECORD by the AFL
→ offline data authentication (SDA, DDA, fDDA) → processing restrictions → cardholder verification →
terminal risk management → terminal action analysis and the first GENERATE AC → card action analysis →
online processing, issuer authentication, issuer scripts, second GENERATE AC → outcome.
EC balance, transaction-log and load-log inquiries are short transactions of their own.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any, Literal

from citycard.codec import tlv
from citycard.codec.dol import build_dol_data, parse_dol, split_dol_data
from citycard.codec.tlv import Tlv, TlvError
from citycard.crypto import des
from citycard.crypto.pin import encipher_offline_pin, pin_block_iso0, plaintext_offline_pin_block

from . import cvm as cvmlib
from . import oda
from .config import TerminalAid, TerminalConfig
from .events import (
    Answer,
    ApplicationChoice,
    Candidate,
    CardRemoved,
    CardResponse,
    ChooseApplication,
    Event,
    GoOnline,
    LogEntry,
    OnlineRequest,
    OnlineResponse,
    Outcome,
    OutcomeKind,
    PinEntry,
    RequestPin,
    SendApdu,
)
from .tvr import (
    AIP_CDA,
    AIP_CVM,
    AIP_DDA,
    AIP_ISSUER_AUTH,
    AIP_SDA,
    CID_AAC,
    CID_ARQC,
    CID_TC,
    TSI_CARD_RISK_MANAGEMENT,
    TSI_CVM,
    TSI_ISSUER_AUTH,
    TSI_ODA,
    TSI_SCRIPT,
    TSI_TRM,
    TVR_CARD_ON_EXCEPTION_FILE,
    TVR_CDA_FAILED,
    TVR_CVM_FAILED,
    TVR_DDA_FAILED,
    TVR_DIFFERENT_VERSIONS,
    TVR_EXPIRED,
    TVR_FLOOR_LIMIT,
    TVR_ICC_DATA_MISSING,
    TVR_ISSUER_AUTH_FAILED,
    TVR_LCOL_EXCEEDED,
    TVR_MERCHANT_FORCED_ONLINE,
    TVR_NEW_CARD,
    TVR_NOT_YET_EFFECTIVE,
    TVR_ODA_NOT_PERFORMED,
    TVR_ONLINE_PIN_ENTERED,
    TVR_PIN_NOT_ENTERED,
    TVR_PIN_PAD_MISSING,
    TVR_PIN_TRY_LIMIT,
    TVR_RANDOM_ONLINE,
    TVR_SCRIPT_FAILED_AFTER,
    TVR_SCRIPT_FAILED_BEFORE,
    TVR_SDA_FAILED,
    TVR_SERVICE_NOT_ALLOWED,
    TVR_UCOL_EXCEEDED,
    TVR_UNRECOGNISED_CVM,
    Bits,
    cid_type,
)

__all__ = [
    "FIELD55_TAGS",
    "CardError",
    "Kernel",
    "Transaction",
    "TransactionKind",
]

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"
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


class _NextCandidate(Exception):
    """Book 3 §10.1 / Book 1 §12.4: drop this application and select the next one."""


def _n12(fen: int) -> bytes:
    return bytes.fromhex(f"{fen:012d}")


def _bcd_to_int(value: bytes) -> int:
    text = value.hex()
    if not text.isdigit():
        raise CardError(f"amount {text.upper()} is not BCD")
    return int(text) if text else 0


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
    return value.hex().upper().rstrip("F")


def _sw(raw: bytes) -> int:
    return int.from_bytes(raw[-2:], "big")


class Kernel:
    """One transaction. ``start()`` gives the first event; ``send(answer)`` the next, up to an Outcome.

    ``rng(n)`` returns ``n`` random bytes from a CSPRNG (unpredictable number, random selection).
    """

    def __init__(self, config: TerminalConfig, txn: Transaction, rng: Callable[[int], bytes]) -> None:
        self.config = config
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
        self._pdol_data = b""

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

    def _step(self, answer: Answer, *, first: bool) -> Event:
        try:
            event = next(self._gen) if first else self._gen.send(answer)
        except StopIteration as stop:
            event = stop.value
        except CardError as exc:
            event = self._finish(exc.kind, exc.reason)
        except _Removed as exc:
            event = self._finish(OutcomeKind.TERMINATED, str(exc) or "card removed", torn=self._debit_sent)
        except (TlvError, ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
            event = self._finish(OutcomeKind.TERMINATED, f"card data error: {exc}")
        except Exception as exc:  # never let anything escape a terminal; keep the reason
            event = self._finish(OutcomeKind.TERMINATED, f"internal error: {type(exc).__name__}: {exc}")
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
            cid=cid[0] if cid else None,
            atc=int.from_bytes(atc, "big") if atc and len(atc) == 2 else None,
            ec=self._ec,
            ec_balance_fen=balance,
            aid=self.aid,
            label=self.label,
            pan=pan,
            psn=self.card.get("5F34", b"").hex(),
            field55=self._field55() if cryptogram else b"",
            data={**self.card, **self.term},
            script_results=self._script_results,
        )
        return replace(outcome, **extra)

    # -- data helpers ------------------------------------------------------------------------------------

    def _track2_pan(self) -> str:
        t2 = self.card.get("57", b"").hex().upper()
        return t2.split("D", 1)[0] if "D" in t2 else ""

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
        amount = t.amount_fen if t.kind in (TransactionKind.PURCHASE, TransactionKind.EC_LOAD) else 0
        ec_ok = (
            c.ec_support
            and t.kind is TransactionKind.PURCHASE
            and 0 < amount <= c.ec_terminal_limit_fen
            and t.other_amount_fen == 0
            and not t.force_online
        )
        self.term.update(
            {
                "9F02": _n12(amount),
                "9F03": _n12(t.other_amount_fen),
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
                "9F7B": _n12(c.ec_terminal_limit_fen),
                "9F39": b"\x07" if t.interface == "contactless" else b"\x05",
                "95": bytes(5),
                "9B": bytes(2),
            }
        )
        if t.interface == "contactless":
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
        if (over_floor or self.txn.force_online) and not c.offline_only:
            ttq[1] |= 0x80
        if amount >= c.contactless_cvm_limit_fen and c.contactless_cvm_limit_fen > 0:
            ttq[1] |= 0x40
        return bytes(ttq)

    # -- card I/O ------------------------------------------------------------------------------------------

    def _apdu(self, command: bytes, purpose: str) -> Generator[Event, Answer, tuple[bytes, int]]:
        """Send ``command``; follows ``61xx`` (GET RESPONSE) and ``6Cxx`` (resend with Le), bounded."""
        data = b""
        for _ in range(MAX_RESPONSE_CHAINING):
            answer = yield SendApdu(command, purpose)
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
                command = bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF))
                purpose = "GET RESPONSE"
                continue
            if sw >> 8 == 0x6C and not data:
                command = (
                    command[:-1] + bytes((sw & 0xFF,)) if len(command) > 4 else command + bytes((sw & 0xFF,))
                )
                continue
            return data, sw
        raise CardError(f"{purpose}: too many response chaining steps")

    def _select(
        self, name: bytes, *, next_occurrence: bool = False
    ) -> Generator[Event, Answer, tuple[bytes, int]]:
        p2 = 0x02 if next_occurrence else 0x00
        command = bytes((0x00, 0xA4, 0x04, p2, len(name))) + name + b"\x00"
        return (yield from self._apdu(command, f"SELECT {name.hex().upper()}"))

    def _get_data(self, tag: str) -> Generator[Event, Answer, bytes | None]:
        tb = bytes.fromhex(tag).rjust(2, b"\x00")
        data, sw = yield from self._apdu(bytes((0x80, 0xCA, tb[0], tb[1], 0x00)), f"GET DATA {tag}")
        if sw != 0x9000:
            return None
        found = tlv.find(tlv.decode(data), tag)
        return found.value if found is not None else None

    # -- the transaction ---------------------------------------------------------------------------------

    def _run(self) -> Generator[Event, Answer, Outcome]:
        self._terminal_data()
        t = self.txn
        if t.interface == "contactless" and t.kind is TransactionKind.PURCHASE:
            limit = self.config.contactless_transaction_limit_fen
            if t.amount_fen > limit:
                return self._finish(
                    OutcomeKind.TRY_ANOTHER_INTERFACE, f"amount over the contactless limit {limit}"
                )
        candidates = yield from self._candidates()
        while True:
            if not candidates:
                if t.interface == "contactless" and t.kind is TransactionKind.PURCHASE:
                    return self._finish(OutcomeKind.TRY_ANOTHER_INTERFACE, "no contactless application")
                return self._finish(OutcomeKind.TERMINATED, "no mutually supported application")
            chosen = yield from self._choose(candidates)
            if chosen is None:
                return self._finish(OutcomeKind.TERMINATED, "cancelled by the cardholder")
            try:
                fci = yield from self._final_select(chosen)
                if t.kind is TransactionKind.EC_BALANCE:
                    return (yield from self._ec_balance())
                if t.kind in (TransactionKind.TRANSACTION_LOG, TransactionKind.LOAD_LOG):
                    return (yield from self._read_log(fci))
                yield from self._gpo(fci)
                break
            except _NextCandidate:
                candidates = [c for c in candidates if c.aid != chosen.aid]
                self.card.clear()
                continue
        if "9F66" in self.term and self._qpboc_path():
            return (yield from self._qpboc())
        return (yield from self._contact())

    # -- 1. application selection (Book 1 §12) -------------------------------------------------------

    def _match(self, aid: bytes) -> TerminalAid | None:
        for ta in self.config.aids:
            if aid == ta.aid or (ta.partial and aid.startswith(ta.aid)):
                return ta
        return None

    def _candidates(self) -> Generator[Event, Answer, list[Candidate]]:
        contactless = self.txn.interface == "contactless"
        found = yield from self._directory(PPSE if contactless else PSE)
        if not found and not contactless:
            found = yield from self._list_of_aids()
        if not self.config.cardholder_confirmation:
            found = [c for c in found if not c.needs_confirmation]
        ranked = sorted(found, key=lambda c: (c.priority == 0, c.priority))
        return ranked[:MAX_CANDIDATES]

    @staticmethod
    def _candidate(entry: dict[str, bytes], aid: bytes) -> Candidate:
        api = entry.get("87", b"\x00")[:1] or b"\x00"
        label = entry.get("9F12") or entry.get("50") or b""
        return Candidate(aid, label.decode("ascii", "replace"), api[0] & 0x0F, bool(api[0] & 0x80))

    def _directory(self, name: bytes) -> Generator[Event, Answer, list[Candidate]]:
        data, sw = yield from self._select(name)
        if sw != 0x9000:
            if sw == 0x6A81:
                raise CardError("card blocked")
            return []
        try:
            fci = tlv.decode(data)
        except TlvError:
            return []
        entries: list[Tlv] = []
        if name == PPSE:
            bf0c = tlv.find(fci, "BF0C")
            entries = [o for o in (bf0c.children or ()) if o.tag == "61"] if bf0c else []
        else:
            sfi_obj = tlv.find(fci, "88")
            if sfi_obj is None or len(sfi_obj.value) != 1 or not 1 <= sfi_obj.value[0] <= 30:
                return []
            sfi = sfi_obj.value[0]
            for record in range(1, MAX_DIRECTORY_RECORDS + 1):
                rec, rsw = yield from self._apdu(
                    bytes((0x00, 0xB2, record, (sfi << 3) | 4, 0x00)), f"READ RECORD directory {record}"
                )
                if rsw != 0x9000:
                    break
                try:
                    objs = tlv.decode(rec)
                except TlvError:
                    break
                if len(objs) != 1 or objs[0].tag != "70":
                    break
                entries += [o for o in (objs[0].children or ()) if o.tag == "61"]
        out: list[Candidate] = []
        for entry in entries:
            values = {o.tag: o.value for o in (entry.children or ()) if o.children is None}
            aid = values.get("4F", b"")
            if 5 <= len(aid) <= 16 and self._match(aid) and all(c.aid != aid for c in out):
                out.append(self._candidate(values, aid))
        return out

    def _list_of_aids(self) -> Generator[Event, Answer, list[Candidate]]:
        out: list[Candidate] = []
        for ta in self.config.aids:
            next_occurrence = False
            for _ in range(8):
                data, sw = yield from self._select(ta.aid, next_occurrence=next_occurrence)
                if sw == 0x6A81:
                    raise CardError("card blocked")
                if sw not in (0x9000, 0x6283):
                    break
                try:
                    fci = tlv.decode(data)
                    df_name = tlv.find(fci, "84")
                    a5 = tlv.find(fci, "A5")
                except TlvError:
                    break
                if df_name is None or a5 is None:
                    break
                name = df_name.value
                values = {o.tag: o.value for o in (a5.children or ()) if o.children is None}
                matches = name == ta.aid or (ta.partial and name.startswith(ta.aid))
                if sw == 0x9000 and matches and all(c.aid != name for c in out):
                    out.append(self._candidate(values, name))
                if not ta.partial or name == ta.aid:
                    break
                next_occurrence = True
        return out

    def _choose(self, candidates: list[Candidate]) -> Generator[Event, Answer, Candidate | None]:
        if len(candidates) == 1 and not candidates[0].needs_confirmation:
            return candidates[0]
        if not self.config.cardholder_confirmation:
            return candidates[0]
        answer = yield ChooseApplication(tuple(candidates))
        if not isinstance(answer, ApplicationChoice):
            return candidates[0]
        if answer.index is None or not 0 <= answer.index < len(candidates):
            return None
        return candidates[answer.index]

    def _final_select(self, chosen: Candidate) -> Generator[Event, Answer, dict[str, bytes]]:
        data, sw = yield from self._select(chosen.aid)
        if sw != 0x9000:
            raise _NextCandidate
        try:
            objs = tlv.decode(data)
        except TlvError:
            raise _NextCandidate from None
        if len(objs) != 1 or objs[0].tag != "6F":
            raise _NextCandidate
        df_name = tlv.find(objs, "84")
        if df_name is None or df_name.value != chosen.aid or tlv.find(objs, "A5") is None:
            raise _NextCandidate
        fci: dict[str, bytes] = {}
        for obj in tlv.iter_flat(objs):
            if obj.children is None and obj.tag not in fci:
                fci[obj.tag] = obj.value
        self.aid = chosen.aid
        self.terminal_aid = self._match(chosen.aid)
        self.label = chosen.label or fci.get("50", b"").decode("ascii", "replace")
        self.term["9F06"] = chosen.aid
        self.term["4F"] = chosen.aid
        if self.terminal_aid is not None:
            self.term["9F09"] = self.terminal_aid.app_version
        self.term["84"] = chosen.aid
        for tag in ("9F38", "BF0C", "9F4D", "DF4D", "50", "87", "5F2D"):
            if tag in fci:
                self.card[tag] = fci[tag]
        return fci

    # -- 2. initiate application processing ---------------------------------------------------------

    def _gpo(self, fci: dict[str, bytes]) -> Generator[Event, Answer, None]:
        pdol = fci.get("9F38", b"")
        data = self._dol_data(pdol) if pdol else b""
        self._pdol_data = data
        body = tlv.encode("83", data)
        command = bytes((0x80, 0xA8, 0x00, 0x00, len(body))) + body + b"\x00"
        if "9F66" in self.term and "9F66" in {t for t, _ in parse_dol(pdol)}:
            self._debit_sent = True  # a qPBOC card may debit its EC balance in the GPO
        resp, sw = yield from self._apdu(command, "GET PROCESSING OPTIONS")
        if sw in (0x6985, 0x6984, 0x6986):
            self._debit_sent = False
            raise _NextCandidate
        if sw != 0x9000:
            raise CardError(f"GET PROCESSING OPTIONS: status {sw:04X}")
        objs = tlv.decode(resp)
        if len(objs) != 1:
            raise CardError("GET PROCESSING OPTIONS: response is not one template")
        top = objs[0]
        if top.tag == "80":
            if len(top.value) < 2 or (len(top.value) - 2) % 4:
                raise CardError("GET PROCESSING OPTIONS: format 1 of a wrong length")
            self.card["82"] = top.value[:2]
            self.card["94"] = top.value[2:]
        elif top.tag == "77":
            self._store(list(top.children or ()), unique=True)
            if "82" not in self.card:
                raise CardError("GET PROCESSING OPTIONS: AIP (82) missing")
            if len(self.card["82"]) != 2:
                raise CardError("GET PROCESSING OPTIONS: AIP is not 2 bytes")
        else:
            raise CardError(f"GET PROCESSING OPTIONS: unexpected template {top.tag}")

    def _qpboc_path(self) -> bool:
        """qPBOC when the card answered the GPO with a cryptogram (JR/T 0025.12 §7)."""
        return "9F26" in self.card

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
                    bytes((0x00, 0xB2, record, (sfi << 3) | 4, 0x00)), f"READ RECORD SFI {sfi} #{record}"
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

    # -- 4. offline data authentication (Book 3 §10.3, Book 2 §5-6) -------------------------------

    def _oda_contact(self) -> Generator[Event, Answer, None]:
        aip = self.card["82"][0]
        caps = self.config.capabilities[2] if len(self.config.capabilities) > 2 else 0
        if aip & AIP_CDA and caps & 0x08:
            self.tsi.set(TSI_ODA)  # Book 3 §10.3: keys now, the signature with GENERATE AC
            key, failure = oda.recover_icc_key(self._oda_context())
            if key is None:
                self.tvr.set(TVR_CDA_FAILED)
                self._oda_failure = failure
            else:
                self._icc_key, self._cda = key, True
        elif aip & AIP_DDA and caps & 0x40:
            self.tsi.set(TSI_ODA)
            yield from self._dda()
        elif aip & AIP_SDA and caps & 0x80:
            self.tsi.set(TSI_ODA)
            self._sda()
        else:
            self.tvr.set(TVR_ODA_NOT_PERFORMED)

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

    def _sda(self) -> None:
        failure = oda.verify_sda(self._oda_context())
        if failure:
            self.tvr.set(TVR_SDA_FAILED)
            self._oda_failure = failure

    def _dda(self) -> Generator[Event, Answer, None]:
        key, failure = oda.recover_icc_key(self._oda_context())
        if key is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
            return
        self._icc_key = key
        ddol = self.card.get("9F49", self.config.default_ddol)
        data = self._dol_data(ddol)
        command = bytes((0x00, 0x88, 0x00, 0x00, len(data))) + data + b"\x00"
        resp, sw = yield from self._apdu(command, "INTERNAL AUTHENTICATE")
        if sw != 0x9000:
            raise CardError(f"INTERNAL AUTHENTICATE: status {sw:04X}")
        objs = tlv.decode(resp)
        if len(objs) == 1 and objs[0].tag == "80":
            sdad = objs[0].value
        elif len(objs) == 1 and objs[0].tag == "77" and tlv.find(objs, "9F4B") is not None:
            found = tlv.find(objs, "9F4B")
            assert found is not None
            sdad = found.value
        else:
            raise CardError("INTERNAL AUTHENTICATE: no signed dynamic application data")
        number, failure = oda.verify_dda(key, sdad, data)
        if number is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
        else:
            self.term["9F4C"] = number

    # -- 5. processing restrictions (Book 3 §10.4) ------------------------------------------------------

    def _restrictions(self) -> None:
        version = self.card.get("9F08")
        if self.terminal_aid is not None and version is not None and version != self.terminal_aid.app_version:
            self.tvr.set(TVR_DIFFERENT_VERSIONS)
        auc = self.card.get("9F07")
        if auc is not None and len(auc) >= 2:
            if not auc[0] & 0x01:  # valid at terminals other than ATMs
                self.tvr.set(TVR_SERVICE_NOT_ALLOWED)
            country = self.card.get("5F28")
            if country is not None and self.txn.kind is TransactionKind.PURCHASE:
                domestic = country == self.config.country
                goods_services = 0x28 if domestic else 0x14
                if not auc[0] & goods_services:
                    self.tvr.set(TVR_SERVICE_NOT_ALLOWED)
                if self.txn.other_amount_fen and not auc[1] & (0x80 if domestic else 0x40):
                    self.tvr.set(TVR_SERVICE_NOT_ALLOWED)
        today = self.txn.now.date()
        if "5F25" in self.card and _date(self.card["5F25"], "5F25") > today:
            self.tvr.set(TVR_NOT_YET_EFFECTIVE)
        if "5F24" in self.card and _date(self.card["5F24"], "5F24") < today:
            self.tvr.set(TVR_EXPIRED)

    # -- 6. cardholder verification (Book 3 §10.5) ------------------------------------------------------

    def _cvm(self) -> Generator[Event, Answer, None]:
        self.term["9F34"] = bytes.fromhex("3F0000")
        aip = self.card["82"][0]
        if not aip & AIP_CVM:
            return
        self.tsi.set(TSI_CVM)
        if self._ec:
            return  # JR/T 0025.13: the EC offline purchase needs no cardholder verification
        raw = self.card.get("8E")
        if raw is None:
            self.tvr.set(TVR_ICC_DATA_MISSING)
            return
        cvms = cvmlib.parse_cvm_list(raw)
        if not cvms.rules:
            self.tvr.set(TVR_ICC_DATA_MISSING)
            return
        ctx = cvmlib.CvmContext(
            self.txn.amount_fen,
            self.txn.other_amount_fen,
            self.card.get("9F42") == self.config.currency,
            self.config.capabilities,
            self.term["9C"][0],
        )
        last: cvmlib.CvmRule | None = None
        for rule in cvms.rules:
            if not cvmlib.condition_applies(rule, cvms, ctx):
                continue
            last = rule
            result = yield from self._perform_cvm(rule)
            if result is not None:
                self.term["9F34"] = rule.raw + bytes((result,))
                return
            if not rule.apply_next_if_fails:
                break
        self.tvr.set(TVR_CVM_FAILED)
        self.term["9F34"] = (last.raw if last else b"\x3f\x00") + b"\x01"

    def _perform_cvm(self, rule: cvmlib.CvmRule) -> Generator[Event, Answer, int | None]:
        """The CVM result (``00`` unknown, ``02`` successful) or None when it failed."""
        code = rule.code
        if code not in cvmlib.KNOWN:
            self.tvr.set(TVR_UNRECOGNISED_CVM)
            return None
        if code == cvmlib.CVM_FAIL:
            return None
        if not cvmlib.terminal_supports(code, self.config.capabilities):
            if code in (cvmlib.CVM_PLAINTEXT_OFFLINE, cvmlib.CVM_ONLINE_PIN, cvmlib.CVM_ENCIPHERED_OFFLINE):
                self.tvr.set(TVR_PIN_PAD_MISSING)
            return None
        if code == cvmlib.CVM_NO_CVM:
            return 0x02
        if code in (cvmlib.CVM_SIGNATURE, cvmlib.CVM_CARDHOLDER_ID):
            return 0x00
        if code == cvmlib.CVM_ONLINE_PIN:
            if not self.config.pin_key or not self.config.online_capable:
                self.tvr.set(TVR_PIN_PAD_MISSING)
                return None
            answer = yield RequestPin("online", self.txn.amount_fen)
            pin = answer.pin if isinstance(answer, PinEntry) else None
            if not pin:
                self.tvr.set(TVR_PIN_NOT_ENTERED)
                return None
            pan = _pan_digits(self.card.get("5A", b"")) or self._track2_pan()
            self._pin_block = des.ecb_encrypt(self.config.pin_key, pin_block_iso0(pin, pan))
            self.tvr.set(TVR_ONLINE_PIN_ENTERED)
            return 0x00
        enciphered = code in (cvmlib.CVM_ENCIPHERED_OFFLINE, cvmlib.CVM_ENCIPHERED_OFFLINE_SIGNATURE)
        ok = yield from self._offline_pin(enciphered)
        if not ok:
            return None
        signature = code in (cvmlib.CVM_PLAINTEXT_OFFLINE_SIGNATURE, cvmlib.CVM_ENCIPHERED_OFFLINE_SIGNATURE)
        return 0x00 if signature else 0x02

    def _pin_encipherment_key(self) -> oda.PublicKey | None:
        """Book 2 §7.1: the ICC PIN encipherment key (9F2D) if any — not supported here — else the ICC key."""
        if "9F2D" in self.card:
            return None
        if self._icc_key is None:
            self._icc_key, _ = oda.recover_icc_key(self._oda_context())
        return self._icc_key

    def _offline_pin(self, enciphered: bool) -> Generator[Event, Answer, bool]:
        key = self._pin_encipherment_key() if enciphered else None
        if enciphered and key is None:
            return False  # Book 3 §10.5.1: the key cannot be retrieved, the CVM fails
        tries = yield from self._get_data("9F17")
        tries_left = tries[0] if tries else None
        if tries_left == 0:
            self.tvr.set(TVR_PIN_TRY_LIMIT)
            return False
        for _ in range(self.config.max_pin_tries):
            kind: Literal["offline_plaintext", "offline_enciphered"] = (
                "offline_enciphered" if enciphered else "offline_plaintext"
            )
            answer = yield RequestPin(kind, self.txn.amount_fen, tries_left)
            pin = answer.pin if isinstance(answer, PinEntry) else None
            if not pin:
                self.tvr.set(TVR_PIN_NOT_ENTERED)
                return False
            p2, block = 0x80, plaintext_offline_pin_block(pin)
            if key is not None:
                challenge, csw = yield from self._apdu(bytes.fromhex("0084000008"), "GET CHALLENGE")
                if csw != 0x9000 or len(challenge) != 8:
                    raise CardError(f"GET CHALLENGE: status {csw:04X}")
                p2, block = 0x88, encipher_offline_pin(pin, challenge, key.n, key.e, self._rng)
            command = bytes((0x00, 0x20, 0x00, p2, len(block))) + block
            _, sw = yield from self._apdu(command, "VERIFY")
            if sw == 0x9000:
                return True
            if sw in (0x6983, 0x6984):
                self.tvr.set(TVR_PIN_TRY_LIMIT)
                return False
            if sw >> 4 == 0x63C:
                tries_left = sw & 0x0F
                if tries_left == 0:
                    self.tvr.set(TVR_PIN_TRY_LIMIT)
                    return False
                continue
            raise CardError(f"VERIFY: status {sw:04X}")
        return False

    # -- 7. terminal risk management (Book 3 §10.6) ------------------------------------------------------

    def _risk_management(self) -> Generator[Event, Answer, None]:
        self.tsi.set(TSI_TRM)
        c = self.config
        pan = _pan_digits(self.card.get("5A", b""))
        if pan in c.exception_file.pans:
            self.tvr.set(TVR_CARD_ON_EXCEPTION_FILE)
        if c.exception_file.stale(self.txn.now):
            self.tvr.set(TVR_MERCHANT_FORCED_ONLINE)
        if self.txn.force_online:
            self.tvr.set(TVR_MERCHANT_FORCED_ONLINE)
        amount = self.txn.amount_fen
        if not self._ec and amount >= c.floor_limit_fen:
            self.tvr.set(TVR_FLOOR_LIMIT)
        if not self._ec and c.random_target_percent and amount < c.floor_limit_fen:
            draw = int.from_bytes(self._rng(2), "big") % 99 + 1
            target = c.random_target_percent
            if amount >= c.random_threshold_fen and c.floor_limit_fen > c.random_threshold_fen:
                span = c.floor_limit_fen - c.random_threshold_fen
                target += (
                    (c.random_max_target_percent - c.random_target_percent)
                    * (amount - c.random_threshold_fen)
                    // span
                )
            if draw <= target:
                self.tvr.set(TVR_RANDOM_ONLINE)
        if "9F14" in self.card and "9F23" in self.card:
            atc = yield from self._get_data("9F36")
            last_online = yield from self._get_data("9F13")
            if atc is None or last_online is None or len(atc) != 2 or len(last_online) != 2:
                self.tvr.set(TVR_LCOL_EXCEEDED)
                self.tvr.set(TVR_UCOL_EXCEEDED)
            else:
                gap = int.from_bytes(atc, "big") - int.from_bytes(last_online, "big")
                if gap > self.card["9F14"][0]:
                    self.tvr.set(TVR_LCOL_EXCEEDED)
                if gap > self.card["9F23"][0]:
                    self.tvr.set(TVR_UCOL_EXCEEDED)
                if last_online == b"\x00\x00":
                    self.tvr.set(TVR_NEW_CARD)

    # -- 8. terminal action analysis, GENERATE AC (Book 3 §10.7-10.8, §6.5.5) ------------------------------

    def _action_analysis(self) -> int:
        iac_denial = self.card.get("9F0E", bytes(5))
        iac_online = self.card.get("9F0F", b"\xff" * 5)
        iac_default = self.card.get("9F0D", b"\xff" * 5)
        c = self.config
        if self.tvr.intersects(c.tac_denial) or self.tvr.intersects(iac_denial):
            return CID_AAC
        online = c.online_capable and not self._ec
        if self.txn.force_online and online:
            return CID_ARQC
        if online:
            if self.tvr.intersects(c.tac_online) or self.tvr.intersects(iac_online):
                return CID_ARQC
            return CID_TC
        if self.tvr.intersects(c.tac_default) or self.tvr.intersects(iac_default):
            return CID_AAC
        return CID_TC

    def _generate_ac(self, requested: int, dol_tag: str, purpose: str) -> Generator[Event, Answer, int]:
        dol = self.card[dol_tag]
        data = self._dol_data(dol)
        cda = self._cda and requested != CID_AAC
        p1 = requested | (0x10 if cda else 0)
        command = bytes((0x80, 0xAE, p1, 0x00, len(data))) + data + b"\x00"
        if requested != CID_AAC or dol_tag == "8D":
            self._debit_sent = True
        resp, sw = yield from self._apdu(command, purpose)
        if sw != 0x9000:
            raise CardError(f"{purpose}: status {sw:04X}")
        objs = tlv.decode(resp)
        if len(objs) != 1:
            raise CardError(f"{purpose}: response is not one template")
        top = objs[0]
        for tag in ("9F27", "9F36", "9F26", "9F10", "9F4B"):
            self.card.pop(tag, None)
        if top.tag == "80":
            v = top.value
            if not 11 <= len(v) <= 11 + 32:
                raise CardError(f"{purpose}: format 1 response of {len(v)} bytes")
            self.card.update({"9F27": v[:1], "9F36": v[1:3], "9F26": v[3:11]})
            if len(v) > 11:
                self.card["9F10"] = v[11:]
        elif top.tag == "77":
            self._store(list(top.children or ()), unique=False)
            counts: dict[str, int] = {}
            for obj in top.children or ():
                counts[obj.tag] = counts.get(obj.tag, 0) + 1
            if any(n > 1 for n in counts.values()):
                raise CardError(f"{purpose}: a data object appears twice")
        else:
            raise CardError(f"{purpose}: unexpected template {top.tag}")
        self._mandatory(("9F27", "9F36"))
        if cda and "9F4B" in self.card and top.tag == "77" and "9F26" not in self.card:
            self._verify_cda(top, data)
        self._mandatory(("9F26",))
        if len(self.card["9F27"]) != 1 or len(self.card["9F36"]) != 2 or len(self.card["9F26"]) != 8:
            raise CardError(f"{purpose}: CID, ATC or cryptogram of a wrong length")
        got = cid_type(self.card["9F27"][0])
        if got == 0xC0:
            raise CardError(f"{purpose}: cryptogram type RFU")
        order = {CID_AAC: 0, CID_ARQC: 1, CID_TC: 2}  # Book 3 §9.3: never above what was asked
        if order[got] > order[requested] or (dol_tag == "8D" and got == CID_ARQC):
            names = {CID_AAC: "AAC", CID_TC: "TC", CID_ARQC: "ARQC"}
            raise CardError(f"{purpose}: card returned {names[got]} when {names[requested]} was requested")
        return got

    def _verify_cda(self, template: Tlv, cdol_data: bytes) -> None:
        """Book 2 §6.6.2: recover the SDAD, check CID and the transaction data hash, take the AC from it.
        On failure the cryptogram is treated as an AAC and TVR "CDA failed" is set (Book 3 §10.8)."""
        assert self._icc_key is not None
        others = b"".join(o.to_bytes() for o in template.children or () if o.tag != "9F4B")
        tx_hash = oda.cda_hash(self._pdol_data, cdol_data, others)
        cid = self.card["9F27"]
        ac, failure = oda.verify_cda(self._icc_key, self.card["9F4B"], self.term["9F37"], cid, tx_hash)
        if ac is None:
            self.tvr.set(TVR_CDA_FAILED)
            self._oda_failure = failure
            self.card["9F27"] = bytes((cid[0] & 0x3F,))  # AAC
            self.card["9F26"] = bytes(8)
            return
        self.card["9F26"] = ac

    # -- contact flow ------------------------------------------------------------------------------------

    def _contact(self) -> Generator[Event, Answer, Outcome]:
        yield from self._read_records()
        self._mandatory(("5F24", "5A", "8C", "8D"))
        for tag in ("8C", "8D"):
            parse_dol(self.card[tag])
        ec_code = self.card.get("9F74")
        self._ec = (
            self.term.get("9F7A") == b"\x01"
            and ec_code == EC_AUTH_CODE
            and self.txn.kind is TransactionKind.PURCHASE
        )
        yield from self._oda_contact()
        self._restrictions()
        yield from self._cvm()
        yield from self._risk_management()
        requested = self._action_analysis()
        self.tsi.set(TSI_CARD_RISK_MANAGEMENT)
        got = yield from self._generate_ac(requested, "8C", "GENERATE AC 1")
        if got == CID_TC:
            return self._finish(
                OutcomeKind.APPROVED_OFFLINE, "EC offline approval" if self._ec else "offline approval"
            )
        if got == CID_AAC:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "card declined offline (AAC)")
        return (yield from self._online_contact())

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
            expiry=self.card.get("5F24", b"").hex()[:4],
        )

    def _online_contact(self) -> Generator[Event, Answer, Outcome]:
        if not self.config.online_capable:
            return (yield from self._unable_online())
        answer = yield GoOnline(self._online_request())
        if not isinstance(answer, OnlineResponse) or answer.unable_to_go_online:
            return (yield from self._unable_online())
        rc = answer.response_code
        self.term["8A"] = rc.encode("ascii", "replace")[:2].ljust(2, b"0")
        if answer.authorization_code:
            self.term["89"] = answer.authorization_code
        if answer.issuer_authentication_data:
            self.term["91"] = answer.issuer_authentication_data
            yield from self._issuer_authentication(answer.issuer_authentication_data)
        scripts = tlv.decode(answer.scripts) if answer.scripts else []
        yield from self._scripts(scripts, "71")
        approve = rc in APPROVED_CODES
        got = yield from self._generate_ac(CID_TC if approve else CID_AAC, "8D", "GENERATE AC 2")
        yield from self._scripts(scripts, "72")
        if self._script_results:
            self.term["9F5B"] = self._script_results
        if self.txn.kind is TransactionKind.EC_LOAD and got == CID_TC:
            balance = yield from self._get_data("9F79")
            if balance is not None:
                self.card["9F79"] = balance
        if got == CID_TC:
            return self._finish(OutcomeKind.APPROVED_ONLINE, f"approved by the issuer ({rc})")
        if approve:
            return self._finish(OutcomeKind.DECLINED_ONLINE, "card declined after issuer approval")
        return self._finish(OutcomeKind.DECLINED_ONLINE, f"declined by the issuer ({rc})")

    def _unable_online(self) -> Generator[Event, Answer, Outcome]:
        """Book 3 §10.8: unable to go online — the default action codes decide (8A = Y3 / Z3)."""
        iac_default = self.card.get("9F0D", b"\xff" * 5)
        deny = self.tvr.intersects(self.config.tac_default) or self.tvr.intersects(iac_default)
        if self.txn.kind is TransactionKind.EC_LOAD:
            deny = True
        self.term["8A"] = b"Z3" if deny else b"Y3"
        got = yield from self._generate_ac(CID_AAC if deny else CID_TC, "8D", "GENERATE AC 2")
        if got == CID_TC:
            return self._finish(OutcomeKind.APPROVED_OFFLINE, "unable to go online; approved offline (Y3)")
        if deny:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "unable to go online; declined offline (Z3)")
        return self._finish(
            OutcomeKind.DECLINED_OFFLINE, "unable to go online; the card declined (AAC to Y3)"
        )

    def _issuer_authentication(self, data: bytes) -> Generator[Event, Answer, None]:
        if not self.card["82"][0] & AIP_ISSUER_AUTH:
            return
        if "91" in {t for t, _ in parse_dol(self.card["8D"])}:
            self.tsi.set(TSI_ISSUER_AUTH)  # the card checks 91 inside the second GENERATE AC
            return
        self.tsi.set(TSI_ISSUER_AUTH)
        command = bytes((0x00, 0x82, 0x00, 0x00, len(data))) + data
        _, sw = yield from self._apdu(command, "EXTERNAL AUTHENTICATE")
        if sw != 0x9000:
            self.tvr.set(TVR_ISSUER_AUTH_FAILED)

    def _scripts(self, objects: list[Tlv], template: str) -> Generator[Event, Answer, None]:
        """Book 3 §10.10: run the commands of each script; record 9F5B results; TVR on failure."""
        sent = 0
        for script in objects:
            if script.tag != template:
                continue
            self.tsi.set(TSI_SCRIPT)
            ident = b"\x00" * 4
            status, seq = 0x20, 0
            n = 0  # sequence number of the command within the script (Book 3 Annex A, 9F5B)
            for obj in script.children or ():
                if obj.tag == "9F18":
                    ident = obj.value[:4].rjust(4, b"\x00")
                    continue
                if obj.tag != "86":
                    continue
                n += 1
                sent += 1
                if sent > MAX_SCRIPT_COMMANDS:
                    status, seq = 0x10, min(n, 15)
                    break
                _, sw = yield from self._apdu(obj.value, f"issuer script {template}")
                if sw != 0x9000 and sw >> 8 not in (0x62, 0x63):
                    status, seq = 0x10, min(n, 15)
                    break
            if status == 0x10:
                self.tvr.set(TVR_SCRIPT_FAILED_BEFORE if template == "71" else TVR_SCRIPT_FAILED_AFTER)
            self._script_results += bytes((status | seq,)) + ident

    # -- qPBOC (JR/T 0025.12) ----------------------------------------------------------------------------

    def _qpboc(self) -> Generator[Event, Answer, Outcome]:
        self._mandatory(("82", "9F36", "9F26"))
        if "94" in self.card:
            yield from self._read_records()
        if "5A" not in self.card and "57" not in self.card:
            raise CardError("mandatory data missing: 5A or 57")
        cid = self.card.get("9F27")
        if cid is None:
            iad = self.card.get("9F10", b"")
            if len(iad) < 5:
                raise CardError("qPBOC: neither CID nor a readable CVR")
            cryptogram = {0: CID_AAC, 1: CID_TC, 2: CID_ARQC}.get((iad[4] >> 4) & 0x03, 0xC0)
        else:
            if len(cid) != 1:
                raise CardError("qPBOC: CID of a wrong length")
            cryptogram = cid_type(cid[0])
        if cryptogram == 0xC0:
            raise CardError("qPBOC: cryptogram type RFU")
        if cryptogram == CID_ARQC and self.config.offline_only:
            raise CardError(
                "card asked for an ARQC from an offline-only reader", OutcomeKind.DECLINED_OFFLINE
            )
        if cryptogram == CID_TC and self.term.get("9F66", b"\x00\x00")[1] & 0x80:
            raise CardError("card returned TC though an online cryptogram was required")
        ctq = self.card.get("9F6C", b"\x00\x00")
        pan = _pan_digits(self.card.get("5A", b"")) or self._track2_pan()
        if cryptogram == CID_AAC:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "card declined (AAC)")
        if cryptogram == CID_TC:
            self._ec = True
            reason = self._qpboc_offline_checks(pan)
            if reason is None:
                return self._finish(OutcomeKind.APPROVED_OFFLINE, "qPBOC offline approval (fDDA)")
            if ctq[0] & 0x20 and self.config.online_capable and TVR_DDA_FAILED in self.tvr:
                return (yield from self._qpboc_online())
            if ctq[0] & 0x10 and TVR_DDA_FAILED in self.tvr:
                return self._finish(OutcomeKind.TRY_ANOTHER_INTERFACE, reason)
            return self._finish(OutcomeKind.DECLINED_OFFLINE, reason)
        return (yield from self._qpboc_online())

    def _qpboc_offline_checks(self, pan: str) -> str | None:
        """Offline approval needs fDDA, an unexpired card and a card not on the deny list."""
        c = self.config
        if pan in c.exception_file.pans:
            self.tvr.set(TVR_CARD_ON_EXCEPTION_FILE)
            return "card on the exception file"
        if "5F24" in self.card and _date(self.card["5F24"], "5F24") < self.txn.now.date():
            self.tvr.set(TVR_EXPIRED)
            return "expired card"
        if not self.card["82"][0] & AIP_DDA or "9F4B" not in self.card:
            self.tvr.set(TVR_ODA_NOT_PERFORMED)
            return "offline approval without fDDA"
        self.tsi.set(TSI_ODA)
        key, failure = oda.recover_icc_key(self._oda_context())
        if key is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
            return f"fDDA failed: {failure}"
        terminal = oda.fdda_data(
            self.term["9F37"], self.term["9F02"], self.term["5F2A"], self.card.get("9F69")
        )
        number, failure = oda.verify_dda(key, self.card["9F4B"], terminal)
        if number is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
            return f"fDDA failed: {failure}"
        self.term["9F4C"] = number
        return None

    def _qpboc_online(self) -> Generator[Event, Answer, Outcome]:
        ctq = self.card.get("9F6C", b"\x00\x00")
        if not self.config.online_capable:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "online required; reader is offline-only")
        if ctq[0] & 0x80 and self.config.pin_key:
            answer = yield RequestPin("online", self.txn.amount_fen)
            pin = answer.pin if isinstance(answer, PinEntry) else None
            if pin:
                pan = _pan_digits(self.card.get("5A", b"")) or self._track2_pan()
                self._pin_block = des.ecb_encrypt(self.config.pin_key, pin_block_iso0(pin, pan))
                self.tvr.set(TVR_ONLINE_PIN_ENTERED)
            else:
                self.tvr.set(TVR_PIN_NOT_ENTERED)
        answer = yield GoOnline(self._online_request())
        if not isinstance(answer, OnlineResponse) or answer.unable_to_go_online:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "unable to go online")
        self.term["8A"] = answer.response_code.encode("ascii", "replace")[:2]
        if answer.response_code in APPROVED_CODES:
            return self._finish(
                OutcomeKind.APPROVED_ONLINE, f"approved by the issuer ({answer.response_code})"
            )
        return self._finish(OutcomeKind.DECLINED_ONLINE, f"declined by the issuer ({answer.response_code})")

    # -- EC inquiries (JR/T 0025.13) ----------------------------------------------------------------------

    def _ec_balance(self) -> Generator[Event, Answer, Outcome]:
        balance = yield from self._get_data("9F79")
        if balance is None or len(balance) != 6:
            raise CardError("the application has no EC balance (GET DATA 9F79)")
        self.card["9F79"] = balance
        for tag in ("9F77", "9F78", "9F6D"):
            value = yield from self._get_data(tag)
            if value is not None:
                self.card[tag] = value
        return self._finish(OutcomeKind.COMPLETED, "EC balance", ec_balance_fen=_bcd_to_int(balance))

    def _read_log(self, fci: dict[str, bytes]) -> Generator[Event, Answer, Outcome]:
        load = self.txn.kind is TransactionKind.LOAD_LOG
        entry_tag, format_tag = ("DF4D", "DF4F") if load else ("9F4D", "9F4F")
        entry = fci.get(entry_tag)
        if entry is None or len(entry) != 2 or not 11 <= entry[0] <= 30:
            raise CardError(f"no log entry ({entry_tag}) in the FCI")
        sfi, count = entry[0], min(entry[1], MAX_LOG_RECORDS)
        if self.txn.log_records:
            count = min(count, self.txn.log_records)
        fmt = yield from self._get_data(format_tag)
        if fmt is None:
            raise CardError(f"log format {format_tag} unavailable")
        dol = parse_dol(fmt)
        entries: list[LogEntry] = []
        for record in range(1, count + 1):
            data, sw = yield from self._apdu(
                bytes((0x00, 0xB2, record, (sfi << 3) | 4, 0x00)), f"READ RECORD log #{record}"
            )
            if sw != 0x9000:
                break
            fields: list[tuple[str, bytes]] = []
            if load:  # JR/T 0025.13: P1P2 of the PUT DATA, balance before, balance after, then the format
                if len(data) < 14:
                    raise CardError(f"load-log record {record} too short")
                fields = [("P1P2", data[:2]), ("BEFORE", data[2:8]), ("AFTER", data[8:14])]
                data = data[14:]
            fields += list(split_dol_data(dol, data).items())
            entries.append(LogEntry(tuple(fields)))
        return self._finish(OutcomeKind.COMPLETED, f"{len(entries)} log records", logs=tuple(entries))
