"""Offline data authentication failures set the right TVR bits (EMV Book 3 §10.3, Annex C5)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from citycard.codec.emvbits import TSI_ODA, TVR_DDA_FAILED, TVR_EXPIRED, TVR_ODA_NOT_PERFORMED, TVR_SDA_FAILED
from citycard.kernel.config import ConfigError, parse_config
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K
from citycard.kernel.oda import certificate_expired

from .cardlab import ca_key, new_card, terminal_config, transact


def _has(bits: bytes, flag) -> bool:
    return bool(bits[flag[0]] & flag[1])


def _tamper(card, select, mutate):
    """Let ``mutate(response)`` change the responses to the commands ``select(apdu)`` picks."""
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        response = inner(apdu)
        return mutate(response) if select(apdu) else response

    card.transmit = transmit
    return card


def _flip_in(marker: bytes, offset: int):
    def mutate(response: bytes) -> bytes:
        at = response.find(marker)
        if at < 0:
            return response
        i = at + len(marker) + offset
        return response[:i] + bytes((response[i] ^ 0x01,)) + response[i + 1 :]

    return mutate


READ_SFI3_REC2 = bytes.fromhex("00B2021C00")
READ_SFI3_REC3 = bytes.fromhex("00B2031C00")


def test_no_ca_key_dda_failed_and_declined():
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=terminal_config(capks=()))
    assert _has(out.tvr, TVR_DDA_FAILED) and _has(out.tsi, TSI_ODA)
    assert out.kind is OutcomeKind.DECLINED_OFFLINE  # TAC-default has "DDA failed"
    assert "no CA public key" in out.reason


def test_wrong_ca_key_under_the_right_index_fails_dda_and_fdda():
    """A CAPK with the card's RID and index but another modulus: the issuer certificate does not recover."""
    from citycard.crypto.rsa_cert import RsaKey

    other = RsaKey.generate(len(ca_key().modulus) * 8, 3)
    wrong = replace(ca_key(), modulus=other.n.to_bytes(len(ca_key().modulus), "big"))
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=terminal_config(capks=(wrong,)))
    assert _has(out.tvr, TVR_DDA_FAILED) and "issuer certificate" in out.reason
    assert out.kind is OutcomeKind.DECLINED_OFFLINE
    validator = terminal_config(capks=(wrong,), terminal_type=0x26)
    out, _ = transact(new_card("contactless"), K.PURCHASE, 200, interface="contactless", cfg=validator)
    assert _has(out.tvr, TVR_DDA_FAILED) and not out.approved and "fDDA failed" in out.reason


def test_expired_ca_key_is_not_used():
    expired = replace(ca_key(), expiry=dt.date(2026, 11, 24))
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=terminal_config(capks=(expired,)))
    assert _has(out.tvr, TVR_DDA_FAILED) and "CA public key expired" in out.reason and not out.approved
    current = replace(ca_key(), expiry=dt.date(2026, 11, 25))  # valid through its expiry date
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=terminal_config(capks=(current,)))
    assert out.tvr == bytes(5) and out.approved


def test_revoked_issuer_certificate():
    cfg = terminal_config(capks=(replace(ca_key(), revoked_serials=frozenset({bytes.fromhex("000001")})),))
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=cfg)
    assert _has(out.tvr, TVR_DDA_FAILED) and "revoked" in out.reason


def test_tampered_icc_certificate():
    card = _tamper(new_card(), lambda a: a == READ_SFI3_REC2, _flip_in(bytes.fromhex("9F468180"), 40))
    out, _ = transact(card, K.PURCHASE, 100)
    assert _has(out.tvr, TVR_DDA_FAILED) and "ICC certificate" in out.reason
    assert not out.approved


def test_tampered_dynamic_signature():
    card = _tamper(new_card(), lambda a: a[:2] == b"\x00\x88", _flip_in(bytes.fromhex("808180"), 7))
    out, _ = transact(card, K.PURCHASE, 100)
    assert _has(out.tvr, TVR_DDA_FAILED) and "signed dynamic data" in out.reason


def test_expired_issuer_certificate_and_card():
    out, _ = transact(new_card(), K.PURCHASE, 100, now=dt.datetime(2036, 2, 1, 12, 0))
    assert _has(out.tvr, TVR_DDA_FAILED) and _has(out.tvr, TVR_EXPIRED)
    assert "issuer certificate expired" in out.reason and not out.approved


