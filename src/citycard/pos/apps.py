"""A terminal reads the industry applications on a card offline: SELECT the PBOC application, then READ
RECORD of each record of the applications file (SFI 22, layout in ``citycard.codec.appfile`` and
docs/public-services.md) — no online contact, no security (the file is readable by anyone, written only
by the issuer's script)."""

from __future__ import annotations

from collections.abc import Callable

from citycard.codec import aids, commands
from citycard.codec.apdu import ResponseApdu
from citycard.codec.appfile import APP_FILE_SFI, APP_NUMBERS, AppFileError, AppRecord, decode_record

__all__ = ["CardAppsError", "read_applications"]

PBOC_DEBIT_AID = aids.DEBIT
"""The application whose files are read (JR/T 0025 UnionPay debit)."""
_SW_FILE_NOT_FOUND = 0x6A82


class CardAppsError(Exception):
    """The card answered the read with something other than the file's records (the reason is the
    message)."""


def _send(transmit: Callable[[bytes], bytes], command: bytes, what: str) -> ResponseApdu:
    response = ResponseApdu.parse(transmit(command))
    if not response.ok and response.sw != _SW_FILE_NOT_FOUND:
        raise CardAppsError(f"{what}: status {response.sw:04X}")
    return response


def read_applications(
    transmit: Callable[[bytes], bytes], aid: bytes = PBOC_DEBIT_AID
) -> list[AppRecord] | None:
    """The records of the card's applications file, in record order; None for a card without the file."""
    _send(transmit, commands.select(aid), "SELECT")
    records = []
    for number in range(1, len(APP_NUMBERS) + 1):
        command = commands.read_record(APP_FILE_SFI, number)
        response = _send(transmit, command, f"READ RECORD {number} of SFI {APP_FILE_SFI}")
        if response.sw == _SW_FILE_NOT_FOUND:
            return None
        try:
            records.append(decode_record(response.data))
        except AppFileError as exc:
            raise CardAppsError(f"record {number} of SFI {APP_FILE_SFI}: {exc}") from None
    return records
