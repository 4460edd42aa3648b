"""Personalisation: a product profile and a PAN serial number in, a fresh card image out.

What a personalisation bureau does for a PBOC 2.0 card (JR/T 0025.5 data elements; EMV 4.3 Book 2 §5–6
for the certificates; Book 2 A1.4.1 for the card keys): build a Luhn-valid PAN on the product's BIN, write
the application data and records of ``docs/card-profile.md``, load the card's UDKs (derived from the
issuer master keys, option A), generate the ICC RSA key pair, have the issuer certify it (the certificate
covers the static data to be authenticated) and sign the static data for SDA.

Every secret operation goes through :class:`PersonalisationKeys`, a protocol an HSM can implement; the
software implementation for demos is :class:`citycard.demokeys.DemoKeys`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from citycard.codec.appfile import APP_NUMBERS, APP_RECORD_LENGTH, empty_record
from citycard.codec.pan import luhn_check_digit
from citycard.codec.tlv import encode_many
from citycard.crypto.rsa_cert import RsaKey, RsaPublicKey

from . import pboc
from .image import APPS_CELL, SCRIPTS_CELL, TRANSIT_CELL, Application, CardImage, Cell, cell_key

__all__ = [
    "CardUdks",
    "IssuerPublicKeyData",
    "PersonalisationKeys",
    "ProductProfile",
    "ProfileError",
    "make_pan",
    "personalise",
    "static_data_to_authenticate",
]

_MAX_AMOUNT_FEN = 999_999_999_999  # n12


class ProfileError(ValueError):
    """A product profile (or PAN serial) that cannot be personalised; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ProductProfile:
    """A card product, as an issuer defines it. Amounts in fen; dates ``YYMMDD``."""

    bin: str = "623456"
    pan_length: int = 16
    psn: str = "01"
    effective: str = "260101"
    expiry: str = "311231"
    registered: bool = False
    holder_name: str = ""
    ec_balance_limit_fen: int = 100_000
    ec_single_limit_fen: int = 100_000
    ec_reset_threshold_fen: int = 10_000
    opening_balance_fen: int = 0
    contactless: bool = True
    credit: bool = False
    dual: bool = False
    """Both a debit (with EC) and a credit application."""
    gpo_format: int = 1
    """Contact GPO response format: 1 (``80``) or 2 (``77``)."""
    cda: bool = False
    """Offer CDA (combined DDA / AC generation): AIP ``7D00`` instead of ``7C00``."""
    pin: str = "123456"
    transit: bool = False
    """The EC application carries the transit file (SFI 21, docs/transit.md)."""
    concession: str = ""
    """With ``transit``: the concession record (8 bytes in hex, docs/transit.md); empty: none."""
    currency: str = "0156"
    country: str = "0156"
    app_file: bool = False
    """The industry applications file (SFI 22, ``citycard.codec.appfile``) and the CVR's count of the last
    online transaction's issuer script commands (which tells the issuer a script was applied)."""
    app_records: tuple[str, ...] = ()
    """With ``app_file``: the file's records in hex (16 bytes each, record n for application n); empty:
    every application absent."""

    def check(self) -> None:
        if not self.bin.isdigit() or not 6 <= len(self.bin) <= 11:
            raise ProfileError("bin", "must be 6 to 11 digits")
        if self.pan_length not in range(13, 20) or self.pan_length <= len(self.bin) + 1:
            raise ProfileError("pan_length", "must be 13..19 and longer than the BIN plus a check digit")
        if len(self.psn) != 2 or not self.psn.isdigit():
            raise ProfileError("psn", "must be two digits")
        for name in ("effective", "expiry"):
            value = getattr(self, name)
            if len(value) != 6 or not value.isdigit() or not 1 <= int(value[2:4]) <= 12:
                raise ProfileError(name, "must be YYMMDD")
        if self.registered and not self.holder_name:
            raise ProfileError("holder_name", "a registered card needs the holder's name")
        if self.holder_name and (not self.holder_name.isascii() or not 2 <= len(self.holder_name) <= 26):
            raise ProfileError("holder_name", "must be 2 to 26 ASCII characters (EMV 5F20)")
        amounts = (
            "ec_balance_limit_fen",
            "ec_single_limit_fen",
            "ec_reset_threshold_fen",
            "opening_balance_fen",
        )
        for name in amounts:
            if not 0 <= getattr(self, name) <= _MAX_AMOUNT_FEN:
                raise ProfileError(name, "must be 0 to 999999999999 fen")
        if self.opening_balance_fen > self.ec_balance_limit_fen:
            raise ProfileError("opening_balance_fen", "exceeds the EC balance limit")
        if self.ec_single_limit_fen > self.ec_balance_limit_fen:
            raise ProfileError("ec_single_limit_fen", "exceeds the EC balance limit (9F78 above 9F77)")
        if self.credit and not self.dual and self.opening_balance_fen:
            raise ProfileError("opening_balance_fen", "a credit product has no electronic cash balance")
        if self.gpo_format not in (1, 2):
            raise ProfileError("gpo_format", "must be 1 or 2")
        if not self.pin.isdigit() or not 4 <= len(self.pin) <= 12:
            raise ProfileError("pin", "must be 4 to 12 digits")
        if self.concession and (
            not self.transit or not _is_hex(self.concession, pboc.TRANSIT_RECORD_LENGTHS[0])
        ):
            raise ProfileError("concession", "8 bytes in hex, on a card with the transit file")
        if self.app_records and (
            not self.app_file
            or len(self.app_records) != len(APP_NUMBERS)
            or not all(_is_hex(r, APP_RECORD_LENGTH) for r in self.app_records)
        ):
            raise ProfileError(
                "app_records", f"{len(APP_NUMBERS)} records of {APP_RECORD_LENGTH} bytes in hex"
            )
        for name in ("currency", "country"):
            value = getattr(self, name)
            if len(value) != 4 or not value.isdigit():
                raise ProfileError(name, "must be 4 digits (ISO 4217 / 3166 numeric, n3 padded)")


