"""Mail -> stored request: the intake stage's one idempotent step, shared by IMAP and Maildir.

Intake only sorts mail (the intake chain, mailbot/rules/intake.py): a request for a service
(``new``, to be decided in arrival order), auto-generated mail (``ignored_loop``, never
answered) or anything else (``not_a_request``, left for staff in the manual folder). A mail
already stored (the same Message-ID) is not stored again; one that cannot be parsed or
stored is set aside for staff (a row in state ``error``) instead of blocking the mailbox.

Each row remembers where its mail still has to be moved (``pending_move``): mail is moved
only after the database has committed the row, and ``finish_moves`` moves what a crash
left unmoved. The moving itself is the caller's (the IMAP or Maildir edge): no mail
server is talked to here.

One concept over some 450 lines: every way a fetched mail becomes rows (a request, a
duplicate that becomes none, a row set aside for staff, a chunk of them in one commit)
and the moves those rows still owe.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.addresses import usable_address
from mailbot.clock import utcnow
from mailbot.config import MailboxSettings, Settings
from mailbot.db.batches import in_chunks, insert_rows
from mailbot.db.models import Mailbox, Outbox, Request
from mailbot.db.session import reading
from mailbot.intake.bounce import Bounce, find_bounce
from mailbot.intake.mail.dates import plausible_date
import mailbot.intake.parse as parsing
from mailbot.intake.parse import ParsedMail
from mailbot.intake.parse_cache import remember_parse
from mailbot.intake.subjects import match_service, match_test_service
from mailbot.outcomes import OutboxState, RequestState
from mailbot.rules.intake import GoesTo, IntakeFacts, sort_mail

log = logging.getLogger(__name__)

SEEN_ONLY = "=seen"  # no processed folder configured: flag the mail \Seen where it is

# A mail as fetched: its UID, its arrival (INTERNALDATE) and its raw bytes.
Fetched = tuple[int, datetime, bytes]


@dataclass(frozen=True)
class Stored:
    """What intake did with one mail: the row (None for a duplicate, or when not flushed
    yet) and where the mail goes."""

    request_id: int | None
    move_to: str
    duplicate: bool = False


@dataclass
class Tally:
    """What storing a chunk of mail did, for the poll's report; ``to_move`` holds the
    UIDs of the mail that got no row of its own (duplicates, mail that could not be
    stored at all) by the folder each must go to."""

    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    to_move: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


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
        parsed = parsed or parsing.parse_mail(raw, max_bytes=settings.max_message_bytes)
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
        staff = known[message_id] in (RequestState.MANUAL, RequestState.ERROR)
        return Stored(None, mb.manual_folder if staff else processed_target(mb), True)

    sender = usable_address(parsed.from_address)
    values: dict[str, Any] = {
        "library_id": mailbox.library_id, "mailbox_id": mailbox.id,
        "uidvalidity": uidvalidity, "uid": uid, "received_at": received_at,
        "fetched_at": now, "message_id": message_id, "raw": raw, "raw_size": len(raw),
        "date_header": parsed.date, "from_address": sender,
        "subject": parsed.subject[:2000], "kind": "request", "service": None,
        "state": RequestState.NEW, "outcome": None, "decided_at": None, "trail": [],
        "pending_move": None,
    }
    bounce = find_bounce(parsed, raw)
    bounced = _mark_bounced(session, bounce, now) if bounce is not None else None
    # Every service the config knows, not only the library's: asked for one it does not
    # offer, the patron is told which it does (service_not_offered).
    service = match_service(parsed.subject, settings.catalogue)
    if service is None and settings.library(mailbox.library_id).eligibility_test:
        service = match_test_service(parsed.subject, settings.catalogue)
        values["kind"] = "test" if service else "request"

    sorting = sort_mail(IntakeFacts(
        parsed=parsed, raw=raw, sender=sender, service=service,
        own_addresses=settings.own_addresses, blocked_senders=settings.blocked_senders,
        bounced=bounced))
    move_to = mb.manual_folder if sorting.goes_to is GoesTo.MANUAL else processed_target(mb)
    if sorting.outcome is not None:
        values.update(state=sorting.state, outcome=sorting.outcome, decided_at=now,
                      pending_move=move_to, trail=sorting.trail)
    else:
        values.update(service=service, pending_move=move_to)
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
        row.state = OutboxState.FAILED
        row.last_error = f"bounced: {bounce.reason}"[:1000]
    if not rows:
        return "not one of our stored replies"
    log.warning("bounce for outbox %s: %s", ", ".join(str(r.id) for r in rows), bounce.reason)
    return f"outbox {', '.join(str(r.id) for r in rows)} marked failed ({bounce.reason})"


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
        raw=None if bare else raw, raw_size=len(raw), state=RequestState.ERROR,
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
        parsed = parsing.parse_mail(raw, max_bytes=max(len(raw), 1))
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


def store_chunk(sessions: sessionmaker[Session], settings: Settings, mb: MailboxSettings,
                mailbox_id: int, uidvalidity: int, mails: list[Fetched], *, last_uid: int,
                caught_up_to: datetime | None = None,
                parsed: dict[int, ParsedMail | None] | None = None) -> Tally:
    """Stores fetched mails and the mailbox's new last UID in one commit (``parsed``: the
    mails parsed already, by UID; the others are parsed here).

    Should the database refuse the batch, each mail is stored on its own, so one mail the
    database cannot take is set aside for staff (set_aside_alone: a row in state
    ``error``, or, should even that be refused, nothing stored, an error in the log and the
    mail moved to the manual folder) instead of blocking the mailbox forever.
    """
    try:
        return _store(sessions, settings, mb, mailbox_id, uidvalidity, mails, last_uid,
                      caught_up_to, parsed_ahead=parsed)
    except OperationalError:
        raise  # the database is busy or gone: not a bad mail; nothing may be skipped
    except Exception:
        log.exception("%s: storing %d mail(s) together failed; storing one by one", mb.key,
                      len(mails))
    tally = Tally()
    for mail in mails:
        try:
            one = _store(sessions, settings, mb, mailbox_id, uidvalidity, [mail], mail[0])
        except OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - this mail only: set aside for staff
            uid, received_at, raw = mail
            aside = set_aside_alone(sessions, mb, mailbox_id, uidvalidity=uidvalidity,
                                    uid=uid, received_at=received_at, raw=raw,
                                    now=utcnow(), exc=exc)
            if aside is None:
                continue  # another process stored it meanwhile, and moves it
            tally.fetched += 1
            if aside.request_id is None:
                # A copy of a mail already set aside, or nothing at all could be stored:
                # moved to the manual folder now (a stored row is moved by its
                # pending_move with the rest).
                tally.to_move[aside.move_to].append(uid)
                if aside.duplicate:
                    tally.duplicates += 1
                else:
                    tally.errors.append(f"uid {uid} could not be stored; moved to "
                                        f"{aside.move_to}")
            else:
                tally.stored += 1
            continue
        tally.fetched += one.fetched
        tally.stored += one.stored
        tally.duplicates += one.duplicates
        for target, uids in one.to_move.items():
            tally.to_move[target] += uids
    with sessions.begin() as session:
        row = session.get(Mailbox, mailbox_id)
        assert row is not None
        row.last_uid = max(row.last_uid, last_uid)
        if caught_up_to is not None:
            row.caught_up_to = caught_up_to
    return tally


def _store(sessions: sessionmaker[Session], settings: Settings, mb: MailboxSettings,
           mailbox_id: int, uidvalidity: int, mails: list[Fetched], last_uid: int,
           caught_up_to: datetime | None = None,
           parsed_ahead: dict[int, ParsedMail | None] | None = None) -> Tally:
    tally = Tally()
    with sessions.begin() as session:
        # Locked: another process reading the same mailbox waits here, then skips what
        # this one stored (no second request, no unique-constraint failure).
        row = session.get(Mailbox, mailbox_id, with_for_update=True)
        assert row is not None
        now = utcnow()
        stored_before = row.last_uid
        fresh = [(uid, internaldate, raw,
                  parsed_ahead[uid] if parsed_ahead and parsed_ahead.get(uid) is not None
                  else _parse_or_none(raw, settings))
                 for uid, internaldate, raw in mails if uid > stored_before]
        # One query for the chunk's Message-IDs; the inserts go out together at commit.
        known = known_message_ids(session, row.library_id, [
            message_id_of(raw, parsed.message_id) for _u, _d, raw, parsed in fresh
            if parsed is not None])
        rows: list[dict[str, Any]] = []
        for uid, internaldate, raw, parsed in fresh:
            result = ingest(session, settings=settings, mailbox=row, mb=mb,
                            uidvalidity=uidvalidity, uid=uid, received_at=internaldate,
                            raw=raw, now=now, known=known, flush=False, parsed=parsed,
                            rows=None if parsed is None else rows)
            tally.fetched += 1
            if result.duplicate:
                tally.to_move[result.move_to].append(uid)
                tally.duplicates += 1
            else:
                tally.stored += 1
        if rows:
            insert_rows(session, Request.__table__, rows)
        row.last_uid = max(row.last_uid, last_uid)
        if caught_up_to is not None:
            row.caught_up_to = caught_up_to
    return tally


def _parse_or_none(raw: bytes, settings: Settings) -> ParsedMail | None:
    """Parsed once here for the whole chunk; a mail that fails is left to ingest, which
    sets it aside for staff."""
    try:
        return parsing.parse_mail(raw, max_bytes=settings.max_message_bytes)
    except Exception:
        return None


def finish_moves(sessions: sessionmaker[Session], mailbox_id: int, uidvalidity: int,
                 move: Callable[[list[int], str], None], *,
                 moved_ids: list[int] | None = None) -> int:
    """Moves the mailbox's stored mail still to be moved, with ``move(uids, target)`` (the
    mail server's part); the number moved.

    Each target's rows are marked moved in their own commit, or, with ``moved_ids``,
    listed there for the caller's next commit (the poll's last: one write fewer; a crash
    in between only has the next poll move the same UIDs again, which does nothing)."""
    with reading(sessions) as session:
        rows = session.execute(
            select(Request.id, Request.uid, Request.pending_move).where(
                Request.mailbox_id == mailbox_id, Request.uidvalidity == uidvalidity,
                Request.pending_move.is_not(None))
        ).all()
    by_target: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for rid, uid, target in rows:
        by_target[target].append((rid, uid))
    moved = 0
    for target, items in by_target.items():
        move([uid for _, uid in items], target)
        if moved_ids is not None:
            moved_ids.extend(rid for rid, _ in items)
        else:
            with sessions.begin() as session:
                mark_moved(session, [rid for rid, _ in items])
        moved += len(items)
    return moved


def mark_moved(session: Session, request_ids: list[int]) -> None:
    """The rows' mail is where it belongs: nothing left to move."""
    for ids in in_chunks(request_ids):
        session.execute(update(Request).where(Request.id.in_(ids)).values(pending_move=None))
