"""The registry's values: IDs of fields 41 and 42, MCCs and their industries, commands refused when built,
the status transitions."""

from __future__ import annotations

import itertools

import pytest

from citycard.center.commands import AddMerchant, AddTerminal, CloseMerchant, CloseTerminal
from citycard.center.model import (
    MCC_INDUSTRY,
    Industry,
    MalformedCommand,
    Merchant,
    RegistryStatus,
    StateError,
    Terminal,
    TerminalKind,
    industry_for_mcc,
    tmk_label,
)


@pytest.mark.parametrize(
    ("mcc", "industry"),
    [
        ("4111", Industry.TRANSPORT),
        ("4131", Industry.TRANSPORT),
        ("5411", Industry.SUPERMARKET),
        ("5812", Industry.CATERING),
        ("8062", Industry.HOSPITAL),
        ("5912", Industry.PHARMACY),
        ("5541", Industry.GAS),
        ("4900", Industry.PUBLIC_UTILITY),
        ("5942", Industry.BOOKSTORE),
        ("7832", Industry.ENTERTAINMENT),
        ("7996", Industry.ENTERTAINMENT),
        ("7991", Industry.TOURISM),
        ("7011", Industry.TOURISM),
        ("3612", Industry.TOURISM),
        ("5311", None),  # department stores: no industry of the ten
        ("0000", None),
    ],
)
def test_industry_from_the_mcc_group(mcc: str, industry: Industry | None) -> None:
    assert industry_for_mcc(mcc) is industry


def test_the_mcc_table_covers_every_industry_and_its_ranges_do_not_overlap() -> None:
    assert {industry for _, _, industry in MCC_INDUSTRY} == set(Industry)
    ranges = sorted((low, high) for low, high, _ in MCC_INDUSTRY)
    assert all(low <= high for low, high in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))


def test_a_merchant_takes_its_industry_from_the_mcc_or_as_given() -> None:
    derived = AddMerchant("CITYBUS00000001", "City bus company", "4111", "Xihu", "ICBC")
    assert derived.resolved_industry is Industry.TRANSPORT
    given = AddMerchant("DEPTSTORE000001", "Department store", "5311", "Xihu", "ICBC", Industry.SUPERMARKET)
    assert given.resolved_industry is Industry.SUPERMARKET
    with pytest.raises(MalformedCommand, match="industry: MCC 5311 names no industry"):
        AddMerchant("DEPTSTORE000001", "Department store", "5311", "Xihu", "ICBC")
    with pytest.raises(MalformedCommand, match="industry: MCC 4111 is in the transport group, not catering"):
        AddMerchant("CITYBUS00000001", "City bus company", "4111", "Xihu", "ICBC", Industry.CATERING)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: AddMerchant("SHORT", "x", "5411", "Xihu", "ICBC"), "merchant_id"),
        (lambda: AddMerchant("citybus00000001", "x", "5411", "Xihu", "ICBC"), "merchant_id"),
        (lambda: AddMerchant("CITYBUS0000000-", "x", "5411", "Xihu", "ICBC"), "merchant_id"),
        (lambda: AddMerchant("CITYBUS00000001", "", "5411", "Xihu", "ICBC"), "name"),
        (lambda: AddMerchant("CITYBUS00000001", "x" * 41, "5411", "Xihu", "ICBC"), "name"),
        (lambda: AddMerchant("CITYBUS00000001", "x", "54A1", "Xihu", "ICBC"), "mcc"),
        (lambda: AddMerchant("CITYBUS00000001", "x", "541", "Xihu", "ICBC"), "mcc"),
        (lambda: AddMerchant("CITYBUS00000001", "x", "5411", "", "ICBC"), "district"),
        (lambda: AddMerchant("CITYBUS00000001", "x", "5411", " Xihu", "ICBC"), "district"),
        (lambda: AddMerchant("CITYBUS00000001", "x", "5411", "Xihu", ""), "bank_code"),
        (lambda: AddMerchant("CITYBUS00000001", "x", "5411", "Xihu", "ICBC/1"), "bank_code"),
        (lambda: AddMerchant("CITYBUS00000001", "x", "5411", "Xihu", "ICBC", "bus"), "industry"),  # type: ignore[arg-type]
        (lambda: AddTerminal("T000001", "CITYBUS00000001"), "terminal_id"),
        (lambda: AddTerminal("T00000012", "CITYBUS00000001"), "terminal_id"),
        (lambda: AddTerminal("t0000001", "CITYBUS00000001"), "terminal_id"),
        (lambda: AddTerminal("../../x", "CITYBUS00000001"), "terminal_id"),
        (lambda: AddTerminal("T0000001", "M1"), "merchant_id"),
        (lambda: AddTerminal("T0000001", "CITYBUS00000001", "kiosk"), "kind"),  # type: ignore[arg-type]
        (lambda: CloseMerchant("M1"), "merchant_id"),
        (lambda: CloseTerminal("T1"), "terminal_id"),
    ],
)
def test_malformed_commands_name_the_field(build: object, field: str) -> None:
    with pytest.raises(MalformedCommand, match=f"^{field}: ") as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field


def test_closing_is_final() -> None:
    merchant = Merchant("CITYBUS00000001", "Bus", "4111", Industry.TRANSPORT, "Xihu", "ICBC",
                        RegistryStatus.ACTIVE, 1)  # fmt: skip
    closed = merchant.closed()
    assert closed.status is RegistryStatus.CLOSED and not closed.active and merchant.active
    with pytest.raises(StateError, match="merchant CITYBUS00000001 is closed: cannot close it"):
        closed.closed()
    terminal = Terminal(
        "T0000001", "CITYBUS00000001", TerminalKind.VALIDATOR, RegistryStatus.ACTIVE, "ABC123", 1
    )
    with pytest.raises(StateError, match="terminal T0000001 is closed"):
        terminal.closed().closed()


def test_tmk_label_is_namespaced_by_the_terminal_id() -> None:
    assert tmk_label("T0000001") == "terminal/T0000001/tmk"
    with pytest.raises(MalformedCommand):
        tmk_label("../T1")


def test_a_validator_has_a_line_and_a_vehicle_and_a_pos_neither() -> None:
    from citycard.center.commands import AddTerminal

    bus = AddTerminal("V0000001", "CITYBUS00000001", TerminalKind.VALIDATOR, 12, "K12-0815")
    assert (bus.line, bus.vehicle) == (12, "K12-0815")
    assert AddTerminal("V0000002", "CITYBUS00000001", TerminalKind.VALIDATOR).line is None  # from its config
    for line, vehicle, field in [
        (12, "", "vehicle"),  # both or neither
        (None, "K12-0815", "line"),
        (0, "K12-0815", "line"),
        (65_536, "K12-0815", "line"),
        (True, "K12-0815", "line"),
        (12, "k12-0815", "vehicle"),
        (12, "-K12", "vehicle"),
        (12, "K" * 17, "vehicle"),
    ]:
        with pytest.raises(MalformedCommand) as info:
            AddTerminal("V0000001", "CITYBUS00000001", TerminalKind.VALIDATOR, line, vehicle)  # type: ignore[arg-type]
        assert info.value.field == field, (line, vehicle)
    with pytest.raises(MalformedCommand, match="only a validator"):
        AddTerminal("T0000001", "SHOP00000000001", TerminalKind.POS, 12, "K12-0815")
