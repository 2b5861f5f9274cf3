"""What a rule sees and what it says.

A rule is a small pure object: ``name`` (its outcome, which is also its template name; the
rate limit is the one gate named for what it checks), ``description`` and
``check(facts) -> Hit | None``. It decides; it never sends or writes. A chain's last word
(``Verdict``: the pool, a test's verdict, the desk's pool) concludes from the facts and
the refusal, if any (mailbot.rules.chains).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from mailbot.config import LibrarySettings
from mailbot.services import SHIPPED_CATALOGUE, Catalogue
from mailbot.quotas import Parts

# A verdict, not an outcome: every rule passed (a TEST mail's, the desk's).
ELIGIBLE = "eligible"


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
    # The latest checkout (a renewal is not a loan): the active-reader rule counts from it.
    last_loan_on: date | None
    birth_date: date | None = None
    # The account was confirmed at the desk (False: created online and never confirmed;
    # None: the source does not say). Only False is refused, and only where the library
    # requires confirmed accounts (mailbot.rules.reader.UnconfirmedAccount).
    confirmed: bool | None = None


@dataclass(frozen=True)
class IssuedThisMonth:
    """The code a card already received in the request's month (any service)."""

    service: str
    code: str
    email: str | None
    issued_at: datetime


class FreeCode(Protocol):
    """A code of the pool that may be handed out (a row or an ORM object)."""

    id: int
    code: str
    pool_id: int
    service: str


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
    # Months (YYYY-MM) in the penalty period whose code went unactivated (what the
    # penalty counts: mailbot.penalty), and those codes' (month, service), oldest first
    # (what the reply names: never the code itself).
    unactivated_months: tuple[str, ...] = ()
    unactivated_codes: tuple[tuple[str, str], ...] = ()
    # Codes already sent to this sender address this month, over all cards.
    codes_to_address: int = 0
    # The counters, as they stand when this request is decided (a batch keeps them
    # current as it goes): replies already written to this sender today (of this kind);
    # the pool's next free code for the request's service and month; the pool's codes not
    # issued yet and those owed to e-mail requests waiting ahead (the desk).
    decided_at: datetime | None = None
    replies_today: int = 0
    next_code: FreeCode | None = None
    codes_left: int = 0
    owed_to_email: int = 0
    # Was any code of the request's service imported for its month (issued, expired or
    # free; a pool withdrawn whole does not count)? No: pool_not_ready, not pool_exhausted.
    pool_imported: bool = True
    # The library's other services that still have a free code this month which this card
    # may take: asked only once the request's own pool is empty (pool_exhausted names them).
    other_services_left: tuple[str, ...] = ()
    # The services the config knows (names, subjects: Settings.catalogue).
    catalogue: Catalogue = SHIPPED_CATALOGUE
    # The pool's quotas while they hold (mailbot.quotas; None: the library keeps none, or
    # they were released): what is left of each part, the counters kept current like the
    # others. ``first_time``: the card was never issued a code by this library, so it may
    # draw from the first-time part.
    quota: Parts | None = None
    first_time: bool = False

    @property
    def local_received(self) -> datetime:
        return self.received_at.astimezone(self.tz)


@dataclass(frozen=True)
class Hit:
    """A rule decided: its outcome, a note for staff and values for the reply template.

    ``result`` is what the trail says of it: a refusal, or (for a chain's last word) the
    code issued or a test's verdict. ``note`` names the note's text in the dashboard's
    catalogue (``note_<note>``, Polish and English) and ``args`` are its values, JSON-able
    (str, int; dates as ISO strings, money as a string), so the trail stored with the
    request is read in the staff's language, not in the language the rule was written in."""

    outcome: str
    note: str
    context: dict[str, Any] = field(default_factory=dict)
    result: str = "refused"
    args: dict[str, Any] = field(default_factory=dict)


class Rule(Protocol):
    name: str
    description: str

    def check(self, facts: Facts) -> Hit | None: ...


class Verdict(Protocol):
    """A chain's last word, asked once its rules are through.

    ``conclude`` gets the refusal (None: every rule passed) and returns the outcome, or
    None to let the refusal stand. ``recorded``: its conclusion is a line of the trail."""

    name: str
    description: str
    recorded: bool

    def conclude(self, facts: Facts, refusal: Hit | None) -> Hit | None: ...
