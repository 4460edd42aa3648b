"""Public services in the citizen portal (role ``citizen``, docs/public-services.md): the signed-in
citizen's own public-service records (social security, medical insurance, library loans) from the
service center's back end, and the industry applications on their cards. Page ``/me/public``, API
``/api/me/public``. A citizen sees only their own: the records are those of the holders the session was
opened for (card and PIN, or ID number and one-time code), keyed by the holder's ``citizen_key`` — the same
at every bank, so a card of either bank shows the same records, once; an anonymous card's session has
none."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from citycard.bootstrap import PublicServices, WebContext
from citycard.codec.pan import mask_pan
from citycard.public.handlers import records_of
from citycard.public.model import APPLICATIONS, CitizenRecords

from ..auth import context, require
from ..store import Principal
from ..templating import page

router = APIRouter()

Ctx = Annotated[WebContext, Depends(context)]
Citizen = Annotated[Principal, Depends(require("citizen"))]
MAX_HOLDERS = 16
"""A session names at most this many holders (one person at each bank)."""


class SocialSecurityOut(BaseModel):
    insured_since: str
    contribution_months: int
    last_paid: str
    base_fen: int


class MedicalInsuranceOut(BaseModel):
    scheme: str
    account_balance_fen: int
    spent_this_year_fen: int


class LoanOut(BaseModel):
    title: str
    borrowed: str
    due: str


class ApplicationOut(BaseModel):
    pan_masked: str
    app: str
    name: str
    status: str


class RecordsOut(BaseModel):
    bank: str
    social_security: SocialSecurityOut | None
    medical_insurance: MedicalInsuranceOut | None
    library_loans: list[LoanOut]


class PublicOut(BaseModel):
    records: list[RecordsOut]
    applications: list[ApplicationOut]


def _records(bank: str, r: CitizenRecords) -> RecordsOut:
    ss, mi = r.social_security, r.medical_insurance
    return RecordsOut(
        bank=bank,
        social_security=None if ss is None else SocialSecurityOut(
            insured_since=ss.insured_since, contribution_months=ss.contribution_months,
            last_paid=ss.last_paid, base_fen=ss.base_fen,
        ),
        medical_insurance=None if mi is None else MedicalInsuranceOut(
            scheme=mi.scheme, account_balance_fen=mi.account_balance_fen,
            spent_this_year_fen=mi.spent_this_year_fen,
        ),
        library_loans=[LoanOut(title=x.title, borrowed=x.borrowed, due=x.due) for x in r.loans],
    )  # fmt: skip


def own_public(ctx: WebContext, principal: Principal) -> PublicOut:
    """The records and applications of the session's own holders (none for an anonymous card)."""
    holder_ids = [int(h) for h in principal.scope.get("holders", [])][:MAX_HOLDERS]
    with ctx.issuer.unit_of_work(read_only=True) as uow:
        holders = uow.cardholders.get_many(holder_ids)
        cards = [card for holder_id in holder_ids for card in uow.cards.by_holder(holder_id)]
    public = PublicServices(ctx.settings, ctx.database, ctx.clock)
    records: list[RecordsOut] = []
    banks: dict[str, set[str]] = {}  # citizen key -> the banks the session's holders of it are at
    for card in cards:
        holder = holders.get(card.holder_id or 0)
        if holder is not None:
            banks.setdefault(holder.citizen_key, set()).add(card.bank_code)
    for key in dict.fromkeys(h.citizen_key for i in holder_ids if (h := holders.get(i)) is not None):
        found = records_of(key, public.unit_of_work(read_only=True))
        records.append(_records(", ".join(sorted(banks.get(key, ()))), found))
    applications: list[ApplicationOut] = []
    with public.unit_of_work(read_only=True) as puow:
        for card in cards:
            for app in puow.apps.of_card(card.pan):
                applications.append(
                    ApplicationOut(
                        pan_masked=mask_pan(card.pan),
                        app=app.app_code,
                        name=APPLICATIONS[app.app_code].name,
                        status=app.status.value,
                    )
                )
    return PublicOut(records=records, applications=applications)


@router.get("/api/me/public", tags=["citizen"], responses={401: {}, 403: {}})
def api_public(ctx: Ctx, principal: Citizen) -> PublicOut:
    """The signed-in citizen's own public-service records and the industry applications on their cards."""
    return own_public(ctx, principal)


@router.get("/me/public", include_in_schema=False)
def public_page(request: Request, ctx: Ctx, principal: Citizen) -> Response:
    return page(request, "public/records.html", mine=own_public(ctx, principal))


__all__ = ["router"]
