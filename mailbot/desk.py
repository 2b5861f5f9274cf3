"""The walk-in desk: the verdict the bot would give a patron standing at the counter, and a
code from the same pool — never one owed to an e-mail request that arrived earlier.

Pure decisions come from the desk chain (mailbot.rules.chains.DESK): the e-mail rules but
what cannot apply at a counter (the card search, the sender address, the per-address cap),
then the desk's pool, which leaves alone the codes owed to e-mail requests waiting. The
window still applies: a month's codes are not handed out before it opens.

The staff may overrule what the reader data says ("Wydaj mimo to", with a reason): the
patron in front of them just paid the fine, returned the books, renewed the card, or shows
a card the local data does not know yet. ``override_verdict`` says whether they may and
which refusals they overrule; the code still comes from the desk's pool on the same terms.
For a patron who already has this month's code, the desk shows that code to reprint
(``Received``), never a second one.

Where the library keeps quotas (mailbot.quotas), the desk draws from the desk's part of
the pool, then from what of the general part no earlier e-mail is owed; never from the
first-time patrons' part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailbot import quotas
from mailbot.clock import month_key, month_of
from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import Code, LedgerEntry, Request
from mailbot.decide.batch import ReaderSource, pools_imported
from mailbot.decide.card_history import issued_this_month_of, unactivated_months_of
from mailbot.decide.policies import lock_library
from mailbot.ledger import Channel, InSession, codes_left, pool_use
from mailbot.outcomes import Outcome, RequestState
from mailbot.readers.local import LocalReaders
from mailbot.rules.base import ELIGIBLE, Facts
from mailbot.rules.chains import DESK, run
from mailbot.services import SHIPPED_CATALOGUE, Catalogue

# Refusals the staff at the counter may overrule, with a reason: what the (possibly a day
# old) reader data says, and the card and name checks, which the staff can do better by
# looking at the card (an account not confirmed: the staff see the patron's ID). Never
# the month's window (its codes are not handed out before it opens), a code already
# received this month (the desk reprints that one), the age limit (a term of the
# licence, not of the library's data), nor an empty pool or a service the library does
# not offer.
OVERRULABLE: frozenset[str] = frozenset({
    Outcome.UNKNOWN_CARD, Outcome.NAME_MISMATCH, Outcome.INACTIVE_ACCOUNT,
    Outcome.UNCONFIRMED_ACCOUNT, Outcome.DEBT, Outcome.OVERDUE, Outcome.DATA_NOT_UPDATED,
    Outcome.NO_LOANS_THIS_YEAR, Outcome.BLOCKED})

# The rules that read the reader's record: for a card not on file (overruled by staff who
# see it) they have nothing to ask.
_READS_READER: frozenset[str] = frozenset({
    Outcome.NAME_MISMATCH, Outcome.INACTIVE_ACCOUNT, Outcome.UNCONFIRMED_ACCOUNT,
    Outcome.AGE_RESTRICTED, Outcome.DEBT, Outcome.OVERDUE, Outcome.DATA_NOT_UPDATED,
    Outcome.NO_LOANS_THIS_YEAR})


@dataclass(frozen=True)
class OverrideVerdict:
    """What "issue anyway" would do: ``allowed`` (the outcome is ELIGIBLE), or the outcome
    that stands (too early, already received, age limit, no code for the desk …)."""

    outcome: str
    overruled: tuple[str, ...]  # the refusals staff overrule, in the chain's order
    note: str = ""
    args: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.outcome == ELIGIBLE and bool(self.overruled)


def override_verdict(facts: Facts) -> OverrideVerdict:
    """The desk chain with the overrulable refusals waived: a refusal that is not
    overrulable still stands, and the desk's pool has the last word as for any patron."""
    def asked(rule: Any) -> bool:
        return facts.reader is not None or rule.name not in _READS_READER

    waived = [rule for rule in DESK.rules if rule.name in OVERRULABLE and asked(rule)]
    overruled = tuple(rule.name for rule in waived if rule.check(facts) is not None)
    chain = dataclasses.replace(DESK, rules=tuple(
        rule for rule in DESK.rules if rule.name not in OVERRULABLE and asked(rule)))
    hit, _ = run(chain, facts)
    assert hit is not None  # the desk's pool has the last word
    return OverrideVerdict(hit.outcome, overruled, hit.note, dict(hit.args))


@dataclass(frozen=True)
class Received:
    """The code a card already received this month (the desk offers to reprint it)."""

    code_id: int
    service: str
    month: str
    issued_at: datetime
    channel: str  # mailbot.ledger.Channel: by e-mail, at the desk, by a staff override


