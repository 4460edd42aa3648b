"""Start-up time of the ``citycard`` command, beside a bare interpreter (``python -c pass``) in the same run.

``python -m benchmarks startup``. Each row starts a fresh interpreter (bytecode caches warm: one untimed
run first) and is timed in alternating rounds with the others, best of ``ROUNDS`` kept; wall-clock time
and the CPU time of the child (user + system, which a loaded machine inflates less). Rows:

- baselines: ``python -c pass``, and ``import typer`` (the framework every command pays for);
- ``citycard --help`` and ``--version``: the lazy registry, no sub-application imported;
- ``citycard pos validate --help``, and a real ``pos validate`` of a 0.01 fare on an emulated card image
  (made once with ``card new`` in a temporary ``CITYCARD_HOME``; before each run the image is restored and
  the journal removed, so that the validator never sees a double tap);
- ``citycard bank list`` on an SQLite database set up by ``bank add`` (the issuer's path: SQLAlchemy, the
  HSM, a revision check instead of a migration).

The environment is passed through (minus ``PYTHONDONTWRITEBYTECODE``), so ``PYTHONPATH=<other checkout>/src``
measures another version of the code with the same interpreter.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

ROUNDS = 7
CITYCARD = [sys.executable, "-c", "from citycard.cli import main; main()"]


def _rows(home: Path) -> list[tuple[str, list[str]]]:
    fare = [
        "--card",
        str(home / "card.json"),
        "--fare",
        "0.01",
        "--journal",
        str(home / "fares" / "journal.db"),
    ]
    return [
        ("baseline: python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import typer'", [sys.executable, "-c", "import typer"]),
        ("citycard --help", [*CITYCARD, "--help"]),
        ("citycard --version", [*CITYCARD, "--version"]),
        ("citycard pos validate --help", [*CITYCARD, "pos", "validate", "--help"]),
        ("citycard pos validate --card C --fare 0.01", [*CITYCARD, "pos", "validate", *fare]),
        ("citycard bank list (SQLite)", [*CITYCARD, "bank", "list"]),
    ]


def _fresh_card(home: Path) -> None:
    """The card as ``card new`` made it, and no journal: every fare is a first tap."""
    shutil.copyfile(home / "pristine.json", home / "card.json")
    shutil.rmtree(home / "fares", ignore_errors=True)
    (home / "fares").mkdir()


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and child CPU seconds of one run of ``argv``; infinite if it fails (an older version
    without the command), with its last line of output printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines() or ["?"]
        print(f"  failed: {' '.join(argv[3:])}: {output[-1]}")
        return float("inf"), float("inf")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(CITYCARD_HOME=str(home), CITYCARD_COOLING_PERIOD_DAYS="7")
        env.pop("CITYCARD_DATABASE_URL", None)
        for setup in (["card", "new", "--out", str(home / "pristine.json"), "--ec-balance", "100.00"],
                      ["bank", "add", "ICBC", "--bin", "621226"]):  # fmt: skip
            _run([*CITYCARD, *setup], env)
        rows = _rows(home)
        _fresh_card(home)
        rows = [(name, argv) for name, argv in rows if _run(argv, env)[0] < float("inf")]  # warm the caches
        wall = [float("inf")] * len(rows)
        cpu = [float("inf")] * len(rows)
        for _ in range(ROUNDS):
            for i, (_, argv) in enumerate(rows):
                _fresh_card(home)
                w, c = _run(argv, env)
                wall[i], cpu[i] = min(wall[i], w), min(cpu[i], c)
    print(f"{'command':44} {'wall ms':>8} {'CPU ms':>7} {'x baseline wall':>16}")
    for (name, _), w, c in zip(rows, wall, cpu, strict=True):
        print(f"{name:44} {w * 1000:8.0f} {c * 1000:7.0f} {w / wall[0]:16.1f}")
