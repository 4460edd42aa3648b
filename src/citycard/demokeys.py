"""Demo personalisation keys: a software :class:`~citycard.chip.personalise.PersonalisationKeys` kept in a
local JSON key file (an adapter: file I/O and the operating system's randomness).

**Demo only.** The file holds, in clear, a demo certification authority key (RSA 1024, exponent 3, RID
``A000000333``, index ``F1``), an issuer key certified by it, and the three issuer master keys (IMK-AC,
IMK-SMI, IMK-SMC) from which every card's UDKs are derived (EMV Book 2 A1.4.1, option A). Real keys live in
an HSM (``citycard.hsm``), which implements the same protocol. RSA 1024 keeps key generation and signing
quick; production CA keys are 1984 bits.

The file is created on first use (the CLI keeps it at ``$CITYCARD_HOME/demo-keys.json``) and written
atomically. A terminal
that should trust the demo CA loads :meth:`DemoKeys.ca_public_key`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citycard.chip.image import ImageError, rsa_key_from_json, rsa_key_to_json
from citycard.chip.personalise import CardUdks, IssuerPublicKeyData
from citycard.crypto.derivation import derive_icc_mk_a
from citycard.crypto.des import adjust_parity
from citycard.crypto.rsa_cert import (
    RsaKey,
    RsaPublicKey,
    build_icc_certificate,
    build_issuer_certificate,
    sign_static_data,
)
from citycard.durable import atomic_write

__all__ = ["CA_INDEX", "DEMO_DATA_KEY", "RID", "DemoKeyError", "DemoKeys"]

FORMAT = "citycard-demo-keys"
DEMO_DATA_KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
"""The demo terminals' data key sealing PANs in their journals (``citycard pos``, the simulated terminals)."""
VERSION = 1
RID = "A000000333"
CA_INDEX = 0xF1
_BITS = 1024
_EXPONENT = 3
_ISSUER_EXPIRY = "1235"  # MMYY


class DemoKeyError(ValueError):
    """A demo key file that cannot be read."""


@dataclass
class DemoKeys:
    """The demo CA, issuer key and issuer master keys; implements ``PersonalisationKeys``."""

    ca_key: RsaKey
    issuer_key: RsaKey
    imk_ac: bytes = field(repr=False)
    imk_mac: bytes = field(repr=False)
    imk_enc: bytes = field(repr=False)
    ca_index: int = CA_INDEX
    key_bits: int = _BITS
    _issuer_certs: dict[str, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)

    # -- creation and storage ------------------------------------------------------------------------
    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom, bits: int = _BITS) -> DemoKeys:
        """Fresh demo keys (RSA keys from OpenSSL's generator, master keys from ``rng``)."""
        return cls(
            ca_key=RsaKey.generate(bits, _EXPONENT),
            issuer_key=RsaKey.generate(bits, _EXPONENT),
            imk_ac=adjust_parity(rng(16)),
            imk_mac=adjust_parity(rng(16)),
            imk_enc=adjust_parity(rng(16)),
            key_bits=bits,
        )

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> DemoKeys:
        """Load the key file, or create it (and its directory) on first use."""
        target = Path(path)
        if target.exists():
            return cls.from_json(target.read_bytes())
        keys = cls.generate()
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, keys.to_json())
        return keys

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "warning": "DEMO ONLY: keys in clear, never use for real cards",
            "ca": {"rid": RID, "index": f"{self.ca_index:02X}", "key": rsa_key_to_json(self.ca_key)},
            "issuer": {"key": rsa_key_to_json(self.issuer_key)},
            "imk": {
                "ac": self.imk_ac.hex().upper(),
                "mac": self.imk_mac.hex().upper(),
                "enc": self.imk_enc.hex().upper(),
            },
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> DemoKeys:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT or doc.get("version") != VERSION:
                raise DemoKeyError(f"not a {FORMAT} version {VERSION} document")
            keys = cls(
                ca_key=rsa_key_from_json(doc["ca"]["key"]),
                issuer_key=rsa_key_from_json(doc["issuer"]["key"]),
                imk_ac=bytes.fromhex(doc["imk"]["ac"]),
                imk_mac=bytes.fromhex(doc["imk"]["mac"]),
                imk_enc=bytes.fromhex(doc["imk"]["enc"]),
                ca_index=int(doc["ca"]["index"], 16),
            )
        except (ValueError, KeyError, TypeError, AttributeError, ImageError) as exc:
            if isinstance(exc, DemoKeyError):
                raise
            raise DemoKeyError(f"demo key file is malformed ({type(exc).__name__})") from None
        if any(len(k) != 16 for k in (keys.imk_ac, keys.imk_mac, keys.imk_enc)):
            raise DemoKeyError("issuer master keys must be 16 bytes")
        keys.key_bits = keys.icc_key_bits()
        return keys

    def icc_key_bits(self) -> int:
        return self.issuer_key.n.bit_length()

    # -- public data ---------------------------------------------------------------------------------
    def ca_public_key(self) -> tuple[str, int, RsaPublicKey]:
        """(RID, CA public key index, key): what a terminal needs to trust the demo CA."""
        return RID, self.ca_index, self.ca_key.public

    # -- PersonalisationKeys -------------------------------------------------------------------------
    def card_udks(self, pan: str, psn: str) -> CardUdks:
        return CardUdks(
            ac=derive_icc_mk_a(self.imk_ac, pan, psn),
            mac=derive_icc_mk_a(self.imk_mac, pan, psn),
            enc=derive_icc_mk_a(self.imk_enc, pan, psn),
        )

    def generate_icc_key(self) -> RsaKey:
        return RsaKey.generate(self.key_bits, _EXPONENT)

    def issuer_public_key_data(self, issuer_identifier: str) -> IssuerPublicKeyData:
        """The issuer certificate for this issuer identifier (the BIN), made once and kept."""
        cached = self._issuer_certs.get(issuer_identifier)
        if cached is None:
            serial = bytes.fromhex("000001")
            cached = build_issuer_certificate(
                self.ca_key, self.issuer_key.public, issuer_identifier, _ISSUER_EXPIRY, serial
            )
            self._issuer_certs[issuer_identifier] = cached
        certificate, remainder = cached
        return IssuerPublicKeyData(self.ca_index, certificate, remainder, self.issuer_key.public.exponent)

    def certify_icc_key(
        self, icc_key: RsaPublicKey, pan: str, expiry_mmyy: str, static_data: bytes
    ) -> tuple[bytes, bytes]:
        serial = bytes.fromhex("000001")
        return build_icc_certificate(self.issuer_key, icc_key, pan, expiry_mmyy, serial, static_data)

    def sign_static_data(self, dac: bytes, static_data: bytes) -> bytes:
        return sign_static_data(self.issuer_key, dac, static_data)
