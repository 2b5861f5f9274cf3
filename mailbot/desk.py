"""The walk-in desk: the verdict the bot would give a patron standing at the counter, and a
code from the same pool — never one owed to an e-mail request that arrived earlier.

Pure decisions come from the desk chain (mailbot.rules.chains.DESK): the e-mail rules but
what cannot apply at a counter (the card search, the sender address, the per-address cap),
then the desk's pool, which leaves alone the codes owed to e-mail requests waiting. The
window still applies: a month's codes are not handed out before it opens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailbot.clock import month_key, month_of
from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import Code, Request
from mailbot.decide.batch import ReaderSource, issued_this_month_of, unactivated_months_of
from mailbot.ledger import Channel, InSession, codes_left
from mailbot.outcomes import Outcome, RequestState
from mailbot.readers.local import LocalReaders
from mailbot.rules.chains import DESK, run
from mailbot.rules.base import ELIGIBLE, Facts


@dataclass(frozen=True)
class DeskVerdict:
    outcome: str  # "eligible", or the refusal's outcome name
    note: str
    context: dict[str, Any]
    trail: list[dict[str, Any]]
    codes_left: int
    owed_to_email: int  # undecided e-mail requests for this service, ahead of the patron
    patron: str | None  # the name on file, for the staff to compare
    email: str | None = None  # the address on file (for the activation reminder)


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
    facts = Facts(
        library=policy, tz=tz, month=(year, mon), service=service, received_at=now,
        date_header=None, from_address=reader.email if reader else None,
        card_candidates=(card,), card=card, name_text=name, reader=reader,
        issued_this_month=issued_this_month_of(
            session, library_id, card, month,
            service=service if library.one_code_per_month == "per_service" else None),
        unactivated_months=unactivated_months_of(session, library, card, month),
        decided_at=now, codes_left=left, owed_to_email=owed,
    )
    hit, trail = run(DESK, facts)
    assert hit is not None  # the desk's pool has the last word
    patron = f"{reader.first_name} {reader.last_name}".strip() if reader else None
    email = reader.email if reader else None
    return DeskVerdict(hit.outcome, hit.note, dict(hit.context), trail, left, owed, patron,
                       email)


def desk_issue(session: Session, settings: Settings, *, library_id: str, card: str,
               name: str, service: str, now: datetime,
               source: ReaderSource | None = None) -> tuple[DeskVerdict, Code | None]:
    """Checks again and, if eligible, issues a code in the caller's transaction (the
    caller records who did it in its audit log)."""
    verdict = desk_check(session, settings, library_id=library_id, card=card, name=name,
                         service=service, now=now, source=source)
    if verdict.outcome != ELIGIBLE:
        return verdict, None
    library: LibrarySettings = settings.library(library_id)
    month = month_key(*month_of(now, settings.library_tz(library_id)))
    code = InSession(session, library.id).issue(
        service=service, month=month, card=card.strip(), email=verdict.email,
        request_id=None, now=now, channel=Channel.DESK)
    if code is None:  # taken meanwhile by the bot
        return dataclasses.replace(verdict, outcome=Outcome.POOL_EXHAUSTED,
                                   note="the last code was just issued"), None
    return verdict, code
