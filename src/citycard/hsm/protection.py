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

**Rotation of the data key.** :meth:`RecordProtection.rotate` makes the next version of the data key
(``<owner>/records-dek/<n>``, n ≥ 2); from then on values are sealed under the newest version, and each
sealed value names the version it was sealed under: version 1 (the original key) is the HSM's sealed format
as it is (its first byte is the format ``01``), a later version is ``02`` ‖ the version (2 bytes, big
endian) ‖ the HSM's sealed value under that key. :meth:`unseal` opens any version the HSM holds (a version
another process made since is looked up when first met); :meth:`needs_reseal` says whether a value is under
an older version, which ``citycard.db.record_keys.reseal_rows`` re-seals in batches. A process sealing
looks for a newer version at most every :data:`REFRESH_S` seconds, so rows written by a running host during
a rotation are under the new version soon after (and the re-seal pass, run again, takes the rest).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from .api import (
    MAX_UNSEAL_MANY,
    Algorithm,
    Hsm,
    HsmInputError,
    KeyExistsError,
    KeyHandle,
    KeyNotFoundError,
    KeyUsage,
    SealedDataError,
)

__all__ = ["ACQUIRER", "REFRESH_S", "RecordProtection", "dek_label", "fingerprint_label", "key_or_new"]

REFRESH_S: Final = 5.0
"""How often a process that seals looks for a newer version of the data key."""
_VERSIONED: Final = 0x02
"""First byte of a value sealed under a data key version above 1 (the HSM's own format byte is 01)."""

ACQUIRER = "acquirer"
"""The owner of the acquirer's stores (``acquirer_saf``, ``acquirer_uploads``) and of clearing's reading of
the uploads."""


def dek_label(owner: str, version: int = 1) -> str:
    return f"{owner}/records-dek" if version == 1 else f"{owner}/records-dek/{version}"


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


