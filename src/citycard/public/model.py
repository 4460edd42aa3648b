"""Public services on the card: values and rules, pure (``docs/public-services.md``).

Three things the Citizen Card Service Center adds on top of the bank card (DESIGN.md §1, issue 11):

- **counters**: a fee paid at a public-service counter carries the service's reference
  (:class:`citycard.codec.iso8583.service.ServiceReference`, field 48); :data:`SERVICE_INDUSTRIES` says at
  merchants of which industries each kind of service is paid (a hospital registration at a hospital), so
  the money settles to the service provider as to any merchant of its industry;
- **information inquiry**: a registered holder's records kept by a simulated government back end
  (:class:`CitizenRecords`: social-security contributions, medical-insurance account, library loans),
  served only after the holder's card and PIN were verified online by the issuer
  (:func:`check_inquiry`);
- **industry applications**: the registry :data:`APPLICATIONS` of what may be put on a card (transit
  concession, library, health) and the data each keeps; the service center enables them per card
  (:class:`CardApplication`).

Three kinds of failure (DESIGN.md §4): a bug is an ``assert``; a value that can never be right is a
:class:`MalformedInput` naming the field; a refusal the state decides (unknown card, PIN not verified, an
approval used twice) is an :class:`InquiryRefused` / :class:`PublicError` with the reason.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from citycard.codec.iso8583.service import ServiceKind

__all__ = [
    "APPLICATIONS",
    "INQUIRY_WINDOW_NS",
    "MAX_LOANS",
    "SERVICE_INDUSTRIES",
    "AppField",
    "AppStatus",
    "Application",
    "CardApplication",
    "CitizenRecords",
    "InquiryApproval",
    "InquiryRefused",
    "LibraryLoan",
    "MalformedInput",
    "MedicalInsurance",
    "NotFound",
    "PublicError",
    "SocialSecurity",
    "check_app_data",
    "check_counter",
    "check_inquiry",
    "check_pan",
    "simulated_records",
]

INQUIRY_WINDOW_NS: Final = 300 * 10**9
"""An approved PIN verification opens one inquiry within this time (5 minutes)."""
MAX_LOANS: Final = 20
"""A reader has at most this many loans open at the simulated library."""

SERVICE_INDUSTRIES: Final[Mapping[ServiceKind, frozenset[str]]] = MappingProxyType(
    {
        ServiceKind.HOSPITAL_REGISTRATION: frozenset({"hospital"}),
        ServiceKind.PHARMACY: frozenset({"pharmacy", "hospital"}),
        ServiceKind.MUSEUM_DEPOSIT: frozenset({"tourism", "entertainment"}),
        ServiceKind.LIBRARY_DEPOSIT: frozenset({"bookstore", "public_utility"}),
        ServiceKind.SCENIC_TICKET: frozenset({"tourism"}),
    }
)
"""At merchants of which industries (``citycard.center.model.Industry`` values) each service is paid: a
hospital's registration desk is a merchant of the hospital industry (MCC 8011-8099), a museum's deposit
counter one of tourism (7991 tourist attractions and exhibits) or entertainment, a library's one of the
bookstores (5942) or the public utilities."""
assert set(SERVICE_INDUSTRIES) == set(ServiceKind)

_PAN = re.compile(r"[0-9]{12,19}")


class PublicError(Exception):
    """A command the public services' state refuses (the reason is the message)."""


class NotFound(PublicError):
    """A card, an application or a terminal that does not exist."""


class InquiryRefused(PublicError):
    """An information inquiry that may not be served (PIN not verified, another terminal, too late ...)."""


class MalformedInput(ValueError):
    """A value that can never be right; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_pan(value: object, field: str = "pan") -> str:
    if not isinstance(value, str) or not _PAN.fullmatch(value):
        raise MalformedInput(field, "a card number is 12-19 digits")
    return value


def check_counter(kind: ServiceKind, industry: str | None, merchant_id: str) -> None:
    """A payment of ``kind`` may be taken at merchant ``merchant_id`` of ``industry`` (else PublicError)."""
    allowed = SERVICE_INDUSTRIES[kind]
    if industry not in allowed:
        raise PublicError(
            f"merchant {merchant_id} ({industry or 'no industry'}) is not a {kind.description} counter: "
            f"that is paid at merchants of {', '.join(sorted(allowed))}"
        )


# --- industry applications ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppField:
    """One datum an application keeps for a card: a name, a pattern it must match, what it means."""

    name: str
    pattern: str
    meaning: str
    date: bool = False
    """A calendar day as YYYYMMDD: the pattern's shape and a day that exists (no 31 February)."""


