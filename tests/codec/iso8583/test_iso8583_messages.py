"""Typed ISO 8583 messages: named fields both ways, the transaction table, field 39, field 55, masking."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.codec.iso8583 import (
    KINDS,
    TRANSACTIONS,
    AdviceRequest,
    AuthorizationRequest,
    AuthorizationResponse,
    BatchUpload,
    Field60,
    Header,
    IccData,
    Iso8583Error,
    NetworkManagementRequest,
    NetworkManagementResponse,
    RawMessage,
    ResponseCode,
    ReversalRequest,
    SettlementRequest,
    Tpdu,
    decode_framed,
    decode_message,
    encode_framed,
    encode_message,
    format_error_response,
    parse,
    response_for_malformed,
    response_mti,
    transaction_type,
)
from citycard.codec.tlv import decode

PAN = "6224242900000113"
TERMINAL = {"terminal_id": "10000019", "merchant_id": "850100082410002"}
ARQC = bytes.fromhex("95BBE372271DDA7C")


def purchase(**changes: object) -> AuthorizationRequest:
    values: dict[str, object] = {
        "mti": "0200",
        "pan": PAN,
        "processing_code": "000000",
        "amount_fen": 1250,
        "stan": 403,
        "pos_entry_mode": "051",
        "card_sequence_number": "001",
        "condition_code": "00",
        "currency": "156",
        "pin_block": bytes.fromhex("D1EEF419D0AE2609"),
        "icc": IccData.of([("9F26", ARQC), ("9F27", b"\x80"), ("9F36", b"\x00\x57")]),
        "field60": Field60("22", 24, "000", "50"),
        **TERMINAL,
    }
    values.update(changes)
    return AuthorizationRequest(**values)  # type: ignore[arg-type]


def test_a_purchase_round_trips_through_the_wire_with_named_fields() -> None:
    message = purchase()
    data = encode_framed(message, Tpdu(6, 1))
    frame, decoded = decode_framed(data)
    assert decoded == message and isinstance(decoded, AuthorizationRequest)
    assert decoded.amount_fen == 1250 and decoded.stan == 403
    assert decoded.icc is not None and decoded.icc.get("9F26") == ARQC
    assert frame.tpdu.reply() == Tpdu(1, 6) and frame.header == Header()
    assert transaction_type(decoded) == TRANSACTIONS[1] and TRANSACTIONS[1].name == "purchase"


def test_the_card_number_is_field_2_else_track_2_before_its_separator() -> None:
    assert purchase().card_number == PAN
    assert purchase(pan=None, track2=PAN + "D28062013949031013").card_number == PAN
    assert purchase(pan=None).card_number is None


def test_messages_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        purchase().amount_fen = 1  # type: ignore[misc]


def test_pan_is_masked_and_track_pin_block_and_chip_values_are_left_out_of_repr() -> None:
    text = repr(purchase(track2=PAN + "D28062013949031013"))
    assert "622424******0113" in text
    assert PAN not in text and "D1EEF419" not in text.upper() and ARQC.hex() not in text.lower()
    assert "track2=<hidden>" in text and "pin_block=<hidden>" in text and "9F26" in text


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stan": None}, "11"),  # required
        ({"field60": None}, "60"),
        ({"response_code": ResponseCode.APPROVED}, "39"),  # not a request field
        ({"amount_fen": 10**12}, "4"),
        ({"amount_fen": -1}, "4"),
        ({"pan": "62242429000001131234"}, "2"),
        ({"mti": "0210"}, "mti"),
        ({"terminal_id": "1000001"}, "41"),
    ],
)
def test_a_message_that_cannot_be_sent_is_refused_at_construction(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(Iso8583Error) as info:
        purchase(**changes)
    assert info.value.field == field


def test_field_55_errors_give_the_position_inside_the_message() -> None:
    good = purchase().to_fields()
    bad_icc = b"\x9f\x26\x08" + ARQC[:4]  # value runs past the end
    raw = decode_message(encode_message(RawMessage("0200", {**good.fields, 55: bad_icc})))
    with pytest.raises(Iso8583Error) as info:
        parse(raw)
    assert info.value.field == "55" and info.value.position == raw.position(55)
    assert str(info.value).startswith(f"field 55 pos {raw.position(55)}: ")


def test_field_55_is_checked_when_parsed_and_decoded_only_when_read() -> None:
    raw = decode_message(purchase().to_bytes())
    icc = parse(raw).icc
    assert icc is not None and icc._objects is None  # checked (the test above), not decoded
    assert icc.objects == tuple(decode(icc.raw)) and icc._objects is icc.objects  # decoded once, kept
    assert icc.get("9F26") == ARQC and IccData(icc.raw) == icc
    assert pickle.loads(pickle.dumps(icc)) == icc and copy.deepcopy(icc).objects == icc.objects


def test_an_unknown_mti_a_missing_field_and_an_unexpected_field_are_malformed() -> None:
    fields = dict(purchase().to_fields().fields)
    with pytest.raises(Iso8583Error, match="field mti"):
        parse(decode_message(encode_message(RawMessage("0600", fields))))
    without_stan = {k: v for k, v in fields.items() if k != 11}
    with pytest.raises(Iso8583Error, match="field 11"):
        parse(decode_message(encode_message(RawMessage("0200", without_stan))))
    raw = decode_message(encode_message(RawMessage("0200", {**fields, 54: "1001156C000000001000"})))
    with pytest.raises(Iso8583Error) as info:
        parse(raw)
    assert (info.value.field, info.value.position) == ("54", raw.position(54))


def test_field_60_needs_its_first_two_subfields_and_a_whole_60_3() -> None:
    assert Field60.from_digits("22000024") == Field60("22", 24)
    assert Field60.from_digits("22000024000600") == Field60("22", 24, "000", "600")
    for digits in ("2200002", "220000240", "2200002400"):
        with pytest.raises(Iso8583Error, match="field 60 pos 7"):
            Field60.from_digits(digits, position=7)
    with pytest.raises(Iso8583Error):
        Field60("22", 1, None, "5")  # 60.4 without 60.3


def test_response_codes_are_defined_once_with_approved_and_a_description() -> None:
    assert ResponseCode("00").approved and ResponseCode.APPROVED_VIP.approved
    assert not ResponseCode.INSUFFICIENT_FUNDS.approved and not ResponseCode.FORMAT_ERROR.approved
    assert ResponseCode.INCORRECT_PIN == "55" and ResponseCode.MAC_ERROR == "A0"
    assert ResponseCode.DUPLICATE_TRANSMISSION.description == "duplicate transmission"
    assert all(code.description for code in ResponseCode)
    with pytest.raises(Iso8583Error, match="field 39 pos 9"):
        ResponseCode.parse("ZZ", position=9)


def test_a_malformed_message_is_answered_with_30_and_the_response_mti() -> None:
    try:
        decode_message(b"\x02\x00\x80" + bytes(7))
    except Iso8583Error as exc:
        assert response_for_malformed(exc) is ResponseCode.FORMAT_ERROR
    else:
        pytest.fail("a secondary bitmap is outside the profile")
    requests = ("0100", "0200", "0220", "0320", "0400", "0420", "0500", "0800", "0820")
    responses = ["0110", "0210", "0230", "0330", "0410", "0430", "0510", "0810", "0830"]
    assert [response_mti(m) for m in requests] == responses
    with pytest.raises(Iso8583Error):
        response_mti("0210")


def test_a_response_carries_its_code_and_approval() -> None:
    response = AuthorizationResponse(
        mti="0210",
        processing_code="000000",
        amount_fen=1250,
        stan=403,
        rrn="123456789012",
        auth_code="A1B2C3",
        condition_code="00",
        response_code=ResponseCode.APPROVED,
        icc=IccData.of([("91", bytes(10))]),
        field60=Field60("22", 24),
        **TERMINAL,
    )
    decoded = parse(decode_message(response.to_bytes()))
    assert decoded == response and decoded.approved
    declined = AuthorizationResponse(
        mti="0210",
        processing_code="000000",
        stan=403,
        response_code=ResponseCode.INSUFFICIENT_FUNDS,
        **TERMINAL,
    )
    assert not declined.approved and transaction_type(decoded) == TRANSACTIONS[1]


def test_every_kind_round_trips() -> None:
    common = {"stan": 7, **TERMINAL}
    messages = [
        purchase(),
        purchase(mti="0100", processing_code="030000", field60=Field60("10", 24)),
        AdviceRequest(
            mti="0220", processing_code="200000", amount_fen=500, pos_entry_mode="051", condition_code="00",
            currency="156", rrn="123456789012", original="000024000403" + "1203", field60=Field60("25", 24),
            **common,
        ),
        ReversalRequest(
            mti="0400", processing_code="000000", amount_fen=1250, pos_entry_mode="051", condition_code="00",
            currency="156", response_code=ResponseCode.ISSUER_TIMEOUT, field60=Field60("22", 24), **common,
        ),
        BatchUpload(mti="0320", field60=Field60("00", 24, "202"), additional_data="0003", **common),
        SettlementRequest(
            mti="0500", currency="156", additional_data="000000000125000" + "000000000000000" + "0",
            field60=Field60("00", 24, "201"), **common,
        ),
        NetworkManagementRequest(mti="0800", field60=Field60("00", 24, "003"), private63=b"01 ", **common),
        NetworkManagementResponse(
            mti="0810", response_code=ResponseCode.APPROVED, private62=bytes(40),
            field60=Field60("00", 25, "003"), **common,
        ),
    ]  # fmt: skip
    for message in messages:
        assert parse(decode_message(message.to_bytes())) == message
    assert {type(m) for m in messages} | {AuthorizationResponse} <= set(KINDS)
    assert transaction_type(messages[2]) is not None and transaction_type(messages[2]).name == "refund"  # type: ignore[union-attr]
    assert transaction_type(messages[3]) == TRANSACTIONS[1]  # the reversal of a purchase
    assert transaction_type(messages[6]) is not None and transaction_type(messages[6]).name.startswith(
        "sign-on"
    )  # type: ignore[union-attr]


def test_the_transaction_table_says_each_transaction_once() -> None:
    keys = [(t.processing_code, t.condition_code, t.message_type_code, t.network_code) for t in TRANSACTIONS]
    assert len(set(keys)) == len(keys)
    loads = {
        t.processing_code: (t.condition_code, t.message_type_code)
        for t in TRANSACTIONS
        if t.name.startswith("EC")
    }
    assert loads == {"600000": ("91", "45"), "630000": ("91", "46"), "620000": ("91", "47")}


@settings(max_examples=200, deadline=None)
@given(
    pan=st.text(alphabet="0123456789", min_size=12, max_size=19),
    amount_fen=st.integers(0, 10**12 - 1),
    stan=st.integers(0, 999_999),
    batch=st.integers(0, 999_999),
    icc=st.lists(
        st.tuples(st.sampled_from(["9F26", "9F27", "9F10", "9F37", "95", "9A"]), st.binary(max_size=32)),
        max_size=6,
    ),
    code=st.sampled_from([t for t in TRANSACTIONS if t.mti == "0200"]),
)  # fmt: skip
def test_typed_authorizations_round_trip(
    pan: str, amount_fen: int, stan: int, batch: int, icc: list[tuple[str, bytes]], code: object
) -> None:
    row = code
    assert row in TRANSACTIONS
    message = purchase(
        pan=pan,
        amount_fen=amount_fen,
        stan=stan,
        processing_code=row.processing_code,  # type: ignore[attr-defined]
        condition_code=row.condition_code,  # type: ignore[attr-defined]
        icc=IccData.of(icc) if icc else None,
        field60=Field60(row.message_type_code, batch),  # type: ignore[attr-defined]
    )
    frame, decoded = decode_framed(encode_framed(message, Tpdu(6, 1)))
    assert decoded == message and transaction_type(decoded) == row and frame.tpdu == Tpdu(6, 1)


def test_a_malformed_request_is_answered_with_30_echoing_its_stan_terminal_and_merchant() -> None:
    good = purchase().to_bytes()
    raw = decode_message(good)
    at = raw.position(55)
    assert at is not None
    broken = good[: at - 2] + b"\x09\x99" + good[at:]  # field 55 claims 999 bytes: over its maximum
    with pytest.raises(Iso8583Error) as info:
        decode_message(broken)
    assert (info.value.field, info.value.position) == ("55", at - 2)
    assert format_error_response(info.value) == (
        "0210",
        {11: "000403", 41: "10000019", 42: "850100082410002", 39: "30"},
    )
    mti, fields = format_error_response(info.value) or ("", {})
    answer = AuthorizationResponse.from_fields(RawMessage(mti, {3: "000000", **fields}))
    assert answer.response_code is ResponseCode.FORMAT_ERROR and not answer.approved


def test_a_request_failing_the_typed_checks_is_answered_with_30_too() -> None:
    fields = {k: v for k, v in purchase().to_fields().fields.items() if k != 60}  # 60 is required
    with pytest.raises(Iso8583Error) as info:
        parse(decode_message(encode_message(RawMessage("0200", fields))))
    assert info.value.field == "60"
    response = format_error_response(info.value)
    assert response is not None and response[0] == "0210" and response[1][39] == "30"


def test_no_format_error_response_without_the_fields_to_match_it() -> None:
    with pytest.raises(Iso8583Error) as info:
        decode_message(b"\x02\x00\x80" + bytes(7))  # a secondary bitmap: nothing decoded yet
    assert info.value.mti == "0200" and format_error_response(info.value) is None
    with pytest.raises(Iso8583Error) as info:
        decode_message(b"\x0a\x00")
    assert info.value.mti is None and format_error_response(info.value) is None
    response = AuthorizationResponse(
        mti="0210",
        processing_code="000000",
        stan=1,
        response_code=ResponseCode.APPROVED,
        mac=bytes(8),
        **TERMINAL,
    ).to_bytes()
    with pytest.raises(Iso8583Error) as info:  # 11, 41 and 42 decoded, but a response is never answered
        decode_message(response[:-1])
    assert info.value.field == "64" and set(info.value.echo) == {11, 41, 42}
    assert format_error_response(info.value) is None


def test_icc_data_is_always_the_decoding_of_the_bytes_that_travel() -> None:
    icc = IccData(bytes.fromhex("9F2608") + ARQC)
    assert icc.get("9F26") == ARQC and icc == IccData.of([("9F26", ARQC)])
    with pytest.raises(Iso8583Error) as info:
        IccData(b"\x9f")  # a tag that runs past the end
    assert (info.value.field, info.value.position) == ("55", None)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=3), st.booleans())
def test_a_mutated_typed_frame_decodes_to_a_message_or_raises_the_typed_error(
    where: int, junk: bytes, insert: bool
) -> None:
    data = bytearray(encode_framed(purchase(track2=PAN + "D2806201", mac=bytes(8)), Tpdu(6, 1)))
    at = where % len(data)
    if insert:
        data[at:at] = junk
    else:
        data[at : at + len(junk)] = junk
    try:
        _, message = decode_framed(bytes(data))
    except Iso8583Error as exc:
        assert exc.position is None or 0 <= exc.position <= len(data)
    else:  # what decodes is a whole message of the profile, and it travels back as the same bytes
        assert encode_framed(message, Tpdu(6, 1))[13:] == bytes(data)[13:]
