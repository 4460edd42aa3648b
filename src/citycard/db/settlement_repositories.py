"""Settlement's storage on SQL (PostgreSQL and SQLite): :class:`SqlSettlementStore` and its unit of work.

Set-based: the day's ``clearing_items`` are read with one query, streamed (a server-side cursor on
PostgreSQL, fetched :data:`PAGE` rows at a time), never one round trip per item; the day's record is
written with one multi-row ``INSERT`` per table; the captured-vs-cleared differences are anti-joins, each
record placed in its acquiring bank's business day (clearing's calendar, through the ``window`` the entry
point passes). Clearing's tables are named here by their contract columns only (``sqlalchemy.table``), so
this module does not depend on clearing's table module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    table,
    true,
    update,
)
from sqlalchemy.orm import Session

from citycard.ledger.model import Account as LedgerAccount
from citycard.ledger.model import CreateAccountResult
from citycard.settlement.model import AccountKey, ClearedItem, Payout, Position, given_back
from citycard.settlement.ports import (
    BusinessWindow,
    CapturedDifference,
    CapturedTotals,
    DayRecord,
    MerchantRow,
    TotalsRow,
)

from .acquirer_tables import acquirer_transactions, acquirer_uploads
from .center_tables import center_merchants
from .issuer_tables import issuer_banks
from .repositories import SqlLedgerRepository
from .settlement_tables import (
    SETTLEMENT_ID_BASE,
    settlement_accounts,
    settlement_days,
    settlement_merchants,
    settlement_positions,
    settlement_totals,
)
from .uow import RepositoryFactory, SqlUnitOfWork

__all__ = ["PAGE", "SettlementUnitOfWork", "SqlSettlementStore", "clearing_items", "clearing_runs"]

PAGE = 5000
"""Items read per query."""
INSERT_ROWS = 1000
"""Rows per multi-row INSERT."""

clearing_items = table(
    "clearing_items",
    column("id", BigInteger),
    column("clearing_date", String),
    column("source", String),
    column("source_ref", String),
    column("kind", String),
    column("sign", Integer),
    column("amount_fen", BigInteger),
    column("issuer_bank", String),
    column("acquirer_bank", String),
    column("merchant_id", String),
    column("terminal_id", String),
    column("mcc", String),
    column("industry", String),
    column("pan_masked", String),
    column("txn_ns", BigInteger),
    column("rrn", String),
    column("card_type", String),  # 0023: the card's product's (debit, credit); NULL before it
    column("bus_line", Integer),  # a fare's bus line (migration 0024): the bus company's revenue by line
    column("payer_bank", String),  # an EC load from another account (0025): the bank that paid
)
"""Clearing's items, as the team contract describes them (the columns settlement reads)."""

clearing_runs = table("clearing_runs", column("clearing_date", String), column("status", String))

_ITEM_COLUMNS = [clearing_items.c[name] for name in ClearedItem.__slots__]
_BEIJING = timezone(timedelta(hours=8))
_ACCOUNT_LOAD = "ec_account_load"
_ONLINE_KINDS = ("purchase", "refund", "void", "ec_cash_load", "ec_load_other")
"""The acquirer's financial kinds (``acquirer.model.TransactionKind``); ``ec_load_other`` is the EC load
from another account, cleared as ``ec_account_load``."""


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), INSERT_ROWS):
        yield rows[start : start + INSERT_ROWS]


