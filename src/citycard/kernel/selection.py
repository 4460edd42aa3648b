"""Step 1, application selection (EMV 4.3 Book 1 §12; JR/T 0025.5): PSE or PPSE directory, list of AIDs
with partial selection (ASI), priority, cardholder confirmation, final SELECT."""

from __future__ import annotations

from collections.abc import Generator

from citycard.codec import commands, tlv
from citycard.codec.commands import PPSE_NAME, PSE_NAME
from citycard.codec.tlv import Tlv, TlvError

from .base import MAX_CANDIDATES, MAX_DIRECTORY_RECORDS, CardError, KernelBase, _NextCandidate
from .config import TerminalAid
from .events import Answer, ApplicationChoice, Candidate, ChooseApplication, Event

__all__ = ["SelectionSteps"]


class SelectionSteps(KernelBase):
    # -- 1. application selection (Book 1 §12) -------------------------------------------------------

    def _match(self, aid: bytes) -> TerminalAid | None:
        for ta in self.config.aids:
            if aid == ta.aid or (ta.partial and aid.startswith(ta.aid)):
                return ta
        return None

    def _candidates(self) -> Generator[Event, Answer, list[Candidate]]:
        contactless = self.txn.interface == "contactless"
        found = yield from self._directory(PPSE_NAME if contactless else PSE_NAME)
        if not found and not contactless:
            found = yield from self._list_of_aids()
        if not self.config.cardholder_confirmation:
            found = [c for c in found if not c.needs_confirmation]
        ranked = sorted(found, key=lambda c: (c.priority == 0, c.priority))
        return ranked[:MAX_CANDIDATES]

    @staticmethod
    def _candidate(entry: dict[str, bytes], aid: bytes) -> Candidate:
        api = entry.get("87", b"\x00")[:1] or b"\x00"
        label = entry.get("9F12") or entry.get("50") or b""
        return Candidate(aid, label.decode("ascii", "replace"), api[0] & 0x0F, bool(api[0] & 0x80))

    def _directory(self, name: bytes) -> Generator[Event, Answer, list[Candidate]]:
        data, sw = yield from self._select(name)
        if sw != 0x9000:
            if sw == 0x6A81:
                raise CardError("card blocked")
            return []
        try:
            fci = tlv.decode(data)
        except TlvError:
            return []
        entries: list[Tlv] = []
        if name == PPSE_NAME:
            bf0c = tlv.find(fci, "BF0C")
            entries = [o for o in (bf0c.children or ()) if o.tag == "61"] if bf0c else []
        else:
            sfi_obj = tlv.find(fci, "88")
            if sfi_obj is None or len(sfi_obj.value) != 1 or not 1 <= sfi_obj.value[0] <= 30:
                return []
            sfi = sfi_obj.value[0]
            for record in range(1, MAX_DIRECTORY_RECORDS + 1):
                rec, rsw = yield from self._apdu(
                    commands.read_record(sfi, record), f"READ RECORD directory {record}"
                )
                if rsw != 0x9000:
                    break
                try:
                    objs = tlv.decode(rec)
                except TlvError:
                    break
                if len(objs) != 1 or objs[0].tag != "70":
                    break
                entries += [o for o in (objs[0].children or ()) if o.tag == "61"]
        out: list[Candidate] = []
        for entry in entries:
            values = {o.tag: o.value for o in (entry.children or ()) if o.children is None}
            aid = values.get("4F", b"")
            if 5 <= len(aid) <= 16 and self._match(aid) and all(c.aid != aid for c in out):
                out.append(self._candidate(values, aid))
        return out

    def _list_of_aids(self) -> Generator[Event, Answer, list[Candidate]]:
        out: list[Candidate] = []
        for ta in self.config.aids:
            next_occurrence = False
            for _ in range(8):
                data, sw = yield from self._select(ta.aid, next_occurrence=next_occurrence)
                if sw == 0x6A81:
                    raise CardError("card blocked")
                if sw not in (0x9000, 0x6283):
                    break
                try:
                    fci = tlv.decode(data)
                    df_name = tlv.find(fci, "84")
                    a5 = tlv.find(fci, "A5")
                except TlvError:
                    break
                if df_name is None or a5 is None:
                    break
                name = df_name.value
                values = {o.tag: o.value for o in (a5.children or ()) if o.children is None}
                matches = name == ta.aid or (ta.partial and name.startswith(ta.aid))
                if self._selectable(sw) and matches and all(c.aid != name for c in out):
                    out.append(self._candidate(values, name))
                if not ta.partial or name == ta.aid:
                    break
                next_occurrence = True
        return out

    def _choose(self, candidates: list[Candidate]) -> Generator[Event, Answer, Candidate | None]:
        if len(candidates) == 1 and not candidates[0].needs_confirmation:
            return candidates[0]
        if not self.config.cardholder_confirmation:
            return candidates[0]
        answer = yield ChooseApplication(tuple(candidates))
        if not isinstance(answer, ApplicationChoice):
            return candidates[0]
        if answer.index is None or not 0 <= answer.index < len(candidates):
            return None
        return candidates[answer.index]

    def _selectable(self, sw: int) -> bool:
        """Whether a SELECT answered ``sw`` gives a candidate: ``9000``; ``6283`` (the application is
        blocked) only at a bank counter's terminal (``TerminalConfig.select_blocked``)."""
        return sw == 0x9000 or (sw == 0x6283 and self.config.select_blocked)

    def _final_select(self, chosen: Candidate) -> Generator[Event, Answer, dict[str, bytes]]:
        data, sw = yield from self._select(chosen.aid)
        if not self._selectable(sw):
            raise _NextCandidate
        try:
            objs = tlv.decode(data)
        except TlvError:
            raise _NextCandidate from None
        if len(objs) != 1 or objs[0].tag != "6F":
            raise _NextCandidate
        df_name = tlv.find(objs, "84")
        if df_name is None or df_name.value != chosen.aid or tlv.find(objs, "A5") is None:
            raise _NextCandidate
        fci: dict[str, bytes] = {}
        for obj in tlv.iter_flat(objs):
            if obj.children is None and obj.tag not in fci:
                fci[obj.tag] = obj.value
        self.aid = chosen.aid
        self.terminal_aid = self._match(chosen.aid)
        self.label = chosen.label or fci.get("50", b"").decode("ascii", "replace")
        self.term["9F06"] = chosen.aid
        self.term["4F"] = chosen.aid
        if self.terminal_aid is not None:
            self.term["9F09"] = self.terminal_aid.app_version
        self.term["84"] = chosen.aid
        for tag in ("9F38", "BF0C", "9F4D", "DF4D", "50", "87", "5F2D"):
            if tag in fci:
                self.card[tag] = fci[tag]
        return fci