@dataclass(frozen=True, slots=True)
class Application:
    """An industry application that may be put on a card, and the data it keeps for each card."""

    code: str
    name: str
    provider: str
    fields: tuple[AppField, ...]

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


APPLICATIONS: Final[Mapping[str, Application]] = MappingProxyType(
    {
        app.code: app
        for app in (
            Application(
                "transit",
                "transit concession",
                "city transport bureau",
                (
                    AppField("category", r"elderly|student|disabled", "concession category of the holder"),
                    AppField(
                        "valid_until",
                        r"20[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])",
                        "YYYYMMDD",
                        date=True,
                    ),
                ),
            ),
            Application(
                "library",
                "city library reader",
                "city library",
                (
                    AppField("reader_number", r"[0-9]{6,12}", "reader number at the city library"),
                    AppField("deposit_fen", r"[0-9]{1,7}", "deposit paid (fen)"),
                ),
            ),
            Application(
                "health",
                "health and medical insurance",
                "municipal health commission",
                (
                    AppField("insurance_number", r"[0-9]{10,18}", "medical insurance number"),
                    AppField("blood_type", r"A|B|AB|O|unknown", "ABO blood type for emergencies"),
                ),
            ),
        )
    }
)
"""The applications the service center may enable on a card (``docs/public-services.md``)."""


