"""The issuer host as one object: :class:`IssuerService`, a thin facade over the use-case handlers
(:mod:`citycard.issuer.usecases`), with one method per command as the CLI, the bootstrap, the network front
end and the tests call them.

Every handler opens one unit of work, does its checks, writes, and commits; nothing is written when it
refuses. Keys stay in the HSM (``citycard.hsm.api.Hsm``): ARQCs are verified, ARPCs and script MACs made
there. Time comes from the injected clock (nanoseconds). The online authorization is described in
:mod:`citycard.issuer.usecases.authorize` and :mod:`citycard.issuer.decision`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from citycard.hsm.api import Hsm

from .commands import (
    ActivateCard,
    AddBank,
    AddBinRange,
    AddProduct,
    AuthorizationRequest,
    AuthorizationResponse,
    BlockCard,
    ChargeAnnualFees,
    CheckPin,
    CloseCard,
    Deposit,
    ExpireCards,
    ExportDenyList,
    IssueCards,
    LoadEcFromAccount,
    RecordOfflineClearing,
    RefundEcBalance,
    RenewCard,
    ReplaceCard,
    ReportLost,
    RevokeConcession,
    SetConcession,
    SetPin,
    UnblockCard,
    UnblockPin,
)
from .model import Bank, BinRange, Card, CardRecord, Product, transfer_id
from .ports import Clock, IssuerUnitOfWork
from .usecases import authorize, banks, cards, concessions, denylist
from .usecases.authorize import request_fingerprint
from .usecases.denylist import SignedDenyList
from .usecases.deps import COOLING_PERIOD_NS, CardPersonaliser, Deps

log = logging.getLogger(__name__)

__all__ = [
    "COOLING_PERIOD_NS",
    "CardPersonaliser",
    "IssuerService",
    "SignedDenyList",
    "request_fingerprint",
    "transfer_id",
]


class IssuerService:
    """The handlers behind one object. ``uow`` makes a fresh unit of work per command."""

    def __init__(
        self,
        uow: Callable[[], IssuerUnitOfWork],
        hsm: Hsm,
        clock: Clock,
        *,
        personaliser: CardPersonaliser | None = None,
        cooling_period_ns: int = COOLING_PERIOD_NS,
        rsa_bits: int = 1024,
    ) -> None:
        self._uow = uow
        self.deps = Deps(hsm, clock, personaliser, cooling_period_ns, rsa_bits)

    @property
    def hsm(self) -> Hsm:
        return self.deps.hsm

    @property
    def clock(self) -> Clock:
        return self.deps.clock

    # --- set-up -----------------------------------------------------------------------------------------
    def add_bank(self, cmd: AddBank) -> Bank:
        return banks.add_bank(cmd, self._uow(), self.deps)

    def add_bin_range(self, cmd: AddBinRange) -> BinRange:
        return banks.add_bin_range(cmd, self._uow(), self.deps)

    def add_product(self, cmd: AddProduct) -> Product:
        return banks.add_product(cmd, self._uow(), self.deps)

    # --- cards ------------------------------------------------------------------------------------------
    def issue_cards(self, cmd: IssueCards, progress: Callable[[int], None] | None = None) -> list[Card]:
        """Issue ``cmd.count`` cards (in transactions of at most 500); ``progress(n)`` after each card."""
        return cards.issue_cards(cmd, self._uow(), self.deps, progress)

    def issue_for_holders(
        self, cmds: Sequence[IssueCards], progress: Callable[[int], None] | None = None
    ) -> list[Card]:
        """A registered card for each holder, all in one transaction (all or none)."""
        return cards.issue_for_holders(cmds, self._uow(), self.deps, progress)

    def activate(self, cmd: ActivateCard) -> Card:
        return cards.activate(cmd, self._uow(), self.deps)

    def set_pin(self, cmd: SetPin) -> Card:
        return cards.set_pin(cmd, self._uow(), self.deps)

    def deposit(self, cmd: Deposit) -> int:
        """Cash into the holder's deposit account; returns the available balance. Idempotent by request id."""
        return cards.deposit(cmd, self._uow(), self.deps)

    def load_ec_from_account(self, cmd: LoadEcFromAccount) -> Card:
        """Deposit account → EC balance now, delivered to the chip at its next online contact."""
        return cards.load_ec_from_account(cmd, self._uow(), self.deps)

    def check_pin(self, cmd: CheckPin) -> bool:
        """Whether the PIN is the card's (checked in the HSM, wrong PINs counted like online ones)."""
        return cards.check_pin(cmd, self._uow(), self.deps)

    def block(self, cmd: BlockCard) -> Card:
        return cards.block(cmd, self._uow(), self.deps)

    def unblock(self, cmd: UnblockCard) -> Card:
        return cards.unblock(cmd, self._uow(), self.deps)

    def unblock_pin(self, cmd: UnblockPin) -> Card:
        """PIN UNBLOCK by script at the card's next online contact; the online PIN tries reset now."""
        return cards.unblock_pin(cmd, self._uow(), self.deps)

    def set_concession(self, cmd: SetConcession) -> CardRecord:
        """The holder's transit concession, to the chip by script at its next online contact."""
        return concessions.set_concession(cmd, self._uow(), self.deps)

    def revoke_concession(self, cmd: RevokeConcession) -> CardRecord:
        """The card's transit concession withdrawn by script at its next online contact."""
        return concessions.revoke_concession(cmd, self._uow(), self.deps)

    def record_offline_clearing(self, cmd: RecordOfflineClearing) -> Card:
        return cards.record_offline_clearing(cmd, self._uow(), self.deps)

    def report_lost(self, cmd: ReportLost) -> Card:
        return cards.report_lost(cmd, self._uow(), self.deps)

    def replace_card(self, cmd: ReplaceCard) -> Card:
        """A new card (new PAN) for the same holder and deposit account; the old one stays denied."""
        return cards.replace_card(cmd, self._uow(), self.deps)

    def renew(self, cmd: RenewCard) -> Card:
        """Expiry and renewal: a new card with a new expiry; the old card's EC balance follows later."""
        return cards.renew(cmd, self._uow(), self.deps)

    def refund_ec_balance(self, cmd: RefundEcBalance) -> int:
        """Refund a lost or closed card's EC balance after the cooling period; returns the amount moved."""
        return cards.refund_ec_balance(cmd, self._uow(), self.deps)

    def close(self, cmd: CloseCard) -> Card:
        return cards.close(cmd, self._uow(), self.deps)

    def charge_annual_fees(self, cmd: ChargeAnnualFees) -> tuple[int, list[str]]:
        """Returns (fen charged, PANs whose account could not pay). Idempotent per card and period."""
        return cards.charge_annual_fees(cmd, self._uow(), self.deps)

    def expire_cards(self, cmd: ExpireCards) -> list[str]:
        """PANs marked expired now."""
        return cards.expire_cards(cmd, self._uow(), self.deps)

    # --- deny list and online authorization -------------------------------------------------------------
    def export_deny_list(self, bank_code: str) -> SignedDenyList:
        return denylist.export_deny_list(ExportDenyList(bank_code), self._uow(), self.deps)

    def authorize(self, req: AuthorizationRequest) -> AuthorizationResponse:
        """Answer ``req``; a retry (same request id) gets the stored answer."""
        return authorize.authorize(req, self._uow(), self.deps)

    def authorize_many(self, reqs: Sequence[AuthorizationRequest]) -> list[AuthorizationResponse | Exception]:
        """Answer each of ``reqs`` as :meth:`authorize` would, committed together (group commit:
        ``authorize.authorize_together``); when that cannot be (a simultaneous first attempt of one of
        their request ids, a database error, a bug), each is run alone, in its own transaction, and one
        that raises gets its exception in its place, so no request's failure costs another its answer.
        Nothing is returned before its commit."""
        if len(reqs) > 1:
            try:
                together = authorize.authorize_together(reqs, self._uow(), self.deps)
            except Exception:  # each alone below: the guilty one raises again, to its own caller
                log.info("group of %d authorizations rolled back: each runs alone", len(reqs), exc_info=True)
                together = None
            if together is not None:
                done: list[AuthorizationResponse | Exception] = list(together)
                return done
        answers: list[AuthorizationResponse | Exception] = []
        for req in reqs:
            try:
                answers.append(self.authorize(req))
            except Exception as exc:  # handed to this request's caller, which raises it
                answers.append(exc)
        return answers
