"""The programme's figures for the service-center dashboard, each one SQL query over the platform's tables
(the Playwright test checks every figure on the page against its own query).

- cards issued, by bank and product; active cards; registered cards;
- merchants (active) and terminals (active) by industry and by district or county; validators; bus lines
  (active merchants of MCC 4131, bus lines, with at least one active validator: a bus company per line);
- purchases per day (Beijing time, UTC+8) for the last :data:`DAYS` days, and by industry and district
  over those days, count and amount: every purchase the programme captured, online and offline
  (:func:`citycard.db.captured.captured_purchases`: online purchases the issuers approved and that were not
  reversed, offline EC purchases and bus fares the terminals uploaded, and offline records cleared from a
  journal export without an upload — each once); EC loads are not purchases and are not counted;
- clearing's exceptions awaiting action (``clearing_exceptions`` with status ``open``; a bank: those of its
  cards or merchants);
- the latest business day cleared (``clearing_runs`` cleared or settled): its items paid (sign +1) by source,
  online and offline, count and amount (a bank: those of its cards); the latest day settled
  (``settlement_days``) and the merchants' payouts of that day (a bank: of the merchants it acquires for);
- EC float outstanding: what the issuers owe for electronic cash on all cards (the credit balances of the
  ledger's EC float accounts, code 11), offline spending not yet cleared included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, func, select

from citycard.db.captured import captured_purchases
from citycard.db.center_tables import center_merchants, center_terminals
from citycard.db.clearing_tables import clearing_exceptions, clearing_items, clearing_runs
from citycard.db.issuer_tables import issuer_cards
from citycard.db.settlement_tables import settlement_days, settlement_merchants
from citycard.db.tables import ledger_accounts
from citycard.issuer.model import BankAccount

__all__ = ["DAYS", "Figures", "beijing_day", "figures"]

DAYS = 14
BUS_LINE_MCC = "4131"
"""ISO 18245 MCC 4131, bus lines: a merchant of this code with validators is one of the city's bus lines."""
_DAY_S = 86_400
_BEIJING_S = 8 * 3600


