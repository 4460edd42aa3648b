"""PINs at the issuer (SQLite and PostgreSQL): the online PIN is verified over every digit (IBM 3624 offset
in the HSM) with a try counter per card, and a PIN set by the bank reaches the chip by PIN CHANGE script."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import text

from citycard.codec.money import bcd_amount
from citycard.codec.tlv import decode_dict, encode_many
from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.api import HsmInputError
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import (
    ActivateCard,
    AuthorizationKind,
    AuthorizationRequest,
    Deposit,
    IssueCards,
    MalformedRequest,
    SetPin,
)
from citycard.issuer.handlers import IssuerService

from tests.issuer.conftest import DEBIT_AID, HOLDER_ID, MemorySink, Terminal, ledger_snapshot
from tests.issuer.test_authorization import funded_card
from tests.issuer.test_slice import request

PURCHASE = AuthorizationKind.PURCHASE


def _pin_block(hsm: SoftHsm, pan: str, pin: str) -> bytes:
    """The PIN pad's block, as the acquirer forwards it under the bank's zone PIN key."""
    return hsm.encrypt_pin(hsm.get("icbc-zpk"), pin, pan)


def _with_pin(req: AuthorizationRequest, pin_block: bytes) -> AuthorizationRequest:
    return replace(req, pin_block=pin_block)


def _verify(term: Terminal, pin: str) -> int:
    """The card's status word for an offline plaintext PIN (VERIFY, EMV Book 3 §6.5.12)."""
    term.card.power_on("contact")
    _, sw = term.send(bytes((0x00, 0xA4, 0x04, 0x00, len(DEBIT_AID))) + DEBIT_AID + b"\x00")
    assert sw == 0x9000, hex(sw)
    pdol = b"\x00" + bytes(6) + bytes.fromhex("0156")
    _, sw = term.send(bytes((0x80, 0xA8, 0, 0, len(pdol) + 2, 0x83, len(pdol))) + pdol + b"\x00")
    assert sw == 0x9000, hex(sw)
    block = bytes.fromhex((f"2{len(pin):X}" + pin).ljust(16, "F"))
    return term.send(bytes.fromhex("0020008008") + block)[1]


def _qpboc_arqc(term: Terminal, amount_fen: int, un: bytes) -> bytes:
    """A qPBOC online purchase (JR/T 0025.12): the card answers its GPO with an ARQC and leaves the field —
    there is no second GENERATE AC, so no issuer script can reach it. Returns the request's field 55."""
    term.card.power_on("contactless")
    _, sw = term.send(bytes((0x00, 0xA4, 0x04, 0x00, len(DEBIT_AID))) + DEBIT_AID + b"\x00")
    assert sw == 0x9000, hex(sw)
    values = {  # PDOL_CONTACTLESS: TTQ qPBOC, online capable; no EC (the amount goes online)
        "9F66": bytes.fromhex("20000000"),
        "9F7A": b"\x00",
        "9F02": bcd_amount(amount_fen),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0156"),
        "95": bytes(5),
        "5F2A": bytes.fromhex("0156"),
        "9A": bytes.fromhex("261125"),
        "9C": b"\x00",
        "9F37": un,
        "9F21": bytes.fromhex("120000"),
        "9F4E": b"CITY SUPERMARKET".ljust(20, b" "),
    }
    pdol = b"".join(values.values())
    data, sw = term.send(bytes((0x80, 0xA8, 0, 0, len(pdol) + 2, 0x83, len(pdol))) + pdol + b"\x00")
    assert sw == 0x9000, hex(sw)
    card = decode_dict(data)  # the 77 template's data objects
    assert card["9F27"] == b"\x80" and "9F6C" in card
    items = [(t, card[t]) for t in ("9F26", "9F27", "9F10", "9F36", "82", "9F6C")]
    items += [(t, values[t]) for t in ("9F37", "9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F66")]
    return encode_many(items)


def test_online_pin_is_verified_over_every_digit(
    banks: IssuerService, database: Database, hsm: SoftHsm, terminal_for: Callable[[str], Terminal]
) -> None:
    """147200 shares its first four digits with 147258: a Visa PVV let it pass, the offset does not."""
    pan = funded_card(banks)
    card = banks.set_pin(SetPin(pan, _pin_block(hsm, pan, "147258")))
    assert card.pin_offset is not None and len(card.pin_offset) == 6 and card.pvv is None
    with database.engine.connect() as connection:
        stored = str(connection.execute(text("SELECT * FROM issuer_cards")).all())
    assert "147258" not in stored and _pin_block(hsm, pan, "147258").hex() not in stored.lower()
    term = terminal_for(pan)
    before = ledger_snapshot(database)
    bad = request(pan, PURCHASE, 500, term.first_ac(500, un=b"\x22" * 4), "p-1")
    resp = banks.authorize(_with_pin(bad, _pin_block(hsm, pan, "147200")))
    assert resp.response_code == "55" and resp.arpc, resp
    assert ledger_snapshot(database) == before
    good = request(pan, PURCHASE, 500, term.first_ac(500, un=b"\x21" * 4), "p-2")
    assert banks.authorize(_with_pin(good, _pin_block(hsm, pan, "147258"))).approved


