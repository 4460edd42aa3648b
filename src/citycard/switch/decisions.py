"""What the switch does with one host-to-host request (pure decisions; ``citycard.hosts.switch`` acts).

- **Where it goes** (:func:`decide`): the acquirer is the member whose institution id is field 32 (absent:
  format error ``30``; not a member: ``03``, we take no request from an unknown institution); the issuer is
  the member owning the longest BIN prefix of the PAN (field 2, else the PAN of track 2, field 35; none:
  ``30``; no BIN matches: ``15`` no such issuer).
- **PIN translation**: a request with a PIN block (field 52, ISO 9564-1 format 0) arrives under the
  acquiring bank's zone PIN key and leaves under the issuing bank's (:class:`PinTranslation`; none when both
  are the same key, an on-us request).
- **No answer from the issuer** (:func:`answer_when_unanswered`): an authorization (0100/0200) is answered
  ``91`` (issuer or switch inoperative) so the terminal is not kept waiting and the acquirer reverses it; an
  advice or a reversal (0220, 0400, 0420) is not answered at all, so its sender keeps it in its
  store-and-forward queue and sends it again (ISO 8583:1987 repeat messages 0221/0421; UnionPay repeats a
  reversal as 0420). One that could not even be sent (the issuer's link is down) is answered ``91`` at once,
  which the sender takes the same way, without waiting out its timeout.

- **EC load from a non-designated account** (非指定账户圈存, 0200 620000/91/47,
  :func:`split_other_account_load`): the money comes from one card's account (field 2 or 35, with its
  PIN in 52) and goes to another card's EC wallet (its chip data in 55, its PAN in 55's ``5A``, its
  sequence number in 23), possibly at two banks. The switch sends it as two legs in turn: the **debit
  leg** to the account's issuer (the request without 55, 23 and 14: PIN checked, account debited) and,
  once that is approved, the **card leg** to the EC card's issuer (2 = the EC card's PAN, without 35 and
  52: ARQC, EC float credited, ARPC and the ``PUT DATA 9F79`` script). A reversal of the load is sent to
  both legs (the card's first; none to the debit leg when the card's script results ``9F5B`` say it ran
  the load script, since the load then stands).

Only the transactions of the host-to-host legs pass (``FORWARDED``); anything else is refused ``40``
(function not supported). Codes from ``codec.iso8583.codes.ResponseCode``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from citycard.codec.cn import cn_digits
from citycard.codec.iso8583 import (
    AdviceRequest,
    AuthorizationRequest,
    Message,
    ResponseCode,
    ReversalRequest,
    transaction_type,
)
from citycard.codec.tlv import TlvError, decode_dict

from .routing import Member, RoutingTable

__all__ = [
    "FORWARDED",
    "Forward",
    "Leg",
    "PinTranslation",
    "Refuse",
    "TwoLegs",
    "answer_when_unanswered",
    "decide",
    "split_other_account_load",
]

OTHER_ACCOUNT_LOAD: Final = "EC load, other account"
"""The row of ``codec.iso8583.TRANSACTIONS`` sent as two legs."""
_LOAD_SCRIPT_ID: Final = bytes(4)
"""The ``PUT DATA 9F79`` of a load's answer is script 0 (its 9F18), as the issuer sends it."""

FORWARDED: Final = (AuthorizationRequest, AdviceRequest, ReversalRequest)
"""The request kinds the switch carries to an issuer: 0100/0200, 0220, 0400/0420."""

_ANSWERED_WHEN_UNANSWERED: Final = frozenset({"0100", "0200"})


