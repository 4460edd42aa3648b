"""``citycard demo`` — the main job of ``make run`` — takes a bank's registered card through the real network
(acquirer, switch, issuer front end, started in-process) and leaves the chip and the bank's books exactly as
its steps made them; a second run in the same home works too."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from citycard import bootstrap
from citycard.chip.card import Card
from citycard.cli import app
from citycard.cli.demo import BANK, holder_id_number
from citycard.codec.money import amount_from_bcd
from citycard.codec.tlv import decode_dict
from citycard.config import settings
from citycard.db.acquirer_repositories import AcquirerUnitOfWork
from citycard.files import card_image_path, load_card
from citycard.issuer.views import CardSearch, find_cards

pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(autouse=True)
def _sqlite_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CITYCARD_DATABASE_URL", raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))


def chip_ec_balance(home: Path, pan: str) -> int:
    card = Card(load_card(card_image_path(home / "cards", BANK, pan)), lambda n: bytes(n))
    card.power_on("contact")
    assert card.transmit(bytes.fromhex("00A4040008A00000033301010100"))[-2:] == b"\x90\x00"
    return amount_from_bcd(decode_dict(card.transmit(bytes.fromhex("80CA9F7900"))[:-2])["9F79"])


def books(pan: str) -> tuple[int, int, int]:
    """The card's deposit and EC float balances at the issuer, and the offline records the acquirer holds."""
    s = settings()
    with bootstrap.open_issuer(s) as issuer, issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan)
        assert (
            card is not None and card.deposit_account_id is not None and card.ec_float_account_id is not None
        )
        deposit, ec = uow.ledger.lookup_accounts([card.deposit_account_id, card.ec_float_account_id])
        with issuer.database.unit_of_work(AcquirerUnitOfWork, read_only=True) as auow:
            uploads = auow.uploads.count()
    return deposit.credit_balance_fen, ec.credit_balance_fen, uploads


def ec_float_fen(pan: str) -> int:
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan)
        assert card is not None and card.deposit_account_id is None  # anonymous: no account
        (ec,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
    return ec.credit_balance_fen


def newest_pan() -> str:
    search = CardSearch(bank_code=BANK)
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        total = find_cards(uow, issuer.hsm, search, limit=1).total
        (card,) = find_cards(uow, issuer.hsm, search, limit=1, offset=total - 1).cards
    return card.pan


def pan_of(serial: int) -> str:
    search = CardSearch(bank_code=BANK, id_number=holder_id_number(serial))
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        (card,) = find_cards(uow, issuer.hsm, search, limit=1).cards
    return card.pan


def test_demo_goes_online_and_offline_and_the_chip_and_books_agree(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for marker in (
        "signed on to 127.0.0.1:",
        "EC LOAD",
        "APPROVED ONLINE",
        "GENERATE AC 1",
        "APPROVED OFFLINE",
        "GO  fare CNY 2.00",
        "account balance: CNY 200.00 available",
        "uploaded 1 offline purchase(s)",
        "load log",
        "ICBC totals:",
        "balanced",
    ):
        assert marker in result.output, marker
    assert result.output.count("uploaded 1 offline purchase(s)") == 2  # the shop's purchase, the bus fare
    pan = pan_of(0)
    # the chip: 100.00 loaded online − 12.50 offline purchase − 2.00 fare
    assert chip_ec_balance(tmp_path, pan) == 8_550
    deposit, ec_float, uploads = books(pan)
    assert deposit == 50_000 - 10_000 - 20_000  # deposited, the EC load, the online purchase
    assert ec_float == 10_000  # the offline purchases leave the float at clearing (issue 9), not before
    assert uploads == 2  # the purchase and the fare, stored by the acquirer for clearing
    anonymous = newest_pan()
    assert anonymous != pan
    assert chip_ec_balance(tmp_path, anonymous) == 5_000  # loaded in cash online
    assert ec_float_fen(anonymous) == 5_000


def test_demo_runs_again_in_the_same_home_with_a_new_card(tmp_path: Path) -> None:
    """``make run`` twice: the bank, merchants and terminals are kept; a new holder gets a new card."""
    for _ in range(2):
        result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert "APPROVED OFFLINE" in result.output and "exists already" not in result.output
    assert "kept from an earlier demo" in result.output
    first, second = pan_of(0), pan_of(2)  # each run issues two cards: the holder serial is the count so far
    assert first != second
    assert chip_ec_balance(tmp_path, second) == 8_550
    assert books(second) == (20_000, 10_000, 4)
    assert books(first)[:2] == (20_000, 10_000)  # the second run left the first card alone
