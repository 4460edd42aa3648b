"""The card image: all persistent state of one emulated card, and its anti-tearing journal.

A real PBOC card keeps its files, data objects, counters, keys and logs in EEPROM and protects every
command that writes more than one cell with a transaction journal, so that a card torn from the reader in
the middle of a command is, at its next reset, exactly as it was before the command or exactly as after
(JR/T 0025.5 leaves the mechanism to the card; EMV Book 3 §10 and ISO/IEC 7816-4 §5.1.3 ``65 81``
assume it). This module models that:

- :class:`CardImage` holds the **static** part (applications, their data objects, record layouts, UDKs and
  ICC RSA private key, PIN try limit) and the **non-volatile cells** (``nvm``: ATC, last online ATC, PIN,
  PIN try counter, EC balance and limits, logs, lifecycle flags), plus the journal.
- :class:`Transaction` stages a command's writes; :meth:`Transaction.commit` writes the journal, marks it
  committed, applies the cells one by one and clears the journal, calling a *fault hook* before each of
  these write points so that tests can cut the power anywhere. :meth:`CardImage.recover` (run at every
  power-on) rolls a committed journal forward and drops an uncommitted one.
- :meth:`CardImage.to_json` / :meth:`CardImage.from_json` serialise to a versioned JSON document
  (deterministic bytes: sorted keys), pure bytes in and out; file I/O is in :mod:`citycard.files`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from citycard.codec.appfile import APP_NUMBERS, APP_RECORD_LENGTH
from citycard.codec.cn import cn_digits
from citycard.codec.dol import dol_data_length
from citycard.codec.pan import mask_pan
from citycard.crypto.rsa_cert import RsaKey

from .pboc import LOAD_LOG_FORMAT, TRANSIT_LEGACY_RECORDS, TRANSIT_RECORD_LENGTHS, TXN_LOG_FORMAT

__all__ = [
    "APPS_CELL",
    "FORMAT",
    "SCRIPTS_CELL",
    "TRANSIT_CELL",
    "VERSION",
    "Application",
    "CardImage",
    "Cell",
    "FaultHook",
    "ImageError",
    "PowerLoss",
    "Transaction",
    "cell_key",
    "cell_rules",
    "rsa_key_from_json",
    "rsa_key_to_json",
]

FORMAT = "citycard-card-image"
VERSION = 1

Cell = int | bool | str | list[str]
"""A non-volatile cell value: counters and amounts (int), flags (bool), PIN digits (str), logs (hex list)."""

FaultHook = Callable[[str], None]
"""Called with a label before each write to non-volatile memory; raise :class:`PowerLoss` to tear."""


class ImageError(ValueError):
    """A card image document that is not valid: ``where`` names the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"card image {where}: {message}")
        self.where = where


class PowerLoss(BaseException):
    """Simulated loss of power at a write point (raised by a fault hook; not an ``Exception``, so that no
    command handler swallows it)."""


@lru_cache(maxsize=1024)
def cell_key(aid: bytes | str, name: str) -> str:
    """The cell name of an application's value: ``"A000000333010101.atc"``."""
    prefix = aid.hex().upper() if isinstance(aid, bytes) else aid.upper()
    return f"{prefix}.{name}"


_RSA_FIELDS = ("n", "e", "d", "p", "q", "dp", "dq", "qinv")


def rsa_key_to_json(key: RsaKey) -> dict[str, str]:
    """The ICC RSA private key as hex fields (it lives in the image, as on a real card)."""
    return {k: format(getattr(key, k), "X") for k in _RSA_FIELDS}


def rsa_key_from_json(doc: Mapping[str, Any]) -> RsaKey:
    try:
        key = RsaKey(*(int(str(doc[k]), 16) for k in _RSA_FIELDS))
    except (KeyError, ValueError, TypeError) as exc:
        raise ImageError("icc_rsa", f"malformed ({exc})") from None
    if key.p * key.q != key.n:
        raise ImageError("icc_rsa", "p * q != n")
    return key