@dataclass(frozen=True)
class DeskVerdict:
    outcome: str  # "eligible", or the refusal's outcome name
    note: str  # a key of the dashboard's catalogue (note_<note>), with ``args``
    context: dict[str, Any]
    trail: list[dict[str, Any]]
    codes_left: int
    owed_to_email: int  # undecided e-mail requests for this service, ahead of the patron
    patron: str | None  # the name on file, for the staff to compare
    email: str | None = None  # the address on file (for the activation reminder)
    args: dict[str, Any] = dataclasses.field(default_factory=dict)
    # A refusal: whether staff may issue anyway, overruling which refusals.
    override: OverrideVerdict | None = None
    received: Received | None = None  # a refusal of a card with this month's code: to reprint
    quota: quotas.Parts | None = None  # the pool's parts while its quotas hold

    @property
    def overridable(self) -> bool:
        return self.override is not None and self.override.allowed


def owed_to_email(session: Session, library_id: str, service: str, now: datetime,
                  *, except_id: int | None = None) -> int:
    """Undecided e-mail requests for this service that arrived before now: their codes are
    not for the desk (nor for a staff override)."""
    stmt = select(func.count(Request.id)).where(
        Request.library_id == library_id, Request.state == RequestState.NEW,
        Request.kind == "request", Request.service == service, Request.received_at <= now)
    if except_id is not None:
        stmt = stmt.where(Request.id != except_id)
    return session.scalar(stmt) or 0


def received_this_month(session: Session, library: LibrarySettings, card: str, month: str,
                        service: str,
                        catalogue: Catalogue = SHIPPED_CATALOGUE) -> Received | None:
    """The card's first code of the month in this library (of this service only if the
    library gives one code per service or the service is counted only against itself;
    else of the services counted across), as AlreadyReceived counts it."""
    stmt = (select(LedgerEntry).where(LedgerEntry.library_id == library.id,
                                      LedgerEntry.card_number == card,
                                      LedgerEntry.month == month)
            .order_by(LedgerEntry.id).limit(1))
    scope = catalogue.counted_against(
        service, per_service=library.one_code_per_month == "per_service")
    alone = [s.id for s in catalogue.services if not s.one_a_month]
    if scope is not None:
        stmt = stmt.where(LedgerEntry.service == scope)
    elif alone:
        stmt = stmt.where(LedgerEntry.service.not_in(alone))
    entry = session.scalar(stmt)
    if entry is None:
        return None
    return Received(entry.code_id, entry.service, entry.month, entry.issued_at,
                    entry.channel)


def desk_check(session: Session, settings: Settings, *, library_id: str, card: str,
               name: str, service: str, now: datetime,
               source: ReaderSource | None = None) -> DeskVerdict:
    library = settings.library(library_id)
    tz = settings.library_tz(library_id)
    year, mon = month_of(now, tz)
    month = month_key(year, mon)
    card = card.strip()
    reader = (source or LocalReaders()).lookup(session, library_id=library_id, card=card)
    # The staff see the patron: the name check applies only if a name was typed.
    policy = library if name.strip() else dataclasses.replace(library, check_name=False)
    left = codes_left(session, library_id=library_id, service=service, month=month)
    owed = owed_to_email(session, library_id, service, now)
    quota = desk_quota(session, library, tz, service=service, year=year, mon=mon, now=now)
    missed_months, missed_codes = unactivated_months_of(session, library, card, month)
    facts = Facts(
        library=policy, tz=tz, month=(year, mon), service=service, received_at=now,
        date_header=None, from_address=reader.email if reader else None,
        card_candidates=(card,), card=card, name_text=name, reader=reader,
        issued_this_month=issued_this_month_of(
            session, library_id, card, month, catalogue=settings.catalogue,
            service=settings.catalogue.counted_against(
                service, per_service=library.one_code_per_month == "per_service")),
        unactivated_months=missed_months, unactivated_codes=missed_codes,
        decided_at=now, codes_left=left, owed_to_email=owed, quota=quota,
        # No code left: was the month's pool ever imported (pool_not_ready)?
        pool_imported=left > 0 or bool(pools_imported(session, library_id,
                                                      [(service, month)])),
        catalogue=settings.catalogue,
    )
    hit, trail = run(DESK, facts)
    assert hit is not None  # the desk's pool has the last word
    patron = f"{reader.first_name} {reader.last_name}".strip() if reader else None
    email = reader.email if reader else None
    override = None if hit.outcome == ELIGIBLE else override_verdict(facts)
    # Any refusal, not only already_received: a card the local data does not know (yet)
    # that was given a code anyway is refused as unknown_card before that rule is asked,
    # and the patron still needs that code's slip again.
    received = (received_this_month(session, library, card, month, service,
                                    settings.catalogue)
                if hit.outcome != ELIGIBLE else None)
    return DeskVerdict(hit.outcome, hit.note, dict(hit.context), trail, left, owed, patron,
                       email, args=dict(hit.args), override=override, received=received,
                       quota=quota)


