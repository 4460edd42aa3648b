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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from citycard.codec.dol import dol_data_length
from citycard.codec.pretty import mask_pan
from citycard.crypto.rsa_cert import RsaKey

from .pboc import LOAD_LOG_FORMAT, TXN_LOG_FORMAT

__all__ = [
    "FORMAT",
    "VERSION",
    "Application",
    "CardImage",
    "Cell",
    "FaultHook",
    "ImageError",
    "PowerLoss",
    "Transaction",
    "cell_key",
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
        pan = self.data.get("5A", b"").hex().upper().rstrip("F")
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
        try:
            keys = doc["keys"]
            app = cls(
                aid=bytes.fromhex(doc["aid"]),
                kind=str(doc["kind"]),
                label=str(doc["label"]),
                priority=int(doc["priority"]),
                contactless=bool(doc["contactless"]),
                ec=bool(doc["ec"]),
                data={str(t).upper(): bytes.fromhex(v) for t, v in doc["data"].items()},
                records={
                    int(sfi): tuple(tuple(str(t).upper() for t in rec) for rec in recs)
                    for sfi, recs in doc["records"].items()
                },
                udk_ac=bytes.fromhex(keys["udk_ac"]),
                udk_mac=bytes.fromhex(keys["udk_mac"]),
                udk_enc=bytes.fromhex(keys["udk_enc"]),
                icc_key=rsa_key_from_json(keys["icc_rsa"]) if keys.get("icc_rsa") else None,
                log_records=int(doc.get("log_records", 10)),
                gpo_format=int(doc.get("gpo_format", 1)),
            )
        except ImageError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ImageError(f"application {doc.get('aid', '?')}", f"malformed ({exc!r})") from None
        if app.kind not in ("debit", "credit") or not 5 <= len(app.aid) <= 16 or app.gpo_format not in (1, 2):
            raise ImageError(f"application {doc.get('aid')}", "kind, AID or GPO format invalid")
        if not 1 <= app.log_records <= 30:
            raise ImageError(f"application {doc.get('aid')}", "log records must be 1 to 30")
        missing = [tag for tag in _REQUIRED_DATA if tag not in app.data]
        if missing:
            raise ImageError(f"application {doc.get('aid')}", f"data objects missing: {', '.join(missing)}")
        for name in ("udk_ac", "udk_mac", "udk_enc"):
            if len(getattr(app, name)) != 16:
                raise ImageError(f"application {doc.get('aid')}", f"{name} must be 16 bytes")
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
            apps = [Application.from_json(a) for a in doc["applications"]]
            nvm = {str(k): _cell(str(k), v) for k, v in doc["nvm"].items()}
            journal = doc.get("journal") or {"committed": False, "entries": []}
            entries = [(str(k), _cell(str(k), v)) for k, v in journal["entries"]]
            image = cls(apps, nvm, int(doc.get("pin_try_limit", 3)), entries, bool(journal["committed"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ImageError):
                raise
            raise ImageError("document", f"malformed ({exc!r})") from None
        image.check()
        return image

    def check(self) -> None:
        """At least one application; every cell an application needs is present with the right type; log
        records are hex of their record length, no more than the application keeps."""
        if not self.applications:
            raise ImageError("applications", "a card image needs at least one application")
        needs: list[tuple[str, type]] = [("card.blocked", bool), ("pin.value", str), ("pin.tries", int)]
        for app in self.applications:
            for name, kind in APP_CELLS:
                needs.append((cell_key(app.aid, name), kind))
        for key, kind in needs:
            value = self.nvm.get(key)
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not ok:
                raise ImageError(f"nvm {key}", f"missing or not {kind.__name__}")
        for app in self.applications:
            for name, length in _LOG_RECORD_BYTES.items():
                key = cell_key(app.aid, name)
                records = self.nvm[key]
                assert isinstance(records, list)
                if len(records) > app.log_records or not all(_is_hex(r, length) for r in records):
                    raise ImageError(
                        f"nvm {key}", f"at most {app.log_records} records of {length} bytes in hex"
                    )


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
_LOG_RECORD_BYTES = {
    "txn_log": dol_data_length(TXN_LOG_FORMAT),
    "load_log": 14 + dol_data_length(LOAD_LOG_FORMAT),
}
"""Record length of each log: the values of its format (``9F4F`` / ``DF4F``); the load log adds
``9F79 ‖ balance before ‖ balance after`` (14 bytes) in front."""


def _is_hex(value: str, length: int) -> bool:
    try:
        return len(bytes.fromhex(value)) == length
    except ValueError:
        return False


def _copy(value: Cell) -> Cell:
    return list(value) if isinstance(value, list) else value


def _cell(key: str, value: Any) -> Cell:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ImageError(f"nvm {key}", f"unsupported value {value!r}")


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