@dataclass(frozen=True)
class Application:
    """The static part of one card application (ADF): what personalisation wrote and never changes.

    ``data`` holds the static data objects by tag; ``records`` the record layouts: for each SFI, a list of
    records, each a tuple of the tags it holds (values come from ``data`` or, for dynamic tags such as the
    EC limits, from the cells at the time of reading).
    """

    aid: bytes
    kind: str  # "debit" or "credit"
    label: str
    priority: int
    contactless: bool
    ec: bool
    data: dict[str, bytes]
    records: dict[int, tuple[tuple[str, ...], ...]]
    udk_ac: bytes = field(repr=False)
    udk_mac: bytes = field(repr=False)
    udk_enc: bytes = field(repr=False)
    icc_key: RsaKey | None = field(repr=False)
    log_records: int = 10
    gpo_format: int = 1
    """Response format of the contact GPO: 1 (``80 AIP ‖ AFL``) or 2 (``77 { 82, 94 }``)."""

    def __repr__(self) -> str:  # never the keys; the PAN masked; no track 2, holder name or other data
        pan = cn_digits(self.data.get("5A", b""))
        return f"Application({self.aid.hex().upper()}, {self.kind}, {self.label!r}, PAN {mask_pan(pan)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "aid": self.aid.hex().upper(),
            "kind": self.kind,
            "label": self.label,
            "priority": self.priority,
            "contactless": self.contactless,
            "ec": self.ec,
            "data": {t: v.hex().upper() for t, v in sorted(self.data.items())},
            "records": {str(sfi): [list(r) for r in recs] for sfi, recs in sorted(self.records.items())},
            "keys": {
                "udk_ac": self.udk_ac.hex().upper(),
                "udk_mac": self.udk_mac.hex().upper(),
                "udk_enc": self.udk_enc.hex().upper(),
                "icc_rsa": rsa_key_to_json(self.icc_key) if self.icc_key else None,
            },
            "log_records": self.log_records,
            "gpo_format": self.gpo_format,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Application:
        """Parse one application; every field is checked (types, ranges, lengths): :class:`ImageError`
        names the application and the field."""
        if not isinstance(doc, Mapping):
            raise ImageError("applications", "each application is an object")
        where = f"application {doc.get('aid', '?')}"
        try:
            keys = _field(doc, "keys", Mapping, where)
            app = cls(
                aid=_hex(doc, "aid", where, 5, 16),
                kind=_field(doc, "kind", str, where),
                label=_field(doc, "label", str, where),
                priority=_int(doc, "priority", where, 0, 15),
                contactless=_field(doc, "contactless", bool, where),
                ec=_field(doc, "ec", bool, where),
                data=_data(_field(doc, "data", Mapping, where), where),
                records=_records(_field(doc, "records", Mapping, where), where),
                udk_ac=_hex(keys, "udk_ac", where, 16, 16),
                udk_mac=_hex(keys, "udk_mac", where, 16, 16),
                udk_enc=_hex(keys, "udk_enc", where, 16, 16),
                icc_key=rsa_key_from_json(keys["icc_rsa"]) if keys.get("icc_rsa") is not None else None,
                log_records=_int(doc, "log_records", where, 1, 30, default=10),
                gpo_format=_int(doc, "gpo_format", where, 1, 2, default=1),
            )
        except ImageError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ImageError(where, f"malformed ({exc!r})") from None
        if app.kind not in ("debit", "credit"):
            raise ImageError(f"{where} kind", "must be debit or credit")
        if not 1 <= len(app.label) <= 16:
            raise ImageError(f"{where} label", "must be 1 to 16 characters")
        missing = [tag for tag in _REQUIRED_DATA if tag not in app.data]
        if missing:
            raise ImageError(where, f"data objects missing: {', '.join(missing)}")
        for tag, (low, high) in _DATA_LENGTHS.items():
            if not low <= len(app.data[tag]) <= high:
                raise ImageError(f"{where} data {tag}", f"must be {low} to {high} bytes")
        if not cn_digits(app.data["5A"]).isdigit():
            raise ImageError(f"{where} data 5A", "the PAN must be BCD digits")
        return app


