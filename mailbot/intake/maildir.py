"""Intake from a local Maildir (the demo's intake; also useful behind a local MTA).

A Maildir has no UIDs: messages are numbered in order of delivery time (the file's mtime,
which is what Dovecot reports as INTERNALDATE) after the mailbox's last UID. Once stored,
a message file moves into a Maildir++ subfolder (``.mailbot.processed``, ``.mailbot.manual``);
after a crash in between, the Message-ID check turns the re-read into a plain move.

One mail never stops the others. A file is read as bytes, at most ``max_message_bytes``
of it (as IMAP fetches it), and only the project's guarded parser looks inside: the
stdlib's ``Maildir.get_message`` recurses into every MIME level and a mail nested a
thousand deep raises ``RecursionError``. Files are moved by renaming them, unparsed. A mail
that fails anyway (reading, parsing or storing) is set aside for staff (a request in state
``error``) and moved to the manual folder; the rest of the Maildir is read as usual.
"""

from __future__ import annotations

import logging
import mailbox
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import MailboxSettings, Settings
from mailbot.db.mailboxes import mailbox_row, record_poll
from mailbot.db.models import Mailbox, Request
from mailbot.intake.mail.dates import plausible_date
from mailbot.intake.poll import PollReport, poll_each
from mailbot.intake.store import SEEN_ONLY, Stored, ingest, set_aside_alone

log = logging.getLogger(__name__)

UIDVALIDITY = 1


def _pending(md: mailbox.Maildir, root: Path, *, skip_seen: bool) -> list[tuple[float, str]]:
    items = []
    for key in md.keys():
        sub = md._toc[key]  # type: ignore[attr-defined]  # "new/…" or "cur/…"
        # Without a processed folder, handled mail stays here flagged Seen (`:2,S`).
        if skip_seen and "S" in sub.rpartition(":2,")[2]:
            continue
        try:
            items.append((os.stat(root / sub).st_mtime, key))
        except FileNotFoundError:  # moved away meanwhile (another process, staff)
            continue
    return sorted(items)


def _arrival(mtime: float, now: datetime, where: str) -> datetime:
    """The delivery time (the file's mtime); one no mail can have (year 1, 2105, beyond
    datetime's range) is taken as now, when this poll found the mail."""
    try:
        when = datetime.fromtimestamp(mtime, UTC)
    except (OverflowError, OSError, ValueError):
        when = None
    if when is not None and plausible_date(when, now=now):
        return when
    log.warning("%s: a file has a delivery time no mail can have (mtime %r); taken as "
                "arriving now", where, mtime)
    return now


def _read(md: mailbox.Maildir, root: Path, key: str, max_bytes: int) -> bytes | None:
    """The mail's first ``max_bytes`` bytes (all of a smaller one), as IMAP fetches them;
    None when the file is gone."""
    try:
        sub = md._lookup(key)  # type: ignore[attr-defined]
        with open(root / sub, "rb") as f:
            return f.read(max_bytes)
    except (KeyError, FileNotFoundError):
        return None


def _store(sessions: sessionmaker[Session], settings: Settings, mb: MailboxSettings,
           mailbox_id: int, received_at: datetime, raw: bytes, now: datetime) -> Stored:
    """One mail and the mailbox's new last UID in one commit."""
    with sessions.begin() as session:
        row = session.get(Mailbox, mailbox_id)
        assert row is not None
        uid = row.last_uid + 1
        stored = ingest(session, settings=settings, mailbox=row, mb=mb,
                        uidvalidity=UIDVALIDITY, uid=uid, received_at=received_at, raw=raw,
                        now=now)
        row.last_uid = uid
    return stored


def poll_maildir(sessions: sessionmaker[Session], settings: Settings,
                 mb: MailboxSettings) -> PollReport:
    report = PollReport(mb.key)
    poll_started = utcnow()
    root = Path(mb.path or "")
    md = mailbox.Maildir(root, factory=None, create=True)
    with sessions.begin() as session:
        row = mailbox_row(session, mb)
        row.uidvalidity = UIDVALIDITY
        mailbox_id = row.id
    for mtime, key in _pending(md, root, skip_seen=mb.processed_folder is None):
        now = utcnow()
        received_at = _arrival(mtime, now, mb.key)
        raw: bytes | None = b""
        try:
            raw = _read(md, root, key, settings.max_message_bytes)
            if raw is None:
                continue  # moved away meanwhile
            stored = _store(sessions, settings, mb, mailbox_id, received_at, raw, now)
        except OperationalError:
            raise  # the database is busy or gone: not this mail's fault; nothing is skipped
        except Exception as exc:  # noqa: BLE001 - this mail only; the others go on
            stored = set_aside_alone(sessions, mb, mailbox_id, uidvalidity=UIDVALIDITY,
                                     uid=None, received_at=received_at, raw=raw or b"",
                                     now=now, exc=exc)
            assert stored is not None  # (None only for a given UID another process took)
            if stored.request_id is None and not stored.duplicate:
                report.errors.append(f"{key} could not be stored; moved to "
                                     f"{stored.move_to}")
        report.fetched += 1
        report.stored += stored.request_id is not None
        report.duplicates += stored.duplicate
        try:
            _move(md, root, key, stored.move_to)
        except (KeyError, FileNotFoundError):
            pass  # moved away meanwhile: nothing left to move
        except OSError as exc:
            # Stored, not moved: the next poll reads it again and, a duplicate, moves it.
            log.error("%s: %s could not be moved to %s: %s", mb.key, key, stored.move_to,
                      exc)
            report.errors.append(f"{key} could not be moved: {exc}")
            continue
        if stored.request_id is not None:
            with sessions.begin() as session:
                session.get(Request, stored.request_id).pending_move = None  # type: ignore[union-attr]
        report.moved += 1
    with sessions.begin() as session:
        record_poll(session, mailbox_id, caught_up_to=poll_started)
    return report


def _move(md: mailbox.Maildir, root: Path, key: str, target: str) -> None:
    """Moves the file by renaming it, never parsing it: same name, flags and mtime (the
    delivery time), and no copy of a large mail in memory."""
    sub = md._lookup(key)  # type: ignore[attr-defined]  # "new/KEY" or "cur/KEY:2,FLAGS"
    if target == SEEN_ONLY:
        unique, _, info = os.path.basename(sub).partition(md.colon)
        flags = "".join(sorted(set(info[2:] if info.startswith("2,") else "") | {"S"}))
        os.rename(root / sub, root / "cur" / f"{unique}{md.colon}2,{flags}")
        return
    name = target.replace("/", ".")
    if name not in md.list_folders():
        md.add_folder(name)
    os.rename(root / sub, root / f".{name}" / sub)


def poll_all_maildirs(sessions: sessionmaker[Session], settings: Settings) -> list[PollReport]:
    """Polls every Maildir; one broken Maildir does not stop the others."""
    return poll_each(sessions, settings, "maildir", poll_maildir)
