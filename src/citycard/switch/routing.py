"""The switch's routing table: which issuing bank a PAN belongs to, by its longest BIN prefix.

A card number (ISO/IEC 7812-1) begins with the issuer identification number (IIN, "BIN"); the issuers
register their BIN ranges (``citycard bank add --bin``) and the switch sends each request to the bank whose
registered BIN is the longest prefix of the PAN, so a bank may own ``6212`` and another ``621226`` (ISO/IEC
7812-1 lets issuer identification numbers nest; the longest match is the usual routing rule). The table
also knows every member bank by its code and by its acquiring institution id (ISO 8583 field 32, 8 digits,
China UnionPay style), with the HSM label of the bank's zone PIN key (``zpk``) shared with the switch.

The table is a plain value built once (``citycard.bootstrap`` builds it from the issuer's banks and BIN
ranges); malformed input raises :class:`RoutingError` naming what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["MAX_BIN_DIGITS", "BinRoute", "Member", "RoutingError", "RoutingTable"]

MAX_BIN_DIGITS: Final = 11
"""The longest BIN prefix the table takes (ISO/IEC 7812-1:2017 IINs are 8 digits; the issuer registers 6
to 8; a few more digits let one range be split between banks)."""


class RoutingError(ValueError):
    """A routing table that cannot be built: ``where`` names the entry (a BIN, a bank code, an id)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where


@dataclass(frozen=True, slots=True)
class Member:
    """A bank on the switch: its code, its acquiring institution id (field 32; None for a bank that has
    none yet: it can issue but not acquire), the HSM label of its zone PIN key shared with the switch, and
    where its issuer front end listens when the network keeps its route (``citycard serve route``; None:
    given at the switch's start, or nowhere yet)."""

    bank_code: str
    institution_id: str | None
    zpk_label: str
    front_end: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if not self.bank_code or not self.bank_code.isascii() or not self.bank_code.isalnum():
            raise RoutingError(f"bank {self.bank_code!r}", "a bank code is letters and digits")
        if self.institution_id is not None and not (
            self.institution_id.isdigit() and 1 <= len(self.institution_id) <= 11
        ):
            raise RoutingError(f"bank {self.bank_code}", "an institution id is 1 to 11 digits (field 32)")
        if not self.zpk_label:
            raise RoutingError(f"bank {self.bank_code}", "the zone PIN key label is empty")
        if self.front_end is not None and not (self.front_end[0] and 0 < self.front_end[1] < 65536):
            raise RoutingError(
                f"bank {self.bank_code}", f"front end {self.front_end!r} is not a host and port"
            )


@dataclass(frozen=True, slots=True)
class BinRoute:
    """A registered BIN (IIN prefix) and the bank that issues under it."""

    bin: str
    bank_code: str

    def __post_init__(self) -> None:
        if not (self.bin.isdigit() and self.bin.isascii() and 1 <= len(self.bin) <= MAX_BIN_DIGITS):
            raise RoutingError(f"BIN {self.bin!r}", f"a BIN is 1 to {MAX_BIN_DIGITS} digits")


class RoutingTable:
    """Members and BIN routes, checked: every BIN belongs to a member, no BIN and no institution id twice."""

    def __init__(self, members: Iterable[Member], routes: Iterable[BinRoute]) -> None:
        by_code: dict[str, Member] = {}
        by_institution: dict[str, Member] = {}
        for member in members:
            if member.bank_code in by_code:
                raise RoutingError(f"bank {member.bank_code}", "listed twice")
            by_code[member.bank_code] = member
            if member.institution_id is not None:
                other = by_institution.setdefault(member.institution_id, member)
                if other is not member:
                    raise RoutingError(
                        f"institution {member.institution_id}",
                        f"both {other.bank_code} and {member.bank_code}",
                    )
        by_bin: dict[str, Member] = {}
        for route in routes:
            owner = by_code.get(route.bank_code)
            if owner is None:
                raise RoutingError(f"BIN {route.bin}", f"bank {route.bank_code} is not a member")
            other = by_bin.setdefault(route.bin, owner)
            if other is not owner:
                raise RoutingError(f"BIN {route.bin}", f"both {other.bank_code} and {owner.bank_code}")
        self._by_code: Final[Mapping[str, Member]] = MappingProxyType(by_code)
        self._by_institution: Final[Mapping[str, Member]] = MappingProxyType(by_institution)
        self._by_bin: Final[Mapping[str, Member]] = MappingProxyType(by_bin)
        self._lengths: Final = tuple(sorted({len(b) for b in by_bin}, reverse=True))

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(self._by_code.values())

    @property
    def bins(self) -> Mapping[str, str]:
        """Each BIN and its bank's code."""
        return MappingProxyType({b: m.bank_code for b, m in self._by_bin.items()})

    def member(self, bank_code: str) -> Member | None:
        return self._by_code.get(bank_code)

    def acquirer(self, institution_id: str) -> Member | None:
        """The member whose acquiring institution id (field 32) is ``institution_id``."""
        return self._by_institution.get(institution_id)

    def route(self, pan: str) -> Member | None:
        """The bank whose registered BIN is the longest prefix of ``pan``, or None (response 15)."""
        for length in self._lengths:
            if length <= len(pan):
                member = self._by_bin.get(pan[:length])
                if member is not None:
                    return member
        return None

    def __repr__(self) -> str:
        return f"RoutingTable(members={sorted(self._by_code)}, bins={len(self._by_bin)})"
