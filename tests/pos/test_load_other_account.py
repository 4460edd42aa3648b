"""EC load from another (non-designated) account, 非指定账户圈存 (0200 620000/91/47), through the whole chain
on loopback sockets (``tests/pos/chain.py``): the terminal sends the other account's card number and PIN
(2, 52) with the EC card's chip data (55, with its PAN in 5A); the switch sends the debit leg to that
account's bank and then the card leg to the EC card's bank (``citycard.switch.split_other_account_load``).
Same bank and across banks; a wrong PIN and too little money decline with nothing moved; a card leg that
declines after the debit posted, and an answer lost on the way to the terminal, are reversed at both banks
and everything nets to zero."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citycard.issuer.commands import ActivateCard, Deposit, IssueCards, SetPin
from citycard.issuer.views import card_status, transfer_kind

from tests.pos.chain import PIN, chain
from tests.pos.proxy import drop
from tests.pos.test_online import World, _balanced, _eventually

OTHER_PIN = "654321"


def _account_card(world: World, bank: str, deposit_fen: int) -> str:
    """A registered, active card of ``bank`` with ``OTHER_PIN`` and ``deposit_fen`` on deposit."""
    service, hsm = world.net.issuer.service, world.net.issuer.hsm
    (card,) = service.issue_cards(
        IssueCards(bank, "debit-ec", holder_name="Wang Fang", id_number="110105198001010024")
    )
    service.activate(ActivateCard(card.pan))
    service.set_pin(SetPin(card.pan, hsm.encrypt_pin(hsm.get(f"{bank.lower()}-zpk"), OTHER_PIN, card.pan)))
    if deposit_fen:
        service.deposit(Deposit(card.pan, deposit_fen, f"dep-{card.pan}"))
    return card.pan


def _status(world: World, pan: str) -> dict[str, Any]:
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        return card_status(uow, pan)


def _saf_empty(world: World) -> bool:
    return bool(world.net.servers["acquirer"].queued() == 0)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with chain(tmp_path / "home", monkeypatch, more_banks={"BOC": "621661"}) as net:
        yield World(net, tmp_path)


@pytest.mark.parametrize("bank", ["ICBC", "BOC"])
def test_a_load_from_another_account_moves_that_account_the_ec_float_and_the_chip(
    world: World, bank: str
) -> None:
    other = _account_card(world, bank, 30_000)
    before, other_before = world.net.status(), _status(world, other)
    with world.client() as client:
        pos = world.pos(client)
        chip_before = world.chip_ec(pos)
        result = pos.load(world.tap(), 12_000, pin=lambda _: PIN, from_account=(other, OTHER_PIN))
        assert result.approved, result.outcome.reason
        assert world.chip_ec(pos) == chip_before + 12_000
    after, other_after = world.net.status(), _status(world, other)
    assert after["ec_balance_fen"] == before["ec_balance_fen"] + 12_000
    assert after["deposit_available_fen"] == before["deposit_available_fen"]  # the card's own account
    assert other_after["deposit_available_fen"] == other_before["deposit_available_fen"] - 12_000
    assert other_after["ec_balance_fen"] == other_before["ec_balance_fen"]
    assert _balanced(world)
    assert _kinds(world, other)[-1] == "ec_load_of_another_card"  # not shown as a purchase
    assert _kinds(world, world.net.pan)[-1] == "ec_load_from_another_account"


def _kinds(world: World, pan: str) -> list[str]:
    """What the books call the transfers on ``pan``'s accounts, oldest first."""
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan)
        assert card is not None
        ids = [card.ec_float_account_id, *([card.deposit_account_id] if card.deposit_account_id else [])]
        transfers = sorted(uow.books.journal(account_ids=ids, limit=100), key=lambda t: t.timestamp_ns)
        owners = uow.books.owners(i for t in transfers for i in (t.debit_account_id, t.credit_account_id))
        return [
            transfer_kind(t, owners.get(t.debit_account_id), owners.get(t.credit_account_id))
            for t in transfers
        ]


def test_the_message_carries_the_account_in_2_and_52_and_the_ec_card_in_55(world: World) -> None:
    other = _account_card(world, "BOC", 30_000)
    with world.client() as client:
        result = world.pos(client).load(
            world.tap(), 1_000, pin=lambda _: PIN, from_account=(other, OTHER_PIN)
        )
        assert result.approved and result.entry is not None
        answer = client.answers[result.entry.txn_id]
    assert answer.processing_code == "620000" and answer.pan == other
    assert answer.icc is not None and answer.icc.get("91") is not None  # the EC card's issuer's ARPC


