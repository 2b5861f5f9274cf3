"""The scheduled work: activation reminders, month close and the retention purge.

Each job is a plain function of the database and the time, safe to run twice (what it did
is recorded in the same transaction) and safe to miss (the next run catches up: reminders
are due from N days before month end until the month ends, month close expires every ended
month, the purge takes everything older than the retention period).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import last_day, month_end, month_key, month_of, parse_month
from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import Code, LedgerEntry, Mailbox, Outbox, Request
from mailbot.decide import reply_context
from mailbot.imports.staged import StagedUploads
from mailbot.outcomes import SETTLED, Notice, OutboxState
from mailbot.respond.compose import compose_reply
from mailbot.respond.i18n import format_date, service_name
from mailbot.rules.window import next_send_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reminder:
    code_id: int
    library_id: str
    service: str
    card_number: str
    email: str


def reminder_due(library: LibrarySettings, settings: Settings, now: datetime) -> str | None:
    """The month (YYYY-MM) whose codes are to be reminded today, or None."""
    if library.reminder_days <= 0:
        return None
    tz = settings.library_tz(library.id)
    today = now.astimezone(tz).date()
    year, month = today.year, today.month
    if today < last_day(year, month) - timedelta(days=library.reminder_days):
        return None
    return month_key(year, month)


def pending_reminders(session: Session, settings: Settings, now: datetime) -> list[Reminder]:
    """Codes of this month, issued by e-mail or at the desk with an address, not activated
    and not yet reminded, in every library whose reminder day has come."""
    found = []
    for library in settings.libraries:
        month = reminder_due(library, settings, now)
        if month is None:
            continue
        rows = session.execute(
            select(Code.id, Code.service, LedgerEntry.card_number, LedgerEntry.email)
            .join(LedgerEntry, LedgerEntry.code_id == Code.id)
            .where(Code.library_id == library.id, Code.month == month,
                   Code.issued_at.is_not(None), Code.activated_at.is_(None),
                   Code.reminded_at.is_(None), LedgerEntry.email.is_not(None))
            .order_by(Code.issued_at, Code.id)
        ).all()
        found += [Reminder(cid, library.id, svc, card, email) for cid, svc, card, email in rows]
    return found


def queue_reminders(sessions: sessionmaker[Session], settings: Settings, now: datetime, *,
                    dry_run: bool = False) -> list[Reminder]:
    """Writes one reminder per due code into the outbox (or only lists them: dry run)."""
    with sessions() as session:
        due = pending_reminders(session, settings, now)
    if dry_run:
        return due
    queued = []
    for item in due:
        with sessions.begin() as session:
            # Locked: two processes running the job never remind the same code twice.
            code = session.get(Code, item.code_id, with_for_update=True)
            if code is None or code.reminded_at is not None or code.activated_at is not None:
                continue  # another run got there first, or the code was activated meanwhile
            _queue_one(session, settings, settings.library(item.library_id), code, item, now)
            code.reminded_at = now
            queued.append(item)
    if queued:
        log.info("queued %d activation reminder(s)", len(queued))
    return queued


def _queue_one(session: Session, settings: Settings, library: LibrarySettings, code: Code,
               item: Reminder, now: datetime) -> None:
    tz = settings.library_tz(library.id)
    year, month = parse_month(code.month)
    request = session.get(Request, code.request_id) if code.request_id else None
    address = _reminder_address(session, settings, library, request)
    deadline = (month_end(year, month, tz) - timedelta(days=1)).date()
    name = service_name(code.service, settings.catalogue)
    context = reply_context(library, tz, year, month, service=code.service, subject="",
                            received_at=now, card_number=item.card_number, patron_name=None,
                            catalogue=settings.catalogue)
    context["code"] = code.code
    subject = (f"{name}: prosimy aktywować kod do {format_date(deadline, 'pl')} / "
               f"please activate your code by {format_date(deadline, 'en')}")
    reply = compose_reply(
        outcome="reminder", context=context, languages=library.languages,
        library_name=library.name, mailbox_address=address, to=item.email,
        original_subject="", original_message_id=request.message_id if request else None,
        request_key=f"reminder|{library.id}|{code.id}",
        now=now, templates_dir=settings.templates_dir, subject=subject,
        texts_dir=library.texts_dir,
    )
    session.add(Outbox(kind="reminder", request_id=None, code_id=code.id,
                       library_id=library.id, mail_from=reply.mail_from, to_address=item.email,
                       message_id=reply.message_id, outcome=Notice.REMINDER, message=reply.message,
                       state=OutboxState.PENDING, created_at=now,
                       due_at=next_send_time(library, tz, now),
                       attempts=0))


def _reminder_address(session: Session, settings: Settings, library: LibrarySettings,
                      request: Request | None) -> str:
    """The address a reminder is sent from, and so the relay it leaves through
    (Settings.relay_for): the mailbox the code's request came in on while it is still
    configured, else (a code issued at the desk, a mailbox since removed) the library's
    first configured mailbox — not a database row of a mailbox no longer in the config,
    whose replies would fall back to the global relay."""
    configured = settings.mailboxes_of(library.id)
    if request is not None:
        row = session.get(Mailbox, request.mailbox_id)
        if row is not None and any(m.key == row.key for m in configured):
            return row.address
    if not configured:
        raise RuntimeError(f"library {library.id} has no mailbox to send reminders from")
    return configured[0].address


def close_months(sessions: sessionmaker[Session], settings: Settings, now: datetime) -> int:
    """Marks every unissued code of an ended month expired; returns how many."""
    expired = 0
    with sessions.begin() as session:
        for library in settings.libraries:
            tz = settings.library_tz(library.id)
            current = month_key(*month_of(now, tz))
            for code in session.scalars(
                    select(Code).where(Code.library_id == library.id, Code.month < current,
                                       Code.issued_at.is_(None), Code.expired_at.is_(None))):
                code.expired_at = month_end(*parse_month(code.month), tz)
                expired += 1
    if expired:
        log.info("month close: %d unissued code(s) expired", expired)
    return expired


def purge_old_mail(sessions: sessionmaker[Session], settings: Settings, now: datetime) -> int:
    """RODO: drops raw mail and sent reply bodies older than the retention period. The
    requests' outcomes and the ledger stay. Returns how many rows were purged."""
    cutoff = now - timedelta(days=settings.retention_days)
    purged = 0
    with sessions.begin() as session:
        for req in session.scalars(select(Request).where(
                Request.received_at < cutoff, Request.raw.is_not(None),
                Request.state.in_(SETTLED))):
            req.raw = None
            purged += 1
        for row in session.scalars(select(Outbox).where(
                Outbox.created_at < cutoff,
                Outbox.state.in_((OutboxState.SENT, OutboxState.FAILED)),
                Outbox.message != b"")):
            row.message = b""
            purged += 1
    if purged:
        log.info("retention purge: %d raw mail(s) and reply bodies removed", purged)
    # Uploads the dashboard kept for a preview nobody confirmed (codes, patrons' data).
    if swept := StagedUploads().sweep():  # by file times: the wall clock
        log.info("retention purge: %d abandoned import upload(s) removed", swept)
    return purged
