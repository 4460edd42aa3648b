"""A decoded message is made without the constructor's second pass over its values (``Message.from_fields``):
it must equal the message the constructor makes, refuse what the constructor refuses, and any change to it
go through the constructor's checks again."""

from __future__ import annotations

import dataclasses

import pytest

from citycard.codec.iso8583 import (
    AuthorizationRequest,
    Iso8583Error,
    RawMessage,
    decode_message,
    encode_message,
    parse,
)

from tests.codec.iso8583.test_iso8583_messages import purchase


def test_a_decoded_message_equals_the_one_the_constructor_makes_from_the_same_values() -> None:
    message = purchase()
    decoded = parse(decode_message(message.to_bytes()))
    assert decoded == message and type(decoded) is AuthorizationRequest and hash(decoded) == hash(message)
    rebuilt = AuthorizationRequest(**{f.name: getattr(decoded, f.name) for f in dataclasses.fields(decoded)})
    assert rebuilt == decoded and repr(rebuilt) == repr(decoded)
    assert decoded.to_bytes() == message.to_bytes()
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.stan = 1  # type: ignore[misc]


def test_a_change_to_a_decoded_message_is_checked_again() -> None:
    decoded = parse(decode_message(purchase().to_bytes()))
    with pytest.raises(Iso8583Error):
        dataclasses.replace(decoded, stan=10**6)  # seven digits in n6
    with pytest.raises(Iso8583Error):
        dataclasses.replace(decoded, terminal_id="é" * 8)


def test_a_decoded_message_without_a_required_field_is_refused_as_before() -> None:
    fields = dict(purchase().to_fields().fields)
    del fields[41]
    with pytest.raises(Iso8583Error) as info:
        parse(decode_message(encode_message(RawMessage("0200", fields))))
    assert info.value.field == "41"
    with pytest.raises(Iso8583Error) as built:  # the same message typed by hand: the constructor's word
        parse(RawMessage("0200", fields))
    assert built.value.field == "41"
