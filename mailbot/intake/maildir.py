"""Intake from a local Maildir (the demo's intake; also useful behind a local MTA).

A Maildir has no UIDs: messages are numbered in order of delivery time (the file's mtime,
which is what Dovecot reports as INTERNALDATE) after the mailbox's last UID. Once stored,
a message file moves into a Maildir++ subfolder (``.mailbot.processed``, ``.mailbot.manual``);
after a crash in between, the Message-ID check turns the re-read into a plain move.
"""

from __future__ import annotations

import logging
import mailbox
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import MailboxSettings, Settings
from mailbot.db.models import Mailbox, Request
from mailbot.intake.store import SEEN_ONLY, PollReport, ingest, mailbox_row, poll_each

log = logging.getLogger(__name__)

UIDVALIDITY = 1


def _pending(md: mailbox.Maildir, root: Path, *, skip_seen: bool) -> list[tuple[float, str]]:
    items = []
    for key in md.keys():
        sub = md._toc[key]  # type: ignore[attr-defined]  # "new/…" or "cur/…"
        # Without a processed folder, handled mail stays here flagged Seen (`:2,S`).
        if skip_seen and "S" in sub.rpartition(":2,")[2]:
            continue
        items.append((os.stat(root / sub).st_mtime, key))
    return sorted(items)


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
        raw = md.get_bytes(key)
        with sessions.begin() as session:
            row = session.get(Mailbox, mailbox_id)
            assert row is not None
            uid = row.last_uid + 1
            stored = ingest(session, settings=settings, mailbox=row, mb=mb,
                            uidvalidity=UIDVALIDITY, uid=uid,
                            received_at=datetime.fromtimestamp(mtime, UTC), raw=raw,
                            now=utcnow())
            row.last_uid = uid
        report.fetched += 1
        report.stored += stored.request_id is not None
        report.duplicates += stored.request_id is None
        _move(md, key, stored.move_to)
        if stored.request_id is not None:
            with sessions.begin() as session:
                session.get(Request, stored.request_id).pending_move = None  # type: ignore[union-attr]
        report.moved += 1
    with sessions.begin() as session:
        row = session.get(Mailbox, mailbox_id)
        assert row is not None
        row.last_poll_at, row.last_error = utcnow(), None
        row.caught_up_to = poll_started
    return report


def _move(md: mailbox.Maildir, key: str, target: str) -> None:
    if target == SEEN_ONLY:
        msg = md.get_message(key)
        msg.set_subdir("cur")
        msg.add_flag("S")
        md[key] = msg
        return
    name = target.replace("/", ".")
    folder = md.get_folder(name) if name in md.list_folders() else md.add_folder(name)
    folder.add(md.get_message(key))
    md.discard(key)


def poll_all_maildirs(sessions: sessionmaker[Session], settings: Settings) -> list[PollReport]:
    """Polls every Maildir; one broken Maildir does not stop the others."""
    return poll_each(sessions, settings, "maildir", poll_maildir)
