"""SQL implementations of the public services' ports (``citycard.public.ports``), their unit of work, and
the industry report (merchants, terminals and volumes by industry and district).

The records are keyed by the holder, not the bank: ``issuer_cardholders.citizen_key`` (the service
center's HMAC of the ID number, the same at every bank), so a citizen's cards of two banks reach the same
records.

The inquiry's approval is read from the issuer's own record: the balance inquiry a self-service terminal
sent with the card's PIN is ``issuer_authorizations`` row ``<institution>-<RRN>``, the institution being
the terminal's merchant's acquiring bank (``issuer_banks.institution_id``), which is how the acquirer
named it (field 32) — so the answer's RRN alone, with the terminal, finds it by primary key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from citycard.public import ports
from citycard.public.model import (
    AppStatus,
    CardApplication,
    CitizenRecords,
    InquiryApproval,
    LibraryLoan,
    MedicalInsurance,
    SocialSecurity,
)

from .acquirer_tables import acquirer_transactions, acquirer_uploads
from .center_tables import center_merchants, center_terminals
from .issuer_tables import (
    issuer_authorizations,
    issuer_banks,
    issuer_card_transit,
    issuer_cardholders,
    issuer_cards,
)
from .public_tables import (
    public_card_applications,
    public_inquiries,
    public_library_loans,
    public_medical_insurance,
    public_social_security,
)
from .uow import RepositoryFactory, SqlUnitOfWork

__all__ = [
    "IndustryRow",
    "PublicUnitOfWork",
    "SqlCardApplications",
    "SqlInquiries",
    "SqlRecords",
    "industry_report",
]


def _insert(session: Session, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    return sqlite_insert(table)


class _Repo:
    def __init__(self, session: Session) -> None:
        self.session = session


class SqlCardApplications(_Repo):
    def card_exists(self, pan: str, *, for_update: bool = False) -> bool:
        """Whether the card exists; ``for_update``: its row locked (an authorization of the card settles its
        records under the same lock, so a change never falls between its read and its write)."""
        query = select(issuer_cards.c.pan).where(issuer_cards.c.pan == pan)
        if for_update:
            query = query.with_for_update()
        return self.session.execute(query).first() is not None

    def card_registered(self, pan: str) -> bool:
        c = issuer_cards.c
        query = select(c.pan).where(c.pan == pan, c.holder_id.is_not(None))
        return self.session.execute(query).first() is not None

    def get(self, pan: str, app_code: str, *, for_update: bool = False) -> CardApplication | None:
        t = public_card_applications
        query = select(t).where(t.c.pan == pan, t.c.app_code == app_code)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).first()
        return None if row is None else _app(row)

    def of_card(self, pan: str) -> list[CardApplication]:
        t = public_card_applications
        rows = self.session.execute(select(t).where(t.c.pan == pan).order_by(t.c.app_code))
        return [_app(row) for row in rows]

    def put(self, app: CardApplication) -> None:
        t = public_card_applications
        values = {
            "status": app.status.value,
            "data": json.dumps(dict(app.data), sort_keys=True),
            "changed_ns": app.changed_ns,
            "chip_state": app.chip,
            "sent_atc": None,
            "sent_count": 0,
        }
        statement = _insert(self.session, t).values(pan=app.pan, app_code=app.app_code, **values)
        self.session.execute(statement.on_conflict_do_update(index_elements=["pan", "app_code"], set_=values))
        if app.app_code == "transit":
            self._transit_file(app)
        if app.chip != "written":  # the issuer writes it at the card's next online contact
            self.session.execute(
                update(issuer_cards).where(issuer_cards.c.pan == app.pan).values(records_pending=True)
            )

    def _transit_file(self, app: CardApplication) -> None:
        """The transit concession application is also the concession the validators read: on a registered
        card with the transit file, its record 1 (SFI 21, ``issuer_card_transit``) takes the category and
        last day enabled (none when disabled), written by the issuer's script with the applications file's
        record (docs/transit.md "Concessions from the issuer")."""
        enabled = app.status is AppStatus.ENABLED  # its valid_until a day that exists (check_app_data)
        t, c = issuer_card_transit, issuer_cards.c
        registered = select(c.pan).where(c.pan == app.pan, c.holder_id.is_not(None)).exists()
        self.session.execute(
            update(t)
            .where(t.c.pan == app.pan, registered)
            .values(
                category=str(app.data["category"]) if enabled else "none",
                valid_until=str(app.data["valid_until"]) if enabled else None,
                changed_ns=app.changed_ns,
                chip_state=app.chip,
                sent_atc=None,
                sent_count=0,
            )
        )


def _app(row: Any) -> CardApplication:
    return CardApplication(
        row.pan,
        row.app_code,
        AppStatus(row.status),
        json.loads(row.data),
        int(row.changed_ns),
        row.chip_state,
    )


class SqlRecords(_Repo):
    def get(self, citizen_key: str) -> CitizenRecords | None:
        ss = self.session.execute(
            select(public_social_security).where(public_social_security.c.citizen_key == citizen_key)
        ).first()
        if ss is None:
            return None
        mi = self.session.execute(
            select(public_medical_insurance).where(public_medical_insurance.c.citizen_key == citizen_key)
        ).first()
        loans = self.session.execute(
            select(public_library_loans)
            .where(public_library_loans.c.citizen_key == citizen_key)
            .order_by(public_library_loans.c.position)
        )
        return CitizenRecords(
            citizen_key,
            SocialSecurity(ss.insured_since, int(ss.contribution_months), ss.last_paid, int(ss.base_fen)),
            None
            if mi is None
            else MedicalInsurance(mi.scheme, int(mi.account_balance_fen), int(mi.spent_this_year_fen)),
            tuple(LibraryLoan(r.title, r.borrowed, r.due) for r in loans),
        )

    def add(self, records: CitizenRecords, seeded_ns: int) -> bool:
        ss = records.social_security
        assert ss is not None, "the back end keeps social security for everyone it knows"
        statement = (
            _insert(self.session, public_social_security)
            .values(
                citizen_key=records.citizen_key,
                insured_since=ss.insured_since,
                contribution_months=ss.contribution_months,
                last_paid=ss.last_paid,
                base_fen=ss.base_fen,
                seeded_ns=seeded_ns,
            )
            .on_conflict_do_nothing(index_elements=["citizen_key"])
            .returning(public_social_security.c.citizen_key)
        )
        if self.session.execute(statement).first() is None:
            return False
        mi = records.medical_insurance
        if mi is not None:
            self.session.execute(
                public_medical_insurance.insert().values(
                    citizen_key=records.citizen_key,
                    scheme=mi.scheme,
                    account_balance_fen=mi.account_balance_fen,
                    spent_this_year_fen=mi.spent_this_year_fen,
                )
            )
        if records.loans:
            self.session.execute(
                public_library_loans.insert(),
                [
                    {"citizen_key": records.citizen_key, "position": i, **vars_of(loan)}
                    for i, loan in enumerate(records.loans)
                ],
            )
        return True

    def citizens_without_records(self, limit: int) -> list[str]:
        h, s = issuer_cardholders.c, public_social_security.c
        query = (
            select(h.citizen_key)
            .outerjoin(public_social_security, s.citizen_key == h.citizen_key)
            .where(s.citizen_key.is_(None))
            .group_by(h.citizen_key)  # one citizen, a holder at each of several banks: seeded once
            .order_by(func.min(h.id))
            .limit(limit)
        )
        return [row[0] for row in self.session.execute(query)]


def vars_of(loan: LibraryLoan) -> dict[str, str]:
    return {"title": loan.title, "borrowed": loan.borrowed, "due": loan.due}


class SqlInquiries(_Repo):
    def approval(self, terminal_id: str, rrn: str) -> InquiryApproval | None:
        t, m, b = center_terminals.c, center_merchants.c, issuer_banks.c
        institution = self.session.execute(
            select(b.institution_id)
            .select_from(center_terminals.join(center_merchants, m.merchant_id == t.merchant_id))
            .join(issuer_banks, b.code == m.bank_code)
            .where(t.terminal_id == terminal_id)
        ).scalar()
        if not institution:
            return None
        a, c, h = issuer_authorizations.c, issuer_cards.c, issuer_cardholders.c
        row = self.session.execute(
            select(
                a.request_id,
                a.pan,
                a.kind,
                a.response_code,
                a.response,
                a.terminal_id,
                a.created_ns,
                h.citizen_key,
                public_inquiries.c.request_id.label("used"),
            )
            .select_from(issuer_authorizations)
            .outerjoin(issuer_cards, c.pan == a.pan)
            .outerjoin(issuer_cardholders, h.id == c.holder_id)
            .outerjoin(public_inquiries, public_inquiries.c.request_id == a.request_id)
            .where(a.request_id == f"{institution}-{rrn}")
        ).first()
        if row is None:
            return None
        flags = tuple(json.loads(bytes(row.response)).get("flags", ()))
        return InquiryApproval(
            row.request_id,
            row.pan,
            row.kind,
            row.response_code,
            flags,
            row.terminal_id,
            int(row.created_ns),
            row.citizen_key,
            row.used is not None,
        )

    def mark_used(self, request_id: str, terminal_id: str, citizen_key: str, now_ns: int) -> bool:
        statement = (
            _insert(self.session, public_inquiries)
            .values(request_id=request_id, terminal_id=terminal_id, citizen_key=citizen_key, served_ns=now_ns)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(public_inquiries.c.request_id)
        )
        return self.session.execute(statement).first() is not None


class PublicUnitOfWork(SqlUnitOfWork):
    """The public services' repositories in one transaction."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        **SqlUnitOfWork.repository_factories,
        "apps": lambda uow: SqlCardApplications(uow.session),
        "records": lambda uow: SqlRecords(uow.session),
        "inquiries": lambda uow: SqlInquiries(uow.session),
    }
    apps: SqlCardApplications
    records: SqlRecords
    inquiries: SqlInquiries