def beijing_day(ns: int) -> date:
    return datetime.fromtimestamp(ns // 10**9 + _BEIJING_S, UTC).date()


@dataclass
class Figures:
    cards_total: int = 0
    cards_active: int = 0
    cards_registered: int = 0
    cards_by_bank_product: list[tuple[str, str, int]] = field(default_factory=list)
    cards_by_bank: list[tuple[str, int]] = field(default_factory=list)
    merchants_total: int = 0
    merchants_by_industry: list[tuple[str, int]] = field(default_factory=list)
    merchants_by_district: list[tuple[str, int]] = field(default_factory=list)
    terminals_total: int = 0
    validators: int = 0
    bus_lines: int = 0
    terminals_by_industry: list[tuple[str, int]] = field(default_factory=list)
    terminals_by_district: list[tuple[str, int]] = field(default_factory=list)
    days: list[tuple[str, int, int]] = field(default_factory=list)  # (YYYY-MM-DD, count, fen)
    txn_by_industry: list[tuple[str, int, int]] = field(default_factory=list)
    txn_by_district: list[tuple[str, int, int]] = field(default_factory=list)
    ec_float_fen: int = 0
    exceptions_open: int = 0
    cleared_day: str = ""  # YYYY-MM-DD: the latest business day clearing has finished ("": none yet)
    cleared: list[tuple[str, int, int]] = field(default_factory=list)  # (source, count, fen) of that day
    settled_day: str = ""  # YYYY-MM-DD: the latest day settled ("": none yet)
    settled_payout_fen: int = 0


def figures(engine: Engine, now_ns: int, *, bank: str | None = None) -> Figures:
    """The figures now (``bank``: only that bank's cards and the purchases on them)."""
    f = Figures()
    c, m, t = issuer_cards.c, center_merchants.c, center_terminals.c
    card_filter = [c.bank_code == bank] if bank else []
    today = beijing_day(now_ns)
    first = today - timedelta(days=DAYS - 1)
    since_ns = (
        int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) - _BEIJING_S
    ) * 10**9
    captured = captured_purchases(since_ns=since_ns, bank=bank).subquery("captured")
    k = captured.c
    # integer division (SQLAlchemy 2's // renders it on SQLite and PostgreSQL alike; / is true division)
    day = (k.at_ns // 10**9 + _BEIJING_S) // _DAY_S
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.bank_code, c.product_code, func.count())
            .where(*card_filter)
            .group_by(c.bank_code, c.product_code)
            .order_by(c.bank_code, c.product_code)
        ).all()
        f.cards_by_bank_product = [(r[0], r[1], int(r[2])) for r in rows]
        by_bank: dict[str, int] = {}
        for bank_code, _, n in f.cards_by_bank_product:
            by_bank[bank_code] = by_bank.get(bank_code, 0) + n
        f.cards_by_bank = sorted(by_bank.items())
        f.cards_total = sum(by_bank.values())
        f.cards_active = int(
            conn.execute(select(func.count()).where(c.status == "active", *card_filter)).scalar_one()
        )
        f.cards_registered = int(
            conn.execute(select(func.count()).where(c.holder_id.is_not(None), *card_filter)).scalar_one()
        )
        industry = func.coalesce(m.industry, "unknown")
        f.merchants_by_industry = _pairs(
            conn.execute(
                select(industry, func.count())
                .where(m.status == "active")
                .group_by(industry)
                .order_by(industry)
            ).all()
        )
        f.merchants_by_district = _pairs(
            conn.execute(
                select(m.district, func.count())
                .where(m.status == "active")
                .group_by(m.district)
                .order_by(m.district)
            ).all()
        )
        f.merchants_total = sum(n for _, n in f.merchants_by_industry)
        joined = center_terminals.join(center_merchants, t.merchant_id == m.merchant_id)
        live = t.status == "active"
        f.terminals_by_industry = _pairs(
            conn.execute(
                select(industry, func.count())
                .select_from(joined)
                .where(live)
                .group_by(industry)
                .order_by(industry)
            ).all()
        )
        f.terminals_by_district = _pairs(
            conn.execute(
                select(m.district, func.count())
                .select_from(joined)
                .where(live)
                .group_by(m.district)
                .order_by(m.district)
            ).all()
        )
        f.terminals_total = sum(n for _, n in f.terminals_by_industry)
        f.validators = int(conn.execute(select(func.count()).where(live, t.kind == "validator")).scalar_one())
        f.bus_lines = int(
            conn.execute(
                select(func.count(func.distinct(m.merchant_id)))
                .select_from(joined)
                .where(live, m.status == "active", t.kind == "validator", m.mcc == BUS_LINE_MCC)
            ).scalar_one()
        )
        per_day = {
            int(r[0]): (int(r[1]), int(r[2] or 0))
            for r in conn.execute(select(day, func.count(), func.sum(k.amount_fen)).group_by(day)).all()
        }
        epoch = date(1970, 1, 1)
        for i in range(DAYS):
            d = first + timedelta(days=i)
            n, fen = per_day.get((d - epoch).days, (0, 0))
            f.days.append((d.isoformat(), n, fen))
        with_merchant = captured.outerjoin(center_merchants, k.merchant_id == m.merchant_id)
        for target, column in (
            (f.txn_by_industry, industry),
            (f.txn_by_district, func.coalesce(m.district, "unknown")),
        ):
            rows = conn.execute(
                select(column, func.count(), func.sum(k.amount_fen))
                .select_from(with_merchant)
                .group_by(column)
                .order_by(column)
            ).all()
            target.extend((str(r[0]), int(r[1]), int(r[2] or 0)) for r in rows)
        ec = ledger_accounts.c
        ec_filter = [ec.code == BankAccount.CARD_EC_FLOAT]
        if bank:
            ec_filter.append(ec.id.in_(select(c.ec_float_account_id).where(c.bank_code == bank)))
        x = clearing_exceptions.c
        x_filter = [x.status == "open"]
        if bank:
            x_filter.append((x.issuer_bank == bank) | (x.acquirer_bank == bank))
        f.exceptions_open = int(conn.execute(select(func.count()).where(*x_filter)).scalar_one())
        _clearing_and_settlement(conn, f, bank)
        f.ec_float_fen = int(
            conn.execute(
                select(func.coalesce(func.sum(ec.credits_posted - ec.debits_posted), 0)).where(
                    and_(*ec_filter)
                )
            ).scalar_one()
        )
    return f


def _day(text: str | None) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if text else ""


def _clearing_and_settlement(conn: Connection, f: Figures, bank: str | None) -> None:
    r, i = clearing_runs.c, clearing_items.c
    day = conn.execute(select(func.max(r.clearing_date)).where(r.status.in_(("cleared", "settled")))).scalar()
    if day is not None:
        f.cleared_day = _day(day)
        where = [i.clearing_date == day, i.sign == 1] + ([i.issuer_bank == bank] if bank else [])
        counted = dict.fromkeys(("online", "offline"), (0, 0))
        for source, n, fen in conn.execute(
            select(i.source, func.count(), func.sum(i.amount_fen)).where(*where).group_by(i.source)
        ):
            counted[str(source)] = (int(n), int(fen or 0))
        f.cleared = [(source, n, fen) for source, (n, fen) in sorted(counted.items())]
    sd, sm = settlement_days.c, settlement_merchants.c
    settled = conn.execute(select(sd.settlement_date).order_by(sd.settlement_date.desc()).limit(1)).first()
    if settled is not None:
        f.settled_day = _day(settled.settlement_date)
        payouts = select(func.coalesce(func.sum(sm.payout_fen), 0)).where(
            sm.settlement_date == settled.settlement_date
        )
        if bank:
            payouts = payouts.where(sm.bank == bank)
        f.settled_payout_fen = int(conn.execute(payouts).scalar_one())


def _pairs(rows: Sequence[Row[Any]]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for row in rows:
        key, count = tuple(row)
        out.append((str(key) if key != "" else "-", int(count)))
    return out
