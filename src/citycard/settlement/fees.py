"""The fee schedule of settlement and its rounding rule: integer fen, every share adds up exactly.

A cleared purchase of ``amount`` fen at a merchant of industry *I* pays the merchant discount
(``discount_ppm`` of the amount, parts per million) and the discount is split three ways: the issuer fee
(interchange, ``issuer_ppm``) to the card's issuing bank, the network fee (``network_ppm``) to the Citizen
Card Service Center, and the rest to the acquiring bank. Rates are per industry (the programme's ten,
``citycard.center.model.Industry``) with a ``[default]`` for the others; the default schedule is the package
file ``fees.toml``, another one is given as TOML text (``citycard settlement run --fees FILE``).

Rounding (docs/settlement.md): per item, *cumulative* half-up rounding. With
``R(ppm) = floor((amount × ppm + 500 000) / 1 000 000)`` (half up, in integers):

    issuer   = R(issuer_ppm)
    network  = R(issuer_ppm + network_ppm) − R(issuer_ppm)
    acquirer = R(discount_ppm) − R(issuer_ppm + network_ppm)
    discount = R(discount_ppm) = issuer + network + acquirer

Since ``R`` never decreases and ``issuer_ppm + network_ppm ≤ discount_ppm`` (checked when the schedule is
read), no share is negative and the three always add up to the discount, to the fen, on every item; so do
their sums over a merchant, a bank or a day. A refund or void (sign −1) gives back the same fees of its own
amount (a full refund cancels its purchase's fees exactly). An EC cash load pays no fee.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = [
    "DEFAULT_KEY",
    "FEE_KINDS",
    "INDUSTRIES",
    "MAX_RATE_PPM",
    "FeeSchedule",
    "FeeScheduleError",
    "ItemFees",
    "Rates",
    "default_schedule",
    "parse_schedule",
    "schedule_toml",
]

PPM = 1_000_000
MAX_RATE_PPM = 100_000
"""No rate above 10 % of the amount (a bound against a typo such as 60000 for 0.6 %)."""
DEFAULT_KEY = "default"
INDUSTRIES = (
    "transport",
    "supermarket",
    "catering",
    "hospital",
    "pharmacy",
    "gas",
    "public_utility",
    "bookstore",
    "entertainment",
    "tourism",
)
"""The values of ``citycard.center.model.Industry`` (domain packages do not import each other; a test
checks that the two lists are the same)."""
FEE_KINDS = frozenset({"purchase", "fare", "refund", "void"})
"""Item kinds that pay (or, with sign −1, give back) the merchant discount; ``ec_cash_load`` pays none."""
_RATE_KEYS = ("discount_ppm", "issuer_ppm", "network_ppm")


class FeeScheduleError(ValueError):
    """A fee schedule that cannot be used; the message names the key (``industry.gas.issuer_ppm: …``)."""


@dataclass(frozen=True, slots=True)
class Rates:
    discount_ppm: int
    issuer_ppm: int
    network_ppm: int

    def __post_init__(self) -> None:
        assert 0 <= self.issuer_ppm + self.network_ppm <= self.discount_ppm <= MAX_RATE_PPM, self

    @property
    def acquirer_ppm(self) -> int:
        return self.discount_ppm - self.issuer_ppm - self.network_ppm


@dataclass(frozen=True, slots=True)
class ItemFees:
    """The fees of one item, signed like the item (negative for a refund): ``discount`` = the sum of
    the three shares."""

    discount_fen: int
    issuer_fen: int
    network_fen: int
    acquirer_fen: int

    def __post_init__(self) -> None:
        assert self.discount_fen == self.issuer_fen + self.network_fen + self.acquirer_fen, self


NO_FEES = ItemFees(0, 0, 0, 0)


def _round_half_up(amount_fen: int, ppm: int) -> int:
    return (amount_fen * ppm + PPM // 2) // PPM


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    default: Rates
    industries: tuple[tuple[str, Rates], ...] = ()

    def rates(self, industry: str | None) -> Rates:
        """The rates of ``industry`` (``[default]`` for one not listed or None)."""
        for name, rates in self.industries:
            if name == industry:
                return rates
        return self.default

    def fees(self, kind: str, sign: int, amount_fen: int, industry: str | None) -> ItemFees:
        """The fees of one cleared item (the rounding rule of this module's docstring)."""
        assert sign in (1, -1) and amount_fen > 0, (sign, amount_fen)
        if kind not in FEE_KINDS:
            return NO_FEES
        r = self.rates(industry)
        issuer = _round_half_up(amount_fen, r.issuer_ppm)
        to_network = _round_half_up(amount_fen, r.issuer_ppm + r.network_ppm)
        discount = _round_half_up(amount_fen, r.discount_ppm)
        return ItemFees(
            sign * discount, sign * issuer, sign * (to_network - issuer), sign * (discount - to_network)
        )

    def as_rows(self) -> list[tuple[str, Rates]]:
        """Every industry with its rates (the default's where none is given), then ``default``."""
        return [*((name, self.rates(name)) for name in INDUSTRIES), (DEFAULT_KEY, self.default)]


def _rates(table: Any, where: str) -> Rates:
    if not isinstance(table, dict):
        raise FeeScheduleError(f"{where}: must be a table of {', '.join(_RATE_KEYS)}")
    unknown = sorted(set(table) - set(_RATE_KEYS))
    if unknown:
        raise FeeScheduleError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(_RATE_KEYS)})")
    values: dict[str, int] = {}
    for key in _RATE_KEYS:
        value = table.get(key)
        if value is None:
            raise FeeScheduleError(f"{where}.{key}: is required")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RATE_PPM:
            raise FeeScheduleError(
                f"{where}.{key}: {value!r} is not a rate in parts per million (an integer 0-{MAX_RATE_PPM})"
            )
        values[key] = value
    if values["issuer_ppm"] + values["network_ppm"] > values["discount_ppm"]:
        raise FeeScheduleError(
            f"{where}: issuer_ppm + network_ppm ({values['issuer_ppm'] + values['network_ppm']}) exceed "
            f"discount_ppm ({values['discount_ppm']}): the acquirer's share would be negative"
        )
    return Rates(**values)


