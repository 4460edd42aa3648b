"""Personalisation at issuance: the issuer's card record becomes a chip image, keys from the HSM.

The image (``citycard.chip.personalise``, ``docs/card-profile.md``) goes to an injected :class:`ImageSink`
(a directory of card-image files in the CLI, memory in tests) with a **personalisation record** a card
bureau could use: one JSON object per card with the data it prints and embosses (masked PAN, holder name,
expiry, product) and what it checks (the key check values of the three card keys, the image's reference).
With a bureau KEK (an AES ``K0`` key shared with the bureau by key ceremony) the record also carries the
three card keys as TR-31 version D key blocks under it; otherwise no key material is in the record.
"""

from __future__ import annotations

import calendar
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from citycard.chip.image import CardImage
from citycard.chip.pboc import TRANSIT_SFI
from citycard.chip.personalise import ProductProfile, personalise
from citycard.codec.appfile import APP_FILE_SFI, APP_NUMBERS, empty_record
from citycard.codec.cn import cn_digits
from citycard.crypto.des import kcv
from citycard.hsm.api import Hsm
from citycard.hsm.personalisation import HsmPersonalisationKeys, IssuerCertifier

from .model import Bank, Card, CardRecord, Product, bank_key_labels, mask_pan

__all__ = ["ChipPersonaliser", "ImageSink", "app_file_records", "profile_for"]


class ImageSink(Protocol):
    def save(self, card: Card, image: CardImage, record: dict[str, Any]) -> str:
        """Store the image and the personalisation record; return a reference (a path)."""
        ...


