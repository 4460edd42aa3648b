"""Durable file writes: the one atomic-write helper of the project (POSIX ``rename(2)``; ``fsync(2)``).

:func:`atomic_write` follows the usual POSIX recipe so that a crash at any moment leaves either the old file
or the new one, never a torn one: write a temporary file (mode 0600) in the same directory, ``fsync`` it,
``rename`` it over the target (atomic on POSIX file systems), then ``fsync`` the directory so that the rename
itself is durable (:func:`fsync_directory`).

It sits below the key custody ring (DESIGN.md §3) so that every ring that writes files — the HSM's key
store, card images (:mod:`citycard.files`), demo keys, the terminal journal's exports, the CLI — uses this
one helper (and :func:`create_new` for a file that must never be overwritten). It does file I/O, so the
pure core (codec, crypto, chip, kernel, ledger) may not import it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["atomic_write", "create_new", "fsync_directory"]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, rename, fsync directory).
    A symbolic link is written through: its target is replaced, the link stays."""
    target = Path(path).resolve()
    directory = target.parent if str(target.parent) else Path(".")
    tmp = directory / f".{target.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:  # name the file the caller asked for, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def create_new(path: str | os.PathLike[str], data: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``data``, atomically and durably; ``FileExistsError`` if it
    exists: never overwrites (a key file, whose loss nothing could undo). The data is written to a temporary
    file and synced, then hard-linked to ``path`` (``link(2)`` fails if ``path`` exists), so a reader, or
    another process creating the same file at the same moment, sees the whole file or none."""
    target = Path(path)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_directory(target.parent)


def fsync_directory(directory: Path) -> None:
    """Make a file's creation or rename in ``directory`` durable (skipped where a directory cannot be
    opened: the rename is still atomic)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
