"""Files on disk: atomic writes, and loading and saving card images (an adapter: the only file I/O of the
card side).

:func:`atomic_write` follows the usual POSIX recipe so that a crash at any moment leaves either the old file
or the new one, never a torn one: write a temporary file in the same directory, ``fsync`` it, ``rename`` it
over the target (atomic on POSIX file systems), then ``fsync`` the directory so that the rename itself is
durable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from citycard.chip.image import CardImage

__all__ = ["atomic_write", "load_card", "save_card"]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, rename, fsync directory)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    tmp = directory / f".{target.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_card(path: str | os.PathLike[str]) -> CardImage:
    """Read a card image; raises ``OSError`` or :class:`citycard.chip.image.ImageError`."""
    return CardImage.from_json(Path(path).read_bytes())


def save_card(path: str | os.PathLike[str], image: CardImage) -> None:
    """Write a card image atomically."""
    atomic_write(path, image.to_json())
