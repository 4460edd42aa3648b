"""The emulated PBOC 2.0 citizen card: APDU in, APDU out, over a :class:`~citycard.chip.image.CardImage`.

Commands (ISO/IEC 7816-4 §7; EMV 4.3 Book 3 §6.5; JR/T 0025.5, .12, .13): SELECT (PSE, PPSE, applications,
first/next occurrence, partial names), READ RECORD, GET PROCESSING OPTIONS (contact, EC, qPBOC), GET DATA,
GENERATE AC (first and second), EXTERNAL AUTHENTICATE, INTERNAL AUTHENTICATE, GET CHALLENGE, VERIFY
(plaintext and enciphered offline PIN) and the issuer-script commands under secure messaging (PUT DATA,
APPLICATION BLOCK/UNBLOCK, CARD BLOCK, PIN CHANGE/UNBLOCK). The exact profile is ``docs/card-profile.md``.

Every command runs in one :class:`~citycard.chip.image.Transaction`: it is committed when the command
succeeds (or fails with a status word that records a change, such as a wrong PIN), and dropped otherwise,
so a refused command changes nothing. Which command is taken when is one table,
:mod:`citycard.chip.sequence`: out of sequence is ``6985`` before anything is read. :meth:`Card.transmit`
never raises for any input: malformed bytes get a status word. What leaves it is
:class:`~citycard.chip.image.PowerLoss`, raised by an injected fault hook to simulate tearing, and a bug of
the emulator itself (a move the sequence table does not allow, a ``KeyError``), raised rather than answered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from citycard.codec.apdu import SW, ApduError, CommandApdu, Ins
from citycard.codec.appfile import APP_FILE_SFI, APP_RECORD_LENGTH
from citycard.codec.dol import DolError, dol_data_length, parse_dol, split_dol_data
from citycard.codec.money import amount_from_bcd, bcd_amount
from citycard.codec.tlv import TlvError, decode, encode, encode_many
from citycard.crypto.cryptograms import (
    AC_DATA_LENGTHS,
    AC_DATA_TAGS,
    CVR_TAG,
    ScriptCommandError,
    ac_input,
    generate_ac,
    verify_arpc_method1,
    verify_script_mac,
)
from citycard.crypto.derivation import derive_pboc_session_key
from citycard.crypto.pin import (
    ChallengeMismatchError,
    PinBlockError,
    PinChangeFormat,
    decipher_offline_pin,
    decrypt_pin_change_data,
    pin_from_offline_block,
)
from citycard.crypto.rsa_cert import (
    cda_icc_dynamic_data,
    cda_transaction_data_hash,
    dda_icc_dynamic_data,
    fdda_terminal_data,
    sign_dynamic_data,
)

from . import pboc
from .image import (
    APPS_CELL,
    SCRIPTS_CELL,
    TRANSIT_CELL,
    Application,
    CardImage,
    FaultHook,
    PowerLoss,
    Transaction,
    cell_key,
)
from .sequence import COMMANDS, Phase, Step, next_phase

__all__ = ["Card", "CardError", "Interface"]

Interface = Literal["contact", "contactless"]
Response = tuple[bytes, int]

_EC_TAGS = {"9F79": "ec_balance", "9F77": "ec_limit", "9F78": "ec_single_limit", "9F6D": "ec_reset_threshold"}
_CURRENCY_TAG = "9F51"
_MAX_ATC = 0xFFFF
_ISO = frozenset({0x00})
_PROPRIETARY = frozenset({0x80})
_SM = frozenset({0x84, 0x04})
"""Issuer-script commands: EMV's proprietary class with secure messaging (``84``), or the interindustry
class with proprietary secure messaging (``04``) that the PBOC EC load script ``04DA9F790A…`` uses."""
_CLASSES = _ISO | _PROPRIETARY | _SM
_DYNAMIC_TAGS = frozenset({*_EC_TAGS, "9F36", "9F13", "9F17"})
"""Tags whose values come from non-volatile cells: records holding them are built at each READ RECORD."""


class CardError(Exception):
    """A command refused with status word ``sw``; ``commit`` keeps the writes staged so far (e.g. a wrong
    PIN decrements the try counter)."""

    def __init__(self, sw: int, *, commit: bool = False) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw
        self.commit = commit


@dataclass
class _Session:
    """Volatile state of one transaction with the selected application (cleared on reset and SELECT)."""

    phase: Phase = Phase.IDLE  # which commands are taken now (``sequence.COMMANDS``)
    aid: bytes | None = None
    df: str | None = None  # "pse", "ppse" or "app"
    selected_name: bytes = b""
    selected_index: int = -1
    path: str = ""  # "standard", "ec" or "qpboc"
    aip: bytes = b""
    atc: int = 0
    terminal: dict[str, bytes] = field(default_factory=dict)
    cvr: pboc.Cvr = field(default_factory=pboc.Cvr)
    pin_verified: bool = False
    challenge: bytes | None = None
    arqc: bytes = b""
    issuer_auth: bool | None = None  # None: not performed
    ec_loaded: bool = False
    capp_cache: dict[int, bytes] = field(default_factory=dict)  # UPDATE CAPP DATA CACHE, for the GPO
    pdol_data: bytes = b""
    cdol_data: bytes = b""  # CDOL1 data, then ‖ CDOL2 data (CDA transaction data hash)


class Card:
    """One emulated card. ``rng(n)`` returns ``n`` random bytes (GET CHALLENGE, ICC dynamic numbers);
    ``fault`` is called with a label before every write to non-volatile memory (tests raise
    :class:`~citycard.chip.image.PowerLoss` from it)."""

    def __init__(self, image: CardImage, rng: Callable[[int], bytes], fault: FaultHook | None = None) -> None:
        self.image = image
        self._rng = rng
        self.fault = fault
        self._powered = False
        self._interface: Interface = "contact"
        self._s = _Session()
        self._fci_cache: dict[tuple[bytes, str], bytes] = {}
        self._static_records: dict[tuple[bytes, int, int], bytes] = {}
        self._handlers: dict[int, tuple[frozenset[int], Callable[[CommandApdu, Transaction], Response]]] = {
            Ins.SELECT: (_ISO, self._select),
            Ins.READ_RECORD: (_ISO, self._read_record),
            Ins.GET_PROCESSING_OPTIONS: (_PROPRIETARY, self._gpo),
            Ins.GET_DATA: (_PROPRIETARY, self._get_data),
            Ins.GENERATE_AC: (_PROPRIETARY, self._generate_ac),
            Ins.EXTERNAL_AUTHENTICATE: (_ISO, self._external_authenticate),
            Ins.INTERNAL_AUTHENTICATE: (_ISO, self._internal_authenticate),
            Ins.GET_CHALLENGE: (_ISO, self._get_challenge),
            Ins.VERIFY: (_ISO, self._verify),
            Ins.PUT_DATA: (_SM, self._put_data),
            Ins.APPLICATION_BLOCK: (_SM, self._application_block),
            Ins.APPLICATION_UNBLOCK: (_SM, self._application_unblock),
            Ins.CARD_BLOCK: (_SM, self._card_block),
            Ins.PIN_CHANGE_UNBLOCK: (_SM, self._pin_change_unblock),
            Ins.UPDATE_CAPP_DATA_CACHE: (_PROPRIETARY, self._update_capp_data_cache),
            Ins.UPDATE_RECORD: (_SM, self._update_record),
        }
        assert self._handlers.keys() == COMMANDS.keys(), "every command the card takes has its phases"

    # -- power ---------------------------------------------------------------------------------------
    def power_on(self, interface: Interface = "contact") -> bytes:
        """Cold reset: recover the anti-tearing journal, clear volatile state, return the ATR."""
        if interface not in ("contact", "contactless"):
            raise ValueError(f"interface must be 'contact' or 'contactless', not {interface!r}")
        self.image.recover()
        self._interface = interface
        self._s = _Session()
        self._powered = True
        return pboc.ATR_CONTACT if interface == "contact" else pboc.ATR_CONTACTLESS

    def power_off(self) -> None:
        self._powered = False
        self._s = _Session()

    @property
    def interface(self) -> Interface:
        return self._interface

    @property
    def phase(self) -> Phase:
        """Where the session stands: which commands the card takes now (:mod:`citycard.chip.sequence`)."""
        return self._s.phase

    # -- APDU ----------------------------------------------------------------------------------------
    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; the response APDU (data ‖ SW1 SW2). Never raises for any bytes.

        A :class:`~citycard.chip.image.PowerLoss` from the fault hook leaves the card unpowered (until the
        next :meth:`power_on`, which recovers the journal) and propagates.
        """
        try:
            data, sw = self._process(bytes(apdu))
        except PowerLoss:
            self.power_off()
            raise
        return data + sw.to_bytes(2, "big")

    def _process(self, raw: bytes) -> Response:
        if not self._powered:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        try:
            cmd = CommandApdu.parse(raw)
        except ApduError as exc:
            return b"", exc.sw
        if cmd.extended:
            return b"", SW.WRONG_LENGTH
        entry = self._handlers.get(cmd.ins)
        if cmd.cla not in _CLASSES:
            return b"", SW.CLA_NOT_SUPPORTED
        if entry is None:
            return b"", SW.INS_NOT_SUPPORTED
        classes, handler = entry
        if cmd.cla not in classes:
            return b"", SW.CLA_NOT_SUPPORTED
        if self.image.get_bool("card.blocked"):
            return b"", SW.FUNCTION_NOT_SUPPORTED
        if self._s.phase not in COMMANDS[cmd.ins]:  # out of sequence: refused before anything is read
            return b"", SW.CONDITIONS_NOT_SATISFIED
        txn = self.image.begin(self.fault)
        try:
            response = handler(cmd, txn)
        except CardError as exc:
            if exc.commit:
                txn.commit()
            return b"", exc.sw
        except ValueError:  # data the card cannot read (TlvError, DolError, …); a KeyError is its bug, raised
            return b"", SW.NO_PRECISE_DIAGNOSIS
        txn.commit()
        return response

    # -- helpers -------------------------------------------------------------------------------------
    def _app(self) -> Application:
        """The selected application: only called by commands taken once one is (``sequence.COMMANDS``)."""
        assert self._s.df == "app" and self._s.aid is not None, f"no application in {self._s.phase}"
        app = self.image.application(self._s.aid)
        assert app is not None
        return app

    def _key(self, name: str) -> str:
        assert self._s.aid is not None
        return _cell_key(self._s.aid, name)

    def _need_p1p2(self, cmd: CommandApdu, p1: int = 0, p2: int = 0) -> None:
        if cmd.p1 != p1 or cmd.p2 != p2:
            raise CardError(SW.INCORRECT_P1P2)

    def _candidates(self) -> list[tuple[bytes, str]]:
        names: list[tuple[bytes, str]] = []
        if self._interface == "contact":
            names.append((pboc.PSE_NAME, "pse"))
        else:
            names.append((pboc.PPSE_NAME, "ppse"))
        for app in self.image.applications:
            if self._interface == "contact" or app.contactless:
                names.append((app.aid, "app"))
        return names

    def _dir_apps(self) -> list[Application]:
        apps = [a for a in self.image.applications if self._interface == "contact" or a.contactless]
        return sorted(apps, key=lambda a: a.priority)

    # -- SELECT --------------------------------------------------------------------------------------
    def _select(self, cmd: CommandApdu, txn: Transaction) -> Response:
        if cmd.p1 == 0x00:
            raise CardError(SW.FILE_NOT_FOUND)  # selection by file identifier: no such file here
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x02):
            raise CardError(SW.INCORRECT_P1P2)
        name = cmd.data
        if not 1 <= len(name) <= 16:
            raise CardError(SW.WRONG_LENGTH)
        candidates = self._candidates()
        start = 0
        if cmd.p2 == 0x02 and self._s.selected_name == name:
            start = self._s.selected_index + 1
        for index in range(start, len(candidates)):
            full, kind = candidates[index]
            if full.startswith(name):
                return self._select_file(full, kind, name, index, txn)
        raise CardError(SW.FILE_NOT_FOUND)

    def _select_file(self, full: bytes, kind: str, name: bytes, index: int, txn: Transaction) -> Response:
        step = Step.SELECT_APPLICATION if kind == "app" else Step.SELECT_DIRECTORY
        session = _Session(
            phase=next_phase(self._s.phase, step), selected_name=name, selected_index=index, df=kind
        )
        if kind == "pse":
            a5 = encode_many([("88", b"\x01"), ("5F2D", b"zhen"), ("9F11", b"\x01")])
            fci = encode("6F", encode("84", full) + encode("A5", a5))
        elif kind == "ppse":
            entries = b"".join(encode("61", self._dir_entry(app)) for app in self._dir_apps())
            fci = encode("6F", encode("84", full) + encode("A5", encode("BF0C", entries)))
        else:
            session.aid = full
            app = self.image.application(full)
            assert app is not None
            fci = self._app_fci(app)
        self._s = session
        if kind == "app" and txn.get_bool(cell_key(full, "blocked")):
            return fci, SW.WARNING_SELECTED_FILE_INVALIDATED
        return fci, SW.OK

    @staticmethod
    def _dir_entry(app: Application) -> bytes:
        return encode_many([("4F", app.aid), ("50", app.label.encode()), ("87", bytes((app.priority,)))])

    def _app_fci(self, app: Application) -> bytes:
        key = (app.aid, self._interface)
        fci = self._fci_cache.get(key)
        if fci is None:
            fci = self._fci_cache[key] = self._build_fci(app)
        return fci

    def _build_fci(self, app: Application) -> bytes:
        pdol = pboc.PDOL_CONTACT if self._interface == "contact" else pboc.PDOL_CONTACTLESS
        logs = [("9F4D", bytes((pboc.TXN_LOG_SFI, app.log_records)))]
        if app.ec:
            logs.append(("DF4D", bytes((pboc.LOAD_LOG_SFI, app.log_records))))
        a5 = encode_many(
            [
                ("50", app.label.encode()),
                ("87", bytes((app.priority,))),
                ("9F38", pdol),
                ("5F2D", b"zhen"),
                ("9F11", b"\x01"),
                ("BF0C", encode_many(logs)),
            ]
        )
        return encode("6F", encode("84", app.aid) + encode("A5", a5))

    # -- READ RECORD ---------------------------------------------------------------------------------
    def _read_record(self, cmd: CommandApdu, txn: Transaction) -> Response:
        if cmd.p2 & 0x07 != 0x04:
            raise CardError(SW.INCORRECT_P1P2)
        sfi, number = cmd.p2 >> 3, cmd.p1
        if cmd.data:
            raise CardError(SW.WRONG_LENGTH)
        if self._s.df == "pse" and sfi == 1:
            apps = self._dir_apps()
            if not 1 <= number <= len(apps):
                raise CardError(SW.RECORD_NOT_FOUND)
            return encode("70", encode("61", self._dir_entry(apps[number - 1]))), SW.OK
        if self._s.df != "app":
            raise CardError(SW.FILE_NOT_FOUND)
        app = self._app()
        if sfi == APP_FILE_SFI and self._key(APPS_CELL) in self.image.nvm:
            app_records = txn.get_list(self._key(APPS_CELL))
            if not 1 <= number <= len(app_records):
                raise CardError(SW.RECORD_NOT_FOUND)
            return bytes.fromhex(app_records[number - 1]), SW.OK
        if sfi == pboc.TRANSIT_SFI and self._key(TRANSIT_CELL) in self.image.nvm:
            transit = txn.get_list(self._key(TRANSIT_CELL))
            if not 1 <= number <= len(transit):
                raise CardError(SW.RECORD_NOT_FOUND)
            return bytes.fromhex(transit[number - 1]), SW.OK
        if sfi == pboc.TXN_LOG_SFI or (sfi == pboc.LOAD_LOG_SFI and app.ec):
            log = txn.get_list(self._key("txn_log" if sfi == pboc.TXN_LOG_SFI else "load_log"))
            if not 1 <= number <= len(log):
                raise CardError(SW.RECORD_NOT_FOUND)
            return bytes.fromhex(log[number - 1]), SW.OK
        records = app.records.get(sfi)
        if records is None:
            raise CardError(SW.FILE_NOT_FOUND)
        if not 1 <= number <= len(records):
            raise CardError(SW.RECORD_NOT_FOUND)
        tags = records[number - 1]
        cache_key = (app.aid, sfi, number)
        cached = self._static_records.get(cache_key)
        if cached is not None:
            return cached, SW.OK
        items = [(tag, v) for tag in tags if (v := self._value(app, tag, txn)) is not None]
        record = encode("70", encode_many(items))
        if not _DYNAMIC_TAGS.intersection(tags):
            self._static_records[cache_key] = record
        return record, SW.OK

    def _value(self, app: Application, tag: str, txn: Transaction) -> bytes | None:
        """A data object's current value: a cell for the dynamic ones, else the static data."""
        if tag in _EC_TAGS and app.ec:
            return bcd_amount(txn.get_int(cell_key(app.aid, _EC_TAGS[tag])))
        if tag == "9F36":
            return txn.get_int(cell_key(app.aid, "atc")).to_bytes(2, "big")
        if tag == "9F13":
            return txn.get_int(cell_key(app.aid, "last_online_atc")).to_bytes(2, "big")
        if tag == "9F17":
            return bytes((txn.get_int("pin.tries"),))
        if tag == "9F4F":
            return pboc.TXN_LOG_FORMAT
        if tag == "DF4F" and app.ec:
            return pboc.LOAD_LOG_FORMAT
        return app.data.get(tag)

    # -- GET DATA ------------------------------------------------------------------------------------
    _GET_DATA_TAGS = frozenset(
        {"9F79", "9F77", "9F78", "9F6D", "9F51", "9F36", "9F13", "9F17", "9F4F", "DF4F"}
    )

    def _get_data(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        tag = f"{cmd.p1:02X}{cmd.p2:02X}"
        if cmd.data:
            raise CardError(SW.WRONG_LENGTH)
        value = self._value(app, tag, txn) if tag in self._GET_DATA_TAGS else None
        if value is None:
            raise CardError(SW.REFERENCED_DATA_NOT_FOUND)
        return encode(tag, value), SW.OK

    # -- GET PROCESSING OPTIONS ----------------------------------------------------------------------
    def _gpo(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        self._need_p1p2(cmd)
        try:
            objects = decode(cmd.data)
        except TlvError:
            raise CardError(SW.WRONG_DATA) from None
        if len(objects) != 1 or objects[0].tag != "83":
            raise CardError(SW.WRONG_DATA)
        pdol = pboc.PDOL_CONTACT if self._interface == "contact" else pboc.PDOL_CONTACTLESS
        try:
            terminal = split_dol_data(pdol, objects[0].value)
        except DolError:
            raise CardError(SW.WRONG_LENGTH) from None
        qpboc = False
        if self._interface == "contactless":
            ttq = terminal["9F66"]
            qpboc = bool(ttq[0] & 0x20)
            if not qpboc and not ttq[0] & 0x40:
                raise CardError(SW.CONDITIONS_NOT_SATISFIED)
        atc_key = self._key("atc")
        atc = txn.get_int(atc_key)
        if atc >= _MAX_ATC:
            raise CardError(SW.CONDITIONS_NOT_SATISFIED)
        atc += 1
        txn.put(atc_key, atc)
        s = self._s
        s.terminal, s.atc = dict(terminal), atc
        s.pdol_data = objects[0].value
        s.cvr = self._initial_cvr(txn)
        if qpboc:
            return self._qpboc(app, txn)
        ec = terminal.get("9F7A") == b"\x01" and self._ec_fits(app, txn, terminal)
        s.path, s.aip = ("ec" if ec else "standard"), self._aip(app)
        s.phase = next_phase(s.phase, Step.PROCESSING_OPTIONS)
        if app.gpo_format == 2:
            return encode("77", encode_many([("82", s.aip), ("94", pboc.afl(ec=ec))])), SW.OK
        return encode("80", s.aip + pboc.afl(ec=ec)), SW.OK

    @staticmethod
    def _aip(app: Application) -> bytes:
        """The personalised AIP (``82``): the one the static data signature covers, on both interfaces."""
        return app.data.get("82", pboc.AIP_CONTACT)

    def _initial_cvr(self, txn: Transaction) -> pboc.Cvr:
        """The CVR's "last online transaction" bits: incomplete, issuer authentication failed, and (a card
        with the cell) the issuer script commands processed and failed then (byte 3 bits 8-4)."""
        last = txn.get_int(self._key(SCRIPTS_CELL)) if self._key(SCRIPTS_CELL) in self.image.nvm else 0
        return pboc.Cvr(
            last_online_incomplete=txn.get_bool(self._key("online_pending")),
            last_issuer_auth_failed=txn.get_bool(self._key("issuer_auth_failed")),
            pin_try_limit_exceeded=txn.get_int("pin.tries") == 0,
            scripts_processed=last >> 4,
            script_failed=bool(last & 0x08),
        )

    def _online_started(self, txn: Transaction) -> None:
        """An ARQC: this is now the last online transaction, no script of it processed yet."""
        if self._key(SCRIPTS_CELL) in self.image.nvm:
            txn.put(self._key(SCRIPTS_CELL), 0)

    def _ec_fits(self, app: Application, txn: Transaction, terminal: dict[str, bytes]) -> bool:
        """EC offline approval possible: EC application, not blocked, right currency, amount within limits."""
        if not app.ec or txn.get_bool(self._key("blocked")):
            return False
        if terminal.get("5F2A") != app.data.get(_CURRENCY_TAG):
            return False
        try:
            amount = amount_from_bcd(terminal.get("9F02", b""))
        except ValueError:
            return False
        balance = txn.get_int(self._key("ec_balance"))
        if amount == 0:  # a tap that moves no money but writes the transit file (UPDATE CAPP DATA CACHE)
            return bool(self._s.capp_cache) and self._interface == "contactless"
        return 0 < amount <= balance and amount <= txn.get_int(self._key("ec_single_limit"))

    def _qpboc(self, app: Application, txn: Transaction) -> Response:
        s = self._s
        s.path, s.aip = "qpboc", self._aip(app)
        ttq = s.terminal["9F66"]
        online_capable = not ttq[0] & 0x08
        offline = not ttq[1] & 0x80 and self._ec_fits(app, txn, s.terminal)
        cid = pboc.CID_TC if offline else (pboc.CID_ARQC if online_capable else pboc.CID_AAC)
        ctq = 0x20 if online_capable else 0x00
        if cid == pboc.CID_ARQC and ttq[0] & 0x04:
            ctq |= 0x80
        ctq_bytes = bytes((ctq, 0x00))
        if cid == pboc.CID_TC:
            self._debit(app, txn)
            self._commit_capp_cache(txn)
        s.capp_cache = {}
        s.phase = next_phase(s.phase, Step.QPBOC_ARQC if cid == pboc.CID_ARQC else Step.QPBOC_OFFLINE)
        s.cvr.first_ac = cid
        cryptogram, iad = self._cryptogram(app, txn)
        if cid == pboc.CID_ARQC:
            s.arqc = cryptogram  # no second GENERATE AC follows in qPBOC: nothing left pending
            self._online_started(txn)
        balance = txn.get_int(self._key("ec_balance")) if app.ec else 0
        items = [
            ("82", s.aip),
            ("94", pboc.afl(ec=False)),
            ("9F36", s.atc.to_bytes(2, "big")),
            ("9F10", iad),
            ("9F26", cryptogram),
            ("9F27", bytes((cid,))),
            ("57", app.data["57"]),
            ("5F34", app.data["5F34"]),
            ("9F6C", ctq_bytes),
            ("9F5D", bcd_amount(balance)),
        ]
        if cid == pboc.CID_TC and app.icc_key is not None:
            card_un = self._rng(4)
            auth_data = b"\x01" + card_un + ctq_bytes
            terminal_data = fdda_terminal_data(
                s.terminal["9F37"], s.terminal["9F02"], s.terminal["5F2A"], auth_data
            )
            items += [("9F69", auth_data), ("9F4B", self._sign_dynamic(app, terminal_data))]
            s.cvr.dda_performed = True
        return encode("77", encode_many(items)), SW.OK

    # -- cryptograms ---------------------------------------------------------------------------------
    def _debit(self, app: Application, txn: Transaction) -> None:
        """EC offline purchase: debit the balance and log it (staged with the rest of the command)."""
        amount = amount_from_bcd(self._s.terminal["9F02"])
        balance_key = self._key("ec_balance")
        balance = txn.get_int(balance_key)
        assert 0 < amount <= balance or (amount == 0 and self._s.capp_cache)
        txn.put(balance_key, balance - amount)
        self._log(app, txn, "txn_log", pboc.txn_log_record(self._s.terminal, self._s.atc))

    # -- UPDATE CAPP DATA CACHE (transit file) ----------------------------------------------------------
    def _update_capp_data_cache(self, cmd: CommandApdu, txn: Transaction) -> Response:
        """Stage a record of the transit file (``80 DE`` record ``P1``, ``P2`` = SFI 21 ‖ ``100``) for the
        GPO: written with the debit of an offline approval (TC), dropped otherwise (docs/transit.md)."""
        if self._interface != "contactless":
            raise CardError(SW.CONDITIONS_NOT_SATISFIED)
        if self._key(TRANSIT_CELL) not in self.image.nvm:
            raise CardError(SW.FILE_NOT_FOUND)
        if cmd.p2 != (pboc.TRANSIT_SFI << 3) | 0x04:
            raise CardError(SW.INCORRECT_P1P2)
        if cmd.p1 not in pboc.TRANSIT_WRITABLE:
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)
        if len(cmd.data) != pboc.TRANSIT_RECORD_LENGTHS[cmd.p1 - 1]:
            raise CardError(SW.WRONG_LENGTH)
        self._s.capp_cache[cmd.p1] = bytes(cmd.data)
        return b"", SW.OK

    def _update_record(self, cmd: CommandApdu, txn: Transaction) -> Response:
        """Issuer script UPDATE RECORD (``84 DC 01 AC Lc <8 bytes> <MAC>``) under secure messaging, in the
        online transaction that asked for it (after the ARQC, like PUT DATA): the issuer rewrites the
        transit file's concession record (record 1, SFI 21), e.g. a student's category renewed; or a record of
        the industry applications file (``84 DC <n> B4``, SFI 22, ``citycard.codec.appfile``)."""
        if cmd.p2 == (APP_FILE_SFI << 3) | 0x04:
            return self._update_app_record(cmd, txn)
        if self._key(TRANSIT_CELL) not in self.image.nvm:
            raise CardError(SW.FILE_NOT_FOUND)
        if cmd.p2 != (pboc.TRANSIT_SFI << 3) | 0x04 or cmd.p1 != 1:
            raise CardError(SW.INCORRECT_P1P2)
        value = self._script(cmd, pboc.TRANSIT_RECORD_LENGTHS[0], txn)
        key = self._key(TRANSIT_CELL)
        records = txn.get_list(key)
        records[0] = value.hex().upper()
        txn.put(key, records)
        return b"", SW.OK

    def _update_app_record(self, cmd: CommandApdu, txn: Transaction) -> Response:
        key = self._key(APPS_CELL)
        if key not in self.image.nvm:
            raise CardError(SW.FILE_NOT_FOUND)
        records = txn.get_list(key)
        if not 1 <= cmd.p1 <= len(records):
            raise CardError(SW.RECORD_NOT_FOUND)
        value = self._script(cmd, APP_RECORD_LENGTH, txn)
        if value[0] != cmd.p1:  # record n holds application n (its id byte)
            raise CardError(SW.WRONG_DATA)
        records[cmd.p1 - 1] = value.hex().upper()
        txn.put(key, records)
        return b"", SW.OK

    def _commit_capp_cache(self, txn: Transaction) -> None:
        if not self._s.capp_cache:
            return
        key = self._key(TRANSIT_CELL)
        records = txn.get_list(key)
        for number, data in self._s.capp_cache.items():
            records[number - 1] = data.hex().upper()
        if len(records) > pboc.TRANSIT_LEGACY_RECORDS:  # the transit write counter (record 4): the card's own
            count = (int(records[3], 16) + 1) & 0xFFFF
            records[3] = f"{count:04X}"
        txn.put(key, records)

    def _log(self, app: Application, txn: Transaction, name: str, record: bytes) -> None:
        key = self._key(name)
        old = txn.get(key)
        assert isinstance(old, list), key
        txn.put(key, [record.hex().upper(), *old[: app.log_records - 1]])

    def _session_key(self, udk: bytes) -> bytes:
        return derive_pboc_session_key(udk, self._s.atc)

    def _cryptogram(self, app: Application, txn: Transaction) -> tuple[bytes, bytes]:
        """(AC, IAD) for the current session state (CVR, terminal data, ATC, EC balance)."""
        s = self._s
        sk = self._session_key(app.udk_ac)
        balance = txn.get_int(self._key("ec_balance")) if app.ec else 0
        atc = s.atc.to_bytes(2, "big")
        iad = pboc.build_iad(s.cvr.to_bytes(), balance, s.atc, sk)
        get = s.terminal.get
        parts = [get(tag, zeros) for tag, zeros in _AC_TERMINAL]
        parts += (s.aip, atc, iad[3:7])
        data = b"".join(parts)
        if len(data) != _AC_INPUT_LENGTH:  # only a misfit personalised AIP: ac_input says which
            values = {tag: get(tag, zeros) for tag, zeros in _AC_TERMINAL}
            values["82"], values["9F36"], values[CVR_TAG] = s.aip, atc, iad
            data = ac_input(values)
        return generate_ac(sk, data), iad

    def _ac_response(self, app: Application, cid: int, cryptogram: bytes, iad: bytes, cda: bool) -> Response:
        """Format 2; with CDA (EMV Book 2 §6.6.1) the AC travels inside the signed dynamic data ``9F4B``."""
        s = self._s
        cid_atc = _CID_TL + bytes((cid,)) + _ATC_TL + s.atc.to_bytes(2, "big")
        iad_tlv = _IAD_TL + iad if len(iad) == _IAD_LENGTH else encode("9F10", iad)
        if not cda or cid == pboc.CID_AAC or app.icc_key is None or not self._aip(app)[0] & 0x01:
            assert len(cryptogram) == 8
            body = cid_atc + _AC_TL + cryptogram + iad_tlv
            if len(body) < 0x80:  # BER-TLV short length: what encode("77", body) makes
                return _TEMPLATE_77 + bytes((len(body),)) + body, SW.OK
            return encode("77", body), SW.OK
        tx_hash = cda_transaction_data_hash(s.pdol_data, s.cdol_data, cid_atc + iad_tlv)
        dynamic = cda_icc_dynamic_data(self._rng(8), bytes((cid,)), cryptogram, tx_hash)
        sdad = sign_dynamic_data(app.icc_key, dynamic, s.terminal["9F37"])
        return encode("77", cid_atc + encode("9F4B", sdad) + iad_tlv), SW.OK

    # -- GENERATE AC ---------------------------------------------------------------------------------
    def _generate_ac(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        if cmd.p2 != 0 or cmd.p1 & 0xC0 == 0xC0 or cmd.p1 & 0x2F:  # bit 5 (10) asks for CDA
            raise CardError(SW.INCORRECT_P1P2)
        requested = cmd.p1 & 0xC0
        if self._s.phase is Phase.PROCESSING:
            return self._first_ac(app, cmd, requested, txn)
        return self._second_ac(app, cmd, requested, txn)  # ONLINE or AUTHENTICATED

    def _first_ac(self, app: Application, cmd: CommandApdu, requested: int, txn: Transaction) -> Response:
        s = self._s
        data = cmd.data
        if len(data) != _CDOL1_LENGTH:  # what split_dol_data(pboc.CDOL1, data) refuses
            raise CardError(SW.WRONG_LENGTH)
        s.terminal.update({tag: data[start:end] for tag, start, end in _CDOL1_PLAN})
        s.cdol_data = data
        blocked = txn.get_bool(self._key("blocked"))
        if requested == pboc.CID_AAC:
            cid = pboc.CID_AAC
        elif blocked:
            cid = pboc.CID_ARQC if requested == pboc.CID_ARQC else pboc.CID_AAC
        elif requested == pboc.CID_TC and s.path == "ec" and self._ec_fits(app, txn, s.terminal):
            cid = pboc.CID_TC
        else:
            cid = pboc.CID_ARQC
        if cid == pboc.CID_TC:
            self._debit(app, txn)
        s.phase = next_phase(s.phase, Step.FIRST_AC_ARQC if cid == pboc.CID_ARQC else Step.FIRST_AC_OFFLINE)
        s.cvr.first_ac = cid
        cryptogram, iad = self._cryptogram(app, txn)
        if cid == pboc.CID_ARQC:
            s.arqc = cryptogram
            txn.put(self._key("online_pending"), True)
            self._online_started(txn)
        return self._ac_response(app, cid, cryptogram, iad, bool(cmd.p1 & 0x10))

    def _second_ac(self, app: Application, cmd: CommandApdu, requested: int, txn: Transaction) -> Response:
        s = self._s
        if requested == pboc.CID_ARQC:
            raise CardError(SW.INCORRECT_P1P2)
        try:
            cdol2 = split_dol_data(pboc.CDOL2, cmd.data)
        except DolError:
            raise CardError(SW.WRONG_LENGTH) from None
        auth_data = cdol2.pop("91")
        s.terminal.update(cdol2)
        s.cdol_data += cmd.data
        if any(auth_data):
            sk = self._session_key(app.udk_ac)
            s.issuer_auth = verify_arpc_method1(sk, s.arqc, auth_data[8:], auth_data[:8])
        s.cvr.issuer_auth_failed = s.issuer_auth is False
        approved = cdol2["8A"] in pboc.APPROVED_ARCS and s.issuer_auth is not False
        blocked = txn.get_bool(self._key("blocked"))
        cid = pboc.CID_TC if requested == pboc.CID_TC and approved and not blocked else pboc.CID_AAC
        s.phase = next_phase(s.phase, Step.SECOND_AC)
        s.cvr.second_ac = cid
        txn.put(self._key("online_pending"), False)
        txn.put(self._key("issuer_auth_failed"), s.issuer_auth is False)
        if cid == pboc.CID_TC:
            txn.put(self._key("last_online_atc"), s.atc)
            self._log(app, txn, "txn_log", pboc.txn_log_record(s.terminal, s.atc))
        cryptogram, iad = self._cryptogram(app, txn)
        return self._ac_response(app, cid, cryptogram, iad, bool(cmd.p1 & 0x10))

    def _external_authenticate(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        s = self._s
        self._need_p1p2(cmd)
        if len(cmd.data) != 10:
            raise CardError(SW.WRONG_LENGTH)
        s.phase = next_phase(s.phase, Step.ISSUER_AUTHENTICATION)  # once, whether it passes or not
        sk = self._session_key(app.udk_ac)
        s.issuer_auth = verify_arpc_method1(sk, s.arqc, cmd.data[8:], cmd.data[:8])
        if not s.issuer_auth:
            s.cvr.issuer_auth_failed = True
            raise CardError(0x6300)
        return b"", SW.OK

    # -- INTERNAL AUTHENTICATE, GET CHALLENGE ---------------------------------------------------------
    def _internal_authenticate(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        self._need_p1p2(cmd)
        if app.icc_key is None:
            raise CardError(SW.CONDITIONS_NOT_SATISFIED)
        if len(cmd.data) != dol_data_length(pboc.DDOL):
            raise CardError(SW.WRONG_LENGTH)
        signature = self._sign_dynamic(app, cmd.data)
        self._s.cvr.dda_performed = True
        return encode("80", signature), SW.OK

    def _sign_dynamic(self, app: Application, terminal_data: bytes) -> bytes:
        """Signed dynamic application data (EMV Book 2 §6.5.1, format 05, SHA-1); the ICC dynamic number is
        8 bytes from the card's random source."""
        assert app.icc_key is not None
        return sign_dynamic_data(app.icc_key, dda_icc_dynamic_data(self._rng(8)), terminal_data)

    def _get_challenge(self, cmd: CommandApdu, txn: Transaction) -> Response:
        self._need_p1p2(cmd)
        if cmd.data or cmd.le != 8:
            raise CardError(SW.WRONG_LENGTH)
        challenge = self._rng(8)
        self._s.challenge = challenge
        return challenge, SW.OK

    # -- VERIFY --------------------------------------------------------------------------------------
    def _verify(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        s = self._s
        if cmd.p1 != 0 or cmd.p2 not in (0x80, 0x88):
            raise CardError(SW.INCORRECT_P1P2)
        tries = txn.get_int("pin.tries")
        if tries == 0:
            raise CardError(SW.AUTH_METHOD_BLOCKED)
        challenge, s.challenge = s.challenge, None
        try:
            if cmd.p2 == 0x80:
                if len(cmd.data) != 8:
                    raise CardError(SW.WRONG_LENGTH)
                pin = pin_from_offline_block(cmd.data)
            else:
                if app.icc_key is None:
                    raise CardError(SW.CONDITIONS_NOT_SATISFIED)
                if challenge is None:  # no GET CHALLENGE before: the random number is not valid
                    raise CardError(SW.REFERENCED_DATA_INVALIDATED)
                if len(cmd.data) != app.icc_key.size:
                    raise CardError(SW.WRONG_LENGTH)
                pin = decipher_offline_pin(cmd.data, app.icc_key, challenge)
        except ChallengeMismatchError:
            raise CardError(SW.REFERENCED_DATA_INVALIDATED) from None
        except PinBlockError:
            raise CardError(SW.WRONG_DATA) from None
        s.cvr.pin_performed = True
        if pin == txn.get("pin.value"):
            txn.put("pin.tries", self.image.pin_try_limit)
            s.pin_verified, s.cvr.pin_failed = True, False
            return b"", SW.OK
        tries -= 1
        txn.put("pin.tries", tries)
        s.pin_verified, s.cvr.pin_failed = False, True
        s.cvr.pin_try_limit_exceeded = tries == 0
        raise CardError(0x63C0 | tries, commit=True)

    # -- issuer scripts ------------------------------------------------------------------------------
    def _script(self, cmd: CommandApdu, data_length: int, txn: Transaction) -> bytes:
        """Check the secure-messaging MAC of a script command; its data without the MAC."""
        app = self._app()
        s = self._s
        if len(cmd.data) != data_length + 4:
            raise CardError(SW.WRONG_LENGTH)
        raw = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data))) + cmd.data
        try:
            ok = verify_script_mac(self._session_key(app.udk_mac), raw, s.atc, s.arqc)
        except ScriptCommandError:
            ok = False
        counted = self._key(SCRIPTS_CELL)
        if counted not in self.image.nvm:  # a card without the cell counts in this session's CVR
            if not ok:
                s.cvr.script_failed = True
                raise CardError(SW.SM_DATA_OBJECTS_INCORRECT)
            s.cvr.scripts_processed += 1
            return cmd.data[:data_length]
        last = txn.get_int(counted)  # written with the command's own effect (or alone, when it fails)
        if not ok:
            txn.put(counted, last | 0x08)
            raise CardError(SW.SM_DATA_OBJECTS_INCORRECT, commit=True)
        txn.put(counted, min((last >> 4) + 1, 15) << 4 | last & 0x08)
        return cmd.data[:data_length]

    def _put_data(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        tag = f"{cmd.p1:02X}{cmd.p2:02X}"
        if tag not in _EC_TAGS or not app.ec:
            raise CardError(SW.REFERENCED_DATA_NOT_FOUND)
        if tag == "9F79" and self._s.ec_loaded:
            raise CardError(SW.CONDITIONS_NOT_SATISFIED)
        value = self._script(cmd, 6, txn)
        try:
            amount = amount_from_bcd(value)
        except ValueError:
            raise CardError(SW.WRONG_DATA) from None
        key = self._key(_EC_TAGS[tag])
        if tag == "9F79":
            if amount > txn.get_int(self._key("ec_limit")):
                raise CardError(SW.WRONG_DATA)
            before = txn.get_int(key)
            self._log(
                app, txn, "load_log", pboc.load_log_record(self._s.terminal, self._s.atc, before, amount)
            )
            self._s.ec_loaded = True
        txn.put(key, amount)
        return b"", SW.OK

    def _application_block(self, cmd: CommandApdu, txn: Transaction) -> Response:
        self._need_p1p2(cmd)
        self._script(cmd, 0, txn)
        txn.put(self._key("blocked"), True)
        return b"", SW.OK

    def _application_unblock(self, cmd: CommandApdu, txn: Transaction) -> Response:
        self._need_p1p2(cmd)
        self._script(cmd, 0, txn)
        txn.put(self._key("blocked"), False)
        return b"", SW.OK

    def _card_block(self, cmd: CommandApdu, txn: Transaction) -> Response:
        self._need_p1p2(cmd)
        self._script(cmd, 0, txn)
        txn.put("card.blocked", True)
        return b"", SW.OK

    def _pin_change_unblock(self, cmd: CommandApdu, txn: Transaction) -> Response:
        app = self._app()
        if cmd.p1 != 0 or cmd.p2 not in (0x00, 0x02):
            raise CardError(SW.INCORRECT_P1P2)
        if cmd.p2 == 0x00:
            self._script(cmd, 0, txn)
        else:
            enciphered = self._script(cmd, 8, txn)
            sk_enc = self._session_key(app.udk_enc)
            try:
                pin = decrypt_pin_change_data(sk_enc, enciphered, pin_format=PinChangeFormat.ISO2_ECB)
            except PinBlockError:
                raise CardError(SW.WRONG_DATA) from None
            txn.put("pin.value", pin)
        txn.put("pin.tries", self.image.pin_try_limit)
        return b"", SW.OK


_CID_TL, _ATC_TL, _AC_TL = (
    encode("9F27", b"\0")[:-1],
    encode("9F36", b"\0\0")[:-2],
    encode("9F26", bytes(8))[:-8],
)
"""Tag and length of the fixed-length objects of a GENERATE AC response (CID, ATC, AC), encoded once."""
_IAD_LENGTH = 19  # pboc.build_iad
_IAD_TL = encode("9F10", bytes(_IAD_LENGTH))[:-_IAD_LENGTH]
_TEMPLATE_77 = encode("77", b"")[:-1]
_CARD_AC_TAGS = frozenset({"82", "9F36", CVR_TAG})
_AC_TERMINAL: tuple[tuple[str, bytes], ...] = tuple(
    (tag, bytes(AC_DATA_LENGTHS[tag])) for tag in AC_DATA_TAGS if tag not in _CARD_AC_TAGS
)
"""Terminal data in the AC input (EMV Book 2 §8.1.1; :data:`~citycard.crypto.cryptograms.AC_DATA_TAGS`
less the card's own AIP, ATC and CVR), zeros when the terminal did not send them."""

_AC_INPUT_LENGTH = sum(AC_DATA_LENGTHS.values()) + 4  # the CVR with its length byte
assert [tag for tag, _ in _AC_TERMINAL] + ["82", "9F36", CVR_TAG] == list(AC_DATA_TAGS)
assert all(  # terminal values come only from these DOLs: each AC tag in them has its AC length
    length == AC_DATA_LENGTHS[tag]
    for dol in (pboc.PDOL_CONTACT, pboc.PDOL_CONTACTLESS, pboc.CDOL1, pboc.CDOL2)
    for tag, length in parse_dol(dol)
    if tag in AC_DATA_LENGTHS
)


def _cdol1_plan() -> tuple[tuple[str, int, int], ...]:
    plan, pos = [], 0
    for tag, length in parse_dol(pboc.CDOL1):
        plan.append((tag, pos, pos + length))
        pos += length
    return tuple(plan)


_CDOL1_PLAN = _cdol1_plan()
"""(tag, start, end) of each CDOL1 value in the first GENERATE AC's data, cut once."""
_CDOL1_LENGTH = _CDOL1_PLAN[-1][2]
assert len({tag for tag, _, _ in _CDOL1_PLAN}) == len(_CDOL1_PLAN)  # no tag twice (split_dol_data's rule)


@functools.lru_cache(maxsize=256)
def _cell_key(aid: bytes, name: str) -> str:
    """:func:`~citycard.chip.image.cell_key`, formatted once per (AID, name): a pure function of both."""
    return cell_key(aid, name)
