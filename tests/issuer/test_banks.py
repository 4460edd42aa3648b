"""Banks on the network (SQLite and PostgreSQL): each has an institution id (ISO 8583 field 32, 8 digits,
unique), given or the next free of 01000001, 01000002, …; the issuer finds a bank by it."""

from __future__ import annotations

import pytest

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.commands import AddBank, MalformedRequest
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import AlreadyExists, InstitutionIdTaken


def test_institution_ids_default_to_the_next_free_and_are_found(
    service: IssuerService, database: Database
) -> None:
    assert service.add_bank(AddBank("ICBC", "ICBC city branch")).institution_id == "01000001"
    assert service.add_bank(AddBank("CCB", "CCB", "01000002")).institution_id == "01000002"
    assert service.add_bank(AddBank("BOC", "BOC city branch", "01040000")).institution_id == "01040000"
    assert service.add_bank(AddBank("ABC", "ABC city branch")).institution_id == "01000003"  # 2 is taken
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        found = uow.banks.bank_by_institution("01040000")
        assert found is not None and found.code == "BOC"
        assert uow.banks.bank_by_institution("01040001") is None
        assert {b.code: b.institution_id for b in uow.banks.list()} == {
            "ABC": "01000003",
            "BOC": "01040000",
            "CCB": "01000002",
            "ICBC": "01000001",
        }


def test_an_institution_id_names_one_bank(service: IssuerService, database: Database) -> None:
    service.add_bank(AddBank("ICBC", "ICBC", "01020000"))
    with pytest.raises(InstitutionIdTaken, match="01020000 is bank ICBC's"):
        service.add_bank(AddBank("BOC", "BOC", "01020000"))
    with pytest.raises(AlreadyExists):  # the bank code is checked first: a re-run keeps the bank
        service.add_bank(AddBank("ICBC", "ICBC", "01020000"))
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        assert [b.code for b in uow.banks.list()] == ["ICBC"]


@pytest.mark.parametrize("value", ["0102000", "010200001", "0102000A", " 1020000", ""])
def test_a_malformed_institution_id_is_refused(value: str) -> None:
    with pytest.raises(MalformedRequest, match="institution_id"):
        AddBank("ICBC", "ICBC", value)


def test_migration_0007_numbers_existing_banks_in_code_order(
    banks: IssuerService, database: Database
) -> None:
    from citycard.db import downgrade, migrate

    downgrade(database.engine, "0006_issuer_lookups")
    migrate(database.engine)
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        assert {b.code: b.institution_id for b in uow.banks.list()} == {"BOC": "01000001", "ICBC": "01000002"}
