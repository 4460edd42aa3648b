"""The composition root (``citycard.bootstrap``, issue 8): it alone builds the HSM, the database and the
issuer service for the entry points, and what it builds over a fresh home works end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import citycard.cli
from citycard import bootstrap
from citycard.config import Settings
from citycard.hsm.api import KeyStoreError
from citycard.issuer.commands import AddBank, AddBinRange
from citycard.issuer.model import CITIZEN_KEY_LABEL

CONSTRUCTORS = re.compile(
    r"\b(SoftHsm|DirectoryKeyStore|IssuerService|ChipPersonaliser)\(|\b(create_engine|make_engine)\(|"
    r"Database\.open\(|\b(create_master_key|load_master_key)\("
)


def test_the_cli_constructs_no_hsm_engine_or_issuer_service_itself() -> None:
    """Every construction site of the CLI is ``citycard.bootstrap``; before issue 8 ``cli/bank.py`` and
    ``cli/db.py`` built the HSM, the engine and the service themselves."""
    cli = Path(citycard.cli.__file__).parent
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(cli.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if CONSTRUCTORS.search(line)
    ]
    assert found == []
    assert CONSTRUCTORS.search(Path(bootstrap.__file__).read_text(encoding="utf-8"))  # the pattern does match


def test_open_issuer_over_a_fresh_home_adds_a_bank_and_reads_it_back(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", database_url="", hsm_master_key="", hsm_key_file="")
    said: list[str] = []
    with bootstrap.open_issuer(s, create_key=True, say=said.append) as issuer:
        issuer.service.add_bank(AddBank("ICBC", "ICBC city branch"))
        issuer.service.add_bin_range(AddBinRange("ICBC", "621226", 19))
    assert len(said) == 2
    assert said[0].startswith(f"created the HSM master key in {s.hsm_dir / 'master.key'} (mode 0600)")
    assert said[1].startswith("created the database schema (revision ")
    assert (s.hsm_dir / "master.key").is_file() and (s.home / "citycard.db").is_file()
    with bootstrap.open_issuer(s, say=said.append) as again:  # the key file and the schema are kept
        with again.unit_of_work(read_only=True) as uow:
            banks = uow.banks.list()
            overlap = uow.banks.overlapping_bin("621226")
        labels = again.hsm.labels()
    assert len(said) == 2
    assert [bank.code for bank in banks] == ["ICBC"] and overlap is not None and overlap.bank_code == "ICBC"
    assert labels and all("ICBC" in label.upper() or label == CITIZEN_KEY_LABEL for label in labels)


def test_only_a_set_up_creates_the_default_master_key(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", database_url="", hsm_master_key="", hsm_key_file="")
    with pytest.raises(KeyStoreError, match="'citycard bank add' creates"):
        bootstrap.build_hsm(s)
    assert not (s.hsm_dir / "master.key").exists()
    bootstrap.build_hsm(s, create_key=True)
    assert (s.hsm_dir / "master.key").stat().st_mode & 0o777 == 0o600
