"""Field 48 of a payment at a public-service counter: the service's own reference (``docs/iso8583.md``,
"Field 48: the public-service reference"; ``docs/public-services.md``).

A fee paid at a hospital's registration desk, a pharmacy, a museum's or a library's deposit counter or a
scenic area's ticket office carries the service's reference (the hospital registration number, the
prescription number, the deposit slip, the ticket order) in field 48 (additional data, private, LLLVAR
n..322) of the 0200 purchase (online) and of the 0320 offline upload, so that the terminal's journal, the
acquirer's record, the issuer's authorization record and the clearing item all name the same service act.

Field 48 is numeric in the UnionPay POS profile (BCD), so the layout is digits only::

    90          usage tag n2: a public-service reference (the only usage we define)
    KK          service kind n2 (:class:`ServiceKind`: 01 hospital registration ... 05 scenic-area ticket)
    LL          length of the reference n2, 1 to :data:`MAX_REFERENCE_DIGITS`
    R...R       the reference, LL digits

Example: ``90 01 12 202612030017`` is hospital registration number 202612030017. In our records the
reference is written ``HR-202612030017`` (:attr:`ServiceReference.text`: the kind's mnemonic, a dash, the
digits), at most :data:`MAX_TEXT` characters (``clearing_items.service_ref`` is VARCHAR(32)).

Pure: no I/O. Malformed digits in a message raise :class:`.errors.Iso8583Error` for field 48; a malformed
reference typed by a person raises :class:`ServiceReferenceError` (a ``ValueError``) saying what is wrong.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from .errors import Iso8583Error

__all__ = [
    "MAX_REFERENCE_DIGITS",
    "MAX_TEXT",
    "USAGE_PUBLIC_SERVICE",
    "ServiceKind",
    "ServiceReference",
    "ServiceReferenceError",
    "service_reference",
]

USAGE_PUBLIC_SERVICE: Final = "90"
"""Field 48 usage tag of a public-service reference."""
MAX_REFERENCE_DIGITS: Final = 28
"""The longest reference: 2 + 2 + 2 + 28 = 34 digits of field 48, and ``XX-`` + 28 = 31 characters."""
MAX_TEXT: Final = 32
_TEXT = re.compile(r"([A-Z]{2})-([0-9]{1,28})")


class ServiceReferenceError(ValueError):
    """A service reference that can never be right (``HR-`` and digits, a kind we know)."""


class ServiceKind(enum.Enum):
    """A public service paid at a counter: (field 48 code, mnemonic, description)."""

    HOSPITAL_REGISTRATION = ("01", "HR", "hospital registration fee")
    PHARMACY = ("02", "RX", "pharmacy prescription")
    MUSEUM_DEPOSIT = ("03", "MD", "museum deposit")
    LIBRARY_DEPOSIT = ("04", "LD", "library deposit")
    SCENIC_TICKET = ("05", "ST", "scenic-area ticket")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def mnemonic(self) -> str:
        return self.value[1]

    @property
    def description(self) -> str:
        return self.value[2]

    @classmethod
    def by_code(cls, code: str) -> ServiceKind | None:
        return _BY_CODE.get(code)

    @classmethod
    def by_mnemonic(cls, mnemonic: str) -> ServiceKind | None:
        return _BY_MNEMONIC.get(mnemonic)


_BY_CODE: Final = {kind.code: kind for kind in ServiceKind}
_BY_MNEMONIC: Final = {kind.mnemonic: kind for kind in ServiceKind}
assert len(_BY_CODE) == len(_BY_MNEMONIC) == len(ServiceKind)


@dataclass(frozen=True, slots=True)
class ServiceReference:
    """A public service's reference for one payment: its kind and its digits."""

    kind: ServiceKind
    reference: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ServiceKind):
            raise ServiceReferenceError(f"{self.kind!r} is not a service kind")
        ref = self.reference
        if not isinstance(ref, str) or not ref.isdigit() or not ref.isascii():
            raise ServiceReferenceError("a service reference is digits only (field 48 is numeric)")
        if not 1 <= len(ref) <= MAX_REFERENCE_DIGITS:
            raise ServiceReferenceError(f"a service reference has 1 to {MAX_REFERENCE_DIGITS} digits")

    @property
    def text(self) -> str:
        """``HR-202612030017``: how records and the command line write it (at most 32 characters)."""
        return f"{self.kind.mnemonic}-{self.reference}"

    def to_field48(self) -> str:
        """The digits of field 48 (module docstring)."""
        return f"{USAGE_PUBLIC_SERVICE}{self.kind.code}{len(self.reference):02d}{self.reference}"

    @classmethod
    def parse(cls, text: str) -> ServiceReference:
        """``HR-202612030017`` (:class:`ServiceReferenceError` naming what is wrong)."""
        match = _TEXT.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            names = ", ".join(f"{k.mnemonic} ({k.description})" for k in ServiceKind)
            raise ServiceReferenceError(
                f"{text!r} is not a service reference: a kind, a dash and 1-{MAX_REFERENCE_DIGITS} "
                f"digits, e.g. HR-202612030017; kinds: {names}"
            )
        kind = ServiceKind.by_mnemonic(match.group(1))
        if kind is None:
            raise ServiceReferenceError(f"{match.group(1)!r} is not a service kind")
        return cls(kind, match.group(2))

    @classmethod
    def from_field48(cls, digits: str) -> ServiceReference:
        """Field 48 of a 0200 or 0320 (:class:`Iso8583Error` for field 48 when it is not this layout)."""
        if not isinstance(digits, str) or not digits.isdigit() or len(digits) < 7:
            raise Iso8583Error("48", None, "a public-service reference is 90, kind n2, length n2, digits")
        if digits[:2] != USAGE_PUBLIC_SERVICE:
            raise Iso8583Error("48", None, f"usage {digits[:2]} is not a public-service reference (90)")
        kind = ServiceKind.by_code(digits[2:4])
        if kind is None:
            raise Iso8583Error("48", None, f"service kind {digits[2:4]} is unknown")
        size = int(digits[4:6])
        if not 1 <= size <= MAX_REFERENCE_DIGITS or len(digits) != 6 + size:
            raise Iso8583Error("48", None, f"reference length {size} does not match the field")
        return cls(kind, digits[6:])


def service_reference(field48: str | None) -> ServiceReference | None:
    """The reference a 0200 or 0320 carries in field 48, None without field 48; malformed:
    :class:`Iso8583Error` for field 48."""
    return None if field48 is None else ServiceReference.from_field48(field48)
