"""The terminal level-2 kernel: PBOC 2.0 debit/credit, electronic cash and qPBOC as one sans-I/O state
machine (EMV 4.3 Book 3 §10 "functions used in transaction processing", Book 4 §6; JR/T 0025.5/.6
debit/credit, JR/T 0025.12 qPBOC, JR/T 0025.13 electronic cash).

:class:`Kernel` emits events (:mod:`citycard.kernel.events`) and consumes answers, like h11: it never
touches a card, a clock, a PIN pad or a network. The transaction is written as a generator that yields an
event and receives its answer; the class around it turns *every* failure of the card — a wrong status word,
malformed or duplicated TLV, a missing mandatory object, a lying cryptogram information data — into an
:class:`~citycard.kernel.events.Outcome` (declined or terminated, with a reason). Nothing the card sends can
raise out of :meth:`Kernel.send`.

Steps (Book 3 §10): application selection (PSE/PPSE or list of AIDs, priority, ASI partial match,
confirmation, next candidate on failure) → GET PROCESSING OPTIONS with the PDOL → READ RECORD by the AFL
→ offline data authentication (SDA, DDA, fDDA) → processing restrictions → cardholder verification →
terminal risk management → terminal action analysis and the first GENERATE AC → card action analysis →
online processing, issuer authentication, issuer scripts, second GENERATE AC → outcome.
EC balance, transaction-log and load-log inquiries are short transactions of their own.

:class:`Kernel` composes the steps: :mod:`.selection`, :mod:`.authentication` (ODA), :mod:`.risk`
(restrictions, risk management, action analysis), :mod:`.verification` (CVM), :mod:`.contactless` (qPBOC),
:mod:`.inquiries`; this module keeps the flow itself, GPO, GENERATE AC and online processing. The shared
state and the card I/O are :mod:`.base`'s.
"""

from __future__ import annotations

from collections.abc import Generator

from citycard.codec import commands, tlv
from citycard.codec.dol import parse_dol
from citycard.codec.emvbits import (
    AIP_ISSUER_AUTH,
    CID_AAC,
    CID_ARQC,
    CID_NAMES,
    CID_RFU,
    CID_TC,
    TSI_CARD_RISK_MANAGEMENT,
    TSI_ISSUER_AUTH,
    TSI_SCRIPT,
    TVR_ISSUER_AUTH_FAILED,
    TVR_SCRIPT_FAILED_AFTER,
    TVR_SCRIPT_FAILED_BEFORE,
    cid_type,
)
from citycard.codec.money import format_amount
from citycard.codec.tlv import Tlv

from .authentication import AuthenticationSteps
from .base import (
    APPROVED_CODES,
    EC_AUTH_CODE,
    FIELD55_TAGS,
    MAX_SCRIPT_COMMANDS,
    CardError,
    Transaction,
    TransactionKind,
    _NextCandidate,
)
from .contactless import ContactlessSteps
from .events import Answer, Event, GoOnline, OnlineResponse, Outcome, OutcomeKind
from .extension import MAX_RECORDS as MAX_EXTENSION_RECORDS
from .extension import Extension
from .inquiries import InquirySteps
from .risk import RiskSteps
from .selection import SelectionSteps
from .verification import VerificationSteps

__all__ = [
    "FIELD55_TAGS",
    "CardError",
    "Kernel",
    "Transaction",
    "TransactionKind",
]


