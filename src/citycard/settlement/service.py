"""``settle_day``: a cleared day settled in one unit of work (all or nothing), then its files written.

1. In one unit of work: the day's items are folded once (:class:`~citycard.settlement.model.DayTotals`),
   the accounts the postings need are made, the postings and the payouts go to the ledger (ids derived from
   the date: a rerun is ``exists``), the day's record is kept and ``clearing_runs.status`` becomes
   'settled'; then commit. A crash before the commit (kill -9) leaves none of it; after it, all of it.
2. The files (:mod:`citycard.settlement.files`) are then written from the kept record and the items,
   streamed (one query, one pass), and published together by the sink (``citycard.durable.StagedFolder``).
   They are a function of the database alone (no clock in them), so a rerun of a settled day — which posts
   nothing — writes them again byte for byte; a crash between the commit and the files (or in the middle
   of writing them: nothing is published) is repaired by that rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from citycard.ledger.model import MAX_BATCH, CreateTransferResult, Transfer

from .fees import FeeSchedule, default_schedule, parse_schedule, schedule_toml
from .files import write_day_files
from .model import (
    Account,
    DayTotals,
    NotCleared,
    Payout,
    SettlementRefused,
    clearing_date,
    payout_date,
    plan_payouts,
    plan_postings,
    required_accounts,
)
from .ports import BusinessWindow, DayRecord, FileSink, MerchantRow, SettlementUnitOfWork, TotalsRow

__all__ = ["SettleResult", "settle_day", "write_files"]

_DONE = (CreateTransferResult.OK, CreateTransferResult.EXISTS)

Progress = Callable[[int], None]


class SettleResult:
    """What :func:`settle_day` did: the record, whether it posted now (False: settled before), the files."""

    def __init__(self, record: DayRecord, posted: bool, files: Sequence[str]) -> None:
        self.record = record
        self.posted = posted
        self.files = list(files)


def _post(uow: SettlementUnitOfWork, transfers: Sequence[Transfer]) -> None:
    for start in range(0, len(transfers), MAX_BATCH):
        batch = transfers[start : start + MAX_BATCH]
        for transfer, result in zip(batch, uow.ledger.create_transfers(batch), strict=True):
            if result not in _DONE:
                raise SettlementRefused(
                    f"the ledger refused settlement transfer {transfer.id} ({transfer.amount_fen} fen from "
                    f"account {transfer.debit_account_id} to {transfer.credit_account_id}): {result.value}; "
                    "nothing of the day was kept"
                )


def _record(
    day: str, schedule: FeeSchedule, totals: DayTotals, payouts: list[Payout], count: int, now_ns: int
) -> DayRecord:
    paid = {(p.bank, p.merchant_id): p for p in payouts}
    merchants = tuple(
        MerchantRow(
            bank,
            merchant,
            m.industry,
            m.item_count,
            m.gross_fen,
            m.discount_fen,
            m.issuer_fee_fen,
            m.network_fee_fen,
            m.acquirer_fee_fen,
            paid[bank, merchant].balance_fen,
            paid[bank, merchant].payout_fen,
            payout_date(day),
        )
        for (bank, merchant), m in sorted(totals.merchants.items())
    )
    industries = tuple(
        TotalsRow(name, t.item_count, t.gross_fen, t.discount_fen)
        for name, t in sorted(totals.industries.items())
    )
    kinds = tuple(
        TotalsRow(f"{source}/{kind}", k.count, k.amount_fen, 0)
        for (source, kind), k in sorted(totals.kinds.items())
    )
    return DayRecord(
        day,
        schedule_toml(schedule),
        totals.item_count,
        tuple(totals.positions()),
        merchants,
        industries,
        kinds,
        count,
        now_ns,
    )


def _settle(
    uow: SettlementUnitOfWork, day: str, schedule: FeeSchedule, now_ns: int, progress: Progress | None
) -> DayRecord:
    totals = DayTotals(schedule)
    for n, item in enumerate(uow.settlement.items(day), 1):
        totals.add(item)
        if progress is not None and n % 10_000 == 0:
            progress(n)
    ids = uow.settlement.ensure_accounts(required_accounts(totals))
    network = uow.settlement.network_settlement_accounts(sorted(totals.issuers))
    postings = plan_postings(day, totals, ids, network)
    _post(uow, postings)
    payables = sorted(v for k, v in ids.items() if k.code == Account.MERCHANT_PAYABLE)
    payouts = plan_payouts(day, totals, ids, uow.settlement.payable_balances(payables))
    payout_transfers = [p.transfer for p in payouts if p.transfer is not None]
    _post(uow, payout_transfers)
    record = _record(day, schedule, totals, payouts, len(postings) + len(payout_transfers), now_ns)
    uow.settlement.save(record, payouts)
    return record


def settle_day(
    make_uow: Callable[[], SettlementUnitOfWork],
    day: str,
    *,
    clock: Callable[[], int],
    schedule: FeeSchedule | None = None,
    sink: FileSink | None = None,
    progress: Progress | None = None,
    window: BusinessWindow | None = None,
    files_progress: Progress | None = None,
) -> SettleResult:
    """Settle the cleared day ``day`` (``YYYYMMDD`` or ``YYYY-MM-DD``) and write its files to ``sink``.

    A day already settled posts nothing and its files are written again (the same bytes: the fee schedule
    is the one the day was settled with, kept in its record). :class:`NotCleared` when clearing has not
    finished the day; :class:`SettlementRefused` when the ledger refuses a posting (nothing kept).
    ``window`` places what the acquirer captured in each bank's business day (the reconciliation);
    ``progress`` and ``files_progress`` hear the count of items folded, then written.
    """
    day = clearing_date(day)
    with make_uow() as uow:
        status = uow.settlement.clearing_status(day)
        if status is None:
            raise NotCleared(
                f"{day[:4]}-{day[4:6]}-{day[6:]} has not been cleared: run 'citycard clearing run' first"
            )
        if status not in ("cleared", "settled"):
            raise NotCleared(f"{day[:4]}-{day[4:6]}-{day[6:]}: clearing is {status}, not finished")
        posted = status == "cleared"
        if posted:
            record = _settle(uow, day, schedule or default_schedule(), clock(), progress)
            uow.commit()
        else:
            loaded = uow.settlement.load(day)
            assert loaded is not None, f"{day} is settled but has no settlement record"
            record = loaded
    files = []
    if sink is not None:
        files = write_files(make_uow, record, sink, window=window, progress=files_progress)
    return SettleResult(record, posted, files)


def write_files(
    make_uow: Callable[[], SettlementUnitOfWork],
    record: DayRecord,
    sink: FileSink,
    *,
    bank: str | None = None,
    merchant: str | None = None,
    window: BusinessWindow | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """Write the settled day's files (all, or those of one bank or merchant) to ``sink``; their names."""
    with make_uow() as uow:
        captured = (
            uow.settlement.captured(record.day, window)
            if bank is None and merchant is None
            else ([], iter(()))
        )
        return write_day_files(
            sink,
            record,
            parse_schedule(record.schedule_toml),
            uow.settlement.items(record.day, by_merchant=True),
            captured,
            bank=bank,
            merchant=merchant,
            progress=progress,
        )
