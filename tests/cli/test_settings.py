"""The one settings object: a bad ``CITYCARD_*`` value is one clear error, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from citycard.config import SettingsError, settings


def test_defaults_and_database_url(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    monkeypatch.delenv("CITYCARD_DATABASE_URL", raising=False)
    assert settings().db_url == f"sqlite:///{tmp_path / 'citycard.db'}"
    monkeypatch.setenv("CITYCARD_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
    assert settings().db_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VPCD_PORT", "abc", "whole number"),
        ("VPCD_PORT", "70000", "between"),
        ("COOLING_PERIOD_DAYS", "-1", "between"),
    ],
)
def test_bad_values_are_typed_errors(monkeypatch, name, value, message) -> None:
    monkeypatch.setenv(f"CITYCARD_{name}", value)
    with pytest.raises(SettingsError, match=message):
        settings()


def test_cli_reports_a_bad_setting_in_one_line(tmp_path) -> None:
    card = tmp_path / "card.json"
    card.write_text("{}")
    result = subprocess.run(
        [sys.executable, "-c", "from citycard.cli import main; main()", "card", "serve", str(card)],
        env={"PATH": "/usr/bin:/bin", "CITYCARD_VPCD_PORT": "abc", "CITYCARD_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: CITYCARD_VPCD_PORT must be a whole number, not 'abc'"
