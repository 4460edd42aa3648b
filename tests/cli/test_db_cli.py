"""``citycard db upgrade | current``, and no migration work on every command: a command checks the
revision cheaply (no Alembic import), migrates an empty database, and refuses an older one."""

from __future__ import annotations

from pathlib import Path

from citycard.db import downgrade, shipped_revisions

from tests.cli.test_startup import run_citycard


def test_commands_check_the_revision_and_only_db_upgrade_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'home' / 'citycard.db'}"
    none, _ = run_citycard(tmp_path, "db", "current")
    assert none.returncode == 0 and "no database yet at" in none.stdout, none.stderr
    assert not (tmp_path / "home").exists()  # asking made nothing
    added, _ = run_citycard(tmp_path, "bank", "add", "ICBC", "--bin", "621226")
    assert added.returncode == 0, added.stderr
    assert f"created the database schema (revision {shipped_revisions()[-1]})" in added.stdout
    listed, modules = run_citycard(tmp_path, "bank", "list")
    assert listed.returncode == 0 and "ICBC" in listed.stdout, listed.stderr
    assert "sqlalchemy" in modules and "alembic" not in modules  # before: migrate() on every command
    assert "created the database schema" not in listed.stdout

    first, head = shipped_revisions()[0], shipped_revisions()[-1]
    downgrade(url, first)
    refused, _ = run_citycard(tmp_path, "bank", "list")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"at revision {first}, this citycard needs {head}: run 'citycard db upgrade'" in refused.stderr
    current, _ = run_citycard(tmp_path, "db", "current")
    assert f"revision {first}; this citycard ships {head} (run 'citycard db upgrade')" in current.stdout
    upgraded, _ = run_citycard(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0 and f"{first} -> revision {head}" in upgraded.stdout, upgraded.stderr
    again, _ = run_citycard(tmp_path, "db", "upgrade")
    assert f"already at revision {head}" in again.stdout
    current, _ = run_citycard(tmp_path, "db", "current")
    assert f"revision {head}; this citycard ships {head} (up to date)" in current.stdout
    listed, _ = run_citycard(tmp_path, "bank", "list")  # the downgrade dropped the banks' tables
    assert listed.returncode == 0 and "ICBC" not in listed.stdout, listed.stderr


def test_db_commands_report_a_bad_url_in_one_line(tmp_path: Path) -> None:
    result, _ = run_citycard(tmp_path, "db", "upgrade", CITYCARD_DATABASE_URL="postgresql://u:s3cret@h:x/db")
    assert result.returncode == 2 and result.stderr.startswith("error: database URL"), result.stderr
    assert result.stderr.count("\n") == 1 and "s3cret" not in result.stderr
