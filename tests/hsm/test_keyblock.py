"""TR-31 / ANSI X9.143 version D key blocks: the TR-31:2018 Annex A.7.4 known answer, round trips,
tampering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.hsm.keyblock import Header, KeyBlockError, parse_header, unwrap, wrap

# ASC X9 TR-31:2018 Annex A.7.4 (example 3): AES-256 KBPK, PIN encryption key, fixed padding.
KBPK = bytes.fromhex("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
KEY = bytes.fromhex("3F419E1CB7079442AA37474C2EFBF8B8")
PADDING = bytes.fromhex("1C2965473CE206BB855B01533782")
EXPECTED = (
    "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A2"
    "7E8E31DA05F7425509593D03A457DC34"
)


def test_tr31_2018_a_7_4_wrap() -> None:
    block = wrap(KBPK, Header("P0", "A", "E", "00", "E"), KEY, random=lambda n: PADDING[:n])
    assert block == EXPECTED


def test_tr31_2018_a_7_4_unwrap() -> None:
    header, key = unwrap(KBPK, EXPECTED)
    assert key == KEY
    assert header == Header("P0", "A", "E", "00", "E")
    assert parse_header(EXPECTED) == header


@given(st.binary(min_size=1, max_size=300), st.sampled_from([16, 24, 32]))
def test_round_trip(key: bytes, kbpk_len: int) -> None:
    kbpk = bytes(range(kbpk_len))
    header = Header("E0", "T", "X", "01", "N")
    assert unwrap(kbpk, wrap(kbpk, header, key)) == (header, key)


@pytest.mark.parametrize("position", [3, 6, 20, 60, -1])
def test_tampering_is_detected(position: int) -> None:
    chars = list(EXPECTED)
    chars[position] = "0" if chars[position] != "0" else "1"
    with pytest.raises(KeyBlockError):
        unwrap(KBPK, "".join(chars))


def test_wrong_kbpk_is_refused() -> None:
    with pytest.raises(KeyBlockError, match="authentication failed"):
        unwrap(bytes(32), EXPECTED)


def test_usage_is_bound_by_the_mac() -> None:
    # Re-labelling a PIN key as a KEK must not survive the MAC check.
    forged = EXPECTED[:5] + "K0" + EXPECTED[7:]
    with pytest.raises(KeyBlockError):
        unwrap(KBPK, forged)
