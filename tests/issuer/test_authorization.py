"""Online authorization under attack and on retry (SQLite and PostgreSQL): forged ARQC, replayed ATC, the
"No PIN" CVM mismatch, repeated unpredictable numbers, idempotent retries, bad amounts, reversals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from citycard.center.commands import AddMerchant, AddTerminal, CloseMerchant, CloseTerminal, Command
from citycard.center.handlers import handle
from citycard.center.ports import CenterDeps
from citycard.codec.tlv import decode_dict, encode_many
from citycard.db import Database
from citycard.db.center_repositories import CenterUnitOfWork
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import (
    AuthorizationKind,
    AuthorizationRequest,
    AuthorizationResponse,
    Deposit,
    MalformedRequest,
)
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import NotFound

from tests.issuer.conftest import Terminal, ledger_snapshot
from tests.issuer.test_slice import PSN, issue_registered, request

PURCHASE = AuthorizationKind.PURCHASE


def funded_card(banks: IssuerService, amount_fen: int = 100_000) -> str:
    pan = issue_registered(banks)
    banks.deposit(Deposit(pan, amount_fen, f"dep-{pan}"))
    return pan


def with_tag(field55: bytes, tag: str, value: bytes) -> bytes:
    tags = decode_dict(field55)
    tags[tag] = value
    return encode_many(tags.items())


def test_forged_arqc_is_declined_and_posts_nothing(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    f55 = terminal_for(pan).first_ac(1_000)
    arqc = decode_dict(f55)["9F26"]
    forged = with_tag(f55, "9F26", bytes([arqc[0] ^ 1]) + arqc[1:])
    before = ledger_snapshot(database)
    resp = banks.authorize(request(pan, PURCHASE, 1_000, forged, "p-1"))
    assert resp.response_code == "05" and "arqc_failed" in resp.flags and not resp.arpc
    # an amount changed after the card signed it fails the same way
    tampered = with_tag(f55, "9F02", bytes.fromhex("000000000001"))
    resp = banks.authorize(request(pan, PURCHASE, 1, tampered, "p-2"))
    assert resp.response_code == "05" and "arqc_failed" in resp.flags
    assert ledger_snapshot(database) == before


def test_a_cryptogram_version_the_issuer_does_not_verify_is_refused_by_name_and_posts_nothing(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """An ARQC of another cryptogram version (CVN 02) or algorithm (04, SM4) is answered 30 saying which,
    not verified as a CVN 01 under 3DES and declined as a forgery (citycard.crypto.cvn); so is an IAD whose
    CVR is malformed."""
    pan = funded_card(banks)
    f55 = terminal_for(pan).first_ac(1_000)
    iad = decode_dict(f55)["9F10"]
    before = ledger_snapshot(database)
    for n, (changed, says) in enumerate(
        [
            (iad[:2] + b"\x02" + iad[3:], "cryptogram version 02"),
            (iad[:7] + b"\x04" + iad[8:], "algorithm 04"),
            (iad[:3] + b"\x02" + iad[4:], "CVR length byte is 02"),  # compiled, this was a TypeError (96)
        ]
    ):
        resp = banks.authorize(request(pan, PURCHASE, 1_000, with_tag(f55, "9F10", changed), f"v-{n}"))
        assert resp.response_code == "30" and says in resp.reason, resp
    assert ledger_snapshot(database) == before
    assert banks.authorize(request(pan, PURCHASE, 1_000, f55, "v-ok")).approved  # the card's own: CVN 01


def test_replayed_atc_is_declined(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    f55 = terminal_for(pan).first_ac(1_000)
    assert banks.authorize(request(pan, PURCHASE, 1_000, f55, "p-1")).approved
    before = ledger_snapshot(database)
    resp = banks.authorize(request(pan, PURCHASE, 1_000, f55, "p-2"))  # recorded and replayed
    assert resp.response_code == "05" and "atc_replay" in resp.flags
    assert ledger_snapshot(database) == before


def test_retry_gets_the_same_answer_and_posts_once(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    req = request(pan, PURCHASE, 2_500, terminal_for(pan).first_ac(2_500), "p-1")
    first = banks.authorize(req)
    after_first = ledger_snapshot(database)
    assert first.approved
    assert banks.authorize(req) == first
    assert ledger_snapshot(database) == after_first
    other = AuthorizationRequest("p-1", PURCHASE, pan, PSN, 2_600, req.field55, stan="000002")
    assert banks.authorize(other).response_code == "94"
    assert ledger_snapshot(database) == after_first


def test_no_pin_attack_is_caught(banks: IssuerService, terminal_for: Callable[[str], Terminal]) -> None:
    pan = funded_card(banks)
    term = terminal_for(pan)
    # the terminal was told "PIN OK" by a man in the middle; the card never saw a VERIFY
    f55 = with_tag(term.first_ac(3_000), "9F34", bytes.fromhex("010002"))
    resp = banks.authorize(request(pan, PURCHASE, 3_000, f55, "p-1"))
    assert resp.response_code == "05" and "cvm_mismatch" in resp.flags
    # the honest case: the card verified the PIN itself, its CVR says so
    f55 = with_tag(
        term.first_ac(3_000, pin="123456", un=b"\x0a\x0b\x0c\x0d"), "9F34", bytes.fromhex("010002")
    )
    resp = banks.authorize(request(pan, PURCHASE, 3_000, f55, "p-2"))
    assert resp.approved, resp.reason
    # a wrong offline PIN: the card's CVR says "failed"
    f55 = with_tag(
        term.first_ac(3_000, pin="999999", un=b"\x0e\x0f\x10\x11"), "9F34", bytes.fromhex("010002")
    )
    assert banks.authorize(request(pan, PURCHASE, 3_000, f55, "p-3")).response_code == "05"


def test_repeated_unpredictable_number_is_flagged(
    banks: IssuerService, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    term = terminal_for(pan)
    first = banks.authorize(request(pan, PURCHASE, 100, term.first_ac(100, un=b"\x00\x00\x00\x07"), "p-1"))
    again = banks.authorize(request(pan, PURCHASE, 100, term.first_ac(100, un=b"\x00\x00\x00\x07"), "p-2"))
    assert first.approved and "repeated_unpredictable_number" not in first.flags
    assert "repeated_unpredictable_number" in again.flags


@pytest.mark.parametrize("amount", [0, -100, 1.5, "100", True, 10**13])
def test_amount_must_be_a_positive_whole_number_of_fen(amount: object) -> None:
    with pytest.raises(MalformedRequest, match="amount_fen"):
        AuthorizationRequest("r", PURCHASE, "6212260000000000018", PSN, amount, b"")  # type: ignore[arg-type]
    with pytest.raises(MalformedRequest):
        Deposit("6212260000000000018", amount, "d")  # type: ignore[arg-type]


def test_amount_differing_from_the_chip_data_is_declined(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    f55 = terminal_for(pan).first_ac(1_000)
    before = ledger_snapshot(database)
    assert banks.authorize(request(pan, PURCHASE, 100_000, f55, "p-1")).response_code == "13"
    assert banks.authorize(request(pan, PURCHASE, 1_000, b"\x9f\x26\x09", "p-2")).response_code == "30"
    assert banks.authorize(request("6212260000000099999", PURCHASE, 1_000, f55, "p-3")).response_code == "14"
    assert ledger_snapshot(database) == before


def test_reversal_restores_the_account_once(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    before = ledger_snapshot(database)
    resp = banks.authorize(request(pan, PURCHASE, 4_000, terminal_for(pan).first_ac(4_000), "p-1"))
    assert resp.approved and resp.balance_fen == 6_000
    reversal = AuthorizationRequest(
        "r-1",
        AuthorizationKind.REVERSAL,
        pan,
        PSN,
        4_000,
        b"",
        original_request_id="p-1",
        terminal_id="T0000001",
    )
    assert banks.authorize(reversal).approved
    with database.unit_of_work() as uow:
        balances = {a.id: a.credit_balance_fen for a in uow.ledger.balances()}
    assert balances == {a.id: a.credit_balance_fen for a in before[1]}
    after = ledger_snapshot(database)
    again = AuthorizationRequest(
        "r-2",
        AuthorizationKind.REVERSAL,
        pan,
        PSN,
        4_000,
        b"",
        original_request_id="p-1",
        terminal_id="T0000001",
    )
    assert "already reversed" in banks.authorize(again).reason
    unknown = AuthorizationRequest(
        "r-3", AuthorizationKind.REVERSAL, pan, PSN, 1, b"", original_request_id="zz", terminal_id="T0000001"
    )
    answer = banks.authorize(unknown)  # a reversal before its original: recorded, nothing posted
    assert answer.approved and "original_unknown" in answer.flags
    assert ledger_snapshot(database)[1] == after[1]


def test_balance_inquiry(banks: IssuerService, terminal_for: Callable[[str], Terminal]) -> None:
    pan = funded_card(banks, 7_777)
    resp = banks.authorize(
        request(pan, AuthorizationKind.BALANCE_INQUIRY, 0, terminal_for(pan).first_ac(0), "b-1")
    )
    assert resp.approved and resp.balance_fen == 7_777 and resp.ec_balance_fen == 0


def test_ec_balance_in_the_iad_is_trusted_only_with_its_mac(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    from citycard.codec.money import bcd_amount

    pan = funded_card(banks)
    f55 = terminal_for(pan).first_ac(1_000, txn_type=0x60)
    iad = decode_dict(f55)["9F10"]
    # claim 900 yuan already on the card: a PUT DATA of 910 yuan would be paid with 10 (the ARQC still holds)
    forged = with_tag(f55, "9F10", iad[:10] + bcd_amount(90_000, 5) + iad[15:])
    before = ledger_snapshot(database)
    resp = banks.authorize(request(pan, AuthorizationKind.EC_LOAD, 1_000, forged, "l-1"))
    assert resp.response_code == "05" and "iad_mac_failed" in resp.flags and not resp.scripts
    assert ledger_snapshot(database) == before
    resp = banks.authorize(request(pan, AuthorizationKind.EC_LOAD, 1_000, f55, "l-2"))
    assert resp.approved and resp.scripts[0][5:11] == bcd_amount(1_000)


@pytest.mark.parametrize("amount", [0, -100, 1.5, "100", True, 10**13])
def test_bad_amounts_post_nothing(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal], amount: object
) -> None:
    """An amount that is not a positive whole number of fen is refused before anything can be posted."""
    pan = funded_card(banks)
    f55 = terminal_for(pan).first_ac(1_000)
    before = ledger_snapshot(database)
    for kind in (PURCHASE, AuthorizationKind.EC_LOAD, AuthorizationKind.EC_CASH_LOAD):
        with pytest.raises(MalformedRequest, match="amount_fen"):
            banks.authorize(request(pan, kind, amount, f55, f"bad-{kind}"))  # type: ignore[arg-type]
    with pytest.raises(MalformedRequest, match="amount_fen"):
        banks.deposit(Deposit(pan, amount, "bad-deposit"))  # type: ignore[arg-type]
    assert ledger_snapshot(database) == before


def test_unknown_bin_is_refused_and_posts_nothing(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    from citycard.issuer.commands import AddBinRange, AddProduct, IssueCards
    from citycard.issuer.model import luhn_check_digit as luhn

    pan = funded_card(banks)
    f55 = terminal_for(pan).first_ac(1_000)
    before = ledger_snapshot(database)
    with pytest.raises(NotFound, match="BIN 999999"):
        banks.add_product(AddProduct("ICBC", "gold", "Gold card", "999999"))
    with pytest.raises(NotFound, match="BIN 621661"):  # BOC's BIN is not ICBC's
        banks.add_product(AddProduct("ICBC", "gold", "Gold card", "621661"))
    with pytest.raises(MalformedRequest, match="bin"):
        banks.add_bin_range(AddBinRange("ICBC", "12AB56"))
    with pytest.raises(NotFound):
        banks.issue_cards(IssueCards("ICBC", "gold"))
    body = "999999" + pan[6:-1]  # a PAN of a BIN no bank here issues
    answer = banks.authorize(request(body + luhn(body), PURCHASE, 1_000, f55, "p-unknown-bin"))
    assert answer.response_code == "14" and not answer.approved
    assert ledger_snapshot(database) == before


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("9F6C", bytes.fromhex("8000")),  # qPBOC: the card's CTQ asks the reader for an online PIN
        ("9F34", bytes.fromhex("420300")),  # the terminal claims it performed online PIN (result unknown)
    ],
)
def test_online_pin_asked_for_but_no_pin_block_is_declined(
    banks: IssuerService,
    database: Database,
    terminal_for: Callable[[str], Terminal],
    tag: str,
    value: bytes,
) -> None:
    pan = funded_card(banks)
    f55 = with_tag(terminal_for(pan).first_ac(20_000), tag, value)
    before = ledger_snapshot(database)
    resp = banks.authorize(request(pan, PURCHASE, 20_000, f55, "p-1"))
    assert resp.response_code == "55" and "online_pin_missing" in resp.flags, resp
    assert ledger_snapshot(database) == before


def test_a_changed_terminal_id_is_refused_and_posts_nothing(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """The ARQC does not cover field 41: a 9F1C in field 55 must match it, and a reversal must come from the
    original's terminal and merchant; each refusal posts nothing."""
    pan = funded_card(banks, 10_000)
    term = terminal_for(pan)
    f55 = with_tag(term.first_ac(1_000), "9F1C", b"T0000001")
    before = ledger_snapshot(database)
    moved = replace(request(pan, PURCHASE, 1_000, f55, "p-1"), terminal_id="T0000002")
    resp = banks.authorize(moved)
    assert resp.response_code == "58" and "terminal_mismatch" in resp.flags and "9F1C" in resp.reason
    assert ledger_snapshot(database) == before
    f55 = with_tag(term.first_ac(1_000), "9F1C", b"T0000001")
    original = replace(request(pan, PURCHASE, 1_000, f55, "p-2"), merchant_id="CITYMERCHANT001")
    assert banks.authorize(original).approved
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        stored = uow.authorizations.get("p-2")
    assert stored is not None and (stored.terminal_id, stored.merchant_id) == ("T0000001", "CITYMERCHANT001")
    paid = ledger_snapshot(database)
    reversal = AuthorizationRequest(
        "r-1", AuthorizationKind.REVERSAL, pan, PSN, 1_000, b"", original_request_id="p-2",
        terminal_id="T0000002", merchant_id="CITYMERCHANT001",
    )  # fmt: skip
    resp = banks.authorize(reversal)
    assert resp.response_code == "58" and "terminal_mismatch" in resp.flags
    other_merchant = replace(reversal, request_id="r-2", terminal_id="T0000001", merchant_id="OTHERSHOP")
    assert banks.authorize(other_merchant).response_code == "58"
    assert ledger_snapshot(database) == paid  # nothing reversed
    same = replace(reversal, request_id="r-3", terminal_id="T0000001")
    assert banks.authorize(same).approved
    assert ledger_snapshot(database)[1] != paid[1]  # reversed from the original terminal


