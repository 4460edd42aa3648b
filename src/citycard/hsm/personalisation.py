"""The chip's :class:`~citycard.chip.personalise.PersonalisationKeys` on top of the HSM.

Issuance personalises cards with the bank's keys held in the HSM: the card's UDKs are derived there from
the issuer master keys (EMV Book 2 A1.4.1, option A), the ICC key pair is generated there and leaves only
into the card image, the ICC certificate and the SDA signature are made with the bank's issuer RSA key
(usage ``S1``), which never leaves. The issuer certificate (signed by the scheme's CA over the issuer public
key) is an input: ``certify_issuer(issuer public key, issuer identifier)`` is given by whoever talks to the
CA (the demo CA of ``citycard.demokeys`` in development).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from citycard.chip.personalise import CardUdks, IssuerPublicKeyData
from citycard.crypto.rsa_cert import RsaKey, RsaPublicKey

from .api import Hsm, KeyHandle, KeyUsage

__all__ = ["HsmPersonalisationKeys", "IssuerCertifier"]

IssuerCertifier = Callable[[RsaPublicKey, str], IssuerPublicKeyData]


class HsmPersonalisationKeys:
    """Personalisation keys of one bank, every secret operation done by ``hsm``."""

    def __init__(
        self,
        hsm: Hsm,
        *,
        imk_ac: KeyHandle,
        imk_smi: KeyHandle,
        imk_smc: KeyHandle,
        issuer_key: KeyHandle,
        certify_issuer: IssuerCertifier,
    ) -> None:
        self.hsm = hsm
        self.imk_ac, self.imk_smi, self.imk_smc = imk_ac, imk_smi, imk_smc
        self.issuer_key = issuer_key
        self.certify_issuer = certify_issuer
        self.issuer_public = hsm.public_key(issuer_key)
        self._issuer_data: dict[str, IssuerPublicKeyData] = {}

    def card_udks(self, pan: str, psn: str) -> CardUdks:
        return CardUdks(
            ac=self.hsm.derive_icc_key(self.imk_ac, KeyUsage.EMV_AC, pan, psn),
            mac=self.hsm.derive_icc_key(self.imk_smi, KeyUsage.EMV_SMI, pan, psn),
            enc=self.hsm.derive_icc_key(self.imk_smc, KeyUsage.EMV_SMC, pan, psn),
        )

    def generate_icc_key(self) -> RsaKey:
        bits = max(1024, self.issuer_public.n.bit_length())
        return self.hsm.generate_icc_rsa_key(bits, 3)

    def issuer_public_key_data(self, issuer_identifier: str) -> IssuerPublicKeyData:
        data = self._issuer_data.get(issuer_identifier)
        if data is None:
            data = self._issuer_data[issuer_identifier] = self.certify_issuer(
                self.issuer_public, issuer_identifier
            )
        return data

    def certify_icc_key(
        self, icc_key: RsaPublicKey, pan: str, expiry_mmyy: str, static_data: bytes
    ) -> tuple[bytes, bytes]:
        serial = hashlib.sha256(pan.encode()).digest()[:3]
        return self.hsm.emv_icc_certificate(self.issuer_key, icc_key, pan, expiry_mmyy, serial, static_data)

    def sign_static_data(self, dac: bytes, static_data: bytes) -> bytes:
        return self.hsm.emv_signed_static_data(self.issuer_key, dac, static_data)
