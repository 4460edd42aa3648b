"""Random sequences of EC loads (from the account or in cash, whole or torn after the card's TC: before the
issuer's PUT DATA reached the chip, or after it ran with its answer lost), online purchases, balance
inquiries, the terminal killed in the middle of an online purchase or load (its journal opened again by
the next process), hours passing between taps (past the hour in which a purchase's tap still reads the
load log), and the terminal's batch settled (a load's held reversal then goes into a closed batch), at one
terminal through the whole chain (acquirer, switch, issuer front end,
``IssuerService`` on loopback sockets). Whatever the order of the tears, once the card's next load has been
tapped and the queue flushed, the books end where the chip is: the issuer's EC float equals the chip's
balance, the deposit account paid exactly the account loads the chip holds and the purchases, no torn load
or held reversal is left, and the ledger balances. Money is neither lost nor made by a tear or a kill,
whichever tap settles it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pos.chain import PIN, chain
from tests.pos.test_online import Killed, World, _balanced, _eventually, _killed_at, _put_data_lost, _restart

FAULTS = (None, "never sent", "answer lost")


@dataclass(frozen=True)
class Load:
    cash: bool
    fault: str | None


@dataclass(frozen=True)
class Purchase:
    extra_fen: int  # above the chip's EC balance: online, with the PIN; an example's purchases come to at
    # most 6 x (7.00 + 3.00) of the chain card's 500.00 on deposit


@dataclass(frozen=True)
class Balance:
    pass


@dataclass(frozen=True)
class Kill:
    load: bool  # else a purchase, online
    after_tc: bool  # a load: at its PUT DATA, after the card's TC; else at the second GENERATE AC


@dataclass(frozen=True)
class Later:
    pass  # the terminal's clock two hours on: past the hour of torn recovery at a purchase's tap


@dataclass(frozen=True)
class Settle:
    pass  # the terminal's batch settlement: balanced (loads are not in its totals), the next batch begins


Step = Load | Purchase | Balance | Kill | Later | Settle


STEPS = st.lists(
    st.one_of(
        st.builds(Load, st.booleans(), st.sampled_from(FAULTS)),
        st.builds(Purchase, st.integers(1, 300)),
        st.just(Balance()),
        st.builds(Kill, st.booleans(), st.booleans()),
        st.just(Later()),
        st.just(Settle()),
    ),
    min_size=1,
    max_size=6,
)


@contextmanager
def _world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A chain of its own for each example (about half a second): a failing example shrinks on clean books."""
    tmp = tmp_path_factory.mktemp("torn")
    with pytest.MonkeyPatch.context() as monkeypatch, chain(tmp / "home", monkeypatch) as net:
        yield World(net, tmp)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_tears_settled_by_any_tap_leave_the_books_where_the_chip_is(
    tmp_path_factory: pytest.TempPathFactory, steps: list[Step]
) -> None:
    with _world(tmp_path_factory) as world:
        _run(world, steps)


def _run(world: World, steps: list[Step]) -> None:
    start = world.net.status()
    with world.client() as client:
        chip = world.chip_ec(world.pos(client))
    assert chip == start["ec_balance_fen"]
    account_loaded = spent = 0
    amount = 100  # each load its own amount: a retried amount is "already loaded" by design
    later = timedelta(0)
    for step in steps:
        amount += 1
        killed = False
        if isinstance(step, Later):
            later += timedelta(hours=2)
            continue
        with world.client() as client:  # a terminal's contact; after a kill, the next process's
            pos = world.pos(client, later=later)
            if isinstance(step, Load):
                tap = world.tap() if step.fault is None else _put_data_lost(world, step.fault)
                result = pos.load(tap, amount, pin=lambda _: PIN, cash=step.cash)
                assert result.entry is not None and result.entry.funding == (
                    "cash" if step.cash else "account"
                )
                assert result.approved == (step.fault is None)
                if step.fault != "never sent":  # the chip took it (whole, or its answer lost)
                    chip += amount
                    account_loaded += 0 if step.cash else amount
            elif isinstance(step, Purchase):
                fen = chip + step.extra_fen
                result = pos.purchase(world.tap(), fen, pin=lambda _: PIN)
                assert result.approved and result.outcome.kind.value == "approved online", result.outcome
                spent += fen
            elif isinstance(step, Kill):  # the terminal killed mid-transaction: reversed, or left to the log
                tap = _killed_at(world, "script" if step.load and step.after_tc else "second GENERATE AC")
                with pytest.raises(Killed):
                    if step.load:
                        pos.load(tap, amount, pin=lambda _: PIN)
                    else:
                        pos.purchase(tap, chip + 100, pin=lambda _: PIN)
                killed = True
            elif isinstance(step, Settle):
                settled = client.settle()
                assert settled.response_code == "00", settled
            else:
                assert pos.balance_inquiry(world.tap(), pin=lambda _: PIN).approved
            if not killed:
                assert world.chip_ec(pos) == chip
        if killed:
            _restart(world)
    with world.client() as client:
        pos = world.pos(client, later=later + timedelta(hours=2))  # past the hour: a load settles them all
        amount += 1
        assert pos.load(world.tap(), amount, pin=lambda _: PIN).approved  # settles what is still torn
        chip += amount
        account_loaded += amount
        assert world.chip_ec(pos) == chip
        flushed = client.flush()
        assert (flushed.pending, flushed.held) == (0, 0), flushed
    assert not [e for e in world.journal.entries("torn", 1000) if e.kind == "ec_load"]
    assert world.journal.advices(pending=False) == [] or all(
        a.response_code or a.hold == "dropped" for a in world.journal.advices(pending=False)
    )
    _eventually(lambda: world.net.status()["ec_balance_fen"] == chip)
    end = world.net.status()
    assert end["deposit_available_fen"] == start["deposit_available_fen"] - account_loaded - spent
    assert _balanced(world)
