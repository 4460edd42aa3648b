"""The vertical slice on SQLite and PostgreSQL: banks, products, issuance with HSM keys into a chip image,
online purchase and EC load whose ARQCs come from the emulated card, scripts the card accepts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from citycard.codec.tlv import encode
from citycard.db import Database
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import (
    ActivateCard,
    AuthorizationKind,
    AuthorizationRequest,
    Deposit,
    IssueCards,
    MalformedRequest,
    ReplaceCard,
)
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import BankAccount, DuplicateIssuance, InvalidIdNumber, NotFound

from tests.issuer.conftest import HOLDER_ID, ICBC_BIN, Clock, MemorySink, Terminal, ledger_snapshot

PSN = "01"


def issue_registered(service: IssuerService, bank: str = "ICBC", id_number: str = HOLDER_ID) -> str:
    (card,) = service.issue_cards(IssueCards(bank, "debit-ec", holder_name="Zhang San", id_number=id_number))
    service.activate(ActivateCard(card.pan))
    return card.pan


def request(pan: str, kind: AuthorizationKind, amount: int, field55: bytes, rid: str) -> AuthorizationRequest:
    return AuthorizationRequest(rid, kind, pan, PSN, amount, field55, stan="000001", terminal_id="T0000001")


def test_issue_registered_card(
    banks: IssuerService, database: Database, sink: MemorySink, hsm: SoftHsm
) -> None:
    pan = issue_registered(banks)
    assert pan.startswith(ICBC_BIN) and len(pan) == 19
    image = sink.images[pan]
    app = image.applications[0]
    assert app.data["5A"].hex().upper().rstrip("F") == pan
    # the card's UDK is the one the bank's HSM derives (not a demo key)
    assert app.udk_ac == hsm.derive_icc_key(hsm.get("icbc-imk-ac"), hsm.get("icbc-imk-ac").usage, pan, PSN)
    assert sink.records[pan]["pan_masked"].startswith(ICBC_BIN) and pan not in str(sink.records[pan])
    with database.unit_of_work() as uow:
        codes = sorted(a.code for a in uow.ledger.balances())
    assert codes.count(BankAccount.CARD_DEPOSIT) == 1 and codes.count(BankAccount.CARD_EC_FLOAT) == 1


def test_id_number_is_stored_hashed(banks: IssuerService, database: Database) -> None:
    issue_registered(banks)
    from sqlalchemy import text

    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT id_hash, id_last4 FROM issuer_cardholders")).all()
    assert len(rows) == 1 and rows[0][1] == "002X"
    assert HOLDER_ID not in rows[0][0] and len(rows[0][0]) == 64


def test_bulk_anonymous_issuance(banks: IssuerService, sink: MemorySink) -> None:
    seen: list[int] = []
    cards = banks.issue_cards(IssueCards("BOC", "anon-ec", count=3), progress=seen.append)
    assert len(cards) == 3 and sum(seen) == 3 and len({c.pan for c in cards}) == 3
    assert all(c.holder_id is None and c.deposit_account_id is None for c in cards)
    assert set(sink.images) == {c.pan for c in cards}


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (
            IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number="110105194912310021"),
            InvalidIdNumber,
        ),
        (
            IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number="11010519491331002X"),
            InvalidIdNumber,
        ),
        (  # GB 11643: born in 2030 (the check character is right)
            IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number="11010520300101001X"),
            InvalidIdNumber,
        ),
        (  # GB/T 2260: no region 999999 (the check character is right)
            IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number="999999194912310025"),
            InvalidIdNumber,
        ),
        (IssueCards("ICBC", "nothing"), NotFound),
        (IssueCards("CCB", "debit-ec"), NotFound),
        (IssueCards("ICBC", "debit-ec"), MalformedRequest),
        (IssueCards("ICBC", "anon-ec", holder_name="Li Si", id_number=HOLDER_ID), MalformedRequest),
    ],
)
def test_bad_issuance_posts_nothing(
    banks: IssuerService, database: Database, command: IssueCards, error: type[Exception]
) -> None:
    before = ledger_snapshot(database)
    with pytest.raises(error):
        banks.issue_cards(command)
    assert ledger_snapshot(database) == before


def test_duplicate_issuance_is_refused(banks: IssuerService, database: Database) -> None:
    issue_registered(banks)
    before = ledger_snapshot(database)
    with pytest.raises(DuplicateIssuance):
        issue_registered(banks)
    assert ledger_snapshot(database) == before
    issue_registered(banks, bank="BOC")  # another bank may issue to the same citizen


def test_purchase_and_ec_load_with_the_emulated_card(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = issue_registered(banks)
    assert banks.deposit(Deposit(pan, 50_000, "dep-1")) == 50_000
    term = terminal_for(pan)

    # purchase of 123.45 yuan against the deposit account
    f55 = term.first_ac(12_345, un=bytes.fromhex("01020304"))
    resp = banks.authorize(request(pan, AuthorizationKind.PURCHASE, 12_345, f55, "p-1"))
    assert resp.approved, resp.reason
    assert resp.balance_fen == 50_000 - 12_345
    cid, _ = term.complete(resp.field55, resp.arc)
    assert cid == 0x40  # the card accepted the ARPC and approved with a TC

    # EC load (圈存) of 200 yuan: deposit -> EC float, PUT DATA 9F79 script the card accepts
    term2 = terminal_for(pan)
    term2.card = term.card
    f55 = term2.first_ac(20_000, un=bytes.fromhex("05060708"), txn_type=0x60)
    resp = banks.authorize(request(pan, AuthorizationKind.EC_LOAD, 20_000, f55, "l-1"))
    assert resp.approved, resp.reason
    assert len(resp.scripts) == 1 and resp.scripts[0][:5] == bytes.fromhex("04DA9F790A")
    cid, sws = term2.complete(resp.field55, resp.arc)
    assert sws == [0x9000]
    assert term2.ec_balance() == 20_000
    assert resp.balance_fen == 50_000 - 12_345 - 20_000 and resp.ec_balance_fen == 20_000
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced


def test_insufficient_funds_declines_and_posts_nothing(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = issue_registered(banks)
    banks.deposit(Deposit(pan, 1_000, "dep-1"))
    term = terminal_for(pan)
    before = ledger_snapshot(database)
    resp = banks.authorize(request(pan, AuthorizationKind.PURCHASE, 5_000, term.first_ac(5_000), "p-1"))
    assert resp.response_code == "51" and resp.arpc  # declined, but the card can still authenticate us
    assert ledger_snapshot(database) == before
    cid, _ = term.complete(resp.field55, resp.arc)
    assert cid == 0x00  # AAC


def test_issue_fee_is_paid_at_the_counter(banks: IssuerService, database: Database) -> None:
    from citycard.issuer.commands import AddProduct

    banks.add_product(
        AddProduct("ICBC", "fee-ec", "EC card with a fee", ICBC_BIN, registered=False, issue_fee_fen=2_000)
    )
    banks.issue_cards(IssueCards("ICBC", "fee-ec", count=2))
    with database.unit_of_work() as uow:
        fees = [a for a in uow.ledger.balances() if a.code == BankAccount.FEE_INCOME and a.credits_posted]
        assert [a.credit_balance_fen for a in fees] == [4_000] and uow.ledger.totals().balanced


def test_chinese_name_is_kept_by_the_issuer_and_embossed_in_ascii(
    banks: IssuerService, database: Database, sink: MemorySink
) -> None:
    (card,) = banks.issue_cards(IssueCards("ICBC", "debit-ec", holder_name="张三", id_number=HOLDER_ID))
    assert sink.images[card.pan].applications[0].data["5F20"] == b"CITIZEN CARDHOLDER"
    from sqlalchemy import text

    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM issuer_cardholders")).scalar_one() == "张三"


@pytest.mark.parametrize("cash", [False, True], ids=["account", "cash"])
@pytest.mark.parametrize(
    ("script_result", "reversed_"), [(None, True), (0x20, False), (0x10, True), (0x00, True)]
)
def test_ec_load_reversal_respects_the_cards_script_result(
    banks: IssuerService,
    database: Database,
    terminal_for: Callable[[str], Terminal],
    script_result: int | None,
    reversed_: bool,
    cash: bool,
) -> None:
    """A reversal whose 9F5B says the card ran the PUT DATA 9F79 (0x2-) leaves the load standing: the card
    holds the money. Failed (0x1-), not performed (0x0-), or no 9F5B at all (the card was torn away before
    the script): the load is reversed, back to the account — or, a cash load (0200 630000, whose value
    reaches the chip by the same script), back from the EC float to the counter's cash."""
    pan = issue_registered(banks)
    source = BankAccount.CASH if cash else BankAccount.CARD_DEPOSIT
    if not cash:
        banks.deposit(Deposit(pan, 10_000, "dep-1"))
    term = terminal_for(pan)
    kind = AuthorizationKind.EC_CASH_LOAD if cash else AuthorizationKind.EC_LOAD
    f55 = term.first_ac(3_000, txn_type=0x63 if cash else 0x60)
    answer = banks.authorize(request(pan, kind, 3_000, f55, "l-1"))
    assert answer.approved
    if script_result == 0x20:
        _, sws = term.complete(answer.field55, answer.arc)
        assert sws == [0x9000] and term.ec_balance() == 3_000
    after_load = ledger_snapshot(database)
    results = b"" if script_result is None else encode("9F5B", bytes((script_result,)) + bytes(4))
    reversal = AuthorizationRequest(
        "r-1", AuthorizationKind.REVERSAL, pan, PSN, 3_000, results, original_request_id="l-1",
        terminal_id="T0000001",
    )  # fmt: skip
    answer = banks.authorize(reversal)
    assert answer.approved
    codes = {source: 0, BankAccount.CARD_EC_FLOAT: 0}  # summed over the banks (each has counter cash)
    with database.unit_of_work() as uow:
        for a in uow.ledger.balances():
            if a.code in codes:
                codes[a.code] += a.credit_balance_fen
    before = 0 if cash else 10_000  # counter cash is debit-normal: its credit balance falls as cash comes in
    if reversed_:
        assert codes == {source: before, BankAccount.CARD_EC_FLOAT: 0}
        assert term.ec_balance() == 0  # the card never took the load either
    else:
        assert "nothing reversed" in answer.reason and ledger_snapshot(database) == after_load
        assert codes == {source: before - 3_000, BankAccount.CARD_EC_FLOAT: 3_000}
        assert term.ec_balance() == 3_000
    bad = AuthorizationRequest(
        "r-2", AuthorizationKind.REVERSAL, pan, PSN, 0, b"\x9f", original_request_id="l-1",
        terminal_id="T0000001",
    )  # fmt: skip
    assert banks.authorize(bad).response_code == ("00" if reversed_ else "30")  # reversed already / not TLV


