"""The software HSM: the one place where the issuer's secret keys exist in clear (in this process's memory).

At rest every key is a TR-31 version D key block (:mod:`citycard.hsm.keyblock`) under the local master key
(the KBPK, AES-256), which comes from ``CITYCARD_HSM_MASTER_KEY`` (64 hex digits) or a key file — never from
the database. Blocks are kept by a :class:`KeyStore` (a directory of ``<label>.kb`` files, or memory).
Every operation checks the usage and mode of use bound into each key's block (TR-31:2018 Tables 6 and 8)
and refuses a key used for anything else with :class:`~citycard.hsm.api.KeyUsageError`.

Algorithms (all from :mod:`citycard.crypto`): ICC master keys by EMV option A (Book 2 A1.4.1), PBOC session
keys (JR/T 0025.7), application cryptograms and ARPC method 1 (Book 2 §8.1–8.2), issuer-script MACs
(Book 2 §9.2, JR/T 0025.13 for PUT DATA 9F79), ISO 9564-1 format 0 PIN blocks, and the Visa PIN
Verification Value (Visa PIN Verification Service; the PVV method also documented for Thales payShield
commands DG/DC/EC): TSP = 11 rightmost PAN digits without the check digit ‖ PVKI ‖ 4 leftmost PIN digits,
3DES under the PVK, decimalised (decimal digits left to right, then the hex digits A–F minus 10).

POS terminal working keys (sign-on 0800/0810, UnionPay POS practice; key management per ANSI X9.24-1): the
host HSM makes a double-length 3DES PIK (``P0``) or MAK (``M3``, ANSI X9.19 = ISO 9797-1 MAC algorithm 3),
keeps it, and gives it out only 3DES-ECB-encrypted under the terminal master key (a 3DES ``K0`` key both
sides entered as components), with a 4-byte check value (the key encrypting a zero block); the terminal's
HSM decrypts it under its TMK, checks the check value, and keeps it. Neither side sees it in clear.

The Visa PVV covers only the PIN's first 4 digits; online PINs are verified with the **IBM 3624 PIN offset**
(IBM 3624 Consumer Transaction Facility; ANSI X9.8 / ISO 9564-1 PIN verification; payShield commands
DE/EE): the validation data is 3DES-enciphered under the PVK (``V1``), its hex digits decimalised with a
table, and the offset is, digit by digit, PIN − natural PIN (mod 10), as long as the PIN itself, so every
digit is checked. The decimalisation table is fixed here, never an argument a caller may choose (the
decimalisation-table attack of Bond and Zieliński, 2003). The validation data is the PAN without its check
digit, its rightmost 16 digits, padded on the right with ``F`` to 16 hexadecimal digits.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC

from citycard.codec.apdu import Ins
from citycard.crypto import cryptograms, des, rsa_cert
from citycard.crypto.derivation import (
    derive_icc_mk_a,
    derive_icc_mks_a,
    derive_pboc_session_key,
    derive_pboc_session_keys,
)
from citycard.crypto.mac import mac_alg3
from citycard.crypto.pin import (
    PinBlockError,
    PinChangeFormat,
    encrypt_pin_change_data,
    pin_block_iso0,
    pin_block_iso1,
    pin_from_iso0,
    pin_from_iso1,
)
from citycard.crypto.pos_mac import pos_mac as retail_mac
from citycard.crypto.rsa_cert import RsaKey, RsaPublicKey, rsa_kcv, rsa_private_raw
from citycard.durable import atomic_write, create_new

from . import keyblock
from .api import (
    MAX_CARDS_ACS,
    MAX_UNSEAL_MANY,
    Algorithm,
    HsmInputError,
    KeyExistsError,
    KeyHandle,
    KeyNotFoundError,
    KeyStoreError,
    KeyUsage,
    KeyUsageError,
    SealedDataError,
    WorkingKey,
)

__all__ = [
    "IBM3624_DECIMALISATION",
    "DirectoryKeyStore",
    "KeyStore",
    "MemoryKeyStore",
    "SoftHsm",
    "create_master_key",
    "ibm3624_natural_pin",
    "ibm3624_offset",
    "load_master_key",
    "pin_validation_data",
    "visa_pvv",
]

IBM3624_DECIMALISATION = "0123456789012345"
"""The decimalisation table (hex digit ``0``–``F`` to a decimal digit) of IBM 3624, the usual default."""

_T = TypeVar("_T")

_LABEL = re.compile(r"^(?!.*(?:^|/)\.{1,2}(?:/|$))[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
"""A key label: 1-64 characters of ``A-Z a-z 0-9 . _ -``, in segments separated by ``/`` (a namespace such as
``terminal/<TID>/tmk``; a directory store keeps each segment as a folder), no segment ``.`` or ``..``."""
_LABEL_MAX = 64
_PIN_CHANGE = bytes(
    (0x84, Ins.PIN_CHANGE_UNBLOCK, 0x00, 0x02)
)  # PIN CHANGE/UNBLOCK, new PIN without the current one (EMV Book 3)
_WORKING_KEY_USAGES = frozenset({KeyUsage.PIN_ENCRYPTION, KeyUsage.MAC_X9_19})
_CHECK_VALUE_SIZE = 4
"""Bytes of a working key's check value in the sign-on response (UnionPay POS practice: 4)."""
_SEAL_VERSION = b"\x01"
"""The first byte of sealed data (:meth:`SoftHsm.seal`): AES-256-GCM, 96-bit IV, 128-bit tag."""
_SEAL_IV = 12
_SEAL_TAG = 16
_DIAGNOSE_BLOCKS = 8
"""How many other key blocks :meth:`SoftHsm._diagnose` tries when one does not verify."""