@dataclass(frozen=True, slots=True, repr=False)
class CardUdks:
    """The card's three ICC master keys (UDK) for AC, secure-messaging integrity and confidentiality."""

    ac: bytes
    mac: bytes
    enc: bytes

    def __repr__(self) -> str:
        return "CardUdks(…)"


@dataclass(frozen=True, slots=True)
class IssuerPublicKeyData:
    """What the card carries about the issuer key: CA index ``8F``, certificate ``90``, remainder ``92``,
    exponent ``9F32``."""

    ca_index: int
    certificate: bytes
    remainder: bytes
    exponent: bytes


class PersonalisationKeys(Protocol):
    """The secret operations of personalisation (an HSM can implement them)."""

    def card_udks(self, pan: str, psn: str) -> CardUdks:
        """UDK-AC, UDK-MAC, UDK-ENC for this PAN and PSN (EMV Book 2 A1.4.1, option A)."""
        ...

    def generate_icc_key(self) -> RsaKey:
        """A fresh ICC RSA key pair."""
        ...

    def issuer_public_key_data(self, issuer_identifier: str) -> IssuerPublicKeyData:
        """The issuer key's certificate data for this issuer identifier (leftmost 3–8 PAN digits)."""
        ...

    def certify_icc_key(
        self, icc_key: RsaPublicKey, pan: str, expiry_mmyy: str, static_data: bytes
    ) -> tuple[bytes, bytes]:
        """ICC public-key certificate ``9F46`` and remainder ``9F48``, signed by the issuer key."""
        ...

    def sign_static_data(self, dac: bytes, static_data: bytes) -> bytes:
        """Signed static application data ``93`` (SDA), signed by the issuer key."""
        ...


def make_pan(bin_: str, length: int, serial: int) -> str:
    """BIN ‖ serial (zero-padded) ‖ Luhn check digit, ``length`` digits in all."""
    room = length - len(bin_) - 1
    if serial < 0 or serial >= 10**room:
        raise ProfileError("pan_serial", f"must be 0 to {10**room - 1} for this BIN and PAN length")
    body = bin_ + str(serial).rjust(room, "0")
    return body + luhn_check_digit(body)


def _cn(pan: str) -> bytes:
    return bytes.fromhex(pan + "F" * (len(pan) % 2))


def _track2(pan: str, expiry: str) -> bytes:
    digits = f"{pan}D{expiry[:4]}220" + "00000"
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


_CVM_LIST = bytes.fromhex("0000000000000000410342031E031F00")
_SFI2_REC1 = (
    "5A", "5F34", "5F24", "5F25", "5F28", "9F07", "8E", "9F0D", "9F0E", "9F0F",
    "8C", "8D", "9F08", "9F42", "9F44", "5F30", "9F4A",
)  # fmt: skip
_RECORDS: dict[int, tuple[tuple[str, ...], ...]] = {
    2: (_SFI2_REC1, ("57", "5F20")),
    3: (("8F", "90", "92", "9F32"), ("9F46", "9F47", "9F48", "9F49"), ("93",)),
}
_EC_RECORDS = (("9F77", "9F78", "9F6D"), ("9F74",))


def static_data_to_authenticate(data: dict[str, bytes]) -> bytes:
    """SFI 2 record 1 without its ``70`` template (EMV Book 3 §10.3, SFI 1–10) ‖ the AIP (``9F4A`` = 82)."""
    return encode_many((tag, data[tag]) for tag in _SFI2_REC1 if tag in data) + data["82"]


