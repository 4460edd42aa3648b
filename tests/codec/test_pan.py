"""PANs said once (citycard.codec.pan): the Luhn check digit, masking, and the logs' safety net."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from citycard.chip.personalise import make_pan
from citycard.codec.pan import luhn_check_digit, luhn_valid, mask_pan, mask_pans


def test_luhn_known_answers() -> None:
    # ISO/IEC 7812-1 Annex B's method; "7992739871" -> 3 is the example every description of it works
    assert luhn_check_digit("7992739871") == "3" and luhn_valid("79927398713")
    assert not luhn_valid("79927398710") and not luhn_valid("7") and not luhn_valid("79927x98713")
    assert luhn_valid("6212260000000000018")  # the first PAN of a 62122600 BIN (docs/walkthrough)


def test_mask_pans_masks_each_pan_and_nothing_else() -> None:
    line = 'GET /api/cards?pan_suffix=6212260000000000018 HTTP/1.1" 200; rrn 000000000042, stan 000017'
    assert mask_pans(line) == (
        'GET /api/cards?pan_suffix=621226*********0018 HTTP/1.1" 200; rrn 000000000042, stan 000017'
    )
    assert mask_pans("6212260000000000019") == "6212260000000000019"  # fails the Luhn check: not a PAN
    assert mask_pans("62122600000000000180") == "62122600000000000180"  # 20 digits: part of something else
    assert (
        mask_pans("pan=4111111111111111,next=5500005555555559")
        == "pan=411111******1111,next=550000******5559"
    )


@given(
    bin_=st.sampled_from(["62122600", "621661", "622848"]),
    length=st.integers(16, 19),
    serial=st.integers(0, 10**7 - 1),  # the room a 16-digit PAN on an 8-digit BIN leaves
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_no_pan_survives_in_any_text(bin_: str, length: int, serial: int, before: str, after: str) -> None:
    pan = make_pan(bin_, length, serial)
    text = f"{before} {pan} {after}"
    masked = mask_pans(text)
    assert pan not in masked and mask_pan(pan) in masked
