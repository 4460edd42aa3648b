"""``Message.replaced`` checks what changes as ``dataclasses.replace`` does (same messages, same refusals),
and a message made by ``Message.signed`` gives, unencoded again, the bytes its MAC covers."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from citycard.codec.iso8583 import (
    AuthorizationResponse,
    Iso8583Error,
    RawMessage,
    decode_message,
    parse,
    with_mac,
)
from citycard.net.link import request_key

from tests.codec.iso8583.test_iso8583_messages import purchase


@pytest.mark.parametrize(
    "changes",
    [
        {"rrn": "000000000123", "acquirer_id": "12345678", "mac": None},
        {"pin_block": bytes(8)},
        {"mti": "0100"},
        {"stan": 999_999, "amount_fen": None},
    ],
)
def test_replaced_makes_the_message_replace_makes(changes: dict[str, Any]) -> None:
    for message in (purchase(), parse(decode_message(purchase().to_bytes()))):
        made = message.replaced(**changes)
        assert made == dataclasses.replace(message, **changes) and type(made) is type(message)
        assert made.to_bytes() == dataclasses.replace(message, **changes).to_bytes()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stan": 10**6}, "11"),  # seven digits in n6
        ({"terminal_id": "é" * 8}, "41"),
        ({"terminal_id": None}, "41"),  # required
        ({"response_code": None, "balance": "1002156C000000000100"}, "54"),  # not in a 0200
        ({"mti": "0210"}, "mti"),
    ],
)
def test_replaced_refuses_what_replace_refuses(changes: dict[str, Any], field: str) -> None:
    message = parse(decode_message(purchase().to_bytes()))
    with pytest.raises(Iso8583Error) as by_replace:
        dataclasses.replace(message, **changes)
    with pytest.raises(Iso8583Error) as by_replaced:
        message.replaced(**changes)
    assert by_replace.value.field == by_replaced.value.field == field


def test_a_signed_message_gives_the_bytes_its_mac_was_computed_over() -> None:
    message = purchase()
    signed = message.signed(lambda block: block[:8])
    again = dataclasses.replace(signed, mti=signed.mti)  # a copy, encoded afresh
    expected = with_mac(message.replaced(mac=bytes(8)).to_bytes(), lambda block: block[:8])
    assert signed.to_bytes() == again.to_bytes() == expected


def test_the_request_key_is_read_from_the_typed_message() -> None:
    message = purchase()
    assert request_key(message) == ("2", "11", f"{message.stan:06d}", message.terminal_id)
    assert request_key(message.replaced(rrn="000000000123")) == ("2", "37", "000000000123")


def test_an_answer_is_the_message_parse_makes_of_the_echoed_fields() -> None:
    for request in (purchase(), parse(decode_message(purchase().to_bytes()))):
        fields = {n: v for n, v in request.to_fields().fields.items() if n in ECHOED_HERE}
        extra = {39: "00", 38: "123456", 55: bytes.fromhex("91080102030405060708")}
        made = AuthorizationResponse.echoing("0210", request, ECHOED_HERE, extra)
        expected = parse(RawMessage("0210", fields | extra))
        assert (
            made == expected
            and type(made) is AuthorizationResponse
            and made.to_bytes() == expected.to_bytes()
        )
    for bad, field in (({39: "00", 52: bytes(8)}, "52"), ({39: "0"}, "39"), ({38: "123456"}, "39")):
        with pytest.raises(Iso8583Error) as info:
            AuthorizationResponse.echoing("0210", purchase(), ECHOED_HERE, bad)
        assert info.value.field == field
    with pytest.raises(Iso8583Error):
        AuthorizationResponse.echoing("0200", purchase(), ECHOED_HERE, {39: "00"})


ECHOED_HERE = frozenset({2, 3, 4, 11, 23, 25, 32, 37, 41, 42, 49, 60, 61})
