"""PIN blocks: online (ISO 9564-1 format 0; format 1, without a PAN, for a PIN chosen before the card has
one), offline plaintext and enciphered (EMV 4.3 Book 3 §6.5.12,
Book 2 §7), and the enciphered PIN data of the PIN CHANGE/UNBLOCK issuer script (EMV Book 2 §9.3, A1.2;
VIS 1.4 / JR/T 0025.5).

**Offline PIN encipherment** (Book 2 §7.1–7.2): the terminal builds ``7F ‖ PIN block ‖ ICC unpredictable
number (8) ‖ random pad`` to the length of the ICC PIN encipherment (or ICC) public key and applies the raw
RSA public operation; the card recovers it with its private key and checks ``7F`` and its own challenge.

**PIN CHANGE/UNBLOCK data** (INS ``24``; P2 ``00`` unblock, ``01`` change with the current PIN, ``02`` change
without it). Two formats are implemented, both enciphered under the secure-messaging confidentiality
session key after padding method 2:

- PBOC / VIS (when ``udk_ac`` is given): the 8-byte block ``0N PIN… F…`` (ISO format 0 layout) is xored with
  ``00000000 ‖ UDK-A[4:8]`` (the rightmost 4 bytes of the left half of the card's AC master key) and, when
  the current PIN is used (P2 ``01``), with the current PIN's digits left-justified and zero-filled; the
  enciphered data is ``08 ‖ block ‖ 80 00…`` (16 bytes) in ECB mode. PBOC 2.0 debit/credit inherited
  this from VIS 1.4 (an assumption: JR/T 0025.5 itself is not public here); the public pyemv test vectors
  for the VIS format pin the bytes down (tests/crypto/test_pin.py).
- EMV Common Core Definitions (no ``udk_ac``): the plaintext offline PIN block (format 2, ``2N PIN… F…``)
  followed by ``80 00…`` padding (16 bytes), CBC mode with a zero IV (Book 2 A1.1); no current PIN.
- ISO format 2 alone (:attr:`PinChangeFormat.ISO2_ECB`): the 8-byte format-2 block enciphered in ECB, no
  padding (M/Chip style; the choice of docs/card-profile.md §9 for the emulated card).

PINs are never logged or put in exception messages.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from .des import cbc_decrypt, cbc_encrypt, ecb_decrypt, ecb_encrypt, xor
from .mac import pad_method2
from .rsa_cert import RsaKey, byte_length, rsa_private_raw, rsa_public_raw

__all__ = [
    "ChallengeMismatchError",
    "PinBlockError",
    "PinChangeFormat",
    "decipher_offline_pin",
    "decrypt_pin_change_data",
    "encipher_offline_pin",
    "encrypt_pin_change_data",
    "pin_block_iso0",
    "pin_block_iso1",
    "pin_from_iso0",
    "pin_from_iso1",
    "pin_from_offline_block",
    "plaintext_offline_pin_block",
]

_OFFLINE_HEADER = 0x7F


class PinBlockError(ValueError):
    """A PIN block (or enciphered PIN data) does not have the expected format; says what, never the PIN."""


class ChallengeMismatchError(PinBlockError):
    """The ICC unpredictable number recovered from an enciphered PIN is not the card's last challenge."""


class PinChangeFormat(Enum):
    """Format of the enciphered PIN data in PIN CHANGE/UNBLOCK (see the module docstring)."""

    PBOC_VIS = "pboc"
    """``08 ‖ (0N PIN F… ⊕ UDK-A mask [⊕ current PIN]) ‖ 80…``, ECB, 16 bytes; needs ``udk_ac``."""
    EMV_CCD = "ccd"
    """``2N PIN F… ‖ 80 00…``, CBC with zero IV, 16 bytes."""
    ISO2_ECB = "iso2"
    """``2N PIN F…``, ECB, 8 bytes."""


def _check_pin(pin: str) -> None:
    if not pin.isdigit() or not pin.isascii() or not 4 <= len(pin) <= 12:
        raise PinBlockError("PIN must be 4 to 12 decimal digits")


def _pin_field(control: int, pin: str) -> bytes:
    _check_pin(pin)
    return bytes.fromhex(f"{control:X}{len(pin):X}{pin}".ljust(16, "F"))


