"""A message noted with the bytes it was received as (``note_received``, as ``net.server`` and ``net.link``
do) gives those bytes, and a copy with fields changed, added or left out spliced in them (a new PIN block
or MAC, the acquirer's RRN and 32, an answer without 32) is byte for byte what encoding the changed message
afresh gives: the switch's and the acquirer's forwards without re-encoding send what the old path sent
(Hypothesis over requests and answers of varied fields)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.codec.iso8583 import (
    AuthorizationResponse,
    IccData,
    Message,
    RawMessage,
    decode_message,
    mac_matches,
    note_received,
    parse,
    with_fields,
)
from citycard.codec.iso8583.wire import encode_checked

from tests.codec.iso8583.test_fast_codec import messages
from tests.codec.iso8583.test_iso8583_messages import purchase

ECHOED = frozenset({2, 3, 4, 11, 23, 25, 32, 37, 41, 42, 49, 60, 61})
DIGITS = "0123456789"


def mac_of(block: bytes) -> bytes:
    """A stand-in for the HSM's X9.19 MAC: any function of the whole block will do."""
    return hashlib.sha256(block).digest()[:8]


def fresh(message: Message) -> Message:
    """An equal message made by the constructor: nothing noted, so it is encoded (the old path)."""
    return dataclasses.replace(message, mti=message.mti)


def received(message: Message) -> tuple[Message, bytes]:
    """``message`` as a server or link hands it on: decoded from its bytes, the bytes noted."""
    wire = fresh(message).to_bytes()
    decoded = parse(decode_message(wire))
    note_received(decoded, wire)
    return decoded, wire


def _not_encoded() -> contextlib.AbstractContextManager[object]:
    """Within it, encoding a message fails the test (the patched path encodes nothing)."""
    return mock.patch("citycard.codec.iso8583.messages.encode_checked", side_effect=AssertionError("encoded"))


@st.composite
def requests(draw: st.DrawFn) -> Message:
    optional = st.none() | st.text(DIGITS, min_size=1, max_size=11)
    changes: dict[str, Any] = {
        "pan": draw(st.text(DIGITS, min_size=13, max_size=19)),
        "amount_fen": draw(st.integers(0, 10**12 - 1)),
        "stan": draw(st.integers(1, 999_999)),
        "pin_block": draw(st.none() | st.binary(min_size=8, max_size=8)),
        "rrn": draw(st.none() | st.text(DIGITS, min_size=12, max_size=12)),
        "acquirer_id": draw(optional),
        "track2": draw(st.none() | st.text(DIGITS + "D", min_size=1, max_size=37)),
        "icc": draw(
            st.none()
            | st.binary(min_size=8, max_size=8).map(
                lambda arqc: IccData.of([("9F26", arqc), ("9F27", b"\x80")])
            )
        ),
        "private63": draw(st.none() | st.binary(min_size=1, max_size=40)),
        "mac": draw(st.none() | st.binary(min_size=8, max_size=8)),
    }
    return purchase(**changes)


@st.composite
def answers(draw: st.DrawFn) -> Message:
    request = draw(requests())
    values: dict[int, str | bytes] = {39: draw(st.sampled_from(["00", "51", "55", "91"]))}
    if draw(st.booleans()):
        values[38] = draw(st.text(DIGITS, min_size=6, max_size=6))
    if draw(st.booleans()):
        values[55] = bytes.fromhex("910A") + draw(st.binary(min_size=10, max_size=10))
    values[64] = draw(st.binary(min_size=8, max_size=8))
    return AuthorizationResponse.echoing("0210", request, ECHOED, values)


@settings(max_examples=300, deadline=None)
@given(requests(), st.binary(min_size=8, max_size=8))
def test_a_forwarded_request_is_the_bytes_the_old_encode_made(request: Message, block: bytes) -> None:
    decoded, wire = received(request)
    assert decoded.to_bytes() == wire  # what a MAC check covers: the bytes received
    if decoded.pin_block is not None:
        with _not_encoded() if decoded.mac is not None else contextlib.nullcontext():
            new = decoded.replaced(pin_block=block).signed(mac_of)  # translated, MACed for the issuer
            assert new.to_bytes()
        old = fresh(decoded.replaced(pin_block=block)).signed(mac_of)
    else:
        new, old = decoded.signed(mac_of), fresh(decoded).signed(mac_of)
    assert new == old and new.to_bytes() == old.to_bytes()
    assert mac_matches(new.to_bytes(), mac_of) and parse(decode_message(new.to_bytes())) == new


@settings(max_examples=200, deadline=None)
@given(answers())
def test_an_answer_passed_back_is_the_bytes_the_old_encode_made(answer: Message) -> None:
    decoded, wire = received(answer)
    with _not_encoded():
        assert decoded.to_bytes() == wire
        new = decoded.signed(mac_of)
    old = fresh(decoded).signed(mac_of)
    assert new == old and new.to_bytes() == old.to_bytes()


@settings(max_examples=300, deadline=None)
@given(messages(), messages(), st.data())
def test_fields_spliced_in_are_what_encoding_the_changed_message_makes(
    message: RawMessage, other: RawMessage, data: st.DataObject
) -> None:
    """Any fields changed or added (values of another message) and any left out, in one splice."""
    wire = encode_checked(message)
    added = data.draw(st.sets(st.sampled_from(sorted(other.fields)))) if other.fields else set()
    removed = data.draw(st.sets(st.sampled_from(sorted(message.fields)))) if message.fields else set()
    changes: dict[int, str | bytes | None] = {n: other.fields[n] for n in added}
    changes |= {n: None for n in removed - added}
    fields = {n: v for n, v in {**message.fields, **changes}.items() if v is not None}
    assert with_fields(wire, changes) == encode_checked(RawMessage(message.mti, fields))


