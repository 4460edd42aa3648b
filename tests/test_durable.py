"""One atomic-write helper (:mod:`citycard.durable`): every file the project replaces or creates durably goes
through it — card images, demo keys, the HSM's key blocks and master key file, the terminal journal's
exports — so each gets the fsync of the file *and* of its folder (POSIX ``fsync(2)``, ``rename(2)``)."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

import citycard
from citycard import durable
from citycard.hsm.soft import DirectoryKeyStore, create_master_key
from citycard.sqlite_journal import SqliteJournal

SRC = Path(citycard.__file__).parent
DURABLE_CALLS = {"fsync", "fdatasync", "rename", "replace"}


def _durable_writes(path: Path) -> list[str]:
    """``os.fsync``/``os.replace``/``os.rename``/``O_EXCL`` and any ``x.rename(...)`` or ``tmp.replace(...)``
    in ``path`` (``str.replace`` on other names is left alone)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, name = node.value.id, node.attr
            if (
                (owner == "os" and name in DURABLE_CALLS | {"O_EXCL"})
                or name == "rename"
                or (name == "replace" and "tmp" in owner.lower())
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {owner}.{name}")
    return found


def test_only_citycard_durable_syncs_renames_or_creates_files_exclusively() -> None:
    found = [
        hit
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "durable.py"
        for hit in _durable_writes(path)
    ]
    assert found == []
    assert _durable_writes(SRC / "durable.py")  # the scan does see the helper's own calls


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders :func:`citycard.durable.fsync_directory` synced during the test."""
    seen: list[Path] = []
    real = durable.fsync_directory

    def record(directory: Path) -> None:
        seen.append(Path(directory).resolve())
        real(directory)

    monkeypatch.setattr(durable, "fsync_directory", record)
    return seen


def test_hsm_key_blocks_go_through_the_one_helper(tmp_path: Path, synced: list[Path]) -> None:
    store = DirectoryKeyStore(tmp_path / "keys")
    store.save("ISSUER-MDK-AC", "D0112B0TX00E0000ABCDEF")
    store.save("ISSUER-MDK-AC", "D0112B0TX00E0000FEDCBA")
    block = tmp_path / "keys" / "ISSUER-MDK-AC.kb"
    assert (
        block.read_text() == "D0112B0TX00E0000FEDCBA\n"
        and store.load("ISSUER-MDK-AC") == block.read_text()[:-1]
    )
    assert synced == [block.parent.resolve()] * 2
    assert block.stat().st_mode & 0o777 == 0o600  # a key block is readable by its owner only
    assert sorted(p.name for p in block.parent.iterdir()) == [block.name]  # no temporary file left


def test_hsm_master_key_file_goes_through_the_one_helper(tmp_path: Path, synced: list[Path]) -> None:
    key_file = tmp_path / "hsm" / "master.key"
    key = create_master_key(key_file, random=lambda n: bytes(range(n)))
    assert key_file.read_text() == key.hex().upper() + "\n" and key_file.stat().st_mode & 0o777 == 0o600
    assert synced == [key_file.parent.resolve()]


def test_journal_export_goes_through_the_one_helper(tmp_path: Path, synced: list[Path]) -> None:
    journal = SqliteJournal(tmp_path / "journal.db", "T0000001")
    entry = journal.begin("purchase", "contact", 150, dt.datetime(2026, 1, 2, 3, 4, 5), "12345678")
    journal.finish(entry.txn_id, "approved", outcome="approved offline")
    [written] = journal.export(tmp_path / "out")
    assert written.name == "T0000001-upload-000001.jsonl" and entry.txn_id in written.read_text()
    assert synced == [written.parent.resolve()]  # before: the rename was never made durable
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]


def test_atomic_writer_streams_and_leaves_the_old_file_when_the_block_fails(
    tmp_path: Path, synced: list[Path]
) -> None:
    target = tmp_path / "big.csv"
    with durable.atomic_writer(target) as fh:
        for n in range(1000):
            fh.write(f"{n}\n".encode())
    assert target.read_text().splitlines()[-1] == "999" and synced == [tmp_path.resolve()]
    with pytest.raises(RuntimeError), durable.atomic_writer(target) as fh:
        fh.write(b"torn")
        raise RuntimeError("disk full, say")
    assert target.read_text().splitlines()[-1] == "999"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]  # no temporary file left


def _staged(folder: Path, files: dict[str, bytes]) -> None:
    with durable.StagedFolder(folder) as stage:
        for name, data in files.items():
            with stage.open(name) as fh:
                fh.write(data[:1])
                fh.write(data[1:])


def test_staged_folder_publishes_all_files_together(tmp_path: Path, synced: list[Path]) -> None:
    day = tmp_path / "settlement" / "20261125"
    _staged(day, {"a.csv": b"A\n", "MANIFEST": b"m\n"})
    assert {p.name: p.read_bytes() for p in day.iterdir()} == {"a.csv": b"A\n", "MANIFEST": b"m\n"}
    assert sorted(p.name for p in day.parent.iterdir()) == ["20261125"]  # the staging folder renamed
    assert day.parent.resolve() in synced
    # into an existing folder: file by file, each replaced; other files there are left alone
    (day / "other.txt").write_bytes(b"x")
    _staged(day, {"a.csv": b"B\n", "MANIFEST": b"n\n"})
    assert {p.name: p.read_bytes() for p in day.iterdir()} == {
        "a.csv": b"B\n",
        "MANIFEST": b"n\n",
        "other.txt": b"x",
    }
    assert sorted(p.name for p in day.parent.iterdir()) == ["20261125"]


def test_staged_folder_publishes_nothing_when_the_block_fails(tmp_path: Path) -> None:
    day = tmp_path / "20261125"
    with pytest.raises(RuntimeError), durable.StagedFolder(day) as stage:
        with stage.open("a.csv") as fh:
            fh.write(b"A\n")
        raise RuntimeError("a query failed, say")
    assert list(tmp_path.iterdir()) == []
    with durable.StagedFolder(day):
        pass  # nothing opened: nothing made
    assert list(tmp_path.iterdir()) == []


def test_staged_folder_removes_what_a_dead_process_left(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    left = tmp_path / f".20261125.{int(dead.stdout)}.partial"
    left.mkdir()
    (left / "a.csv").write_bytes(b"torn")
    alive = tmp_path / f".20261125.{1}.partial"  # pid 1 is alive: another process's, not touched
    alive.mkdir()
    _staged(tmp_path / "20261125", {"a.csv": b"A\n"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "20261125"]
