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
    MccGroup,
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


CAPPED = """
[default]
discount_ppm = 6000
issuer_ppm = 3500
network_ppm = 325
issuer_cap_fen = 1300
network_cap_fen = 325

[industry.supermarket]
discount_ppm = 3800
issuer_ppm = 2600
network_ppm = 325

[mcc_group.cars]
mccs = ["5511", "5521"]
discount_ppm = 12500
issuer_ppm = 9000
network_ppm = 1300
discount_cap_fen = 8000
issuer_cap_fen = 6000
network_cap_fen = 1000
"""


def test_caps_by_hand_to_the_fen() -> None:
    schedule = parse_schedule(CAPPED)
    # 3714.28 yuan is where 0.35 % reaches 13 yuan: 371428 fen -> 1299.998 -> 1300, not capped yet
    f = schedule.fees("purchase", 1, 371_428, None, "5812")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (2229, 1300, 121, 808)
    # 10 000 yuan at the default: issuer 3500 -> cap 1300; network R(3825)=3825 - R(3500)=3500 = 325 (= cap);
    # discount 6000 (no cap): the acquirer keeps 6000 - 1300 - 325
    f = schedule.fees("purchase", 1, 1_000_000, None, "5812")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (6000, 1300, 325, 4375)
    # 100 000 yuan: network 38250 - 35000 = 3250 -> cap 325
    f = schedule.fees("purchase", 1, 10_000_000, None, None)
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (60000, 1300, 325, 58375)
    # a car dealer's MCC takes its group's rates before any industry: 200 000 yuan, every share capped
    f = schedule.fees("purchase", 1, 20_000_000, "supermarket", "5511")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (8000, 6000, 1000, 1000)
    # 5 000 yuan at the dealer: 0.9 % = 4500, 1.03 % = 5150 -> network 650, 1.25 % = 6250: under the caps
    f = schedule.fees("purchase", 1, 500_000, None, "5521")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (6250, 4500, 650, 1100)
    # 7 000 yuan: discount 8750 -> 8000, issuer 6300 -> 6000, network 7210 - 6300 = 910 (under its cap)
    f = schedule.fees("purchase", 1, 700_000, None, "5511")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (8000, 6000, 910, 1090)
    # the industry has no caps of its own (caps are per table, not inherited from [default])
    f = schedule.fees("purchase", 1, 10_000_000, "supermarket", "5411")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (38000, 26000, 3250, 8750)
    # a full refund of a capped purchase gives back exactly its fees
    back = schedule.fees("refund", -1, 20_000_000, "supermarket", "5511")
    assert (back.discount_fen, back.issuer_fen, back.network_fen, back.acquirer_fen) == (
        -8000,
        -6000,
        -1000,
        -1000,
    )


def test_the_default_schedule_caps_and_groups() -> None:
    schedule = default_schedule()
    assert parse_schedule(schedule_toml(schedule)) == schedule
    assert {g.name for g in schedule.mcc_groups} == {"real_estate_cars", "wholesale"}
    big = schedule.fees("purchase", 1, 10_000_000, "catering", "5812")  # 100 000 yuan
    assert (big.issuer_fen, big.network_fen) == (1300, 325)
    assert schedule.fees("purchase", 1, 10_000_000, None, "5045").discount_fen == 2600
    assert schedule.fees("purchase", 1, 10_000_000, "hospital", "8062").discount_fen == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("issuer_cap_fen = -1", "default.issuer_cap_fen: -1 is not a cap"),
        ("issuer_cap_fen = 1.5", "default.issuer_cap_fen: 1.5 is not a cap"),
        ("issuer_cap_fen = 1000000000", "default.issuer_cap_fen: 1000000000 is not a cap"),
        ("discount_cap_fen = 100\nissuer_cap_fen = 50", "default.discount_cap_fen: a capped discount needs"),
        (
            "discount_cap_fen = 100\nissuer_cap_fen = 80\nnetwork_cap_fen = 30",
            "default: issuer_cap_fen + network_cap_fen (110) exceed discount_cap_fen (100)",
        ),
        ("cap_fen = 3", "default.cap_fen: unknown key"),
        ("[mcc_group.x]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0", "mcc_group.x.mccs: is required"),
        (
            '[mcc_group.x]\nmccs = ["551"]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0',
            "mcc_group.x.mccs: '551' is not a four-digit MCC",
        ),
        (
            "[mcc_group.x]\nmccs = [5511]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0",
            "mcc_group.x.mccs: 5511 is not a four-digit MCC",
        ),
        (
            '[mcc_group.a]\nmccs = ["5511"]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0\n'
            '[mcc_group.b]\nmccs = ["5511"]\ndiscount_ppm = 1\nissuer_ppm = 0\nnetwork_ppm = 0',
            "mcc_group.b.mccs: 5511 is in mcc_group.a already",
        ),
        (
            '[mcc_group.a]\nmccs = ["5511"]\ndiscount_ppm = 1\nissuer_ppm = 0',
            "mcc_group.a.network_ppm: is required",
        ),
    ],
)
def test_a_bad_cap_or_group_is_refused_naming_the_key(extra: str, message: str) -> None:
    text = f"[default]\ndiscount_ppm = 6000\nissuer_ppm = 3500\nnetwork_ppm = 325\n{extra}\n"
    with pytest.raises(FeeScheduleError) as caught:
        parse_schedule(text)
    assert str(caught.value).startswith(message), caught.value


