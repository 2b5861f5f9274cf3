"""The mailbox rows: one per configured mailbox, where intake keeps its place in the folder.

A row remembers the folder's UIDVALIDITY and the last UID stored (written in the same
commit as the stored requests, see intake/store.py), when the mailbox was last read
completely (``caught_up_to``: the decide stage serves a library only up to its mailboxes'
oldest such moment) and the last error, for staff.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.db.models import Mailbox, Request

if TYPE_CHECKING:
    from mailbot.config import MailboxSettings

log = logging.getLogger(__name__)


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


def folder_place(session: Session, mb: MailboxSettings,
                 uidvalidity: int) -> tuple[int, int] | None:
    """The row's id and last stored UID when it matches the folder already (the usual
    case: nothing to write, so a read-only session will do); None otherwise."""
    known = session.execute(select(Mailbox.id, Mailbox.last_uid).where(
        Mailbox.key == mb.key, Mailbox.uidvalidity == uidvalidity,
        Mailbox.address == mb.address)).first()
    return None if known is None else (known[0], known[1])


def match_folder(session: Session, mb: MailboxSettings, uidvalidity: int) -> tuple[int, int]:
    """The row made to match the folder (created, its address updated, its UIDs forgotten
    after a UIDVALIDITY change); its id and last stored UID."""
    row = mailbox_row(session, mb)
    if row.uidvalidity != uidvalidity:
        if row.uidvalidity is not None:
            log.warning("%s: UIDVALIDITY changed %s -> %s; reading the folder again "
                        "(Message-IDs keep stored mail from repeating)", mb.key,
                        row.uidvalidity, uidvalidity)
            # Old UIDs mean nothing now: their moves cannot be done by UID.
            for req in session.scalars(select(Request).where(
                    Request.mailbox_id == row.id, Request.pending_move.is_not(None),
                    Request.uidvalidity != uidvalidity)):
                req.pending_move = None
        row.uidvalidity, row.last_uid = uidvalidity, 0
    return row.id, row.last_uid


def record_poll(session: Session, mailbox_id: int, *, caught_up_to: datetime) -> None:
    """A complete poll: everything the server held at ``caught_up_to`` is stored."""
    row = session.get(Mailbox, mailbox_id)
    assert row is not None
    row.last_poll_at, row.last_error = utcnow(), None
    row.caught_up_to = caught_up_to


def record_mailbox_error(sessions: sessionmaker[Session], mb: MailboxSettings,
                         error: str) -> None:
    """Shows staff (status, dashboard) that a mailbox cannot be read; never raises."""
    try:
        with sessions.begin() as session:
            mailbox_row(session, mb).last_error = error[:1000]
    except Exception:
        log.exception("could not record the error of %s", mb.key)
