"""The tag dictionary (EMV 4.3 Book 3 Annex A; JR/T 0025.5/.12/.13): coverage, consistency, RID meanings."""

from __future__ import annotations

import pytest

from citycard.codec.tags import (
    RID_MASTERCARD,
    RID_UNIONPAY,
    RID_VISA,
    TagInfo,
    all_tags,
    lookup,
    tag_format,
    tag_name,
)
from citycard.codec.tlv import is_constructed, tag_bytes

# Every tag a PBOC debit/credit/EC card and its terminal use (the brief's list).
PBOC_TAGS = (
    "4F", "50", "57", "5A", "5F20", "5F24", "5F25", "5F28", "5F2A", "5F2D", "5F30", "5F34",
    "61", "6F", "70", "77", "80", "82", "84", "87", "88", "8A", "8C", "8D",
    "8E", "8F", "90", "91", "92", "93", "94", "95", "9A", "9B", "9C", "9D",
    "9F02", "9F03", "9F06", "9F07", "9F08", "9F09", "9F0D", "9F0E", "9F0F", "9F10", "9F11", "9F12",
    "9F13", "9F14", "9F17", "9F1A", "9F1B", "9F1E", "9F1F", "9F21", "9F23", "9F26", "9F27", "9F32",
    "9F33", "9F34", "9F35", "9F36", "9F37", "9F38", "9F39", "9F40", "9F41", "9F42", "9F44", "9F45",
    "9F46", "9F47", "9F48", "9F49", "9F4A", "9F4B", "9F4C", "9F4D", "9F4E", "9F4F", "9F51", "9F52",
    "9F53", "9F54", "9F55", "9F56", "9F57", "9F58", "9F59", "9F5A", "9F5B", "9F5C", "9F5D", "9F63",
    "9F66", "9F69", "9F6C", "9F6D", "9F74", "9F77", "9F78", "9F79", "9F7A", "9F7B", "A5", "BF0C",
    "DF4D", "DF4F", "DF60", "DF61", "DF62", "DF69", "71", "72", "86",
)  # fmt: skip


@pytest.mark.parametrize("tag", PBOC_TAGS)
def test_pboc_tags_are_known(tag: str) -> None:
    for rid in (None, RID_UNIONPAY):
        info = lookup(tag, rid)
        assert info is not None, f"{tag} missing for rid {rid}"
        assert info.tag == tag and tag_name(tag, rid) != "Unknown"


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("9F74", "EC issuer authorization code"),
        ("9F77", "EC balance limit"),
        ("9F78", "EC single transaction limit"),
        ("9F79", "EC balance"),
        ("9F6D", "EC reset threshold"),
        ("9F5D", "Available offline spending amount"),
        ("9F7A", "EC terminal support indicator"),
        ("9F7B", "EC terminal transaction limit"),
        ("9F63", "Card product identification"),
    ],
)
def test_unionpay_meanings(tag: str, name: str) -> None:
    assert tag_name(tag, RID_UNIONPAY).lower() == name.lower()
    # an AID works as well as its RID, in any case
    assert tag_name(tag, "a000000333010101").lower() == name.lower()
    # without a RID, or for another scheme, the UnionPay meaning is not given
    assert tag_name(tag) != tag_name(tag, RID_UNIONPAY)
    assert tag_name(tag, RID_VISA) != tag_name(tag, RID_UNIONPAY)


def test_other_scheme_meanings() -> None:
    assert "VLP" in tag_name("9F79", RID_VISA)
    assert "VLP" in tag_name("9F79") and "Visa" in tag_name("9F79")
    assert "Mag-stripe" in tag_name("9F6D", RID_MASTERCARD)
    assert "PUNATC" in tag_name("9F63", RID_MASTERCARD)
    # a scheme table only overrides what it knows: 9F79 for Mastercard falls back to the generic entry
    assert tag_name("9F79", RID_MASTERCARD) == tag_name("9F79")
    assert tag_format("9F5D", RID_UNIONPAY) == "n" and tag_format("9F5D", RID_MASTERCARD) == "b"


def test_formats_and_defaults() -> None:
    assert tag_format("9F02") == "n"
    assert tag_format("5A") == "cn"
    assert tag_format("50") == "ans"
    assert tag_format("9F1C") == "an"
    assert tag_format("82") == "b"
    assert tag_format("DF7F") == "b"  # unknown: binary
    assert tag_name("DF7F") == "Unknown"
    assert lookup("DF7F") is None
    assert lookup("9f02") == lookup("9F02")  # case-insensitive


def test_ec_objects_are_n12_card_data() -> None:
    for tag in ("9F79", "9F77", "9F78", "9F6D", "9F5D"):
        info = lookup(tag, RID_UNIONPAY)
        assert info is not None
        assert (info.fmt, info.min_len, info.max_len, info.source) == ("n", 6, 6, "card")
    assert lookup("9F7B", RID_UNIONPAY) == TagInfo(
        "9F7B", "EC terminal transaction limit", "n", 6, 6, "terminal"
    )
    assert lookup("9F74", RID_UNIONPAY) is not None


@pytest.mark.parametrize("rid", [None, RID_UNIONPAY, RID_VISA, RID_MASTERCARD])
def test_dictionary_is_consistent(rid: str | None) -> None:
    entries = all_tags(rid)
    assert len(entries) > 150
    for info in entries:
        assert tag_bytes(info.tag).hex().upper() == info.tag  # well-formed, upper-case
        assert info.fmt in ("n", "cn", "an", "ans", "b")
        assert info.source in ("card", "terminal", "issuer")
        assert 0 <= info.min_len <= info.max_len <= 261, info
        assert info.name and info.name != "Unknown"
        if is_constructed(info.tag):
            assert info.fmt == "b"
        assert lookup(info.tag, rid) == info


def test_taginfo_is_frozen() -> None:
    info = lookup("9F02")
    assert info is not None
    with pytest.raises(AttributeError):
        info.name = "x"  # type: ignore[misc]
