"""EC loads from another account (``ec_account_load``) in settlement's pure model: added to the twelve
items of tests/settlement/day.py, each moves exactly its amount from the payer bank's net position to the
EC card's bank's (nothing when both are one bank), changes no merchant, industry or fee, keeps the
positions summing to zero, and every bank's clearing-file effects add up to its position."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from citycard.settlement.fees import default_schedule
from citycard.settlement.files import _bank_effect
from citycard.settlement.model import ClearedItem, DayTotals

from tests.settlement.day import ITEMS, SUPERMARKET, T0

BANKS = ("ICBC", "BOC", "CCB")  # CCB: a bank whose only part in the day is paying or receiving loads


def load(n: int, issuer: str, payer: str, amount_fen: int) -> ClearedItem:
    return ClearedItem(
        n, "online", f"48020000-{n:012d}", "ec_account_load", -1, amount_fen, issuer, "ICBC", SUPERMARKET,
        "SHOP0001", "5411", "supermarket", "621226******0017", T0 + n, f"{n:012d}", payer_bank=payer,
    )  # fmt: skip


@given(
    st.lists(st.tuples(st.sampled_from(BANKS), st.sampled_from(BANKS), st.integers(1, 10**12)), max_size=20)
)
def test_each_load_moves_its_amount_from_the_payer_to_the_ec_cards_bank(
    loads: list[tuple[str, str, int]],
) -> None:
    schedule = default_schedule()
    base = DayTotals(schedule).add_all(ITEMS)
    items = ITEMS + [load(100 + k, issuer, payer, amount) for k, (issuer, payer, amount) in enumerate(loads)]
    totals = DayTotals(schedule)
    fees = [totals.add(i) for i in items]
    moved = dict.fromkeys(BANKS, 0)
    for issuer, payer, amount in loads:
        moved[issuer] += amount
        moved[payer] -= amount
    before = {p.participant: p.net_fen for p in base.positions()}
    after = {p.participant: p.net_fen for p in totals.positions()}
    assert sum(after.values()) == 0
    for bank in after.keys() | before.keys():
        assert after.get(bank, 0) - before.get(bank, 0) == moved.get(bank, 0), bank
    assert totals.merchants == base.merchants and totals.industries == base.industries
    assert totals.network_fee_fen == base.network_fee_fen
    assert all(f.discount_fen == f.issuer_fen == f.network_fen == 0 for f in fees[len(ITEMS) :])
    # the bank files: each bank's items' effects add up to its position
    for bank, net in after.items():
        if bank != "CENTER":
            assert sum(_bank_effect(bank, i, f) for i, f in zip(items, fees, strict=True)) == net, bank


def test_a_same_bank_load_moves_nothing() -> None:
    schedule = default_schedule()
    base = {p.participant: p for p in DayTotals(schedule).add_all(ITEMS).positions()}
    with_load = {
        p.participant: p
        for p in DayTotals(schedule).add_all([*ITEMS, load(100, "BOC", "BOC", 5_000)]).positions()
    }
    assert with_load == base