@dataclass
class CardImage:
    """One card: static applications, non-volatile cells and the anti-tearing journal."""

    applications: list[Application]
    nvm: dict[str, Cell]
    pin_try_limit: int = 3
    journal: list[tuple[str, Cell]] = field(default_factory=list)
    journal_committed: bool = False

    def __repr__(self) -> str:  # never the keys, the PIN or the logs
        aids = ", ".join(app.aid.hex().upper() for app in self.applications)
        return f"CardImage({aids})"

    # -- reading cells -------------------------------------------------------------------------------
    def get_int(self, key: str) -> int:
        value = self.nvm[key]
        assert isinstance(value, int) and not isinstance(value, bool), key
        return value

    def get_bool(self, key: str) -> bool:
        value = self.nvm[key]
        assert isinstance(value, bool), key
        return value

    def application(self, aid: bytes) -> Application | None:
        for app in self.applications:
            if app.aid == aid:
                return app
        return None

    # -- anti-tearing --------------------------------------------------------------------------------
    def recover(self) -> None:
        """Power-on recovery: roll a committed journal forward, drop an uncommitted one."""
        if self.journal_committed:
            for key, value in self.journal:
                self.nvm[key] = _copy(value)
        self.journal = []
        self.journal_committed = False

    def begin(self, fault: FaultHook | None = None) -> Transaction:
        return Transaction(self, fault)

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "pin_try_limit": self.pin_try_limit,
            "applications": [app.to_json() for app in self.applications],
            "nvm": {k: _copy(v) for k, v in sorted(self.nvm.items())},
            "journal": {
                "committed": self.journal_committed,
                "entries": [[k, _copy(v)] for k, v in self.journal],
            },
        }

    def to_json(self) -> bytes:
        """The image as a JSON document (UTF-8, sorted keys: equal images give equal bytes)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> CardImage:
        """Parse a document written by :meth:`to_json`; raises :class:`ImageError` on anything else."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImageError("document", f"not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ImageError("format", f"expected {FORMAT!r}")
        if doc.get("version") != VERSION:
            raise ImageError("version", f"version {doc.get('version')!r} is not supported (have {VERSION})")
        try:
            apps_doc = doc["applications"]
            if not isinstance(apps_doc, list):
                raise ImageError("applications", "must be a list")
            apps = [Application.from_json(a) for a in apps_doc]
            nvm_doc = doc["nvm"]
            if not isinstance(nvm_doc, dict):
                raise ImageError("nvm", "must be an object")
            nvm = {str(k): _cell(f"nvm {k}", v) for k, v in nvm_doc.items()}
            journal = doc.get("journal") or {"committed": False, "entries": []}
            if not isinstance(journal, dict) or not isinstance(journal.get("entries"), list):
                raise ImageError("journal", "must be an object with a list of entries")
            committed = journal.get("committed")
            if not isinstance(committed, bool):
                raise ImageError("journal committed", "must be true or false")
            entries = [_journal_entry(i, e) for i, e in enumerate(journal["entries"])]
            limit = doc.get("pin_try_limit", 3)
            if not _is_int(limit) or not 1 <= limit <= PIN_TRY_LIMIT_MAX:
                raise ImageError("pin_try_limit", f"must be an integer 1 to {PIN_TRY_LIMIT_MAX}")
            image = cls(apps, nvm, limit, entries, committed)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ImageError):
                raise
            raise ImageError("document", f"malformed ({exc!r})") from None
        image.check()
        return image

    def check(self) -> None:
        """Every field in range, or :class:`ImageError` naming it: at least one application, AIDs unique;
        exactly the cells the applications need (no more), each of its type and range (:func:`cell_rules`);
        the last online ATC not above the ATC; log records hex of their record length, no more than the
        application keeps; journal entries only for existing cells, with values their cells accept."""
        if not self.applications:
            raise ImageError("applications", "a card image needs at least one application")
        if len({app.aid for app in self.applications}) != len(self.applications):
            raise ImageError("applications", "an AID appears twice")
        if not _is_int(self.pin_try_limit) or not 1 <= self.pin_try_limit <= PIN_TRY_LIMIT_MAX:
            raise ImageError("pin_try_limit", f"must be an integer 1 to {PIN_TRY_LIMIT_MAX}")
        rules = cell_rules(self.applications, self.pin_try_limit)
        for key in self.nvm:
            if key not in rules:
                raise ImageError(f"nvm {key}", "no such cell")
        for key, rule in rules.items():
            problem = rule(self.nvm[key]) if key in self.nvm else ("" if _optional(key) else "missing")
            if problem:
                raise ImageError(f"nvm {key}", problem)
        self._check_atcs(self.nvm, "nvm")
        for index, (key, value) in enumerate(self.journal):
            if key not in rules:
                raise ImageError(f"journal entry {index}", f"no cell {key}")
            problem = rules[key](value)
            if problem:
                raise ImageError(f"journal entry {index} ({key})", problem)
        if self.journal_committed:  # what power-on recovery will make of the cells
            self._check_atcs({**self.nvm, **dict(self.journal)}, "journal")

    def _check_atcs(self, cells: Mapping[str, Cell], where: str) -> None:
        for app in self.applications:
            key = cell_key(app.aid, "last_online_atc")
            if cells[key] > cells[cell_key(app.aid, "atc")]:  # type: ignore[operator]
                raise ImageError(f"{where} {key}", "above the ATC")


