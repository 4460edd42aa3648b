"""The demo city of ``citycard up --demo``: what it is made of, as plain values (no I/O).

It is modelled on the programme the platform serves (issue 10): two issuing banks; 360 merchants across the
programme's ten industries (:class:`citycard.center.model.Industry`) with real ISO 18245 merchant category
codes; 477 POS terminals; bus lines (a bus company merchant per line, MCC 4131) with validators; 10,100
cards, registered and unregistered; urban districts and counties. Everything is derived from serial
numbers, so the same plan comes out every time and a second seeding finds what the first made.

Identifiers follow the network's formats: a merchant ID (field 42) is the acquiring bank's 3-digit CNAPS
code, the 4-digit area code of the city, the MCC and a 4-digit serial (15 digits, as UnionPay assigns
them); a POS terminal ID (field 41) is ``P`` and 7 digits, a validator's ``V`` and 7 digits. Holders' resident
ID numbers (GB 11643-1999) carry their district's administrative division code (GB/T 2260) and a valid
check character; their phone numbers are mobile numbers of a range kept for the demo.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from citycard.center.model import Industry, TerminalKind, industry_for_mcc

__all__ = [
    "BANKS",
    "BUS_LINES",
    "CARDS_PER_BANK",
    "DISTANCE_LINES",
    "DISTRICTS",
    "PIN",
    "POOL_ANONYMOUS",
    "POOL_REGISTERED",
    "POS_TERMINALS",
    "VALIDATORS_PER_LINE",
    "CityBank",
    "CityMerchant",
    "CityTerminal",
    "District",
    "Holder",
    "fare_table",
    "holder",
    "merchants",
    "terminals",
]


@dataclass(frozen=True, slots=True)
class District:
    name: str
    code: str  # GB/T 2260 administrative division code (6 digits)
    county: bool  # a county (or county-level city) rather than an urban district


DISTRICTS: tuple[District, ...] = (
    District("Nanhu District", "330402", False),
    District("Xiuzhou District", "330411", False),
    District("Jiashan County", "330421", True),
    District("Haiyan County", "330424", True),
    District("Haining", "330481", True),
    District("Pinghu", "330482", True),
    District("Tongxiang", "330483", True),
)
"""The city's two urban districts and five counties and county-level cities."""
CITY_AREA = "3304"  # the city's area code in merchant IDs


@dataclass(frozen=True, slots=True)
class CityBank:
    code: str
    name: str
    bin: str
    cnaps: str  # the bank's 3-digit CNAPS code, the first digits of the merchant IDs it acquires
    registered: int  # registered citizen cards (product debit-ec)
    anonymous: int  # unregistered EC cards (product anon-ec)


BANKS: tuple[CityBank, ...] = (
    CityBank("ICBC", "ICBC city branch", "621226", "102", 3030, 2020),
    CityBank("CCB", "CCB city branch", "621700", "105", 3030, 2020),
)
CARDS_PER_BANK = 5050
POOL_REGISTERED = 16
"""Registered cards per bank issued first with their chip image and PIN, for the simulated terminals."""
POOL_ANONYMOUS = 8
"""Unregistered cards per bank issued first with their chip image, for the simulated terminals."""
PIN = "123456"
POS_TERMINALS = 477
BUS_LINES = 20
VALIDATORS_PER_LINE = 5


@dataclass(frozen=True, slots=True)
class CityMerchant:
    merchant_id: str
    name: str
    mcc: str
    industry: Industry
    district: str
    bank_code: str
    pos_terminals: int  # how many POS terminals it has (bus lines have validators instead)
    bus_line: int | None = None  # the line number of a bus company merchant


@dataclass(frozen=True, slots=True)
class CityTerminal:
    terminal_id: str
    merchant_id: str
    kind: TerminalKind
    line: int | None = None  # a validator: its bus line (the merchant's) and vehicle, in the registry
    vehicle: str = ""