@pytest.mark.parametrize(("field", "value"), [("terminal_id", "T00000012"), ("merchant_id", "M" * 16)])
def test_terminal_and_merchant_ids_are_bounded(field: str, value: str) -> None:
    with pytest.raises(MalformedRequest, match=field):
        AuthorizationRequest("r", PURCHASE, "6212260000000000018", PSN, 100, b"", **{field: value})  # type: ignore[arg-type]


def test_once_terminals_are_registered_only_an_active_terminal_of_the_merchant_is_served(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """The center registers terminals (``citycard.center``); the issuer reads the same registry."""
    pan = funded_card(banks, 10_000)
    term = terminal_for(pan)
    platform = SoftHsm(bytes(range(32)))
    own: dict[str, SoftHsm] = {}
    deps = CenterDeps(lambda: 1, platform, lambda tid: own.setdefault(tid, SoftHsm(bytes(range(1, 33)))))

    def center(cmd: Command) -> object:
        return handle(cmd, database.unit_of_work(CenterUnitOfWork), deps)

    center(AddMerchant("CITYMERCHANT001", "City bus company", "4111", "Xihu district", "ICBC"))
    center(AddMerchant("OTHERSHOP000001", "Other shop", "5411", "Xihu district", "BOC"))
    for tid, mid in (
        ("T0000001", "CITYMERCHANT001"),
        ("T0000002", "OTHERSHOP000001"),
        ("T0000003", "CITYMERCHANT001"),
    ):
        center(AddTerminal(tid, mid))

    def purchase(rid: str, terminal_id: str, merchant_id: str) -> AuthorizationResponse:
        req = request(pan, PURCHASE, 1_000, term.first_ac(1_000), rid)
        return banks.authorize(replace(req, terminal_id=terminal_id, merchant_id=merchant_id))

    before = ledger_snapshot(database)
    unknown = purchase("p-1", "T0000009", "CITYMERCHANT001")
    assert unknown.response_code == "58" and "terminal_unknown" in unknown.flags
    foreign = purchase("p-2", "T0000002", "CITYMERCHANT001")  # another merchant's terminal
    assert foreign.response_code == "03" and "terminal_merchant_mismatch" in foreign.flags
    center(CloseTerminal("T0000001"))
    closed = purchase("p-3", "T0000001", "CITYMERCHANT001")
    assert closed.response_code == "58" and "terminal_inactive" in closed.flags
    assert ledger_snapshot(database) == before  # nothing posted
    assert purchase("p-4", "T0000003", "CITYMERCHANT001").approved
    assert ledger_snapshot(database) != before
    center(CloseMerchant("CITYMERCHANT001"))  # closes its terminals
    assert purchase("p-5", "T0000003", "CITYMERCHANT001").response_code == "58"