@dataclass(slots=True)
class _Versions:
    """The data key versions known to this process (mutable behind the frozen :class:`RecordProtection`)."""

    keys: dict[int, KeyHandle]
    newest: int
    checked: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class RecordProtection:
    """One owner's data-protection keys in ``hsm`` (module docstring). Thread-safe as the HSM is."""

    hsm: Hsm
    dek: KeyHandle  # version 1, the original data key
    fingerprint_key: KeyHandle
    owner: str = ACQUIRER
    _versions: _Versions = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self._versions is None:
            keys = {1: self.dek, **_later_versions(self.hsm, self.owner)}
            object.__setattr__(self, "_versions", _Versions(keys, max(keys), time.monotonic()))

    @classmethod
    def open(cls, hsm: Hsm, owner: str = ACQUIRER) -> RecordProtection:
        """The owner's keys, made in ``hsm`` the first time."""
        return cls(
            hsm,
            key_or_new(hsm, dek_label(owner), KeyUsage.DATA, Algorithm.AES),
            key_or_new(hsm, fingerprint_label(owner), KeyUsage.HMAC, Algorithm.HMAC),
            owner,
        )

    @property
    def version(self) -> int:
        """The data key version new values are sealed under (a newer one looked for every REFRESH_S)."""
        v = self._versions
        with v.lock:
            if time.monotonic() - v.checked >= REFRESH_S:
                v.keys.update(_later_versions(self.hsm, self.owner, v.newest))
                v.newest, v.checked = max(v.keys), time.monotonic()
            return v.newest

    def rotate(self) -> int:
        """Make the next version of the data key (``AES``, not exportable) and seal under it from now on;
        returns it. Two processes rotating at once make two versions, both usable."""
        v = self._versions
        with v.lock:
            v.keys.update(_later_versions(self.hsm, self.owner, max(v.keys)))
            version = max(v.keys) + 1
            while True:
                try:
                    key = self.hsm.generate_key(
                        dek_label(self.owner, version), KeyUsage.DATA, algorithm=Algorithm.AES
                    )
                    break
                except KeyExistsError:
                    version += 1
            v.keys[version] = key
            v.newest, v.checked = max(v.keys), time.monotonic()
            return version

    def _key(self, version: int) -> KeyHandle:
        v = self._versions
        with v.lock:
            key = v.keys.get(version)
            if key is None:
                try:
                    key = v.keys[version] = self.hsm.get(dek_label(self.owner, version))
                except KeyNotFoundError:
                    raise SealedDataError(
                        f"sealed under data key version {version}, not in the HSM"
                    ) from None
            return key

    def seal(self, data: bytes, record: bytes) -> bytes:
        """``data`` sealed for the record whose identity is ``record`` (the associated data), under the
        newest data key version, which the value names (module docstring)."""
        version = self.version
        sealed = self.hsm.seal(self._key(version), data, record)
        return sealed if version == 1 else bytes((_VERSIONED,)) + version.to_bytes(2, "big") + sealed

    @staticmethod
    def key_version(sealed: bytes) -> int:
        """The data key version a sealed value names (:class:`SealedDataError` when it names none)."""
        if len(sealed) >= 3 and sealed[0] == _VERSIONED:
            version = int.from_bytes(sealed[1:3], "big")
            if version >= 2:
                return version
        if sealed[:1] == b"\x01":
            return 1
        raise SealedDataError("not a sealed value of a known format")

    def needs_reseal(self, sealed: bytes) -> bool:
        """Whether ``sealed`` is under an older data key version than the newest."""
        return self.key_version(sealed) < self.version

    def unseal(self, sealed: bytes, record: bytes) -> bytes:
        """The data sealed for ``record``; :class:`~citycard.hsm.api.SealedDataError` if it does not open."""
        version = self.key_version(sealed)
        body = sealed if version == 1 else sealed[3:]
        return self.hsm.unseal(self._key(version), body, record)

    def unseal_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]:
        """:meth:`unseal` of each (sealed, record) of ``items``, in order, one HSM call per data key version
        (:meth:`~citycard.hsm.api.Hsm.unseal_many`, in calls of at most its limit): None for each that does
        not open, where :meth:`unseal` raises :class:`~citycard.hsm.api.SealedDataError`."""
        out: list[bytes | None] = [None] * len(items)
        by_version: dict[int, list[int]] = {}
        for i, (sealed, _) in enumerate(items):
            try:
                by_version.setdefault(self.key_version(sealed), []).append(i)
            except SealedDataError:
                continue
        for version, indexes in by_version.items():
            try:
                key = self._key(version)
            except SealedDataError:
                continue
            skip = 0 if version == 1 else 3
            for start in range(0, len(indexes), MAX_UNSEAL_MANY):
                chunk = indexes[start : start + MAX_UNSEAL_MANY]
                opened = self.hsm.unseal_many(key, [(items[i][0][skip:], items[i][1]) for i in chunk])
                for i, plaintext in zip(chunk, opened, strict=True):
                    out[i] = plaintext
        return out

    def pan_fingerprint(self, pan: str) -> str:
        """64 hex digits: HMAC-SHA-256 of the PAN's digits (a trailing ``F`` pad removed) under the
        fingerprint key; :class:`HsmInputError` for a PAN that is not 12 to 19 digits."""
        digits = pan.upper().rstrip("F")
        if not digits.isascii() or not digits.isdigit() or not 12 <= len(digits) <= 19:
            raise HsmInputError("a PAN is 12 to 19 digits")
        return self.hsm.keyed_hash(self.fingerprint_key, b"PAN:" + digits.encode("ascii")).hex()


def _later_versions(hsm: Hsm, owner: str, after: int = 1) -> dict[int, KeyHandle]:
    """The data key versions above ``after`` in ``hsm``, by version: looked up one by one, as
    :meth:`RecordProtection.rotate` makes them without gaps (the next above the newest), rather than by
    listing every label of the key store (every terminal's keys) each time."""
    out: dict[int, KeyHandle] = {}
    version = after + 1
    while True:
        try:
            out[version] = hsm.get(dek_label(owner, version))
        except KeyNotFoundError:
            return out
        version += 1
