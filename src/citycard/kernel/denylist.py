"""The issuer's signed deny-list file: written for the issuer, read and verified as a terminal must before it
trusts one. One document module both ways (REVIEW.md): the issuer's export (``citycard denylist export``)
writes it with :func:`encode_body` and :func:`encode_document`; terminals (``citycard pos --config``
``[[deny_list_file]]``, ``--denylist``) and ``citycard denylist verify`` read it with
:func:`load_deny_list`. The file (format in ``docs/issuer.md`` "Deny list file") is one JSON
document whose ``body`` (base64) is canonical JSON signed with RSASSA-PKCS1-v1_5 and SHA-256 (RFC 8017
§8.2); the signing public key travels in the file and is trusted only if its key check value (the first
3 bytes of SHA-256 over the modulus, as the issuer's HSM shows it) is one the terminal was given out of
band **for the issuer the signed body names**: the terminal's trust is a map issuer → KCVs, so a list
signed by bank A's key that claims to be bank B's is refused and cannot replace B's list. Bytes in, a
:class:`DenyListFile` out, or one :class:`DenyListError` saying why not.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from citycard.crypto.rsa_cert import rsa_kcv

__all__ = [
    "ALGORITHM",
    "DOCUMENT_FORMAT",
    "MAX_DENY_LIST_BYTES",
    "DenyListEntry",
    "DenyListError",
    "DenyListFile",
    "TrustedKeys",
    "encode_body",
    "encode_document",
    "load_deny_list",
    "parse_trusted_kcv",
    "rsa_kcv",
]

DOCUMENT_FORMAT = "citycard-deny-list"
BODY_FORMAT = "citycard-deny-list-body"
ALGORITHM = "RSASSA-PKCS1-v1_5-SHA256"
MAX_DENY_LIST_BYTES = 64 * 1024 * 1024  # ~300 000 entries; a bigger file is refused before parsing
_MODULUS_BITS = (1024, 4096)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

Reason = Literal["format", "untrusted-key", "signature", "entries", "wrong-issuer"]

TrustedKeys = Mapping[str, Collection[str]]
"""What a terminal trusts: issuer (the bank code a list names in its signed body) → the KCVs (hex) of the
keys allowed to sign that issuer's list."""


class DenyListError(ValueError):
    """A deny-list file the terminal must not use. ``reason``: ``format`` (not JSON, not a citycard deny
    list, a field missing or malformed), ``untrusted-key`` (signed by a key whose KCV is not trusted),
    ``signature`` (the signature does not verify: altered, or not signed by this key), ``entries`` (the
    signed body is not a well-formed list), ``wrong-issuer`` (signed by a trusted key, but one of another
    issuer than the list names). The message says which field or entry."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def _is_kcv(text: str) -> bool:
    return len(text) == 6 and all(c in "0123456789abcdefABCDEF" for c in text)


def parse_trusted_kcv(text: str) -> tuple[str, str]:
    """``"ICBC=A1B2C3"`` → ``("ICBC", "A1B2C3")``: an issuer and the KCV of a key trusted to sign its deny
    list. A bare KCV is refused: it would let that key sign any bank's list. Raises ``ValueError``."""
    issuer, sep, kcv = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r}: name the bank whose list the key signs, e.g. ICBC={text or 'A1B2C3'}")
    if not issuer.strip() or not _is_kcv(kcv.strip()):
        raise ValueError(f"{text!r}: expected BANK=KCV, the KCV 6 hex digits (e.g. ICBC=A1B2C3)")
    return issuer.strip().upper(), kcv.strip().upper()


@dataclass(frozen=True, slots=True)
class DenyListEntry:
    pan: str
    psn: str
    reason: str  # "lost", "blocked", "closed", "replaced"
    added: dt.datetime  # UTC


@dataclass(frozen=True, slots=True)
class DenyListFile:
    """A verified deny list: the signed body's content and the key that signed it."""

    issuer: str
    version: int
    generated: dt.datetime  # UTC: when the issuer wrote the file (the list's age counts from here)
    updated: dt.datetime  # UTC: the list's last change
    entries: tuple[DenyListEntry, ...]
    key_label: str
    key_kcv: str

    @property
    def pans(self) -> frozenset[str]:
        return frozenset(e.pan for e in self.entries)


