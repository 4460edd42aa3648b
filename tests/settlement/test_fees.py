"""The fee schedule: validation, the industries are the center's, and the cumulative half-up rounding whose
shares are never negative and always add up to the discount, to the fen."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.center.model import Industry
from citycard.settlement.fees import (
    INDUSTRIES,
    MAX_RATE_PPM,
    FeeSchedule,
    FeeScheduleError,
    Rates,
    default_schedule,
    parse_schedule,
    schedule_toml,
)


def test_the_industries_are_the_centers() -> None:
    assert set(INDUSTRIES) == {i.value for i in Industry}
    assert {name for name, _ in default_schedule().industries} == set(INDUSTRIES)


def test_the_schedule_round_trips_through_its_canonical_text() -> None:
    schedule = default_schedule()
    assert parse_schedule(schedule_toml(schedule)) == schedule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default", "not TOML"),
        ("", "default: is required"),
        ("[default]\ndiscount_ppm = 10\nissuer_ppm = 1\n", "default.network_ppm: is required"),
        (
            "[default]\ndiscount_ppm = 0.6\nissuer_ppm = 0\nnetwork_ppm = 0\n",
            "default.discount_ppm: 0.6 is not",
        ),
        (
            "[default]\ndiscount_ppm = 200000\nissuer_ppm = 0\nnetwork_ppm = 0\n",
            "default.discount_ppm: 200000",
        ),
        ("[default]\ndiscount_ppm = -1\nissuer_ppm = 0\nnetwork_ppm = 0\n", "default.discount_ppm: -1"),
        ("[default]\ndiscount_ppm = true\nissuer_ppm = 0\nnetwork_ppm = 0\n", "default.discount_ppm: True"),
        (
            "[default]\ndiscount_ppm = 1\nissuer_ppm = 1\nnetwork_ppm = 1\n",
            "acquirer's share would be negative",
        ),
        (
            "[default]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0\nmdr = 3\n",
            "default.mdr: unknown key",
        ),
        (
            "[default]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0\n[industry.casino]\n",
            "industry.casino: not one of the industries",
        ),
        ("[default]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0\n[other]\n", "other: unknown table"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(FeeScheduleError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_schedule(text)


def test_half_up_rounding_by_hand() -> None:
    schedule = default_schedule()
    # 25050 fen at a restaurant: 0.35 % = 87.675 -> 88; 0.3825 % = 95.816 -> 96; 0.60 % = 150.3 -> 150
    assert schedule.fees("purchase", 1, 25050, "catering") == (
        f := schedule.fees("purchase", 1, 25050, "catering")
    )
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (150, 88, 8, 54)
    # 5000 fen refunded: 0.35 % = 17.5 -> 18 (half up); the fees come back with the sign
    r = schedule.fees("refund", -1, 5000, "catering")
    assert (r.discount_fen, r.issuer_fen, r.network_fen, r.acquirer_fen) == (-30, -18, -1, -11)
    assert schedule.fees("ec_cash_load", -1, 5000, "supermarket").discount_fen == 0
    assert schedule.fees("purchase", 1, 100, None) == schedule.fees("purchase", 1, 100, "unknown-industry")


rates = st.tuples(*(st.integers(0, MAX_RATE_PPM) for _ in range(3))).map(sorted)


@given(rates, st.lists(st.integers(1, 10**12), min_size=1, max_size=30))
def test_shares_are_never_negative_and_add_up_exactly(ppm: list[int], amounts: list[int]) -> None:
    low, mid, high = ppm
    schedule = FeeSchedule(Rates(discount_ppm=high, issuer_ppm=low, network_ppm=mid - low))
    for amount in amounts:
        f = schedule.fees("purchase", 1, amount, None)
        assert min(f.issuer_fen, f.network_fen, f.acquirer_fen) >= 0
        assert f.issuer_fen + f.network_fen + f.acquirer_fen == f.discount_fen
        assert f.discount_fen == (amount * high + 500_000) // 1_000_000  # half up of the exact discount
        back = schedule.fees("refund", -1, amount, None)
        assert (back.discount_fen, back.issuer_fen) == (-f.discount_fen, -f.issuer_fen)