# The mode of use each usage is created with (TR-31:2018 Table 8): "X" derive keys, "B" both, "C" MAC,
# "S" sign only.
_DEFAULT_MODE = {
    KeyUsage.EMV_AC: "X",
    KeyUsage.EMV_SMC: "X",
    KeyUsage.EMV_SMI: "X",
    KeyUsage.EMV_DN: "X",
    KeyUsage.EMV_OTHER: "X",
    KeyUsage.PIN_ENCRYPTION: "B",
    KeyUsage.PIN_VERIFICATION_IBM3624: "C",
    KeyUsage.PIN_VERIFICATION_VISA: "C",
    KeyUsage.KEK: "B",
    KeyUsage.DATA: "B",
    KeyUsage.MAC: "C",
    KeyUsage.MAC_X9_19: "C",
    KeyUsage.HMAC: "C",
    KeyUsage.SIGNATURE: "S",
    KeyUsage.CA: "S",
}


class KeyStore(Protocol):
    """Where key blocks rest (they are encrypted and authenticated; the store need not be secret)."""

    def load(self, label: str) -> str | None: ...
    def save(self, label: str, block: str) -> None: ...
    def create(self, label: str, block: str) -> None:
        """Save a new block; ``FileExistsError`` if ``label`` has one (also when another process made it
        meanwhile: two processes making the same key never overwrite each other's)."""
        ...

    def labels(self) -> list[str]: ...


class MemoryKeyStore:
    def __init__(self) -> None:
        self._blocks: dict[str, str] = {}

    def load(self, label: str) -> str | None:
        return self._blocks.get(label)

    def save(self, label: str, block: str) -> None:
        self._blocks[label] = block

    def create(self, label: str, block: str) -> None:
        if self._blocks.setdefault(label, block) is not block:
            raise FileExistsError(label)

    def labels(self) -> list[str]:
        return sorted(self._blocks)


class DirectoryKeyStore:
    """One ``<label>.kb`` file per key block, written atomically and durably by
    :func:`citycard.durable.atomic_write` (temporary file, fsync, rename, fsync of the directory: a crash
    leaves the old block or the new one, and a block that was reported saved survives a power loss). A label
    with segments (``terminal/T0000001/tmk``) is a file in folders (``terminal/T0000001/tmk.kb``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self, label: str) -> str | None:
        if len(label) > _LABEL_MAX or not _LABEL.match(label):
            return None  # no such key (and never a path outside the store)
        path = self.directory / f"{label}.kb"
        if not path.exists():
            return None
        try:
            return path.read_bytes().decode("ascii").strip()
        except UnicodeDecodeError:
            raise KeyStoreError(f"key block {path} is not ASCII: it was altered") from None

    def save(self, label: str, block: str) -> None:
        path = self.directory / f"{label}.kb"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (block + "\n").encode("ascii"))

    def create(self, label: str, block: str) -> None:
        path = self.directory / f"{label}.kb"
        path.parent.mkdir(parents=True, exist_ok=True)
        create_new(path, (block + "\n").encode("ascii"))

    def labels(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(
            p.relative_to(self.directory).with_suffix("").as_posix() for p in self.directory.rglob("*.kb")
        )


def load_master_key(hex_value: str, key_file: Path | None = None) -> bytes:
    """The master key (KBPK, an AES key) from ``hex_value`` (the environment), else from ``key_file``.

    A key file that does not exist is a :class:`KeyStoreError`, never a reason to make a new key: a new key
    would silently orphan every key block made under the old one (:func:`create_master_key` is the one
    place that makes a key, on an explicit set-up).
    """
    text = hex_value.strip()
    if not text:
        if key_file is None:
            raise KeyStoreError("no HSM master key: set CITYCARD_HSM_MASTER_KEY or CITYCARD_HSM_KEY_FILE")
        try:
            text = key_file.read_bytes().decode("ascii").strip()
        except FileNotFoundError:
            raise KeyStoreError(f"HSM master key file {key_file} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII"
            raise KeyStoreError(f"HSM master key file {key_file} cannot be read: {reason}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyStoreError("HSM master key is not hexadecimal") from None
    if len(key) not in (16, 24, 32):
        raise KeyStoreError("HSM master key must be an AES key of 16, 24 or 32 bytes")
    return key


def create_master_key(key_file: Path, *, random: Callable[[int], bytes] = os.urandom) -> bytes:
    """Write a fresh AES-256 master key to ``key_file`` (mode 0600, synced to disk); never overwrites."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = random(32)
    try:
        create_new(key_file, (key.hex().upper() + "\n").encode("ascii"))
    except FileExistsError:
        raise KeyStoreError(f"HSM master key file {key_file} exists already") from None
    return key


def visa_pvv(pvk: bytes, pan: str, pvki: int, pin: str) -> str:
    """Visa PVV (see the module docstring): 4 decimal digits."""
    digits = pan.rstrip("F")
    if not digits.isdigit() or len(digits) < 12:
        raise HsmInputError("PAN must have at least 12 digits")
    if not 0 <= pvki <= 9 or len(pin) < 4 or not pin.isdigit():
        raise HsmInputError("PVKI must be one digit and the PIN at least 4 digits")
    tsp = digits[-12:-1] + str(pvki) + pin[:4]
    out = des.ecb_encrypt(pvk, bytes.fromhex(tsp)).hex().upper()
    decimal = [c for c in out if c.isdigit()]
    decimal += [str(int(c, 16) - 10) for c in out if not c.isdigit()]
    return "".join(decimal[:4])