def _application_data(profile: ProductProfile, pan: str) -> dict[str, bytes]:
    data = {
        "5A": _cn(pan),
        "5F34": bytes.fromhex(profile.psn),
        "5F24": bytes.fromhex(profile.expiry),
        "5F25": bytes.fromhex(profile.effective),
        "5F28": bytes.fromhex(profile.country),
        "9F07": bytes.fromhex("FF00"),
        "8E": _CVM_LIST,
        "9F0D": bytes.fromhex("D84000A800"),
        "9F0E": bytes.fromhex("0010000000"),
        "9F0F": bytes.fromhex("D84004F800"),
        "8C": pboc.CDOL1,
        "8D": pboc.CDOL2,
        "9F08": bytes.fromhex("0020"),
        "9F42": bytes.fromhex(profile.currency),
        "9F44": b"\x02",
        "5F30": bytes.fromhex("0220"),
        "9F4A": b"\x82",
        "57": _track2(pan, profile.expiry),
        "9F49": pboc.DDOL,
        "9F51": bytes.fromhex(profile.currency),
        "82": pboc.AIP_CDA if profile.cda else pboc.AIP_CONTACT,
    }
    if profile.holder_name:
        data["5F20"] = profile.holder_name.encode("ascii")
    return data


def personalise(profile: ProductProfile, pan_serial: int, keys: PersonalisationKeys) -> CardImage:
    """A new card image for ``profile`` with the PAN made of the BIN and ``pan_serial``."""
    profile.check()
    pan = make_pan(profile.bin, profile.pan_length, pan_serial)
    data = _application_data(profile, pan)
    static = static_data_to_authenticate(data)
    issuer = keys.issuer_public_key_data(profile.bin[:8])
    icc_key = keys.generate_icc_key()
    expiry_mmyy = profile.expiry[2:4] + profile.expiry[:2]
    icc_cert, icc_remainder = keys.certify_icc_key(icc_key.public, pan, expiry_mmyy, static)
    dac = hashlib.sha1(pan.encode()).digest()[:2]
    data.update(
        {
            "8F": bytes((issuer.ca_index,)),
            "90": issuer.certificate,
            "92": issuer.remainder,
            "9F32": issuer.exponent,
            "9F46": icc_cert,
            "9F47": icc_key.public.exponent,
            "9F48": icc_remainder,
            "93": keys.sign_static_data(dac, static),
        }
    )
    if not issuer.remainder:
        del data["92"]
    if not icc_remainder:
        del data["9F48"]
    udks = keys.card_udks(pan, profile.psn)
    kinds = ["debit", "credit"] if profile.dual else ["credit" if profile.credit else "debit"]
    apps = [_application(kind, i + 1, profile, data, udks, icc_key) for i, kind in enumerate(kinds)]
    nvm: dict[str, Cell] = {"card.blocked": False, "pin.value": profile.pin, "pin.tries": 3}
    for app in apps:
        nvm.update(_app_cells(app, profile))
    image = CardImage(apps, nvm, pin_try_limit=3)
    image.check()
    return image


def _application(
    kind: str, priority: int, profile: ProductProfile, data: dict[str, bytes], udks: CardUdks, icc_key: RsaKey
) -> Application:
    ec = kind == "debit"
    app_data = dict(data)
    records = dict(_RECORDS)
    if ec:
        app_data["9F74"] = pboc.EC_AUTH_CODE
        records[4] = _EC_RECORDS
    return Application(
        aid=pboc.AID_DEBIT if kind == "debit" else pboc.AID_CREDIT,
        kind=kind,
        label="PBOC DEBIT" if kind == "debit" else "PBOC CREDIT",
        priority=priority,
        contactless=profile.contactless,
        ec=ec,
        data=app_data,
        records=records,
        udk_ac=udks.ac,
        udk_mac=udks.mac,
        udk_enc=udks.enc,
        icc_key=icc_key,
        gpo_format=profile.gpo_format,
    )


def _app_cells(app: Application, profile: ProductProfile) -> dict[str, Cell]:
    values: dict[str, Cell] = {
        "blocked": False,
        "atc": 0,
        "last_online_atc": 0,
        "ec_balance": profile.opening_balance_fen if app.ec else 0,
        "ec_limit": profile.ec_balance_limit_fen if app.ec else 0,
        "ec_single_limit": profile.ec_single_limit_fen if app.ec else 0,
        "ec_reset_threshold": profile.ec_reset_threshold_fen if app.ec else 0,
        "txn_log": [],
        "load_log": [],
        "online_pending": False,
        "issuer_auth_failed": False,
    }
    if app.ec and profile.transit:
        first, trip, ident, counter = pboc.TRANSIT_RECORD_LENGTHS
        identity = app.data["5A"].ljust(ident - 1, b"\xff") + app.data["5F34"]
        assert len(identity) == ident
        values[TRANSIT_CELL] = [
            (profile.concession or "00" * first).upper(),
            "00" * trip,
            identity.hex().upper(),
            "00" * counter,  # the transit write counter: no record written yet
        ]
    if profile.app_file:
        empty = [empty_record(code).hex().upper() for code in APP_NUMBERS]
        values[APPS_CELL] = [r.upper() for r in profile.app_records] or empty
        values[SCRIPTS_CELL] = 0
    return {cell_key(app.aid, name): value for name, value in values.items()}


def _is_hex(text: str, length: int) -> bool:
    try:
        return len(bytes.fromhex(text)) == length
    except ValueError:
        return False