@pytest.mark.parametrize("bank", ["ICBC", "BOC"])
def test_a_wrong_pin_of_the_other_account_declines_and_moves_nothing(world: World, bank: str) -> None:
    other = _account_card(world, bank, 30_000)
    before, other_before = world.net.status(), _status(world, other)
    with world.client() as client:
        pos = world.pos(client)
        chip_before = world.chip_ec(pos)
        result = pos.load(world.tap(), 5_000, pin=lambda _: PIN, from_account=(other, "111111"))
        assert not result.approved and result.entry is not None
        assert client.answers[result.entry.txn_id].response_code == "55"
        assert world.chip_ec(pos) == chip_before
    _eventually(lambda: _saf_empty(world))  # the acquirer reverses a declined load: nothing to give back
    other_after = _status(world, other)
    assert other_after["deposit_available_fen"] == other_before["deposit_available_fen"]
    assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"]
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(other)
        assert card is not None and card.online_pin_failures == 1
    assert _balanced(world)


def test_too_little_money_on_the_other_account_is_51_and_moves_nothing(world: World) -> None:
    other = _account_card(world, "BOC", 3_000)
    before = world.net.status()
    with world.client() as client:
        result = world.pos(client).load(
            world.tap(), 5_000, pin=lambda _: PIN, from_account=(other, OTHER_PIN)
        )
        assert not result.approved and result.entry is not None
        assert client.answers[result.entry.txn_id].response_code == "51"
    assert _status(world, other)["deposit_available_fen"] == 3_000
    assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"]
    assert _balanced(world)


def test_a_card_leg_declined_after_the_debit_posted_is_reversed_at_the_other_bank(world: World) -> None:
    """The EC card's bank refuses (61: over the EC balance limit of 1000.00 yuan) after the other bank
    debited its account: the acquirer reverses the load, the switch sends the reversal to both legs, and
    the other account is whole again."""
    other = _account_card(world, "BOC", 200_000)
    before = world.net.status()
    with world.client() as client:
        result = world.pos(client).load(
            world.tap(), 150_000, pin=lambda _: PIN, from_account=(other, OTHER_PIN)
        )
        assert not result.approved and result.entry is not None
        assert client.answers[result.entry.txn_id].response_code == "61"
    _eventually(lambda: _status(world, other)["deposit_available_fen"] == 200_000)
    # the other bank applies the reversal before its answer reaches the acquirer, which then forgets it
    _eventually(lambda: _saf_empty(world))
    # it was posted at the other bank and then reversed there (not merely never posted)
    assert _kinds(world, other)[-2:] == ["ec_load_of_another_card", "ec_load_of_another_card_reversal"]
    assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"]
    assert _balanced(world)


@pytest.mark.parametrize("bank", ["ICBC", "BOC"])
def test_an_answer_lost_on_the_way_is_reversed_at_both_banks_and_nets_to_zero(
    world: World, bank: str
) -> None:
    other = _account_card(world, bank, 30_000)
    before = world.net.status()
    with world.proxy() as proxy:
        proxy.answers.append(drop)  # both legs are posted; the answer never reaches the terminal
        with world.client(proxy.port, timeout_s=2.0) as client:
            pos = world.pos(client)
            result = pos.load(world.tap(), 10_000, pin=lambda _: PIN, from_account=(other, OTHER_PIN))
        assert not result.approved and result.entry is not None
        (queued,) = world.journal.advices()
        assert queued.reason == "98" and queued.txn_id == result.entry.txn_id
        assert _status(world, other)["deposit_available_fen"] == 20_000  # posted at the other bank
        assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + 10_000  # and the float
    with world.client() as client:
        assert client.flush().pending == 0
    _eventually(lambda: _status(world, other)["deposit_available_fen"] == 30_000)
    _eventually(lambda: world.net.status()["ec_balance_fen"] == before["ec_balance_fen"])
    _eventually(lambda: _saf_empty(world))
    assert _balanced(world)
    assert _kinds(world, other)[-2:] == ["ec_load_of_another_card", "ec_load_of_another_card_reversal"]


