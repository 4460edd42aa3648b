"""The profile's fast encoder and decoder (``codec.iso8583.wire``) against pyiso8583 over the same spec:
random valid messages encode to the same bytes and decode to the same values and offsets; damaged ones
(cut, lengthened, a byte changed or inserted, random bytes) are accepted by both alike or refused by both
with the same error (field, position, reason, MTI and echo fields)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.codec.iso8583 import SPEC, Iso8583Error
from citycard.codec.iso8583.spec import PROFILE_FIELDS
from citycard.codec.iso8583.wire import (
    RawMessage,
    check_value,
    decode_message,
    decode_with_pyiso8583,
    encode_checked,
    encode_with_pyiso8583,
)

_ALPHABETS = {
    "n": "0123456789",
    "z": "0123456789D",
    "an": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
}


def _value(number: int) -> st.SearchStrategy[Any]:
    spec = SPEC[str(number)]
    limit = spec["max_len"]
    low = limit if spec["len_type"] == 0 else 0
    if spec["content"] == "b":
        return st.binary(min_size=low, max_size=limit)
    return st.text(_ALPHABETS[spec["content"]], min_size=low, max_size=limit)


@st.composite
def messages(draw: st.DrawFn) -> RawMessage:
    mti = draw(st.text("0123456789", min_size=4, max_size=4))
    numbers = draw(st.sets(st.sampled_from(sorted(PROFILE_FIELDS)), max_size=len(PROFILE_FIELDS)))
    return RawMessage(mti, {n: draw(_value(n)) for n in numbers})


def _outcome(work: Any, data: Any) -> object:
    try:
        result = work(data)
    except Iso8583Error as exc:
        return ("error", exc.field, exc.position, exc.reason, exc.mti, dict(exc.echo))
    if isinstance(result, RawMessage):
        return ("message", result, dict(result.offsets))
    return ("bytes", result)


@settings(max_examples=400, deadline=None)
@given(messages())
def test_a_valid_message_encodes_and_decodes_as_pyiso8583_does(message: RawMessage) -> None:
    encoded = _outcome(encode_checked, message)
    assert encoded == _outcome(encode_with_pyiso8583, message)
    if encoded[0] == "bytes":  # type: ignore[index]
        raw = encoded[1]  # type: ignore[index]
        decoded = _outcome(decode_message, raw)
        assert decoded == _outcome(decode_with_pyiso8583, raw)
        assert decoded[1] == message  # type: ignore[index]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    message = draw(messages())
    try:
        raw = bytearray(encode_with_pyiso8583(message))
    except Iso8583Error:  # too long for the profile: random bytes instead
        raw = bytearray(draw(st.binary(max_size=64)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["cut", "append", "change", "insert"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if how == "cut":
            del raw[at:]
        elif how == "append":
            raw += draw(st.binary(min_size=1, max_size=8))
        elif how == "change" and raw:
            raw[at] = draw(st.integers(0, 255))
        else:
            raw[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(raw)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(damaged(), st.binary(max_size=80)))
def test_a_damaged_message_is_refused_or_taken_exactly_as_pyiso8583_does(data: bytes) -> None:
    outcome = _outcome(decode_message, data)
    assert outcome == _outcome(decode_with_pyiso8583, data)
    if outcome[0] == "message":  # type: ignore[index]
        message = outcome[1]  # type: ignore[index]
        assert encode_checked(message) == data == encode_with_pyiso8583(message)


def _reference_check(number: int, value: str) -> bool:
    """The check as it was written first: the alphabet as a set, the length against the spec."""
    spec = SPEC[str(number)]
    if not set(value) <= set(_ALPHABETS[spec["content"]]):
        return False
    return len(value) == spec["max_len"] if spec["len_type"] == 0 else len(value) <= spec["max_len"]


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(sorted(n for n in PROFILE_FIELDS if SPEC[str(n)]["content"] != "b")),
    st.text(st.characters(max_codepoint=0x2FF), max_size=40) | st.text("0123456789D", max_size=40),
)
def test_the_value_check_takes_exactly_the_alphabet_and_length_of_the_spec(number: int, value: str) -> None:
    try:
        check_value(number, value, None)
        taken = True
    except Iso8583Error:
        taken = False
    assert taken == _reference_check(number, value)


def test_a_signed_message_is_encoded_once_and_its_mac_verifies() -> None:
    from dataclasses import replace

    from citycard.codec.iso8583 import mac_matches, parse, with_mac
    from citycard.crypto.pos_mac import pos_mac

    from benchmarks.bench_iso8583 import MAK, REQUEST

    def mac_of(block: bytes) -> bytes:
        return pos_mac(MAK, block)

    unsigned = replace(REQUEST, mac=None)
    signed = unsigned.signed(mac_of)
    assert signed.mac is not None and signed == replace(unsigned, mac=signed.mac)
    assert signed.to_bytes() == with_mac(replace(unsigned, mac=bytes(8)).to_bytes(), mac_of)
    assert mac_matches(signed.to_bytes(), mac_of)
    decoded = parse(decode_message(signed.to_bytes()))
    assert decoded == signed and decoded.to_bytes() == signed.to_bytes()