def parse_schedule(text: str) -> FeeSchedule:
    """A fee schedule from TOML text (the layout of the package's ``fees.toml``), or
    :class:`FeeScheduleError` naming what is wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FeeScheduleError(f"not TOML: {exc}") from None
    unknown = sorted(set(document) - {DEFAULT_KEY, "industry"})
    if unknown:
        raise FeeScheduleError(f"{unknown[0]}: unknown table (known: default, industry.NAME)")
    if DEFAULT_KEY not in document:
        raise FeeScheduleError("default: is required")
    default = _rates(document[DEFAULT_KEY], DEFAULT_KEY)
    industries = document.get("industry", {})
    if not isinstance(industries, dict):
        raise FeeScheduleError("industry: must be tables [industry.NAME]")
    rows: list[tuple[str, Rates]] = []
    for name in sorted(industries):
        if name not in INDUSTRIES:
            raise FeeScheduleError(f"industry.{name}: not one of the industries ({', '.join(INDUSTRIES)})")
        rows.append((name, _rates(industries[name], f"industry.{name}")))
    return FeeSchedule(default, tuple(rows))


def default_schedule() -> FeeSchedule:
    """The package's ``fees.toml``."""
    return parse_schedule(resources.files(__package__).joinpath("fees.toml").read_text(encoding="utf-8"))


def schedule_toml(schedule: FeeSchedule) -> str:
    """The schedule as canonical TOML text (what a settled day keeps; :func:`parse_schedule` reads it)."""
    lines = []
    for title, rates in (
        ("default", schedule.default),
        *((f"industry.{n}", r) for n, r in schedule.industries),
    ):
        lines += [f"[{title}]", *(f"{key} = {getattr(rates, key)}" for key in _RATE_KEYS), ""]
    return "\n".join(lines)