def pin_validation_data(pan: str) -> str:
    """The IBM 3624 validation data of a card: its PAN without the check digit, rightmost 16 digits,
    padded on the right with ``F`` to 16 hexadecimal digits."""
    digits = pan.upper().rstrip("F")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise HsmInputError("PAN must be 12 to 19 digits")
    return digits[:-1][-16:].ljust(16, "F")


def ibm3624_natural_pin(
    pvk: bytes, validation_data: str, length: int, table: str = IBM3624_DECIMALISATION
) -> str:
    """The natural PIN: validation data (16 hex digits) 3DES-enciphered under the PVK, decimalised by
    ``table``, the leftmost ``length`` digits."""
    assert len(table) == 16 and table.isdigit(), "a decimalisation table is 16 decimal digits"
    if len(validation_data) != 16 or not 4 <= length <= 16:
        raise HsmInputError("validation data must be 16 hex digits and the PIN 4 to 16 digits")
    try:
        enciphered = des.ecb_encrypt(pvk, bytes.fromhex(validation_data)).hex()
    except ValueError:
        raise HsmInputError("validation data must be 16 hex digits") from None
    return "".join(table[int(c, 16)] for c in enciphered[:length])


def ibm3624_offset(pvk: bytes, validation_data: str, pin: str, table: str = IBM3624_DECIMALISATION) -> str:
    """The IBM 3624 offset of ``pin``: for each digit, PIN − natural PIN (mod 10); as long as the PIN."""
    if not pin.isascii() or not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise HsmInputError("PIN must be 4 to 12 digits")
    natural = ibm3624_natural_pin(pvk, validation_data, len(pin), table)
    return "".join(str((int(p) - int(n)) % 10) for p, n in zip(pin, natural, strict=True))


@dataclass(frozen=True, slots=True)
class _Key:
    """A key in clear in this process, with what its operations would otherwise rebuild on every call:
    the AES-GCM object of an AES-256 data key, the keyed HMAC-SHA-256 state of an HMAC key (copied for
    each hash; the copy is thread-safe, and so is the AES-GCM object, which keeps no state between calls).
    They are made with the key and live in this value only: a key replaced under its label (a new sign-on's
    working key) replaces the value, so none of them outlives the key it was made from."""

    handle: KeyHandle
    secret: bytes  # symmetric key bytes, or PKCS#8 DER for RSA
    aead: AESGCM | None = None
    keyed: hmac.HMAC | None = None

    @classmethod
    def of(cls, handle: KeyHandle, secret: bytes) -> _Key:
        data = handle.usage == KeyUsage.DATA and handle.algorithm == Algorithm.AES and len(secret) == 32
        return cls(
            handle,
            secret,
            AESGCM(secret) if data else None,
            hmac.new(secret, digestmod=hashlib.sha256) if handle.usage == KeyUsage.HMAC else None,
        )


