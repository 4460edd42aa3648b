"""Cryptogram versions named once (citycard.crypto.cvn): looked up from the IAD, the unsupported ones refused
by name; the card emulator writes the one it names."""

from __future__ import annotations

import pytest

from citycard.chip.pboc import build_iad
from citycard.crypto.cryptograms import AC_DATA_TAGS, CryptogramDataError
from citycard.crypto.cvn import CVN01_TDES, cryptogram_version
from citycard.crypto.sm import Algorithm

# The IAD of the UnionPay purchase request published with a PBOC field 55 (tests/codec/iso8583/
# test_iso8583_wire.py): 07 DKI 01 CVN 01, CVR 03 A00000, algorithm 01, then EC balance and MAC.
PUBLISHED_IAD = bytes.fromhex("07010103A00000010A010000000000ED538FE4")


def test_the_published_iad_names_cvn_01_under_3des() -> None:
    from tests.codec.iso8583.test_iso8583_wire import PUBLISHED_PURCHASE

    assert b"\x9f\x10\x13" + PUBLISHED_IAD in PUBLISHED_PURCHASE  # copied from the trace, not made up
    version = cryptogram_version(PUBLISHED_IAD)
    assert version is CVN01_TDES and version.algorithm is Algorithm.TDES and version.ac_tags == AC_DATA_TAGS
    assert build_iad(bytes.fromhex("A00000"), 0, 1, bytes(16))[:8] == PUBLISHED_IAD[:8]  # the card's own


@pytest.mark.parametrize(
    ("iad", "says"),
    [
        (PUBLISHED_IAD[:2] + b"\x02" + PUBLISHED_IAD[3:], "cryptogram version 02 with algorithm 01"),
        (PUBLISHED_IAD[:7] + b"\x04" + PUBLISHED_IAD[8:], "cryptogram version 01 with algorithm 04"),
        (PUBLISHED_IAD[:7] + b"\x09" + PUBLISHED_IAD[8:], "algorithm 09"),
        (PUBLISHED_IAD[:7], "too short"),
    ],
)
def test_other_versions_are_refused_by_name(iad: bytes, says: str) -> None:
    with pytest.raises(CryptogramDataError, match=says) as info:
        cryptogram_version(iad)
    assert info.value.tag == "9F10"
