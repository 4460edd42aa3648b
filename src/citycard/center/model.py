"""The Citizen Card Service Center's registry of merchants and terminals: values and their rules.

A **merchant** accepts the card (ISO 8583:1987 field 42, card acceptor identification code: 15 characters,
here ``[0-9A-Z]`` as UnionPay assigns them), has a merchant category code (ISO 18245, 4 digits), one of the
programme's ten industries, a district or county (free text), and one acquiring bank (the bank code of an
issuer's bank: the bank whose acquirer routes its terminals' messages). A **terminal** (field 41, card
acceptor terminal identification: 8 characters ``[0-9A-Z]``) belongs to one merchant; it is a POS terminal
or a bus validator, and it has a terminal master key (TMK) in the platform HSM and in its own key store
(``citycard.hsm.injection``): the registry keeps only the key's check value.

Both are ``active`` until closed; closing is final (an ID is never reused, so a message naming an old
terminal can never be taken for a new one's). Closing a merchant closes its terminals. The transitions are
the one table :data:`TRANSITIONS`; a refused one is a :class:`StateError`.

Merchants and terminals the issuer registered before the center (migration ``0008_registry`` moved them
here) have no industry, district or acquiring bank, and no TMK: they keep working for the issuer's check of
fields 41/42, and an acquirer cannot route them.

Industries: the ten of the programme (DESIGN.md §1). :func:`industry_for_mcc` derives one from the MCC
where its ISO 18245 group says it (:data:`MCC_INDUSTRY`: ranges and codes of the published MCC list);
other MCCs (department stores, say) need the industry given.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

__all__ = [
    "MCC_INDUSTRY",
    "TRANSITIONS",
    "AlreadyExists",
    "CenterError",
    "Industry",
    "MalformedCommand",
    "Merchant",
    "NotFound",
    "RegistryStatus",
    "StateError",
    "Terminal",
    "TerminalKind",
    "check_bank_code",
    "check_district",
    "check_line",
    "check_mcc",
    "check_merchant_id",
    "check_name",
    "check_terminal_id",
    "check_vehicle",
    "industry_for_mcc",
    "tmk_label",
]

MERCHANT_ID = re.compile(r"[0-9A-Z]{15}")
TERMINAL_ID = re.compile(r"[0-9A-Z]{8}")
MCC = re.compile(r"[0-9]{4}")
MAX_NAME = 40  # ISO 8583 field 43 carries the name and location in 40 characters
MAX_DISTRICT = 64
MAX_BANK_CODE = 8  # the issuer's bank codes (issuer_banks.code)


class CenterError(Exception):
    """A command of the registry that the registry's state refuses."""


class NotFound(CenterError):
    """A merchant, terminal or acquiring bank that does not exist (the input named it: exit status 2)."""


class AlreadyExists(CenterError):
    """A merchant or terminal ID that is registered already (closed ones too: IDs are never reused)."""


class StateError(CenterError):
    """A transition that :data:`TRANSITIONS` refuses (closing a closed terminal, a terminal for a closed
    merchant)."""


class MalformedCommand(ValueError):
    """A command value that can never be right; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Industry(enum.StrEnum):
    """The programme's ten industries (one card, many uses)."""

    TRANSPORT = "transport"
    SUPERMARKET = "supermarket"
    CATERING = "catering"
    HOSPITAL = "hospital"
    PHARMACY = "pharmacy"
    GAS = "gas"
    PUBLIC_UTILITY = "public_utility"
    BOOKSTORE = "bookstore"
    ENTERTAINMENT = "entertainment"
    TOURISM = "tourism"


class TerminalKind(enum.StrEnum):
    POS = "pos"  # an attended POS terminal (contact and contactless, online PIN)
    VALIDATOR = "validator"  # a bus or metro validator (contactless, offline EC)


class RegistryStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"  # withdrawn: its messages are declined (58), its ID is never given again


TRANSITIONS: dict[tuple[RegistryStatus, str], RegistryStatus] = {
    (RegistryStatus.ACTIVE, "close"): RegistryStatus.CLOSED,
}
"""(status, action) → new status; any other pair is refused (:class:`StateError`)."""


def _transition(what: str, status: RegistryStatus, action: str) -> RegistryStatus:
    new = TRANSITIONS.get((status, action))
    if new is None:
        raise StateError(f"{what} is {status.value}: cannot {action} it")
    return new


