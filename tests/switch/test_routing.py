"""The switch's pure decisions: longest BIN prefix routing, the table's checks, PIN translation between zone
PIN keys, and what an unanswered request is answered."""

from __future__ import annotations

import pytest

from citycard.codec.iso8583 import (
    AdviceRequest,
    AuthorizationRequest,
    BatchUpload,
    Field60,
    Message,
    ResponseCode,
    ReversalRequest,
)
from citycard.switch import (
    BinRoute,
    Forward,
    Member,
    PinTranslation,
    Refuse,
    RoutingError,
    RoutingTable,
    answer_when_unanswered,
    card_number,
    decide,
)

ICBC = Member("ICBC", "01020000", "icbc-zpk")
BOC = Member("BOC", "01040000", "boc-zpk")
CCB = Member("CCB", None, "ccb-zpk")
TABLE = RoutingTable(
    [ICBC, BOC, CCB],
    [
        BinRoute("621226", "ICBC"),
        BinRoute("6212", "BOC"),
        BinRoute("62122699", "CCB"),
        BinRoute("621661", "BOC"),
    ],
)


@pytest.mark.parametrize(
    ("pan", "bank"),
    [
        ("6212260000000000018", "ICBC"),  # 621226 beats 6212
        ("6212269900000000017", "CCB"),  # 62122699 beats 621226
        ("6212000000000000016", "BOC"),  # only 6212
        ("6216610000000000012", "BOC"),
        ("6230000000000000011", None),
        ("621", None),  # shorter than every BIN
        ("", None),
    ],
)
def test_the_longest_bin_prefix_wins(pan: str, bank: str | None) -> None:
    member = TABLE.route(pan)
    assert (member.bank_code if member else None) == bank


def test_the_table_refuses_what_cannot_route() -> None:
    with pytest.raises(RoutingError, match="BIN 621226: both ICBC and BOC"):
        RoutingTable([ICBC, BOC], [BinRoute("621226", "ICBC"), BinRoute("621226", "BOC")])
    with pytest.raises(RoutingError, match="bank XYZ is not a member"):
        RoutingTable([ICBC], [BinRoute("621226", "XYZ")])
    with pytest.raises(RoutingError, match="institution 01020000: both ICBC and BOC"):
        RoutingTable([ICBC, Member("BOC", "01020000", "boc-zpk")], [])
    with pytest.raises(RoutingError, match="listed twice"):
        RoutingTable([ICBC, ICBC], [])
    for bad in ("", "62A226", "123456789012"):
        with pytest.raises(RoutingError, match="a BIN is 1 to 11 digits"):
            BinRoute(bad, "ICBC")
    with pytest.raises(RoutingError, match="institution id"):
        Member("ICBC", "0102x", "icbc-zpk")
    assert TABLE.acquirer("01040000") is BOC and TABLE.acquirer("99") is None
    assert TABLE.bins["6212"] == "BOC" and "ICBC" in repr(TABLE)


def _request(
    mti: str = "0200",
    *,
    pan: str | None = "6212260000000000018",
    acquirer: str | None = "01040000",
    **kw: object,
) -> Message:
    fields: dict[str, object] = {
        "mti": mti,
        "pan": pan,
        "processing_code": "000000",
        "amount_fen": 100,
        "stan": 7,
        "pos_entry_mode": "051",
        "condition_code": "00",
        "acquirer_id": acquirer,
        "rrn": "000000000001",
        "terminal_id": "T0000001",
        "merchant_id": "M00000000000001",
        "currency": "156",
        "field60": Field60("22", 1),
    }
    fields.update(kw)
    kind = {"0200": AuthorizationRequest, "0220": AdviceRequest, "0400": ReversalRequest}[mti]
    if mti == "0400":
        fields["response_code"] = ResponseCode.ISSUER_TIMEOUT
    return kind(**fields)  # type: ignore[arg-type]


def test_a_request_goes_to_the_card_issuer_with_its_pin_translated() -> None:
    decision = decide(TABLE, _request(pin_block=bytes(8)))
    assert decision == Forward(ICBC, BOC, PinTranslation("boc-zpk", "icbc-zpk"))
    assert decide(TABLE, _request()) == Forward(ICBC, BOC, None)  # no PIN block, nothing to translate
    on_us = decide(TABLE, _request(acquirer="01020000", pin_block=bytes(8)))
    assert on_us == Forward(ICBC, ICBC, None)  # the same zone PIN key at both ends
    by_track2 = decide(TABLE, _request(pan=None, track2="6216610000000000012D30121010000000000"))
    assert isinstance(by_track2, Forward) and by_track2.issuer is BOC


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"pan": "6230000000000000011"}, ResponseCode.NO_SUCH_ISSUER),
        ({"pan": None}, ResponseCode.FORMAT_ERROR),
        ({"acquirer": None}, ResponseCode.FORMAT_ERROR),
        ({"rrn": None}, ResponseCode.FORMAT_ERROR),
        ({"acquirer": "09990000"}, ResponseCode.INVALID_MERCHANT),
    ],
)
def test_a_request_that_cannot_be_routed_is_refused(changes: dict[str, object], code: ResponseCode) -> None:
    decision = decide(TABLE, _request(**changes))  # type: ignore[arg-type]
    assert isinstance(decision, Refuse) and decision.code is code and decision.reason


def test_only_host_to_host_transactions_are_switched() -> None:
    upload = BatchUpload(
        mti="0320", stan=1, terminal_id="T0000001", merchant_id="M00000000000001", field60=Field60("36", 1)
    )
    decision = decide(TABLE, upload)
    assert isinstance(decision, Refuse) and decision.code is ResponseCode.FUNCTION_NOT_SUPPORTED
    assert isinstance(decide(TABLE, _request("0220")), Forward)
    assert isinstance(decide(TABLE, _request("0400")), Forward)


def test_an_unanswered_authorization_is_answered_91_and_an_advice_or_reversal_not_at_all() -> None:
    assert answer_when_unanswered("0200") is ResponseCode.ISSUER_UNAVAILABLE
    assert answer_when_unanswered("0100") is ResponseCode.ISSUER_UNAVAILABLE
    for mti in ("0220", "0400", "0420"):
        assert answer_when_unanswered(mti) is None


def test_card_number_from_field_2_or_track_2() -> None:
    assert card_number(_request()) == "6212260000000000018"
    assert card_number(_request(pan=None)) is None
