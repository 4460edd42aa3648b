"""Commands of the public services (values checked when built: :class:`~.model.MalformedInput`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from citycard.codec.iso8583.service import ServiceReference, ServiceReferenceError

from .model import APPLICATIONS, MalformedInput, check_app_data, check_pan

__all__ = ["DisableApplication", "EnableApplication", "Inquire", "SeedRecords", "parse_service_ref"]


def parse_service_ref(text: str) -> ServiceReference:
    """``HR-202612030017`` as a reference, or :class:`MalformedInput` for ``service_ref``."""
    try:
        return ServiceReference.parse(text)
    except ServiceReferenceError as exc:
        raise MalformedInput("service_ref", str(exc)) from None


def _app(code: object) -> str:
    if not isinstance(code, str) or code not in APPLICATIONS:
        raise MalformedInput("app", f"{code!r} is not an application ({', '.join(APPLICATIONS)})")
    return code


@dataclass(frozen=True, slots=True)
class EnableApplication:
    """Put ``app`` on the card ``pan`` with its data (or give an enabled one new data)."""

    pan: str
    app: str
    data: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_pan(self.pan)
        object.__setattr__(self, "data", check_app_data(APPLICATIONS[_app(self.app)], self.data))


@dataclass(frozen=True, slots=True)
class DisableApplication:
    pan: str
    app: str

    def __post_init__(self) -> None:
        check_pan(self.pan)
        _app(self.app)


@dataclass(frozen=True, slots=True)
class Inquire:
    """A self-service terminal asks for the records of the card it just verified online: the terminal and
    the RRN (field 37) of the issuer's answer to that balance inquiry with the PIN."""

    terminal_id: str
    rrn: str

    def __post_init__(self) -> None:
        if (
            not isinstance(self.terminal_id, str)
            or len(self.terminal_id) != 8
            or not self.terminal_id.isalnum()
        ):
            raise MalformedInput("terminal_id", "a terminal ID is 8 characters 0-9 A-Z")
        if not isinstance(self.rrn, str) or len(self.rrn) != 12 or not self.rrn.isdigit():
            raise MalformedInput("rrn", "a retrieval reference number is 12 digits")


@dataclass(frozen=True, slots=True)
class SeedRecords:
    """Give every registered cardholder without records the simulated back end's records."""

    seed: int
    today: str  # YYYYMMDD

    def __post_init__(self) -> None:
        if type(self.seed) is not int or not 0 <= self.seed < 2**63:
            raise MalformedInput("seed", "a seed is a whole number from 0")
        if not isinstance(self.today, str) or len(self.today) != 8 or not self.today.isdigit():
            raise MalformedInput("today", "a date is YYYYMMDD")