def test_pos_load_from_account_on_the_command_line(world: World) -> None:
    from typer.testing import CliRunner

    from citycard.cli import app

    other = _account_card(world, "BOC", 30_000)
    before = world.net.status()
    args = ["pos", "load", "--card", world.net.pan, "--amount", "20", "--pin", PIN, "--from-account", other]
    r = CliRunner().invoke(app, [*args, "--from-pin", OTHER_PIN])
    assert r.exit_code == 0 and "APPROVED ONLINE" in r.output and "OTHER ACCOUNT" in r.output, r.output
    assert world.net.status()["ec_balance_fen"] == before["ec_balance_fen"] + 2_000
    assert _status(world, other)["deposit_available_fen"] == 28_000


def test_clearing_and_settlement_move_a_cross_bank_load_between_the_banks(world: World) -> None:
    """Through the whole chain, then ``citycard clearing run`` (which settles): a BOC account loading the
    ICBC card is one ``ec_account_load`` item; BOC's position falls by it and ICBC's rises; an ICBC account
    loading the same card moves nothing between banks; a load whose card leg declined (reversed at BOC) is
    not cleared. The acquirer captured the two loads: the reconciliation has no difference."""
    import csv
    import datetime as dt
    import json

    from typer.testing import CliRunner

    from citycard.clearing import BEIJING
    from citycard.cli import app

    day = dt.datetime.now(BEIJING).date()
    boc, icbc = _account_card(world, "BOC", 200_000), _account_card(world, "ICBC", 30_000)
    with world.client() as client:
        pos = world.pos(client)
        for other, amount in ((boc, 12_000), (icbc, 3_000)):
            result = pos.load(world.tap(), amount, pin=lambda _: PIN, from_account=(other, OTHER_PIN))
            assert result.approved, result.outcome.reason
        declined = pos.load(world.tap(), 150_000, pin=lambda _: PIN, from_account=(boc, OTHER_PIN))
        assert not declined.approved
    _eventually(lambda: _status(world, boc)["deposit_available_fen"] == 200_000 - 12_000)
    _eventually(lambda: _saf_empty(world))
    if dt.datetime.now(BEIJING).date() != day:
        pytest.skip("the loads straddle Beijing midnight: two business days")
    r = CliRunner().invoke(app, ["clearing", "run", "--date", day.isoformat(), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["by_kind"] == {"ec_account_load": {"count": 2, "amount_fen": -15_000}}
    assert summary["exceptions"] == {}
    folder = world.net.home / "settlement" / day.strftime("%Y%m%d")
    with (folder / "bank-BOC.csv").open(newline="") as fh:
        (row,) = [r for r in csv.reader(fh) if r[0] == "D"]
    role, pan, amount, effect = row[1], row[9], int(row[16]), int(row[-1])
    assert (role, amount, effect) == ("P", -12_000, -12_000)
    assert pan == world.net.pan[:6] + "*" * (len(world.net.pan) - 10) + world.net.pan[-4:]  # the EC card
    with (folder / "positions.csv").open(newline="") as fh:
        net = {row[1]: int(row[-1]) for row in csv.reader(fh) if row[0] == "D"}
    assert net == {"BOC": -12_000, "ICBC": 12_000, "CENTER": 0}
    reconciliation = (folder / "reconciliation.csv").read_text()
    assert "captured-cleared" not in reconciliation
    assert "D,captured,online/ICBC,2,15000," in reconciliation
    assert _balanced(world)
    for bank, fen in (("BOC", -12_000), ("ICBC", 12_000)):  # each bank's own report
        args = ["settlement", "report", "--date", day.isoformat(), "--bank", bank, "--json"]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        report = json.loads(r.output)
        (position,) = report["positions"]
        assert (position["participant"], position["net_fen"], position["issued_gross_fen"]) == (
            bank,
            fen,
            -fen,
        )
        # BOC's reconciliation has its account's load, made at ICBC's merchant: ICBC's acquirer captured it
        differences = [
            (d["bank"], d["amount_fen"], d["reason"]) for d in report["reconciliation"]["differences"]
        ]
        if bank == "ICBC":
            assert differences == []
        else:
            ((of, amount, reason),) = differences
            assert (of, amount) == ("ICBC", 12_000)
            assert reason.startswith(
                "cleared today, an EC load from another account (its account paid) at a "
            )
            assert reason.endswith("captured by that bank's acquirer, not this bank's")
