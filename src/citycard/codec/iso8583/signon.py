"""Field 62 of the sign-on answer (0810, 60.3 = ``003``): the terminal's working keys under its master key.

The layout (UnionPay POS practice for double-length keys, as fixed for this project in ``docs/iso8583.md``
"Field 62 of the sign-on answer")::

    PIK under TMK (16 bytes) || PIK check value (4) || MAK under TMK (16) || MAK check value (4)   40 bytes

Each key is a double-length 3DES key enciphered under the terminal master key (TMK) in ECB mode; its check
value is the first 4 bytes of the clear key enciphering a zero block (ANSI X9.24-1). The host makes them
with ``hsm.generate_working_key`` and the terminal takes them in with ``hsm.import_working_key``, which
checks the check value: this module only cuts and joins the bytes (pure, no key in clear here).

A field 62 that is not exactly this raises :class:`SignOnKeysError` (an :class:`.errors.Iso8583Error`
for field 62), naming the position and never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import Iso8583Error

__all__ = [
    "CHECK_VALUE_SIZE",
    "ENCRYPTED_KEY_SIZE",
    "SIGN_ON_KEYS_SIZE",
    "ZONE_KEY_EXCHANGE_SIZE",
    "SignOnKeys",
    "SignOnKeysError",
    "ZoneKeyExchange",
]

ENCRYPTED_KEY_SIZE: Final = 16
"""A double-length 3DES key under the TMK."""
CHECK_VALUE_SIZE: Final = 4
"""The check value as UnionPay sends it: 4 bytes."""
SIGN_ON_KEYS_SIZE: Final = 2 * (ENCRYPTED_KEY_SIZE + CHECK_VALUE_SIZE)
"""Field 62 of an 0810 with double-length keys: 40 bytes."""


class SignOnKeysError(Iso8583Error):
    """Field 62 of a sign-on answer is not PIK ‖ KCV ‖ MAK ‖ KCV (40 bytes); says where, never a value."""

    def __init__(self, position: int | None, reason: str) -> None:
        super().__init__("62", position, reason)


@dataclass(frozen=True, slots=True)
class SignOnKeys:
    """The PIK and the MAK of a sign-on, each under the terminal master key, with its check value."""

    pik_under_tmk: bytes
    pik_check_value: bytes
    mak_under_tmk: bytes
    mak_check_value: bytes

    def __post_init__(self) -> None:
        for name, size in (
            ("PIK under TMK", ENCRYPTED_KEY_SIZE),
            ("PIK check value", CHECK_VALUE_SIZE),
            ("MAK under TMK", ENCRYPTED_KEY_SIZE),
            ("MAK check value", CHECK_VALUE_SIZE),
        ):
            value = getattr(self, _ATTRIBUTE[name])
            if not isinstance(value, bytes) or len(value) != size:
                raise SignOnKeysError(None, f"{name} must be {size} bytes")

    def encode(self) -> bytes:
        """The 40 bytes of field 62."""
        return self.pik_under_tmk + self.pik_check_value + self.mak_under_tmk + self.mak_check_value

    @classmethod
    def decode(cls, data: bytes) -> SignOnKeys:
        """The keys in field 62; anything but 40 bytes raises :class:`SignOnKeysError`."""
        if not isinstance(data, bytes | bytearray) or len(data) != SIGN_ON_KEYS_SIZE:
            size = len(data) if isinstance(data, bytes | bytearray) else "no bytes"
            raise SignOnKeysError(
                None, f"a sign-on answer's field 62 is {SIGN_ON_KEYS_SIZE} bytes, got {size}"
            )
        data = bytes(data)
        k, c = ENCRYPTED_KEY_SIZE, CHECK_VALUE_SIZE
        return cls(data[:k], data[k : k + c], data[k + c : 2 * k + c], data[2 * k + c :])

    def __repr__(self) -> str:  # enciphered keys are not secret, but they have no business in logs
        return (
            f"SignOnKeys(pik_kcv={self.pik_check_value.hex().upper()}, "
            f"mak_kcv={self.mak_check_value.hex().upper()})"
        )


_ATTRIBUTE: Final = {
    "PIK under TMK": "pik_under_tmk",
    "PIK check value": "pik_check_value",
    "MAK under TMK": "mak_under_tmk",
    "MAK check value": "mak_check_value",
}


ZONE_KEY_EXCHANGE_SIZE: Final = 2 + ENCRYPTED_KEY_SIZE + CHECK_VALUE_SIZE
"""Field 62 of a zone key exchange (0800, 60.3 = ``101``): version n4 BCD (2) ‖ ZAK under ZMK ‖ KCV."""


@dataclass(frozen=True, slots=True)
class ZoneKeyExchange:
    """Field 62 of a zone key exchange (docs/network.md "Zone keys: exchange and rotation"): the new zone
    MAC key's version (1 to 9999), the key enciphered under the link's zone master key (ECB), its check
    value. Our layout: no public UnionPay text defines the host-to-host key exchange; it follows the
    sign-on's (one key, ``SignOnKeys``) with the version in front."""

    version: int
    key_under_zmk: bytes
    check_value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or not 1 <= self.version <= 9999:
            raise SignOnKeysError(0, "a zone key version is 1 to 9999")
        if not isinstance(self.key_under_zmk, bytes) or len(self.key_under_zmk) != ENCRYPTED_KEY_SIZE:
            raise SignOnKeysError(2, f"the key under the ZMK must be {ENCRYPTED_KEY_SIZE} bytes")
        if not isinstance(self.check_value, bytes) or len(self.check_value) != CHECK_VALUE_SIZE:
            raise SignOnKeysError(2 + ENCRYPTED_KEY_SIZE, f"the check value must be {CHECK_VALUE_SIZE} bytes")

    def encode(self) -> bytes:
        return bytes.fromhex(f"{self.version:04d}") + self.key_under_zmk + self.check_value

    @classmethod
    def decode(cls, data: bytes) -> ZoneKeyExchange:
        """:class:`SignOnKeysError` for anything but the 22 bytes of the layout with a BCD version."""
        if not isinstance(data, bytes | bytearray) or len(data) != ZONE_KEY_EXCHANGE_SIZE:
            raise SignOnKeysError(None, f"a zone key exchange's field 62 is {ZONE_KEY_EXCHANGE_SIZE} bytes")
        digits = bytes(data[:2]).hex()
        if not digits.isdigit():
            raise SignOnKeysError(0, "the key version is not BCD")
        k = 2 + ENCRYPTED_KEY_SIZE
        return cls(int(digits), bytes(data[2:k]), bytes(data[k:]))

    def __repr__(self) -> str:
        return f"ZoneKeyExchange(version={self.version}, kcv={self.check_value.hex().upper()})"