MCC_INDUSTRY: tuple[tuple[int, int, Industry], ...] = (
    (3000, 3350, Industry.TRANSPORT),  # airlines
    (3351, 3500, Industry.TRANSPORT),  # car rental
    (3501, 3999, Industry.TOURISM),  # hotels and lodging
    (4011, 4011, Industry.TRANSPORT),  # railroads
    (4111, 4131, Industry.TRANSPORT),  # local commuter transport, railways, taxis, bus lines
    (4411, 4411, Industry.TOURISM),  # cruise lines
    (4511, 4511, Industry.TRANSPORT),  # airlines
    (4722, 4722, Industry.TOURISM),  # travel agencies and tour operators
    (4784, 4789, Industry.TRANSPORT),  # tolls and bridge fees, transportation services
    (4900, 4900, Industry.PUBLIC_UTILITY),  # electric, gas, water, sanitary
    (5122, 5122, Industry.PHARMACY),  # drugs and druggists' sundries
    (5192, 5192, Industry.BOOKSTORE),  # books, periodicals and newspapers
    (5411, 5411, Industry.SUPERMARKET),  # grocery stores and supermarkets
    (5541, 5542, Industry.GAS),  # service stations, automated fuel dispensers
    (5811, 5814, Industry.CATERING),  # caterers, restaurants, bars, fast food
    (5912, 5912, Industry.PHARMACY),  # drug stores and pharmacies
    (5942, 5942, Industry.BOOKSTORE),  # book stores
    (5983, 5983, Industry.GAS),  # fuel dealers
    (5994, 5994, Industry.BOOKSTORE),  # news dealers and newsstands
    (7011, 7012, Industry.TOURISM),  # hotels, timeshares
    (7832, 7832, Industry.ENTERTAINMENT),  # motion picture theaters
    (7911, 7990, Industry.ENTERTAINMENT),  # dance halls, theatres, sports, bowling, arcades
    (7991, 7991, Industry.TOURISM),  # tourist attractions and exhibits
    (7992, 7999, Industry.ENTERTAINMENT),  # golf, video arcades, amusement parks, clubs, recreation
    (8011, 8099, Industry.HOSPITAL),  # doctors, dentists, hospitals, medical laboratories and services
)
"""ISO 18245 MCC ranges (inclusive) whose group names one of the ten industries."""


def industry_for_mcc(mcc: str) -> Industry | None:
    """The industry the MCC's group names, or None when it names none of the ten."""
    code = int(check_mcc(mcc))
    return next((industry for low, high, industry in MCC_INDUSTRY if low <= code <= high), None)


def _check(pattern: re.Pattern[str], value: object, field: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedCommand(field, f"{value!r} is not {what}")
    return value


def check_merchant_id(value: object, field: str = "merchant_id") -> str:
    """A merchant ID (field 42): 15 characters ``[0-9A-Z]``."""
    return _check(MERCHANT_ID, value, field, "a merchant ID (15 characters 0-9 A-Z)")


def check_terminal_id(value: object, field: str = "terminal_id") -> str:
    """A terminal ID (field 41): 8 characters ``[0-9A-Z]``."""
    return _check(TERMINAL_ID, value, field, "a terminal ID (8 characters 0-9 A-Z)")


MAX_LINE = 0xFFFF
"""A bus line is two bytes on the card's trip record (docs/transit.md)."""
VEHICLE = re.compile(r"[0-9A-Z][0-9A-Z-]{0,15}")


def check_line(value: object, field: str = "line") -> int:
    """A bus line number: 1 to 65,535 (the fare table's ``[[lines]] id``)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LINE:
        raise MalformedCommand(field, f"{value!r} is not a line number (1 to {MAX_LINE})")
    return value


def check_vehicle(value: object, field: str = "vehicle") -> str:
    """A vehicle (the bus's fleet number or plate): 1 to 16 characters ``0-9 A-Z -``, not starting with -."""
    if not isinstance(value, str) or not VEHICLE.fullmatch(value):
        raise MalformedCommand(field, f"{value!r} is not a vehicle (1 to 16 characters 0-9 A-Z -)")
    return value


def check_mcc(value: object, field: str = "mcc") -> str:
    """A merchant category code (ISO 18245): 4 digits."""
    return _check(MCC, value, field, "a merchant category code (4 digits)")


def _check_text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedCommand(field, "is required")
    if len(value) > limit or not value.isprintable() or value != value.strip():
        raise MalformedCommand(field, f"must be 1-{limit} printable characters without surrounding blanks")
    return value


def check_name(value: object, field: str = "name") -> str:
    return _check_text(value, field, MAX_NAME)


def check_district(value: object, field: str = "district") -> str:
    return _check_text(value, field, MAX_DISTRICT)


def check_bank_code(value: object, field: str = "bank_code") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_BANK_CODE or not value.isalnum():
        raise MalformedCommand(field, f"{value!r} is not a bank code (1-{MAX_BANK_CODE} letters or digits)")
    return value


def tmk_label(terminal_id: str) -> str:
    """The HSM label of a terminal's master key, the same in the platform's HSM and the terminal's own."""
    return f"terminal/{check_terminal_id(terminal_id)}/tmk"


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    mcc: str
    industry: Industry | None  # None (and the next two empty) only for a merchant registered before 0008
    district: str
    bank_code: str | None  # the acquiring bank
    status: RegistryStatus
    created_ns: int

    def __post_init__(self) -> None:
        assert self.industry is None or isinstance(self.industry, Industry)
        assert isinstance(self.status, RegistryStatus)

    @property
    def active(self) -> bool:
        return self.status is RegistryStatus.ACTIVE

    def closed(self) -> Merchant:
        return replace(self, status=_transition(f"merchant {self.merchant_id}", self.status, "close"))


@dataclass(frozen=True, slots=True)
class Terminal:
    terminal_id: str
    merchant_id: str
    kind: TerminalKind
    status: RegistryStatus
    tmk_kcv: str  # check value of the TMK (hex, 3 bytes; empty for terminals registered before the center)
    created_ns: int
    line: int | None = None  # a validator: the bus line it runs (None: a POS, or registered before)
    vehicle: str = ""  # a validator: the bus it is mounted in

    def __post_init__(self) -> None:
        assert isinstance(self.kind, TerminalKind) and isinstance(self.status, RegistryStatus)

    @property
    def active(self) -> bool:
        return self.status is RegistryStatus.ACTIVE

    def closed(self) -> Terminal:
        return replace(self, status=_transition(f"terminal {self.terminal_id}", self.status, "close"))
