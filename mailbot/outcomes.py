"""The outcome catalogue: every outcome a request can have, and what each one means.

One entry per outcome says whether the patron gets a reply, whether that reply may show a
code, and whether it counts as a refusal (a column of the monthly report); what staff call
it is the message catalogue's ``outcome_<id>`` (mailbot/locale). Every list of outcomes
elsewhere (templates, deciding, the report, the dashboard's filters and labels) is derived
from here, so a new outcome is one line in this file, its label in each catalogue and its
templates.

The order of ``Outcome`` is the order the checks are asked in (the report's columns), then
the outcomes no patron hears about.

Request and outbox states are enums too; their values are what the database stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class _Meaning:
    replies: bool  # the patron gets a reply (a template per language)
    code: bool  # the reply may show a code
    refusal: bool  # counted as a refusal in the report


_REFUSAL = {"replies": True, "code": False, "refusal": True}
_SILENT = {"replies": False, "code": False, "refusal": False}


class Outcome(StrEnum):
    ISSUED = "issued"
    SERVICE_NOT_OFFERED = "service_not_offered"
    TOO_EARLY = "too_early"
    NO_CARD = "no_card"
    AMBIGUOUS_CARD = "ambiguous_card"
    UNKNOWN_CARD = "unknown_card"
    NAME_MISMATCH = "name_mismatch"
    SENDER_MISMATCH = "sender_mismatch"
    ALREADY_RECEIVED = "already_received"
    ADDRESS_LIMIT = "address_limit"
    INACTIVE_ACCOUNT = "inactive_account"
    UNCONFIRMED_ACCOUNT = "unconfirmed_account"
    AGE_RESTRICTED = "age_restricted"
    DEBT = "debt"
    OVERDUE = "overdue"
    DATA_NOT_UPDATED = "data_not_updated"
    NO_LOANS_THIS_YEAR = "no_loans_this_year"
    BLOCKED = "blocked"
    POOL_NOT_READY = "pool_not_ready"
    POOL_EXHAUSTED = "pool_exhausted"
    # Too many replies to one sender today: counted as a refusal, but answered with silence.
    RATE_LIMITED = "rate_limited"
    ELIGIBILITY_TEST = "eligibility_test"
    IGNORED_LOOP = "ignored_loop"
    IGNORED_SENDER = "ignored_sender"
    NOT_A_REQUEST = "not_a_request"

    @property
    def replies(self) -> bool:
        """The patron gets a reply rendered from this outcome's templates."""
        return _MEANINGS[self].replies

    @property
    def may_carry_code(self) -> bool:
        """Only these replies' templates may show a code."""
        return _MEANINGS[self].code

    @property
    def refusal(self) -> bool:
        """A request refused (the report counts it, by this outcome)."""
        return _MEANINGS[self].refusal

    def label(self, lang: str) -> str:
        """What staff call it, ``pl`` (the default) or ``en``: the message catalogue's
        ``outcome_<id>`` (mailbot/locale)."""
        from mailbot import translations

        return translations.text(lang, f"outcome_{self}")


_MEANINGS: dict[Outcome, _Meaning] = {
    Outcome.ISSUED: _Meaning(True, True, False),
    Outcome.SERVICE_NOT_OFFERED: _Meaning(**_REFUSAL),
    Outcome.TOO_EARLY: _Meaning(**_REFUSAL),
    Outcome.NO_CARD: _Meaning(**_REFUSAL),
    Outcome.AMBIGUOUS_CARD: _Meaning(**_REFUSAL),
    Outcome.UNKNOWN_CARD: _Meaning(**_REFUSAL),
    Outcome.NAME_MISMATCH: _Meaning(**_REFUSAL),
    Outcome.SENDER_MISMATCH: _Meaning(**_REFUSAL),
    # The reply repeats the code received earlier this month; still a refusal of a new one.
    Outcome.ALREADY_RECEIVED: _Meaning(True, True, True),
    Outcome.ADDRESS_LIMIT: _Meaning(**_REFUSAL),
    Outcome.INACTIVE_ACCOUNT: _Meaning(**_REFUSAL),
    # Created online, never confirmed at the desk (where the library requires it).
    Outcome.UNCONFIRMED_ACCOUNT: _Meaning(**_REFUSAL),
    Outcome.AGE_RESTRICTED: _Meaning(**_REFUSAL),
    Outcome.DEBT: _Meaning(**_REFUSAL),
    Outcome.OVERDUE: _Meaning(**_REFUSAL),
    Outcome.DATA_NOT_UPDATED: _Meaning(**_REFUSAL),
    Outcome.NO_LOANS_THIS_YEAR: _Meaning(**_REFUSAL),
    Outcome.BLOCKED: _Meaning(**_REFUSAL),
    # The window opened and no code of the service was imported for the month (staff are
    # told); a pool that ran out is pool_exhausted.
    Outcome.POOL_NOT_READY: _Meaning(**_REFUSAL),
    Outcome.POOL_EXHAUSTED: _Meaning(**_REFUSAL),
    Outcome.RATE_LIMITED: _Meaning(False, False, True),
    Outcome.ELIGIBILITY_TEST: _Meaning(True, False, False),
    Outcome.IGNORED_LOOP: _Meaning(**_SILENT),
    Outcome.IGNORED_SENDER: _Meaning(**_SILENT),
    Outcome.NOT_A_REQUEST: _Meaning(**_SILENT),
}

# Derived lists, in catalogue order.
REPLY_OUTCOMES: tuple[Outcome, ...] = tuple(o for o in Outcome if o.replies)
NO_REPLY_OUTCOMES: tuple[Outcome, ...] = tuple(o for o in Outcome if not o.replies)
CODE_OUTCOMES: frozenset[Outcome] = frozenset(o for o in Outcome if o.may_carry_code)
REFUSALS: tuple[Outcome, ...] = tuple(o for o in Outcome if o.refusal)
# Decided for good: staff cannot "issue anyway" over a code given, a test's verdict or a
# mail that was never a patron's.
NOT_OVERRIDABLE: frozenset[Outcome] = frozenset(
    {Outcome.ISSUED, Outcome.ELIGIBILITY_TEST, Outcome.IGNORED_LOOP})


class Notice(StrEnum):
    """Mail that answers no request: the activation reminder (SPEC 2.11)."""

    REMINDER = "reminder"


class RequestState(StrEnum):
    """new -> decided | manual | ignored; error = set aside for staff after a crash on it."""

    NEW = "new"
    DECIDED = "decided"
    MANUAL = "manual"
    IGNORED = "ignored"
    ERROR = "error"


# Requests the bot is done with (not waiting, not set aside for staff after a crash).
SETTLED: tuple[RequestState, ...] = (RequestState.DECIDED, RequestState.MANUAL,
                                     RequestState.IGNORED)


class OutboxState(StrEnum):
    """pending -> sent | failed (a permanent refusal, or staff gave up on it)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