def profile_for(product: Product, card: Card, holder_name: str | None) -> ProductProfile:
    issued = datetime.fromtimestamp(card.issued_at_ns // 10**9, UTC)
    name = (holder_name or "").strip()
    if card.registered and not (name.isascii() and 2 <= len(name) <= 26):
        name = "CITIZEN CARDHOLDER"  # 5F20 is ASCII (EMV ans); a Chinese name stays in the issuer's records
    last_day = calendar.monthrange(2000 + int(card.expiry[:2]), int(card.expiry[2:]))[1]
    return ProductProfile(
        bin=product.bin,
        pan_length=len(card.pan),
        psn=card.psn,
        effective=issued.strftime("%y%m%d"),
        expiry=card.expiry + f"{last_day:02d}",
        registered=card.registered,
        holder_name=name if card.registered else "",
        ec_balance_limit_fen=product.ec_balance_limit_fen,
        ec_single_limit_fen=product.ec_single_limit_fen,
        ec_reset_threshold_fen=product.ec_reset_threshold_fen,
        app_file=True,  # the industry applications file (SFI 22), written by script once enabled
        transit=True,  # the transit file (SFI 21): every card pays bus fares (docs/transit.md)
    )


def app_file_records(records: Sequence[CardRecord]) -> tuple[str, ...]:
    """The applications file (SFI 22) as personalised: each application's record of ``records``, the
    others absent (``citycard.codec.appfile``)."""
    out = [empty_record(code) for code in APP_NUMBERS]
    for r in records:
        if r.sfi == APP_FILE_SFI:
            assert 1 <= r.record <= len(out), r.record
            out[r.record - 1] = r.data
    return tuple(x.hex().upper() for x in out)


class ChipPersonaliser:
    """``CardPersonaliser`` of the issuer handlers: chip image + personalisation record per card.

    Images are made inside the issuing transaction but reach the sink only after it commits: they are held
    (per thread) until :meth:`publish`, and :meth:`discard` drops them when the transaction fails, so a
    failed issuance leaves no card-image file and no bureau record behind.
    """

    def __init__(
        self, hsm: Hsm, certify_issuer: IssuerCertifier, sink: ImageSink, *, bureau_kek: str | None = None
    ) -> None:
        self.hsm = hsm
        self.bureau_kek = hsm.get(bureau_kek) if bureau_kek else None
        self.certify_issuer = certify_issuer
        self.sink = sink
        self._keys: dict[str, HsmPersonalisationKeys] = {}
        self._staged = threading.local()

    def _pending(self) -> list[tuple[Card, CardImage, dict[str, Any]]]:
        pending: list[tuple[Card, CardImage, dict[str, Any]]] | None = getattr(self._staged, "cards", None)
        if pending is None:
            pending = self._staged.cards = []
        return pending

    def publish(self) -> list[str]:
        """Hand this thread's held images to the sink (after the issuing transaction committed)."""
        pending, self._staged.cards = self._pending(), []
        return [self.sink.save(card, image, record) for card, image, record in pending]

    def discard(self) -> None:
        """Drop this thread's held images (the issuing transaction rolled back)."""
        self._staged.cards = []

    def keys(self, bank_code: str) -> HsmPersonalisationKeys:
        keys = self._keys.get(bank_code)
        if keys is None:
            labels = bank_key_labels(bank_code)
            keys = self._keys[bank_code] = HsmPersonalisationKeys(
                self.hsm,
                imk_ac=self.hsm.get(labels["imk_ac"]),
                imk_smi=self.hsm.get(labels["imk_smi"]),
                imk_smc=self.hsm.get(labels["imk_smc"]),
                issuer_key=self.hsm.get(labels["issuer_rsa"]),
                certify_issuer=self.certify_issuer,
            )
        return keys

    def personalise(
        self,
        bank: Bank,
        product: Product,
        card: Card,
        holder_name: str | None,
        pin_block: bytes | None = None,
        records: Sequence[CardRecord] = (),
    ) -> None:
        """Make the card's image and record; held until :meth:`publish`. With ``pin_block`` (the PIN chosen
        at issuance, ISO format 1 under the bank's zone PIN key) the chip's offline PIN is that PIN; the
        record never carries it."""
        keys = self.keys(bank.code)
        profile = profile_for(product, card, holder_name)
        if pin_block is not None:
            zpk = self.hsm.get(bank_key_labels(bank.code)["zpk"])
            profile = replace(profile, pin=self.hsm.pin_for_card_image(zpk, pin_block))
        if any(r.sfi == APP_FILE_SFI for r in records):
            profile = replace(profile, app_records=app_file_records(records))
        for r in records:
            if r.sfi == TRANSIT_SFI:  # the concession record (record 1) as the issuer keeps it
                assert r.record == 1, r.record
                profile = replace(profile, concession=r.data.hex().upper())
        serial = int(card.pan[len(product.bin) : -1])
        image = personalise(profile, serial, keys)
        app = image.applications[0]
        assert cn_digits(app.data["5A"]) == card.pan, "chip and issuer disagree on the PAN"
        record = {
            "format": "citycard-personalisation-record",
            "version": 1,
            "bank": bank.code,
            "product": product.code,
            "pan_masked": mask_pan(card.pan),
            "psn": card.psn,
            "expiry": card.expiry,
            "registered": card.registered,
            "embossed_name": profile.holder_name,
            "ec_balance_limit_fen": product.ec_balance_limit_fen,
            "key_check_values": {
                "udk_ac": kcv(app.udk_ac).hex().upper(),
                "udk_mac": kcv(app.udk_mac).hex().upper(),
                "udk_enc": kcv(app.udk_enc).hex().upper(),
            },
        }
        if self.bureau_kek is not None:  # the card keys as TR-31 blocks under the bureau's KEK
            record["key_blocks"] = {
                name: self.hsm.export_icc_key_block(imk, imk.usage, card.pan, card.psn, self.bureau_kek)
                for name, imk in (
                    ("udk_ac", keys.imk_ac),
                    ("udk_mac", keys.imk_smi),
                    ("udk_enc", keys.imk_smc),
                )
            }
            record["bureau_kek"] = {"label": self.bureau_kek.label, "kcv": self.bureau_kek.kcv}
        self._pending().append((card, image, record))
