"""The HSM interface: what the issuer and the network may ask of key custody, and nothing more.

Secret keys never cross this interface in clear: callers hold :class:`KeyHandle` values (a label plus the
attributes the key block binds to the key, ASC X9 TR-31:2018 / ANSI X9.143 §6) and ask for operations. The
shape follows what a PKCS#11 token offers (objects found by label, ``CKA_*`` attributes fixed at creation,
derive / sign / wrap mechanisms), so a SoftHSM2 backend (``pkcs11.py``) can implement the same Protocol.

Failures: a key used for something its block does not allow raises :class:`KeyUsageError`; an unknown label
:class:`KeyNotFoundError`; malformed input :class:`HsmInputError`. A cryptogram or PIN that does not verify
is a business outcome: the verify operations return ``False``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from citycard.crypto.rsa_cert import RsaKey, RsaPublicKey

__all__ = [
    "MAX_CARDS_ACS",
    "MAX_UNSEAL_MANY",
    "Algorithm",
    "Hsm",
    "HsmError",
    "HsmInputError",
    "KeyExistsError",
    "KeyHandle",
    "KeyNotFoundError",
    "KeyStoreError",
    "KeyUsage",
    "KeyUsageError",
    "RsaPublicKey",
    "SealedDataError",
    "WorkingKey",
]


MAX_CARDS_ACS = 65_536
"""Most cryptograms, all cards together, of one :meth:`Hsm.verify_cards_acs` call (more: HsmInputError);
clearing splits a batch's cards into calls under it."""
MAX_UNSEAL_MANY = 65_536
"""Most sealed values of one :meth:`Hsm.unseal_many` call (more: HsmInputError)."""


class KeyUsage(enum.StrEnum):
    """Key usage codes of TR-31:2018 Table 6 / X9.143 that the issuer needs."""

    EMV_AC = "E0"  # EMV issuer master key: application cryptograms (ARQC/TC/AAC, ARPC)
    EMV_SMC = "E1"  # EMV issuer master key: secure messaging for confidentiality
    EMV_SMI = "E2"  # EMV issuer master key: secure messaging for integrity (script MACs)
    EMV_DN = "E4"  # EMV issuer master key: dynamic numbers / data (ICC dynamic number keys)
    EMV_OTHER = "E6"  # EMV/chip master key, other: the transit key of the validators (trip-record MACs)
    PIN_ENCRYPTION = "P0"  # PIN encryption key (ZPK / TPK)
    PIN_VERIFICATION_IBM3624 = "V1"  # PIN verification key, IBM 3624 (offset over every PIN digit)
    PIN_VERIFICATION_VISA = "V2"  # PIN verification key, Visa PVV
    KEK = "K0"  # key encryption / wrapping key
    DATA = "D0"  # symmetric data encryption
    MAC = "M6"  # ISO 9797-1:2011 MAC algorithm 5 (CMAC)
    MAC_X9_19 = "M3"  # ISO 9797-1 MAC algorithm 3, ANSI X9.19 retail MAC (the POS terminal's MAK)
    HMAC = "M7"  # HMAC key (keyed hashes of personal data: resident ID numbers)
    SIGNATURE = "S0"  # asymmetric key pair for digital signature (deny lists)
    CA = "S1"  # asymmetric key pair, CA key (issuer key signing ICC certificates)


class Algorithm(enum.StrEnum):
    TDEA = "T"
    AES = "A"
    RSA = "R"
    HMAC = "H"


class HsmError(Exception):
    """Base of every HSM failure. Messages name labels and usages, never key material."""


class KeyUsageError(HsmError):
    """The key's block does not allow this operation (wrong usage, mode of use or exportability)."""


class KeyNotFoundError(HsmError):
    pass


class KeyExistsError(HsmError):
    pass


class KeyStoreError(HsmError):
    """The HSM's own storage cannot be used: its master key is missing or malformed, or a key block at rest
    does not verify under it (altered, or made under another master key). Says which, never the key."""


class HsmInputError(HsmError, ValueError):
    """Malformed input to an operation (lengths, digits); says which argument."""


