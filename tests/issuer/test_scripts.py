"""Issuer scripts pending for a card, delivered at its next online contact and run by the real chip
(SQLite and PostgreSQL): PIN UNBLOCK (PBOC PIN CHANGE/UNBLOCK P2 00, MAC from the HSM), alone and with an
APPLICATION BLOCK in the same answer. (APPLICATION BLOCK and UNBLOCK alone: test_lifecycle; the PIN CHANGE
with the bank's PIN: test_pins.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.commands import AuthorizationKind, BlockCard, ReportLost, UnblockPin
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import CardStateError
from citycard.issuer.views import card_status

from tests.issuer.conftest import DEBIT_AID, Terminal
from tests.issuer.test_authorization import funded_card
from tests.issuer.test_slice import request

PIN_UNBLOCK, APPLICATION_BLOCK = bytes.fromhex("84240000"), bytes.fromhex("841E0000")
PIN_BLOCKED = 0x6983


def verify(term: Terminal, pin: str) -> int:
    """A fresh contact session up to an offline plaintext VERIFY of ``pin``; its status word."""
    term.card.power_on("contact")
    _, sw = term.send(bytes((0x00, 0xA4, 0x04, 0x00, len(DEBIT_AID))) + DEBIT_AID + b"\x00")
    assert sw in (0x9000, 0x6283), hex(sw)
    pdol = b"\x00" + bytes(6) + bytes.fromhex("0156")
    _, sw = term.send(bytes((0x80, 0xA8, 0, 0, len(pdol) + 2, 0x83, len(pdol))) + pdol + b"\x00")
    assert sw == 0x9000, hex(sw)
    block = bytes.fromhex((f"2{len(pin):X}" + pin).ljust(16, "F"))
    return term.send(bytes.fromhex("0020008008") + block)[1]


def block_the_chips_pin(term: Terminal) -> None:
    for expected in (0x63C2, 0x63C1, 0x63C0):
        assert verify(term, "999999") == expected
    assert verify(term, "123456") == PIN_BLOCKED  # even the right PIN now


def pending(database: Database, pan: str) -> bool:
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        card = uow.cards.get(pan)
        assert card is not None
        assert card_status(uow, pan)["pending_pin_unblock"] is card.pending_pin_unblock
        return card.pending_pin_unblock


def test_pin_unblock_reaches_the_chip_at_its_next_online_contact(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    term = terminal_for(pan)
    block_the_chips_pin(term)
    banks.unblock_pin(UnblockPin(pan))
    assert pending(database, pan)
    resp = banks.authorize(
        request(pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100, un=b"\x01" * 4), "p-1")
    )
    assert resp.approved and [s[:4] for s in resp.scripts] == [PIN_UNBLOCK]
    _, sws = term.complete(resp.field55, resp.arc)
    assert sws == [0x9000]  # the chip checked the script's MAC (its session key) and reset its tries
    assert not pending(database, pan)
    assert verify(term, "123456") == 0x9000  # the PIN is kept, usable again
    resp = banks.authorize(
        request(pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100, un=b"\x02" * 4), "p-2")
    )
    assert resp.approved and not resp.scripts  # sent once


def test_pin_unblock_and_application_block_in_one_answer(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    term = terminal_for(pan)
    block_the_chips_pin(term)
    banks.unblock_pin(UnblockPin(pan))
    banks.block(BlockCard(pan))
    resp = banks.authorize(
        request(pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100, un=b"\x01" * 4), "p-1")
    )
    assert resp.response_code == "62"
    assert [s[:4] for s in resp.scripts] == [PIN_UNBLOCK, APPLICATION_BLOCK]
    _, sws = term.complete(resp.field55, resp.arc)
    assert sws == [0x9000, 0x9000]
    assert not pending(database, pan)


def test_pin_unblock_only_for_a_live_card(banks: IssuerService, database: Database) -> None:
    pan = funded_card(banks)
    banks.report_lost(ReportLost(pan))
    with pytest.raises(CardStateError, match="cannot unblock its PIN"):
        banks.unblock_pin(UnblockPin(pan))
    assert not pending(database, pan)
