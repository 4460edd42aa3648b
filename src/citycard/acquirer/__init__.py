"""The acquirer (the POS centre terminals connect to): its records, RRNs, store-and-forward and uploads.

Pure domain (DESIGN.md §3 ring 2): commands and handlers over the ports of :mod:`.ports`, no asyncio and no
storage adapter. The asyncio front end is :mod:`citycard.hosts.acquirer`; the SQL adapter is
``citycard.db.acquirer_repositories``. What is kept and why: ``docs/network.md`` ("The acquirer").

- :mod:`.model`: the transaction record, the store-and-forward (SAF) entry, the offline upload, the key
  of a terminal's transaction (terminal 41, batch 60.2, STAN 11), RRNs (37).
- :mod:`.commands`: the commands of the handlers.
- :mod:`.handlers`: ``handler(command, uow, clock)`` functions: begin a transaction (assign its RRN once),
  record its answer, give it up (queue its reversal), a terminal's reversal, an advice, an offline upload,
  the SAF queue's delivery and retry with backoff.
- :mod:`.ports`: the repositories and unit of work the handlers are given.
- :mod:`.views`: what the operator reads and does (``citycard acquirer queue``, ``retry``): the SAF queue.
"""

from __future__ import annotations

from .commands import (
    BeginTransaction,
    GiveUp,
    QueueAdvice,
    RecordAnswer,
    ReverseAtTerminal,
    SafAnswered,
    SafFailed,
    StoreUpload,
)
from .handlers import (
    Begun,
    ReversalOutcome,
    begin_checked,
    begin_many,
    begin_transaction,
    due_entries,
    give_up,
    queue_advice,
    record_answer,
    record_answers,
    record_saf_results,
    reverse_at_terminal,
    store_upload,
)
from .model import (
    IN_BATCH_TOTALS,
    MAX_RRN,
    AcquirerTransaction,
    AdviceRefusal,
    FollowUps,
    OfflineUpload,
    SafEntry,
    SafKind,
    SafPolicy,
    SafStatus,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    format_rrn,
    parse_original,
    refund_refusal,
)
from .ports import MAX_MOVES, AcquirerUnitOfWork, Clock, OfflineUploads, Rrns, SafQueue, Transactions

__all__ = [
    "IN_BATCH_TOTALS",
    "MAX_MOVES",
    "MAX_RRN",
    "AcquirerTransaction",
    "AcquirerUnitOfWork",
    "AdviceRefusal",
    "BeginTransaction",
    "Begun",
    "Clock",
    "FollowUps",
    "GiveUp",
    "OfflineUpload",
    "OfflineUploads",
    "QueueAdvice",
    "RecordAnswer",
    "ReversalOutcome",
    "ReverseAtTerminal",
    "Rrns",
    "SafAnswered",
    "SafEntry",
    "SafFailed",
    "SafKind",
    "SafPolicy",
    "SafQueue",
    "SafStatus",
    "StoreUpload",
    "TransactionKey",
    "TransactionKind",
    "TransactionStatus",
    "Transactions",
    "begin_checked",
    "begin_many",
    "begin_transaction",
    "due_entries",
    "format_rrn",
    "give_up",
    "parse_original",
    "queue_advice",
    "record_answer",
    "record_answers",
    "record_saf_results",
    "refund_refusal",
    "reverse_at_terminal",
    "store_upload",
]