class SealedDataError(HsmError):
    """Sealed data that does not open: altered, sealed for another record (associated data), under another
    key, or not sealed data at all. Says which record's data failed, never the data."""


@dataclass(frozen=True, slots=True)
class KeyHandle:
    """A reference to a key inside the HSM with the attributes its key block binds (no key material)."""

    label: str
    usage: KeyUsage
    algorithm: Algorithm
    mode: str
    version: str
    exportable: bool
    kcv: str  # key check value, hex (3 bytes for TDEA/AES; for RSA, of the public modulus)


@dataclass(frozen=True, slots=True)
class WorkingKey:
    """A terminal working key (PIK or MAK) made at sign-on: the key under the terminal master key (TMK),
    for field 62 of the 0810, its check value, and the handle of the same key kept in this HSM."""

    encrypted: bytes  # 3DES-ECB under the TMK (16 bytes for a double-length key)
    check_value: bytes  # the first 4 bytes of the key encrypting a zero block (ANSI X9.24), as UnionPay sends
    handle: KeyHandle


@runtime_checkable
class Hsm(Protocol):
    """Operations of the issuer's HSM. Every method checks the usage bound to each key it is given."""

    # --- key management -------------------------------------------------------------------------------
    def generate_key(
        self, label: str, usage: KeyUsage, *, algorithm: Algorithm = ..., exportable: bool = ...
    ) -> KeyHandle: ...
    def import_components(
        self, label: str, usage: KeyUsage, components: Sequence[bytes], *, algorithm: Algorithm = ...
    ) -> KeyHandle:
        """A symmetric key entered as clear components (XOR), as in a key ceremony."""
        ...

    def import_key_block(self, label: str, block: str, kek: KeyHandle) -> KeyHandle: ...
    def export_key_block(self, key: KeyHandle, kek: KeyHandle) -> str: ...
    def get(self, label: str) -> KeyHandle: ...
    def labels(self) -> list[str]: ...

    # --- POS terminal working keys (sign-on 0800/0810) --------------------------------------------------
    def generate_working_key(
        self, label: str, tmk: KeyHandle, usage: KeyUsage, *, replace: bool = False
    ) -> WorkingKey:
        """A fresh double-length 3DES working key (``P0`` PIK or ``M3`` MAK), kept under ``label`` and given
        out only under the terminal master key ``tmk`` (a 3DES ``K0`` key), with its check value.
        ``replace=True`` replaces a key under ``label`` (a new sign-on replaces the working keys)."""
        ...

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
        """The terminal's side: a working key received under ``tmk``, kept if its check value matches
        (else :class:`HsmInputError`, nothing kept); ``replace=True`` replaces a key under ``label``."""
        ...

    def pos_mac(self, mak: KeyHandle, mac_block: bytes) -> bytes:
        """The 8-byte field 64 MAC (ANSI X9.19) of an ISO 8583 MAC block under an ``M3`` MAK."""
        ...

    # --- transit (the validators' secure module, docs/transit.md) -------------------------------------
    def transit_record_mac(self, tk: KeyHandle, pan: str, psn: str, record: bytes) -> bytes:
        """The 4-byte MAC of a card's trip record: ISO 9797-1 algorithm 3, padding method 2, under the card's
        transit key, derived from the ``E6`` transit key ``tk`` with PAN and PSN (EMV Book 2 A1.4.1 option
        A); the derived key never leaves the HSM."""
        ...

    def verify_transit_record_mac(self, tk: KeyHandle, pan: str, psn: str, record: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is :meth:`transit_record_mac` of ``record`` (a business outcome, not an error)."""
        ...

    # --- EMV / PBOC cryptograms -----------------------------------------------------------------------
    def verify_arqc(self, imk: KeyHandle, pan: str, psn: str, atc: int, ac_data: bytes, arqc: bytes) -> bool:
        """Whether ``arqc`` is the card's application cryptogram over ``ac_data`` (EMV Book 2 §8.1, PBOC
        session key). The same check verifies a TC or an AAC: clearing uses it for offline TCs."""
        ...

    def verify_card_acs(
        self, imk: KeyHandle, pan: str, psn: str, checks: Sequence[tuple[int, Sequence[bytes], bytes]]
    ) -> list[bool]:
        """:meth:`verify_arqc` for several cryptograms of one card at once (clearing's batch of a card's
        TCs): each check is (ATC, the inputs to try in order, cryptogram) and verifies when the cryptogram
        is the card's over any of them. The card's UDK is derived once for all of them."""
        ...

    def verify_cards_acs(
        self,
        imk: KeyHandle,
        cards: Sequence[tuple[str, str, Sequence[tuple[int, Sequence[bytes], bytes]]]],
    ) -> list[list[bool]]:
        """:meth:`verify_card_acs` of each card (PAN, PSN, checks) of ``cards``, in order, in one call (a
        clearing batch's cards of one bank): the results of each card's checks, as that method gives them.
        At most :data:`MAX_CARDS_ACS` cryptograms in all; every input is checked before any cryptogram is
        verified (malformed: :class:`HsmInputError` naming the card, and no result)."""
        ...

    def generate_arpc(
        self, imk: KeyHandle, pan: str, psn: str, atc: int, arqc: bytes, arc: bytes
    ) -> bytes: ...
    def verify_ac_session_mac(
        self, imk: KeyHandle, pan: str, psn: str, atc: int, data: bytes, mac: bytes
    ) -> bool:
        """A 4-byte ISO 9797-1 alg. 3 MAC the card made under its AC session key (EC balance in ``9F10``)."""
        ...

    def script_command(
        self, smi: KeyHandle, pan: str, psn: str, atc: int, arqc: bytes, header: bytes, data: bytes
    ) -> bytes: ...
    def ec_load_script(
        self, smi: KeyHandle, pan: str, psn: str, atc: int, arqc: bytes, new_balance_fen: int
    ) -> bytes: ...

    def derive_icc_key(self, imk: KeyHandle, usage: KeyUsage, pan: str, psn: str) -> bytes:
        """The card's own master key (UDK) for personalisation: the one key that leaves in clear, because
        the card must hold it (a PKCS#11 backend returns it wrapped for the personalisation device)."""
        ...

    def export_icc_key_block(
        self, imk: KeyHandle, usage: KeyUsage, pan: str, psn: str, kek: KeyHandle
    ) -> str:
        """The card's UDK derived from ``imk`` as a TR-31 key block under ``kek`` (for a card bureau)."""
        ...

    # --- PIN ------------------------------------------------------------------------------------------
    def translate_pin_block(
        self, source: KeyHandle, destination: KeyHandle, pin_block: bytes, pan: str
    ) -> bytes: ...
    def encrypt_pin(self, pek: KeyHandle, pin: str, pan: str) -> bytes:
        """A PIN typed at a secure device, as an ISO 9564 format 0 block under ``pek`` (a PIN pad's job)."""
        ...

    def generate_pvv(self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, pvki: int) -> str:
        """Visa PVV: it covers the PIN's first 4 digits only (the IBM 3624 offset checks a whole PIN)."""
        ...

    def verify_pin(
        self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, pvki: int, pvv: str
    ) -> bool: ...
    def encrypt_pin_iso1(self, pek: KeyHandle, pin: str) -> bytes:
        """A PIN typed at a PIN pad before the card has a PAN (instant issuance): ISO 9564 format 1 under
        ``pek``, random fill."""
        ...

    def generate_pin_offset(
        self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, *, iso_format: int = 0
    ) -> str:
        """IBM 3624 PIN offset of the PIN in ``pin_block`` (under ``pek``, ISO format 0, or 1 when chosen at
        issuance): one digit per PIN digit, so that the whole PIN is verified. ``pvk`` is a ``V1`` key; the
        decimalisation table is fixed inside."""
        ...

    def pin_for_card_image(self, pek: KeyHandle, pin_block: bytes) -> str:
        """The PIN of a format-1 ``pin_block`` for the offline PIN of a card image being personalised: the
        one clear PIN that leaves the HSM, because the chip must hold it (as ``derive_icc_key`` for keys)."""
        ...

    def verify_pin_offset(
        self, pek: KeyHandle, pvk: KeyHandle, pin_block: bytes, pan: str, offset: str
    ) -> bool:
        """Whether the PIN in ``pin_block`` is the one ``offset`` was made for (every digit, its length)."""
        ...

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
        """PIN CHANGE/UNBLOCK (``84 24 00 02``) that sets the card's offline PIN to the PIN in ``pin_block``
        (format 0 under ``pek``): the new PIN enciphered under the card's ENC session key (``smc``), the
        command MACed under its MAC session key (``smi``); the PIN is in clear only inside the HSM."""
        ...

    def keyed_hash(self, key: KeyHandle, data: bytes) -> bytes:
        """HMAC-SHA-256 (RFC 2104) under an ``M7`` key: a pseudonym for personal data."""
        ...

    # --- data protection (records at rest) ------------------------------------------------------------
    def seal(self, dek: KeyHandle, plaintext: bytes, associated_data: bytes) -> bytes:
        """``plaintext`` encrypted and authenticated under the data-encryption key ``dek`` (a ``D0`` AES-256
        key, which never leaves the HSM): AES-256-GCM (NIST SP 800-38D) with a fresh random 96-bit IV,
        ``associated_data`` authenticated, not stored. Returns version ``01`` ‖ IV (12) ‖ ciphertext ‖ tag
        (16): 29 bytes more than ``plaintext``."""
        ...

    def unseal(self, dek: KeyHandle, sealed: bytes, associated_data: bytes) -> bytes:
        """The plaintext of :meth:`seal`'s output under the same key and associated data;
        :class:`SealedDataError` when it does not open (altered, another record's, another key)."""
        ...

    def unseal_many(self, dek: KeyHandle, items: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]:
        """:meth:`unseal` of each (sealed, associated data) of ``items`` under ``dek``, in order, in one call
        (a clearing batch's sealed PANs): None for each that does not open, where :meth:`unseal` raises
        :class:`SealedDataError`. At most :data:`MAX_UNSEAL_MANY` items."""
        ...

    # --- RSA ------------------------------------------------------------------------------------------
    def generate_rsa_key(
        self, label: str, usage: KeyUsage, bits: int, *, public_exponent: int = ..., exportable: bool = ...
    ) -> KeyHandle: ...
    def public_key(self, key: KeyHandle) -> RsaPublicKey: ...
    def sign_raw(self, key: KeyHandle, block: bytes) -> bytes:
        """Raw RSA private operation on a modulus-length block (EMV certificates, Book 2 §5.1)."""
        ...

    def emv_issuer_certificate(
        self,
        ca_key: KeyHandle,
        issuer_key: RsaPublicKey,
        issuer_identifier: str,
        expiry_mmyy: str,
        serial: bytes,
    ) -> tuple[bytes, bytes]:
        """Issuer public-key certificate ``90`` and remainder ``92`` (EMV Book 2 §5.1, format 02) signed by a
        CA key pair (``S1``) held in this HSM — the scheme's CA, or a test CA in a demo or pilot."""
        ...

    def emv_icc_certificate(
        self,
        issuer_key: KeyHandle,
        icc_key: RsaPublicKey,
        pan: str,
        expiry_mmyy: str,
        serial: bytes,
        static: bytes,
    ) -> tuple[bytes, bytes]:
        """ICC public-key certificate ``9F46`` and remainder ``9F48`` (EMV Book 2 §6.3, format 04)."""
        ...

    def emv_signed_static_data(self, issuer_key: KeyHandle, dac: bytes, static: bytes) -> bytes:
        """Signed static application data ``93`` (EMV Book 2 §5.4, format 03)."""
        ...

    def generate_icc_rsa_key(self, bits: int, public_exponent: int = ...) -> RsaKey:
        """A fresh ICC key pair that leaves the HSM for the card (not kept)."""
        ...

    def sign(self, key: KeyHandle, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2) over ``message``."""
        ...
