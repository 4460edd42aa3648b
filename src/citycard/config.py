"""The one settings object (environment variables ``CITYCARD_*``); nothing else reads the environment.

The home folder (card images, demo keys, the software HSM's key blocks, journals, the SQLite database) is
``CITYCARD_HOME`` when it is set, else the per-user data folder of the XDG Base Directory Specification
0.8: ``$XDG_DATA_HOME/citycard`` (when ``XDG_DATA_HOME`` is an absolute path), else
``~/.local/share/citycard``. It never depends on the current folder, so a command run from a subfolder
finds the same database and keys. A value that cannot be used is a :class:`SettingsError` that names the
variable (the CLI prints it as one ``error:`` line, exit status 2); a database URL is never echoed, as it may
carry a password.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "SettingsError", "parse_address", "settings"]


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


def _home() -> Path:
    """``CITYCARD_HOME``, else the XDG per-user data folder (module docstring); absolute, never a file."""
    explicit = _env("HOME", "")
    if explicit:
        name, home = "CITYCARD_HOME", Path(explicit).expanduser()
    else:
        data = os.environ.get("XDG_DATA_HOME", "")
        try:
            base = Path(data) if os.path.isabs(data) else Path.home() / ".local" / "share"
        except RuntimeError:  # no HOME and no password entry
            raise SettingsError(
                "set CITYCARD_HOME: there is no home folder to keep citycard's data in"
            ) from None
        name, home = "the data folder", base / "citycard"
    home = home.absolute()
    existing = next(folder for folder in (home, *home.parents) if folder.exists())
    if not existing.is_dir():
        raise SettingsError(
            f"{name} {home} is not a folder" + ("" if existing == home else f" ({existing} is a file)")
        )
    return home


def _choice_env(name: str, default: str, choices: tuple[str, ...]) -> str:
    text = _env(name, default)
    if text not in choices:
        raise SettingsError(f"CITYCARD_{name} must be one of {', '.join(choices)}, not {text!r}")
    return text


def _address_env(name: str, default: str) -> str:
    """``HOST:PORT`` (a port 1-65535)."""
    text = _env(name, default)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"CITYCARD_{name} must be HOST:PORT, such as {default}, not {text!r}")
    return text


_DATABASE_URL = re.compile(r"(sqlite|postgresql)(\+[a-z0-9_]+)?://.*", re.DOTALL)


def _database_url() -> str:
    url = _env("DATABASE_URL", "")
    if url and not _DATABASE_URL.fullmatch(url):
        raise SettingsError(
            "CITYCARD_DATABASE_URL must be an SQLite or PostgreSQL URL, such as sqlite:////srv/citycard.db "
            "or postgresql+psycopg://user@host/citycard"
        )
    return url


def parse_address(text: str, what: str = "address") -> tuple[str, int]:
    """``[HOST:]PORT`` → (host, port), the host 127.0.0.1 when left out; ``ValueError`` naming ``what``."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {text!r}: [HOST:]PORT with a port of 1-65535")
    return host or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_home)
    database_url: str = field(default_factory=_database_url, repr=False)
    vpcd_host: str = field(default_factory=lambda: _env("VPCD_HOST", "127.0.0.1"))
    vpcd_port: int = field(default_factory=lambda: _int_env("VPCD_PORT", 35963, 1, 65535))
    hsm_master_key: str = field(default_factory=lambda: _env("HSM_MASTER_KEY", ""), repr=False)
    hsm_key_file: str = field(default_factory=lambda: _env("HSM_KEY_FILE", ""))
    # wait between a loss report (or closure) and the refund of the card's EC balance
    cooling_period_days: int = field(default_factory=lambda: _int_env("COOLING_PERIOD_DAYS", 7, 0, 3650))
    # the acquirer a POS terminal goes online to (HOST:PORT), and how long it waits for an answer
    acquirer: str = field(default_factory=lambda: _address_env("ACQUIRER", "127.0.0.1:9583"))
    acquirer_timeout_s: int = field(default_factory=lambda: _int_env("ACQUIRER_TIMEOUT_S", 30, 1, 600))
    # how long a command waits for a card image or terminal journal another process holds
    lock_timeout_s: int = field(default_factory=lambda: _int_env("LOCK_TIMEOUT_S", 30, 0, 3600))
    # where the switch listens (HOST:PORT): the acquirer forwards to it
    switch: str = field(default_factory=lambda: _address_env("SWITCH", "127.0.0.1:9584"))
    # clearing (docs/clearing.md): each acquiring bank's cut-over in Beijing time (BANK=hh:mm,...; *=default),
    # late presentment after N days, who bears offline spending after a loss report (cardholder|merchant)
    clearing_cutover: str = field(default_factory=lambda: _env("CLEARING_CUTOVER", ""))
    clearing_late_days: int = field(default_factory=lambda: _int_env("CLEARING_LATE_DAYS", 10, 1, 3650))
    clearing_lost_liability: str = field(
        default_factory=lambda: _choice_env(
            "CLEARING_LOST_LIABILITY", "cardholder", ("cardholder", "merchant")
        )
    )

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