def _read_pin_field(block: bytes, control: int) -> str:
    if len(block) != 8:
        raise PinBlockError(f"PIN block must be 8 bytes, not {len(block)}")
    digits = block.hex().upper()
    if int(digits[0], 16) != control:
        raise PinBlockError(f"PIN block control field is {digits[0]}, expected {control:X}")
    length = int(digits[1], 16)
    if not 4 <= length <= 12:
        raise PinBlockError(f"PIN length {length} out of range 4..12")
    pin, fill = digits[2 : 2 + length], digits[2 + length :]
    if not pin.isdigit():
        raise PinBlockError("PIN field holds a non-decimal digit")
    if fill != "F" * len(fill):
        raise PinBlockError("PIN block filler is not all F")
    return pin


def _pan_field(pan: str) -> bytes:
    pan = pan.upper().rstrip("F")
    if not pan.isdigit() or not 2 <= len(pan) <= 19:
        raise PinBlockError("PAN must be 2 to 19 decimal digits")
    return bytes.fromhex("0000" + pan[:-1][-12:].rjust(12, "0"))


def pin_block_iso0(pin: str, pan: str) -> bytes:
    """ISO 9564-1 format 0: ``0N PIN… F…`` xor ``0000 ‖`` 12 rightmost PAN digits before the check digit."""
    return xor(_pin_field(0, pin), _pan_field(pan))


def pin_from_iso0(block: bytes, pan: str) -> str:
    """The PIN in an ISO format 0 block; raises :class:`PinBlockError` when the block is malformed."""
    if len(block) != 8:
        raise PinBlockError(f"PIN block must be 8 bytes, not {len(block)}")
    return _read_pin_field(xor(block, _pan_field(pan)), 0)


def pin_block_iso1(pin: str, fill: bytes) -> bytes:
    """ISO 9564-1 format 1: ``1N PIN…`` then fill digits from ``fill`` (a unique or random value, at least
    7 bytes); no PAN, for a PIN entered before the card has one (instant issuance)."""
    _check_pin(pin)
    if len(fill) < 7:
        raise ValueError("format 1 needs at least 7 bytes of fill")
    head = f"1{len(pin):X}{pin}"
    return bytes.fromhex(head + fill.hex().upper()[: 16 - len(head)])


def pin_from_iso1(block: bytes) -> str:
    """The PIN in an ISO format 1 block (any fill); raises :class:`PinBlockError` when malformed."""
    if len(block) != 8:
        raise PinBlockError(f"PIN block must be 8 bytes, not {len(block)}")
    digits = block.hex().upper()
    if digits[0] != "1":
        raise PinBlockError(f"PIN block control field is {digits[0]}, expected 1")
    length = int(digits[1], 16)
    if not 4 <= length <= 12 or not digits[2 : 2 + length].isdigit():
        raise PinBlockError("PIN length out of range 4..12, or a non-decimal PIN digit")
    return digits[2 : 2 + length]


def plaintext_offline_pin_block(pin: str) -> bytes:
    """The plaintext offline PIN block of VERIFY (EMV Book 3 §6.5.12; ISO format 2): ``2N PIN… F…``."""
    return _pin_field(2, pin)


def pin_from_offline_block(block: bytes) -> str:
    """The PIN in a plaintext offline PIN block; raises :class:`PinBlockError` when malformed."""
    return _read_pin_field(block, 2)


def encipher_offline_pin(
    pin: str, icc_unpredictable: bytes, pub_n: int, pub_e: int, rnd: Callable[[int], bytes]
) -> bytes:
    """Enciphered offline PIN for VERIFY P2=88 (EMV Book 2 §7.1).

    ``7F ‖ PIN block ‖ ICC unpredictable number ‖ random pad`` to the modulus length, raw RSA public
    operation. ``rnd(k)`` returns ``k`` random bytes (the terminal's random source, passed in).
    """
    if len(icc_unpredictable) != 8:
        raise ValueError(f"ICC unpredictable number must be 8 bytes, not {len(icc_unpredictable)}")
    size = byte_length(pub_n)
    if size < 17 or pub_n.bit_length() % 8 != 0:
        raise ValueError("PIN encipherment modulus must be a whole number of bytes, at least 17")
    pad = rnd(size - 17)
    assert len(pad) == size - 17, "random source returned the wrong length"
    block = bytes([_OFFLINE_HEADER]) + plaintext_offline_pin_block(pin) + icc_unpredictable + pad
    return rsa_public_raw(pub_n, pub_e, block)


