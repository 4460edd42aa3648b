"""Pure checks of the issuer domain: GB 11643-1999 ID numbers, Luhn PANs, masking, transfer ids."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.issuer.handlers import transfer_id
from citycard.issuer.model import (
    BinRange,
    InvalidIdNumber,
    id_number_check_character,
    luhn_check_digit,
    mask_pan,
    validate_id_number,
)
from citycard.ledger.model import MAX_ID

TODAY = date(2026, 12, 3)


def _checked(first17: str) -> str:
    return first17 + id_number_check_character(first17)


@pytest.mark.parametrize(
    "number",
    [
        "11010519491231002X",  # GB 11643-1999 §8 example
        "11010519491231002x",  # lower-case check character is accepted and normalised
        "440524188001010014",
    ],
)
def test_valid_id_numbers(number: str) -> None:
    assert validate_id_number(number, today=TODAY) == number.upper()


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("110105194912310021", "check character"),
        ("11010519491231002", "17 digits"),
        ("11010519491231002XX", "17 digits"),
        ("1101051949123100AX", "17 digits"),
        ("110105194902300021", "date of birth"),  # 30 February
        ("110105194913010021", "date of birth"),
        # with valid check characters: only the date of birth or the region is wrong
        (_checked("11010520300101001"), "in the future"),  # born in 2030
        (_checked("11010520261204001"), "in the future"),  # born tomorrow
        (_checked("99999919491231002"), "region code"),  # no province 99 in GB/T 2260
        (_checked("00000019491231001"), "region code"),
    ],
)
def test_invalid_id_numbers(number: str, why: str) -> None:
    with pytest.raises(InvalidIdNumber, match=why):
        validate_id_number(number, today=TODAY)


def test_born_today_is_valid() -> None:
    number = _checked("110105" + TODAY.strftime("%Y%m%d") + "001")
    assert validate_id_number(number, today=TODAY) == number


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_exactly_one_check_character_is_valid(first17: str) -> None:
    good = id_number_check_character(first17)
    for candidate in "0123456789X":
        try:
            validate_id_number(first17 + candidate, today=TODAY)
        except InvalidIdNumber:
            continue
        assert candidate == good


def test_luhn_and_pans() -> None:
    assert luhn_check_digit("7992739871") == "3"  # ISO/IEC 7812-1 Annex B example
    pan = BinRange("621226", "ICBC", 19).pan(1)
    assert pan == "6212260000000000018" and luhn_check_digit(pan[:-1]) == pan[-1]
    assert mask_pan(pan) == "621226*********0018"


@given(st.text(min_size=1, max_size=64), st.integers(1, 9))
def test_transfer_ids_are_valid_ledger_ids(request_id: str, leg: int) -> None:
    tid = transfer_id(request_id, leg)
    assert (
        1 <= tid <= MAX_ID and tid == transfer_id(request_id, leg) and tid != transfer_id(request_id, leg + 1)
    )


def test_request_kind_from_a_string_and_unknown_kinds() -> None:
    from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest, MalformedRequest

    req = AuthorizationRequest("r", "ec_load", "6212260000000000018", "01", 100, b"")  # type: ignore[arg-type]
    assert req.kind is AuthorizationKind.EC_LOAD
    with pytest.raises(MalformedRequest, match="kind"):
        AuthorizationRequest("r", "cashback", "6212260000000000018", "01", 100, b"")  # type: ignore[arg-type]
    for follow_up in ("refund", "void"):  # known kinds now, that name their original
        with pytest.raises(MalformedRequest, match="original_request_id"):
            AuthorizationRequest("r", follow_up, "6212260000000000018", "01", 100, b"")  # type: ignore[arg-type]
    with pytest.raises(MalformedRequest, match="pan"):
        AuthorizationRequest("r", "ec_load", "62122600000A0000018", "01", 100, b"")  # type: ignore[arg-type]
    with pytest.raises(MalformedRequest, match="original_request_id"):
        AuthorizationRequest("r", "reversal", "6212260000000000018", "01", 0, b"")  # type: ignore[arg-type]


def test_card_status_transitions_are_one_table() -> None:
    from dataclasses import replace

    from citycard.issuer.model import CARD_TRANSITIONS, Card, CardAction, CardStateError, CardStatus

    assert set(CARD_TRANSITIONS) == set(CardAction)
    card = Card("6212260000000000018", "01", "ICBC", "debit-ec", 1, CardStatus.ISSUED, "3612", 1, 2, 0)
    assert card.after(CardAction.ACTIVATE) is CardStatus.ACTIVE
    assert card.after(CardAction.SET_PIN) is CardStatus.ISSUED  # the status stays
    with pytest.raises(CardStateError, match=r"\*{9}0018 is issued: cannot block it"):
        card.require(CardAction.BLOCK)
    for action, (allowed, target) in CARD_TRANSITIONS.items():
        for status in CardStatus:
            other = replace(card, status=status)
            assert other.allows(action) is (status in allowed)
            if status in allowed:
                assert other.after(action) is (target or status)
