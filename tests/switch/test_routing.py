"""The switch's pure decisions: longest BIN prefix routing, the table's checks, PIN translation between zone
PIN keys, and what an unanswered request is answered."""

from __future__ import annotations

import pytest

from citycard.codec.iso8583 import (
    AdviceRequest,
    AuthorizationRequest,
    BatchUpload,
    Field60,
    IccData,
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
    TwoLegs,
    answer_when_unanswered,
    decide,
    split_other_account_load,
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
        # never sent (the issuer's link down): 91 at once, "not delivered" to the sender's queue
        assert answer_when_unanswered(mti, sent=False) is ResponseCode.ISSUER_UNAVAILABLE


def _other_account_load(mti: str = "0200", icc: bytes | None = None) -> Message:
    """An EC load from another account: the BOC account's card in 2 with its PIN, the ICBC EC card in 55."""
    chip = bytes.fromhex("9F2608" + "11" * 8 + "5A08" + "6212260000000000" + "5F340101")
    return _request(
        mti,
        pan="6216610000000000012",
        processing_code="620000",
        condition_code="91",
        field60=Field60("47", 1),
        pin_block=bytes(8) if mti == "0200" else None,
        card_sequence_number="001",
        icc=IccData(chip if icc is None else icc),
    )


def test_a_load_from_another_account_is_split_into_the_debit_leg_and_the_card_leg() -> None:
    legs = split_other_account_load(TABLE, _other_account_load())
    assert isinstance(legs, TwoLegs) and not legs.load_stands
    assert legs.debit.route == Forward(BOC, BOC, None)  # the account's bank; the acquirer is BOC here
    assert legs.debit.message.pan == "6216610000000000012" and legs.debit.message.pin_block == bytes(8)
    assert legs.debit.message.icc is None and legs.debit.message.card_sequence_number is None
    assert legs.card.route == Forward(ICBC, BOC, None)  # the EC card's bank, no PIN to translate
    assert legs.card.message.pan == "6212260000000000" and legs.card.message.pin_block is None
    assert legs.card.message.icc is not None and legs.card.message.card_sequence_number == "001"
    assert split_other_account_load(TABLE, _request()) is None  # a purchase goes as it is


def test_a_load_whose_chip_data_name_no_card_is_refused_30() -> None:
    refused = split_other_account_load(
        TABLE, _other_account_load(icc=bytes.fromhex("9F26081111111111111111"))
    )
    assert isinstance(refused, Refuse) and refused.code is ResponseCode.FORMAT_ERROR
    unroutable = _other_account_load(icc=bytes.fromhex("5A08" + "6230000000000000"))
    refused = split_other_account_load(TABLE, unroutable)
    assert isinstance(refused, Refuse) and refused.code is ResponseCode.NO_SUCH_ISSUER


@pytest.mark.parametrize(("status", "stands"), [("20", True), ("10", False), ("00", False)])
def test_a_reversal_of_a_load_the_card_took_reaches_only_the_card_leg(status: str, stands: bool) -> None:
    """9F5B: script 0 processed (status 2) means the card holds the money: the debit leg is not reversed."""
    chip = bytes.fromhex("5A08" + "6212260000000000" + "9F5B05" + status + "00000000")
    legs = split_other_account_load(TABLE, _other_account_load("0400", icc=chip))
    assert isinstance(legs, TwoLegs) and legs.load_stands is stands


def test_a_members_route_to_its_front_end_is_a_host_and_a_port() -> None:
    assert Member("ICBC", "01020000", "icbc-zpk", ("10.0.0.5", 9585)).front_end == ("10.0.0.5", 9585)
    for bad in (("", 9585), ("10.0.0.5", 0), ("10.0.0.5", 65536)):
        with pytest.raises(RoutingError, match="is not a host and port"):
            Member("ICBC", "01020000", "icbc-zpk", bad)
    moved = RoutingTable([Member("ICBC", "01020000", "icbc-zpk", ("10.0.0.6", 9585))], [])
    assert moved.members != RoutingTable([ICBC], []).members  # a route changed is a table changed
