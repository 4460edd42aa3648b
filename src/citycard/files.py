"""Files on disk: atomic writes, and loading and saving card images (an adapter: the only file I/O of the
card side).

:func:`atomic_write` (from :mod:`citycard.durable`, the project's one atomic-write helper) leaves either the
old file or the new one after a crash, never a torn one: temporary file, ``fsync``, ``rename``, ``fsync`` of
the directory.

:class:`CardFile` is one session with a card image: an exclusive lock (``flock``, POSIX advisory) on a lock
file beside the image (``.card.json.lock``; not the image itself, which each save replaces by a rename) is
held from the load to the last save, so that two processes never drive one card at once — each would load
the same balance and ATC, and the last save would win. A symbolic link to an image names the same card: the
lock and the saves go to the file it points to (a save never replaces the link with a copy); an image with
more than one hard link is refused (:class:`~citycard.chip.image.ImageError`). A second process waits at
most :data:`LOCK_TIMEOUT_S`, then gets :class:`CardBusyError`. A save writes only when the image changed.

**Where an issuer's card images live.** ``<cards>/<BANK>/<shard>/<PAN>.json``, the shard being the three
PAN digits before the Luhn check digit (:func:`card_image_path`): a bank's serially numbered cards spread
over up to 1000 folders, so 100,000 cards make about 100 files per folder instead of one folder of 100,000.
:func:`find_card_image` finds a PAN's image in any bank's folder, or in the flat ``<cards>/<PAN>.json``
layout of earlier versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from citycard.chip.image import CardImage, ImageError
from citycard.durable import atomic_write

__all__ = [
    "LOCK_TIMEOUT_S",
    "BusyError",
    "CardFile",
    "atomic_write",
    "card_image_path",
    "card_lock_path",
    "exclusive_lock",
    "find_card_image",
    "is_pan",
    "load_card",
    "save_card",
]

LOCK_TIMEOUT_S = 30.0
"""How long a process waits for a card image another process holds (a purchase takes well under a second;
``card serve`` holds its card until it stops)."""
_LOCK_POLL_S = 0.02


def load_card(path: str | os.PathLike[str]) -> CardImage:
    """Read a card image; raises ``OSError`` or :class:`citycard.chip.image.ImageError`."""
    return CardImage.from_json(Path(path).read_bytes())


def save_card(path: str | os.PathLike[str], image: CardImage) -> None:
    """Write a card image atomically."""
    atomic_write(path, image.to_json())


def card_lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of a card image: ``.card.json.lock`` beside ``card.json`` (beside the file itself when
    ``path`` is a symbolic link, so that every name of one card takes one lock)."""
    target = Path(path).resolve()
    return target.with_name(f".{target.name}.lock")


class BusyError(OSError):
    """Another process holds the file (a card image in a purchase, ``card apdu`` or ``card serve``; a
    terminal journal in a ``pos`` command)."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], what: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the lock file ``path`` (created if missing, never deleted: deleting
    would let two processes lock two different files); :class:`BusyError` naming ``what`` after
    ``timeout_s`` (default :data:`LOCK_TIMEOUT_S`)."""
    fd = _lock(Path(path), what, LOCK_TIMEOUT_S if timeout_s is None else timeout_s)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class CardFile:
    """A card image held for one session: ``with CardFile(path) as held: ... held.image ... held.save()``.

    The lock is taken before the image is read and released after the last save; :meth:`save` writes the
    image (atomically) only when it differs from what is on disk. Raises :class:`BusyError` after
    ``timeout_s``, ``OSError`` or :class:`citycard.chip.image.ImageError` on entry (nothing is written).
    """

    def __init__(self, path: str | os.PathLike[str], timeout_s: float | None = None) -> None:
        self.path = Path(path)
        self.timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
        self._fd: int | None = None
        self._image: CardImage | None = None
        self._saved = b""

    @property
    def lock_path(self) -> Path:
        return card_lock_path(self.path)

    @property
    def image(self) -> CardImage:
        assert self._image is not None, "use CardFile in a with statement"
        return self._image

    def __enter__(self) -> CardFile:
        if not self.path.is_file():  # no lock file is made beside a missing image
            raise FileNotFoundError(2, "no such card image", str(self.path))
        self._fd = _lock(self.lock_path, f"card image {self.path}", self.timeout_s)
        try:
            links = self.path.stat().st_nlink
            if links > 1:  # two names, two locks; the first save (a rename) would split them into two cards
                raise ImageError("file", f"has {links} hard links: each name would become a card of its own")
            self._saved = self.path.read_bytes()
            self._image = CardImage.from_json(self._saved)
        except BaseException:
            self._unlock()
            raise
        return self

    def save(self) -> None:
        """Write the image if it changed since it was read or last saved; ``OSError`` if that fails."""
        assert self._fd is not None, "the card image is not held"
        data = self.image.to_json()
        if data != self._saved:
            atomic_write(self.path, data)
            self._saved = data

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._unlock()

    def _unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _lock(path: Path, what: str, timeout_s: float) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BusyError(f"{what} is in use by another process (waited {timeout_s:g} s)") from None
            time.sleep(_LOCK_POLL_S)
        except BaseException:
            os.close(fd)
            raise


def is_pan(text: str) -> bool:
    """12 to 19 decimal digits (ISO/IEC 7812-1)."""
    return text.isascii() and text.isdigit() and 12 <= len(text) <= 19


def card_image_path(cards: Path, bank_code: str, pan: str) -> Path:
    """Where the issuer keeps the image of card ``pan`` of bank ``bank_code``."""
    assert is_pan(pan) and bank_code.isalnum(), (bank_code, len(pan))
    return cards / bank_code / pan[-4:-1] / f"{pan}.json"


def find_card_image(cards: Path, pan: str) -> Path | None:
    """The image of an issued card under ``cards`` (whichever bank's), or None."""
    if not is_pan(pan):
        return None
    for path in sorted(cards.glob(f"*/{pan[-4:-1]}/{pan}.json")):
        return path
    flat = cards / f"{pan}.json"
    return flat if flat.is_file() else None
