"""What a rule sees and what it says.

A rule is a small pure object: ``name`` (its outcome, which is also its template name),
``description`` and ``check(facts) -> Hit | None``. It decides; it never sends or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from mailbot.config import LibrarySettings


@dataclass(frozen=True)
class ReaderFacts:
    card_number: str
    first_name: str
    last_name: str
    email: str | None
    valid_until: date | None
    balance_due: Decimal
    overdue_items: int
    data_updated_on: date | None
    last_loan_on: date | None
    birth_date: date | None = None


@dataclass(frozen=True)
class IssuedThisMonth:
    """The code a card already received in the request's month (any service)."""

    service: str
    code: str
    email: str | None
    issued_at: datetime


@dataclass(frozen=True)
class Facts:
    library: LibrarySettings
    tz: ZoneInfo
    # The month whose pool is being handed out (year, month): the month of the decision.
    # Mail received before that month's window is too early, even if it arrived in the
    # month before: its pool has expired, and the patron is told to write again.
    month: tuple[int, int]
    service: str
    received_at: datetime
    date_header: datetime | None
    from_address: str | None
    card_candidates: tuple[str, ...]
    card: str | None
    # The text the name is looked for in (the part of the mail the card came from).
    name_text: str
    reader: ReaderFacts | None = None
    issued_this_month: IssuedThisMonth | None = None
    # Months (YYYY-MM) in the penalty period whose code went unactivated.
    unactivated_months: tuple[str, ...] = ()
    # Codes already sent to this sender address this month, over all cards.
    codes_to_address: int = 0

    @property
    def local_received(self) -> datetime:
        return self.received_at.astimezone(self.tz)


@dataclass(frozen=True)
class Hit:
    """A rule refused: its outcome, a note for staff and values for the reply template."""

    outcome: str
    note: str
    context: dict[str, Any] = field(default_factory=dict)


class Rule(Protocol):
    name: str
    description: str

    def check(self, facts: Facts) -> Hit | None: ...