def test_sda_when_terminal_has_no_dda():
    cfg = terminal_config(capabilities=bytes.fromhex("E0F880"))
    out, apdus = transact(new_card(), K.PURCHASE, 100, cfg=cfg)
    assert out.approved and out.tvr == bytes(5) and _has(out.tsi, TSI_ODA)
    assert "INTERNAL AUTHENTICATE" not in [p for p, _, _ in apdus]


def test_tampered_sda_signature():
    cfg = terminal_config(capabilities=bytes.fromhex("E0F880"))
    card = _tamper(new_card(), lambda a: a == READ_SFI3_REC3, _flip_in(bytes.fromhex("938180"), 60))
    out, _ = transact(card, K.PURCHASE, 100, cfg=cfg)
    assert _has(out.tvr, TVR_SDA_FAILED) and not _has(out.tvr, TVR_DDA_FAILED) and not out.approved


def test_no_oda_capability():
    cfg = terminal_config(capabilities=bytes.fromhex("E0F800"))
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=cfg)
    assert _has(out.tvr, TVR_ODA_NOT_PERFORMED) and not _has(out.tsi, TSI_ODA)


def test_fdda_tampered_declines_on_validator():
    card = _tamper(
        new_card("contactless"), lambda a: a[:2] == b"\x80\xa8", _flip_in(bytes.fromhex("9F4B8180"), 5)
    )
    out, _ = transact(card, K.PURCHASE, 200, interface="contactless", cfg=terminal_config(terminal_type=0x26))
    assert out.kind is OutcomeKind.DECLINED_OFFLINE and _has(out.tvr, TVR_DDA_FAILED)
    assert "fDDA failed" in out.reason


def test_certificate_expiry_is_end_of_month():
    assert not certificate_expired("1235", dt.date(2035, 12, 31))
    assert certificate_expired("1235", dt.date(2036, 1, 1))
    assert certificate_expired("1335", dt.date(2020, 1, 1))


def test_capk_checksum_is_verified():
    key = ca_key()
    text = f"""
[[capk]]
rid = "{key.rid.hex()}"
index = "{key.index:02X}"
modulus = "{key.modulus.hex()}"
exponent = "{key.exponent.hex()}"
checksum = "{key.checksum.hex()}"
"""
    assert parse_config(text).capk(key.rid, key.index) == key
    bad = text.replace(key.checksum.hex(), bytes(20).hex())
    with pytest.raises(ConfigError, match="checksum"):
        parse_config(bad)


def test_capk_file():
    from citycard.kernel.config import parse_capks

    key = ca_key()
    entry = (
        f'[[capk]]\nrid = "{key.rid.hex()}"\nindex = "{key.index:02X}"\nmodulus = "{key.modulus.hex()}"\n'
        f'exponent = "{key.exponent.hex()}"\nchecksum = "{key.checksum.hex()}"\nexpiry = 2030-12-31\n'
    )
    (loaded,) = parse_capks(entry)
    assert loaded.modulus == key.modulus and loaded.expiry is not None
    with pytest.raises(ConfigError, match="no \\[\\[capk\\]\\]"):
        parse_capks("")
    with pytest.raises(ConfigError, match="checksum"):
        parse_capks(entry.replace(key.checksum.hex(), "00" * 20))
    # a quoted date is a string, not a date: refused rather than read as "never expires"
    with pytest.raises(ConfigError, match=r"capk\[0\]\.expiry"):
        parse_capks(entry.replace("expiry = 2030-12-31", 'expiry = "2030-12-31"'))
    with pytest.raises(ConfigError, match="revoked_serials"):
        parse_capks(entry + "revoked_serials = [99]\n")
    assert parse_capks(entry + 'revoked_serials = ["000099"]\n')[0].revoked_serials == {
        bytes.fromhex("000099")
    }
    cfg = terminal_config(capks=()).with_capks([loaded])
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=cfg)
    assert out.approved
    expired = terminal_config(capks=(replace(loaded, expiry=dt.date(2026, 1, 1)),))
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=expired)
    assert "CA public key expired" in out.reason and not out.approved
