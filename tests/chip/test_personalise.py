"""Personalisation from a product profile (docs/card-profile.md §6, §12)."""

from __future__ import annotations

from typing import Any

import pytest

from citycard.chip.personalise import (
    ProductProfile,
    ProfileError,
    make_pan,
    personalise,
)
from citycard.codec.pan import luhn_check_digit
from citycard.crypto.derivation import derive_icc_mk_a


def _luhn_ok(pan: str) -> bool:
    return luhn_check_digit(pan[:-1]) == pan[-1]


def test_luhn_known_values() -> None:
    # ISO/IEC 7812-1 annex B example: 7992739871 has check digit 3
    assert luhn_check_digit("7992739871") == "3"
    assert luhn_check_digit("4111111111111111"[:-1]) == "1"
    assert luhn_check_digit("0") == "0" and luhn_check_digit("1") == "8"
    for bad in ("", "12a4", "１２"):
        with pytest.raises(ValueError):
            luhn_check_digit(bad)


def test_pan_on_bin() -> None:
    pan = make_pan("623456", 16, 42)
    assert pan.startswith("623456000000042") and len(pan) == 16 and _luhn_ok(pan)
    assert len(make_pan("62345678", 19, 1)) == 19
    with pytest.raises(ProfileError):
        make_pan("623456", 16, 10**9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bin": "62A456"}, "bin"),
        ({"pan_length": 12}, "pan_length"),
        ({"psn": "1"}, "psn"),
        ({"expiry": "311331"}, "expiry"),
        ({"registered": True}, "holder_name"),
        ({"holder_name": "张三"}, "holder_name"),
        ({"opening_balance_fen": 200_000}, "opening_balance_fen"),
        ({"ec_single_limit_fen": -1}, "ec_single_limit_fen"),
        ({"pin": "12"}, "pin"),
    ],
)
def test_profile_errors(kwargs: dict[str, Any], field: str, demo_keys: Any) -> None:
    with pytest.raises(ProfileError) as info:
        personalise(ProductProfile(**kwargs), 1, demo_keys)
    assert info.value.field == field


def test_keys_and_data(demo_keys: Any) -> None:
    image = personalise(
        ProductProfile(bin="62345678", pan_length=19, psn="02", opening_balance_fen=123), 9, demo_keys
    )
    (app,) = image.applications
    pan = app.data["5A"].hex().upper().rstrip("F")
    assert len(pan) == 19 and _luhn_ok(pan) and pan.startswith("62345678")
    assert app.udk_ac == derive_icc_mk_a(demo_keys.imk_ac, pan, "02")
    assert app.udk_mac == derive_icc_mk_a(demo_keys.imk_mac, pan, "02")
    assert app.udk_enc == derive_icc_mk_a(demo_keys.imk_enc, pan, "02")
    assert "5F20" not in app.data  # anonymous
    assert app.icc_key is not None and app.icc_key.n.bit_length() == 1024
    assert image.get_int("A000000333010101.ec_balance") == 123
    assert app.records[4] == (("9F77", "9F78", "9F6D"), ("9F74",))


def test_credit_product(demo_keys: Any, make_terminal: Any, h: Any) -> None:
    image = personalise(ProductProfile(credit=True), 11, demo_keys)
    (app,) = image.applications
    assert app.aid.hex().upper() == h.CREDIT and not app.ec and 4 not in app.records
    t = make_terminal(image)
    t.card.power_on()
    assert t.select(h.CREDIT).sw == 0x9000
    assert t.get_data("9F79").sw == 0x6A88
    assert t.gpo_contact(100, ec=True).data[4:] == bytes.fromhex("1001020118010300")
    assert t.generate_ac(0x40, h.cdol1_data(100)).tags["9F27"] == b"\x80"


def test_gpo_format_2(demo_keys: Any, make_terminal: Any, h: Any) -> None:
    t = make_terminal(personalise(ProductProfile(gpo_format=2, opening_balance_fen=100), 12, demo_keys))
    resp = t.start_contact(100, ec=True)
    assert resp.data[0] == 0x77
    assert resp.tags["82"] == bytes.fromhex("7C00") and resp.tags["94"] == bytes.fromhex(
        "100102011801030020010200"
    )
    with pytest.raises(ProfileError):
        personalise(ProductProfile(gpo_format=3), 1, demo_keys)
