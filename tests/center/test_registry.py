"""The registry's handlers and views on SQLite and PostgreSQL: merchants with an existing acquiring bank,
terminals of active merchants with a terminal master key both HSMs hold, the binding of fields 41/42,
closing, listings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from citycard.center import views
from citycard.center.commands import AddMerchant, AddTerminal, CloseMerchant, CloseTerminal
from citycard.center.handlers import add_merchant, add_terminal, close_merchant, close_terminal, handle
from citycard.center.model import (
    AlreadyExists,
    Industry,
    NotFound,
    RegistryStatus,
    StateError,
    TerminalKind,
    tmk_label,
)
from citycard.center.ports import CenterDeps, MerchantQuery
from citycard.db.center_repositories import CenterUnitOfWork
from citycard.hsm.api import KeyUsage
from citycard.hsm.soft import SoftHsm

Uow = Callable[[], CenterUnitOfWork]
BUS = AddMerchant("CITYBUS00000001", "City bus company", "4111", "Xihu district", "ICBC")
SHOP = AddMerchant("SUPERMARKET0001", "Lianhua supermarket", "5411", "Tonglu county", "BOC")


def test_a_merchant_is_registered_with_an_existing_acquiring_bank(uow: Uow, deps: CenterDeps) -> None:
    merchant = add_merchant(BUS, uow(), deps)
    assert merchant.industry is Industry.TRANSPORT and merchant.bank_code == "ICBC" and merchant.active
    with uow() as u:
        assert u.merchants.get(BUS.merchant_id) == merchant
    with pytest.raises(AlreadyExists, match="merchant CITYBUS00000001 exists already"):
        add_merchant(BUS, uow(), deps)
    unknown = AddMerchant("CITYBUS00000002", "Bus 2", "4111", "Xihu district", "CCB")
    with pytest.raises(NotFound, match="no bank CCB"):
        add_merchant(unknown, uow(), deps)
    with uow() as u:
        assert u.merchants.get("CITYBUS00000002") is None


def test_a_terminal_gets_one_tmk_in_the_platform_hsm_and_its_own_store(
    uow: Uow, deps: CenterDeps, platform_hsm: SoftHsm, terminal_hsms: dict[str, SoftHsm]
) -> None:
    add_merchant(BUS, uow(), deps)
    add = AddTerminal("V0000001", BUS.merchant_id, TerminalKind.VALIDATOR, 12, "K12-0815")
    terminal = add_terminal(add, uow(), deps)
    assert terminal.kind is TerminalKind.VALIDATOR and terminal.active
    with uow() as u:  # the registry keeps the validator's line and vehicle
        kept = u.terminals.get("V0000001")
        binding = u.terminals.binding("V0000001")
    assert kept is not None and (kept.line, kept.vehicle) == (12, "K12-0815")
    assert binding is not None and binding.terminal == kept
    platform_tmk = platform_hsm.get(tmk_label("V0000001"))
    own_tmk = terminal_hsms["V0000001"].get(tmk_label("V0000001"))
    assert platform_tmk.usage is KeyUsage.KEK and platform_tmk.kcv == own_tmk.kcv == terminal.tmk_kcv
    assert len(terminal.tmk_kcv) == 6
    # the same key: a working key the acquirer sends under its TMK is accepted by the terminal's
    pik = platform_hsm.generate_working_key("terminal/V0000001/pik", platform_tmk, KeyUsage.PIN_ENCRYPTION)
    kept = terminal_hsms["V0000001"].import_working_key(
        "terminal/V0000001/pik", own_tmk, KeyUsage.PIN_ENCRYPTION, pik.encrypted, pik.check_value
    )
    assert kept.kcv == pik.handle.kcv
    with pytest.raises(AlreadyExists, match="terminal V0000001 exists already"):
        add_terminal(AddTerminal("V0000001", BUS.merchant_id), uow(), deps)
    with pytest.raises(NotFound, match="no merchant NOSUCHMERCHANT"):
        add_terminal(AddTerminal("V0000002", "NOSUCHMERCHANT1"), uow(), deps)
    assert "V0000002" not in terminal_hsms  # refused before any key was made


def test_terminal_binding_answers_the_hosts_check_of_fields_41_and_42(uow: Uow, deps: CenterDeps) -> None:
    add_merchant(BUS, uow(), deps)
    add_merchant(SHOP, uow(), deps)
    add_terminal(AddTerminal("T0000001", BUS.merchant_id), uow(), deps)
    add_terminal(AddTerminal("T0000002", SHOP.merchant_id), uow(), deps)
    binding = views.terminal_binding(uow(), "T0000001")
    assert binding is not None
    terminal, merchant = binding
    assert terminal.terminal_id == "T0000001" and merchant.merchant_id == BUS.merchant_id
    assert merchant.bank_code == "ICBC"  # the acquiring bank
    assert views.binding_refusal(binding, BUS.merchant_id) is None
    assert views.binding_refusal(binding, SHOP.merchant_id) == (
        "03", "terminal T0000001 is not a terminal of merchant 'SUPERMARKET0001'"
    )  # fmt: skip
    assert views.terminal_binding(uow(), "T0000009") is None
    assert views.binding_refusal(None, BUS.merchant_id) == ("58", "terminal (field 41) is not registered")
    close_terminal(CloseTerminal("T0000001"), uow(), deps)
    closed = views.terminal_binding(uow(), "T0000001")
    assert closed is not None and closed.terminal.status is RegistryStatus.CLOSED
    assert views.binding_refusal(closed, BUS.merchant_id) == ("58", "terminal T0000001 is closed")


def test_closing_a_merchant_closes_its_terminals_and_takes_no_new_one(uow: Uow, deps: CenterDeps) -> None:
    add_merchant(BUS, uow(), deps)
    add_merchant(SHOP, uow(), deps)
    for tid in ("T0000001", "T0000002"):
        add_terminal(AddTerminal(tid, BUS.merchant_id), uow(), deps)
    add_terminal(AddTerminal("T0000003", SHOP.merchant_id), uow(), deps)
    close_terminal(CloseTerminal("T0000002"), uow(), deps)
    merchant, count = close_merchant(CloseMerchant(BUS.merchant_id), uow(), deps)
    assert merchant.status is RegistryStatus.CLOSED and count == 1  # T0000002 was closed already
    statuses = {t.terminal_id: t.status for t in views.list_terminals(uow())}
    assert statuses == {"T0000001": "closed", "T0000002": "closed", "T0000003": "active"}
    with pytest.raises(StateError, match="merchant CITYBUS00000001 is closed: it takes no terminal"):
        add_terminal(AddTerminal("T0000004", BUS.merchant_id), uow(), deps)
    with pytest.raises(StateError, match="is closed: cannot close it"):
        close_merchant(CloseMerchant(BUS.merchant_id), uow(), deps)
    with pytest.raises(StateError, match="terminal T0000001 is closed: cannot close it"):
        close_terminal(CloseTerminal("T0000001"), uow(), deps)
    with pytest.raises(NotFound, match="no terminal T0000009"):
        close_terminal(CloseTerminal("T0000009"), uow(), deps)
    with pytest.raises(NotFound, match="no merchant NOSUCHMERCHANT1"):
        close_merchant(CloseMerchant("NOSUCHMERCHANT1"), uow(), deps)
    binding = views.terminal_binding(uow(), "T0000001")
    assert binding is not None and views.binding_refusal(binding, BUS.merchant_id) is not None


def test_listings_filter_by_bank_industry_district_and_merchant(uow: Uow, deps: CenterDeps) -> None:
    for cmd in (BUS, SHOP, AddMerchant("PHARMACY0000001", "Pharmacy", "5912", "Xihu district", "ICBC")):
        handle(cmd, uow(), deps)
    handle(AddTerminal("T0000001", SHOP.merchant_id), uow(), deps)
    handle(AddTerminal("T0000002", BUS.merchant_id), uow(), deps)

    def ids(query: MerchantQuery) -> list[str]:
        return [m.merchant_id for m in views.list_merchants(uow(), query)]

    assert ids(MerchantQuery()) == ["CITYBUS00000001", "PHARMACY0000001", "SUPERMARKET0001"]
    assert ids(MerchantQuery(bank_code="ICBC")) == ["CITYBUS00000001", "PHARMACY0000001"]
    assert ids(MerchantQuery(industry=Industry.PHARMACY)) == ["PHARMACY0000001"]
    assert ids(MerchantQuery(district="Tonglu county")) == ["SUPERMARKET0001"]
    assert ids(MerchantQuery(bank_code="BOC", industry=Industry.TRANSPORT)) == []
    assert [m.merchant_id for m in views.list_merchants(uow(), MerchantQuery(), limit=1, offset=1)] == [
        "PHARMACY0000001"
    ]
    assert [t.terminal_id for t in views.list_terminals(uow(), SHOP.merchant_id)] == ["T0000001"]
    first = views.list_terminals(uow())[0]
    assert views.terminal_json(first) == {
        "terminal_id": "T0000001",
        "merchant_id": SHOP.merchant_id,
        "kind": "pos",
        "status": "active",
        "tmk_kcv": first.tmk_kcv,
        "created": "2026-11-25T09:00:04Z",  # the 4th reading of the clock
        "line": None,
        "vehicle": None,
    }


def test_an_id_taken_meanwhile_is_refused_by_the_insert_itself(uow: Uow, deps: CenterDeps) -> None:
    """``add`` is ``INSERT … ON CONFLICT DO NOTHING``: a second row with the ID is a False, not an error."""
    merchant = add_merchant(BUS, uow(), deps)
    terminal = add_terminal(AddTerminal("T0000001", BUS.merchant_id), uow(), deps)
    with uow() as u:
        assert u.merchants.add(merchant) is False
        assert u.terminals.add(terminal) is False
        u.commit()
    assert len(views.list_merchants(uow(), MerchantQuery())) == 1
    assert len(views.list_terminals(uow())) == 1


def test_a_terminal_whose_commit_failed_is_added_again_with_the_same_tmk(
    uow: Uow, deps: CenterDeps, platform_hsm: SoftHsm, terminal_hsms: dict[str, SoftHsm]
) -> None:
    add_merchant(BUS, uow(), deps)

    class CommitFails(CenterUnitOfWork):
        def commit(self) -> None:
            raise ConnectionError("the database went away")

    failing = uow()
    failing.__class__ = CommitFails
    with pytest.raises(ConnectionError):
        add_terminal(AddTerminal("T0000001", BUS.merchant_id), failing, deps)
    assert views.terminal_binding(uow(), "T0000001") is None  # no row
    made = platform_hsm.get(tmk_label("T0000001"))  # but the keys were made in both HSMs
    terminal = add_terminal(AddTerminal("T0000001", BUS.merchant_id), uow(), deps)
    assert terminal.tmk_kcv == made.kcv == terminal_hsms["T0000001"].get(tmk_label("T0000001")).kcv