def decipher_offline_pin(enciphered: bytes, key: RsaKey, icc_unpredictable: bytes) -> str:
    """Card side of §7.2: recover the block, check ``7F`` and the challenge, return the PIN.

    Raises :class:`PinBlockError` on a wrong length, header, challenge or PIN block.
    """
    if len(enciphered) != key.size:
        raise PinBlockError(f"enciphered PIN is {len(enciphered)} bytes, the key {key.size}")
    try:
        block = rsa_private_raw(key, enciphered)
    except ValueError as exc:
        raise PinBlockError("enciphered PIN is not smaller than the modulus") from exc
    if block[0] != _OFFLINE_HEADER:
        raise PinBlockError("recovered data header is not 7F")
    if block[9:17] != icc_unpredictable:
        raise ChallengeMismatchError("recovered ICC unpredictable number does not match the challenge")
    return pin_from_offline_block(block[1:9])


def _pboc_mask(udk_ac: bytes) -> bytes:
    if len(udk_ac) != 16:
        raise ValueError(f"UDK (AC) must be 16 bytes, not {len(udk_ac)}")
    return bytes(4) + udk_ac[4:8]


def _current_pin_field(current_pin: str) -> bytes:
    _check_pin(current_pin)
    return bytes.fromhex(current_pin.ljust(16, "0"))


def _choose(pin_format: PinChangeFormat | None, udk_ac: bytes | None) -> PinChangeFormat:
    if pin_format is None:
        return PinChangeFormat.EMV_CCD if udk_ac is None else PinChangeFormat.PBOC_VIS
    if pin_format is PinChangeFormat.PBOC_VIS and udk_ac is None:
        raise ValueError("the PBOC/VIS format needs the card's UDK (AC)")
    return pin_format


def encrypt_pin_change_data(
    enc_session_key: bytes,
    new_pin: str,
    current_pin: str | None = None,
    *,
    udk_ac: bytes | None = None,
    pin_format: PinChangeFormat | None = None,
) -> bytes:
    """Enciphered PIN data of a PIN CHANGE/UNBLOCK script command (see the module docstring).

    ``pin_format`` defaults to PBOC/VIS when ``udk_ac`` (the card's AC master key) is given, else EMV CCD.
    Only PBOC/VIS carries ``current_pin``.
    """
    if len(enc_session_key) != 16:
        raise ValueError(f"ENC session key must be 16 bytes, not {len(enc_session_key)}")
    fmt = _choose(pin_format, udk_ac)
    if fmt is not PinChangeFormat.PBOC_VIS and current_pin is not None:
        raise ValueError(f"the {fmt.value} format does not carry the current PIN")
    if fmt is PinChangeFormat.EMV_CCD:
        return cbc_encrypt(enc_session_key, pad_method2(plaintext_offline_pin_block(new_pin)))
    if fmt is PinChangeFormat.ISO2_ECB:
        return ecb_encrypt(enc_session_key, plaintext_offline_pin_block(new_pin))
    assert udk_ac is not None
    block = xor(_pin_field(0, new_pin), _pboc_mask(udk_ac))
    if current_pin is not None:
        block = xor(block, _current_pin_field(current_pin))
    return ecb_encrypt(enc_session_key, pad_method2(b"\x08" + block))


def decrypt_pin_change_data(
    enc_session_key: bytes,
    data: bytes,
    current_pin: str | None = None,
    *,
    udk_ac: bytes | None = None,
    pin_format: PinChangeFormat | None = None,
) -> str:
    """Card side of :func:`encrypt_pin_change_data`: the new PIN, or :class:`PinBlockError`."""
    if len(enc_session_key) != 16:
        raise ValueError(f"ENC session key must be 16 bytes, not {len(enc_session_key)}")
    fmt = _choose(pin_format, udk_ac)
    want = 8 if fmt is PinChangeFormat.ISO2_ECB else 16
    if len(data) != want:
        raise PinBlockError(f"enciphered PIN data must be {want} bytes, not {len(data)}")
    if fmt is PinChangeFormat.ISO2_ECB:
        return pin_from_offline_block(ecb_decrypt(enc_session_key, data))
    if fmt is PinChangeFormat.EMV_CCD:
        plain = cbc_decrypt(enc_session_key, data)
        if plain[8:] != b"\x80" + bytes(7):
            raise PinBlockError("padding of the enciphered PIN data is wrong")
        return pin_from_offline_block(plain[:8])
    assert udk_ac is not None
    plain = ecb_decrypt(enc_session_key, data)
    if plain[0] != 0x08 or plain[9:] != b"\x80" + bytes(6):
        raise PinBlockError("length byte or padding of the enciphered PIN data is wrong")
    block = xor(plain[1:9], _pboc_mask(udk_ac))
    if current_pin is not None:
        block = xor(block, _current_pin_field(current_pin))
    return _read_pin_field(block, 0)
