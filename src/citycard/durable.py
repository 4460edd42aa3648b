"""Durable file writes: the one atomic-write helper of the project (POSIX ``rename(2)``; ``fsync(2)``).

:func:`atomic_write` follows the usual POSIX recipe so that a crash at any moment leaves either the old file
or the new one, never a torn one: write a temporary file (mode 0600) in the same directory, ``fsync`` it,
``rename`` it over the target (atomic on POSIX file systems), then ``fsync`` the directory so that the rename
itself is durable (:func:`fsync_directory`).

It sits below the key custody ring (DESIGN.md §3) so that every ring that writes files — the HSM's key
store, card images (:mod:`citycard.files`), demo keys, the terminal journal's exports, the CLI — uses this
one helper (and :func:`create_new` for a file that must never be overwritten). It does file I/O, so the
pure core (codec, crypto, chip, kernel, ledger) may not import it.

:func:`atomic_writer` is the same recipe for a file written in pieces (a settlement file of a city day is
larger than memory should hold), and :class:`StagedFolder` the same for a set of files that must appear
together (a settled day's files): each is written and ``fsync``-ed in a staging folder beside the target and
only when all are complete are they renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "SYNC_THREADS",
    "StagedFolder",
    "atomic_write",
    "atomic_writer",
    "create_new",
    "fsync_directory",
    "process_alive",
]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, rename, fsync directory).
    A symbolic link is written through: its target is replaced, the link stays."""
    with atomic_writer(path) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` in pieces: a temporary file (mode 0600) beside it, ``fsync``-ed and
    renamed over ``path`` when the block ends, the directory then ``fsync``-ed; when the block raises (or
    the process dies) ``path`` is as it was. A symbolic link is written through."""
    target = Path(path).resolve()
    directory = target.parent if str(target.parent) else Path(".")
    tmp = directory / f".{target.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:  # name the file the caller asked for, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


SYNC_THREADS = 16
"""Threads that ``fsync`` a staged folder's files at once (one at a time, a day of 2 000 merchant
statements spent 17 of its 24 s of file writing in ``fsync``; ext4 commits concurrent ones together)."""


class StagedFolder:
    """Files that appear in ``folder`` together or not at all (a settled day's files).

    Each file is written (:meth:`open`, in pieces) in a staging folder beside ``folder``
    (``.NAME.PID.partial``). When the ``with`` block ends normally every file is ``fsync``-ed (by
    :data:`SYNC_THREADS` threads), then the staging folder, and the files are published: a ``folder``
    that does not exist yet is the staging folder renamed (one atomic rename: all the files or none); into
    an existing one each file is renamed over its namesake in the order they were written (each atomic:
    the old file or the new one; write the file that vouches for the others, a manifest, last). When the
    block raises, or the process dies, nothing is published; a later run removes the staging folders of
    processes that no longer exist. Nothing is created until the first file is opened.
    """

    MAX_FILES = 1 << 20

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.staging = self.folder.parent / f".{self.folder.name}.{os.getpid()}.partial"
        self.names: list[str] = []
        self._open = False

    def __enter__(self) -> StagedFolder:
        return self

    def _start(self) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.parent.glob(f".{self.folder.name}.*.partial"):
            pid = stale.name[len(self.folder.name) + 2 : -len(".partial")]
            if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
                shutil.rmtree(stale, ignore_errors=True)
        self.staging.mkdir()
        self._open = True

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """A new file ``name`` (a plain name, once) of the folder, staged until the block ends."""
        assert name and "/" not in name and name not in (".", "..") and name not in self.names, name
        assert len(self.names) < self.MAX_FILES
        if not self._open:
            self._start()
        fd = os.open(self.staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            yield fh
        self.names.append(name)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._open:
            return
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        with ThreadPoolExecutor(SYNC_THREADS) as pool:  # the file system commits concurrent fsyncs together
            list(pool.map(_fsync_file, (self.staging / name for name in self.names)))
        fsync_directory(self.staging)
        try:
            os.rename(self.staging, self.folder)  # replaces nothing, or an empty folder
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
        else:
            fsync_directory(self.folder.parent)
            return
        for name in self.names:
            os.replace(self.staging / name, self.folder / name)
        fsync_directory(self.folder)
        os.rmdir(self.staging)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
