"""The programme's captured purchases: one query over the platform's tables, for the dashboard's
"transactions and amounts per day by industry and region" (``citycard.web.figures``).

A purchase is **captured** when it reached the platform, whether or not clearing has paid it yet:

- ``online``: an online purchase the issuer approved and that was not voided or reversed
  (``issuer_authorizations``: kind ``purchase``, response ``00``, ``reversed_by`` empty), at the time of the
  authorization;
- ``uploaded``: an offline EC purchase or a bus fare a terminal uploaded to the acquirer (one row of
  ``acquirer_uploads`` per ``TID/batch/stan``, the acquirer keeps a record once), at its receipt, with the
  amount of its field 4;
- ``journal``: an offline record that clearing cleared from a terminal's journal export and that no upload
  brought (``clearing_items`` of source ``offline`` and sign +1 whose presentment has no upload), at its
  staging. A record both uploaded and cleared is counted once, as its upload.

EC loads, refunds, voids and clearing's chargebacks are not purchases and are not here. Records that
clearing later holds as exceptions are counted (they were captured; the exception queue is its own page).

A bank sees the purchases made with its own cards (the issuing side): online ones by the card's PAN, uploads
by the BIN of the masked PAN the acquirer keeps (``issuer_bin_ranges``), journal-only items by the item's
issuing bank.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    String,
    and_,
    cast,
    exists,
    func,
    literal,
    select,
    union_all,
)

from .acquirer_tables import acquirer_uploads
from .clearing_tables import clearing_items, clearing_presentments
from .issuer_tables import issuer_authorizations, issuer_bin_ranges, issuer_cards

__all__ = ["captured_purchases"]


def captured_purchases(
    *, since_ns: int | None = None, bank: str | None = None
) -> CompoundSelect[tuple[str, int, int, str]]:
    """``SELECT source, at_ns, amount_fen, merchant_id`` of every captured purchase (module docstring) at or
    after ``since_ns``, of ``bank``'s cards when given; use it as a subquery."""
    a, u, i, p, c, b = (
        issuer_authorizations.c,
        acquirer_uploads.c,
        clearing_items.c,
        clearing_presentments.c,
        issuer_cards.c,
        issuer_bin_ranges.c,
    )
    online_where = [a.kind == "purchase", a.response_code == "00", a.reversed_by.is_(None)]
    uploaded_where = []
    journal_where = [i.source == "offline", i.sign == 1]
    if since_ns is not None:
        online_where.append(a.created_ns >= since_ns)
        uploaded_where.append(u.received_ns >= since_ns)
        journal_where.append(p.received_ns >= since_ns)
    if bank is not None:
        online_where.append(a.pan.in_(select(c.pan).where(c.bank_code == bank)))
        uploaded_where.append(
            exists().where(b.bank_code == bank, func.substr(u.pan_masked, 1, func.length(b.bin)) == b.bin)
        )
        journal_where.append(i.issuer_bank == bank)
    online = select(
        cast(literal("online"), String).label("source"),
        a.created_ns.label("at_ns"),
        a.amount_fen.label("amount_fen"),
        a.merchant_id.label("merchant_id"),
    ).where(*online_where)
    uploaded = select(
        cast(literal("uploaded"), String),
        u.received_ns,
        func.coalesce(u.amount_fen, cast(literal(0), BigInteger)),
        u.merchant_id,
    ).where(*uploaded_where)
    no_upload = ~exists().where(
        and_(
            acquirer_uploads.c.terminal_id == p.terminal_id,
            acquirer_uploads.c.batch == p.batch,
            acquirer_uploads.c.stan == p.stan,
        )
    )
    journal = (
        select(cast(literal("journal"), String), p.received_ns, i.amount_fen, i.merchant_id)
        .select_from(clearing_items.join(clearing_presentments, p.ref == i.source_ref))
        .where(*journal_where, no_upload)
    )
    return union_all(online, uploaded, journal)
