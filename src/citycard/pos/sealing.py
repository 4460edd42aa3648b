"""PANs at rest in the terminal: enciphered under the terminal's data key (3DES-CBC, zero IV, ISO/IEC
9797-1 padding method 2), so the journal and the upload file never hold a PAN in clear (DESIGN.md §4.8).
The acquirer, which shares the data key (in its HSM), unseals them for the batch upload (0320)."""

from __future__ import annotations

from citycard.crypto.des import cbc_decrypt, cbc_encrypt
from citycard.crypto.mac import pad_method2

__all__ = ["SealError", "seal_pan", "unseal_pan"]


class SealError(ValueError):
    """A sealed PAN that does not unseal (wrong key or corrupted)."""


def seal_pan(data_key: bytes, pan: str) -> bytes:
    if not pan.isdigit() or not 8 <= len(pan) <= 19:
        raise ValueError("a PAN is 8 to 19 digits")
    return cbc_encrypt(data_key, pad_method2(pan.encode("ascii")))


def unseal_pan(data_key: bytes, sealed: bytes) -> str:
    if not sealed or len(sealed) % 8:
        raise SealError("sealed PAN is not a whole number of blocks")
    plain = cbc_decrypt(data_key, sealed)
    end = plain.rfind(b"\x80")
    if end < 0 or any(plain[end + 1 :]):
        raise SealError("bad padding")
    pan = plain[:end].decode("ascii", "replace")
    if not pan.isdigit():
        raise SealError("not a PAN")
    return pan