caps = st.none() | st.integers(0, 10**6)


@given(rates, caps, caps, st.integers(0, 10**6), st.booleans(), st.lists(st.integers(1, 10**12), max_size=30))
def test_capped_shares_are_never_negative_and_add_up_exactly(
    ppm: list[int],
    issuer_cap: int | None,
    network_cap: int | None,
    slack: int,
    cap_discount: bool,
    amounts: list[int],
) -> None:
    low, mid, high = ppm
    discount_cap = None
    if cap_discount:
        issuer_cap, network_cap = issuer_cap or 0, network_cap or 0
        discount_cap = issuer_cap + network_cap + slack
    r = Rates(high, low, mid - low, discount_cap, issuer_cap, network_cap)
    schedule = FeeSchedule(Rates(1, 0, 0), mcc_groups=(MccGroup("g", ("1234",), r),))
    assert parse_schedule(schedule_toml(schedule)) == schedule
    for amount in amounts:
        f = schedule.fees("fare", 1, amount, "transport", "1234")
        assert min(f.issuer_fen, f.network_fen, f.acquirer_fen) >= 0
        assert f.issuer_fen + f.network_fen + f.acquirer_fen == f.discount_fen
        exact = (amount * high + 500_000) // 1_000_000
        assert f.discount_fen == (exact if discount_cap is None else min(exact, discount_cap))
        assert issuer_cap is None or f.issuer_fen <= issuer_cap
        assert network_cap is None or f.network_fen <= network_cap
        back = schedule.fees("void", -1, amount, "transport", "1234")
        assert (back.discount_fen, back.issuer_fen, back.network_fen) == (
            -f.discount_fen,
            -f.issuer_fen,
            -f.network_fen,
        )


def test_a_credit_cards_issuer_fee_is_not_capped_a_debit_cards_is_to_the_fen() -> None:
    """发改价格〔2016〕557号: the debit card's issuer fee capped at 13 yuan, the credit card's not; the
    network fee capped for both; an item of unknown card type priced as debit (as every item was before
    0023)."""
    schedule = parse_schedule(CAPPED)
    # 100 000 yuan at a restaurant ([default], 0.60 %): issuer 0.35 % = 350.00 yuan
    debit = schedule.fees("purchase", 1, 10_000_000, "catering", "5812", card_type="debit")
    credit = schedule.fees("purchase", 1, 10_000_000, "catering", "5812", card_type="credit")
    unknown = schedule.fees("purchase", 1, 10_000_000, "catering", "5812")
    assert (debit.discount_fen, debit.issuer_fen, debit.network_fen, debit.acquirer_fen) == (
        60000, 1300, 325, 58375,
    )  # fmt: skip
    assert (credit.discount_fen, credit.issuer_fen, credit.network_fen, credit.acquirer_fen) == (
        60000,
        35000,
        325,
        24675,
    )  # fmt: skip  the network fee (38250 - 35000 = 3250) capped all the same
    assert unknown == debit
    # under the cap both pay the same: 1 000 yuan, issuer 350.00 -> 3.50 yuan
    small = [schedule.fees("purchase", 1, 100_000, None, None, card_type=t) for t in ("debit", "credit")]
    assert small[0] == small[1] and (small[0].issuer_fen, small[0].network_fen) == (350, 33)
    # a refund of a credit card's purchase gives back its own (uncapped) fees
    back = schedule.fees("refund", -1, 10_000_000, "catering", "5812", card_type="credit")
    assert (back.discount_fen, back.issuer_fen, back.network_fen, back.acquirer_fen) == (
        -60000,
        -35000,
        -325,
        -24675,
    )
    # in a group whose discount is capped (2013's car dealers), a credit card takes the debit issuer cap
    cars = schedule.fees("purchase", 1, 20_000_000, None, "5511", card_type="credit")
    assert (cars.discount_fen, cars.issuer_fen, cars.network_fen, cars.acquirer_fen) == (
        8000,
        6000,
        1000,
        1000,
    )


