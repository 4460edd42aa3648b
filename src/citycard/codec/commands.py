"""The commands a terminal sends to a card, each built in one place with
:class:`~citycard.codec.apdu.CommandApdu` (EMV 4.3 Book 1 §11 and Book 3 §6.5; ISO/IEC 7816-4; JR/T 0025.5,
and JR/T 0025.14 for UPDATE CAPP DATA CACHE): the class, instruction and parameters of each are written
once, here, not by hand where it is sent.

Every command is short-form (ISO/IEC 7816-3 §12.1): data of more than 255 bytes, which a PBOC card never asks
for, raises :class:`~citycard.codec.apdu.ApduError` (a ``ValueError``, so a kernel reads it as card data it
cannot use) rather than being sent in a form the card would refuse.
"""

from __future__ import annotations

from citycard.codec import tlv
from citycard.codec.apdu import ApduError, CommandApdu, Ins

__all__ = [
    "PPSE_NAME",
    "PSE_NAME",
    "external_authenticate",
    "generate_ac",
    "get_challenge",
    "get_data",
    "get_processing_options",
    "get_response",
    "internal_authenticate",
    "read_record",
    "select",
    "update_capp_data_cache",
    "verify",
]

PSE_NAME = b"1PAY.SYS.DDF01"
"""The contact directory's DF name, the Payment System Environment (EMV 4.3 Book 1 §12.2.2)."""
PPSE_NAME = b"2PAY.SYS.DDF01"
"""The contactless directory's, the Proximity PSE (EMV Contactless Book B §3.3; JR/T 0025.12)."""

_ISO = 0x00  # CLA of the interindustry commands (ISO/IEC 7816-4 §5.1.1)
_PROPRIETARY = 0x80  # CLA of EMV's and PBOC's own (Book 3 §6.3.2)
_LE_ANY = 256  # Le = 00: as many bytes as the card has (short form)
_MAX_DATA = 255


def _short(cla: int, ins: Ins, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    if len(data) > _MAX_DATA:
        raise ApduError(f"{ins.label}: {len(data)} bytes of data do not fit a short command APDU")
    return CommandApdu(cla, ins, p1, p2, data, le).to_bytes()


def _record_p2(sfi: int) -> int:
    """P2 of a record command naming a file by its SFI: ``SFI ‖ 100`` (P1 is the record's number)."""
    assert 1 <= sfi <= 30, sfi
    return sfi << 3 | 0x04


def select(name: bytes, *, next_occurrence: bool = False) -> bytes:
    """SELECT by DF name (an AID or the PSE's ``1PAY.SYS.DDF01``): ``00 A4 04 00|02 Lc name 00``."""
    assert name, "SELECT by name needs a name"
    return _short(_ISO, Ins.SELECT, 0x04, 0x02 if next_occurrence else 0x00, name, _LE_ANY)


def read_record(sfi: int, record: int) -> bytes:
    """READ RECORD ``record`` of the file ``sfi``: ``00 B2 record SFI‖100 00``."""
    assert 1 <= record <= 0xFF, record
    return _short(_ISO, Ins.READ_RECORD, record, _record_p2(sfi), le=_LE_ANY)


def get_data(tag: str) -> bytes:
    """GET DATA of a one- or two-byte tag (ATC, PIN try counter, EC balance …): ``80 CA P1 P2 00``."""
    p1p2 = bytes.fromhex(tag).rjust(2, b"\x00")
    assert len(p1p2) == 2, tag
    return _short(_PROPRIETARY, Ins.GET_DATA, p1p2[0], p1p2[1], le=_LE_ANY)


def get_processing_options(pdol_data: bytes) -> bytes:
    """GET PROCESSING OPTIONS with the PDOL's values in their ``83`` template: ``80 A8 00 00 Lc 83 … 00``."""
    return _short(_PROPRIETARY, Ins.GET_PROCESSING_OPTIONS, 0x00, 0x00, tlv.encode("83", pdol_data), _LE_ANY)


def generate_ac(reference_control: int, cdol_data: bytes) -> bytes:
    """GENERATE AC: P1 the cryptogram asked for (``00`` AAC, ``40`` TC, ``80`` ARQC) with ``10`` for CDA,
    the CDOL's values as data: ``80 AE P1 00 Lc data 00``."""
    assert reference_control & ~0xD0 == 0, reference_control
    return _short(_PROPRIETARY, Ins.GENERATE_AC, reference_control, 0x00, cdol_data, _LE_ANY)


def internal_authenticate(ddol_data: bytes) -> bytes:
    """INTERNAL AUTHENTICATE (DDA) with the DDOL's values: ``00 88 00 00 Lc data 00``."""
    return _short(_ISO, Ins.INTERNAL_AUTHENTICATE, 0x00, 0x00, ddol_data, _LE_ANY)


def external_authenticate(issuer_authentication_data: bytes) -> bytes:
    """EXTERNAL AUTHENTICATE with the issuer's ``91`` (ARPC and response code): ``00 82 00 00 Lc data``."""
    return _short(_ISO, Ins.EXTERNAL_AUTHENTICATE, 0x00, 0x00, issuer_authentication_data)


def get_challenge() -> bytes:
    """GET CHALLENGE, 8 bytes (to encipher an offline PIN): ``00 84 00 00 08``."""
    return _short(_ISO, Ins.GET_CHALLENGE, 0x00, 0x00, le=8)


def verify(pin_format: int, pin_block: bytes) -> bytes:
    """VERIFY an offline PIN: P2 ``80`` plaintext, ``88`` enciphered: ``00 20 00 P2 Lc block``."""
    assert pin_format in (0x80, 0x88), pin_format
    return _short(_ISO, Ins.VERIFY, 0x00, pin_format, pin_block)


def get_response(available: int) -> bytes:
    """GET RESPONSE after ``61xx``: ``00 C0 00 00 xx`` (``xx`` = 00: 256 bytes)."""
    assert 0 <= available <= 0xFF, available
    return _short(_ISO, Ins.GET_RESPONSE, 0x00, 0x00, le=available or _LE_ANY)


def update_capp_data_cache(sfi: int, record: int, data: bytes) -> bytes:
    """UPDATE CAPP DATA CACHE: a record of an extended application staged for the payment's commit
    (docs/card-profile.md): ``80 DE record SFI‖100 Lc data``."""
    assert 1 <= record <= 0xFF, record
    return _short(_PROPRIETARY, Ins.UPDATE_CAPP_DATA_CACHE, record, _record_p2(sfi), data)