# (industry, MCC, how many, name) — 360 in all; every MCC names its industry (checked by merchants()).
_MERCHANTS: tuple[tuple[str, int, str], ...] = (
    ("4131", BUS_LINES, "City Bus Line {n}"),
    ("4121", 6, "Taxi Company {n}"),
    ("4111", 2, "Coach Station {n}"),
    ("4784", 2, "Toll Plaza {n}"),
    ("5411", 70, "Supermarket {n}"),
    ("5812", 50, "Restaurant {n}"),
    ("5814", 30, "Fast Food {n}"),
    ("5811", 10, "Canteen {n}"),
    ("8062", 12, "Hospital {n}"),
    ("8011", 4, "Clinic {n}"),
    ("8021", 4, "Dental Clinic {n}"),
    ("5912", 45, "Pharmacy {n}"),
    ("5541", 20, "Gas Station {n}"),
    ("5542", 5, "Fuel Dispenser {n}"),
    ("4900", 12, "Utility Office {n}"),
    ("5942", 1, "Xinhua Bookstore"),
    ("7832", 15, "Cinema {n}"),
    ("7922", 6, "Theatre {n}"),
    ("7933", 4, "Bowling Alley {n}"),
    ("7996", 4, "Amusement Park {n}"),
    ("7997", 8, "Sports Club {n}"),
    ("7991", 15, "Scenic Area {n}"),
    ("7011", 10, "Hotel {n}"),
    ("4722", 5, "Travel Agency {n}"),
)
_EXTRA_POS = {"5411": 1, "8062": 2, "8011": 2, "8021": 2, "5541": 1, "5542": 1, "4900": 1}
"""POS terminals beyond the first, by MCC, until the city has :data:`POS_TERMINALS`."""


def merchants() -> list[CityMerchant]:
    """The 360 merchants: serial order, banks and districts in turn, POS terminals up to 477 in all."""
    out: list[CityMerchant] = []
    extra_left = POS_TERMINALS - sum(n for mcc, n, _ in _MERCHANTS if mcc != "4131")
    serial = 0
    for mcc, count, name in _MERCHANTS:
        industry = industry_for_mcc(mcc)
        assert industry is not None, f"MCC {mcc} names no industry"
        for n in range(1, count + 1):
            serial += 1
            bank = BANKS[serial % len(BANKS)]
            district = DISTRICTS[serial % len(DISTRICTS)]
            bus = mcc == "4131"
            pos = 0 if bus else 1
            extra = min(_EXTRA_POS.get(mcc, 0), extra_left)
            pos += extra
            extra_left -= extra
            out.append(
                CityMerchant(
                    merchant_id=f"{bank.cnaps}{CITY_AREA}{mcc}{serial:04d}",
                    name=name.format(n=n),
                    mcc=mcc,
                    industry=industry,
                    district=district.name,
                    bank_code=bank.code,
                    pos_terminals=pos,
                    bus_line=n if bus else None,
                )
            )
    assert extra_left == 0 and len(out) == 360, "the plan adds up to 360 merchants and 477 POS terminals"
    return out


def terminals(city: list[CityMerchant]) -> list[CityTerminal]:
    """The POS terminals (``P0000001``…) and the validators (``V0000001``…, five a bus line: one a bus,
    ``L<line>-<n>``)."""
    out: list[CityTerminal] = []
    pos = validators = 0
    for merchant in city:
        if merchant.bus_line is not None:
            for bus in range(1, VALIDATORS_PER_LINE + 1):
                validators += 1
                vehicle = f"L{merchant.bus_line}-{bus}"
                tid, mid = f"V{validators:07d}", merchant.merchant_id
                out.append(CityTerminal(tid, mid, TerminalKind.VALIDATOR, merchant.bus_line, vehicle))
        for _ in range(merchant.pos_terminals):
            pos += 1
            out.append(CityTerminal(f"P{pos:07d}", merchant.merchant_id, TerminalKind.POS))
    return out


_SURNAMES = ("WANG", "LI", "ZHANG", "LIU", "CHEN", "YANG", "ZHAO", "HUANG", "ZHOU", "WU", "XU", "SUN", "SHEN")
_GIVEN = ("WEI", "FANG", "NA", "MIN", "JING", "LEI", "QIANG", "JUN", "YAN", "TAO", "MING", "HUA", "LING")


@dataclass(frozen=True, slots=True)
class Holder:
    name: str
    id_number: str = ""  # never in repr
    phone: str = ""
    concession: str | None = None  # transit: elderly (born by ELDERLY_BORN_BY), student (STUDENTS_BORN)
    concession_until: dt.date | None = None

    def __repr__(self) -> str:
        return f"Holder({self.name!r})"