def test_a_credit_cards_own_terms_to_the_fen() -> None:
    text = CAPPED.replace(
        "network_cap_fen = 325\n",
        "network_cap_fen = 325\ncredit_issuer_ppm = 4500\ncredit_issuer_cap_fen = 40000\n",
        1,
    )
    schedule = parse_schedule(text)
    assert parse_schedule(schedule_toml(schedule)) == schedule  # the credit terms round-trip
    # 100 000 yuan at 0.45 %: 450.00 yuan -> capped at 400.00; network R(4825) - R(4500) = 3250 -> 325
    f = schedule.fees("purchase", 1, 10_000_000, None, None, card_type="credit")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (60000, 40000, 325, 19675)
    # 1 234.56 yuan: 0.45 % = 555.552 -> 556 fen; 0.4825 % = 595.675 -> 596, network 40;
    # 0.60 % = 740.736 -> 741
    f = schedule.fees("purchase", 1, 123_456, None, None, card_type="credit")
    assert (f.discount_fen, f.issuer_fen, f.network_fen, f.acquirer_fen) == (741, 556, 40, 145)
    d = schedule.fees("purchase", 1, 123_456, None, None, card_type="debit")  # 0.35 %: 432.096 -> 432
    assert (d.discount_fen, d.issuer_fen, d.network_fen, d.acquirer_fen) == (741, 432, 40, 269)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "credit_issuer_ppm = 6000",
            "default: credit_issuer_ppm + network_ppm (6325) exceed discount_ppm (6000)",
        ),
        ("credit_issuer_ppm = -1", "default.credit_issuer_ppm: -1 is not a rate"),
        ("credit_issuer_cap_fen = 1.5", "default.credit_issuer_cap_fen: 1.5 is not a cap"),
        (
            "discount_cap_fen = 2000\nissuer_cap_fen = 1300\nnetwork_cap_fen = 325\n"
            "credit_issuer_cap_fen = 1800",
            "default: credit_issuer_cap_fen + network_cap_fen (2125) exceed discount_cap_fen (2000)",
        ),
    ],
)
def test_bad_credit_terms_are_refused_naming_the_key(extra: str, message: str) -> None:
    text = f"[default]\ndiscount_ppm = 6000\nissuer_ppm = 3500\nnetwork_ppm = 325\n{extra}\n"
    with pytest.raises(FeeScheduleError) as caught:
        parse_schedule(text)
    assert str(caught.value).startswith(message), caught.value


def test_the_default_schedule_caps_debit_cards_only() -> None:
    schedule = default_schedule()
    debit = schedule.fees("purchase", 1, 10_000_000, "catering", "5812", card_type="debit")
    credit = schedule.fees("purchase", 1, 10_000_000, "catering", "5812", card_type="credit")
    assert (debit.issuer_fen, debit.network_fen) == (1300, 325)
    assert (credit.issuer_fen, credit.network_fen, credit.acquirer_fen) == (35000, 325, 24675)
    # wholesale (discount capped at 26 yuan): a credit card is capped like a debit one
    wholesale = [
        schedule.fees("purchase", 1, 10_000_000, None, "5045", card_type=t) for t in ("debit", "credit")
    ]
    assert wholesale[0] == wholesale[1] and wholesale[0].discount_fen == 2600
