"""The cryptogram versions the platform's cards compute and its issuer verifies, one object each (REVIEW.md,
after pyemv's shape): what a version's cryptogram covers and under which algorithm, named once, and looked
up from the card's issuer application data before anything is verified.

A PBOC 2.0/3.0 IAD names its version twice: the cryptogram version number (byte 2, CVN) and the algorithm
identifier (byte 7: ``01`` 3DES, ``04`` SM4; layout in :mod:`citycard.crypto.cryptograms`). This platform's
cards are CVN 01 under 3DES (the AC input of Visa's CVN 10, which PBOC 2.0 inherited); an ARQC or a TC of any
other version is refused by name — "cryptogram version 02 … is not one this issuer verifies" — rather than
verified as a CVN 01 and declined as a forgery. An SM4 version (PBOC 3.0, GM/T 0002) would be one more
object here, with its own session-key derivation in the HSM; none is issued yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .cryptograms import AC_DATA_TAGS, CVR_TAG, CryptogramDataError
from .sm import Algorithm

__all__ = ["CVN01_TDES", "VERSIONS", "CryptogramVersion", "cryptogram_version"]


@dataclass(frozen=True, slots=True)
class CryptogramVersion:
    """One cryptogram version: its CVN and algorithm as the IAD states them, and the data objects its
    application cryptogram covers, in order (``9F10`` contributing its CVR)."""

    cvn: int
    algorithm: Algorithm
    ac_tags: tuple[str, ...]
    name: str

    def iad_header(self, dki: int) -> bytes:
        """The IAD's first bytes before the CVR: length of the proprietary part (07), DKI, CVN."""
        assert 0 <= dki <= 0xFF
        return bytes((0x07, dki, self.cvn))


CVN01_TDES: Final = CryptogramVersion(
    0x01, Algorithm.TDES, AC_DATA_TAGS, "CVN 01, 3DES (PBOC 2.0; the AC input of Visa's CVN 10)"
)
VERSIONS: Final[dict[tuple[int, Algorithm], CryptogramVersion]] = {
    (v.cvn, v.algorithm): v for v in (CVN01_TDES,)
}
_IAD_MIN = 8  # length, DKI, CVN, CVR length, CVR (3), algorithm


def cryptogram_version(iad: bytes) -> CryptogramVersion:
    """The version the issuer application data ``9F10`` names; :class:`CryptogramDataError` (on ``9F10``)
    saying which when it is not one this platform verifies, or the IAD is too short to name one."""
    if len(iad) < _IAD_MIN:
        raise CryptogramDataError(
            CVR_TAG, f"issuer application data is {len(iad)} bytes: too short to name its cryptogram version"
        )
    try:
        algorithm = Algorithm(iad[7])
    except ValueError:
        algorithm = None
    version = None if algorithm is None else VERSIONS.get((iad[2], algorithm))
    if version is None:
        known = "; ".join(v.name for v in VERSIONS.values())
        raise CryptogramDataError(
            CVR_TAG,
            f"cryptogram version {iad[2]:02X} with algorithm {iad[7]:02X} is not one this issuer verifies"
            f" ({known})",
        )
    return version