def desk_quota(session: Session, library: LibrarySettings, tz: Any, *, service: str,
               year: int, mon: int, now: datetime) -> quotas.Parts | None:
    """What is left of each part of the pool while its quotas hold (None: the library
    keeps none, or they were released): the desk draws from its own part, then from
    what of the general part no earlier e-mail is owed (mailbot.rules.pool.DeskPool)."""
    q = library.quotas
    if not quotas.held(q, tz, year, mon, now) or service not in library.services:
        return None
    use = pool_use(session, library_id=library.id, service=service,
                   month=month_key(year, mon))
    return quotas.parts(q, use, release_at=quotas.release_at(q, tz, year, mon))


def desk_issue(session: Session, settings: Settings, *, library_id: str, card: str,
               name: str, service: str, now: datetime,
               source: ReaderSource | None = None) -> tuple[DeskVerdict, Code | None]:
    """Checks again and, if eligible, issues a code in the caller's transaction (the
    caller records who did it in its audit log)."""
    one_at_a_time(session, settings, library_id)
    verdict = desk_check(session, settings, library_id=library_id, card=card, name=name,
                         service=service, now=now, source=source)
    if verdict.outcome != ELIGIBLE:
        return verdict, None
    return _issue(session, settings, verdict, library_id=library_id, card=card,
                  service=service, now=now)


def desk_override(session: Session, settings: Settings, *, library_id: str, card: str,
                  name: str, service: str, reason: str, shown: Collection[str],
                  now: datetime,
                  source: ReaderSource | None = None) -> tuple[DeskVerdict, Code | None]:
    """"Issue anyway" at the desk: checks again (the verdict may have changed since the
    staff read it) and issues a code if the patron is eligible now, or if every refusal is
    one staff may overrule, all of them among ``shown`` (the refusals the staff were shown
    and confirmed: a reader import meanwhile may have added a debt they never saw), and
    the desk's pool has a code for them. Otherwise no code, and the verdict as it is now.
    The caller audits it with the reason and ``verdict.override.overruled`` (empty:
    eligible by now).
    """
    if not reason.strip():
        raise ValueError("a reason is required to issue a code anyway")
    one_at_a_time(session, settings, library_id)
    verdict = desk_check(session, settings, library_id=library_id, card=card, name=name,
                         service=service, now=now, source=source)
    if verdict.outcome != ELIGIBLE and not (
            verdict.overridable and verdict.override is not None
            and set(verdict.override.overruled) <= set(shown)):
        return verdict, None
    return _issue(session, settings, verdict, library_id=library_id, card=card,
                  service=service, now=now)


def one_at_a_time(session: Session, settings: Settings, library_id: str) -> None:
    """Where the library keeps quotas, the desk (and "issue anyway" on a request page,
    mailbot.web.actions) checks and issues holding the library's decide lock (PostgreSQL; SQLite's write transactions are one at a time anyway): two
    counters at once would both see the desk part's last code and the second would take a
    general code an e-mail may be owed. Without quotas, as before (the codes owed to
    e-mail are counted from the waiting requests, which a decide batch leaves waiting
    until it commits)."""
    if settings.library(library_id).quotas.active:
        lock_library(session, library_id)


def _issue(session: Session, settings: Settings, verdict: DeskVerdict, *, library_id: str,
           card: str, service: str, now: datetime) -> tuple[DeskVerdict, Code | None]:
    library: LibrarySettings = settings.library(library_id)
    month = month_key(*month_of(now, settings.library_tz(library_id)))
    code = InSession(session, library.id).issue(
        service=service, month=month, card=card.strip(), email=verdict.email,
        request_id=None, now=now, channel=Channel.DESK)
    if code is None:  # taken meanwhile by the bot
        return dataclasses.replace(verdict, outcome=Outcome.POOL_EXHAUSTED,
                                   note="last_code_just_taken", args={},
                                   override=None), None
    return verdict, code
