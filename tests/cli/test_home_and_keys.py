"""Where citycard keeps its data, and the HSM master key: found the same from any folder, never made
silently; every unusable setting is one ``error:`` line on stderr, exit status 2, and nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from citycard.config import SettingsError, settings

from tests.issuer.conftest import HOLDER_ID


def citycard(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``citycard ARGS`` in a fresh interpreter, run from ``tmp_path/sub``, with only ``env`` set."""
    folder = tmp_path / "sub"
    folder.mkdir(exist_ok=True)
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "user")}
    return subprocess.run(
        [sys.executable, "-c", "from citycard.cli import main; main()", *args],
        env={**base, **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_home_is_the_per_user_data_folder_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CITYCARD_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert settings().home == tmp_path / "user" / ".local" / "share" / "citycard"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert settings().home == tmp_path / "data" / "citycard"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # not absolute: ignored, as the XDG spec says
    assert settings().home == tmp_path / "user" / ".local" / "share" / "citycard"
    monkeypatch.setenv("CITYCARD_HOME", "here")  # an explicit relative home is taken as an absolute path
    assert settings().home == tmp_path / "sub" / "here"


def test_a_command_run_from_a_subfolder_uses_the_same_home(tmp_path: Path) -> None:
    """Before: ``./var`` of the current folder, so a new database, master key and CA appeared there."""
    result = citycard(tmp_path, "card", "new", "--out", str(tmp_path / "card.json"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "user" / ".local" / "share" / "citycard" / "demo-keys.json").is_file()
    assert tree(tmp_path / "sub") == []


def test_a_home_that_is_a_file_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a folder")
    error = one_error_line(citycard(tmp_path, "bank", "add", "ICBC", CITYCARD_HOME=str(tmp_path / "home")))
    assert error == f"error: CITYCARD_HOME {tmp_path / 'home'} is not a folder\n"
    error = one_error_line(citycard(tmp_path, "pos", "journal", CITYCARD_HOME=str(tmp_path / "home" / "x")))
    assert "is not a folder" in error
    assert (tmp_path / "home").read_text() == "not a folder"


@pytest.mark.parametrize("url", ["nonsense", "mysql://db/citycard", "postgresql://u:s3cret@h:port/db"])
def test_a_database_url_that_cannot_be_used_is_one_error_line(tmp_path: Path, url: str) -> None:
    """Before: ``nonsense`` gave SQLAlchemy's ArgumentError as a traceback."""
    home = tmp_path / "home"
    error = one_error_line(
        citycard(tmp_path, "bank", "add", "ICBC", CITYCARD_HOME=str(home), CITYCARD_DATABASE_URL=url)
    )
    assert "URL" in error and "s3cret" not in error
    assert tree(home) == []  # no master key, no database


def test_a_configured_key_file_that_is_missing_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    key_file = tmp_path / "ceremony" / "master.key"
    result = citycard(
        tmp_path,
        "bank",
        "add",
        "ICBC",
        CITYCARD_HOME=str(tmp_path / "home"),
        CITYCARD_HSM_KEY_FILE=str(key_file),
    )
    assert one_error_line(result) == f"error: HSM master key file {key_file} does not exist\n"
    assert not key_file.exists() and tree(tmp_path / "home") == []


def test_only_bank_add_makes_the_default_master_key_and_says_where(tmp_path: Path) -> None:
    home = tmp_path / "home"
    error = one_error_line(citycard(tmp_path, "bank", "list", CITYCARD_HOME=str(home)))
    assert "no HSM master key yet: 'citycard bank add' creates" in error
    assert tree(home) == []
    added = citycard(tmp_path, "bank", "add", "ICBC", "--bin", "621226", CITYCARD_HOME=str(home))
    assert added.returncode == 0, added.stderr
    key_file = home / "hsm" / "master.key"
    assert f"created the HSM master key in {key_file}" in added.stdout
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = citycard(tmp_path, "bank", "add", "BOC", CITYCARD_HOME=str(home))
    assert again.returncode == 0 and "created the HSM master key" not in again.stdout
    os.rename(key_file, tmp_path / "moved.key")  # lost: the key blocks are still there
    error = one_error_line(citycard(tmp_path, "bank", "add", "ABC", CITYCARD_HOME=str(home)))
    assert f"HSM master key file {key_file} is missing, and the" in error and "restore it" in error
    assert not key_file.exists()
    restored = citycard(
        tmp_path, "bank", "list", CITYCARD_HOME=str(home), CITYCARD_HSM_KEY_FILE=str(tmp_path / "moved.key")
    )
    assert restored.returncode == 0 and "ICBC" in restored.stdout and "BOC" in restored.stdout


def test_an_edited_key_block_or_a_wrong_master_key_is_one_error_line(tmp_path: Path) -> None:
    """Before: KeyBlockError escaped as a traceback."""
    home = tmp_path / "home"
    assert (
        citycard(tmp_path, "bank", "add", "ICBC", "--bin", "621226", CITYCARD_HOME=str(home)).returncode == 0
    )
    issue = ("card", "issue", "--bank", "ICBC", "--holder", "Zhang San", "--id-number", HOLDER_ID)
    wrong = one_error_line(
        citycard(tmp_path, *issue, CITYCARD_HOME=str(home), CITYCARD_HSM_MASTER_KEY="11" * 32)
    )
    assert "the HSM master key is not the one they were made under" in wrong
    block = home / "hsm" / "keys" / "icbc-imk-ac.kb"
    text = block.read_text()
    block.write_text(text[:40] + ("A" if text[40] != "A" else "B") + text[41:])
    before = tree(home)
    edited = one_error_line(citycard(tmp_path, *issue, CITYCARD_HOME=str(home)))
    assert (
        edited == "error: key block 'icbc-imk-ac' does not verify under the HSM master key: it was altered\n"
    )
    assert tree(home) == before


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYCARD_DATABASE_URL", "postgresql://user:s3cret@")
    assert settings().database_url  # well formed enough here; the engine judges the rest
    monkeypatch.setenv("CITYCARD_DATABASE_URL", "s3cret")
    with pytest.raises(SettingsError, match="CITYCARD_DATABASE_URL must be an SQLite or PostgreSQL URL") as e:
        settings()
    assert "s3cret" not in str(e.value)