class AppStatus(enum.StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


APP_TRANSITIONS: Final[Mapping[tuple[AppStatus | None, str], AppStatus]] = MappingProxyType(
    {
        (None, "enable"): AppStatus.ENABLED,
        (AppStatus.DISABLED, "enable"): AppStatus.ENABLED,
        (AppStatus.ENABLED, "enable"): AppStatus.ENABLED,  # new data for an enabled application
        (AppStatus.ENABLED, "disable"): AppStatus.DISABLED,
    }
)
"""(status, action) → new status; None: never enabled on the card. Anything else is refused."""


def check_app_data(app: Application, data: Mapping[str, str]) -> dict[str, str]:
    """``data`` holds exactly the application's fields, each matching its pattern (else MalformedInput)."""
    unknown = set(data) - set(app.field_names())
    if unknown:
        raise MalformedInput("data", f"{app.code} keeps no {', '.join(sorted(unknown))}")
    out: dict[str, str] = {}
    for item in app.fields:
        value = data.get(item.name)
        if value is None:
            raise MalformedInput(item.name, f"required by {app.code} ({item.meaning})")
        if not isinstance(value, str) or not re.fullmatch(item.pattern, value):
            raise MalformedInput(item.name, f"{value!r} is not {item.meaning} ({item.pattern})")
        if item.date:
            try:
                dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
            except ValueError:
                raise MalformedInput(item.name, f"{value!r} is not a calendar day") from None
        out[item.name] = value
    return out


@dataclass(frozen=True, slots=True)
class CardApplication:
    """An application's state on one card (the PAN: the service center's tables are not on the path of
    the wire, and the operator console shows it masked)."""

    pan: str
    app_code: str
    status: AppStatus
    data: Mapping[str, str]
    changed_ns: int
    chip: str = "pending"
    """Its record on the chip (SFI 22): ``pending`` (the issuer writes it by script at the card's next
    online contact), ``sent`` (the card has not yet confirmed it), ``written`` (the card confirmed it, or
    it was personalised)."""

    def __post_init__(self) -> None:
        assert self.app_code in APPLICATIONS and isinstance(self.status, AppStatus)
        assert self.chip in ("pending", "sent", "written")

    def moved(self, action: str) -> AppStatus:
        return moved(self.status, action, self.app_code)


def moved(status: AppStatus | None, action: str, app_code: str) -> AppStatus:
    new = APP_TRANSITIONS.get((status, action))
    if new is None:
        raise PublicError(
            f"{app_code} is {status.value if status else 'not on the card'}: cannot {action} it"
        )
    return new


# --- the simulated government back end ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SocialSecurity:
    """Pension insurance contributions (社保缴费): since when, how many months, the last month paid, and
    the monthly contribution base."""

    insured_since: str  # YYYYMM
    contribution_months: int
    last_paid: str  # YYYYMM
    base_fen: int

    def __post_init__(self) -> None:
        assert self.contribution_months >= 0 and self.base_fen >= 0


@dataclass(frozen=True, slots=True)
class MedicalInsurance:
    """The medical-insurance personal account (医保个人账户): its balance and what was spent this year."""

    scheme: str  # "employee" | "resident"
    account_balance_fen: int
    spent_this_year_fen: int

    def __post_init__(self) -> None:
        assert self.scheme in ("employee", "resident") and self.account_balance_fen >= 0


@dataclass(frozen=True, slots=True)
class LibraryLoan:
    title: str
    borrowed: str  # YYYYMMDD
    due: str  # YYYYMMDD


@dataclass(frozen=True, slots=True)
class CitizenRecords:
    """What the back end keeps of one citizen, keyed by the service center's keyed hash of the resident ID
    number (``citizen_key``, the same whichever bank issued the card; the ID number itself is nowhere in
    the platform)."""

    citizen_key: str
    social_security: SocialSecurity | None
    medical_insurance: MedicalInsurance | None
    loans: tuple[LibraryLoan, ...] = field(default=())

    def __post_init__(self) -> None:
        assert len(self.loans) <= MAX_LOANS


_TITLES: Final = (
    "Dream of the Red Chamber", "Journey to the West", "Water Margin", "Romance of the Three Kingdoms",
    "The True Story of Ah Q", "Fortress Besieged", "Rickshaw Boy", "Teahouse", "To Live", "Red Sorghum",
)  # fmt: skip


def _draw(key: str, seed: int, what: str, modulo: int) -> int:
    """A deterministic number below ``modulo`` for (key, seed, what): replayable without a random source."""
    digest = hashlib.sha256(f"{seed}|{key}|{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % modulo


def simulated_records(citizen_key: str, seed: int, *, today: str) -> CitizenRecords:
    """The records the simulated back end invents for a citizen, the same for the same key and seed
    (``today``: YYYYMMDD, the day they are seeded)."""
    assert len(today) == 8 and today.isdigit()
    year, month = int(today[:4]), int(today[4:6])
    months = 12 + _draw(citizen_key, seed, "months", 300)
    start = year * 12 + month - 1 - months
    since = f"{start // 12:04d}{start % 12 + 1:02d}"
    last = year * 12 + month - 2
    social = SocialSecurity(
        since,
        months,
        f"{last // 12:04d}{last % 12 + 1:02d}",
        300_000 + 100 * _draw(citizen_key, seed, "base", 20_000),
    )
    scheme = "employee" if _draw(citizen_key, seed, "scheme", 4) else "resident"
    medical = MedicalInsurance(
        scheme, _draw(citizen_key, seed, "balance", 800_000), _draw(citizen_key, seed, "spent", 200_000)
    )
    loans = tuple(
        LibraryLoan(
            _TITLES[_draw(citizen_key, seed, f"title{i}", len(_TITLES))],
            f"{today[:6]}01",
            f"{today[:6]}28",
        )
        for i in range(_draw(citizen_key, seed, "loans", 4))
    )
    return CitizenRecords(citizen_key, social, medical, loans)


# --- information inquiry -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InquiryApproval:
    """What the issuer recorded of the online PIN verification that opens an inquiry: its authorization
    record (request id, kind, answer, the flags of its decision, the terminal, when) and whose card it was
    (``citizen_key``: None for an unregistered card)."""

    request_id: str
    pan: str
    kind: str
    response_code: str
    flags: tuple[str, ...]
    terminal_id: str
    created_ns: int
    citizen_key: str | None
    used: bool  # an inquiry was served on it already


def check_inquiry(approval: InquiryApproval | None, terminal_id: str, now_ns: int) -> str:
    """The citizen whose records a self-service terminal may show, given the issuer's record of the balance
    inquiry it just made with the card and the PIN (else :class:`InquiryRefused` with the reason)."""
    if approval is None:
        raise InquiryRefused("no online verification of this card at this terminal (RRN unknown)")
    if approval.terminal_id != terminal_id:
        raise InquiryRefused("the card was verified at another terminal")
    if approval.kind != "balance_inquiry":
        raise InquiryRefused("the verification was not a balance inquiry with the PIN")
    if approval.response_code != "00":
        raise InquiryRefused(f"the issuer declined the card ({approval.response_code})")
    if "online_pin_verified" not in approval.flags:
        raise InquiryRefused("the issuer did not verify the holder's PIN")
    if approval.used:
        raise InquiryRefused("this verification was used for an inquiry already: verify the card again")
    if not 0 <= now_ns - approval.created_ns <= INQUIRY_WINDOW_NS:
        raise InquiryRefused("the verification is older than 5 minutes: verify the card again")
    if approval.citizen_key is None:
        raise InquiryRefused("an unregistered card has no public-service records")
    return approval.citizen_key