def test_online_pin_tries_are_counted_per_card(
    banks: IssuerService, database: Database, hsm: SoftHsm, terminal_for: Callable[[str], Terminal]
) -> None:
    """Three wrong online PINs in a row: 75, and the right PIN no longer helps until the PIN is re-set; a
    right PIN before the third resets the count."""
    pan = funded_card(banks)
    banks.set_pin(SetPin(pan, _pin_block(hsm, pan, "246810")))
    term = terminal_for(pan)
    n = 0

    def attempt(pin: str) -> str:
        nonlocal n
        n += 1
        req = request(pan, PURCHASE, 100, term.first_ac(100, un=n.to_bytes(4, "big")), f"p-{n}")
        return banks.authorize(_with_pin(req, _pin_block(hsm, pan, pin))).response_code

    assert [attempt("111111"), attempt("222222"), attempt("246810")] == ["55", "55", "00"]
    before = ledger_snapshot(database)
    assert [attempt("111111"), attempt("222222"), attempt("333333")] == ["55", "55", "75"]
    assert attempt("246810") == "75"
    assert ledger_snapshot(database) == before
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
    assert card is not None and card.online_pin_failures == 3
    banks.set_pin(SetPin(pan, _pin_block(hsm, pan, "246810")))  # the branch re-sets the PIN
    assert attempt("246810") == "00"


def test_a_pin_under_the_retired_pvv_must_be_re_set(
    banks: IssuerService, database: Database, hsm: SoftHsm, terminal_for: Callable[[str], Terminal]
) -> None:
    """A card migrated with only a 4-digit PVV: its online PIN is declined until the PIN is set again."""
    pan = funded_card(banks)
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
        assert card is not None
        uow.cards.update(replace(card, pvv="1234"))
        uow.commit()
    req = request(pan, PURCHASE, 100, terminal_for(pan).first_ac(100), "p-1")
    resp = banks.authorize(_with_pin(req, _pin_block(hsm, pan, "246810")))
    assert resp.response_code == "55" and "re-set" in resp.reason


def test_the_banks_pin_reaches_the_chip_by_script(
    banks: IssuerService, database: Database, hsm: SoftHsm, terminal_for: Callable[[str], Terminal]
) -> None:
    """``card set-pin`` → the next online transaction carries PIN CHANGE → the chip verifies the new PIN
    offline and refuses the default 123456 it was personalised with."""
    pan = funded_card(banks)
    term = terminal_for(pan)
    assert _verify(term, "123456") == 0x9000  # as personalised
    banks.set_pin(SetPin(pan, _pin_block(hsm, pan, "246810")))
    resp = banks.authorize(request(pan, PURCHASE, 100, term.first_ac(100, un=b"\x31" * 4), "p-1"))
    assert resp.approved and [s[:4] for s in resp.scripts] == [bytes.fromhex("84240002")]
    cid, sws = term.complete(resp.field55, resp.arc)
    assert cid == 0x40 and sws == [0x9000]
    assert _verify(term, "246810") == 0x9000
    assert _verify(term, "123456") == 0x63C2
    assert _verify(term, "246810") == 0x9000  # and the chip's try counter is back to 3
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
    assert card is not None and card.pending_pin_change is None  # sent once, then forgotten
    again = banks.authorize(request(pan, PURCHASE, 100, term.first_ac(100, un=b"\x32" * 4), "p-2"))
    assert again.approved and not again.scripts


def test_a_pin_set_before_a_contactless_online_payment_still_reaches_the_chip(
    banks: IssuerService, database: Database, hsm: SoftHsm, terminal_for: Callable[[str], Terminal]
) -> None:
    """The first online contact after ``card set-pin`` is a qPBOC purchase: the card has left the field, so
    the PIN CHANGE script is kept for the next contact transaction instead of being sent into the void (the
    chip would keep its default 123456 and the bank would believe it changed)."""
    pan = funded_card(banks)
    term = terminal_for(pan)
    banks.set_pin(SetPin(pan, _pin_block(hsm, pan, "246810")))
    tap = banks.authorize(request(pan, PURCHASE, 100, _qpboc_arqc(term, 100, b"\x51" * 4), "p-1"))
    assert tap.approved and not tap.scripts, tap
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
    assert card is not None and card.pending_pin_change is not None
    resp = banks.authorize(request(pan, PURCHASE, 100, term.first_ac(100, un=b"\x52" * 4), "p-2"))
    assert resp.approved and [s[:4] for s in resp.scripts] == [bytes.fromhex("84240002")]
    assert term.complete(resp.field55, resp.arc) == (0x40, [0x9000])
    assert _verify(term, "123456") == 0x63C2 and _verify(term, "246810") == 0x9000