def test_bureau_record_carries_card_keys_under_the_bureau_kek(
    banks: IssuerService, database: Database, hsm: SoftHsm, sink: MemorySink, certify_issuer: object
) -> None:
    from citycard.db.issuer_repositories import IssuerUnitOfWork
    from citycard.hsm.api import Algorithm, KeyUsage
    from citycard.hsm.keyblock import unwrap
    from citycard.issuer.personalisation import ChipPersonaliser

    kek = bytes(range(7, 39))
    hsm.import_components("bureau-kek", KeyUsage.KEK, [kek], algorithm=Algorithm.AES)
    (card,) = banks.issue_cards(IssueCards("ICBC", "anon-ec"))
    bureau = ChipPersonaliser(hsm, certify_issuer, MemorySink(), bureau_kek="bureau-kek")  # type: ignore[arg-type]
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        bank, product = uow.banks.get("ICBC"), uow.products.get("ICBC", "anon-ec")
    assert bank is not None and product is not None
    bureau.personalise(bank, product, card, None)
    bureau.publish()
    record = bureau.sink.records[card.pan]  # type: ignore[attr-defined]
    header, udk = unwrap(kek, record["key_blocks"]["udk_ac"])
    assert header.usage == "E0" and header.exportability == "E"
    assert udk == bureau.sink.images[card.pan].applications[0].udk_ac  # type: ignore[attr-defined]
    assert record["bureau_kek"]["kcv"] == hsm.get("bureau-kek").kcv


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("where", ["progress", "replace"])
def test_failed_issuance_leaves_no_card_image_files(
    banks: IssuerService,
    database: Database,
    hsm: SoftHsm,
    clock: Clock,
    certify_issuer: object,
    tmp_path: Path,
    where: str,
) -> None:
    """Issuance is all or nothing for the files too: images reach the directory only after the commit."""
    from citycard.bootstrap import DirectorySink
    from citycard.db.issuer_repositories import IssuerUnitOfWork
    from citycard.issuer.personalisation import ChipPersonaliser

    home = tmp_path / "home"
    files = ChipPersonaliser(hsm, certify_issuer, DirectorySink(home))  # type: ignore[arg-type]
    service = IssuerService(
        lambda: database.unit_of_work(IssuerUnitOfWork, clock=clock),
        hsm,
        clock,
        personaliser=files,
    )
    before = ledger_snapshot(database)
    if where == "progress":  # interrupted after three cards were personalised (Ctrl-C during a bulk run)
        seen: list[int] = []

        def progress(n: int) -> None:
            seen.append(n)
            if len(seen) == 3:
                raise _Interrupted

        with pytest.raises(_Interrupted):
            service.issue_cards(IssueCards("BOC", "anon-ec", count=5), progress=progress)
    else:  # the replacement's transaction fails after its image was made
        pan = issue_registered(service)
        before = ledger_snapshot(database)
        images = sorted(p.name for p in (home / "cards").rglob("*.json"))
        assert images == [f"{pan}.json"]
        original = service._uow

        def failing_uow() -> IssuerUnitOfWork:
            uow = original()

            def commit() -> None:
                raise _Interrupted

            uow.commit = commit  # type: ignore[method-assign]
            return uow  # type: ignore[return-value]

        service._uow = failing_uow
        with pytest.raises(_Interrupted):
            service.replace_card(ReplaceCard(pan))
        assert sorted(p.name for p in (home / "cards").rglob("*.json")) == images
        assert len((home / "perso" / "ICBC.jsonl").read_text().splitlines()) == 1
        service._uow = original
    assert ledger_snapshot(database) == before
    if where == "progress":
        assert not (home / "cards").exists() or not any((home / "cards").rglob("*.json"))
        assert not (home / "perso").exists()
        with database.unit_of_work(IssuerUnitOfWork) as uow:
            assert uow.cards.list("BOC") == []
    (card,) = service.issue_cards(IssueCards("BOC", "anon-ec"))  # the next issuance stores only its own
    assert (home / "cards" / "BOC" / card.pan[-4:-1] / f"{card.pan}.json").exists()
    assert len((home / "perso" / "BOC.jsonl").read_text().splitlines()) == 1