@settings(max_examples=200, deadline=None)
@given(messages(), st.none() | st.binary(min_size=8, max_size=8))
def test_the_mac_alone_is_set_or_left_out_as_encoding_would(message: RawMessage, mac: bytes | None) -> None:
    """Field 64 alone (its own short path): set, replaced or left out, with or without one before."""
    fields = {n: v for n, v in message.fields.items() if n != 64}
    for before in (fields, {**fields, 64: bytes(range(8))}):
        wire = encode_checked(RawMessage(message.mti, before))
        after = {**fields} if mac is None else {**fields, 64: mac}
        assert with_fields(wire, {64: mac}) == encode_checked(RawMessage(message.mti, after))


@settings(max_examples=200, deadline=None)
@given(requests(), st.text(DIGITS, min_size=12, max_size=12), st.text(DIGITS, min_size=1, max_size=11))
def test_the_acquirers_forward_and_answer_are_spliced_as_encoding_afresh_would(
    request: Message, rrn: str, acquirer_id: str
) -> None:
    """The acquirer's forward (its RRN and 32 added or changed, the terminal's MAC left out, then MACed
    under the zone key) and its answer back (32 and the MAC left out, then MACed under the MAK)."""
    decoded, _ = received(request)
    with _not_encoded():
        forward = decoded.replaced(rrn=rrn, acquirer_id=acquirer_id, mac=None).signed(mac_of)
        forwarded = forward.to_bytes()
    old = fresh(decoded.replaced(rrn=rrn, acquirer_id=acquirer_id, mac=None)).signed(mac_of)
    assert forward == old and forwarded == old.to_bytes()
    answer, _ = received(AuthorizationResponse.echoing("0210", forward, ECHOED, {39: "00", 64: bytes(8)}))
    with _not_encoded():
        back = answer.replaced(acquirer_id=None, mac=None).signed(mac_of)
        sent = back.to_bytes()
    old_back = fresh(answer.replaced(acquirer_id=None, mac=None)).signed(mac_of)
    assert back == old_back and sent == old_back.to_bytes() and back.acquirer_id is None


@settings(max_examples=200, deadline=None)
@given(requests(), st.data())
def test_an_answer_echoing_a_received_request_is_spliced_as_encoding_afresh_would(
    request: Message, data: st.DataObject
) -> None:
    """The issuer's answer: the request's echoed fields copied from its bytes, the others left out, the
    answer's own values (39, 38, 55, a MAC placeholder) encoded, the MTI changed."""
    decoded, _ = received(request)
    echoed = frozenset(data.draw(st.sets(st.sampled_from(sorted(ECHOED | {35, 52, 63})))))
    values: dict[int, str | bytes] = {39: data.draw(st.sampled_from(["00", "51", "55"]))}
    if data.draw(st.booleans()):
        values[38] = data.draw(st.text(DIGITS, min_size=6, max_size=6))
    if data.draw(st.booleans()):
        values[55] = bytes.fromhex("910A") + data.draw(st.binary(min_size=10, max_size=10))
    values[64] = bytes(8)
    needed = {3, 11, 41, 42}  # an answer's required echoes
    with _not_encoded():
        answer = AuthorizationResponse.echoing("0210", decoded, echoed | needed, values)
        spliced = answer.signed(mac_of).to_bytes()
    old = fresh(answer).signed(mac_of)
    assert spliced == old.to_bytes()
    assert parse(decode_message(spliced)) == answer.signed(mac_of)


def test_any_other_change_is_spliced_as_encoding_afresh_would() -> None:
    decoded, wire = received(purchase(mac=bytes(8), rrn="000000000001"))
    for changes in ({"pan": "6224242900000121"}, {"stan": 7}, {"mac": None}, {"pin_block": None}):
        with _not_encoded():
            changed = decoded.replaced(**changes)
            spliced = changed.to_bytes()
        assert spliced == fresh(changed).to_bytes() != wire
    unpinned, _ = received(purchase(pin_block=None, mac=bytes(8)))
    with_pin = unpinned.replaced(pin_block=bytes(8))  # 52 added: a longer message
    assert with_pin.to_bytes() == fresh(with_pin).to_bytes()


def test_a_received_message_keeps_its_bytes_however_many_messages_follow_it() -> None:
    decoded, wire = received(purchase())
    for stan in range(1, 3_000):  # more than any bound on noted messages: the bytes are the message's own
        fresh(dataclasses.replace(purchase(), stan=stan)).signed(mac_of)
    with _not_encoded():
        assert decoded.to_bytes() == wire
        assert mac_matches(decoded.signed(mac_of).to_bytes(), mac_of)


def test_a_copy_or_a_pickle_of_a_received_message_keeps_its_bytes_and_a_replace_does_not() -> None:
    import copy
    import pickle

    decoded, wire = received(purchase())
    for twin in (copy.copy(decoded), copy.deepcopy(decoded), pickle.loads(pickle.dumps(decoded))):
        assert twin == decoded and type(twin) is type(decoded)
        with _not_encoded():
            assert twin.to_bytes() == wire
    names = [item.name for item in dataclasses.fields(decoded)]
    assert names[0] == "mti" and "_wire" not in names  # its dataclass fields are its ISO fields
    remade = dataclasses.replace(decoded, stan=decoded.stan)
    assert remade == decoded and remade.to_bytes() == wire  # made afresh: encoded again, to the same bytes
    with _not_encoded(), pytest.raises(AssertionError, match="encoded"):
        remade.to_bytes()
