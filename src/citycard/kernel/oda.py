"""Offline data authentication, terminal side: CA key retrieval, issuer and ICC certificate checks, SDA,
DDA and qPBOC fDDA (EMV 4.3 Book 2 §5-6, Book 3 §10.3; JR/T 0025.7; JR/T 0025.12 fDDA).

The RSA recovery and the format checks are :mod:`citycard.crypto.rsa_cert`'s; this module adds what only
the terminal knows: its CA public keys (by RID and index ``8F``), the transaction date (certificate
expiry), its certificate revocation list, and the match between the certificates and the card's PAN.
Every function returns a failure *reason* (a short string) instead of raising: the kernel turns it into
the right TVR bit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from citycard.crypto.rsa_cert import (
    CertificateError,
    RsaPublicKey,
    cda_transaction_data_hash,
    fdda_terminal_data,
    recover_dynamic_data,
    recover_icc_certificate,
    recover_issuer_certificate,
    recover_static_data,
)

from .config import TerminalConfig

__all__ = [
    "OdaContext",
    "PublicKey",
    "cda_hash",
    "certificate_expired",
    "fdda_data",
    "issuer_key",
    "recover_icc_key",
    "recover_pin_key",
    "verify_cda",
    "verify_dda",
    "verify_sda",
]

PublicKey = RsaPublicKey


@dataclass(frozen=True, slots=True)
class OdaContext:
    config: TerminalConfig
    rid: bytes
    card: Mapping[str, bytes]
    pan: str
    today: dt.date
    static_data: bytes
    records_ok: bool = True  # every ODA record was a 70 template (Book 3 §10.3)


def certificate_expired(mmyy: str, today: dt.date) -> bool:
    """A certificate is valid through the last day of its expiry month (Book 2 §5.3 step 10)."""
    if len(mmyy) != 4 or not mmyy.isdigit() or not 1 <= int(mmyy[:2]) <= 12:
        return True
    month, year = int(mmyy[:2]), 2000 + int(mmyy[2:])
    return (year, month) < (today.year, today.month)


def issuer_key(ctx: OdaContext) -> tuple[RsaPublicKey | None, str]:
    """Book 2 §5.3 / §6.3: the issuer public key, or None and why not."""
    index = ctx.card.get("8F")
    if index is None or len(index) != 1:
        return None, "CA public key index (8F) missing"
    capk = ctx.config.capk(ctx.rid, index[0])
    if capk is None:
        return None, f"no CA public key {ctx.rid.hex().upper()}/{index.hex().upper()}"
    if capk.expiry is not None and capk.expiry < ctx.today:
        return None, "CA public key expired"
    cert = ctx.card.get("90")
    exponent = ctx.card.get("9F32")
    if cert is None or exponent is None:
        return None, "issuer public key certificate (90) or exponent (9F32) missing"
    ca = RsaPublicKey(int.from_bytes(capk.modulus, "big"), int.from_bytes(capk.exponent, "big"))
    try:
        recovered = recover_issuer_certificate(ca, cert, ctx.card.get("92", b""), exponent)
    except CertificateError as exc:
        return None, f"issuer certificate: {exc}"
    if not ctx.pan.startswith(recovered.issuer_identifier) or not 3 <= len(recovered.issuer_identifier) <= 8:
        return None, "issuer identifier does not match the PAN"
    if certificate_expired(recovered.expiry, ctx.today):
        return None, "issuer certificate expired"
    if recovered.serial in capk.revoked_serials:
        return None, "issuer certificate revoked"
    return recovered.public_key, ""


def verify_sda(ctx: OdaContext) -> str:
    """Book 2 §5.4: "" when the signed static application data (93) verifies, else the reason."""
    if not ctx.records_ok:
        return "static data records not in 70 templates"
    key, failure = issuer_key(ctx)
    if key is None:
        return failure
    signed = ctx.card.get("93")
    if signed is None:
        return "signed static application data (93) missing"
    try:
        recover_static_data(key, signed, ctx.static_data)
    except CertificateError as exc:
        return f"signed static data: {exc}"
    return ""


def _certified_key(
    ctx: OdaContext, tags: tuple[str, str, str], static_data: bytes, what: str
) -> tuple[RsaPublicKey | None, str]:
    """An issuer-signed format-04 certificate (``tags``: certificate, exponent, remainder) checked against
    the application PAN and the date; the public key it certifies, or None and why not."""
    key, failure = issuer_key(ctx)
    if key is None:
        return None, failure
    cert, exponent = ctx.card.get(tags[0]), ctx.card.get(tags[1])
    if cert is None or exponent is None:
        return None, f"{what} certificate ({tags[0]}) or exponent ({tags[1]}) missing"
    try:
        recovered = recover_icc_certificate(key, cert, ctx.card.get(tags[2], b""), exponent, static_data)
    except CertificateError as exc:
        return None, f"{what} certificate: {exc}"
    if recovered.pan != ctx.pan:
        return None, f"{what} certificate PAN does not match the application PAN"
    if certificate_expired(recovered.expiry, ctx.today):
        return None, f"{what} certificate expired"
    return recovered.public_key, ""


def recover_icc_key(ctx: OdaContext) -> tuple[RsaPublicKey | None, str]:
    """Book 2 §6.4: the ICC public key (DDA, fDDA, CDA, enciphered PIN), or None and why not."""
    if not ctx.records_ok:
        return None, "static data records not in 70 templates"
    return _certified_key(ctx, ("9F46", "9F47", "9F48"), ctx.static_data, "ICC")


def recover_pin_key(ctx: OdaContext) -> tuple[RsaPublicKey | None, str]:
    """Book 2 §7.1: the ICC PIN encipherment public key from its certificate (9F2D, exponent 9F2E,
    remainder 9F2F), signed by the issuer like the ICC certificate (format 04) but without the static data
    in its hash; or None and why not."""
    return _certified_key(ctx, ("9F2D", "9F2E", "9F2F"), b"", "ICC PIN encipherment key")


def verify_dda(key: RsaPublicKey, signed: bytes, terminal_data: bytes) -> tuple[bytes | None, str]:
    """Book 2 §6.5.2: the ICC dynamic number (9F4C) when the signature verifies, else None and why."""
    try:
        recovered = recover_dynamic_data(key, signed, terminal_data)
        return recovered.icc_dynamic_number, ""
    except CertificateError as exc:
        return None, f"signed dynamic data: {exc}"


def fdda_data(un: bytes, amount: bytes, currency: bytes, card_auth_data: bytes | None) -> bytes:
    """The terminal dynamic data of a qPBOC fDDA signature (version by 9F69 byte 1; version 00 without)."""
    if not card_auth_data:
        return un
    return fdda_terminal_data(un, amount, currency, card_auth_data)


def cda_hash(pdol_data: bytes, cdol_data: bytes, response_tlvs: bytes) -> bytes:
    """Book 2 §6.6.1: the transaction data hash code the card signs with CDA."""
    return cda_transaction_data_hash(pdol_data, cdol_data, response_tlvs)


def verify_cda(
    key: RsaPublicKey, signed: bytes, un: bytes, cid: bytes, tx_hash: bytes
) -> tuple[bytes | None, str]:
    """Book 2 §6.6.2: the application cryptogram from a verified CDA signature, else None and why.

    ICC dynamic data = L ‖ ICC dynamic number ‖ CID ‖ AC (8) ‖ transaction data hash (20); the terminal
    dynamic data hashed with it is the unpredictable number (9F37)."""
    try:
        recovered = recover_dynamic_data(key, signed, un)
        number = recovered.icc_dynamic_number
    except CertificateError as exc:
        return None, f"CDA signature: {exc}"
    rest = recovered.icc_dynamic_data[1 + len(number) :]
    if len(rest) < 29:
        return None, "CDA: ICC dynamic data too short"
    if rest[:1] != cid:
        return None, "CDA: CID in the signature differs from the response"
    if rest[9:29] != tx_hash:
        return None, "CDA: transaction data hash differs"
    return rest[1:9], ""
