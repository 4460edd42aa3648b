"""The pure parts: field 48's layout both ways, the counters' industries, the applications' data and
transitions, the inquiry's rules, the simulated back end's determinism; and field 48 at the issuer's edge."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.codec.iso8583 import (
    AuthorizationRequest,
    Field60,
    Iso8583Error,
    ServiceKind,
    ServiceReference,
    ServiceReferenceError,
    parse,
)
from citycard.codec.iso8583.wire import decode_message
from citycard.hosts.issuer import to_authorization
from citycard.issuer.commands import AuthorizationKind, MalformedRequest
from citycard.public.commands import EnableApplication
from citycard.public.model import (
    APPLICATIONS,
    INQUIRY_WINDOW_NS,
    AppStatus,
    InquiryApproval,
    InquiryRefused,
    MalformedInput,
    PublicError,
    check_counter,
    check_inquiry,
    moved,
    simulated_records,
)


@given(st.sampled_from(list(ServiceKind)), st.text("0123456789", min_size=1, max_size=28))
def test_field48_round_trips(kind: ServiceKind, digits: str) -> None:
    ref = ServiceReference(kind, digits)
    assert ServiceReference.from_field48(ref.to_field48()) == ref
    assert ServiceReference.parse(ref.text) == ref and len(ref.text) <= 32


@pytest.mark.parametrize(
    "digits", ["", "9001", "8001051234", "9099051234", "900106123", "900105123456", "9001001", "90A1011"]
)
def test_malformed_field48_is_an_iso8583_error_for_48(digits: str) -> None:
    with pytest.raises(Iso8583Error, match=r"^field 48"):
        ServiceReference.from_field48(digits)


def test_a_purchase_with_field48_travels_and_is_checked_at_the_issuer() -> None:
    base = AuthorizationRequest(
        mti="0200", pan="6212260000000000018", processing_code="000000", amount_fen=1500, stan=7,
        pos_entry_mode="051", card_sequence_number="001", condition_code="00", acquirer_id="01000001",
        rrn="000000000042", terminal_id="HOSP0001", merchant_id="HOSPITAL0000001", currency="156",
        additional_data="900112202612030017", field60=Field60("22", 1),
    )  # fmt: skip
    again = parse(decode_message(base.to_bytes()))
    assert again.additional_data == "900112202612030017"
    assert to_authorization(again, AuthorizationKind.PURCHASE).service_ref == "HR-202612030017"
    assert (
        to_authorization(
            dataclasses.replace(again, additional_data=None), AuthorizationKind.PURCHASE
        ).service_ref
        is None
    )
    for bad, kind in (
        ("9001", AuthorizationKind.PURCHASE),
        ("900112202612030017", AuthorizationKind.EC_LOAD),
    ):
        with pytest.raises(MalformedRequest, match=r"^48"):
            to_authorization(dataclasses.replace(again, additional_data=bad), kind)


def test_references_people_type_are_checked() -> None:
    for bad in ("HR-", "hr-1", "HR 1", "XX-1", "HR-" + "1" * 29, 12):
        with pytest.raises(ServiceReferenceError):
            ServiceReference.parse(bad)  # type: ignore[arg-type]


def test_each_service_is_paid_at_its_industry() -> None:
    check_counter(ServiceKind.HOSPITAL_REGISTRATION, "hospital", "H")
    check_counter(ServiceKind.SCENIC_TICKET, "tourism", "T")
    for kind, industry in ((ServiceKind.HOSPITAL_REGISTRATION, "supermarket"), (ServiceKind.PHARMACY, None)):
        with pytest.raises(PublicError, match="is not a"):
            check_counter(kind, industry, "M")


def test_applications_keep_their_own_data_and_move_by_the_table() -> None:
    ok = EnableApplication(
        "6212260000000000018", "transit", {"category": "elderly", "valid_until": "20301231"}
    )
    assert ok.data == {"category": "elderly", "valid_until": "20301231"}
    for app, data in (
        ("transit", {"category": "pilot", "valid_until": "20301231"}),
        ("transit", {"category": "elderly"}),
        ("transit", {"category": "elderly", "valid_until": "20270231"}),  # the pattern's shape, no such day
        ("health", {"insurance_number": "1234567890", "blood_type": "A", "note": "x"}),
        ("bus", {}),
    ):
        with pytest.raises(MalformedInput):
            EnableApplication("6212260000000000018", app, data)
    with pytest.raises(MalformedInput, match="pan"):
        EnableApplication("62122", "library", {"reader_number": "123456", "deposit_fen": "0"})
    assert moved(None, "enable", "library") is AppStatus.ENABLED
    assert moved(AppStatus.ENABLED, "disable", "library") is AppStatus.DISABLED
    for status in (None, AppStatus.DISABLED):
        with pytest.raises(PublicError, match="cannot disable"):
            moved(status, "disable", "library")
    assert set(APPLICATIONS) == {"transit", "library", "health"}


def _approval(**changes: object) -> InquiryApproval:
    base = InquiryApproval(
        "01000001-000000000001", "6212260000000000018", "balance_inquiry", "00", ("online_pin_verified",),
        "SELF0001", 1_000, "k" * 64, False,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_an_inquiry_needs_a_fresh_unused_pin_verified_balance_inquiry_of_a_registered_card() -> None:
    assert check_inquiry(_approval(), "SELF0001", 1_000 + INQUIRY_WINDOW_NS) == "k" * 64
    refused = {
        "RRN unknown": (None, 2_000),
        "another terminal": (_approval(terminal_id="HOSP0001"), 2_000),
        "not a balance inquiry": (_approval(kind="purchase"), 2_000),
        "declined": (_approval(response_code="55", flags=()), 2_000),
        "did not verify": (_approval(flags=()), 2_000),
        "used": (_approval(used=True), 2_000),
        "older than": (_approval(), 1_001 + INQUIRY_WINDOW_NS),
        "unregistered": (_approval(citizen_key=None), 2_000),
    }
    for reason, (approval, now) in refused.items():
        with pytest.raises(InquiryRefused, match=reason):
            check_inquiry(approval, "SELF0001", now)


def test_the_back_end_is_replayable_from_its_seed() -> None:
    one = simulated_records("a" * 64, 1, today="20261203")
    assert one == simulated_records("a" * 64, 1, today="20261203")
    assert one != simulated_records("b" * 64, 1, today="20261203")
    assert one.social_security is not None and one.social_security.last_paid == "202611"