PIN_TRY_LIMIT_MAX = 15
"""PIN try limit: at most 15 (one nibble in the PBOC profile; ``9F17`` is the counter)."""
N12_MAX = 999_999_999_999
"""The largest amount in fen a numeric 12-digit data object (``9F79``, ``9F77``, ``9F78``, ``9F6D``) holds."""
ATC_MAX = 0xFFFF

Rule = Callable[[Any], str]
"""A cell's check: the empty string when the value is acceptable, else what is wrong."""


def _int_rule(low: int, high: int) -> Rule:
    def rule(value: Any) -> str:
        return "" if _is_int(value) and low <= value <= high else f"must be an integer {low} to {high}"

    return rule


def _bool_rule(value: Any) -> str:
    return "" if isinstance(value, bool) else "must be true or false"


def _pin_rule(value: Any) -> str:
    ok = isinstance(value, str) and value.isascii() and value.isdigit() and 4 <= len(value) <= 12
    return "" if ok else "must be 4 to 12 digits"


def _log_rule(count: int, length: int) -> Rule:
    def rule(value: Any) -> str:
        ok = isinstance(value, list) and len(value) <= count and all(_is_hex(r, length) for r in value)
        return "" if ok else f"at most {count} records of {length} bytes in hex"

    return rule


def cell_rules(applications: list[Application], pin_try_limit: int) -> dict[str, Rule]:
    """Every non-volatile cell a card with these applications has, with the check of its value."""
    amount = _int_rule(0, N12_MAX)
    atc = _int_rule(0, ATC_MAX)
    rules: dict[str, Rule] = {
        "card.blocked": _bool_rule,
        "pin.value": _pin_rule,
        "pin.tries": _int_rule(0, pin_try_limit),
    }
    for app in applications:
        per_app: dict[str, Rule] = {
            "blocked": _bool_rule,
            "atc": atc,
            "last_online_atc": atc,
            "ec_balance": amount,
            "ec_limit": amount,
            "ec_single_limit": amount,
            "ec_reset_threshold": amount,
            "online_pending": _bool_rule,
            "issuer_auth_failed": _bool_rule,
            **{name: _log_rule(app.log_records, length) for name, length in _LOG_RECORD_BYTES.items()},
        }
        assert set(per_app) == {name for name, _ in APP_CELLS}
        rules.update({cell_key(app.aid, name): rule for name, rule in per_app.items()})
        if app.ec:
            rules[cell_key(app.aid, TRANSIT_CELL)] = _transit_rule
        rules[cell_key(app.aid, APPS_CELL)] = _apps_rule
        rules[cell_key(app.aid, SCRIPTS_CELL)] = _int_rule(0, 0xFF)
    return rules


