"""What the public services need of storage (``citycard.db.public_repositories`` implements it)."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from .model import CardApplication, CitizenRecords, InquiryApproval

__all__ = ["CardApplications", "Inquiries", "PublicUnitOfWork", "Records"]


class CardApplications(Protocol):
    def card_exists(self, pan: str, *, for_update: bool = False) -> bool: ...

    def card_registered(self, pan: str) -> bool:
        """Whether the card has a registered holder (an anonymous card keeps no application)."""
        ...

    def get(self, pan: str, app_code: str, *, for_update: bool = False) -> CardApplication | None: ...

    def of_card(self, pan: str) -> list[CardApplication]: ...

    def put(self, app: CardApplication) -> None: ...


class Records(Protocol):
    def get(self, citizen_key: str) -> CitizenRecords | None: ...

    def add(self, records: CitizenRecords, seeded_ns: int) -> bool:
        """False when the citizen has records already (kept as they are)."""
        ...

    def citizens_without_records(self, limit: int) -> list[str]:
        """Keys of registered cardholders the back end has no records of, at most ``limit``."""
        ...


class Inquiries(Protocol):
    def approval(self, terminal_id: str, rrn: str) -> InquiryApproval | None:
        """The issuer's record of the balance inquiry answered with ``rrn`` to ``terminal_id``."""
        ...

    def mark_used(self, request_id: str, terminal_id: str, citizen_key: str, now_ns: int) -> bool:
        """Record the inquiry served on ``request_id``; False when one was served on it already."""
        ...


class PublicUnitOfWork(Protocol):
    @property
    def apps(self) -> CardApplications: ...
    @property
    def records(self) -> Records: ...
    @property
    def inquiries(self) -> Inquiries: ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def commit(self) -> None: ...