class SoftHsm:
    """:class:`~citycard.hsm.api.Hsm` in software. Thread-safe; unwrapped keys are cached in memory."""

    def __init__(
        self,
        master_key: bytes,
        store: KeyStore | None = None,
        *,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        keyblock.derive_block_keys(master_key)  # validates the length
        self._kbpk = master_key
        self._store: KeyStore = store if store is not None else MemoryKeyStore()
        self._random = random
        self._cache: dict[str, _Key] = {}
        self._rsa: dict[str, tuple[rsa.RSAPrivateKey, RsaKey]] = {}
        self._lock = threading.Lock()

    # --- storage ----------------------------------------------------------------------------------------
    def _load(self, label: str) -> _Key:
        key = self._cache.get(label)
        if key is not None:
            return key
        block = self._store.load(label)
        if block is None:
            raise KeyNotFoundError(f"no key labelled {label!r}")
        try:
            header, secret = keyblock.unwrap(self._kbpk, block)
            handle = self._handle(label, header, secret)
        except ValueError:  # KeyBlockError, or a usage or algorithm this HSM does not know
            raise KeyStoreError(self._diagnose(label)) from None
        key = _Key.of(handle, secret)
        with self._lock:
            self._cache[label] = key
        return key

    def _diagnose(self, label: str) -> str:
        """Why the block of ``label`` does not verify: altered, if some other block verifies under the
        master key; the wrong master key, if none does (at most :data:`_DIAGNOSE_BLOCKS` are tried)."""
        others = [other for other in self._store.labels() if other != label][:_DIAGNOSE_BLOCKS]
        verified = 0
        for other in others:
            block = self._store.load(other)
            try:
                if block is not None:
                    keyblock.unwrap(self._kbpk, block)
                    verified += 1
            except (keyblock.KeyBlockError, KeyStoreError):
                continue
        if verified:
            return f"key block {label!r} does not verify under the HSM master key: it was altered"
        if others:
            return (
                f"key block {label!r} and {len(others)} other(s) do not verify: the HSM master key is not "
                "the one they were made under"
            )
        return f"key block {label!r} does not verify: it was altered, or the HSM master key is the wrong one"

    def _handle(self, label: str, header: keyblock.Header, secret: bytes) -> KeyHandle:
        algorithm = Algorithm(header.algorithm)
        return KeyHandle(
            label=label,
            usage=KeyUsage(header.usage),
            algorithm=algorithm,
            mode=header.mode,
            version=header.version,
            exportable=header.exportability == "E",
            kcv=_kcv(algorithm, secret),
        )

    def _store_new(
        self, label: str, header: keyblock.Header, secret: bytes, *, replace: bool = False
    ) -> KeyHandle:
        if len(label) > _LABEL_MAX or not _LABEL.match(label):
            raise HsmInputError(
                f"key label {label!r} must be 1-64 characters of A-Z a-z 0-9 . _ - in segments split by /"
            )
        with self._lock:
            if not replace and (label in self._cache or self._store.load(label) is not None):
                raise KeyExistsError(f"a key labelled {label!r} exists already")
            block = keyblock.wrap(self._kbpk, header, secret, random=self._random)
            if replace:
                self._store.save(label, block)
            else:
                try:  # another process may have made it since the look above: never overwrite it
                    self._store.create(label, block)
                except FileExistsError:
                    raise KeyExistsError(f"a key labelled {label!r} exists already") from None
            key = _Key.of(self._handle(label, header, secret), secret)
            self._cache[label] = key
        return key.handle

    def _use(self, handle: KeyHandle, usage: KeyUsage, modes: Iterable[str], what: str) -> bytes:
        return self._usable(handle, usage, modes, what).secret

    def _usable(self, handle: KeyHandle, usage: KeyUsage, modes: Iterable[str], what: str) -> _Key:
        """The key of ``handle`` if its usage and mode of use allow ``what``, else :class:`KeyUsageError`."""
        key = self._load(handle.label)
        h = key.handle
        if h.usage != usage or h.mode not in modes:
            raise KeyUsageError(
                f"key {handle.label!r} ({h.usage.value}, mode {h.mode}) may not be used to {what}"
                f" (needs {usage.value}, mode {'/'.join(modes)})"
            )
        return key

    # --- key management ---------------------------------------------------------------------------------
    def generate_key(
        self,
        label: str,
        usage: KeyUsage,
        *,
        algorithm: Algorithm = Algorithm.TDEA,
        exportable: bool = False,
    ) -> KeyHandle:
        if usage in (KeyUsage.SIGNATURE, KeyUsage.CA) or algorithm == Algorithm.RSA:
            raise KeyUsageError("asymmetric keys are made by generate_rsa_key")
        if (usage == KeyUsage.HMAC) != (algorithm == Algorithm.HMAC):
            raise KeyUsageError("HMAC keys (M7) have algorithm H, and only they")
        size = 16 if algorithm == Algorithm.TDEA else 32
        secret = self._random(size)
        if algorithm == Algorithm.TDEA:
            secret = des.adjust_parity(secret)
        return self._store_new(label, _header(usage, algorithm, exportable), secret)

    def import_components(
        self,
        label: str,
        usage: KeyUsage,
        components: Sequence[bytes],
        *,
        algorithm: Algorithm = Algorithm.TDEA,
    ) -> KeyHandle:
        sizes = (16, 24) if algorithm == Algorithm.TDEA else (16, 24, 32)
        if not components or len({len(c) for c in components}) != 1 or len(components[0]) not in sizes:
            raise HsmInputError(f"key components must be {sizes} bytes long, all the same length")
        if algorithm == Algorithm.RSA or usage in (KeyUsage.SIGNATURE, KeyUsage.CA):
            raise KeyUsageError("RSA keys cannot be entered as components")
        secret = components[0]
        for c in components[1:]:
            secret = des.xor(secret, c)
        return self._store_new(label, _header(usage, algorithm, False), secret)

    def import_key_block(self, label: str, block: str, kek: KeyHandle) -> KeyHandle:
        kek_secret = self._use(kek, KeyUsage.KEK, ("B", "D"), "unwrap keys")
        _check_aes_kek(self._load(kek.label).handle)
        try:
            header, secret = keyblock.unwrap(kek_secret, block)
            KeyUsage(header.usage)  # only usages this HSM knows
        except ValueError as exc:  # KeyBlockError, or an unknown usage code
            raise HsmInputError(f"key block for {label!r} refused: {exc}") from None
        return self._store_new(label, header, secret)

    def export_key_block(self, key: KeyHandle, kek: KeyHandle) -> str:
        kek_secret = self._use(kek, KeyUsage.KEK, ("B", "E"), "wrap keys")
        _check_aes_kek(self._load(kek.label).handle)
        inner = self._load(key.label)
        if not inner.handle.exportable:
            raise KeyUsageError(f"key {key.label!r} is not exportable")
        header = _header(inner.handle.usage, inner.handle.algorithm, True, inner.handle.mode)
        return keyblock.wrap(kek_secret, header, inner.secret, random=self._random)

    def get(self, label: str) -> KeyHandle:
        return self._load(label).handle

    def labels(self) -> list[str]:
        return self._store.labels()

    # --- POS terminal working keys ---------------------------------------------------------------------
    def _tmk(self, tmk: KeyHandle, modes: tuple[str, ...], what: str) -> bytes:
        secret = self._use(tmk, KeyUsage.KEK, modes, what)
        if self._load(tmk.label).handle.algorithm != Algorithm.TDEA:
            raise KeyUsageError(f"terminal master key {tmk.label!r} must be a 3DES key")
        return secret

    def generate_working_key(
        self, label: str, tmk: KeyHandle, usage: KeyUsage, *, replace: bool = False
    ) -> WorkingKey:
        if usage not in _WORKING_KEY_USAGES:
            raise KeyUsageError(f"a terminal working key is a PIK (P0) or a MAK (M3), not {usage.value}")
        tmk_secret = self._tmk(tmk, ("B", "E"), "encrypt working keys")
        secret = des.adjust_parity(self._random(16))
        handle = self._store_new(label, _header(usage, Algorithm.TDEA, False), secret, replace=replace)
        return WorkingKey(des.ecb_encrypt(tmk_secret, secret), des.kcv(secret, _CHECK_VALUE_SIZE), handle)

    def import_working_key(
        self,
        label: str,
        tmk: KeyHandle,
        usage: KeyUsage,
        encrypted: bytes,
        check_value: bytes,
        *,
        replace: bool = False,
    ) -> KeyHandle:
        if usage not in _WORKING_KEY_USAGES:
            raise KeyUsageError(f"a terminal working key is a PIK (P0) or a MAK (M3), not {usage.value}")
        tmk_secret = self._tmk(tmk, ("B", "D"), "decrypt working keys")
        if len(encrypted) != 16 or len(check_value) != _CHECK_VALUE_SIZE:
            raise HsmInputError(
                f"a working key is 16 bytes under the TMK with a {_CHECK_VALUE_SIZE}-byte check value"
            )
        secret = des.ecb_decrypt(tmk_secret, encrypted)
        if not hmac.compare_digest(des.kcv(secret, _CHECK_VALUE_SIZE), check_value):
            raise HsmInputError(
                f"working key {label!r}: check value does not match (wrong TMK or damaged key)"
            )
        return self._store_new(label, _header(usage, Algorithm.TDEA, False), secret, replace=replace)

    def pos_mac(self, mak: KeyHandle, mac_block: bytes) -> bytes:
        return retail_mac(self._use(mak, KeyUsage.MAC_X9_19, ("C", "G"), "MAC POS messages"), mac_block)

    # --- transit ----------------------------------------------------------------------------------------
    def _transit_card_key(self, tk: KeyHandle, pan: str, psn: str) -> bytes:
        secret = self._use(tk, KeyUsage.EMV_OTHER, ("X",), "MAC transit records")
        try:
            return derive_icc_mk_a(secret, pan, psn)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def transit_record_mac(self, tk: KeyHandle, pan: str, psn: str, record: bytes) -> bytes:
        if not record:
            raise HsmInputError("a transit record to MAC may not be empty")
        return mac_alg3(self._transit_card_key(tk, pan, psn), record, padding=2, length=4)

    def verify_transit_record_mac(self, tk: KeyHandle, pan: str, psn: str, record: bytes, mac: bytes) -> bool:
        if len(mac) != 4:
            raise HsmInputError(f"transit record MAC must be 4 bytes, not {len(mac)}")
        return hmac.compare_digest(self.transit_record_mac(tk, pan, psn, record), mac)

    # --- EMV / PBOC cryptograms -------------------------------------------------------------------------
    def _session_key(self, imk: KeyHandle, usage: KeyUsage, pan: str, psn: str, atc: int, what: str) -> bytes:
        secret = self._use(imk, usage, ("X",), what)
        try:
            udk = derive_icc_mk_a(secret, pan, psn)
            return derive_pboc_session_key(udk, atc)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def verify_arqc(self, imk: KeyHandle, pan: str, psn: str, atc: int, ac_data: bytes, arqc: bytes) -> bool:
        sk = self._session_key(imk, KeyUsage.EMV_AC, pan, psn, atc, "verify application cryptograms")
        if len(arqc) != 8:
            raise HsmInputError(f"ARQC must be 8 bytes, not {len(arqc)}")
        return cryptograms.verify_ac(sk, ac_data, arqc)

    def verify_card_acs(
        self, imk: KeyHandle, pan: str, psn: str, checks: Sequence[tuple[int, Sequence[bytes], bytes]]
    ) -> list[bool]:
        return self.verify_cards_acs(imk, [(pan, psn, checks)])[0]

    def verify_cards_acs(
        self,
        imk: KeyHandle,
        cards: Sequence[tuple[str, str, Sequence[tuple[int, Sequence[bytes], bytes]]]],
    ) -> list[list[bool]]:
        """Every card's UDK derived in one pass under the IMK (:func:`derive_icc_mks_a`), each card's
        session keys in one pass under its UDK, then each TC's MAC; every input checked first."""
        secret = self._use(imk, KeyUsage.EMV_AC, ("X",), "verify application cryptograms")
        total = sum(len(checks) for _, _, checks in cards)
        if total > MAX_CARDS_ACS:
            raise HsmInputError(f"at most {MAX_CARDS_ACS} cryptograms per call, not {total}")
        for i, (_, _, checks) in enumerate(cards):
            if any(len(ac) != 8 for _, _, ac in checks):
                raise HsmInputError(f"card {i}: every cryptogram must be 8 bytes")
        try:
            udks = derive_icc_mks_a(secret, [(pan, psn) for pan, psn, _ in cards])
            keys: list[bytes] = []
            for i, (udk, (_, _, checks)) in enumerate(zip(udks, cards, strict=True)):
                try:
                    keys += derive_pboc_session_keys(udk, [atc for atc, _, _ in checks])
                except ValueError as exc:
                    raise ValueError(f"card {i}: {exc}") from None
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None
        results = cryptograms.verify_acs(
            keys, [(inputs, ac) for _, _, checks in cards for _, inputs, ac in checks]
        )
        out: list[list[bool]] = []
        start = 0
        for _, _, checks in cards:
            out.append(results[start : start + len(checks)])
            start += len(checks)
        return out

    def verify_ac_session_mac(
        self, imk: KeyHandle, pan: str, psn: str, atc: int, data: bytes, mac: bytes
    ) -> bool:
        sk = self._session_key(imk, KeyUsage.EMV_AC, pan, psn, atc, "verify card MACs")
        if len(mac) != 4:
            raise HsmInputError(f"MAC must be 4 bytes, not {len(mac)}")
        return hmac.compare_digest(mac_alg3(sk, data, padding=2, length=4), mac)

    def generate_arpc(self, imk: KeyHandle, pan: str, psn: str, atc: int, arqc: bytes, arc: bytes) -> bytes:
        sk = self._session_key(imk, KeyUsage.EMV_AC, pan, psn, atc, "generate an ARPC")
        try:
            return cryptograms.arpc_method1(sk, arqc, arc)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def script_command(
        self, smi: KeyHandle, pan: str, psn: str, atc: int, arqc: bytes, header: bytes, data: bytes
    ) -> bytes:
        sk = self._session_key(smi, KeyUsage.EMV_SMI, pan, psn, atc, "MAC issuer scripts")
        try:
            return cryptograms.script_command(sk, header, data, atc, arqc)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def ec_load_script(
        self, smi: KeyHandle, pan: str, psn: str, atc: int, arqc: bytes, new_balance_fen: int
    ) -> bytes:
        sk = self._session_key(smi, KeyUsage.EMV_SMI, pan, psn, atc, "MAC issuer scripts")
        try:
            return cryptograms.ec_load_script(sk, atc, arqc, new_balance_fen)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def derive_icc_key(self, imk: KeyHandle, usage: KeyUsage, pan: str, psn: str) -> bytes:
        """The card's own master key (UDK) in clear, for personalisation only (the card must hold it)."""
        secret = self._use(imk, usage, ("X",), "derive card keys")
        try:
            return derive_icc_mk_a(secret, pan, psn)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def export_icc_key_block(
        self, imk: KeyHandle, usage: KeyUsage, pan: str, psn: str, kek: KeyHandle
    ) -> str:
        kek_secret = self._use(kek, KeyUsage.KEK, ("B", "E"), "wrap keys")
        _check_aes_kek(self._load(kek.label).handle)
        udk = self.derive_icc_key(imk, usage, pan, psn)
        header = _header(usage, Algorithm.TDEA, True, "X")
        return keyblock.wrap(kek_secret, header, udk, random=self._random)

    # --- PIN --------------------------------------------------------------------------------------------
    def _clear_pin(self, pek: KeyHandle, pin_block: bytes, pan: str) -> str:
        secret = self._use(pek, KeyUsage.PIN_ENCRYPTION, ("B", "D"), "decrypt PIN blocks")
        if len(pin_block) != 8:
            raise HsmInputError(f"PIN block must be 8 bytes, not {len(pin_block)}")
        try:
            return pin_from_iso0(des.ecb_decrypt(secret, pin_block), pan)
        except PinBlockError as exc:
            raise HsmInputError(f"PIN block does not decode as ISO 9564 format 0 ({exc})") from None

    def translate_pin_block(
        self, source: KeyHandle, destination: KeyHandle, pin_block: bytes, pan: str
    ) -> bytes:
        pin = self._clear_pin(source, pin_block, pan)
        secret = self._use(destination, KeyUsage.PIN_ENCRYPTION, ("B", "E"), "encrypt PIN blocks")
        return des.ecb_encrypt(secret, pin_block_iso0(pin, pan))

    def encrypt_pin(self, pek: KeyHandle, pin: str, pan: str) -> bytes:
        secret = self._use(pek, KeyUsage.PIN_ENCRYPTION, ("B", "E"), "encrypt PIN blocks")
        try:
            return des.ecb_encrypt(secret, pin_block_iso0(pin, pan))
        except PinBlockError as exc:
            raise HsmInputError(f"PIN cannot be put in a format 0 block ({exc})") from None

    def generate_pvv(self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, pvki: int) -> str:
        pin = self._clear_pin(pek, pin_block, pan)
        secret = self._use(pvk, KeyUsage.PIN_VERIFICATION_VISA, ("C", "G"), "generate PVVs")
        return visa_pvv(secret, pan, pvki, pin)

    def verify_pin(
        self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, pvki: int, pvv: str
    ) -> bool:
        pin = self._clear_pin(pek, pin_block, pan)
        secret = self._use(pvk, KeyUsage.PIN_VERIFICATION_VISA, ("C", "V"), "verify PINs")
        return hmac.compare_digest(visa_pvv(secret, pan, pvki, pin), pvv)

    def _clear_pin_iso1(self, pek: KeyHandle, pin_block: bytes) -> str:
        secret = self._use(pek, KeyUsage.PIN_ENCRYPTION, ("B", "D"), "decrypt PIN blocks")
        if len(pin_block) != 8:
            raise HsmInputError(f"PIN block must be 8 bytes, not {len(pin_block)}")
        try:
            return pin_from_iso1(des.ecb_decrypt(secret, pin_block))
        except PinBlockError as exc:
            raise HsmInputError(f"PIN block does not decode as ISO 9564 format 1 ({exc})") from None

    def encrypt_pin_iso1(self, pek: KeyHandle, pin: str) -> bytes:
        secret = self._use(pek, KeyUsage.PIN_ENCRYPTION, ("B", "E"), "encrypt PIN blocks")
        try:
            return des.ecb_encrypt(secret, pin_block_iso1(pin, self._random(8)))
        except PinBlockError as exc:
            raise HsmInputError(f"PIN cannot be put in a format 1 block ({exc})") from None

    def pin_for_card_image(self, pek: KeyHandle, pin_block: bytes) -> str:
        """The clear PIN for a card image being personalised only (the chip must hold it)."""
        return self._clear_pin_iso1(pek, pin_block)

    def generate_pin_offset(
        self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, *, iso_format: int = 0
    ) -> str:
        if iso_format not in (0, 1):
            raise HsmInputError("PIN blocks here are ISO 9564 format 0 or 1")
        pin = (
            self._clear_pin(pek, pin_block, pan) if iso_format == 0 else self._clear_pin_iso1(pek, pin_block)
        )
        secret = self._use(pvk, KeyUsage.PIN_VERIFICATION_IBM3624, ("C", "G"), "generate PIN offsets")
        return ibm3624_offset(secret, pin_validation_data(pan), pin)

    def verify_pin_offset(
        self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, offset: str
    ) -> bool:
        if not offset.isascii() or not offset.isdigit() or not 4 <= len(offset) <= 12:
            raise HsmInputError("a PIN offset is 4 to 12 digits")
        pin = self._clear_pin(pek, pin_block, pan)
        secret = self._use(pvk, KeyUsage.PIN_VERIFICATION_IBM3624, ("C", "V"), "verify PINs")
        expected = ibm3624_offset(secret, pin_validation_data(pan), pin)
        return hmac.compare_digest(expected.encode(), offset.encode())  # lengths differ: a different PIN

    def pin_change_script(
        self,
        smi: KeyHandle,
        smc: KeyHandle,
        pan: str,
        psn: str,
        atc: int,
        arqc: bytes,
        pek: KeyHandle,
        pin_block: bytes,
    ) -> bytes:
        pin = self._clear_pin(pek, pin_block, pan)
        enc = self._session_key(smc, KeyUsage.EMV_SMC, pan, psn, atc, "encipher PINs for the card")
        mac = self._session_key(smi, KeyUsage.EMV_SMI, pan, psn, atc, "MAC issuer scripts")
        data = encrypt_pin_change_data(enc, pin, pin_format=PinChangeFormat.ISO2_ECB)
        try:
            return cryptograms.script_command(mac, _PIN_CHANGE, data, atc, arqc)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def keyed_hash(self, key: KeyHandle, data: bytes) -> bytes:
        keyed = self._usable(key, KeyUsage.HMAC, ("C", "G"), "compute keyed hashes").keyed
        assert keyed is not None, "every HMAC key is loaded with its keyed state"
        h = keyed.copy()
        h.update(data)
        return h.digest()

    # --- data protection --------------------------------------------------------------------------------
    def _dek(self, dek: KeyHandle, modes: tuple[str, ...], what: str) -> AESGCM:
        aead = self._usable(dek, KeyUsage.DATA, modes, what).aead
        if aead is None:  # made for AES-256 data keys only (_Key.of)
            raise KeyUsageError(f"data key {dek.label!r} must be an AES-256 key to seal records")
        return aead

    def seal(self, dek: KeyHandle, plaintext: bytes, associated_data: bytes) -> bytes:
        aead = self._dek(dek, ("B", "E"), "seal data")
        iv = self._random(_SEAL_IV)
        return _SEAL_VERSION + iv + aead.encrypt(iv, bytes(plaintext), bytes(associated_data))

    def unseal(self, dek: KeyHandle, sealed: bytes, associated_data: bytes) -> bytes:
        plaintext = _open(self._dek(dek, ("B", "D"), "unseal data"), sealed, associated_data)
        if plaintext is None:
            if len(sealed) < 1 + _SEAL_IV + _SEAL_TAG or sealed[:1] != _SEAL_VERSION:
                raise SealedDataError(f"data under {dek.label!r} is not sealed data of version 01")
            raise SealedDataError(
                f"sealed data under {dek.label!r} does not open: altered, another record's, or another key"
            )
        return plaintext

    def unseal_many(self, dek: KeyHandle, items: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]:
        aead = self._dek(dek, ("B", "D"), "unseal data")
        if len(items) > MAX_UNSEAL_MANY:
            raise HsmInputError(f"at most {MAX_UNSEAL_MANY} sealed values per call, not {len(items)}")
        return [_open(aead, sealed, associated_data) for sealed, associated_data in items]

    # --- RSA --------------------------------------------------------------------------------------------
    def generate_rsa_key(
        self,
        label: str,
        usage: KeyUsage,
        bits: int,
        *,
        public_exponent: int = 65537,
        exportable: bool = False,
    ) -> KeyHandle:
        if usage not in (KeyUsage.SIGNATURE, KeyUsage.CA):
            raise KeyUsageError(f"an RSA key pair is for signatures (S0) or certificates (S1), not {usage}")
        if not 512 <= bits <= 2048 or bits % 8:
            raise HsmInputError("RSA modulus must be 512 to 2048 bits, a multiple of 8")
        if public_exponent not in (3, 65537):
            raise HsmInputError("EMV allows public exponents 3 and 65537 only")
        private = rsa.generate_private_key(public_exponent=public_exponent, key_size=bits)
        der = private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return self._store_new(label, _header(usage, Algorithm.RSA, exportable, "S"), der)

    def _private(self, key: KeyHandle, usage: KeyUsage, what: str) -> tuple[rsa.RSAPrivateKey, RsaKey]:
        der = self._use(key, usage, ("S",), what)
        cached = self._rsa.get(key.label)
        if cached is None:
            private = serialization.load_der_private_key(der, password=None)
            assert isinstance(private, rsa.RSAPrivateKey)
            n = private.private_numbers()
            pub = n.public_numbers
            cached = (private, RsaKey(pub.n, pub.e, n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp))
            self._rsa[key.label] = cached
        return cached

    def public_key(self, key: KeyHandle) -> RsaPublicKey:
        stored = self._load(key.label)
        if stored.handle.algorithm != Algorithm.RSA:
            raise KeyUsageError(f"key {key.label!r} is not an RSA key")
        private = serialization.load_der_private_key(stored.secret, password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        numbers = private.public_key().public_numbers()
        return RsaPublicKey(numbers.n, numbers.e)

    def _with_ca_key(self, key: KeyHandle, what: str, operation: Callable[[RsaKey], _T]) -> _T:
        """Run ``operation`` with the private half of a CA key pair (``S1``); its ValueError is bad input."""
        _, private = self._private(key, KeyUsage.CA, what)
        try:
            return operation(private)
        except ValueError as exc:
            raise HsmInputError(str(exc)) from None

    def sign_raw(self, key: KeyHandle, block: bytes) -> bytes:
        return self._with_ca_key(key, "sign certificates", lambda crt: rsa_private_raw(crt, block))

    def emv_issuer_certificate(
        self,
        ca_key: KeyHandle,
        issuer_key: RsaPublicKey,
        issuer_identifier: str,
        expiry_mmyy: str,
        serial: bytes,
    ) -> tuple[bytes, bytes]:
        return self._with_ca_key(
            ca_key,
            "certify issuer keys",
            lambda key: rsa_cert.build_issuer_certificate(
                key, issuer_key, issuer_identifier, expiry_mmyy, serial
            ),
        )

    def emv_icc_certificate(
        self,
        issuer_key: KeyHandle,
        icc_key: RsaPublicKey,
        pan: str,
        expiry_mmyy: str,
        serial: bytes,
        static: bytes,
    ) -> tuple[bytes, bytes]:
        return self._with_ca_key(
            issuer_key,
            "certify ICC keys",
            lambda key: rsa_cert.build_icc_certificate(key, icc_key, pan, expiry_mmyy, serial, static),
        )

    def emv_signed_static_data(self, issuer_key: KeyHandle, dac: bytes, static: bytes) -> bytes:
        return self._with_ca_key(
            issuer_key, "sign static data", lambda key: rsa_cert.sign_static_data(key, dac, static)
        )

    def sign(self, key: KeyHandle, message: bytes) -> bytes:
        private, _ = self._private(key, KeyUsage.SIGNATURE, "sign messages")
        return private.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def generate_icc_rsa_key(self, bits: int, public_exponent: int = 3) -> RsaKey:
        """A fresh ICC key pair for personalisation: it leaves the HSM for the card and is not kept."""
        if not 1024 <= bits <= 1984 or bits % 8 or public_exponent not in (3, 65537):
            raise HsmInputError("ICC RSA modulus must be 1024 to 1984 bits with exponent 3 or 65537")
        return RsaKey.generate(bits, public_exponent)


def _open(aead: AESGCM, sealed: bytes, associated_data: bytes) -> bytes | None:
    """The plaintext of sealed data (:meth:`SoftHsm.seal`'s format) under ``aead``; None when it is not
    sealed data of version 01 or does not open."""
    if len(sealed) < 1 + _SEAL_IV + _SEAL_TAG or sealed[:1] != _SEAL_VERSION:
        return None
    try:
        return aead.decrypt(sealed[1 : 1 + _SEAL_IV], bytes(sealed[1 + _SEAL_IV :]), bytes(associated_data))
    except InvalidTag:
        return None


def _header(
    usage: KeyUsage, algorithm: Algorithm, exportable: bool, mode: str | None = None
) -> keyblock.Header:
    return keyblock.Header(
        usage=usage.value,
        algorithm=algorithm.value,
        mode=mode or _DEFAULT_MODE[usage],
        version="00",
        exportability="E" if exportable else "N",
    )


def _check_aes_kek(kek: KeyHandle) -> None:
    if kek.algorithm != Algorithm.AES:
        raise KeyUsageError(f"KEK {kek.label!r} must be an AES key to protect version D key blocks")


def _kcv(algorithm: Algorithm, secret: bytes) -> str:
    if algorithm == Algorithm.TDEA:
        return des.kcv(secret).hex().upper()
    if algorithm == Algorithm.HMAC:
        return hmac.new(secret, bytes(32), hashlib.sha256).digest()[:3].hex().upper()
    if algorithm == Algorithm.AES:
        c = CMAC(algorithms.AES(secret))
        c.update(bytes(16))
        return c.finalize()[:3].hex().upper()
    private = serialization.load_der_private_key(secret, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return rsa_kcv(private.public_key().public_numbers().n)