def _check_character(body: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


BIRTH_YEARS = 65
"""Holders are born in the 65 years from 1945 (to 2009)."""
ELDERLY_BORN_BY = 1961
"""Holders born in this year or before ride as elderly (65 and over in 2026): free on the demo's buses."""
STUDENTS_BORN = range(2005, 2010)
"""Holders born in these years are students (17 to 21 in 2026) until 31 July of the year they turn 22."""
ELDERLY_UNTIL = dt.date(2099, 12, 31)
"""An elderly concession does not lapse (the record needs a last day: the last one it can hold sensibly)."""


def holder(bank_index: int, serial: int) -> Holder:
    """The holder of a bank's ``serial``-th registered card: a name, a resident ID number of a district of
    the city (born 1945-2009, a valid GB 11643 check character), a mobile number — distinct for every
    (bank, serial) below 10,000 — and the transit concession of their age, if any (elderly, student)."""
    number = bank_index * 10_000 + serial
    district = DISTRICTS[number % len(DISTRICTS)]
    year = 1945 + (7 * number) % BIRTH_YEARS  # 7 is prime to 65: every year once in 65 numbers, mixed
    month = 1 + (number // BIRTH_YEARS) % 12
    day = 1 + (number // (BIRTH_YEARS * 12)) % 28
    sequence = number // (BIRTH_YEARS * 12 * 28)  # with year, month and day it makes the number unique
    body = f"{district.code}{year:04d}{month:02d}{day:02d}{sequence:03d}"
    name = f"{_SURNAMES[number % len(_SURNAMES)]}/{_GIVEN[(number // len(_SURNAMES)) % len(_GIVEN)]}"
    concession, until = None, None
    if year <= ELDERLY_BORN_BY:
        concession, until = "elderly", ELDERLY_UNTIL
    elif year in STUDENTS_BORN:
        concession, until = "student", dt.date(year + 22, 7, 31)
    return Holder(name, body + _check_character(body), f"139{number:08d}", concession, until)


DISTANCE_LINES = range(15, BUS_LINES + 1)
"""The bus lines that charge by distance (tap-in and tap-out); the others charge a flat fare."""
_PLACES = (
    "Railway Station", "Nanhu Gate", "Old Town", "Museum", "City Hall", "Xiuzhou Park", "University",
    "People's Hospital", "Science Park", "Bus Depot", "Canal Bridge", "Silk Market", "Stadium",
    "Library", "Harbour", "Airport Road", "Tongxiang Road", "Haining Road", "Lake View", "Ferry Pier",
)  # fmt: skip


def fare_table() -> str:
    """The demo city's fare table (TOML, ``docs/transit.md`` "Fare table"), installed as the home's
    ``fares.toml`` by the seeding: lines 1-10 flat CNY 2.00, 11-14 community lines flat CNY 1.00, 15-20
    by distance (ten stops each; CNY 2.00 up to 3 stops, 3.00 up to 6, 4.00 the longest); a CNY 10.00
    daily and CNY 150.00 monthly cap, CNY 1.00 off a transfer within 90 minutes, elderly free, students and
    disabled holders half fare."""
    out = [
        "# The demo city's bus network (citycard.city.plan.fare_table); amounts in fen.",
        "[network]",
        'name = "Demo City Bus"',
        "daily_cap_fen = 1000",
        "monthly_cap_fen = 15000",
        "double_tap_s = 60",
        "max_trip_s = 10800",
        "",
        "[transfer]",
        "window_s = 5400",
        "discount_fen = 100",
        "",
        "[concessions]",
        "elderly = 0",
        "student = 50",
        "disabled = 50",
    ]
    for line in range(1, BUS_LINES + 1):
        out += ["", "[[lines]]", f"id = {line}", f'name = "City Bus Line {line}"']
        if line in DISTANCE_LINES:
            stops = [_PLACES[(line * 3 + k) % len(_PLACES)] for k in range(10)]
            out.append("stops = [" + ", ".join(f'"{s}"' for s in stops) + "]")
            out.append(
                "bands = [{ up_to_stops = 3, fare_fen = 200 }, { up_to_stops = 6, fare_fen = 300 },"
                " { up_to_stops = 9, fare_fen = 400 }]"
            )
        else:
            out.append(f"fare_fen = {200 if line <= 10 else 100}")
    return "\n".join(out) + "\n"
