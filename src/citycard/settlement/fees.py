"""The fee schedule of settlement and its rounding rule: integer fen, every share adds up exactly.

A cleared purchase of ``amount`` fen at a merchant of industry *I* pays the merchant discount
(``discount_ppm`` of the amount, parts per million) and the discount is split three ways: the issuer fee
(interchange, ``issuer_ppm``) to the card's issuing bank, the network fee (``network_ppm``) to the Citizen
Card Service Center, and the rest to the acquiring bank. Rates are per MCC group
(``[mcc_group.NAME]`` with its ``mccs``: an item whose MCC is in a group takes the group's rates), else
per industry (the programme's ten, ``citycard.center.model.Industry``), else ``[default]``; the default
schedule is the package file ``fees.toml``, another one is given as TOML text (``citycard settlement run
--fees FILE``). Each table may cap the shares per item (封顶): ``discount_cap_fen``, ``issuer_cap_fen``,
``network_cap_fen``.

**Card types** (发改价格〔2016〕557号: a debit card's issuer fee is capped per transaction, a credit card's is
not): an item carries its card's type (``debit`` or ``credit``, from the issuing bank's product; an item
without one is priced as debit). ``issuer_cap_fen`` caps the issuer fee of a debit card; a credit card's
issuer fee has its own, optional, terms: ``credit_issuer_ppm`` (default: ``issuer_ppm``) and
``credit_issuer_cap_fen`` (default: no cap). Everything else (the discount, the network fee and their
caps) is the same for both; in a table whose discount is capped, a credit card's issuer fee takes
``issuer_cap_fen`` unless ``credit_issuer_cap_fen`` says otherwise. The rule below is the same with the
credit terms in place of the issuer's.

Rounding (docs/settlement.md): per item, *cumulative* half-up rounding. With
``R(ppm) = floor((amount × ppm + 500 000) / 1 000 000)`` (half up, in integers):

    issuer   = R(issuer_ppm)
    network  = R(issuer_ppm + network_ppm) − R(issuer_ppm)
    acquirer = R(discount_ppm) − R(issuer_ppm + network_ppm)
    discount = R(discount_ppm) = issuer + network + acquirer

Caps (fen per item, each optional) apply after rounding, share by share:

    issuer   = min(R(issuer_ppm), issuer_cap)
    network  = min(R(issuer_ppm + network_ppm) − R(issuer_ppm), network_cap)
    discount = min(R(discount_ppm), discount_cap)
    acquirer = discount − issuer − network

Since ``R`` never decreases and ``issuer_ppm + network_ppm ≤ discount_ppm``, and a capped discount needs
both other caps with ``issuer_cap + network_cap ≤ discount_cap`` (both checked when the schedule is read),
no share is negative and the three always add up to the discount, to the fen, on every item; so do their
sums over a merchant, a bank or a day. A refund or void (sign −1) gives back the same fees of its own
amount (a full refund cancels its purchase's fees exactly). An EC cash load pays no fee.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = [
    "CARD_TYPES",
    "DEFAULT_KEY",
    "FEE_KINDS",
    "INDUSTRIES",
    "MAX_CAP_FEN",
    "MAX_MCCS",
    "MAX_RATE_PPM",
    "FeeSchedule",
    "FeeScheduleError",
    "ItemFees",
    "MccGroup",
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
_CAP_KEYS = ("discount_cap_fen", "issuer_cap_fen", "network_cap_fen")
_CREDIT_KEYS = ("credit_issuer_ppm", "credit_issuer_cap_fen")
CARD_TYPES = ("debit", "credit")
MAX_CAP_FEN = 100_000_000
"""No cap above 1 000 000 yuan per item."""
MAX_MCCS = 10_000
"""At most every four-digit MCC once across the groups."""


class FeeScheduleError(ValueError):
    """A fee schedule that cannot be used; the message names the key (``industry.gas.issuer_ppm: …``)."""


@dataclass(frozen=True, slots=True)
class Rates:
    discount_ppm: int
    issuer_ppm: int
    network_ppm: int
    discount_cap_fen: int | None = None  # None: no cap
    issuer_cap_fen: int | None = None  # a debit card's (and a card of unknown type)
    network_cap_fen: int | None = None
    credit_issuer_ppm: int | None = None  # a credit card's issuer fee; None: issuer_ppm
    credit_issuer_cap_fen: int | None = None  # None: not capped (unless the discount is: credit_cap)

    def __post_init__(self) -> None:
        for issuer_ppm, issuer_cap in (
            (self.issuer_ppm, self.issuer_cap_fen),
            (self.credit_ppm, self.credit_cap),
        ):
            assert 0 <= issuer_ppm + self.network_ppm <= self.discount_ppm <= MAX_RATE_PPM, self
            if self.discount_cap_fen is not None:
                assert issuer_cap is not None and self.network_cap_fen is not None, self
                assert issuer_cap + self.network_cap_fen <= self.discount_cap_fen, self

    @property
    def acquirer_ppm(self) -> int:
        return self.discount_ppm - self.issuer_ppm - self.network_ppm

    @property
    def credit_ppm(self) -> int:
        """A credit card's issuer rate."""
        return self.issuer_ppm if self.credit_issuer_ppm is None else self.credit_issuer_ppm

    @property
    def credit_cap(self) -> int | None:
        """A credit card's issuer cap: ``credit_issuer_cap_fen``; when it is not given, none, except in a
        table whose discount is capped (the 2013 schedule's groups), where the debit cap applies to every
        card (else the issuer fee could exceed the capped discount)."""
        if self.credit_issuer_cap_fen is not None:
            return self.credit_issuer_cap_fen
        return self.issuer_cap_fen if self.discount_cap_fen is not None else None

    def issuer_terms(self, card_type: str | None) -> tuple[int, int | None]:
        """(issuer rate, issuer cap) of a card of ``card_type`` (None: unknown, priced as debit)."""
        if card_type == "credit":
            return self.credit_ppm, self.credit_cap
        return self.issuer_ppm, self.issuer_cap_fen


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


