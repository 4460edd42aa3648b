"""Random sequences of EC loads (from the account or in cash, whole or torn after the card's TC: before the
issuer's PUT DATA reached the chip, or after it ran with its answer lost), online purchases and balance
inquiries, at one terminal through the whole chain (acquirer, switch, issuer front end, ``IssuerService``
on loopback sockets). Whatever the order of the tears, once the card's next load has been tapped and the
queue flushed, the books end where the chip is: the issuer's EC float equals the chip's balance, the deposit
account paid exactly the account loads the chip holds and the purchases, no torn load or held reversal is
left, and the ledger balances. Money is neither lost nor made by a tear, whichever tap settles it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pos.chain import PIN, chain
from tests.pos.test_online import World, _balanced, _eventually, _put_data_lost

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


STEPS = st.lists(
    st.one_of(
        st.builds(Load, st.booleans(), st.sampled_from(FAULTS)),
        st.builds(Purchase, st.integers(1, 300)),
        st.just(Balance()),
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
    tmp_path_factory: pytest.TempPathFactory, steps: list[Load | Purchase | Balance]
) -> None:
    with _world(tmp_path_factory) as world:
        _run(world, steps)


def _run(world: World, steps: list[Load | Purchase | Balance]) -> None:
    start = world.net.status()
    with world.client() as client:
        pos = world.pos(client)
        chip = world.chip_ec(pos)
        assert chip == start["ec_balance_fen"]
        account_loaded = spent = 0
        amount = 100  # each load its own amount: a retried amount is "already loaded" by design

        def load(tap: Callable[[bytes], bytes], cash: bool) -> bool:
            nonlocal amount
            amount += 1
            result = pos.load(tap, amount, pin=lambda _: PIN, cash=cash)
            assert result.entry is not None and result.entry.funding == ("cash" if cash else "account")
            return result.approved

        for step in steps:
            if isinstance(step, Load):
                tap = world.tap() if step.fault is None else _put_data_lost(world, step.fault)
                approved = load(tap, step.cash)
                assert approved == (step.fault is None)
                if step.fault != "never sent":  # the chip took it (whole, or its answer lost)
                    chip += amount
                    account_loaded += 0 if step.cash else amount
            elif isinstance(step, Purchase):
                fen = chip + step.extra_fen
                result = pos.purchase(world.tap(), fen, pin=lambda _: PIN)
                assert result.approved and result.outcome.kind.value == "approved online", result.outcome
                spent += fen
            else:
                assert pos.balance_inquiry(world.tap(), pin=lambda _: PIN).approved
            assert world.chip_ec(pos) == chip
        assert load(world.tap(), cash=False)  # the card's next load settles what is still torn
        chip += amount
        account_loaded += amount
        assert world.chip_ec(pos) == chip
        flushed = client.flush()
        assert (flushed.pending, flushed.held) == (0, 0), flushed
    assert not [e for e in world.journal.entries("torn", 1000) if e.kind == "ec_load"]
    _eventually(lambda: world.net.status()["ec_balance_fen"] == chip)
    end = world.net.status()
    assert end["deposit_available_fen"] == start["deposit_available_fen"] - account_loaded - spent
    assert _balanced(world)
