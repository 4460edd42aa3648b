"""The one settings object (environment variables ``CITYCARD_*``); nothing else reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "SettingsError", "settings"]


class SettingsError(ValueError):
    """An environment variable ``CITYCARD_*`` with a value that cannot be used."""


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CITYCARD_{name}", default)


def _int_env(name: str, default: int, low: int, high: int) -> int:
    text = _env(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"CITYCARD_{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"CITYCARD_{name} must be between {low} and {high}, not {value}")
    return value


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(_env("HOME", "var")))
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL", ""))
    vpcd_host: str = field(default_factory=lambda: _env("VPCD_HOST", "127.0.0.1"))
    vpcd_port: int = field(default_factory=lambda: _int_env("VPCD_PORT", 35963, 1, 65535))
    hsm_master_key: str = field(default_factory=lambda: _env("HSM_MASTER_KEY", ""), repr=False)
    hsm_key_file: str = field(default_factory=lambda: _env("HSM_KEY_FILE", ""))
    # wait between a loss report (or closure) and the refund of the card's EC balance
    cooling_period_days: int = field(default_factory=lambda: _int_env("COOLING_PERIOD_DAYS", 7, 0, 3650))

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL: ``CITYCARD_DATABASE_URL`` or an SQLite file under ``home``."""
        return self.database_url or f"sqlite:///{self.home / 'citycard.db'}"

    @property
    def hsm_dir(self) -> Path:
        """Where the software HSM keeps its key blocks (encrypted under the master key) and key file."""
        return self.home / "hsm"


def settings() -> Settings:
    """Read the environment now (tests change it between calls)."""
    return Settings()
