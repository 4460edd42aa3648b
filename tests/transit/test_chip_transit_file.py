"""The card's transit file (SFI 21) APDU by APDU: READ RECORD, UPDATE CAPP DATA CACHE (80 DE) and its
protection — only record 2, only its length, only before the GPO, written only with an offline approval."""

from __future__ import annotations

import pytest

from citycard.chip.image import CardImage, ImageError, cell_key
from citycard.chip.pboc import AID_DEBIT
from citycard.chip.personalise import ProductProfile, ProfileError

from tests.kernel.cardlab import new_card

TRANSIT = cell_key(AID_DEBIT, "transit")
SELECT = bytes.fromhex("00A4040008A00000033301010100")
P2 = (21 << 3) | 4


def _sw(response: bytes) -> str:
    return response[-2:].hex().upper()


def _update(number: int, data: bytes, p2: int = P2) -> bytes:
    return bytes((0x80, 0xDE, number, p2, len(data))) + data


def test_read_and_stage():
    card = new_card("contactless", transit=True)
    assert _sw(card.transmit(SELECT)) == "9000"
    assert card.transmit(bytes((0x00, 0xB2, 2, P2, 0))) == bytes(36) + b"\x90\x00"  # trip ‖ MAC
    identity = card.transmit(bytes((0x00, 0xB2, 3, P2, 0)))  # the card identity: 5A padded, 5F34
    pan = card.image.applications[0].data["5A"]
    assert identity == pan.ljust(10, b"\xff") + card.image.applications[0].data["5F34"] + b"\x90\x00"
    assert card.transmit(bytes((0x00, 0xB2, 4, P2, 0))) == bytes(2) + b"\x90\x00"  # the write counter: 0
    assert _sw(card.transmit(bytes((0x00, 0xB2, 5, P2, 0)))) == "6A83"
    assert _sw(card.transmit(_update(1, bytes(8)))) == "6982"  # the concession: issuance or script only
    assert _sw(card.transmit(_update(3, bytes(11)))) == "6982"  # the identity: issuance only
    assert _sw(card.transmit(_update(4, bytes(2)))) == "6982"  # the counter: the card's own
    assert _sw(card.transmit(_update(2, bytes(32)))) == "6700"  # a record without its MAC
    assert _sw(card.transmit(_update(2, bytes(36), p2=(22 << 3) | 4))) == "6A86"
    assert _sw(card.transmit(_update(2, b"\x02" * 36))) == "9000"
    # staged only: a new SELECT (a new transaction) forgets it, nothing was written
    assert _sw(card.transmit(SELECT)) == "9000"
    assert card.image.nvm[TRANSIT][1] == "00" * 36


def test_no_transit_file_and_the_contact_interface():
    card = new_card("contactless")
    card.transmit(SELECT)
    assert _sw(card.transmit(_update(2, bytes(36)))) == "6A82"
    assert _sw(card.transmit(bytes((0x00, 0xB2, 2, P2, 0)))) == "6A82"
    contact = new_card("contact", transit=True)
    contact.transmit(SELECT)
    assert _sw(contact.transmit(_update(2, bytes(36)))) == "6985"


def test_image_checks_the_transit_cell():
    card = new_card("contactless", transit=True)
    doc = card.image.to_json()
    assert CardImage.from_json(doc).to_json() == doc
    card.image.nvm[TRANSIT] = ["00" * 8]
    with pytest.raises(ImageError, match="transit"):
        card.image.check()


def test_profile_concession_needs_the_transit_file():
    with pytest.raises(ProfileError):
        ProductProfile(concession="0101203001010000").check()
    with pytest.raises(ProfileError):
        ProductProfile(transit=True, concession="01").check()


def test_a_card_personalised_before_the_write_counter():
    """Three records (before record 4): still a valid image; READ RECORD 4 answers 6A83."""
    legacy = new_card("contactless", serial=3, transit=True)
    assert legacy.image.nvm[TRANSIT][3] == "0000"
    legacy.image.nvm[TRANSIT] = legacy.image.nvm[TRANSIT][:3]
    legacy.image.check()
    legacy.transmit(SELECT)
    assert _sw(legacy.transmit(bytes((0x00, 0xB2, 4, P2, 0)))) == "6A83"
