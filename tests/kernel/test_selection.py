"""Application selection (EMV Book 1 §12): PSE, list of AIDs with partial selection, priority, cardholder
choice, next candidate after a failed final SELECT or GPO 6985."""

from __future__ import annotations

from citycard.kernel.config import TerminalAid
from citycard.kernel.events import (
    ApplicationChoice,
    CardResponse,
    ChooseApplication,
    Outcome,
    OutcomeKind,
    SendApdu,
)
from citycard.kernel.kernel import Kernel, Transaction
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import NOW, det_rng, new_card, terminal_config, transact

DEBIT = bytes.fromhex("A000000333010101")
CREDIT = bytes.fromhex("A000000333010102")


def _refuse(card, predicate, sw=b"\x6a\x82"):
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        return sw if predicate(apdu) else inner(apdu)

    card.transmit = transmit
    return card


def test_list_of_aids_when_pse_is_missing():
    card = _refuse(new_card(), lambda a: b"1PAY.SYS.DDF01" in a)
    out, apdus = transact(card, K.PURCHASE, 100)
    assert out.approved and out.aid == DEBIT
    selects = [c for p, c, _ in apdus if p.startswith("SELECT")]
    assert selects[1][5:13] == DEBIT  # the first terminal AID, selected from the list


def test_partial_selection_by_rid_prefix_finds_the_application():
    card = _refuse(new_card(), lambda a: b"1PAY.SYS.DDF01" in a)
    cfg = terminal_config(aids=(TerminalAid(bytes.fromhex("A000000333")),))
    out, apdus = transact(card, K.PURCHASE, 100, cfg=cfg)
    assert out.approved and out.aid == DEBIT
    assert any(c[3] == 0x02 for p, c, _ in apdus if p.startswith("SELECT"))  # next occurrence asked


def test_exact_match_only_does_not_take_a_longer_aid():
    card = _refuse(new_card(), lambda a: b"1PAY.SYS.DDF01" in a)
    cfg = terminal_config(aids=(TerminalAid(bytes.fromhex("A000000333"), partial=False),))
    out, _ = transact(card, K.PURCHASE, 100, cfg=cfg)
    assert out.kind is OutcomeKind.TERMINATED and "no mutually supported" in out.reason


def _drive(kernel: Kernel, card, choice: int | None):
    event = kernel.start()
    asked = None
    while not isinstance(event, Outcome):
        if isinstance(event, SendApdu):
            event = kernel.send(CardResponse(card.transmit(event.apdu)))
        elif isinstance(event, ChooseApplication):
            asked = event
            event = kernel.send(ApplicationChoice(choice))
        else:
            event = kernel.send(None)
    return event, asked


def test_dual_card_asks_the_cardholder_in_priority_order():
    card = new_card(dual=True, serial=3)
    kernel = Kernel(terminal_config(), Transaction(K.PURCHASE, NOW, 100), det_rng())
    out, asked = _drive(kernel, card, 1)
    assert asked is not None and [c.aid for c in asked.candidates] == [DEBIT, CREDIT]
    assert out.aid == CREDIT and not out.ec  # credit has no EC: standard path


def test_cardholder_cancels():
    card = new_card(dual=True, serial=3)
    kernel = Kernel(terminal_config(), Transaction(K.PURCHASE, NOW, 100), det_rng())
    out, _ = _drive(kernel, card, None)
    assert out.kind is OutcomeKind.TERMINATED and "cancelled" in out.reason


def test_gpo_6985_selects_the_next_candidate():
    card = new_card(dual=True, serial=3)
    state = {"gpo": 0}
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        if apdu[:2] == b"\x80\xa8" and state["gpo"] == 0:
            state["gpo"] += 1
            return b"\x69\x85"
        return inner(apdu)

    card.transmit = transmit
    out, apdus = transact(card, K.PURCHASE, 100, cfg=terminal_config(cardholder_confirmation=False))
    assert out.aid == CREDIT
    assert [p for p, _, _ in apdus].count("GET PROCESSING OPTIONS") == 2


def test_failed_final_select_falls_back_to_next():
    card = _refuse(new_card(dual=True, serial=3), lambda a: a[:4] == b"\x00\xa4\x04\x00" and DEBIT in a)
    out, _ = transact(card, K.PURCHASE, 100, cfg=terminal_config(cardholder_confirmation=False))
    assert out.aid == CREDIT


def test_blocked_card():
    card = _refuse(new_card(), lambda a: True, b"\x6a\x81")
    out, _ = transact(card, K.PURCHASE, 100)
    assert out.kind is OutcomeKind.TERMINATED and "blocked" in out.reason


def _blocked(card, aid: bytes):
    """``card`` whose application ``aid`` answers SELECT with its FCI and ``6283`` (blocked, Book 1 §12)."""
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        response = inner(apdu)
        if apdu[:4] == b"\x00\xa4\x04\x00" and aid in apdu and response[-2:] == b"\x90\x00":
            return response[:-2] + b"\x62\x83"
        return response

    card.transmit = transmit
    return card


def test_a_blocked_application_is_left_out_at_a_shop_and_selected_at_a_bank_counter():
    """By the directory (PSE) and by the list of AIDs: a merchant's terminal finds no application; a bank
    counter's (``select_blocked``) selects it and goes on to its GENERATE AC, so the issuer can unblock it."""
    counter = terminal_config(select_blocked=True)
    for pse in (True, False):
        card = _blocked(new_card(), DEBIT)
        if not pse:
            card = _refuse(card, lambda a: b"1PAY.SYS.DDF01" in a)
        out, _ = transact(card, K.PURCHASE, 100)
        assert not out.approved and "no mutually supported application" in out.reason, (pse, out)
        out, apdus = transact(card, K.PURCHASE, 100, cfg=counter)
        assert out.aid == DEBIT and any(p.startswith("GENERATE AC") for p, _, _ in apdus), (pse, out)


def test_select_blocked_is_read_from_the_terminal_configuration():
    from citycard.kernel.config import parse_config

    assert not terminal_config().select_blocked
    assert parse_config("[terminal]\nselect_blocked = true\n").select_blocked


def test_a_switch_of_the_terminal_configuration_is_a_toml_boolean_not_a_string():
    import pytest

    from citycard.kernel.config import ConfigError, parse_config

    for text in ('select_blocked = "false"', "select_blocked = 0", 'ec_support = "no"'):
        with pytest.raises(ConfigError, match="true or false"):
            parse_config("[terminal]\n" + text + "\n")
    assert not parse_config("[terminal]\nec_support = false\n").ec_support