def _utc_text(when: dt.datetime) -> str:
    assert when.tzinfo is not None, "a deny list's times are UTC, never naive"
    return when.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def encode_body(
    issuer: str, version: int, updated: dt.datetime, generated: dt.datetime, entries: Iterable[DenyListEntry]
) -> bytes:
    """The signed body: canonical JSON (keys sorted, no spaces, UTF-8), its entries in (PAN, PSN) order, so
    that the same list always signs to the same bytes; times to the second, UTC."""
    body = {
        "format": BODY_FORMAT,
        "format_version": 1,
        "issuer": issuer,
        "version": version,
        "updated": _utc_text(updated),
        "generated": _utc_text(generated),
        "entries": [
            {"pan": e.pan, "psn": e.psn, "reason": e.reason, "added": _utc_text(e.added)}
            for e in sorted(entries, key=lambda e: (e.pan, e.psn))
        ],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode_document(
    body: bytes, signature: bytes, key_label: str, key_kcv: str, modulus: int, exponent: int
) -> dict[str, Any]:
    """The file's JSON document around a signed body: the body (base64), the signature (hex), the algorithm
    and the signing public key with its KCV (what a terminal checks against the KCVs it trusts)."""
    return {
        "format": DOCUMENT_FORMAT,
        "body": base64.b64encode(body).decode("ascii"),
        "signature": signature.hex().upper(),
        "algorithm": ALGORITHM,
        "key": {"label": key_label, "kcv": key_kcv, "modulus": f"{modulus:X}", "exponent": f"{exponent:X}"},
    }


def _field(doc: dict[str, Any], name: str, kind: type, where: str, reason: Reason = "format") -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DenyListError(reason, f"{where}{name}: missing or not a {kind.__name__}")
    return value


def _hex_int(key: dict[str, Any], name: str) -> int:
    text = _field(key, name, str, "key.")
    try:
        return int(text, 16)
    except ValueError:
        raise DenyListError("format", f"key.{name}: not hex") from None


def _time(value: Any, where: str, reason: Reason) -> dt.datetime:
    try:
        return dt.datetime.strptime(str(value), _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise DenyListError(reason, f"{where}: not an ISO 8601 UTC time ({value!r})") from None


def _document(data: bytes) -> tuple[dict[str, Any], bytes, bytes, int, int]:
    """The outer document: (key object, body bytes, signature, modulus, exponent)."""
    if len(data) > MAX_DENY_LIST_BYTES:
        raise DenyListError("format", f"file of {len(data)} bytes, more than {MAX_DENY_LIST_BYTES}")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DenyListError("format", f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != DOCUMENT_FORMAT:
        raise DenyListError("format", f"not a citycard deny list (format is not {DOCUMENT_FORMAT!r})")
    if doc.get("algorithm") != ALGORITHM:
        raise DenyListError("format", f"algorithm {doc.get('algorithm')!r}, expected {ALGORITHM}")
    key = _field(doc, "key", dict, "")
    modulus, exponent = _hex_int(key, "modulus"), _hex_int(key, "exponent")
    if not _MODULUS_BITS[0] <= modulus.bit_length() <= _MODULUS_BITS[1] or exponent < 3 or not exponent & 1:
        raise DenyListError("format", "key: not an RSA public key of 1024 to 4096 bits")
    try:
        body = base64.b64decode(_field(doc, "body", str, ""), validate=True)
        signature = bytes.fromhex(_field(doc, "signature", str, ""))
    except (binascii.Error, ValueError):
        raise DenyListError("format", "body (base64) or signature (hex) malformed") from None
    return key, body, signature, modulus, exponent


def _entry(value: Any, n: int) -> DenyListEntry:
    where = f"entries[{n}]"
    if not isinstance(value, dict):
        raise DenyListError("entries", f"{where}: not an object")
    pan, psn = value.get("pan"), value.get("psn")
    if not isinstance(pan, str) or not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise DenyListError("entries", f"{where}.pan: not a PAN of 12 to 19 digits")
    if not isinstance(psn, str) or not psn.isdigit() or len(psn) != 2:
        raise DenyListError("entries", f"{where}.psn: not a PSN of 2 digits")
    reason = _field(value, "reason", str, f"{where}.", "entries")
    return DenyListEntry(pan, psn, reason, _time(value.get("added"), f"{where}.added", "entries"))


def _body(body: bytes) -> dict[str, Any]:
    try:
        content = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DenyListError("entries", f"signed body is not JSON: {exc}") from None
    if not isinstance(content, dict) or content.get("format") != BODY_FORMAT:
        raise DenyListError("entries", f"signed body: format is not {BODY_FORMAT!r}")
    if content.get("format_version") != 1:
        raise DenyListError("entries", f"signed body: format_version {content.get('format_version')!r}")
    return content


def load_deny_list(data: bytes, trusted: TrustedKeys | None) -> DenyListFile:
    """Parse and verify a deny-list file. The signing key must have a KCV that ``trusted`` lists for the
    issuer the signed body names (issuers and KCVs compare in any case); ``None`` trusts the key carried in
    the file (an integrity check only — terminals always pass what they trust). Raises
    :class:`DenyListError`."""
    key, body, signature, modulus, exponent = _document(data)
    kcv = rsa_kcv(modulus)
    stated = key.get("kcv")
    if stated is not None and str(stated).upper() != kcv:
        raise DenyListError("format", f"key.kcv {stated!r} is not the KCV of key.modulus ({kcv})")
    trust = (
        None
        if trusted is None
        else {issuer.upper(): frozenset(k.upper() for k in kcvs) for issuer, kcvs in trusted.items()}
    )
    if trust is not None and not any(kcv in kcvs for kcvs in trust.values()):
        known = ", ".join(sorted(f"{i}={k}" for i, kcvs in trust.items() for k in kcvs)) or "none"
        raise DenyListError("untrusted-key", f"signed by the key with KCV {kcv}, not the trusted {known}")
    public = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    try:
        public.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise DenyListError(
            "signature", "the signature does not verify: the list was altered or not signed by this key"
        ) from None
    content = _body(body)
    issuer = _field(content, "issuer", str, "", "entries")
    if trust is not None and kcv not in trust.get(issuer.upper(), frozenset()):
        owners = ", ".join(sorted(i for i, kcvs in trust.items() if kcv in kcvs))
        raise DenyListError(
            "wrong-issuer",
            f"the list names issuer {issuer!r}, but its signing key (KCV {kcv}) is trusted only for {owners}",
        )
    entries = content.get("entries")
    if not isinstance(entries, list):
        raise DenyListError("entries", "entries: not a list")
    return DenyListFile(
        issuer=issuer,
        version=_field(content, "version", int, "", "entries"),
        generated=_time(content.get("generated"), "generated", "entries"),
        updated=_time(content.get("updated"), "updated", "entries"),
        entries=tuple(_entry(e, n) for n, e in enumerate(entries)),
        key_label=str(key.get("label", "")),
        key_kcv=kcv,
    )