def test_a_pin_chosen_at_issuance_is_the_chips_and_the_banks(
    banks: IssuerService, sink: MemorySink, hsm: SoftHsm, terminal_for: Callable[[str], Terminal]
) -> None:
    """The counter's PIN pad makes a format-1 block (no PAN yet): the chip is personalised with that PIN —
    the default 123456 opens nothing — and the issuer verifies it online; the bureau record never has it."""
    block = hsm.encrypt_pin_iso1(hsm.get("icbc-zpk"), "135790")
    cmd = IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number=HOLDER_ID, pin_block=block)
    (card,) = banks.issue_cards(cmd)
    assert card.pin_offset is not None and len(card.pin_offset) == 6
    banks.activate(ActivateCard(card.pan))
    banks.deposit(Deposit(card.pan, 10_000, "dep-1"))
    term = terminal_for(card.pan)
    assert _verify(term, "123456") == 0x63C2 and _verify(term, "135790") == 0x9000
    assert "135790" not in str(sink.records[card.pan])
    req = request(card.pan, PURCHASE, 100, term.first_ac(100, un=b"\x41" * 4), "p-1")
    assert banks.authorize(_with_pin(req, _pin_block(hsm, card.pan, "135790"))).approved
    with pytest.raises(MalformedRequest, match="pin_block"):
        IssueCards("ICBC", "anon-ec", count=2, pin_block=block)


def test_a_bank_added_before_pin_offsets_gets_its_new_keys_on_first_use(
    service: IssuerService, hsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Banks added before the IBM 3624 PVK and the PIN storage key existed get them when first needed."""
    from citycard.issuer.commands import AddBank, AddBinRange, AddProduct
    from citycard.issuer.usecases import banks, deps

    older = {k: v for k, v in deps.SYMMETRIC_KEYS.items() if k not in deps.KEYS_ADDED_LATER}
    with monkeypatch.context() as m:
        m.setattr(banks, "SYMMETRIC_KEYS", older)
        service.add_bank(AddBank("ICBC", "ICBC city branch"))
    service.add_bin_range(AddBinRange("ICBC", "621226"))
    service.add_product(AddProduct("ICBC", "debit-ec", "Citizen card", "621226"))
    assert "icbc-pvk-3624" not in hsm.labels() and "icbc-pin-store" not in hsm.labels()
    (card,) = service.issue_cards(IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number=HOLDER_ID))
    card = service.set_pin(SetPin(card.pan, _pin_block(hsm, card.pan, "135790")))
    assert card.pin_offset is not None and {"icbc-pvk-3624", "icbc-pin-store"} <= set(hsm.labels())


def test_a_pin_block_that_does_not_decipher_is_a_format_error_not_a_wrong_pin(
    banks: IssuerService, database: Database, hsm: SoftHsm, terminal_for: Callable[[str], Terminal]
) -> None:
    """Field 52 under another key (a terminal or zone key fault): 99, nothing posted, no try counted."""
    pan = funded_card(banks)
    banks.set_pin(SetPin(pan, _pin_block(hsm, pan, "246810")))
    zpk, pvk = hsm.get("icbc-zpk"), hsm.get("icbc-pvk-3624")
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
    assert card is not None and card.pin_offset is not None
    garbled = None
    for n in range(64):  # a block our ZPK deciphers to no ISO 9564 format-0 block (most of them)
        candidate = hashlib.sha256(n.to_bytes(2, "big")).digest()[:8]
        try:
            hsm.verify_pin_offset(zpk, pvk, candidate, pan, card.pin_offset)
        except HsmInputError:
            garbled = candidate
            break
    assert garbled is not None
    term = terminal_for(pan)
    before = ledger_snapshot(database)
    req = request(pan, PURCHASE, 500, term.first_ac(500, un=b"\x31" * 4), "p-garbled")
    resp = banks.authorize(_with_pin(req, garbled))
    assert resp.response_code == "99" and "pin_format_error" in resp.flags and resp.arpc, resp
    assert banks.authorize(_with_pin(req, garbled)).response_code == "99"  # the same answer on a retry
    assert ledger_snapshot(database) == before
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        after = uow.cards.get(pan)
    assert after is not None and after.online_pin_failures == 0
    good = request(pan, PURCHASE, 500, term.first_ac(500, un=b"\x32" * 4), "p-good")
    assert banks.authorize(_with_pin(good, _pin_block(hsm, pan, "246810"))).approved