def _capped(value: int, cap: int | None) -> int:
    return value if cap is None else min(value, cap)


@dataclass(frozen=True, slots=True)
class MccGroup:
    """Rates for the merchants of some MCCs (ISO 18245 four-digit codes), before their industry's."""

    name: str
    mccs: tuple[str, ...]
    rates: Rates


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    default: Rates
    industries: tuple[tuple[str, Rates], ...] = ()
    mcc_groups: tuple[MccGroup, ...] = ()
    _by_mcc: dict[str, Rates] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_mcc = {mcc: g.rates for g in self.mcc_groups for mcc in g.mccs}
        assert len(by_mcc) == sum(len(g.mccs) for g in self.mcc_groups), "an MCC in one group only"
        object.__setattr__(self, "_by_mcc", by_mcc)

    def rates(self, industry: str | None, mcc: str | None = None) -> Rates:
        """The rates of an MCC's group, else of ``industry``, else ``[default]``."""
        if mcc is not None and (group := self._by_mcc.get(mcc)) is not None:
            return group
        for name, rates in self.industries:
            if name == industry:
                return rates
        return self.default

    def fees(
        self,
        kind: str,
        sign: int,
        amount_fen: int,
        industry: str | None,
        mcc: str | None = None,
        *,
        card_type: str | None = None,
    ) -> ItemFees:
        """The fees of one cleared item (the rounding rule and caps of this module's docstring) paid with a
        card of ``card_type`` (``debit``, ``credit``; None: unknown, priced as debit)."""
        assert sign in (1, -1) and amount_fen > 0, (sign, amount_fen)
        assert card_type is None or card_type in CARD_TYPES, card_type
        if kind not in FEE_KINDS:
            return NO_FEES
        r = self.rates(industry, mcc)
        issuer_ppm, issuer_cap = r.issuer_terms(card_type)
        raw_issuer = _round_half_up(amount_fen, issuer_ppm)
        issuer = _capped(raw_issuer, issuer_cap)
        network = _capped(
            _round_half_up(amount_fen, issuer_ppm + r.network_ppm) - raw_issuer, r.network_cap_fen
        )
        discount = _capped(_round_half_up(amount_fen, r.discount_ppm), r.discount_cap_fen)
        acquirer = discount - issuer - network
        assert acquirer >= 0, (r, amount_fen)
        return ItemFees(sign * discount, sign * issuer, sign * network, sign * acquirer)

    def as_rows(self) -> list[tuple[str, Rates]]:
        """Every industry with its rates (the default's where none is given), then ``default``."""
        return [*((name, self.rates(name)) for name in INDUSTRIES), (DEFAULT_KEY, self.default)]


