"""EC inquiries (JR/T 0025.13): balance and limits by GET DATA, transaction and load logs read from the
SFIs in 9F4D / DF4D and split by the formats 9F4F / DF4F."""

from __future__ import annotations

from collections.abc import Generator

from citycard.codec import commands
from citycard.codec.dol import parse_dol, split_dol_data

from .base import MAX_LOG_RECORDS, CardError, KernelBase, TransactionKind, _bcd_to_int
from .events import Answer, Event, LogEntry, Outcome, OutcomeKind

__all__ = ["InquirySteps"]


class InquirySteps(KernelBase):
    # -- EC inquiries (JR/T 0025.13) ----------------------------------------------------------------------

    def _ec_balance(self) -> Generator[Event, Answer, Outcome]:
        balance = yield from self._get_data("9F79")
        if balance is None or len(balance) != 6:
            raise CardError("the application has no EC balance (GET DATA 9F79)")
        self.card["9F79"] = balance
        for tag in ("9F77", "9F78", "9F6D"):
            value = yield from self._get_data(tag)
            if value is not None:
                self.card[tag] = value
        return self._finish(OutcomeKind.COMPLETED, "EC balance", ec_balance_fen=_bcd_to_int(balance))

    def _read_log(self, fci: dict[str, bytes]) -> Generator[Event, Answer, tuple[LogEntry, ...]]:
        load = self.txn.kind is TransactionKind.LOAD_LOG
        entry_tag, format_tag = ("DF4D", "DF4F") if load else ("9F4D", "9F4F")
        entry = fci.get(entry_tag)
        if entry is None or len(entry) != 2 or not 11 <= entry[0] <= 30:
            raise CardError(f"no log entry ({entry_tag}) in the FCI")
        sfi, count = entry[0], min(entry[1], MAX_LOG_RECORDS)
        if self.txn.log_records:
            count = min(count, self.txn.log_records)
        fmt = yield from self._get_data(format_tag)
        if fmt is None:
            raise CardError(f"log format {format_tag} unavailable")
        dol = parse_dol(fmt)
        entries: list[LogEntry] = []
        for record in range(1, count + 1):
            data, sw = yield from self._apdu(commands.read_record(sfi, record), f"READ RECORD log #{record}")
            if sw != 0x9000:
                break
            fields: list[tuple[str, bytes]] = []
            if load:  # JR/T 0025.13: P1P2 of the PUT DATA, balance before, balance after, then the format
                if len(data) < 14:
                    raise CardError(f"load-log record {record} too short")
                fields = [("P1P2", data[:2]), ("BEFORE", data[2:8]), ("AFTER", data[8:14])]
                data = data[14:]
            fields += list(split_dol_data(dol, data).items())
            entries.append(LogEntry(tuple(fields)))
        return tuple(entries)
