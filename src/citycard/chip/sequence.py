"""Which command the emulated card takes when: the phases of a card session and every move between them, in
two tables (the shape of h11's ``_state.py``).

A session (from power-on or a SELECT to the next) is in one :class:`Phase`. :data:`COMMANDS` says in which
phases each instruction is taken at all; the card refuses it in any other phase with ``6985`` (conditions of
use not satisfied, ISO/IEC 7816-4 §5.1.3), before looking at its parameters or data, and changes nothing.
:data:`MOVES` says where each :class:`Step` of a command that is taken leads; a handler that takes a step
the table does not allow from the phase it is in is a bug of the card (:func:`next_phase` raises it), never
a status word.

The order is EMV 4.3 Book 3's (§10, the transaction flow) with PBOC 2.0's qPBOC path (JR/T 0025.12 §7:
the card decides in its GET PROCESSING OPTIONS answer, no GENERATE AC follows). What lies outside the
phases stays with the command that knows it: a file that is not there (``6A82``), an interface without the
file (UPDATE CAPP DATA CACHE on contact), the EC balance loaded once per transaction, a blocked card.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from citycard.codec.apdu import Ins

__all__ = ["COMMANDS", "MOVES", "Phase", "Step", "next_phase", "out_of_sequence", "reachable"]


class Phase(enum.Enum):
    """Where a card session stands; the value says it in words (for traces and errors)."""

    __hash__ = object.__hash__  # members are singletons compared by identity: a hash in C (Enum's is Python)

    IDLE = "nothing selected"
    DIRECTORY = "a directory (PSE or PPSE) selected"
    SELECTED = "an application selected, no processing options yet"
    PROCESSING = "processing options given (contact or EC path), no cryptogram yet"
    ONLINE = "an ARQC given, the issuer's answer awaited"
    AUTHENTICATED = "the issuer authenticated (EXTERNAL AUTHENTICATE), the second GENERATE AC awaited"
    QPBOC_ONLINE = "a qPBOC ARQC given (no GENERATE AC follows)"
    OFFLINE_DONE = "a TC or an AAC given without going online"
    ONLINE_DONE = "the online transaction completed: only issuer scripts may follow"


class Step(enum.Enum):
    """What a command that is taken does to the session."""

    __hash__ = object.__hash__  # as Phase's

    SELECT_DIRECTORY = "SELECT of the PSE or PPSE"
    SELECT_APPLICATION = "SELECT of an application"
    PROCESSING_OPTIONS = "GET PROCESSING OPTIONS on the contact or EC path"
    QPBOC_ARQC = "GET PROCESSING OPTIONS on the qPBOC path answered with an ARQC"
    QPBOC_OFFLINE = "GET PROCESSING OPTIONS on the qPBOC path answered with a TC or an AAC"
    FIRST_AC_ARQC = "first GENERATE AC answered with an ARQC"
    FIRST_AC_OFFLINE = "first GENERATE AC answered with a TC or an AAC"
    ISSUER_AUTHENTICATION = "EXTERNAL AUTHENTICATE, passed or failed (once)"
    SECOND_AC = "second GENERATE AC"


_P = Phase
_EVERY: Final = frozenset(Phase)
_APPLICATION: Final = _EVERY - {_P.IDLE, _P.DIRECTORY}
_PROCESSED: Final = _APPLICATION - {_P.SELECTED}
_AFTER_ARQC: Final = frozenset({_P.ONLINE, _P.AUTHENTICATED, _P.QPBOC_ONLINE, _P.ONLINE_DONE})

COMMANDS: Final[Mapping[int, frozenset[Phase]]] = MappingProxyType(
    {
        Ins.SELECT: _EVERY,
        Ins.GET_CHALLENGE: _EVERY,
        Ins.READ_RECORD: _EVERY,  # which file is there is READ RECORD's own answer (6A82)
        Ins.GET_DATA: _APPLICATION,
        Ins.UPDATE_CAPP_DATA_CACHE: frozenset({_P.SELECTED}),  # staged for the GPO that follows
        Ins.GET_PROCESSING_OPTIONS: frozenset({_P.SELECTED}),  # once per transaction
        Ins.VERIFY: _PROCESSED,
        Ins.INTERNAL_AUTHENTICATE: _PROCESSED,
        Ins.GENERATE_AC: frozenset({_P.PROCESSING, _P.ONLINE, _P.AUTHENTICATED}),
        Ins.EXTERNAL_AUTHENTICATE: frozenset({_P.ONLINE, _P.QPBOC_ONLINE}),
        # issuer scripts: only in the online transaction whose ARQC their MACs cover
        Ins.PUT_DATA: _AFTER_ARQC,
        Ins.APPLICATION_BLOCK: _AFTER_ARQC,
        Ins.APPLICATION_UNBLOCK: _AFTER_ARQC,
        Ins.CARD_BLOCK: _AFTER_ARQC,
        Ins.PIN_CHANGE_UNBLOCK: _AFTER_ARQC,
        Ins.UPDATE_RECORD: _AFTER_ARQC,
    }
)
"""The phases in which each instruction the card knows is taken (keyed by :class:`~citycard.codec.apdu.Ins`,
looked up by a command's INS byte); in any other it is refused with ``6985``."""

MOVES: Final[Mapping[tuple[Phase, Step], Phase]] = MappingProxyType(
    {
        **{(phase, Step.SELECT_DIRECTORY): _P.DIRECTORY for phase in Phase},
        **{(phase, Step.SELECT_APPLICATION): _P.SELECTED for phase in Phase},
        (_P.SELECTED, Step.PROCESSING_OPTIONS): _P.PROCESSING,
        (_P.SELECTED, Step.QPBOC_ARQC): _P.QPBOC_ONLINE,
        (_P.SELECTED, Step.QPBOC_OFFLINE): _P.OFFLINE_DONE,
        (_P.PROCESSING, Step.FIRST_AC_ARQC): _P.ONLINE,
        (_P.PROCESSING, Step.FIRST_AC_OFFLINE): _P.OFFLINE_DONE,
        (_P.ONLINE, Step.ISSUER_AUTHENTICATION): _P.AUTHENTICATED,
        (_P.QPBOC_ONLINE, Step.ISSUER_AUTHENTICATION): _P.ONLINE_DONE,
        (_P.ONLINE, Step.SECOND_AC): _P.ONLINE_DONE,
        (_P.AUTHENTICATED, Step.SECOND_AC): _P.ONLINE_DONE,
    }
)
"""Every move of a session: (phase, step) → the phase it leads to. A step from a phase not listed is a bug."""
del _P


def next_phase(phase: Phase, step: Step) -> Phase:
    """The phase ``step`` leads to from ``phase``; a step :data:`MOVES` does not allow from it is the card's
    bug (its command was taken in a phase where it cannot take that step) and raises AssertionError."""
    after = MOVES.get((phase, step))
    if after is None:
        raise AssertionError(f"card session: {step.value} in phase {phase.name} ({phase.value})")
    return after


def reachable(start: Phase = Phase.IDLE) -> frozenset[Phase]:
    """The phases :data:`MOVES` can lead to from ``start`` (``start`` included)."""
    seen = {start}
    frontier = [start]
    while frontier:
        phase = frontier.pop()
        for (source, _), target in MOVES.items():
            if source is phase and target not in seen:
                seen.add(target)
                frontier.append(target)
    return frozenset(seen)


def out_of_sequence(ins: int, phase: Phase) -> str | None:
    """Why the card refuses instruction ``ins`` in ``phase`` for its sequence (the words for a ``6985``), or
    None when the table takes it there (or does not know it)."""
    taken = COMMANDS.get(ins)
    if taken is None or phase in taken:
        return None
    name = Ins(ins).name.replace("_", " ")
    where = ", ".join(p.name for p in Phase if p in taken)
    return f"out of sequence: the card is in {phase.name} ({phase.value}); {name} is taken in {where}"