class Kernel(
    SelectionSteps, AuthenticationSteps, VerificationSteps, RiskSteps, ContactlessSteps, InquirySteps
):
    """One transaction. ``start()`` gives the first event; ``send(answer)`` the next, up to an Outcome.

    ``rng(n)`` returns ``n`` random bytes from a CSPRNG (unpredictable number, random selection).
    """

    # -- the transaction ---------------------------------------------------------------------------------

    def _run(self) -> Generator[Event, Answer, Outcome]:
        self._terminal_data()
        t = self.txn
        if t.interface == "contactless" and t.kind is TransactionKind.PURCHASE:
            limit = self.config.contactless_transaction_limit_fen
            if t.amount_fen > limit:
                return self._finish(
                    OutcomeKind.TRY_ANOTHER_INTERFACE,
                    f"amount over the contactless transaction limit CNY {format_amount(limit)}",
                )
        candidates = yield from self._candidates()
        while True:
            if not candidates:
                if t.interface == "contactless" and t.kind is TransactionKind.PURCHASE:
                    return self._finish(OutcomeKind.TRY_ANOTHER_INTERFACE, "no contactless application")
                return self._finish(OutcomeKind.TERMINATED, "no mutually supported application")
            chosen = yield from self._choose(candidates)
            if chosen is None:
                return self._finish(OutcomeKind.TERMINATED, "cancelled by the cardholder")
            try:
                fci = yield from self._final_select(chosen)
                if t.kind is TransactionKind.EC_BALANCE:
                    return (yield from self._ec_balance())
                if t.kind in (TransactionKind.TRANSACTION_LOG, TransactionKind.LOAD_LOG):
                    logs = yield from self._read_log(fci)
                    if t.identify:
                        yield from self._identify(fci)
                    return self._finish(OutcomeKind.COMPLETED, f"{len(logs)} log records", logs=logs)
                if t.extension is not None and t.interface == "contactless":
                    yield from self._extension(t.extension)
                yield from self._gpo(fci)
                break
            except _NextCandidate:
                candidates = [c for c in candidates if c.aid != chosen.aid]
                self.card.clear()
                continue
        if "9F66" in self.term and self._qpboc_path():
            return (yield from self._qpboc())
        return (yield from self._contact())

    # -- 2. initiate application processing ---------------------------------------------------------

    def _gpo(self, fci: dict[str, bytes]) -> Generator[Event, Answer, None]:
        pdol = fci.get("9F38", b"")
        data = self._dol_data(pdol) if pdol else b""
        self._pdol_data = data
        command = commands.get_processing_options(data)
        qpboc = "9F66" in self.term and "9F66" in {t for t, _ in parse_dol(pdol)}
        if qpboc:
            self._debit_sent = True  # a qPBOC card may debit its EC balance in the GPO
        resp, sw = yield from self._apdu(command, "GET PROCESSING OPTIONS", cryptogram=qpboc)
        if sw in (0x6985, 0x6984, 0x6986):
            self._debit_sent = False
            raise _NextCandidate
        if sw != 0x9000:
            raise CardError(f"GET PROCESSING OPTIONS: status {sw:04X}")
        objs = tlv.decode(resp)
        if len(objs) != 1:
            raise CardError("GET PROCESSING OPTIONS: response is not one template")
        top = objs[0]
        if top.tag == "80":
            if len(top.value) < 2 or (len(top.value) - 2) % 4:
                raise CardError("GET PROCESSING OPTIONS: format 1 of a wrong length")
            self.card["82"] = top.value[:2]
            self.card["94"] = top.value[2:]
        elif top.tag == "77":
            self._store(list(top.children or ()), unique=True)
            if "82" not in self.card:
                raise CardError("GET PROCESSING OPTIONS: AIP (82) missing")
            if len(self.card["82"]) != 2:
                raise CardError("GET PROCESSING OPTIONS: AIP is not 2 bytes")
        else:
            raise CardError(f"GET PROCESSING OPTIONS: unexpected template {top.tag}")

    def _identify(self, fci: dict[str, bytes]) -> Generator[Event, Answer, None]:
        """After a log inquiry: the card's PAN and PSN, so that the terminal's torn-transaction recovery
        matches a torn entry on the card and not only on its log. The identity comes after GET PROCESSING
        OPTIONS (records are read by the AFL), so this GPO asks for nothing a card could approve offline —
        amount zero, no EC (``9F7A`` = 00) and, on qPBOC, an online cryptogram required (TTQ byte 2 bit 8,
        JR/T 0025.12) — and no GENERATE AC follows: the card's ATC advances by one, no money moves. The log
        was read before this GPO. A qPBOC response carries ``57`` and ``5F34``; else the AFL's records."""
        assert self.txn.amount_fen == 0 and self.term.get("9F7A") == b"\x00"
        if "9F66" in self.term:
            ttq = bytearray(self.term["9F66"])
            ttq[1] |= 0x80
            self.term["9F66"] = bytes(ttq)
        yield from self._gpo(fci)
        if not (self.card.get("5A") or self.card.get("57")):
            yield from self._read_records()
        if not (self.card.get("5A") or self.card.get("57")):
            raise CardError("the card gave no PAN (5A or 57)")

    def _extension(self, extension: Extension) -> Generator[Event, Answer, None]:
        """Read the extension's records, let it decide, stage its updates (:mod:`.extension`)."""
        sfi = extension.sfi
        assert 1 <= sfi <= 30 and len(extension.records) <= MAX_EXTENSION_RECORDS
        records: dict[int, bytes] = {}
        for number in extension.records:
            resp, sw = yield from self._apdu(commands.read_record(sfi, number), "READ RECORD (extension)")
            if sw == 0x9000:
                records[number] = resp
            elif sw not in (0x6A82, 0x6A83):
                raise CardError(f"READ RECORD SFI {sfi} record {number}: status {sw:04X}")
        decision = extension.decide(records)
        if decision.refuse:
            raise CardError(decision.refuse, OutcomeKind.DECLINED_OFFLINE)
        limit = self.config.contactless_transaction_limit_fen
        if decision.amount_fen > limit:
            raise CardError(
                f"fare over the contactless transaction limit ({limit} fen)", OutcomeKind.DECLINED_OFFLINE
            )
        self._set_amount(decision.amount_fen)
        for update in decision.updates:
            command = commands.update_capp_data_cache(sfi, update.number, update.data)
            _, sw = yield from self._apdu(command, "UPDATE CAPP DATA CACHE")
            if sw != 0x9000:
                raise CardError(f"UPDATE CAPP DATA CACHE record {update.number}: status {sw:04X}")

    def _qpboc_path(self) -> bool:
        """qPBOC when the card answered the GPO with a cryptogram (JR/T 0025.12 §7)."""
        return "9F26" in self.card

    # -- 8. GENERATE AC and card action analysis (Book 3 §10.8, §6.5.5; terminal action analysis: .risk) --

    def _generate_ac(self, requested: int, dol_tag: str, purpose: str) -> Generator[Event, Answer, int]:
        dol = self.card[dol_tag]
        data = self._dol_data(dol)
        cda = self._cda and requested != CID_AAC
        p1 = requested | (0x10 if cda else 0)
        command = commands.generate_ac(p1, data)
        if dol_tag == "8C":
            self._cdol1_data = data
        if requested != CID_AAC or dol_tag == "8D":
            self._debit_sent = True
        resp, sw = yield from self._apdu(command, purpose, cryptogram=True)
        if sw != 0x9000:
            raise CardError(f"{purpose}: status {sw:04X}")
        objs = tlv.decode(resp)
        if len(objs) != 1:
            raise CardError(f"{purpose}: response is not one template")
        top = objs[0]
        for tag in ("9F27", "9F36", "9F26", "9F10", "9F4B"):
            self.card.pop(tag, None)
        if top.tag == "80":
            v = top.value
            if not 11 <= len(v) <= 11 + 32:
                raise CardError(f"{purpose}: format 1 response of {len(v)} bytes")
            self.card.update({"9F27": v[:1], "9F36": v[1:3], "9F26": v[3:11]})
            if len(v) > 11:
                self.card["9F10"] = v[11:]
        elif top.tag == "77":
            self._store(list(top.children or ()), unique=False)
            counts: dict[str, int] = {}
            for obj in top.children or ():
                counts[obj.tag] = counts.get(obj.tag, 0) + 1
            if any(n > 1 for n in counts.values()):
                raise CardError(f"{purpose}: a data object appears twice")
        else:
            raise CardError(f"{purpose}: unexpected template {top.tag}")
        self._mandatory(("9F27", "9F36"))
        if cda and "9F4B" in self.card and top.tag == "77" and "9F26" not in self.card:
            # Book 2 §6.6.1: the second GENERATE AC's hash covers the CDOL1 data and then the CDOL2 data
            self._verify_cda(top, self._cdol1_data + data if dol_tag == "8D" else data)
        self._mandatory(("9F26",))
        if len(self.card["9F27"]) != 1 or len(self.card["9F36"]) != 2 or len(self.card["9F26"]) != 8:
            raise CardError(f"{purpose}: CID, ATC or cryptogram of a wrong length")
        got = cid_type(self.card["9F27"][0])
        if got == CID_RFU:
            raise CardError(f"{purpose}: cryptogram type RFU")
        order = {CID_AAC: 0, CID_ARQC: 1, CID_TC: 2}  # Book 3 §9.3: never above what was asked
        if order[got] > order[requested] or (dol_tag == "8D" and got == CID_ARQC):
            raise CardError(
                f"{purpose}: card returned {CID_NAMES[got]} when {CID_NAMES[requested]} was requested"
            )
        return got

    # -- contact flow ------------------------------------------------------------------------------------

    def _contact(self) -> Generator[Event, Answer, Outcome]:
        yield from self._read_records()
        self._mandatory(("5F24", "5A", "8C", "8D"))
        for tag in ("8C", "8D"):
            parse_dol(self.card[tag])
        ec_code = self.card.get("9F74")
        self._ec = (
            self.term.get("9F7A") == b"\x01"
            and ec_code == EC_AUTH_CODE
            and self.txn.kind is TransactionKind.PURCHASE
        )
        yield from self._oda_contact()
        self._restrictions()
        yield from self._cvm()
        yield from self._risk_management()
        requested = self._action_analysis()
        self.tsi.set(TSI_CARD_RISK_MANAGEMENT)
        got = yield from self._generate_ac(requested, "8C", "GENERATE AC 1")
        if got == CID_TC:
            return self._finish(
                OutcomeKind.APPROVED_OFFLINE, "EC offline approval" if self._ec else "offline approval"
            )
        if got == CID_AAC:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "card declined offline (AAC)")
        return (yield from self._online_contact())

    def _online_contact(self) -> Generator[Event, Answer, Outcome]:
        if not self.config.online_capable:
            return (yield from self._unable_online())
        answer = yield GoOnline(self._online_request())
        if not isinstance(answer, OnlineResponse) or answer.unable_to_go_online:
            return (yield from self._unable_online())
        rc = answer.response_code
        self.term["8A"] = rc.encode("ascii", "replace")[:2].ljust(2, b"0")
        if answer.authorization_code:
            self.term["89"] = answer.authorization_code
        if answer.issuer_authentication_data:
            self.term["91"] = answer.issuer_authentication_data
            yield from self._issuer_authentication(answer.issuer_authentication_data)
        scripts = tlv.decode(answer.scripts) if answer.scripts else []
        yield from self._scripts(scripts, "71")
        approve = rc in APPROVED_CODES
        got = yield from self._generate_ac(CID_TC if approve else CID_AAC, "8D", "GENERATE AC 2")
        yield from self._scripts(scripts, "72")
        if self._script_results:
            self.term["9F5B"] = self._script_results
        if self.txn.kind is TransactionKind.EC_LOAD and got == CID_TC:
            balance = yield from self._get_data("9F79")
            if balance is not None:
                self.card["9F79"] = balance
        if got == CID_TC:
            return self._finish(OutcomeKind.APPROVED_ONLINE, f"approved by the issuer ({rc})")
        if approve:
            return self._finish(OutcomeKind.DECLINED_ONLINE, "card declined after issuer approval")
        return self._finish(OutcomeKind.DECLINED_ONLINE, f"declined online ({rc})")  # by whichever host

    def _unable_online(self) -> Generator[Event, Answer, Outcome]:
        """Book 3 §10.8: unable to go online — the default action codes decide (8A = Y3 / Z3)."""
        iac_default = self.card.get("9F0D", b"\xff" * 5)
        deny = self.tvr.intersects(self.config.tac_default) or self.tvr.intersects(iac_default)
        if self.txn.kind is TransactionKind.EC_LOAD:
            deny = True
        self.term["8A"] = b"Z3" if deny else b"Y3"
        got = yield from self._generate_ac(CID_AAC if deny else CID_TC, "8D", "GENERATE AC 2")
        if got == CID_TC:
            return self._finish(OutcomeKind.APPROVED_OFFLINE, "unable to go online; approved offline (Y3)")
        if deny:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "unable to go online; declined offline (Z3)")
        return self._finish(
            OutcomeKind.DECLINED_OFFLINE, "unable to go online; the card declined (AAC to Y3)"
        )

    def _issuer_authentication(self, data: bytes) -> Generator[Event, Answer, None]:
        if not self.card["82"][0] & AIP_ISSUER_AUTH:
            return
        if "91" in {t for t, _ in parse_dol(self.card["8D"])}:
            self.tsi.set(TSI_ISSUER_AUTH)  # the card checks 91 inside the second GENERATE AC
            return
        self.tsi.set(TSI_ISSUER_AUTH)
        _, sw = yield from self._apdu(commands.external_authenticate(data), "EXTERNAL AUTHENTICATE")
        if sw != 0x9000:
            self.tvr.set(TVR_ISSUER_AUTH_FAILED)

    def _scripts(self, objects: list[Tlv], template: str) -> Generator[Event, Answer, None]:
        """Book 3 §10.10: run the commands of each script; record 9F5B results; TVR on failure."""
        sent = 0
        for script in objects:
            if script.tag != template:
                continue
            self.tsi.set(TSI_SCRIPT)
            ident = b"\x00" * 4
            status, seq = 0x20, 0
            n = 0  # sequence number of the command within the script (Book 3 Annex A, 9F5B)
            for obj in script.children or ():
                if obj.tag == "9F18":
                    ident = obj.value[:4].rjust(4, b"\x00")
                    continue
                if obj.tag != "86":
                    continue
                n += 1
                sent += 1
                if sent > MAX_SCRIPT_COMMANDS:
                    status, seq = 0x10, min(n, 15)
                    break
                _, sw = yield from self._apdu(obj.value, f"issuer script {template}")
                if sw != 0x9000 and sw >> 8 not in (0x62, 0x63):
                    status, seq = 0x10, min(n, 15)
                    break
            if status == 0x10:
                self.tvr.set(TVR_SCRIPT_FAILED_BEFORE if template == "71" else TVR_SCRIPT_FAILED_AFTER)
            self._script_results += bytes((status | seq,)) + ident
