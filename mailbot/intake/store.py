"""Mail -> stored request: the intake stage's one idempotent step, shared by IMAP and Maildir.

Intake only sorts mail: a request for a service (``new``, to be decided in arrival order),
auto-generated mail (``ignored_loop``, never answered) or anything else (``not_a_request``,
left for staff in the manual folder). Each row remembers where its mail still has to be
moved (``pending_move``): mail is moved only after the database has committed the row.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import traceback
from typing import Any
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.addresses import usable_address
from mailbot.config import MailboxSettings, Settings
from mailbot.db.batches import in_chunks
from mailbot.db.models import Mailbox, Outbox, Request
from mailbot.intake.bounce import Bounce, find_bounce, report_reason
from mailbot.intake.parse import (
    ParsedMail,
    looks_automatic,
    loop_reason,
    match_service,
    match_test_service,
    parse_mail,
    plausible_date,
    remember_parse,
)

log = logging.getLogger(__name__)

SEEN_ONLY = "=seen"  # no processed folder configured: flag the mail \Seen where it is


@dataclass
class PollReport:
    """What one poll of one mailbox did."""

    mailbox: str
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    moved: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stored:
    """What intake did with one mail: the row (None for a duplicate, or when not flushed
    yet) and where the mail goes."""

    request_id: int | None
    move_to: str
    duplicate: bool = False


def processed_target(mb: MailboxSettings) -> str:
    return mb.processed_folder or SEEN_ONLY


def ingest(
    session: Session,
    *,
    settings: Settings,
    mailbox: Mailbox,
    mb: MailboxSettings,
    uidvalidity: int,
    uid: int,
    received_at: datetime,
    raw: bytes,
    now: datetime,
    known: dict[str, str] | None = None,
    flush: bool = True,
    parsed: ParsedMail | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> Stored:
    """Stores one mail as a request (or recognises it as a duplicate).

    ``known`` (Message-ID -> state of the stored request), when given, answers the
    duplicate check instead of a query: a chunk of mail looks its Message-IDs up at once
    (known_message_ids) and this keeps the dict current. ``flush=False`` leaves the insert
    to the caller's commit, which then writes the whole chunk together; with ``rows`` the
    request's column values are appended there instead, for the caller to insert the
    chunk in one statement (no ORM objects: a burst stores thousands)."""
    try:
        parsed = parsed or parse_mail(raw, max_bytes=settings.max_message_bytes)
    except Exception as exc:  # parse_mail is meant never to raise; if it does, staff see it
        log.exception("mail uid=%s in %s could not be parsed", uid, mb.key)
        return _set_aside(session, mailbox=mailbox, mb=mb, uidvalidity=uidvalidity, uid=uid,
                          received_at=received_at, raw=raw, now=now, error=repr(exc))
    message_id = message_id_of(raw, parsed.message_id)
    if known is None:
        known = known_message_ids(session, mailbox.library_id, [message_id])
    if message_id in known:
        log.info("duplicate Message-ID in %s uid=%s; not stored again", mb.key, uid)
        # A copy goes where the original went: staff mail stays with staff.
        staff = known[message_id] in ("manual", "error")
        return Stored(None, mb.manual_folder if staff else processed_target(mb), True)

    values: dict[str, Any] = {
        "library_id": mailbox.library_id, "mailbox_id": mailbox.id,
        "uidvalidity": uidvalidity, "uid": uid, "received_at": received_at,
        "fetched_at": now, "message_id": message_id, "raw": raw, "raw_size": len(raw),
        "date_header": parsed.date, "from_address": usable_address(parsed.from_address),
        "subject": parsed.subject[:2000], "kind": "request", "service": None,
        "state": "new", "outcome": None, "decided_at": None, "trail": [],
        "pending_move": None,
    }
    # A report nested below the top level (a gateway's DSN, an ARF complaint) is found
    # in the raw bytes; loop_reason sees the top level.
    reason = (loop_reason(parsed, own_addresses=settings.own_addresses)
              or report_reason(parsed, raw))
    bounce = find_bounce(parsed, raw)
    if bounce is not None:
        reason = f"bounce of our reply: {_mark_bounced(session, bounce, now)}"
    service = match_service(parsed.subject)
    if service is None and settings.library(mailbox.library_id).eligibility_test:
        service = match_test_service(parsed.subject)
        values["kind"] = "test" if service else "request"

    def settle(state: str, outcome: str, rule: str, note: str, move_to: str) -> None:
        values.update(state=state, outcome=outcome, decided_at=now, pending_move=move_to,
                      trail=[{"rule": rule, "result": "refused", "note": note}])

    if reason is not None:
        settle("ignored", "ignored_loop", "loop", reason, processed_target(mb))
    elif _sender_blocked(settings, values["from_address"]):
        settle("ignored", "ignored_sender", "blocked_senders",
               "sender on the block list; no reply", processed_target(mb))
    elif service is None:
        settle("manual", "not_a_request", "subject",
               "subject names no service; left for staff", mb.manual_folder)
    elif (machine := looks_automatic(parsed)) is not None:
        # Only the body says "a program wrote this": too weak to silence, so staff decide.
        settle("manual", "not_a_request", "loop",
               f"reads like an automatic mail ({machine!r}); left for staff", mb.manual_folder)
    elif values["from_address"] is None:
        # No address to answer: nothing may be issued to nobody; staff look at it.
        settle("manual", "not_a_request", "sender",
               "no usable sender address; left for staff", mb.manual_folder)
    else:
        values.update(service=service, pending_move=processed_target(mb))
        # Deciding it (soon, in this process) need not parse the same bytes again.
        remember_parse(raw, parsed, max_bytes=settings.max_message_bytes)
    known[message_id] = values["state"]
    if rows is not None:
        rows.append(values)  # the caller inserts the chunk's rows in one statement
        return Stored(None, values["pending_move"])
    req = Request(**values)
    session.add(req)
    if flush:
        session.flush()
    return Stored(req.id, req.pending_move)


# A Message-ID longer than this (in UTF-8) is stored as its hash: the index on it takes at
# most ~2,700 bytes a row on PostgreSQL (a 900-character CJK id is 3,000), and a refusal
# there looks like the database being busy, which would hold the whole mailbox. Real ids
# are ASCII and under 100 characters; the same id always gives the same hash, so
# duplicates are still recognised.
MAX_MESSAGE_ID_BYTES = 500


def message_id_of(raw: bytes, parsed_id: str | None) -> str:
    """The Message-ID a request is stored under (a hash of the mail when it has none, of
    the id when it is implausibly long)."""
    if not parsed_id:
        return "<%s@mailbot.no-message-id>" % hashlib.sha256(raw).hexdigest()[:32]
    encoded = parsed_id.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_MESSAGE_ID_BYTES:
        return "<%s@mailbot.long-message-id>" % hashlib.sha256(encoded).hexdigest()[:32]
    return parsed_id


def known_message_ids(session: Session, library_id: str,
                      message_ids: list[str]) -> dict[str, str]:
    """Which of these Message-IDs the library already has: Message-ID -> request state."""
    found: dict[str, str] = {}
    for chunk in in_chunks(message_ids):
        for message_id, state in session.execute(
                select(Request.message_id, Request.state)
                .where(Request.library_id == library_id, Request.message_id.in_(chunk))
                .order_by(Request.id)):
            found.setdefault(message_id, state)
    return found


def _mark_bounced(session: Session, bounce: Bounce, now: datetime) -> str:
    """Marks the bounced replies failed, for staff; returns a note for the trail."""
    rows = session.scalars(select(Outbox).where(Outbox.message_id.in_(bounce.message_ids))).all()
    for row in rows:
        row.state = "failed"
        row.last_error = f"bounced: {bounce.reason}"[:1000]
    if not rows:
        return "not one of our stored replies"
    log.warning("bounce for outbox %s: %s", ", ".join(str(r.id) for r in rows), bounce.reason)
    return f"outbox {', '.join(str(r.id) for r in rows)} marked failed ({bounce.reason})"


def _sender_blocked(settings: Settings, address: str | None) -> bool:
    """The configured block list: exact addresses or patterns such as ``*@spam.example``."""
    return bool(address) and any(fnmatch.fnmatchcase(address, pattern.lower())
                                 for pattern in settings.blocked_senders)


def _set_aside(session: Session, *, mailbox: Mailbox, mb: MailboxSettings, uidvalidity: int,
               uid: int, received_at: datetime, raw: bytes, now: datetime, error: str,
               bare: bool = False, subject: str = "", from_address: str | None = None
               ) -> Stored:
    """A row in state ``error`` for staff (the dashboard's "set aside" queue), the mail to
    go to the manual folder. Only the raw bytes come from the mail: the error text is made
    storable (no NUL, no lone surrogates) and an arrival no mail can have becomes ``now``.
    ``bare`` leaves even the raw mail out (it stays in the manual folder for staff)."""
    if not plausible_date(received_at, now=now):
        received_at = now
    req = Request(
        library_id=mailbox.library_id, mailbox_id=mailbox.id, uidvalidity=uidvalidity, uid=uid,
        received_at=received_at, fetched_at=now,
        message_id=set_aside_id(raw, mb, uidvalidity, uid),
        raw=None if bare else raw, raw_size=len(raw), state="error",
        error=_storable(error)[:2000], trail=[], pending_move=mb.manual_folder,
        subject=_storable(subject)[:2000], from_address=from_address,
    )
    session.add(req)
    session.flush()
    return Stored(req.id, mb.manual_folder)


def set_aside_id(raw: bytes, mb: MailboxSettings, uidvalidity: int, uid: int) -> str:
    """The Message-ID a set-aside mail is stored under: a hash of its bytes (the same mail
    read again is a duplicate), of its place in the mailbox when none could be read."""
    basis = raw or f"{mb.key}\0{uidvalidity}\0{uid}".encode()
    return "<%s@mailbot.unparsed>" % hashlib.sha256(basis).hexdigest()[:32]


def _storable(text: str) -> str:
    """Text any database takes: PostgreSQL refuses NUL and invalid UTF-8."""
    return text.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _headers_quietly(raw: bytes) -> tuple[str, str | None]:
    """Subject and sender of a mail being set aside, for the staff's queue; nothing when
    even the guarded parser fails on it."""
    try:
        # (raw is at most max_message_bytes already: the intakes read no more)
        parsed = parse_mail(raw, max_bytes=max(len(raw), 1))
        return parsed.subject, usable_address(parsed.from_address)
    except Exception:  # noqa: BLE001 - the row is stored without them
        return "", None


def failure_text(exc: BaseException) -> str:
    """What staff see of a failure (the exception and its message), storable."""
    return _storable(f"{type(exc).__name__}: {exc}")[:2000]


def _origin(exc: BaseException) -> str:
    """Where an exception was raised (file:line in function), for a log line that must not
    carry the exception's message (which may quote the mail)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


def set_aside_alone(sessions: sessionmaker[Session], mb: MailboxSettings, mailbox_id: int,
                    *, uidvalidity: int, uid: int | None, received_at: datetime, raw: bytes,
                    now: datetime, exc: BaseException) -> Stored | None:
    """Sets aside for staff one mail that could not be read, parsed or stored (``exc``):
    a row in state ``error`` with the error text, to go to the manual folder, in its own
    transaction with the mailbox's new last UID (``uid`` None: the next one, as Maildir
    numbers its mail). A mail already set aside (the same bytes) is a duplicate.

    Should the database refuse even that row, a bare one is stored: our own values only
    (no raw mail, a hash Message-ID, a sane arrival), which any database takes. If that
    too is refused, ``Stored(None, manual folder)``: nothing is stored, the mail still goes
    to the manual folder and the failure is logged (never the mail's content). None when
    another process stored this UID meanwhile (it moves the mail). An OperationalError (the
    database busy or gone, not this mail's fault) is raised: nothing may be skipped then.
    """
    log.warning("%s: mail uid=%s could not be stored (%s at %s); setting it aside for staff",
                mb.key, uid if uid is not None else "(next)", type(exc).__name__, _origin(exc))
    for bare in (False, True):
        try:
            with sessions.begin() as session:
                row = session.get(Mailbox, mailbox_id, with_for_update=True)
                assert row is not None
                if uid is not None and uid <= row.last_uid:
                    return None
                this_uid = row.last_uid + 1 if uid is None else uid
                row.last_uid = max(row.last_uid, this_uid)
                message_id = set_aside_id(raw, mb, uidvalidity, this_uid)
                if known_message_ids(session, row.library_id, [message_id]):
                    return Stored(None, mb.manual_folder, True)
                if bare:
                    return _set_aside(
                        session, mailbox=row, mb=mb, uidvalidity=uidvalidity, uid=this_uid,
                        received_at=received_at, raw=raw, now=now, bare=True,
                        error=f"{type(exc).__name__} (the mail itself could not be kept "
                              f"here; it is in the folder {mb.manual_folder})")
                subject, sender = _headers_quietly(raw)
                return _set_aside(session, mailbox=row, mb=mb, uidvalidity=uidvalidity,
                                  uid=this_uid, received_at=received_at, raw=raw, now=now,
                                  error=failure_text(exc), subject=subject,
                                  from_address=sender)
        except OperationalError:
            raise
        except Exception as refused:  # noqa: BLE001 - whatever it is, the others go on
            log.error("%s: mail uid=%s: the database refused its %s row (%s at %s)", mb.key,
                      uid if uid is not None else "(next)",
                      "bare set-aside" if bare else "set-aside", type(refused).__name__,
                      _origin(refused))
    log.error("%s: mail uid=%s not stored at all; moved to %s for staff", mb.key,
              uid if uid is not None else "(next)", mb.manual_folder)
    return Stored(None, mb.manual_folder)


def mailbox_row(session: Session, mb: MailboxSettings) -> Mailbox:
    """The database row of a configured mailbox, created on first sight."""
    row = session.scalar(select(Mailbox).where(Mailbox.key == mb.key))
    if row is None:
        row = Mailbox(key=mb.key, library_id=mb.library, address=mb.address, last_uid=0)
        session.add(row)
        session.flush()
    else:
        row.address = mb.address
    return row


def record_mailbox_error(sessions: sessionmaker[Session], mb: MailboxSettings,
                         error: str) -> None:
    """Shows staff (status, dashboard) that a mailbox cannot be read; never raises."""
    try:
        with sessions.begin() as session:
            mailbox_row(session, mb).last_error = error[:1000]
    except Exception:
        log.exception("could not record the error of %s", mb.key)


POLL_WORKERS = 8  # mailboxes read at once by `run --once` (each its own IMAP connection)


def poll_each(sessions: sessionmaker[Session], settings: Settings, kind: str,
              poll: Callable[[sessionmaker[Session], Settings, MailboxSettings], PollReport],
              *, workers: int = 1) -> list[PollReport]:
    """Runs ``poll`` on every mailbox of ``kind``; one failing mailbox does not stop the
    others (its error is logged, recorded for staff and put in its report).

    ``workers`` > 1 reads that many mailboxes at once: reading is mostly waiting for the
    mail server (a consortium has hundreds of mailboxes), and each mailbox's rows are
    stored in their own short transactions, so the readers only queue for the commits.
    Reports come back in configuration order."""
    mailboxes = [mb for mb in settings.mailboxes if mb.type == kind]

    def one(mb: MailboxSettings) -> PollReport:
        try:
            return poll(sessions, settings, mb)
        except Exception as exc:
            log.error("%s: poll failed: %s: %s", mb.key, type(exc).__name__, exc)
            record_mailbox_error(sessions, mb, f"{type(exc).__name__}: {exc}")
            return PollReport(mb.key, errors=[str(exc)])

    if workers <= 1 or len(mailboxes) <= 1:
        return [one(mb) for mb in mailboxes]
    with ThreadPoolExecutor(max_workers=min(workers, len(mailboxes)),
                            thread_name_prefix="poll") as pool:
        return list(pool.map(one, mailboxes))