if TYPE_CHECKING:  # mypy checks that the SQL unit of work implements the port

    def _is_public_unit_of_work(uow: PublicUnitOfWork) -> ports.PublicUnitOfWork:
        return uow


# --- the industry report -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndustryRow:
    """Merchants, terminals and transactions of one industry in one district (a None industry: merchants
    registered before the registry knew industries). Volumes: approved online purchases less approved
    voids (the acquirer's records) and offline EC purchases uploaded (0320), in fen."""

    industry: str | None
    district: str
    merchants: int
    terminals: int
    transactions: int
    volume_fen: int


def industry_report(session: Session) -> list[IndustryRow]:
    """One row per (industry, district) with active merchants or any transaction, sorted."""
    m, t = center_merchants.c, center_terminals.c
    tx, up = acquirer_transactions.c, acquirer_uploads.c
    merchants = {
        (r.industry, r.district): (int(r.merchants), int(r.terminals))
        for r in session.execute(
            select(
                m.industry,
                m.district,
                func.count(func.distinct(m.merchant_id)).label("merchants"),
                func.count(t.terminal_id).label("terminals"),
            )
            .select_from(
                center_merchants.outerjoin(
                    center_terminals, and_(t.merchant_id == m.merchant_id, t.status == "active")
                )
            )
            .where(m.status == "active")
            .group_by(m.industry, m.district)
        )
    }
    volumes: dict[tuple[str | None, str], list[int]] = {}
    online = (
        select(m.industry, m.district, func.count().label("n"), func.sum(tx.amount_fen).label("fen"))
        .select_from(acquirer_transactions.join(center_merchants, m.merchant_id == tx.merchant_id))
        .where(tx.kind == "purchase", tx.response_code == "00", tx.status == "answered")
        .group_by(m.industry, m.district)
    )
    voids = (
        select(m.industry, m.district, func.count().label("n"), (-func.sum(tx.amount_fen)).label("fen"))
        .select_from(acquirer_transactions.join(center_merchants, m.merchant_id == tx.merchant_id))
        .where(tx.kind == "void", tx.response_code == "00", tx.status == "answered")
        .group_by(m.industry, m.district)
    )
    offline = (
        select(m.industry, m.district, func.count().label("n"), func.sum(up.amount_fen).label("fen"))
        .select_from(acquirer_uploads.join(center_merchants, m.merchant_id == up.merchant_id))
        .group_by(m.industry, m.district)
    )
    for query, counted in ((online, True), (voids, False), (offline, True)):
        for r in session.execute(query):
            total = volumes.setdefault((r.industry, r.district), [0, 0])
            total[0] += int(r.n) if counted else 0
            total[1] += int(r.fen or 0)
    keys = sorted(set(merchants) | set(volumes), key=lambda k: (k[0] or "~", k[1]))
    return [IndustryRow(k[0], k[1], *merchants.get(k, (0, 0)), *volumes.get(k, [0, 0])) for k in keys]
