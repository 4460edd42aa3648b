"""The clearing calendar: business day ``D`` of a bank is the window (cut-over of D-1, cut-over of D], in
Beijing time (UTC+8, no daylight saving).

The cut-over is configured per bank (``CITYCARD_CLEARING_CUTOVER``, e.g. ``ICBC=23:00,BOC=22:30``); the bank
whose cut-over decides a record's clearing date is the **acquiring bank** (the merchant's bank in the
registry, the one that presents the record), applied to the time the record reached the platform: the
issuer's authorization time for an online transaction, the acquirer's receipt of the 0320 (or the import of
a journal export) for an offline one. A cut-over of ``00:00`` closes day D at midnight at its end (D+1 00:00);
any other ``hh:mm`` closes it at ``hh:mm`` on D itself, so what comes after belongs to D+1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone

__all__ = ["BEIJING", "Cutovers", "business_window", "clearing_date_of", "parse_cutovers"]

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
_MIDNIGHT = time(0, 0)
_NS = 10**9
MAX_BANKS = 256


@dataclass(frozen=True, slots=True)
class Cutovers:
    """Each bank's cut-over (Beijing wall-clock time); ``default`` for a bank not named."""

    by_bank: Mapping[str, time] = field(default_factory=dict)
    default: time = _MIDNIGHT

    def of(self, bank: str | None) -> time:
        return self.by_bank.get(bank or "", self.default)


def parse_cutovers(text: str) -> Cutovers:
    """``BANK=hh:mm[,BANK=hh:mm ...]`` (``*=hh:mm`` sets the default); ``ValueError`` saying what is wrong."""
    by_bank: dict[str, time] = {}
    default = _MIDNIGHT
    for part in filter(None, (p.strip() for p in text.split(","))):
        bank, sep, hhmm = part.partition("=")
        hours, colon, minutes = hhmm.strip().partition(":")
        ok = sep and colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
        if not ok or not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
            raise ValueError(f"cut-over {part!r}: BANK=hh:mm, such as ICBC=23:00")
        bank = bank.strip().upper()
        if not bank or len(bank) > 8:
            raise ValueError(f"cut-over {part!r}: a bank code of 1 to 8 characters")
        if bank == "*":
            default = time(int(hours), int(minutes))
        else:
            by_bank[bank] = time(int(hours), int(minutes))
    if len(by_bank) > MAX_BANKS:
        raise ValueError(f"at most {MAX_BANKS} cut-overs")
    return Cutovers(by_bank, default)


def _cut_ns(day: date, cutover: time) -> int:
    """The instant business day ``day`` closes (ns since the epoch)."""
    closing_day = day + timedelta(days=1) if cutover == _MIDNIGHT else day
    moment = datetime.combine(closing_day, cutover, BEIJING)
    return int(moment.timestamp()) * _NS


def business_window(day: date, cutover: time) -> tuple[int, int]:
    """(start, end) in ns: a record at ``t`` belongs to ``day`` when ``start < t <= end``."""
    return _cut_ns(day - timedelta(days=1), cutover), _cut_ns(day, cutover)


def clearing_date_of(t_ns: int, cutover: time) -> date:
    """The business day a record at ``t_ns`` belongs to under ``cutover``."""
    local = datetime.fromtimestamp(t_ns // _NS, UTC).astimezone(BEIJING).date()
    for day in (local - timedelta(days=1), local, local + timedelta(days=1)):
        start, end = business_window(day, cutover)
        if start < t_ns <= end:
            return day
    raise AssertionError("a moment falls in one of three consecutive windows")
