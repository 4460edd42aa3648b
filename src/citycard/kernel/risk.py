"""Steps 5, 7 and 8: processing restrictions, terminal risk management and terminal action analysis
(EMV 4.3 Book 3 §10.4, §10.6, §10.7)."""

from __future__ import annotations

from collections.abc import Generator

from citycard.codec.emvbits import (
    CID_AAC,
    CID_ARQC,
    CID_TC,
    TSI_TRM,
    TVR_CARD_ON_EXCEPTION_FILE,
    TVR_DIFFERENT_VERSIONS,
    TVR_EXPIRED,
    TVR_FLOOR_LIMIT,
    TVR_LCOL_EXCEEDED,
    TVR_MERCHANT_FORCED_ONLINE,
    TVR_NEW_CARD,
    TVR_NOT_YET_EFFECTIVE,
    TVR_RANDOM_ONLINE,
    TVR_SERVICE_NOT_ALLOWED,
    TVR_UCOL_EXCEEDED,
)

from .base import KernelBase, TransactionKind, _date, _pan_digits
from .events import Answer, Event

__all__ = ["RiskSteps"]


class RiskSteps(KernelBase):
    # -- 5. processing restrictions (Book 3 §10.4) ------------------------------------------------------

    def _restrictions(self) -> None:
        version = self.card.get("9F08")
        if self.terminal_aid is not None and version is not None and version != self.terminal_aid.app_version:
            self.tvr.set(TVR_DIFFERENT_VERSIONS)
        auc = self.card.get("9F07")
        if auc is not None and len(auc) >= 2:
            # Book 4 Annex A1: an ATM is an unattended financial-institution terminal (9F35 14/15/16)
            # with the "cash" transaction type in its additional capabilities (9F40 byte 1 bit 8)
            c = self.config
            atm = c.terminal_type in (0x14, 0x15, 0x16) and bool(c.additional_capabilities[0] & 0x80)
            if not auc[0] & (0x02 if atm else 0x01):  # valid at ATMs / at terminals other than ATMs
                self.tvr.set(TVR_SERVICE_NOT_ALLOWED)
            country = self.card.get("5F28")
            if country is not None and self.txn.kind is TransactionKind.PURCHASE:
                domestic = country == self.config.country
                goods_services = 0x28 if domestic else 0x14
                if not auc[0] & goods_services:
                    self.tvr.set(TVR_SERVICE_NOT_ALLOWED)
                if self.txn.other_amount_fen and not auc[1] & (0x80 if domestic else 0x40):
                    self.tvr.set(TVR_SERVICE_NOT_ALLOWED)
        today = self.txn.now.date()
        if "5F25" in self.card and _date(self.card["5F25"], "5F25") > today:
            self.tvr.set(TVR_NOT_YET_EFFECTIVE)
        if "5F24" in self.card and _date(self.card["5F24"], "5F24") < today:
            self.tvr.set(TVR_EXPIRED)

    # -- 7. terminal risk management (Book 3 §10.6) ------------------------------------------------------

    def _risk_management(self) -> Generator[Event, Answer, None]:
        self.tsi.set(TSI_TRM)
        c = self.config
        pan = _pan_digits(self.card.get("5A", b""))
        if pan in c.exception_file.pans:
            self.tvr.set(TVR_CARD_ON_EXCEPTION_FILE)
        if c.exception_file.stale(self.txn.now):
            self.tvr.set(TVR_MERCHANT_FORCED_ONLINE)
        if self.txn.force_online:
            self.tvr.set(TVR_MERCHANT_FORCED_ONLINE)
        amount = self.txn.amount_fen
        if not self._ec and amount >= c.floor_limit_fen:
            self.tvr.set(TVR_FLOOR_LIMIT)
        if not self._ec and c.random_target_percent and amount < c.floor_limit_fen:
            draw = int.from_bytes(self._rng(2), "big") % 99 + 1
            target = c.random_target_percent
            if amount >= c.random_threshold_fen and c.floor_limit_fen > c.random_threshold_fen:
                span = c.floor_limit_fen - c.random_threshold_fen
                target += (
                    (c.random_max_target_percent - c.random_target_percent)
                    * (amount - c.random_threshold_fen)
                    // span
                )
            if draw <= target:
                self.tvr.set(TVR_RANDOM_ONLINE)
        if "9F14" in self.card and "9F23" in self.card:
            atc = yield from self._get_data("9F36")
            last_online = yield from self._get_data("9F13")
            if atc is None or last_online is None or len(atc) != 2 or len(last_online) != 2:
                self.tvr.set(TVR_LCOL_EXCEEDED)
                self.tvr.set(TVR_UCOL_EXCEEDED)
            else:
                gap = int.from_bytes(atc, "big") - int.from_bytes(last_online, "big")
                if gap > self.card["9F14"][0]:
                    self.tvr.set(TVR_LCOL_EXCEEDED)
                if gap > self.card["9F23"][0]:
                    self.tvr.set(TVR_UCOL_EXCEEDED)
                if last_online == b"\x00\x00":
                    self.tvr.set(TVR_NEW_CARD)

    # -- 8. terminal action analysis, GENERATE AC (Book 3 §10.7-10.8, §6.5.5) ------------------------------

    def _action_analysis(self) -> int:
        iac_denial = self.card.get("9F0E", bytes(5))
        iac_online = self.card.get("9F0F", b"\xff" * 5)
        iac_default = self.card.get("9F0D", b"\xff" * 5)
        c = self.config
        if self.tvr.intersects(c.tac_denial) or self.tvr.intersects(iac_denial):
            return CID_AAC
        online = c.online_capable and not self._ec
        if self.txn.force_online and online:
            return CID_ARQC
        if online:
            if self.tvr.intersects(c.tac_online) or self.tvr.intersects(iac_online):
                return CID_ARQC
            return CID_TC
        if self.tvr.intersects(c.tac_default) or self.tvr.intersects(iac_default):
            return CID_AAC
        return CID_TC