def day_bounds_ns(day: str) -> tuple[int, int]:
    """[start, end) of the Beijing day ``YYYYMMDD`` in nanoseconds since the epoch."""
    start = datetime(int(day[:4]), int(day[4:6]), int(day[6:]), tzinfo=_BEIJING)
    first = int((start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000_000
    return first, first + 86_400 * 1_000_000_000


_POSITION_COLUMNS = tuple(
    settlement_positions.c[name]
    for name in (
        "participant", "issued_gross_fen", "issuer_fee_fen", "acquired_net_fen", "acquirer_fee_fen",
        "network_fee_fen",
    )
)  # fmt: skip
"""A position's columns in :class:`Position`'s order (after the participant)."""

_MERCHANT_COLUMNS = tuple(
    settlement_merchants.c[name]
    for name in (
        "bank", "merchant_id", "industry", "item_count", "gross_fen", "discount_fen", "issuer_fee_fen",
        "network_fee_fen", "acquirer_fee_fen", "balance_fen", "payout_fen", "payout_date",
    )
)  # fmt: skip
"""A merchant row's columns, as :func:`_merchant_row` reads them."""


def _merchant_row(r: Any) -> MerchantRow:
    return MerchantRow(
        bank=str(r.bank),
        merchant_id=str(r.merchant_id),
        industry=r.industry,
        item_count=int(r.item_count),
        gross_fen=int(r.gross_fen),
        discount_fen=int(r.discount_fen),
        issuer_fee_fen=int(r.issuer_fee_fen),
        network_fee_fen=int(r.network_fee_fen),
        acquirer_fee_fen=int(r.acquirer_fee_fen),
        balance_fen=int(r.balance_fen),
        payout_fen=int(r.payout_fen),
        payout_date=str(r.payout_date),
    )


class SqlSettlementStore:
    """:class:`citycard.settlement.ports.SettlementStore` on one SQLAlchemy session."""

    def __init__(self, session: Session, ledger: SqlLedgerRepository, *, read_only: bool = False) -> None:
        self.session = session
        self.ledger = ledger
        self.read_only = read_only

    @property
    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def clearing_status(self, day: str) -> str | None:
        query = select(clearing_runs.c.status).where(clearing_runs.c.clearing_date == day)
        if self._postgres and not self.read_only:  # two settlements of one day: the second waits, then sees
            query = query.with_for_update()
        status = self.session.execute(query).scalar()
        return None if status is None else str(status)

    def items(self, day: str, *, by_merchant: bool = False) -> Iterator[ClearedItem]:
        """One query, streamed: on PostgreSQL a server-side cursor (one sort of the day's items, however
        many, rather than a sort per page: no index serves the by-merchant order), fetched by pages."""
        t = clearing_items
        order = [t.c.acquirer_bank, t.c.merchant_id, t.c.id] if by_merchant else [t.c.id]
        query = select(*_ITEM_COLUMNS).where(t.c.clearing_date == day).order_by(*order)
        result = self.session.execute(query.execution_options(stream_results=True, yield_per=PAGE))
        try:
            for rows in result.partitions():
                for row in rows:
                    yield ClearedItem(*row)
        finally:
            result.close()

    def _stream(self, query: Any) -> Iterator[Any]:
        result = self.session.execute(query.execution_options(stream_results=True, yield_per=PAGE))
        try:
            for rows in result.partitions():
                yield from rows
        finally:
            result.close()

    def item_count(self, day: str) -> int:
        t = clearing_items
        return int(self.session.execute(select(func.count()).where(t.c.clearing_date == day)).scalar_one())

    def fares_by_line(self, day: str, merchant_id: str) -> list[tuple[int, int, int]]:
        return [(line, n, fen) for _, line, n, fen in self.fares_by_lines(day, [merchant_id])]

    def fares_by_lines(self, day: str, merchant_ids: Iterable[str]) -> list[tuple[str, int, int, int]]:
        t = clearing_items
        out: list[tuple[str, int, int, int]] = []
        for start in range(0, len(wanted := sorted(set(merchant_ids))), INSERT_ROWS):
            query = (
                select(t.c.merchant_id, t.c.bus_line, func.count(), func.sum(t.c.sign * t.c.amount_fen))
                .where(
                    t.c.clearing_date == day,
                    t.c.merchant_id.in_(wanted[start : start + INSERT_ROWS]),
                    t.c.kind == "fare",
                    t.c.bus_line.is_not(None),
                )
                .group_by(t.c.merchant_id, t.c.bus_line)
                .order_by(t.c.merchant_id, t.c.bus_line)
            )
            out += [(str(m), int(line), int(n), int(fen)) for m, line, n, fen in self.session.execute(query)]
        return out

    def merchant_days(
        self, merchant_id: str, limit: int, day: str | None = None
    ) -> list[tuple[str, MerchantRow]]:
        m = settlement_merchants
        query = select(m.c.settlement_date, *_MERCHANT_COLUMNS).where(m.c.merchant_id == merchant_id)
        if day is not None:
            query = query.where(m.c.settlement_date == day)
        query = query.order_by(m.c.settlement_date.desc(), m.c.bank).limit(limit)
        return [(str(r.settlement_date), _merchant_row(r)) for r in self.session.execute(query)]

    def participant_days(self, participant: str, limit: int) -> list[tuple[str, Position]]:
        p = settlement_positions
        query = (
            select(p.c.settlement_date, *_POSITION_COLUMNS)
            .where(p.c.participant == participant)
            .order_by(p.c.settlement_date.desc())
            .limit(limit)
        )
        return [
            (str(r[0]), Position(str(r[1]), *(int(v) for v in r[2:]))) for r in self.session.execute(query)
        ]

    def network_settlement_accounts(self, banks: Iterable[str]) -> dict[str, int]:
        wanted = list(banks)
        rows = self.session.execute(
            select(issuer_banks.c.code, issuer_banks.c.settlement_account_id).where(
                issuer_banks.c.code.in_(wanted)
            )
        ).all()
        found = {str(code): int(account) for code, account in rows}
        missing = sorted(set(wanted) - set(found))
        assert not missing, f"cleared items name issuing banks that do not exist: {missing}"
        return found

    def ensure_accounts(self, keys: Sequence[AccountKey]) -> dict[AccountKey, int]:
        t = settlement_accounts
        if self._postgres:  # one allocator at a time (two days settled at once)
            self.session.execute(select(func.pg_advisory_xact_lock(0x5E771E)))
        owners = sorted({k.owner for k in keys})
        found: dict[AccountKey, int] = {}
        for start in range(0, len(owners), INSERT_ROWS):
            rows = self.session.execute(
                select(t.c.owner, t.c.code, t.c.account_id).where(
                    t.c.owner.in_(owners[start : start + INSERT_ROWS])
                )
            ).all()
            found |= {AccountKey(str(o), int(c)): int(a) for o, c, a in rows}
        missing = [k for k in keys if k not in found]
        if missing:
            top = self.session.execute(select(func.max(t.c.account_id))).scalar()
            first = SETTLEMENT_ID_BASE if top is None else int(top) + 1
            new = {k: first + n for n, k in enumerate(missing)}
            accounts = [LedgerAccount(i, code=k.code) for k, i in new.items()]
            for start in range(0, len(accounts), 8190):
                results = self.ledger.create_accounts(accounts[start : start + 8190])
                bad = [r for r in results if r != CreateAccountResult.OK]
                assert not bad, f"settlement accounts not created: {bad[:3]}"
            rows_to_add = [{"owner": k.owner, "code": k.code, "account_id": i} for k, i in new.items()]
            for chunk in _chunks(rows_to_add):
                self.session.execute(insert(t), list(chunk))
            found |= new
        return {k: found[k] for k in keys}

    def payable_balances(self, account_ids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for start in range(0, len(account_ids), 8190):
            for a in self.ledger.lookup_accounts(account_ids[start : start + 8190]):
                out[a.id] = a.credit_balance_fen
        return out

    def save(self, record: DayRecord, payouts: Sequence[Payout]) -> None:
        day = record.day
        transfer_of = {(p.bank, p.merchant_id): p.transfer.id if p.transfer else None for p in payouts}
        self.session.execute(
            insert(settlement_days).values(
                settlement_date=day,
                schedule_toml=record.schedule_toml,
                item_count=record.item_count,
                transfer_count=record.transfer_count,
                settled_ns=record.settled_ns,
            )
        )
        positions = [
            {
                "settlement_date": day,
                "participant": p.participant,
                "issued_gross_fen": p.issued_gross_fen,
                "issuer_fee_fen": p.issuer_fee_fen,
                "acquired_net_fen": p.acquired_net_fen,
                "acquirer_fee_fen": p.acquirer_fee_fen,
                "network_fee_fen": p.network_fee_fen,
                "net_fen": p.net_fen,
            }
            for p in record.positions
        ]
        merchants = [
            {
                "settlement_date": day,
                "bank": m.bank,
                "merchant_id": m.merchant_id,
                "industry": m.industry,
                "item_count": m.item_count,
                "gross_fen": m.gross_fen,
                "discount_fen": m.discount_fen,
                "issuer_fee_fen": m.issuer_fee_fen,
                "network_fee_fen": m.network_fee_fen,
                "acquirer_fee_fen": m.acquirer_fee_fen,
                "balance_fen": m.balance_fen,
                "payout_fen": m.payout_fen,
                "payout_date": m.payout_date,
                "payout_transfer_id": transfer_of[m.bank, m.merchant_id],
            }
            for m in record.merchants
        ]
        totals = [
            {
                "settlement_date": day,
                "dimension": dimension,
                "key": t.key,
                "item_count": t.item_count,
                "gross_fen": t.gross_fen,
                "discount_fen": t.discount_fen,
            }
            for dimension, rows in (("industry", record.industries), ("kind", record.kinds))
            for t in rows
        ]
        for target, rows in (
            (settlement_positions, positions),
            (settlement_merchants, merchants),
            (settlement_totals, totals),
        ):
            for chunk in _chunks(rows):
                self.session.execute(insert(target), list(chunk))
        done = self.session.execute(
            update(clearing_runs)
            .where(clearing_runs.c.clearing_date == day, clearing_runs.c.status == "cleared")
            .values(status="settled")
        )
        assert done.rowcount == 1, f"clearing run of {day} was not 'cleared'"  # type: ignore[attr-defined]

    def load(self, day: str) -> DayRecord | None:
        head = self.session.execute(
            select(settlement_days).where(settlement_days.c.settlement_date == day)
        ).first()
        if head is None:
            return None
        p = settlement_positions
        positions = self.session.execute(
            select(*_POSITION_COLUMNS)
            .where(p.c.settlement_date == day)
            .order_by(p.c.participant == "CENTER", p.c.participant)
        ).all()
        m = settlement_merchants
        merchants = self.session.execute(
            select(*_MERCHANT_COLUMNS).where(m.c.settlement_date == day).order_by(m.c.bank, m.c.merchant_id)
        ).all()
        t = settlement_totals
        totals = self.session.execute(
            select(t.c.dimension, t.c.key, t.c.item_count, t.c.gross_fen, t.c.discount_fen)
            .where(t.c.settlement_date == day)
            .order_by(t.c.dimension, t.c.key)
        ).all()
        return DayRecord(
            day,
            head.schedule_toml,
            int(head.item_count),
            tuple(Position(str(r[0]), *(int(v) for v in r[1:])) for r in positions),
            tuple(_merchant_row(r) for r in merchants),
            tuple(
                TotalsRow(r.key, r.item_count, r.gross_fen, r.discount_fen)
                for r in totals
                if r.dimension == "industry"
            ),
            tuple(
                TotalsRow(r.key, r.item_count, r.gross_fen, r.discount_fen)
                for r in totals
                if r.dimension == "kind"
            ),
            int(head.transfer_count),
            int(head.settled_ns),
        )

    def is_settled(self, day: str) -> bool:
        d = settlement_days.c.settlement_date
        return self.session.execute(select(d).where(d == day)).first() is not None

    def settled_days(self, limit: int = 1000) -> list[str]:
        rows = self.session.execute(
            select(settlement_days.c.settlement_date)
            .order_by(settlement_days.c.settlement_date.desc())
            .limit(limit)
        ).all()
        return [str(r[0]) for r in rows]

    def _windows(self, day: str, window: BusinessWindow | None) -> dict[str, tuple[int, int]]:
        """Each acquiring bank's business day ``day`` (and '' for merchants without a bank); without a
        ``window``, the Beijing calendar day as clearing's default cut-over (midnight) makes it."""
        if window is None:
            start, end = day_bounds_ns(day)
            window = lambda _day, _bank: (start, end)  # noqa: E731 - midnight, (start, end] as clearing's
        banks = set(self.session.execute(select(issuer_banks.c.code)).scalars())
        banks |= set(self.session.execute(select(center_merchants.c.bank_code).distinct()).scalars())
        return {b: window(day, b) for b in sorted({str(b) for b in banks if b is not None} | {""})}

    def captured(
        self,
        day: str,
        window: BusinessWindow | None = None,
        *,
        bank: str | None = None,
        merchant: str | None = None,
    ) -> tuple[list[CapturedTotals], Iterator[CapturedDifference]]:
        """Online: the acquirer's approved financial records created in their acquiring bank's business
        day, matched to cleared items by RRN; offline: its uploads received in it, matched by
        ``TID/batch/stan``; the bank is the merchant's in the registry, as clearing places them. The
        differences come as an iterator, streamed: read them inside the unit of work. ``bank`` /
        ``merchant``: only the records of that acquiring bank's merchants / of that merchant (and the
        cleared items of the same scope: :func:`_item_scope`, with a bank's the EC loads from another
        account it paid or received at other banks' terminals, each a difference: another bank captured
        it)."""
        windows = self._windows(day, window)
        at, up, ci, m = acquirer_transactions, acquirer_uploads, clearing_items, center_merchants
        merchant_bank = func.coalesce(m.c.bank_code, "")

        foreign_load = _foreign_load(ci.c, bank, merchant)

        def scope(merchant_id: Any, bank_of: Any) -> Any:
            where: list[Any] = []
            if bank is not None:
                where.append(bank_of == bank)
            if merchant is not None:
                where.append(merchant_id == merchant)
            return and_(true(), *where)

        def in_day(t: Any) -> Any:
            return or_(
                *(and_(merchant_bank == b, t > start, t <= end) for b, (start, end) in windows.items())
            )

        online_from = at.outerjoin(m, m.c.merchant_id == at.c.merchant_id)
        upload_from = up.outerjoin(m, m.c.merchant_id == up.c.merchant_id)
        online_day = and_(
            at.c.kind.in_(_ONLINE_KINDS),
            at.c.response_code == "00",
            in_day(at.c.created_ns),
            scope(at.c.merchant_id, merchant_bank),
        )
        upload_ref = up.c.terminal_id + "/" + cast(up.c.batch, String) + "/" + cast(up.c.stan, String)
        upload_day = and_(in_day(up.c.received_ns), scope(up.c.merchant_id, merchant_bank))
        reversed_ = at.c.status.in_(("reversal_queued", "tombstone"))
        totals = []
        for source, query in (
            (
                "online",
                select(merchant_bank, func.count(), func.coalesce(func.sum(at.c.amount_fen), 0))
                .select_from(online_from)
                .where(online_day, not_(reversed_))
                .group_by(merchant_bank),
            ),
            (
                "offline",
                select(merchant_bank, func.count(), func.coalesce(func.sum(up.c.amount_fen), 0))
                .select_from(upload_from)
                .where(upload_day)
                .group_by(merchant_bank),
            ),
        ):
            for b, count, amount in sorted(self.session.execute(query).all()):
                totals.append(CapturedTotals(source, str(b), int(count), int(amount), *windows[str(b)]))
        totals.sort(key=lambda c: (c.bank, c.source))

        def differences() -> Iterator[CapturedDifference]:
            """Streamed (a day whose items the acquirer never saw has as many differences as items)."""
            cleared_rrn = exists().where(ci.c.source == "online", ci.c.rrn == at.c.rrn)
            cleared_on = select(func.min(ci.c.clearing_date)).where(
                ci.c.source == "online", ci.c.rrn == at.c.rrn
            )
            for b, rrn, amount, status, cleared, other in self._stream(
                select(
                    merchant_bank,
                    at.c.rrn,
                    at.c.amount_fen,
                    at.c.status,
                    cleared_rrn,
                    cleared_on.scalar_subquery(),
                )
                .select_from(online_from)
                .where(online_day, or_(reversed_, not_(cleared_rrn), cleared_on.scalar_subquery() != day))
                .order_by(at.c.rrn)
            ):
                if status in ("reversal_queued", "tombstone"):
                    reason = "reversed (by the terminal, or no answer): not financial" + (
                        "; but cleared: see the clearing exceptions" if cleared else ""
                    )
                elif cleared:
                    reason = f"cleared on business day {other}, not this one: the cut-over changed in between"
                else:
                    reason = (
                        "approved but not among the cleared items: not cleared yet (a clearing exception)"
                    )
                yield CapturedDifference("online", str(b), str(rrn), int(amount or 0), reason)
            cleared_upload = exists().where(ci.c.source == "offline", ci.c.source_ref == upload_ref)
            for b, ref, amount in self._stream(
                select(merchant_bank, upload_ref, up.c.amount_fen)
                .select_from(upload_from)
                .where(upload_day, not_(cleared_upload))
                .order_by(upload_ref)
            ):
                reason = (
                    "uploaded but not among the cleared items: clearing exception (duplicate, failed TC, ...)"
                )
                yield CapturedDifference("offline", str(b), str(ref), int(amount or 0), reason)
            # captured in the item's own acquiring bank's business day (whatever the scope)
            captured_online = (
                select(literal(1))
                .select_from(online_from)
                .where(
                    at.c.rrn == ci.c.rrn,
                    at.c.kind.in_(_ONLINE_KINDS),
                    at.c.response_code == "00",
                    in_day(at.c.created_ns),
                )
                .exists()
            )
            captured_offline = (
                select(literal(1))
                .select_from(upload_from)
                .where(upload_ref == ci.c.source_ref, in_day(up.c.received_ns))
                .exists()
            )
            any_online = exists().where(at.c.rrn == ci.c.rrn).correlate(ci)
            any_offline = exists().where(upload_ref == ci.c.source_ref).correlate(ci)
            for (
                source,
                b,
                ref,
                amount,
                seen,
                foreign,
                captured_here,
                issuer,
                payer,
                kind,
                sign,
            ) in self._stream(
                select(
                    ci.c.source,
                    ci.c.acquirer_bank,
                    ci.c.source_ref,
                    ci.c.amount_fen,
                    case((ci.c.source == "online", any_online), else_=any_offline),
                    foreign_load,
                    case((ci.c.source == "online", captured_online), else_=captured_offline),
                    ci.c.issuer_bank,
                    ci.c.payer_bank,
                    ci.c.kind,
                    ci.c.sign,
                )
                .where(
                    ci.c.clearing_date == day,
                    _item_scope(ci.c, bank, merchant),
                    or_(
                        foreign_load,
                        and_(ci.c.source == "online", not_(captured_online)),
                        and_(ci.c.source == "offline", not_(captured_offline)),
                    ),
                )
                .order_by(ci.c.source, ci.c.source_ref)
            ):
                if foreign and captured_here:
                    part = " and ".join(
                        role
                        for role, of in (("its account paid", payer), ("its EC card was loaded", issuer))
                        if of == bank
                    )
                    reason = (
                        f"cleared today, an EC load from another account ({part}) at a terminal of "
                        f"{b or 'no bank'}'s merchant: captured by that bank's acquirer, not this bank's"
                    )
                elif seen and (kind == "void" or given_back(kind, sign)):  # a late reversal's item
                    reason = (
                        "cleared today, the reversal of a transaction captured in an earlier business day "
                        f"of {b or 'the default'}: its item given back"
                    )
                elif seen:
                    reason = (
                        f"cleared today, captured in an earlier business day of {b or 'the default'} "
                        "(late upload or accepted exception)"
                    )
                else:
                    reason = (
                        "cleared today, not captured by the acquirer (a terminal's journal export imported)"
                    )
                yield CapturedDifference(str(source), str(b), str(ref), int(amount), reason)

        return totals, differences()

    def cleared_kinds(
        self, day: str, *, bank: str | None = None, merchant: str | None = None
    ) -> tuple[TotalsRow, ...]:
        """The day's cleared items by source and kind, count and unsigned amount; ``bank`` / ``merchant``: of
        :func:`_item_scope` (a bank's merchants, and the EC loads from another account it paid or received
        wherever they were made; one merchant's)."""
        t = clearing_items.c
        query = select(t.source, t.kind, func.count(), func.sum(t.amount_fen)).where(
            t.clearing_date == day, _item_scope(t, bank, merchant)
        )
        rows = self.session.execute(query.group_by(t.source, t.kind)).all()
        return tuple(
            TotalsRow(f"{source}/{kind}", int(count), int(amount), 0)
            for source, kind, count, amount in sorted(rows)
        )


def _item_scope(t: Any, bank: str | None, merchant: str | None) -> Any:
    """The cleared items (columns ``t``) a scoped reconciliation covers: one merchant's (of ``bank`` if
    given); or one bank's: those at its merchants' terminals, and the EC loads from another account in
    which it is the payer's bank or the EC card's, wherever they were made (they are in its position and
    its clearing file)."""
    where: list[Any] = []
    if merchant is not None:
        where.append(t.merchant_id == merchant)
        if bank is not None:
            where.append(t.acquirer_bank == bank)
    elif bank is not None:
        where.append(
            or_(
                t.acquirer_bank == bank,
                and_(t.kind == _ACCOUNT_LOAD, or_(t.issuer_bank == bank, t.payer_bank == bank)),
            )
        )
    return and_(true(), *where)


def _foreign_load(t: Any, bank: str | None, merchant: str | None) -> Any:
    """In a bank's scope (not a merchant's): an EC load from another account made at another bank's
    merchant's terminal (the bank is in it as payer or EC card issuer only)."""
    if bank is None or merchant is not None:
        return false()
    return and_(t.kind == _ACCOUNT_LOAD, t.acquirer_bank != bank)


class SettlementUnitOfWork(SqlUnitOfWork):
    """The ledger and settlement's store in one transaction."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        **SqlUnitOfWork.repository_factories,
        "settlement": lambda uow: SqlSettlementStore(uow.session, uow.ledger, read_only=uow.read_only),
    }
    settlement: SqlSettlementStore