def _rates(table: Any, where: str, extra: tuple[str, ...] = ()) -> Rates:
    if not isinstance(table, dict):
        raise FeeScheduleError(f"{where}: must be a table of {', '.join(_RATE_KEYS)}")
    known = (*extra, *_RATE_KEYS, *_CAP_KEYS, *_CREDIT_KEYS)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise FeeScheduleError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(known)})")
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
    caps: dict[str, int] = {}
    for key in _CAP_KEYS:
        value = table.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAP_FEN:
            raise FeeScheduleError(
                f"{where}.{key}: {value!r} is not a cap in fen per item (an integer 0-{MAX_CAP_FEN})"
            )
        caps[key] = value
    if "discount_cap_fen" in caps:
        if "issuer_cap_fen" not in caps or "network_cap_fen" not in caps:
            raise FeeScheduleError(
                f"{where}.discount_cap_fen: a capped discount needs issuer_cap_fen and network_cap_fen too "
                "(else the issuer's and network's shares could exceed it)"
            )
        both = caps["issuer_cap_fen"] + caps["network_cap_fen"]
        if both > caps["discount_cap_fen"]:
            raise FeeScheduleError(
                f"{where}: issuer_cap_fen + network_cap_fen ({both}) exceed discount_cap_fen "
                f"({caps['discount_cap_fen']}): the acquirer's share could be negative"
            )
    credit: dict[str, int] = {}
    for key, bound, what in (
        ("credit_issuer_ppm", MAX_RATE_PPM, "a rate in parts per million"),
        ("credit_issuer_cap_fen", MAX_CAP_FEN, "a cap in fen per item"),
    ):
        value = table.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bound:
            raise FeeScheduleError(f"{where}.{key}: {value!r} is not {what} (an integer 0-{bound})")
        credit[key] = value
    credit_ppm = credit.get("credit_issuer_ppm", values["issuer_ppm"])
    if credit_ppm + values["network_ppm"] > values["discount_ppm"]:
        raise FeeScheduleError(
            f"{where}: credit_issuer_ppm + network_ppm ({credit_ppm + values['network_ppm']}) exceed "
            f"discount_ppm ({values['discount_ppm']}): a credit card's acquirer share would be negative"
        )
    if "discount_cap_fen" in caps and "credit_issuer_cap_fen" in credit:
        both = credit["credit_issuer_cap_fen"] + caps["network_cap_fen"]
        if both > caps["discount_cap_fen"]:
            raise FeeScheduleError(
                f"{where}: credit_issuer_cap_fen + network_cap_fen ({both}) exceed discount_cap_fen "
                f"({caps['discount_cap_fen']}): the acquirer's share could be negative"
            )
    return Rates(**values, **caps, **credit)


def _mcc_groups(tables: Any) -> tuple[MccGroup, ...]:
    if not isinstance(tables, dict):
        raise FeeScheduleError("mcc_group: must be tables [mcc_group.NAME]")
    groups: list[MccGroup] = []
    seen: dict[str, str] = {}
    for name in sorted(tables):
        where = f"mcc_group.{name}"
        table = tables[name]
        rates = _rates(table, where, extra=("mccs",))
        mccs = table.get("mccs")
        if not isinstance(mccs, list) or not mccs:
            raise FeeScheduleError(f'{where}.mccs: is required (a list of four-digit MCCs, such as ["5511"])')
        for mcc in mccs:
            if not isinstance(mcc, str) or len(mcc) != 4 or not mcc.isdigit():
                raise FeeScheduleError(f'{where}.mccs: {mcc!r} is not a four-digit MCC (a string, "5511")')
            if mcc in seen:
                raise FeeScheduleError(f"{where}.mccs: {mcc} is in mcc_group.{seen[mcc]} already")
            seen[mcc] = name
        if len(seen) > MAX_MCCS:
            raise FeeScheduleError(f"{where}.mccs: more than {MAX_MCCS} MCCs in all")
        groups.append(MccGroup(name, tuple(sorted(mccs)), rates))
    return tuple(groups)


def parse_schedule(text: str) -> FeeSchedule:
    """A fee schedule from TOML text (the layout of the package's ``fees.toml``), or
    :class:`FeeScheduleError` naming what is wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FeeScheduleError(f"not TOML: {exc}") from None
    unknown = sorted(set(document) - {DEFAULT_KEY, "industry", "mcc_group"})
    if unknown:
        raise FeeScheduleError(f"{unknown[0]}: unknown table (known: default, industry.NAME, mcc_group.NAME)")
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
    return FeeSchedule(default, tuple(rows), _mcc_groups(document.get("mcc_group", {})))


def default_schedule() -> FeeSchedule:
    """The package's ``fees.toml``."""
    return parse_schedule(resources.files(__package__).joinpath("fees.toml").read_text(encoding="utf-8"))


def schedule_toml(schedule: FeeSchedule) -> str:
    """The schedule as canonical TOML text (what a settled day keeps; :func:`parse_schedule` reads it)."""
    lines = []
    for title, rates, mccs in (
        ("default", schedule.default, None),
        *((f"industry.{n}", r, None) for n, r in schedule.industries),
        *((f"mcc_group.{g.name}", g.rates, g.mccs) for g in schedule.mcc_groups),
    ):
        lines.append(f"[{title}]")
        if mccs is not None:
            lines.append("mccs = [" + ", ".join(f'"{m}"' for m in mccs) + "]")
        lines += [f"{key} = {getattr(rates, key)}" for key in _RATE_KEYS]
        lines += [
            f"{key} = {getattr(rates, key)}"
            for key in (*_CAP_KEYS, *_CREDIT_KEYS)
            if getattr(rates, key) is not None
        ]
        lines.append("")
    return "\n".join(lines)
