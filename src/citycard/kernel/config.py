"""Terminal configuration: AIDs, action codes, limits, CA public keys, exception file (EMV 4.3 Book 3 §10,
Book 4 §6 "terminal data elements", Annex A; JR/T 0025.12 contactless limits; JR/T 0025.13 EC limit 9F7B).

:func:`parse_config` takes the text of a TOML file (``tomllib``; reading the file is the caller's I/O).
CA public keys are checked against their SHA-1 checksum (Book 2 §11.2.2: SHA-1 of RID ‖ index ‖ modulus ‖
exponent) before they are accepted; a key whose checksum is wrong is refused with :class:`ConfigError`.

Example::

    [terminal]
    country = "0156"             # 9F1A
    currency = "0156"            # 5F2A
    type = "22"                  # 9F35: attended, offline with online capability
    capabilities = "E0F8C8"      # 9F33
    floor_limit_fen = 0
    ec_terminal_limit_fen = 100000          # 9F7B
    contactless_transaction_limit_fen = 100000
    contactless_cvm_limit_fen = 30000
    contactless_floor_limit_fen = 30000

    [[aid]]
    aid = "A000000333010101"
    partial = true

    [tac]
    denial = "0000000000"
    online = "DC4004F800"
    default = "DC4000A800"

    [[capk]]
    rid = "A000000333"
    index = "80"
    modulus = "…"
    exponent = "03"
    checksum = "…"               # SHA-1, 20 bytes hex

    [validator]
    double_tap_window_s = 60         # a card that paid a fare here this recently is refused (0: off)

    [exception_file]
    pans = ["6225880000000001"]
    updated = 2026-11-25T08:00:00Z     # with an offset: converted to the terminal's local time
    max_age_s = 86400

    [[deny_list_file]]               # an issuer's signed deny list (citycard.kernel.denylist), merged in
    path = "denylist-ICBC.json"      # relative to the configuration file
    issuer = "ICBC"                  # the bank whose list it must be (the issuer its signed body names)
    trusted_kcv = "A1B2C3"           # the KCV(s) of that bank's deny-list signing key (string or list)

Deny-list files are named here and loaded by the caller (I/O), then merged with
:meth:`TerminalConfig.with_deny_lists`; until they are, the exception file counts as stale, so a file
named but never loaded cannot let a card through offline.

A complete, commented example is ``docs/terminal.example.toml``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from citycard.codec.aids import UNIONPAY as UNIONPAY_AIDS

from .denylist import DenyListFile

__all__ = [
    "MAX_DOUBLE_TAP_WINDOW_S",
    "CaPublicKey",
    "ConfigError",
    "DenyListSource",
    "ExceptionFile",
    "TerminalAid",
    "TerminalConfig",
    "capk_checksum",
    "parse_capks",
    "parse_config",
]


MAX_DOUBLE_TAP_WINDOW_S = 3600
"""A validator refuses a second tap of one card for at most an hour (a longer window is a new trip)."""


class ConfigError(ValueError):
    """A configuration value that is missing, malformed or fails its checksum; says which."""


def capk_checksum(rid: bytes, index: int, modulus: bytes, exponent: bytes) -> bytes:
    """Book 2 §11.2.2: SHA-1(RID ‖ CA public key index ‖ modulus ‖ exponent)."""
    return hashlib.sha1(rid + bytes((index,)) + modulus + exponent).digest()


@dataclass(frozen=True, slots=True)
class CaPublicKey:
    rid: bytes
    index: int
    modulus: bytes
    exponent: bytes
    expiry: dt.date | None = None
    revoked_serials: frozenset[bytes] = frozenset()  # issuer certificate serial numbers (3 bytes)

    @property
    def checksum(self) -> bytes:
        return capk_checksum(self.rid, self.index, self.modulus, self.exponent)


@dataclass(frozen=True, slots=True)
class TerminalAid:
    """One application the terminal supports (Book 1 §12.3.1 ASI: exact or partial match)."""

    aid: bytes
    partial: bool = True
    app_version: bytes = bytes.fromhex("0020")  # 9F09, PBOC 2.0
    label: str = ""


@dataclass(frozen=True, slots=True)
class DenyListSource:
    """An issuer's signed deny-list file named in the configuration, not loaded yet (loading is I/O): it
    must name ``issuer`` and be signed by a key with one of ``trusted_kcvs``."""

    path: str
    issuer: str
    trusted_kcvs: frozenset[str]

    @property
    def trusted(self) -> dict[str, frozenset[str]]:
        """The trust to load this file with (:func:`citycard.kernel.denylist.load_deny_list`)."""
        return {self.issuer: self.trusted_kcvs}


@dataclass(frozen=True, slots=True)
class ExceptionFile:
    """The deny list (terminal exception file) and when it was last refreshed.

    ``lists`` are the issuers' signed lists merged in, as (issuer, version); ``pending`` the files the
    configuration names that were not loaded yet: while there are any, the list is stale."""

    pans: frozenset[str] = frozenset()
    updated: dt.datetime | None = None
    max_age_s: int = 7 * 86400
    lists: tuple[tuple[str, int], ...] = ()
    pending: tuple[DenyListSource, ...] = ()

    def stale(self, now: dt.datetime) -> bool:
        if self.pending:
            return True
        if self.updated is None:
            return bool(self.pans)
        return (now - self.updated).total_seconds() > self.max_age_s

    def with_deny_lists(self, files: Iterable[DenyListFile]) -> ExceptionFile:
        """Merge verified issuer deny lists: their PANs join ``pans`` (a listed PAN is denied whatever its
        PSN; the issuer gives a replacement or renewed card a new PAN), only the highest version of each
        issuer's list counts, and the list is as old as its oldest part: ``updated`` becomes the earliest
        ``generated`` (in the terminal's local time). PANs with no ``updated`` stay stale. Clears
        ``pending``: the caller has loaded what the configuration named."""
        newest: dict[str, DenyListFile] = {}
        for f in files:
            if f.issuer not in newest or f.version > newest[f.issuer].version:
                newest[f.issuer] = f
        pans, updated = set(self.pans), self.updated
        unknown_age = self.updated is None and bool(self.pans)
        for f in newest.values():
            pans |= f.pans
            generated = f.generated.astimezone().replace(tzinfo=None)  # the terminal's clock is local
            updated = generated if updated is None else min(updated, generated)
        lists = tuple(sorted((f.issuer, f.version) for f in newest.values()))
        return replace(
            self,
            pans=frozenset(pans),
            updated=None if unknown_age else updated,
            lists=(*self.lists, *lists),
            pending=(),
        )


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    aids: tuple[TerminalAid, ...] = tuple(TerminalAid(aid) for aid in UNIONPAY_AIDS)
    country: bytes = bytes.fromhex("0156")  # 9F1A
    currency: bytes = bytes.fromhex("0156")  # 5F2A
    currency_exponent: int = 2  # 5F36
    terminal_type: int = 0x22  # 9F35
    capabilities: bytes = bytes.fromhex(
        "E0F8C8"
    )  # 9F33: IC; plaintext/online/signature/enc./no CVM; SDA DDA CDA
    additional_capabilities: bytes = bytes.fromhex("6000F0A001")  # 9F40
    ttq: bytes = bytes.fromhex("26000080")  # 9F66: qPBOC, contact chip, online PIN; byte 4 b8 fDDA v01
    terminal_id: bytes = b"CITY0001"  # 9F1C
    merchant_id: bytes = b"CITYMERCHANT001"  # 9F16
    merchant_name: bytes = b"CITYCARD DEMO SHOP"  # 9F4E
    mcc: bytes = bytes.fromhex("5411")  # 9F15
    ifd_serial: bytes = b"SN000001"  # 9F1E
    acquirer_id: bytes = bytes.fromhex("000000000001")  # 9F01
    floor_limit_fen: int = 0  # 9F1B
    random_threshold_fen: int = 0
    random_target_percent: int = 0
    random_max_target_percent: int = 0
    ec_support: bool = True  # 9F7A = 01
    ec_terminal_limit_fen: int = 100_000  # 9F7B
    contactless_transaction_limit_fen: int = 100_000
    contactless_cvm_limit_fen: int = 30_000
    contactless_floor_limit_fen: int = 30_000
    tac_denial: bytes = bytes(5)
    tac_online: bytes = bytes.fromhex("DC4004F800")
    tac_default: bytes = bytes.fromhex("DC4000A800")
    default_ddol: bytes = bytes.fromhex("9F3704")
    default_tdol: bytes = b""
    capks: tuple[CaPublicKey, ...] = ()
    exception_file: ExceptionFile = field(default_factory=ExceptionFile)
    pin_key: bytes = field(
        default=b"", repr=False
    )  # terminal PIN key for online PIN (demo; a real PIN pad keeps it)
    cardholder_confirmation: bool = True
    cardholder_id_check: bool = True  # PBOC CVM 20: the attendant checks the ID shown by 9F61/9F62
    select_blocked: bool = False
    """A bank counter's terminal (柜面): an application the card reports blocked (SELECT ``6283``) is still
    selected, so that it can go online and its issuer unblock it by script. A merchant's terminal leaves it
    out (EMV 4.3 Book 1 §12.3.2, §12.4)."""
    max_pin_tries: int = 3
    double_tap_window_s: int = 60  # validator: a card that paid here this recently is refused (0: off)

    @property
    def online_capable(self) -> bool:
        return (self.terminal_type & 0x0F) in (1, 2, 4, 5)

    @property
    def offline_only(self) -> bool:
        return (self.terminal_type & 0x0F) in (3, 6)

    def capk(self, rid: bytes, index: int) -> CaPublicKey | None:
        for key in self.capks:
            if key.rid == rid and key.index == index:
                return key
        return None

    def with_capks(self, keys: Iterable[CaPublicKey]) -> TerminalConfig:
        return replace(self, capks=(*self.capks, *keys))

    def with_deny_lists(self, files: Iterable[DenyListFile]) -> TerminalConfig:
        """The configuration with verified issuer deny lists merged (``ExceptionFile.with_deny_lists``)."""
        return replace(self, exception_file=self.exception_file.with_deny_lists(files))


def _hex(section: Mapping[str, Any], name: str, where: str, default: bytes) -> bytes:
    value = section.get(name)
    if value is None:
        return default
    if not isinstance(value, str):  # 156 is not "0156": a number is refused, not guessed at
        raise ConfigError(f"{where}.{name}: a string of hex digits, not {value!r}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ConfigError(f"{where}.{name}: not hex: {value!r}") from None


def _bool(section: Mapping[str, Any], name: str, where: str, default: bool) -> bool:
    value = section.get(name, default)
    if not isinstance(value, bool):  # bool("false") is True: a quoted or numeric value is refused
        raise ConfigError(f"{where}.{name}: true or false, not {value!r}")
    return value


def _text(section: Mapping[str, Any], name: str, where: str, default: str) -> str:
    value = section.get(name, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{name}: a string, not {value!r}")
    return value


def _table(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: use a [{name}] table, not {value!r}")
    return value


def _tables(doc: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise ConfigError(f"{name}: use [[{name}]] tables, not {value!r}")
    return value


def _int(section: Mapping[str, Any], name: str, where: str, default: int) -> int:
    value = section.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}.{name}: expected a non-negative integer, got {value!r}")
    return value


def _capk(entry: Mapping[str, Any], n: int) -> CaPublicKey:
    where = f"capk[{n}]"
    rid = _hex(entry, "rid", where, b"")
    index = _hex(entry, "index", where, b"")
    modulus = _hex(entry, "modulus", where, b"")
    exponent = _hex(entry, "exponent", where, b"\x03")
    checksum = _hex(entry, "checksum", where, b"")
    if len(rid) != 5 or len(index) != 1 or not 64 <= len(modulus) <= 248:
        raise ConfigError(f"{where}: rid (5 bytes), index (1 byte) and modulus (64-248 bytes) required")
    key = CaPublicKey(rid, index[0], modulus, exponent)
    if checksum != key.checksum:
        raise ConfigError(
            f"{where}: SHA-1 checksum does not match RID {rid.hex().upper()} index {index.hex()}"
        )
    expiry = entry.get("expiry")
    if expiry is not None and (not isinstance(expiry, dt.date) or isinstance(expiry, dt.datetime)):
        raise ConfigError(f"{where}.expiry: a TOML date (2030-12-31, unquoted), not {expiry!r}")
    if isinstance(expiry, dt.date):
        key = replace(key, expiry=expiry)
    serials = entry.get("revoked_serials", [])
    if not isinstance(serials, list) or not all(isinstance(s, str) and len(s) == 6 for s in serials):
        raise ConfigError(
            f"{where}.revoked_serials: a list of certificate serial numbers (6 hex digits each)"
        )
    try:
        revoked = frozenset(bytes.fromhex(s) for s in serials)
    except ValueError:
        raise ConfigError(f"{where}.revoked_serials: not hex: {serials!r}") from None
    return replace(key, revoked_serials=revoked)


def _aid(entry: Mapping[str, Any], n: int) -> TerminalAid:
    where = f"aid[{n}]"
    aid = _hex(entry, "aid", where, b"")
    if not 5 <= len(aid) <= 16:
        raise ConfigError(f"{where}.aid: 5 to 16 bytes")
    return TerminalAid(
        aid,
        _bool(entry, "partial", where, True),
        _hex(entry, "app_version", where, bytes.fromhex("0020")),
        _text(entry, "label", where, ""),
    )


def _terminal_type(section: Mapping[str, Any], default: int) -> int:
    value = _hex(section, "type", "terminal", bytes((default,)))
    if len(value) != 1 or not 0x11 <= value[0] <= 0x36:
        raise ConfigError(f"terminal.type: one byte 11..36 (EMV Book 4 Annex A1), got {value.hex()!r}")
    return value[0]


def _exception_file(ef: Mapping[str, Any]) -> ExceptionFile:
    pans = ef.get("pans", [])
    if not isinstance(pans, list) or not all(isinstance(p, str) and p.isdigit() for p in pans):
        raise ConfigError("exception_file.pans: a list of PANs (strings of digits)")
    updated = ef.get("updated")
    if updated is not None and not isinstance(updated, dt.datetime):
        raise ConfigError(f"exception_file.updated: a TOML date-time, got {updated!r}")
    if updated is not None and updated.tzinfo is not None:  # the terminal's clock is local time
        updated = updated.astimezone().replace(tzinfo=None)
    return ExceptionFile(frozenset(pans), updated, _int(ef, "max_age_s", "exception_file", 7 * 86400))


def _deny_list_source(entry: Any, n: int) -> DenyListSource:
    where = f"deny_list_file[{n}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
        raise ConfigError(f"{where}.path: the deny-list file (a string)")
    issuer = entry.get("issuer")
    if not isinstance(issuer, str) or not issuer.strip():
        raise ConfigError(
            f'{where}.issuer: the bank whose list this is (the issuer the file names, e.g. "ICBC"): '
            "its trusted_kcv is trusted for that bank only"
        )
    kcvs = entry.get("trusted_kcv")
    kcvs = [kcvs] if isinstance(kcvs, str) else kcvs
    if not isinstance(kcvs, list) or not kcvs:
        raise ConfigError(f"{where}.trusted_kcv: the KCV of the bank's signing key (or a list of them)")
    for kcv in kcvs:
        if not isinstance(kcv, str) or len(kcv) != 6 or not all(c in "0123456789abcdefABCDEF" for c in kcv):
            raise ConfigError(f"{where}.trusted_kcv: a KCV is 6 hex digits, got {kcv!r}")
    return DenyListSource(entry["path"], issuer.strip().upper(), frozenset(k.upper() for k in kcvs))


def parse_config(text: str, *, base: TerminalConfig | None = None) -> TerminalConfig:
    """A :class:`TerminalConfig` from TOML text; unspecified values keep those of ``base`` (or defaults)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"terminal configuration: {exc}") from None
    cfg = base or TerminalConfig()
    t = _table(doc, "terminal")
    w = "terminal"
    changes: dict[str, Any] = {
        "country": _hex(t, "country", w, cfg.country),
        "currency": _hex(t, "currency", w, cfg.currency),
        "terminal_type": _terminal_type(t, cfg.terminal_type),
        "capabilities": _hex(t, "capabilities", w, cfg.capabilities),
        "additional_capabilities": _hex(t, "additional_capabilities", w, cfg.additional_capabilities),
        "ttq": _hex(t, "ttq", w, cfg.ttq),
        "pin_key": _hex(t, "pin_key", w, cfg.pin_key),
    }
    sizes = {"country": (2,), "currency": (2,), "capabilities": (3,), "additional_capabilities": (5,),
             "ttq": (4,), "pin_key": (0, 16, 24)}  # fmt: skip
    for name, allowed in sizes.items():
        if len(changes[name]) not in allowed:
            raise ConfigError(f"terminal.{name}: {len(changes[name])} bytes, expected {allowed}")
    for name in ("terminal_id", "merchant_id", "merchant_name", "ifd_serial"):
        if name in t:
            try:
                changes[name] = _text(t, name, w, "").encode("ascii")
            except UnicodeEncodeError:
                raise ConfigError(f"terminal.{name}: ASCII only") from None
    for name in (
        "floor_limit_fen",
        "random_threshold_fen",
        "random_target_percent",
        "random_max_target_percent",
        "ec_terminal_limit_fen",
        "contactless_transaction_limit_fen",
        "contactless_cvm_limit_fen",
        "contactless_floor_limit_fen",
    ):
        changes[name] = _int(t, name, w, getattr(cfg, name))
    for name in ("ec_support", "cardholder_confirmation", "cardholder_id_check", "select_blocked"):
        changes[name] = _bool(t, name, w, getattr(cfg, name))
    if "aid" in doc:
        changes["aids"] = tuple(_aid(e, n) for n, e in enumerate(_tables(doc, "aid")))
    tac = _table(doc, "tac")
    for name in ("denial", "online", "default"):
        value = _hex(tac, name, "tac", getattr(cfg, f"tac_{name}"))
        if len(value) != 5:
            raise ConfigError(f"tac.{name}: 5 bytes")
        changes[f"tac_{name}"] = value
    if "capk" in doc:
        changes["capks"] = (*cfg.capks, *(_capk(e, n) for n, e in enumerate(_tables(doc, "capk"))))
    validator = _table(doc, "validator")
    window = _int(validator, "double_tap_window_s", "validator", cfg.double_tap_window_s)
    if window > MAX_DOUBLE_TAP_WINDOW_S:
        raise ConfigError(f"validator.double_tap_window_s: at most {MAX_DOUBLE_TAP_WINDOW_S} s, got {window}")
    changes["double_tap_window_s"] = window
    if "exception_file" in doc:
        changes["exception_file"] = _exception_file(_table(doc, "exception_file"))
    sources = doc.get("deny_list_file", [])
    if not isinstance(sources, list):
        raise ConfigError("deny_list_file: use [[deny_list_file]] tables")
    if sources:
        exception_file = changes.get("exception_file", cfg.exception_file)
        pending = (*exception_file.pending, *(_deny_list_source(e, n) for n, e in enumerate(sources)))
        changes["exception_file"] = replace(exception_file, pending=pending)
    return replace(cfg, **changes)


def parse_capks(text: str) -> tuple[CaPublicKey, ...]:
    """CA public keys from the text of a CAPK file (TOML, ``[[capk]]`` tables as in the configuration),
    each checked against its SHA-1 checksum; a bad key refuses the whole file (:class:`ConfigError`)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CA public key file: {exc}") from None
    entries = _tables(doc, "capk")
    if not entries:
        raise ConfigError("CA public key file: no [[capk]] entries")
    return tuple(_capk(e, n) for n, e in enumerate(entries))
