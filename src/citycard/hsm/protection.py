"""Records at rest: the data-protection keys of a store and what it asks of them (issue 8).

A store that must keep personal data it cannot do without (the acquirer's store-and-forward queue and its
offline uploads keep whole ISO 8583 messages, clear PAN included, because the switch routes by the PAN and
clearing verifies a TC with it) keeps them **sealed** under a data-encryption key that never leaves the HSM
(:meth:`~citycard.hsm.api.Hsm.seal`: AES-256-GCM, the record's identity as associated data, so a sealed
value copied onto another row does not open), a **masked** PAN for display, and, where a row must be found
by its card, a **keyed fingerprint** of the PAN (HMAC-SHA-256 under an ``M7`` key in the HSM,
:meth:`~citycard.hsm.api.Hsm.keyed_hash`): equal PANs give equal fingerprints, and without the key a
fingerprint cannot be tested against the few billion PANs of a BIN range, as a plain hash could be.

:class:`RecordProtection` holds the handles of one owner's two keys (``<owner>/records-dek``, a ``D0`` AES-256
key, and ``<owner>/pan-fingerprint``, an ``M7`` HMAC key), made in the HSM the first time they are needed
(:meth:`RecordProtection.open`; two processes making them at once keep one: the key store never
overwrites a key).
"""

from __future__ import annotations

from dataclasses import dataclass

from .api import Algorithm, Hsm, HsmInputError, KeyExistsError, KeyHandle, KeyNotFoundError, KeyUsage

__all__ = ["ACQUIRER", "RecordProtection", "dek_label", "fingerprint_label", "key_or_new"]

ACQUIRER = "acquirer"
"""The owner of the acquirer's stores (``acquirer_saf``, ``acquirer_uploads``) and of clearing's reading of
the uploads."""


def dek_label(owner: str) -> str:
    return f"{owner}/records-dek"


def fingerprint_label(owner: str) -> str:
    return f"{owner}/pan-fingerprint"


def key_or_new(hsm: Hsm, label: str, usage: KeyUsage, algorithm: Algorithm) -> KeyHandle:
    """The key under ``label``, made (not exportable) if there is none; a key of another usage or algorithm
    under that label is refused (:class:`HsmInputError`): never a silent substitute."""
    try:
        handle = hsm.get(label)
    except KeyNotFoundError:
        try:
            handle = hsm.generate_key(label, usage, algorithm=algorithm)
        except KeyExistsError:  # another process made it meanwhile: use that one
            handle = hsm.get(label)
    if handle.usage != usage or handle.algorithm != algorithm:
        raise HsmInputError(
            f"key {label!r} is {handle.usage.value}/{handle.algorithm.value}, "
            f"not the {usage.value}/{algorithm.value} key records need"
        )
    return handle


@dataclass(frozen=True, slots=True)
class RecordProtection:
    """One owner's data-protection keys in ``hsm`` (module docstring). Thread-safe as the HSM is."""

    hsm: Hsm
    dek: KeyHandle
    fingerprint_key: KeyHandle

    @classmethod
    def open(cls, hsm: Hsm, owner: str = ACQUIRER) -> RecordProtection:
        """The owner's keys, made in ``hsm`` the first time."""
        return cls(
            hsm,
            key_or_new(hsm, dek_label(owner), KeyUsage.DATA, Algorithm.AES),
            key_or_new(hsm, fingerprint_label(owner), KeyUsage.HMAC, Algorithm.HMAC),
        )

    def seal(self, data: bytes, record: bytes) -> bytes:
        """``data`` sealed for the record whose identity is ``record`` (the associated data)."""
        return self.hsm.seal(self.dek, data, record)

    def unseal(self, sealed: bytes, record: bytes) -> bytes:
        """The data sealed for ``record``; :class:`~citycard.hsm.api.SealedDataError` if it does not open."""
        return self.hsm.unseal(self.dek, sealed, record)

    def pan_fingerprint(self, pan: str) -> str:
        """64 hex digits: HMAC-SHA-256 of the PAN's digits (a trailing ``F`` pad removed) under the
        fingerprint key; :class:`HsmInputError` for a PAN that is not 12 to 19 digits."""
        digits = pan.upper().rstrip("F")
        if not digits.isascii() or not digits.isdigit() or not 12 <= len(digits) <= 19:
            raise HsmInputError("a PAN is 12 to 19 digits")
        return self.hsm.keyed_hash(self.fingerprint_key, b"PAN:" + digits.encode("ascii")).hex()
