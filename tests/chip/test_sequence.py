"""The card's command sequencing (``citycard.chip.sequence``): the tables are whole, and the card keeps them.

Every phase is reached with real commands; in each, every instruction the card knows is sent, well formed.
One the table does not take in that phase is refused ``6985`` and changes nothing (neither the card's
memory nor its session's phase); one it takes is not refused for its sequence."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from citycard.chip.sequence import COMMANDS, MOVES, Phase, Step, next_phase, reachable
from citycard.codec.apdu import SW, Ins
from citycard.crypto.cryptograms import arpc_method1
from citycard.crypto.pin import plaintext_offline_pin_block

# -- the tables --------------------------------------------------------------------------------------------

_COMMAND_OF_STEP = {
    Step.SELECT_DIRECTORY: Ins.SELECT,
    Step.SELECT_APPLICATION: Ins.SELECT,
    Step.PROCESSING_OPTIONS: Ins.GET_PROCESSING_OPTIONS,
    Step.QPBOC_ARQC: Ins.GET_PROCESSING_OPTIONS,
    Step.QPBOC_OFFLINE: Ins.GET_PROCESSING_OPTIONS,
    Step.FIRST_AC_ARQC: Ins.GENERATE_AC,
    Step.FIRST_AC_OFFLINE: Ins.GENERATE_AC,
    Step.ISSUER_AUTHENTICATION: Ins.EXTERNAL_AUTHENTICATE,
    Step.SECOND_AC: Ins.GENERATE_AC,
}


def test_every_phase_is_reachable_from_power_on() -> None:
    assert reachable(Phase.IDLE) == frozenset(Phase)


def test_every_step_is_taken_only_where_its_command_is() -> None:
    assert set(_COMMAND_OF_STEP) == set(Step)
    for (phase, step), _ in MOVES.items():
        assert phase in COMMANDS[_COMMAND_OF_STEP[step]], (phase, step)


def test_an_instruction_outside_the_table_is_unknown_to_the_card(term: Any, h: Any) -> None:
    """The table names every instruction the card takes: any other (the e-purse's, for one) is ``6D00``."""
    assert all(COMMANDS.values())
    for ins in Ins:
        if ins in COMMANDS:
            continue
        term.start_contact(100, ec=False)
        cla = (
            0x00 if ins in (Ins.READ_BINARY, Ins.UPDATE_BINARY, Ins.APPEND_RECORD, Ins.GET_RESPONSE) else 0x80
        )
        assert term.send(bytes((cla, ins, 0, 0, 4)) + bytes(4)).sw == SW.INS_NOT_SUPPORTED, ins.name
        assert term.card.phase is Phase.PROCESSING


def test_a_move_the_table_does_not_allow_is_a_bug() -> None:
    with pytest.raises(AssertionError, match="second GENERATE AC in phase PROCESSING"):
        next_phase(Phase.PROCESSING, Step.SECOND_AC)
    assert next_phase(Phase.ONLINE_DONE, Step.SELECT_APPLICATION) is Phase.SELECTED


# -- the card keeps them -------------------------------------------------------------------------------------


def _contactless_selected(t: Any, h: Any) -> None:
    t.card.power_on("contactless")
    assert t.select(h.DEBIT).sw == 0x9000


def _qpboc_online(t: Any, h: Any) -> None:
    _contactless_selected(t, h)
    resp = t.gpo(h.qpboc_pdol_data(200, ttq="20800000"))  # online required
    assert resp.tags["9F27"] == b"\x80"
    t.online = (int.from_bytes(resp.tags["9F36"], "big"), resp.tags["9F26"])


def _online(t: Any, h: Any) -> None:
    t.online = t.online_arqc()


def _authenticated(t: Any, h: Any) -> None:
    _online(t, h)
    atc, arqc = t.online
    assert t.send(bytes.fromhex("008200000A") + arpc_method1(t.session_key("ac", atc), arqc, b"00") + b"00")
    assert t.card.phase is Phase.AUTHENTICATED


def _offline_done(t: Any, h: Any) -> None:
    t.start_contact(100, ec=True)
    assert t.generate_ac(0x40, h.cdol1_data(100)).tags["9F27"] == b"\x40"


def _online_done(t: Any, h: Any) -> None:
    _online(t, h)
    assert t.generate_ac(0x00, b"00" + bytes(19)).sw == 0x9000


_DRIVE: dict[Phase, Callable[[Any, Any], None]] = {
    Phase.IDLE: lambda t, h: t.card.power_on("contact"),
    Phase.DIRECTORY: lambda t, h: (t.card.power_on("contact"), t.select(h.PSE)),
    Phase.SELECTED: _contactless_selected,
    Phase.PROCESSING: lambda t, h: t.start_contact(100, ec=False),
    Phase.ONLINE: _online,
    Phase.AUTHENTICATED: _authenticated,
    Phase.QPBOC_ONLINE: _qpboc_online,
    Phase.OFFLINE_DONE: _offline_done,
    Phase.ONLINE_DONE: _online_done,
}


def _script(t: Any, header: str, data: bytes) -> bytes:
    """A script command of this session's online transaction, its MAC left zero (``6988`` when taken)."""
    return bytes.fromhex(header) + bytes((len(data) + 4,)) + data + bytes(4)


def _command(ins: Ins, t: Any, h: Any, phase: Phase) -> bytes:
    """A well-formed command of each instruction, as a terminal or an issuer would send it in its place."""
    if ins is Ins.SELECT:
        name = bytes.fromhex(h.DEBIT)
        return bytes((0x00, 0xA4, 0x04, 0x00, len(name))) + name + b"\x00"
    if ins is Ins.GET_CHALLENGE:
        return bytes.fromhex("0084000008")
    if ins is Ins.READ_RECORD:
        return bytes.fromhex("00B2010C00")  # SFI 1 record 1: the PSE's directory, or the application's
    if ins is Ins.GET_DATA:
        return bytes.fromhex("80CA9F7900")
    if ins is Ins.UPDATE_CAPP_DATA_CACHE:
        return bytes.fromhex("80DE02AC") + bytes((48,)) + bytes(48)
    if ins is Ins.GET_PROCESSING_OPTIONS:
        data = (
            h.qpboc_pdol_data(200) if t.card.interface == "contactless" else b"\x00" + bytes(6) + b"\x01\x56"
        )
        body = b"\x83" + bytes((len(data),)) + data
        return bytes((0x80, 0xA8, 0, 0, len(body))) + body + b"\x00"
    if ins is Ins.VERIFY:
        return bytes.fromhex("0020008008") + plaintext_offline_pin_block("123456")
    if ins is Ins.INTERNAL_AUTHENTICATE:
        return bytes.fromhex("0088000004DEADBEEF00")
    if ins is Ins.GENERATE_AC:
        data = (
            h.cdol1_data(100)
            if phase is not Phase.ONLINE and phase is not Phase.AUTHENTICATED
            else b"00" + bytes(19)
        )
        return bytes((0x80, 0xAE, 0x00, 0x00, len(data))) + data + b"\x00"
    if ins is Ins.EXTERNAL_AUTHENTICATE:
        return bytes.fromhex("008200000A") + bytes(8) + b"00"
    if ins is Ins.PUT_DATA:
        return _script(t, "84DA9F79", bytes(6))
    if ins is Ins.APPLICATION_BLOCK:
        return _script(t, "841E0000", b"")
    if ins is Ins.APPLICATION_UNBLOCK:
        return _script(t, "84180000", b"")
    if ins is Ins.CARD_BLOCK:
        return _script(t, "84160000", b"")
    if ins is Ins.PIN_CHANGE_UNBLOCK:
        return _script(t, "84240000", b"")
    assert ins is Ins.UPDATE_RECORD, ins
    return _script(t, "84DC01B4", bytes(16))


@pytest.mark.parametrize("ins", [Ins(ins) for ins in COMMANDS], ids=lambda i: i.name)
@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.name)
def test_the_card_keeps_its_sequence(phase: Phase, ins: Ins, term: Any, h: Any) -> None:
    term.online = None
    _DRIVE[phase](term, h)
    assert term.card.phase is phase
    memory = copy.deepcopy(term.card.image.nvm)
    resp = term.send(_command(ins, term, h, phase))
    if phase not in COMMANDS[ins]:
        assert resp.sw == SW.CONDITIONS_NOT_SATISFIED, hex(resp.sw)
        assert resp.data == b""
        assert term.card.image.nvm == memory
        assert term.card.phase is phase
    else:
        assert resp.sw != SW.CONDITIONS_NOT_SATISFIED, (
            f"{ins.name} taken in {phase.name}: refused for another reason"
        )