@dataclass(frozen=True, slots=True)
class PinTranslation:
    """Translate field 52 from the acquiring bank's zone PIN key to the issuing bank's (HSM labels)."""

    source_label: str
    destination_label: str


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request to ``issuer``'s front end, its PIN block translated first when ``pin`` says so."""

    issuer: Member
    acquirer: Member
    pin: PinTranslation | None


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the acquirer ``code`` at once; nothing goes to an issuer."""

    code: ResponseCode
    reason: str


def decide(table: RoutingTable, message: Message) -> Forward | Refuse:
    """Where ``message`` goes (module docstring), or the code it is refused with."""
    if not isinstance(message, FORWARDED):
        return Refuse(ResponseCode.FUNCTION_NOT_SUPPORTED, f"{message.mti} is not switched")
    if message.acquirer_id is None:
        return Refuse(ResponseCode.FORMAT_ERROR, "field 32 (acquiring institution) is missing")
    if message.rrn is None:
        return Refuse(ResponseCode.FORMAT_ERROR, "field 37 (retrieval reference number) is missing")
    acquirer = table.acquirer(message.acquirer_id)
    if acquirer is None:
        return Refuse(ResponseCode.INVALID_MERCHANT, "field 32 names no member institution")
    pan = message.card_number
    if pan is None:
        return Refuse(ResponseCode.FORMAT_ERROR, "no card number (field 2 or 35)")
    issuer = table.route(pan)
    if issuer is None:
        return Refuse(ResponseCode.NO_SUCH_ISSUER, "no BIN of a member bank matches the card number")
    pin = None
    if message.pin_block is not None and acquirer.zpk_label != issuer.zpk_label:
        pin = PinTranslation(acquirer.zpk_label, issuer.zpk_label)
    return Forward(issuer, acquirer, pin)


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg of a split request: where it goes and the message it is."""

    route: Forward
    message: Message


@dataclass(frozen=True, slots=True)
class TwoLegs:
    """An EC load from a non-designated account (module docstring): the debit leg, then the card leg.
    ``load_stands``: a reversal whose 55 says the card ran the load script: only the card leg hears it."""

    debit: Leg
    card: Leg
    load_stands: bool = False


def split_other_account_load(table: RoutingTable, message: Message) -> TwoLegs | Refuse | None:
    """The two legs of an EC load from a non-designated account (module docstring); None when ``message``
    is not one; a :class:`Refuse` when a leg cannot be routed, or 55 names no EC card (``30``)."""
    if not isinstance(message, AuthorizationRequest | ReversalRequest):
        return None
    row = transaction_type(message)
    if row is None or row.name != OTHER_ACCOUNT_LOAD:
        return None
    debit = decide(table, message)
    if isinstance(debit, Refuse):
        return debit
    try:
        chip = decode_dict(message.icc.raw) if message.icc is not None else {}
    except TlvError:
        return Refuse(ResponseCode.FORMAT_ERROR, "field 55 is not BER-TLV")
    ec_pan = cn_digits(chip.get("5A", b""))
    if not ec_pan.isdigit():
        return Refuse(ResponseCode.FORMAT_ERROR, "field 55 carries no PAN (5A) of the card to load")
    card_message = replace(message, pan=ec_pan, track2=None, pin_block=None)
    card = decide(table, card_message)
    if isinstance(card, Refuse):
        return card
    debit_message = replace(message, icc=None, card_sequence_number=None, expiry=None)
    results = chip.get("9F5B", b"")
    stands = any(
        results[i] >> 4 == 2 and results[i + 1 : i + 5] == _LOAD_SCRIPT_ID
        for i in range(0, len(results) - 4, 5)
    )
    return TwoLegs(
        Leg(debit, debit_message),
        Leg(card, card_message),  # no PIN block, so no translation
        load_stands=isinstance(message, ReversalRequest) and stands,
    )


def answer_when_unanswered(mti: str, *, sent: bool = True) -> ResponseCode | None:
    """What the acquirer gets when the issuer did not answer ``mti`` (module docstring): ``91`` for an
    authorization, None (no answer: the sender repeats it) for an advice or a reversal — unless it was
    never ``sent`` (the issuer's link is down): then ``91`` too, which the sender's store-and-forward takes as
    "not delivered, repeat it later" at once, instead of waiting for an answer that cannot come."""
    return ResponseCode.ISSUER_UNAVAILABLE if mti in _ANSWERED_WHEN_UNANSWERED or not sent else None
