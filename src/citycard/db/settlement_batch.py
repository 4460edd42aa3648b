"""The acquirer's own totals of one terminal's batch, for the batch settlement (0500/0510).

Two aggregate queries (no row per transaction leaves the database), on the acquirer's records:

- debit: approved purchases (``answered``, 39 = ``00``) less approved voids, plus the offline EC purchases
  uploaded in the batch (``acquirer_uploads``);
- credit: refunds the acquirer acknowledged (queued or answered ``00``: the terminal was told ``00`` when
  the advice was queued);
- reversed records (``reversal_queued``, ``tombstone``) count nowhere.

The terminal counts the same way from its journal (docs/iso8583.md, "Batch settlement").
"""

from __future__ import annotations

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from citycard.codec.iso8583.totals import BatchTotals

from .acquirer_tables import acquirer_settled_batches, acquirer_transactions, acquirer_uploads

__all__ = ["SqlBatchTotals", "terminal_batch_totals"]


def terminal_batch_totals(session: Session, terminal_id: str, batch: int) -> BatchTotals:
    t = acquirer_transactions
    mine = and_(t.c.terminal_id == terminal_id, t.c.batch == batch)
    approved = and_(t.c.status == "answered", t.c.response_code == "00")
    debit_sign = case(
        (and_(t.c.kind == "purchase", approved), 1),
        (and_(t.c.kind == "void", approved), -1),
        else_=0,
    )
    refunded = and_(
        t.c.kind == "refund",
        t.c.status.in_(("pending", "answered")),
        or_(t.c.response_code.is_(None), t.c.response_code == "00"),
    )
    row = session.execute(
        select(
            func.coalesce(func.sum(debit_sign * func.coalesce(t.c.amount_fen, 0)), 0),
            func.coalesce(func.sum(debit_sign), 0),
            func.coalesce(func.sum(case((refunded, func.coalesce(t.c.amount_fen, 0)), else_=0)), 0),
            func.coalesce(func.sum(case((refunded, 1), else_=0)), 0),
        ).where(mine)
    ).one()
    u = acquirer_uploads
    uploads = session.execute(
        select(func.count(), func.coalesce(func.sum(u.c.amount_fen), 0)).where(
            u.c.terminal_id == terminal_id, u.c.batch == batch
        )
    ).one()
    return BatchTotals(
        debit_fen=int(row[0]) + int(uploads[1]),
        debit_count=int(row[1]) + int(uploads[0]),
        credit_fen=int(row[2]),
        credit_count=int(row[3]),
    )


class SqlBatchTotals:
    """``citycard.acquirer.ports.BatchTotalsSource`` on one session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def totals(self, terminal_id: str, batch: int) -> BatchTotals:
        return terminal_batch_totals(self.session, terminal_id, batch)

    def settled(self, terminal_id: str | None = None, *, since_ns: int | None = None) -> dict[str, int]:
        s = acquirer_settled_batches
        query = select(s.c.terminal_id, s.c.batch)
        if terminal_id is not None:
            query = query.where(s.c.terminal_id == terminal_id)
        if since_ns is not None:
            query = query.where(s.c.settled_ns >= since_ns)
        return {str(row[0]): int(row[1]) for row in self.session.execute(query)}

    def record_settled(self, terminal_id: str, batch: int, now_ns: int) -> int:
        s = acquirer_settled_batches
        done = self.session.execute(
            update(s)
            .where(s.c.terminal_id == terminal_id, s.c.batch < batch)
            .values(batch=batch, settled_ns=now_ns)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            last = self.session.execute(select(s.c.batch).where(s.c.terminal_id == terminal_id)).scalar()
            if last is not None:
                return int(last)  # a later (or the same) batch settled already
            self.session.execute(insert(s).values(terminal_id=terminal_id, batch=batch, settled_ns=now_ns))
        return batch
