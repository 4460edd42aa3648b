"""Start-up: ``citycard --help`` imports no sub-application, ``pos`` imports no database layer, the lazy
registry's help is each sub-application's own, and ``--version`` prints the installed version.

The times themselves are measured by ``benchmarks/bench_startup.py`` (no timed assertion here)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from citycard.cli import COMMANDS, load_command

RUNNER = """
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from citycard.cli import main
main()
"""
HEAVY = ("sqlalchemy", "alembic", "typer.rich_utils", "markdown_it", "pygments")


def run_citycard(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``citycard ARGS`` in a fresh interpreter (``CITYCARD_HOME`` is ``tmp_path/home`` unless ``env``
    says otherwise); the result and the modules it had imported when it exited."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CITYCARD_HOME": str(tmp_path / "home"), **env}
    modules = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(modules), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, set(modules.read_text().split())


def _loaded(imported: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in imported)


def test_help_lists_every_command_and_imports_none(tmp_path: Path) -> None:
    result, imported = run_citycard(tmp_path, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for name, entry in COMMANDS.items():
        assert f"  {name} " in result.stdout, name
        assert entry.help[:30] in result.stdout, name
    assert "citycard.cli" in imported and "typer" in imported  # the measurement does see imports
    loaded = [
        p for p in (*HEAVY, "citycard.cli.bank", "citycard.cli.pos", "pydantic") if _loaded(imported, p)
    ]
    assert loaded == []


def test_pos_validate_imports_no_database_layer(tmp_path: Path) -> None:
    result, imported = run_citycard(tmp_path, "pos", "validate", "--help")
    assert result.returncode == 0 and "--fare" in result.stdout, result.stderr[-2000:]
    assert "citycard.cli.pos" in imported and "citycard.pos.terminal" in imported
    heavy = (*HEAVY, "citycard.db", "citycard.cli.bank", "pydantic")  # Typer 0.29 coerced options with it
    assert [p for p in heavy if _loaded(imported, p)] == []


def test_the_chips_card_commands_import_no_database_layer(tmp_path: Path) -> None:
    """``card`` also carries the issuer's card commands; they import SQLAlchemy only when they run."""
    result, imported = run_citycard(tmp_path, "card", "new", "--out", str(tmp_path / "card.json"))
    assert result.returncode == 0 and (tmp_path / "card.json").is_file(), result.stderr[-2000:]
    assert "citycard.cli.card_issuer" in imported and "citycard.chip.personalise" in imported
    assert [p for p in (*HEAVY, "citycard.db") if _loaded(imported, p)] == []


def test_version(tmp_path: Path) -> None:
    result, imported = run_citycard(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, f"citycard {version('citycard')}\n")
    assert not _loaded(imported, "pydantic")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_registry_help_is_the_sub_applications_own(name: str) -> None:
    """The one-line help ``citycard --help`` shows without importing is what the command itself says."""
    command = load_command(name)
    assert command.name == name
    assert (command.help or "").strip().splitlines()[0] == COMMANDS[name].help
