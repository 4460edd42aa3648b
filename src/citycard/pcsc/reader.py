"""A card in a real PC/SC reader as a ``transmit(bytes) -> bytes`` transport, through pyscard.

This is what the kernel runner needs to drive a physical card (or the emulated one served into the
vsmartcard "Virtual PCD" reader by :mod:`citycard.pcsc.vpcd`). ``61xx`` / ``6Cxx`` are left to the kernel
(EMV Book 1 §9.3 T=0 case 4 handling), so the transport returns exactly what the reader returned.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["PcscReader", "ReaderError", "list_readers"]


PYSCARD_MISSING = (
    "PC/SC support is not installed: run 'make pcsc' (Debian packages pcscd libpcsclite-dev swig, "
    "then pip install 'citycard[pcsc]')"
)


class ReaderError(ConnectionError):
    """No such reader, no card in it, the card went away, or pyscard (the ``pcsc`` extra) is absent."""


def list_readers() -> list[str]:
    """The names of the PC/SC readers the system knows (empty when pcscd is not running)."""
    try:
        from smartcard.System import readers

        return [str(r) for r in readers()]
    except Exception:  # pcscd absent or not answering
        return []


class PcscReader:
    """Connect to the first reader whose name contains ``name`` (any reader when empty)."""

    def __init__(self, name: str = "", *, protocol: str = "any") -> None:
        try:
            from smartcard.CardConnection import CardConnection
            from smartcard.System import readers
        except ImportError:
            raise ReaderError(PYSCARD_MISSING) from None

        try:
            found = [r for r in readers() if name.lower() in str(r).lower()]
        except Exception as exc:
            raise ReaderError(f"PC/SC unavailable: {exc}") from None
        if not found:
            raise ReaderError(f"no PC/SC reader matching {name!r}")
        self.name = str(found[0])
        self._connection: Any = found[0].createConnection()
        protocols = {"any": None, "T0": CardConnection.T0_protocol, "T1": CardConnection.T1_protocol}
        try:
            self._connection.connect(protocols[protocol])
        except Exception as exc:
            raise ReaderError(f"{self.name}: no card ({exc})") from None

    @property
    def atr(self) -> bytes:
        return bytes(self._connection.getATR())

    def transmit(self, apdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._connection.transmit(list(apdu))
        except Exception as exc:
            raise ReaderError(f"{self.name}: {exc}") from None
        return bytes(data) + bytes((sw1, sw2))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self._connection.disconnect()

    def __enter__(self) -> PcscReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
