"""The service-center console (role ``operator``; a bank user shares the card lookup, card pages and the deny
list, limited to its bank): the dashboard and its figures, card lookup and card services, the deny list,
merchant and terminal onboarding, clearing's exceptions, the network (the services' status lines, the
acquirer's store-and-forward queue), the audit log. Pages under ``/console``, the API under ``/api``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from citycard.bootstrap import WebContext
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.model import CenterError, Industry, TerminalKind
from citycard.center.ports import MerchantQuery
from citycard.center.services import MAX_ADDRESS, MAX_NAME
from citycard.center.views import MAX_LISTING, list_merchants, list_terminals, merchant_json, terminal_json
from citycard.codec.pan import mask_pan
from citycard.issuer.model import Card, IssuerError, NotFound
from citycard.public.model import MalformedInput, PublicError

from .. import apps, cards, exceptions, network, settlement
from ..auth import Auth, context, require, store
from ..figures import DAYS, Figures, figures
from ..store import MAX_AUDIT_PAGE, Principal, Store
from ..templating import page, when

router = APIRouter()

Ctx = Annotated[WebContext, Depends(context)]
St = Annotated[Store, Depends(store)]
Operator = Annotated[Principal, Depends(require("operator"))]


class Count(BaseModel):
    key: str
    count: int


class Amounts(BaseModel):
    key: str
    count: int
    amount_fen: int


class CardsIssued(BaseModel):
    bank: str
    product: str
    count: int


class FiguresOut(BaseModel):
    cards_total: int
    cards_active: int
    cards_registered: int
    cards_by_bank_product: list[CardsIssued]
    merchants_total: int
    merchants_by_industry: list[Count]
    merchants_by_district: list[Count]
    terminals_total: int
    validators: int
    bus_lines: int
    terminals_by_industry: list[Count]
    terminals_by_district: list[Count]
    purchases_by_day: list[Amounts]
    purchases_by_industry: list[Amounts]
    purchases_by_district: list[Amounts]
    ec_float_fen: int
    exceptions_open: int
    cleared_day: str = Field(description="YYYY-MM-DD: the latest business day cleared ('' : none yet)")
    cleared: list[Amounts] = Field(description="that day's items paid, by source (online, offline)")
    settled_day: str = Field(description="YYYY-MM-DD: the latest day settled ('' : none yet)")
    settled_payout_fen: int = Field(description="the merchants' payouts of that day")


def figures_out(f: Figures) -> FiguresOut:
    return FiguresOut(
        cards_total=f.cards_total,
        cards_active=f.cards_active,
        cards_registered=f.cards_registered,
        cards_by_bank_product=[
            CardsIssued(bank=b, product=p, count=n) for b, p, n in f.cards_by_bank_product
        ],
        merchants_total=f.merchants_total,
        merchants_by_industry=[Count(key=k, count=n) for k, n in f.merchants_by_industry],
        merchants_by_district=[Count(key=k, count=n) for k, n in f.merchants_by_district],
        terminals_total=f.terminals_total,
        validators=f.validators,
        bus_lines=f.bus_lines,
        terminals_by_industry=[Count(key=k, count=n) for k, n in f.terminals_by_industry],
        terminals_by_district=[Count(key=k, count=n) for k, n in f.terminals_by_district],
        purchases_by_day=[Amounts(key=d, count=n, amount_fen=a) for d, n, a in f.days],
        purchases_by_industry=[Amounts(key=k, count=n, amount_fen=a) for k, n, a in f.txn_by_industry],
        purchases_by_district=[Amounts(key=k, count=n, amount_fen=a) for k, n, a in f.txn_by_district],
        ec_float_fen=f.ec_float_fen,
        exceptions_open=f.exceptions_open,
        cleared_day=f.cleared_day,
        cleared=[Amounts(key=k, count=n, amount_fen=a) for k, n, a in f.cleared],
        settled_day=f.settled_day,
        settled_payout_fen=f.settled_payout_fen,
    )


@router.get("/api/figures", tags=["console"], responses={401: {}, 403: {}})
def api_figures(ctx: Ctx, principal: Operator) -> FiguresOut:
    """The programme's figures (the dashboard's)."""
    return figures_out(figures(ctx.database.engine, ctx.clock()))


@router.get("/console", include_in_schema=False)
async def dashboard(request: Request, ctx: Ctx, principal: Operator) -> Response:
    live = network.services(ctx)  # on the loop the services run on; the rest from a worker thread
    f = await run_in_threadpool(figures, ctx.database.engine, ctx.clock())
    lines_day, lines = await run_in_threadpool(settlement.latest_lines, ctx)
    reported = await run_in_threadpool(network.reported, ctx)
    waiting = await run_in_threadpool(network.waiting, ctx)
    return page(
        request,
        "console/dashboard.html",
        f=f,
        network_attention=network.attention(live, reported),
        saf_waiting=waiting,
        days=DAYS,
        bank=None,
        day_amounts=[(d[5:], fen) for d, _, fen in f.days],
        lines_day=lines_day,
        lines=lines,
        line_chart=[(f"{x['merchant_id'][-6:]} line {x['line']}", x["gross_fen"]) for x in lines],
    )


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    detail: str


class AuditPage(BaseModel):
    entries: list[AuditOut]
    total: int


Limit = Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)]
Before = Annotated[int | None, Query(ge=1, le=2**62)]


def _audit(st: Store, limit: int, before: int | None) -> AuditPage:
    entries, total = st.audit_log(limit=limit, before_id=before)
    return AuditPage(
        entries=[
            AuditOut(
                id=e.id,
                at=when(e.at_ns),
                actor=e.actor,
                role=e.role,
                action=e.action,
                target=e.target,
                outcome=e.outcome,
                detail=e.detail,
            )
            for e in entries
        ],
        total=total,
    )


@router.get("/api/audit", tags=["console"], responses={401: {}, 403: {}})
def api_audit(st: St, principal: Operator, limit: Limit = 100, before: Before = None) -> AuditPage:
    """The audit log of operator actions, newest first (``before``: an entry id, for the next page)."""
    return _audit(st, limit, before)


@router.get("/console/audit", include_in_schema=False)
def audit_page(request: Request, st: St, principal: Operator, before: Before = None) -> Response:
    return page(request, "console/audit.html", log=_audit(st, 100, before))


# --- cards: lookup, detail, services ------------------------------------------------------------------------
class CardOut(BaseModel):
    ref: int = Field(description="the card reference (its EC float account id): names the card in URLs")
    pan: str = Field(description="masked")
    bank: str
    product: str
    status: str
    registered: bool
    expiry: str


class CardList(BaseModel):
    cards: list[CardOut]
    total: int


def _out(v: cards.CardView) -> CardOut:
    return CardOut(**v.__dict__)


Suffix = Annotated[str, Query(pattern=r"^[0-9]{4,19}$", description="the last four digits of the PAN")]
URL_SUFFIX_DIGITS = 4
"""The most digits of a PAN a URL may carry (PCI DSS 3.4's truncation shows the last four): a URL ends up in
access logs, proxies' included, which :mod:`citycard.logs` does not reach; longer suffixes go in a body."""
Staff = Annotated[Principal, Depends(require("operator", "bank"))]
Ref = Annotated[int, Path(ge=1, le=2**62, description="card reference")]


class CardSearchIn(BaseModel):
    """What to find cards by (all given must match, at least one). In the body, not the URL: an ID number
    or a phone number has no place in access logs."""

    pan_suffix: str | None = Field(
        default=None, pattern=r"^[0-9]{4,19}$", description="last digits of the PAN"
    )
    id_number: str | None = Field(
        default=None, pattern=r"^[0-9]{17}[0-9Xx]$", description="resident ID number"
    )
    phone: str | None = Field(default=None, pattern=r"^[0-9+ -]{5,20}$", description="the holder's phone")


@router.get("/api/cards", tags=["cards"], responses={401: {}, 403: {}, 422: {}})
def api_lookup_suffix(ctx: Ctx, principal: Staff, pan_suffix: Suffix) -> CardList:
    """Find cards by the last four digits of the PAN (a bank user: its bank's cards only); more digits go in
    the body of ``POST /api/cards/search``."""
    if len(pan_suffix) > URL_SUFFIX_DIGITS:
        raise HTTPException(
            422,
            f"pan_suffix: at most the last {URL_SUFFIX_DIGITS} digits in a URL (it is logged); "
            "search by more in the body of POST /api/cards/search",
        )
    found, total = cards.lookup(ctx, principal, pan_suffix=pan_suffix)
    return CardList(cards=[_out(v) for v in found], total=total)


@router.post("/api/cards/search", tags=["cards"], responses={401: {}, 403: {}, 404: {}, 422: {}})
def api_lookup(body: CardSearchIn, ctx: Ctx, principal: Staff) -> CardList:
    """Find cards by PAN suffix, resident ID number or phone (all given must match); a bank user finds only
    its bank's cards."""
    found, total = cards.lookup(
        ctx, principal, pan_suffix=body.pan_suffix, id_number=body.id_number, phone=body.phone
    )
    return CardList(cards=[_out(v) for v in found], total=total)


@router.get("/console/cards", include_in_schema=False)
def lookup_page(request: Request, principal: Staff) -> Response:
    return page(
        request, "console/cards.html", found=[], total=0, q={"pan_suffix": "", "id_number": "", "phone": ""}
    )


@router.post("/console/cards", include_in_schema=False)
def lookup_form(
    request: Request,
    ctx: Ctx,
    principal: Staff,
    pan_suffix: Annotated[str, Form(max_length=19)] = "",
    id_number: Annotated[str, Form(max_length=18)] = "",
    phone: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    found: list[cards.CardView] = []
    total, error = 0, ""
    try:
        found, total = cards.lookup(
            ctx, principal, pan_suffix=pan_suffix.strip(), id_number=id_number.strip(), phone=phone.strip()
        )
    except (ValueError, IssuerError) as exc:
        error = str(exc)
    return page(
        request,
        "console/cards.html",
        status_code=422 if error else 200,
        found=found,
        total=total,
        error=error,
        q={"pan_suffix": pan_suffix, "id_number": id_number, "phone": phone},
    )


@router.get("/api/cards/{ref}", tags=["cards"], responses={401: {}, 403: {}, 404: {}})
def api_card(ref: Ref, ctx: Ctx, principal: Auth) -> dict[str, Any]:
    """A card as its bank's books see it: status, EC balance, deposit balance, pending scripts and credits,
    recent ledger movements and online authorizations (PAN masked). Operators, the card's bank and its
    holder."""
    return cards.detail(ctx, cards.resolve(ctx, principal, ref))


@router.get("/console/cards/{ref}", include_in_schema=False)
def card_page(request: Request, ref: Ref, ctx: Ctx, principal: Staff) -> Response:
    return _card_view(request, ctx, cards.resolve(ctx, principal, ref))


def _card_view(
    request: Request, ctx: WebContext, card: Card, status_code: int = 200, **values: Any
) -> Response:
    """The card page: the card's books, its industry applications (staff only here), the forms."""
    return page(
        request,
        "console/card.html",
        status_code=status_code,
        d=cards.detail(ctx, card),
        applications=apps.states(ctx, card),
        **values,
    )


class RefundIn(BaseModel):
    to: Literal["account", "replacement", "cash"] = "account"


@router.post("/api/cards/{ref}/report-lost", tags=["cards"], responses={401: {}, 403: {}, 404: {}, 409: {}})
def api_report_lost(ref: Ref, ctx: Ctx, st: St, principal: Auth) -> dict[str, Any]:
    """Report the card lost: on its bank's deny list at once (operator, the card's bank, or its holder)."""
    return _service(ctx, st, principal, ref, "report_lost")


@router.post("/api/cards/{ref}/replace", tags=["cards"], responses={401: {}, 403: {}, 404: {}, 409: {}})
def api_replace(ref: Ref, ctx: Ctx, st: St, principal: Staff) -> dict[str, Any]:
    """Issue a replacement card (new PAN, same holder and deposit account)."""
    return _service(ctx, st, principal, ref, "replace")


@router.post("/api/cards/{ref}/close", tags=["cards"], responses={401: {}, 403: {}, 404: {}, 409: {}})
def api_close(ref: Ref, ctx: Ctx, st: St, principal: Staff) -> dict[str, Any]:
    """Close the card (denied at once; its EC balance refundable after the cooling period)."""
    return _service(ctx, st, principal, ref, "close")


@router.post("/api/cards/{ref}/refund", tags=["cards"], responses={401: {}, 403: {}, 404: {}, 409: {}})
def api_refund(ref: Ref, body: RefundIn, ctx: Ctx, st: St, principal: Staff) -> dict[str, Any]:
    """Refund a lost or closed card's EC balance after the cooling period."""
    return _service(ctx, st, principal, ref, "refund", to=body.to)


class ConcessionIn(BaseModel):
    category: Literal["elderly", "student", "disabled"]
    until: date


@router.post("/api/cards/{ref}/concession", tags=["cards"], responses={401: {}, 403: {}, 404: {}, 409: {}})
def api_concession(ref: Ref, body: ConcessionIn, ctx: Ctx, st: St, principal: Staff) -> dict[str, Any]:
    """Grant or renew the registered holder's transit concession: the card's transit file rewritten by
    issuer script at its next online contact (docs/transit.md "Concessions from the issuer"). Audited."""
    return _service(ctx, st, principal, ref, "concession", category=body.category, until=body.until)


@router.post(
    "/api/cards/{ref}/concession/revoke", tags=["cards"], responses={401: {}, 403: {}, 404: {}, 409: {}}
)
def api_revoke_concession(ref: Ref, ctx: Ctx, st: St, principal: Staff) -> dict[str, Any]:
    """Withdraw the card's transit concession (by script at its next online contact). Audited."""
    return _service(ctx, st, principal, ref, "revoke_concession")


def _service(
    ctx: WebContext, st: Store, principal: Principal, ref: int, action: str, **kw: Any
) -> dict[str, Any]:
    try:
        card = cards.resolve_for_service(ctx, st, principal, ref, action)
        return cards.service(ctx, st, principal, card, action, **kw)
    except PermissionError as exc:
        raise HTTPException(403, str(exc)) from None


@router.post("/console/cards/{ref}/service", include_in_schema=False)
def service_form(
    request: Request,
    ref: Ref,
    ctx: Ctx,
    st: St,
    principal: Staff,
    action: Annotated[
        Literal["report_lost", "replace", "close", "refund", "concession", "revoke_concession"], Form()
    ],
    to: Annotated[Literal["account", "replacement", "cash"], Form()] = "account",
    category: Annotated[Literal["elderly", "student", "disabled"], Form()] = "elderly",
    until: Annotated[date | None, Form()] = None,
) -> Response:
    try:
        card = cards.resolve_for_service(ctx, st, principal, ref, action)
    except cards.OtherBank as exc:
        raise HTTPException(403, str(exc)) from None
    notice, error = "", ""
    try:
        if action == "concession" and until is None:
            raise ValueError("the concession's last valid day is required")
        result = cards.service(ctx, st, principal, card, action, to=to, category=category, until=until)
        notice = f"{action.replace('_', ' ')}: done ({', '.join(f'{k} {v}' for k, v in result.items())})"
    except (IssuerError, ValueError) as exc:
        error = str(exc)
    return _card_view(request, ctx, card, 409 if error else 200, notice=notice, error=error)


# --- industry applications on a card (issue 11; web/apps.py) ----------------------------------------------
AppCode = Annotated[
    str,
    Path(pattern=r"^[a-z_]{1,32}$", description="an application of the registry (transit, library, health)"),
]


class AppFieldOut(BaseModel):
    name: str
    meaning: str


class AppOut(BaseModel):
    app: str
    name: str
    provider: str
    fields: list[AppFieldOut] = Field(description="the data the application keeps for a card")
    status: Literal["enabled", "disabled", "not enabled"]
    data: dict[str, str]
    on_chip: Literal["pending", "sent", "written"] | None = Field(
        description="its record in the card's applications file (SFI 22): pending (written by issuer script "
        "at the next online contact), sent, written; null: never put on the card"
    )


class AppEnableIn(BaseModel):
    data: dict[str, str] = Field(default_factory=dict, max_length=16, description="the application's data")


@router.get("/api/cards/{ref}/applications", tags=["cards"], responses={401: {}, 404: {}})
def api_applications(ref: Ref, ctx: Ctx, principal: Auth) -> list[AppOut]:
    """The registry's industry applications with their state on the card (operators; a bank user: its own
    bank's cards, read-only)."""
    apps.check_reader(principal, ref)
    return [AppOut(**s) for s in apps.states(ctx, cards.resolve(ctx, principal, ref))]


@router.post(
    "/api/cards/{ref}/applications/{app}/enable",
    tags=["cards"],
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
def api_enable_application(
    ref: Ref, app: AppCode, body: AppEnableIn, ctx: Ctx, st: St, principal: Auth
) -> AppOut:
    """Put the application on the card with its data, or give it new data (operators): its record reaches
    the chip by issuer script at the card's next online contact. Audited, refusals too."""
    return AppOut(**_app_change(ctx, st, principal, ref, "enable", app, body.data))


@router.post(
    "/api/cards/{ref}/applications/{app}/disable",
    tags=["cards"],
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
def api_disable_application(ref: Ref, app: AppCode, ctx: Ctx, st: St, principal: Auth) -> AppOut:
    """Take the application off the card (its data kept); by issuer script at the next online contact."""
    return AppOut(**_app_change(ctx, st, principal, ref, "disable", app, None))


def _app_change(
    ctx: WebContext, st: Store, principal: Principal, ref: int, action: str, app: str, data: Any
) -> dict[str, Any]:
    apps.check_reader(principal, ref)
    if principal.role == "bank":
        try:
            target = mask_pan(cards.resolve(ctx, principal, ref).pan)
        except NotFound:
            target = f"card {ref}"
        raise HTTPException(403, apps.refuse_bank(ctx, st, principal, action, app, target))
    return apps.change(ctx, st, principal, cards.resolve(ctx, principal, ref), action, app, data)


@router.post("/console/cards/{ref}/applications", include_in_schema=False)
async def application_form(request: Request, ref: Ref, ctx: Ctx, st: St, principal: Auth) -> Response:
    """The card page's enable/disable forms: ``action``, ``app`` and the data as ``data.NAME`` fields."""
    apps.check_reader(principal, ref)
    form = await request.form()
    action, app = str(form.get("action", "")), str(form.get("app", ""))
    data = {k[5:]: str(v).strip() for k, v in form.items() if k.startswith("data.")}
    return await run_in_threadpool(_application_form, request, ctx, st, principal, ref, action, app, data)


def _application_form(
    request: Request,
    ctx: WebContext,
    st: Store,
    principal: Principal,
    ref: int,
    action: str,
    app: str,
    data: dict[str, str],
) -> Response:
    if action not in apps.ACTIONS:
        raise HTTPException(422, f"action: {action[:20]!r} is not one of {', '.join(apps.ACTIONS)}")
    notice, error, status = "", "", 200
    try:
        done = _app_change(ctx, st, principal, ref, action, app, data if action == "enable" else None)
        notice = f"{app} {done['status']} (on the chip: {done['on_chip']})"
    except MalformedInput as exc:
        error, status = str(exc), 422
    except PublicError as exc:
        error, status = str(exc), 409
    return _card_view(request, ctx, cards.resolve(ctx, principal, ref), status, notice=notice, error=error)


# --- the deny list ------------------------------------------------------------------------------------------
class DenyEntry(BaseModel):
    bank: str
    pan: str = Field(description="masked")
    ref: int | None
    reason: str
    added: str
    version: int


@router.get("/api/denylist", tags=["cards"], responses={401: {}, 403: {}})
def api_deny_list(ctx: Ctx, principal: Staff) -> list[DenyEntry]:
    """The banks' deny lists (a bank user: its own), newest first, PANs masked."""
    return [
        DenyEntry(**{k: v for k, v in e.items() if k != "added_ns"}) for e in cards.deny_list(ctx, principal)
    ]


@router.get("/console/denylist", include_in_schema=False)
def deny_list_page(request: Request, ctx: Ctx, principal: Staff) -> Response:
    return page(request, "console/denylist.html", entries=cards.deny_list(ctx, principal))


# --- merchants and terminals --------------------------------------------------------------------------------
class MerchantIn(BaseModel):
    merchant_id: str = Field(pattern=r"^[0-9A-Z]{15}$")
    name: str = Field(min_length=1, max_length=40)
    mcc: str = Field(pattern=r"^[0-9]{4}$")
    district: str = Field(min_length=1, max_length=64)
    bank_code: str = Field(pattern=r"^[A-Z][A-Z0-9]{1,7}$", description="the acquiring bank")
    industry: Industry | None = None


class TerminalIn(BaseModel):
    terminal_id: str = Field(pattern=r"^[0-9A-Z]{8}$")
    merchant_id: str = Field(pattern=r"^[0-9A-Z]{15}$")
    kind: TerminalKind = TerminalKind.POS


def _registry(ctx: WebContext, st: Store, principal: Principal, cmd: Any, action: str, target: str) -> Any:
    try:
        done = ctx.center.handle(cmd)
    except Exception as exc:
        st.audit(principal, action, target, "refused", str(exc), ctx.clock())
        raise
    st.audit(principal, action, target, "ok", "", ctx.clock())
    return done


@router.get("/api/merchants", tags=["registry"], responses={401: {}, 403: {}})
def api_merchants(
    ctx: Ctx,
    principal: Staff,
    industry: Industry | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTING)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[dict[str, Any]]:
    """Merchants (a bank user: those it acquires for)."""
    query = MerchantQuery(bank_code=principal.bank if principal.role == "bank" else None, industry=industry)
    return [
        merchant_json(m)
        for m in list_merchants(ctx.center.unit_of_work(read_only=True), query, limit=limit, offset=offset)
    ]


@router.post(
    "/api/merchants", tags=["registry"], status_code=201, responses={401: {}, 403: {}, 404: {}, 409: {}}
)
def api_add_merchant(body: MerchantIn, ctx: Ctx, st: St, principal: Operator) -> dict[str, Any]:
    """Register a merchant (onboarding)."""
    cmd = AddMerchant(body.merchant_id, body.name, body.mcc, body.district, body.bank_code, body.industry)
    return merchant_json(_registry(ctx, st, principal, cmd, "add_merchant", body.merchant_id))


@router.post(
    "/api/terminals", tags=["registry"], status_code=201, responses={401: {}, 403: {}, 404: {}, 409: {}}
)
def api_add_terminal(body: TerminalIn, ctx: Ctx, st: St, principal: Operator) -> dict[str, Any]:
    """Register a terminal of a merchant and inject its master key."""
    cmd = AddTerminal(body.terminal_id, body.merchant_id, body.kind)
    return terminal_json(_registry(ctx, st, principal, cmd, "add_terminal", body.terminal_id))


@router.get(
    "/api/merchants/{merchant_id}/terminals", tags=["registry"], responses={401: {}, 403: {}, 404: {}}
)
def api_terminals(
    merchant_id: Annotated[str, Path(pattern=r"^[0-9A-Z]{15}$")], ctx: Ctx, principal: Operator
) -> list[dict[str, Any]]:
    """A merchant's terminals."""
    return [terminal_json(t) for t in list_terminals(ctx.center.unit_of_work(read_only=True), merchant_id)]


@router.get("/console/merchants", include_in_schema=False)
def merchants_page(request: Request, ctx: Ctx, principal: Operator) -> Response:
    return _merchants_view(request, ctx)


def _merchants_view(request: Request, ctx: WebContext, **values: str) -> Response:
    merchants = list_merchants(ctx.center.unit_of_work(read_only=True), MerchantQuery(), limit=MAX_LISTING)
    terminals = list_terminals(ctx.center.unit_of_work(read_only=True), limit=MAX_LISTING)
    by_merchant: dict[str, int] = {}
    for t in terminals:
        by_merchant[t.merchant_id] = by_merchant.get(t.merchant_id, 0) + 1
    return page(
        request,
        "console/merchants.html",
        status_code=422 if values.get("error") else 200,
        merchants=[merchant_json(m) for m in merchants],
        terminals=by_merchant,
        industries=[i.value for i in Industry],
        **values,
    )


@router.post("/console/merchants", include_in_schema=False)
def add_merchant_form(
    request: Request,
    ctx: Ctx,
    st: St,
    principal: Operator,
    merchant_id: Annotated[str, Form(max_length=15)],
    name: Annotated[str, Form(max_length=40)],
    mcc: Annotated[str, Form(max_length=4)],
    district: Annotated[str, Form(max_length=64)],
    bank_code: Annotated[str, Form(max_length=8)],
    industry: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    try:
        cmd = AddMerchant(
            merchant_id, name, mcc, district, bank_code, Industry(industry) if industry else None
        )
        _registry(ctx, st, principal, cmd, "add_merchant", merchant_id)
    except (CenterError, ValueError) as exc:
        return _merchants_view(request, ctx, error=str(exc))
    return _merchants_view(request, ctx, notice=f"merchant {merchant_id} registered")


@router.post("/console/terminals", include_in_schema=False)
def add_terminal_form(
    request: Request,
    ctx: Ctx,
    st: St,
    principal: Operator,
    terminal_id: Annotated[str, Form(max_length=8)],
    merchant_id: Annotated[str, Form(max_length=15)],
    kind: Annotated[str, Form(max_length=16)] = "pos",
) -> Response:
    try:
        cmd = AddTerminal(terminal_id, merchant_id, TerminalKind(kind))
        _registry(ctx, st, principal, cmd, "add_terminal", terminal_id)
    except (CenterError, ValueError) as exc:
        return _merchants_view(request, ctx, error=str(exc))
    return _merchants_view(request, ctx, notice=f"terminal {terminal_id} registered")


# --- clearing's exception queue -----------------------------------------------------------------------------
class ExceptionOut(BaseModel):
    id: int
    opened_date: str
    reason: str
    status: str
    detail: str
    pan_masked: str
    atc: int | None
    amount_fen: int
    terminal_id: str
    merchant_id: str
    issuer_bank: str
    acquirer_bank: str
    actions: list[str]  # what an operator may do with it now (clearing's ``allowed_actions``)


class ResolveIn(BaseModel):
    action: Literal["accept", "reject", "chargeback"]


ExceptionStatus = Annotated[
    Literal["open", "reported", "accepted", "rejected", "chargeback", "reversed"] | None, Query()
]


@router.get("/api/clearing/exceptions", tags=["clearing"], responses={401: {}, 403: {}})
def api_exceptions(ctx: Ctx, principal: Staff, status: ExceptionStatus = "open") -> list[ExceptionOut]:
    """Clearing's exceptions (default: those awaiting action), oldest first; a bank user: its own."""
    return [ExceptionOut(**r) for r in exceptions.queue(ctx, principal, status)]


@router.post(
    "/api/clearing/exceptions/{exception_id}/resolve",
    tags=["clearing"],
    responses={401: {}, 403: {}, 404: {}, 409: {}},
)
def api_resolve(
    exception_id: Annotated[int, Path(ge=1, le=2**62)], body: ResolveIn, ctx: Ctx, st: St, principal: Operator
) -> dict[str, Any]:
    """Accept (paid in the next clearing run), reject, or charge back an exception."""
    try:
        return exceptions.resolve(ctx, st, principal, exception_id, body.action)
    except exceptions.Refused as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/console/exceptions", include_in_schema=False)
def exceptions_page(
    request: Request, ctx: Ctx, principal: Staff, status: ExceptionStatus = "open"
) -> Response:
    return page(
        request, "console/exceptions.html", rows=exceptions.queue(ctx, principal, status), status=status
    )


@router.post("/console/exceptions/{exception_id}", include_in_schema=False)
def resolve_form(
    request: Request,
    exception_id: Annotated[int, Path(ge=1, le=2**62)],
    ctx: Ctx,
    st: St,
    principal: Operator,
    action: Annotated[Literal["accept", "reject", "chargeback"], Form()],
) -> Response:
    notice, error = "", ""
    try:
        done = exceptions.resolve(ctx, st, principal, exception_id, action)
        notice = f"exception {done['id']} is {done['status']}"
    except (exceptions.Refused, IssuerError) as exc:
        error = str(exc)
    return page(
        request,
        "console/exceptions.html",
        status_code=409 if error else 200,
        rows=exceptions.queue(ctx, principal, "open"),
        status="open",
        notice=notice,
        error=error,
    )


# --- the network: the services' status lines, the acquirer's store-and-forward queue ------------------------
class QueuedOut(BaseModel):
    kind: str = Field(description="reversal or advice")
    mti: str = Field(description="0400, 0420, 0220, 0320; ???? for a stored message that does not decode")
    rrn: str
    terminal_id: str | None
    stan: int | None
    amount_fen: int | None
    card: str | None = Field(description="the PAN masked (first 6, last 4)")
    reason: str | None = Field(
        description="field 39 as queued: a reversal's reason (98 no answer, 96, 06 ...)"
    )
    attempts: int
    last_code: str | None = Field(description="the last answer's code (91, 96, 98, A0), if one came")
    next_attempt: str
    next_try: str = Field(description="'due' or 'in 42 s'")
    queued: str


class QueueOut(BaseModel):
    pending: int
    delivered: int
    entries: list[QueuedOut] = Field(description="the first waiting entries, the next due first")


class RetryOut(BaseModel):
    due_now: int = Field(
        description="waiting entries brought forward: the acquirer sends them in its next round"
    )


QueueLimit = Annotated[int, Query(ge=1, le=1000, description="most waiting entries listed")]


@router.get("/api/acquirer/queue", tags=["network"], responses={401: {}, 403: {}})
def api_acquirer_queue(ctx: Ctx, principal: Operator, limit: QueueLimit = 100) -> QueueOut:
    """The reversals and advices waiting for the switch (``citycard acquirer queue``), and how many were
    delivered."""
    return QueueOut.model_validate(network.queue(ctx, limit))


@router.post("/api/acquirer/queue/retry", tags=["network"], responses={401: {}, 403: {}})
def api_acquirer_retry(ctx: Ctx, st: St, principal: Operator) -> RetryOut:
    """Every waiting reversal and advice due now, once an outage is over (``citycard acquirer retry``);
    audited."""
    return RetryOut(due_now=network.retry(ctx, st, principal))


class ReportOut(BaseModel):
    name: str = Field(description="acquirer, switch, issuer CODE")
    hostname: str = Field(description="the machine it runs on")
    address: str = Field(description="where it listens, HOST:PORT")
    pid: int
    health: str = Field(description="running, not reporting (killed, hung, cut off) or stopped")
    attention: bool = Field(description="not reporting, or running with a link down or a peer silent")
    started: str | None
    reported: str | None = Field(description="its last report")
    last_report: str = Field(description="the last report's age: '3 s', '12 min'")
    every_s: float = Field(description="its interval between reports")
    stopped: str | None
    status: str = Field(description="its status line when it last reported")


class ServicesOut(BaseModel):
    services: list[str] | None = Field(
        description="each network service's status line (the issuer front ends, the switch, the acquirer)"
        " when they run in this process (citycard up); null when they run elsewhere"
    )
    reported: list[ReportOut] = Field(
        description="the last reports of the services run as processes of their own (citycard serve ...),"
        " the running and the silent first"
    )


@router.get("/api/network/services", tags=["network"], responses={401: {}, 403: {}})
async def api_network_services(ctx: Ctx, principal: Operator) -> ServicesOut:
    """The network services' status lines, as ``citycard serve ...`` prints them, and the reports of those
    run as processes of their own (``citycard serve status``)."""
    services = network.services(ctx)  # on the loop the services run on; the reports from a worker thread
    reported = await run_in_threadpool(network.reported, ctx)
    return ServicesOut(services=services, reported=[ReportOut.model_validate(r) for r in reported])


class ForgetIn(BaseModel):
    name: str = Field(max_length=MAX_NAME, description="acquirer, switch, issuer CODE")
    hostname: str = Field(max_length=MAX_ADDRESS)
    address: str = Field(max_length=MAX_ADDRESS, description="HOST:PORT")


class ForgetOut(BaseModel):
    forgotten: bool


@router.post("/api/network/services/forget", tags=["network"], responses={401: {}, 403: {}, 404: {}, 409: {}})
def api_forget_service(body: ForgetIn, ctx: Ctx, st: St, principal: Operator) -> ForgetOut:
    """Forget the report of a service that is not running (stopped, or not reporting: killed or moved for
    good), as ``citycard serve forget`` does; audited. 409 while it runs, 404 when there is no such report."""
    why = network.forget(ctx, st, principal, body.name, body.hostname, body.address)
    if why == "running":
        raise HTTPException(409, f"{body.name} at {body.address} on {body.hostname} is running")
    if why != "forgotten":
        raise HTTPException(404, f"no report of {body.name} at {body.address} on {body.hostname}")
    return ForgetOut(forgotten=True)


async def _network_page(request: Request, ctx: Ctx, limit: int, **values: Any) -> Response:
    services = network.services(ctx)  # on the loop the services run on; the rest from a worker thread
    reported = await run_in_threadpool(network.reported, ctx)
    queue = await run_in_threadpool(network.queue, ctx, limit)
    return page(request, "console/network.html", services=services, reported=reported, queue=queue, **values)


@router.get("/console/network", include_in_schema=False)
async def network_page(request: Request, ctx: Ctx, principal: Operator, limit: QueueLimit = 100) -> Response:
    return await _network_page(request, ctx, limit)


@router.post("/console/network/forget", include_in_schema=False)
async def forget_form(
    request: Request,
    ctx: Ctx,
    st: St,
    principal: Operator,
    name: Annotated[str, Form(max_length=MAX_NAME)],
    hostname: Annotated[str, Form(max_length=MAX_ADDRESS)],
    address: Annotated[str, Form(max_length=MAX_ADDRESS)],
) -> Response:
    why = await run_in_threadpool(network.forget, ctx, st, principal, name, hostname, address)
    told = {
        "forgotten": f"forgot {name} at {address} on {hostname}",
        "running": f"{name} at {address} on {hostname} is running: kept",
    }.get(why, f"no report of {name} at {address} on {hostname}")
    values = {"notice": told} if why == "forgotten" else {"error": told}
    return await _network_page(request, ctx, 100, **values)


@router.post("/console/network/retry", include_in_schema=False)
async def retry_form(request: Request, ctx: Ctx, st: St, principal: Operator) -> Response:
    moved = await run_in_threadpool(network.retry, ctx, st, principal)
    notice = f"{moved} waiting reversal(s) and advice(s) due now: the acquirer sends them in its next round"
    return await _network_page(request, ctx, 100, notice=notice)
