"""Commands of the merchant and terminal registry. Each checks its values when built and raises
:class:`~citycard.center.model.MalformedCommand` naming the field; what the registry's state refuses is
decided by the handlers (:mod:`citycard.center.handlers`)."""

from __future__ import annotations

from dataclasses import dataclass

from .model import (
    Industry,
    MalformedCommand,
    TerminalKind,
    check_bank_code,
    check_district,
    check_line,
    check_mcc,
    check_merchant_id,
    check_name,
    check_terminal_id,
    check_vehicle,
    industry_for_mcc,
)

__all__ = ["AddMerchant", "AddTerminal", "CloseMerchant", "CloseTerminal", "Command"]


@dataclass(frozen=True, slots=True)
class AddMerchant:
    """Register a merchant. ``industry`` None: the one its MCC's group names (:func:`industry_for_mcc`);
    given, it must agree with that group where the MCC names one."""

    merchant_id: str
    name: str
    mcc: str
    district: str
    bank_code: str
    industry: Industry | None = None

    def __post_init__(self) -> None:
        check_merchant_id(self.merchant_id)
        check_name(self.name)
        check_mcc(self.mcc)
        check_district(self.district)
        check_bank_code(self.bank_code)
        if self.industry is not None and not isinstance(self.industry, Industry):
            raise MalformedCommand("industry", f"{self.industry!r} is not one of the ten industries")
        derived = industry_for_mcc(self.mcc)
        if self.industry is None and derived is None:
            raise MalformedCommand("industry", f"MCC {self.mcc} names no industry: give it")
        if self.industry is not None and derived is not None and self.industry is not derived:
            raise MalformedCommand(
                "industry", f"MCC {self.mcc} is in the {derived.value} group, not {self.industry.value}"
            )

    @property
    def resolved_industry(self) -> Industry:
        industry = self.industry or industry_for_mcc(self.mcc)
        assert industry is not None  # checked when built
        return industry


@dataclass(frozen=True, slots=True)
class CloseMerchant:
    """Close a merchant and every terminal of it."""

    merchant_id: str

    def __post_init__(self) -> None:
        check_merchant_id(self.merchant_id)


@dataclass(frozen=True, slots=True)
class AddTerminal:
    """Register a terminal of an active merchant and inject its TMK (platform HSM and its own store)."""

    terminal_id: str
    merchant_id: str
    kind: TerminalKind = TerminalKind.POS
    line: int | None = None  # a validator's bus line and vehicle (both or neither); never for a POS
    vehicle: str = ""

    def __post_init__(self) -> None:
        check_terminal_id(self.terminal_id)
        check_merchant_id(self.merchant_id)
        if not isinstance(self.kind, TerminalKind):
            raise MalformedCommand("kind", f"{self.kind!r} is not pos or validator")
        if self.kind is TerminalKind.VALIDATOR and (self.line is not None or self.vehicle):
            if self.line is None or not self.vehicle:  # both or neither (then its configuration says)
                raise MalformedCommand("line" if self.line is None else "vehicle", "give a validator both")
            check_line(self.line)
            check_vehicle(self.vehicle)
        elif self.kind is TerminalKind.POS and (self.line is not None or self.vehicle):
            raise MalformedCommand("line" if self.line is not None else "vehicle", "only a validator has one")


@dataclass(frozen=True, slots=True)
class CloseTerminal:
    terminal_id: str

    def __post_init__(self) -> None:
        check_terminal_id(self.terminal_id)


Command = AddMerchant | CloseMerchant | AddTerminal | CloseTerminal
