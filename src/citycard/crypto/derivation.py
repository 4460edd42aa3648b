"""Key derivation: ICC master keys from the issuer master key, and session keys (EMV Book 2 A1.3, A1.4;
JR/T 0025.7 — PBOC 2.0 session keys).

- :func:`derive_icc_mk_a` — EMV 4.3 Book 2 A1.4.1, option A: the ICC master key (the PBOC "UDK") from the
  issuer master key (IMK/MDK), the PAN and the PAN sequence number.
- :func:`derive_icc_mks_a` — the same for many cards, in one pass under the IMK.
- :func:`derive_pboc_session_key` — PBOC 2.0 (JR/T 0025.7): the AC / ARPC / script-MAC session key from the
  UDK and the ATC: ``3DES(UDK, 000000000000‖ATC) ‖ 3DES(UDK, 000000000000‖(ATC ⊕ FFFF))``.
- :func:`derive_pboc_session_keys` — the same for several ATCs of one card, in one pass under the UDK.
- :func:`derive_common_session_key` — EMV 4.3 Book 2 A1.3, the "common session key derivation".

All keys are double-length 3DES keys (16 bytes). Derived keys have odd DES parity.
"""

from __future__ import annotations

from collections.abc import Sequence

from .des import _ODD_PARITY, _context, adjust_parity, ecb_encrypt, ecb_encrypt_once, xor

__all__ = [
    "derive_common_session_key",
    "derive_icc_mk_a",
    "derive_icc_mks_a",
    "derive_pboc_session_key",
    "derive_pboc_session_keys",
    "icc_mk_a_input",
]

_FF8 = b"\xff" * 8
_ONES64 = (1 << 64) - 1


def _check_key(key: bytes, what: str) -> None:
    if len(key) != 16:
        raise ValueError(f"{what} must be a 16-byte double-length key, not {len(key)} bytes")


def icc_mk_a_input(pan: str, psn: str = "00") -> bytes:
    """Y of option A: the rightmost 16 digits of PAN ‖ PSN, zero-padded on the left, as 8 bytes of BCD.

    ``psn`` is the two-digit PAN sequence number (``5F34``); ``"00"`` when the card has none. A trailing
    ``F`` pad in the PAN (from ``5A``) is removed.
    """
    return bytes.fromhex(_icc_mk_a_digits(pan, psn))


def _icc_mk_a_digits(pan: str, psn: str) -> str:
    """The 16 decimal digits of :func:`icc_mk_a_input`; ``ValueError`` for a malformed PAN or PSN."""
    pan = pan.upper().rstrip("F")
    if not pan.isdigit() or not 1 <= len(pan) <= 19:
        raise ValueError("PAN must be 1 to 19 decimal digits")
    if len(psn) != 2 or not psn.isdigit():
        raise ValueError("PSN must be two decimal digits")
    return (pan + psn)[-16:].rjust(16, "0")


def derive_icc_mk_a(imk: bytes, pan: str, psn: str = "00") -> bytes:
    """ICC master key (UDK) by EMV Book 2 A1.4.1 option A.

    Y = rightmost 16 digits of PAN‖PSN; ZL = 3DES(IMK, Y); ZR = 3DES(IMK, Y ⊕ FF…FF); MK = ZL‖ZR with odd
    parity.
    """
    _check_key(imk, "issuer master key")
    y = icc_mk_a_input(pan, psn)
    return adjust_parity(ecb_encrypt(imk, y + xor(y, _FF8)))


def derive_icc_mks_a(imk: bytes, cards: Sequence[tuple[str, str]]) -> list[bytes]:
    """:func:`derive_icc_mk_a` of each (PAN, PSN) of ``cards``, in order: the blocks Y ‖ Y ⊕ FF…FF of every
    card enciphered by one call under the IMK (the cards of a clearing batch). Every card's PAN and PSN are
    checked before any block is enciphered; ``ValueError`` names the first bad card (from 0)."""
    _check_key(imk, "issuer master key")
    blocks = bytearray()
    for i, (pan, psn) in enumerate(cards):
        try:
            y = int(_icc_mk_a_digits(pan, psn), 16)  # decimal digits read as hex: their BCD
        except ValueError as exc:
            raise ValueError(f"card {i}: {exc}") from None
        blocks += (y << 64 | (y ^ _ONES64)).to_bytes(16, "big")
    if not blocks:
        return []
    keys: bytes = _context(imk, False).update(bytes(blocks)).translate(_ODD_PARITY)
    return [keys[i : i + 16] for i in range(0, len(keys), 16)]


def derive_pboc_session_key(udk: bytes, atc: int) -> bytes:
    """PBOC 2.0 session key for cryptograms, ARPC and script MAC (JR/T 0025.7).

    SK = 3DES(UDK, 000000000000‖ATC) ‖ 3DES(UDK, 000000000000‖(ATC ⊕ FFFF)), odd parity.
    """
    if len(udk) != 16:
        _check_key(udk, "UDK")
    if not 0 <= atc <= 0xFFFF:
        raise ValueError(f"ATC {atc} is not a 2-byte value")
    # 000000000000 ‖ ATC ‖ 000000000000 ‖ (ATC ⊕ FFFF) as one 128-bit integer: both blocks in one call
    blocks = (atc << 64 | (atc ^ 0xFFFF)).to_bytes(16, "big")
    sk: bytes = _context(udk, False).update(blocks)  # ecb_encrypt(udk, blocks): whole blocks already
    return sk.translate(_ODD_PARITY)  # adjust_parity


def derive_pboc_session_keys(udk: bytes, atcs: Sequence[int]) -> list[bytes]:
    """:func:`derive_pboc_session_key` for each ATC of ``atcs``, in order: every diversification block of
    the card enciphered by one call under the UDK (a card's cryptograms verified in clearing). The UDK's
    context is made for this call and dropped (:func:`~citycard.crypto.des.ecb_encrypt_once`): clearing
    takes each card once a day, so a context kept would only push the long-lived keys out of the cache."""
    _check_key(udk, "UDK")
    bad = next((atc for atc in atcs if not 0 <= atc <= 0xFFFF), None)
    if bad is not None:
        raise ValueError(f"ATC {bad} is not a 2-byte value")
    blocks = b"".join((atc << 64 | (atc ^ 0xFFFF)).to_bytes(16, "big") for atc in atcs)
    keys = ecb_encrypt_once(udk, blocks).translate(_ODD_PARITY) if blocks else b""
    return [keys[i : i + 16] for i in range(0, len(keys), 16)]


def derive_common_session_key(mk: bytes, r: bytes) -> bytes:
    """EMV Book 2 A1.3 common session key derivation from an 8-byte diversification value R.

    F1 = R0 R1 F0 R3 … R7, F2 = R0 R1 0F R3 … R7; SK = 3DES(MK, F1) ‖ 3DES(MK, F2), odd parity.
    For the AC session key R = ATC ‖ 00…00; for secure messaging R = the ARQC.
    """
    _check_key(mk, "master key")
    if len(r) != 8:
        raise ValueError(f"diversification value R must be 8 bytes, not {len(r)}")
    f1 = r[:2] + b"\xf0" + r[3:]
    f2 = r[:2] + b"\x0f" + r[3:]
    return adjust_parity(ecb_encrypt(mk, f1 + f2))