TRANSIT_CELL = "transit"
"""An optional cell of an EC application: the records of its transit file (SFI 21), hex, fixed lengths."""
APPS_CELL = "apps"
"""An optional cell of an application: the records of the industry applications file (SFI 22,
``citycard.codec.appfile``), hex."""
SCRIPTS_CELL = "last_scripts"
"""An optional cell: the issuer script commands of the last online transaction as the CVR reports them
(byte 3: bits 8-5 the number processed, bit 4 one failed), set to zero at each ARQC."""


def _optional(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in (TRANSIT_CELL, APPS_CELL, SCRIPTS_CELL)


def _apps_rule(value: Any) -> str:
    ok = (
        isinstance(value, list)
        and len(value) == len(APP_NUMBERS)
        and all(_is_hex(v, APP_RECORD_LENGTH) for v in value)
    )
    return "" if ok else f"must be {len(APP_NUMBERS)} records of {APP_RECORD_LENGTH} bytes in hex"


def _transit_rule(value: Any) -> str:
    ok = (
        isinstance(value, list)
        and len(value) in (TRANSIT_LEGACY_RECORDS, len(TRANSIT_RECORD_LENGTHS))
        and all(_is_hex(v, n) for v, n in zip(value, TRANSIT_RECORD_LENGTHS, strict=False))
    )
    lengths = " and ".join(str(n) for n in TRANSIT_RECORD_LENGTHS)
    n = len(TRANSIT_RECORD_LENGTHS)
    return "" if ok else f"must be {n} records of {lengths} bytes in hex (or the first 3)"


APP_CELLS: tuple[tuple[str, type], ...] = (
    ("blocked", bool),
    ("atc", int),
    ("last_online_atc", int),
    ("ec_balance", int),
    ("ec_limit", int),
    ("ec_single_limit", int),
    ("ec_reset_threshold", int),
    ("txn_log", list),
    ("load_log", list),
    ("online_pending", bool),
    ("issuer_auth_failed", bool),
)
"""Non-volatile cells of each application (prefixed with its AID by :func:`cell_key`)."""


_REQUIRED_DATA = ("5A", "57", "5F34", "5F24", "5F25")
"""Data objects every application carries (PAN, track 2 equivalent, PSN, expiry and effective dates)."""
_DATA_LENGTHS = {"5A": (4, 10), "57": (8, 19), "5F34": (1, 1), "5F24": (3, 3), "5F25": (3, 3)}
"""Their lengths in bytes (EMV 4.3 Book 3 Annex A: PAN n..19 cn, track 2 ..19 b, PSN n2, dates n6)."""
_LOG_RECORD_BYTES = {
    "txn_log": dol_data_length(TXN_LOG_FORMAT),
    "load_log": 14 + dol_data_length(LOAD_LOG_FORMAT),
}
"""Record length of each log: the values of its format (``9F4F`` / ``DF4F``); the load log adds
``9F79 ‖ balance before ‖ balance after`` (14 bytes) in front."""


def _is_hex(value: Any, length: int) -> bool:
    try:
        return isinstance(value, str) and len(bytes.fromhex(value)) == length
    except ValueError:
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(doc: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = doc[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ImageError(f"{where} {name}", f"must be {_KIND_NAMES.get(kind, kind.__name__)}")
    return value


_KIND_NAMES = {bool: "true or false", str: "a string", Mapping: "an object", list: "a list"}


def _int(
    doc: Mapping[str, Any], name: str, where: str, low: int, high: int, default: int | None = None
) -> int:
    value = doc.get(name, default) if default is not None else doc[name]
    if not _is_int(value) or not low <= value <= high:
        raise ImageError(f"{where} {name}", f"must be an integer {low} to {high}")
    assert isinstance(value, int)
    return value


def _hex(doc: Mapping[str, Any], name: str, where: str, low: int, high: int) -> bytes:
    value = doc[name]
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or not low <= len(raw) <= high:
        size = f"{low} bytes" if low == high else f"{low} to {high} bytes"
        raise ImageError(f"{where} {name}", f"must be hex of {size}")
    return raw


def _is_tag(name: str) -> bool:
    """A BER-TLV tag in hex (ISO/IEC 8825-1 §8.1.2): one byte whose low five bits are not all set, or a
    first byte with ``1F`` set followed by subsequent bytes, the last without bit 8; at most three bytes."""
    if not re.fullmatch(r"(?:[0-9A-F]{2}){1,3}", name):
        return False
    raw = bytes.fromhex(name)
    if len(raw) == 1:
        return raw[0] & 0x1F != 0x1F
    return raw[0] & 0x1F == 0x1F and all(b & 0x80 for b in raw[1:-1]) and not raw[-1] & 0x80


MAX_DATA_BYTES = 252
"""A data object's value in a record: at most 252 bytes (a short record of 254 bytes with its template)."""


def _data(doc: Mapping[str, Any], where: str) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    for tag in doc:
        name = str(tag).upper()
        if not _is_tag(name):
            raise ImageError(f"{where} data {tag}", "not a BER-TLV tag")
        data[name] = _hex(doc, tag, f"{where} data", 0, MAX_DATA_BYTES)
    return data


def _records(doc: Mapping[str, Any], where: str) -> dict[int, tuple[tuple[str, ...], ...]]:
    records: dict[int, tuple[tuple[str, ...], ...]] = {}
    for sfi, recs in doc.items():
        place = f"{where} records {sfi}"
        if not str(sfi).isdigit() or not 1 <= int(sfi) <= 10:
            raise ImageError(place, "an SFI of the application's records is 1 to 10")
        if not isinstance(recs, list) or not 1 <= len(recs) <= 16:
            raise ImageError(place, "must be a list of 1 to 16 records")
        rows = []
        for rec in recs:
            if not isinstance(rec, list) or not all(isinstance(t, str) and _is_tag(t.upper()) for t in rec):
                raise ImageError(place, "each record is a list of tags")
            rows.append(tuple(t.upper() for t in rec))
        records[int(sfi)] = tuple(rows)
    return records


def _journal_entry(index: int, entry: Any) -> tuple[str, Cell]:
    if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str):
        raise ImageError(f"journal entry {index}", "must be [cell, value]")
    return entry[0], _cell(f"journal entry {index}", entry[1])


def _copy(value: Cell) -> Cell:
    return list(value) if isinstance(value, list) else value


def _cell(where: str, value: Any) -> Cell:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ImageError(where, f"unsupported value {str(value)[:40]!r}")


class Transaction:
    """The writes of one command, staged until :meth:`commit` (reads see the staged values)."""

    __slots__ = ("_fault", "_image", "_writes")

    def __init__(self, image: CardImage, fault: FaultHook | None = None) -> None:
        self._image = image
        self._fault = fault
        self._writes: dict[str, Cell] = {}

    def get(self, key: str) -> Cell:
        return self._writes[key] if key in self._writes else self._image.nvm[key]

    def get_int(self, key: str) -> int:
        value = self.get(key)
        assert isinstance(value, int) and not isinstance(value, bool), key
        return value

    def get_bool(self, key: str) -> bool:
        value = self.get(key)
        assert isinstance(value, bool), key
        return value

    def get_list(self, key: str) -> list[str]:
        value = self.get(key)
        assert isinstance(value, list), key
        return list(value)

    def put(self, key: str, value: Cell) -> None:
        assert key in self._image.nvm, f"no cell {key}"
        self._writes[key] = _copy(value)

    def commit(self) -> None:
        """Write through the journal; the fault hook runs before every write to non-volatile memory."""
        writes = [(k, v) for k, v in self._writes.items() if self._image.nvm[k] != v]
        self._writes = {}
        if not writes:
            return
        image, fault = self._image, self._fault
        assert not image.journal and not image.journal_committed, "journal not recovered"
        if fault is None:  # the same writes in the same order, without labels for a hook nobody set
            image.journal.extend(writes)
            image.journal_committed = True
            for key, value in writes:
                image.nvm[key] = _copy(value)
            image.journal = []
            image.journal_committed = False
            return
        for key, value in writes:
            fault(f"journal {key}")
            image.journal.append((key, value))
        fault("journal commit")
        image.journal_committed = True
        for key, value in writes:
            fault(f"write {key}")
            image.nvm[key] = _copy(value)
        fault("journal clear")
        image.journal = []
        image.journal_committed = False
