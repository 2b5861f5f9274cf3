"""The mailbox rows: one per configured mailbox, where intake keeps its place in the folder.

A row remembers the folder's UIDVALIDITY and the last UID stored (written in the same
commit as the stored requests, see intake/store.py), when the mailbox was last read
completely (``caught_up_to``: the decide stage serves a library only up to its mailboxes'
oldest such moment) and the last error, for staff.

It also keeps the mailbox's health, shared by every process reading it: since when it has
been failing (``down_since``: after ``daemon.mailbox_grace`` its library is decided
without it, decide/horizon.py) and, after a refused login, when the next login may be
tried (``login_retry_at``, growing with each refusal in a row: providers lock accounts
that keep trying a wrong secret, and a cron job running ``run --once`` every minute must
not do so either).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import as_aware, utcnow
from mailbot.db.models import Mailbox, Request
from mailbot.db.readonly import read_only
from mailbot.login import fingerprint
from mailbot.login.failures import login_wait

if TYPE_CHECKING:
    from mailbot.config import DaemonSettings, MailboxSettings

log = logging.getLogger(__name__)


def _reading(sessions: sessionmaker[Session]) -> Session:
    """A session that only reads (no SQLite write lock: see db.readonly)."""
    return Session(read_only(sessions.kw["bind"]))


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
    """A complete poll: everything the server held at ``caught_up_to`` is stored. The
    mailbox is well again (it holds its library's decisions again, and its next login is
    not put off)."""
    row = session.get(Mailbox, mailbox_id)
    assert row is not None
    row.last_poll_at, row.last_error = utcnow(), None
    row.caught_up_to = caught_up_to
    row.down_since = None
    row.login_failures, row.login_retry_at, row.login_refused_for = 0, None, None


class Health(NamedTuple):
    """A mailbox's health as its row has it: failing since (None: it works) and when the
    next login may be tried (None: now)."""

    down_since: datetime | None
    login_retry_at: datetime | None


def read_health(sessions: sessionmaker[Session], mb: MailboxSettings) -> Health:
    """The row's health; the login wait only while the credentials configured now are
    the ones refused (IT's corrected password is tried at once)."""
    with _reading(sessions) as session:
        row = session.execute(select(Mailbox.down_since, Mailbox.login_retry_at,
                                     Mailbox.login_refused_for)
                              .where(Mailbox.key == mb.key)).first()
    if row is None:
        return Health(None, None)
    down, retry_at, refused_for = row
    if refused_for is not None and refused_for != fingerprint.credentials(mb):
        retry_at = None
    return Health(*(as_aware(t) if t is not None else None for t in (down, retry_at)))


def login_deferred(sessions: sessionmaker[Session], mb: MailboxSettings,
                   now: datetime | None = None) -> datetime | None:
    """When the mailbox may next try to log in, if that is still to come (its last logins
    were refused); None: log in now."""
    retry_at = read_health(sessions, mb).login_retry_at
    return retry_at if retry_at is not None and retry_at > (now or utcnow()) else None


def record_login_ok(sessions: sessionmaker[Session], mb: MailboxSettings) -> None:
    """The server took our credentials: refusals before no longer count, and a mailbox
    that was down is being read again (its ``last_error`` cleared, ``down_since`` kept
    until the poll is complete): it holds its library's decisions again, so that its mail
    is decided in arrival order among what is still undecided (decide/horizon.py). A read
    only, when it was well (a daemon logs in again after every network hiccup)."""
    with _reading(sessions) as session:
        row = session.execute(select(Mailbox.login_failures, Mailbox.last_error)
                              .where(Mailbox.key == mb.key)).first()
    if row is None or not (row[0] or row[1]):
        return
    try:
        with sessions.begin() as session:
            row = mailbox_row(session, mb)
            row.login_failures, row.login_retry_at, row.login_refused_for = 0, None, None
            row.last_error = None
    except Exception:
        log.exception("could not record the login of %s", mb.key)


def record_mailbox_error(sessions: sessionmaker[Session], mb: MailboxSettings,
                         error: str, *, login_refused: bool = False,
                         daemon: DaemonSettings | None = None,
                         now: datetime | None = None) -> Health:
    """Shows staff (status, dashboard) that a mailbox cannot be read, since when
    (``down_since``: its first failure after a good poll); never raises.

    ``login_refused`` (the server refused our credentials): the next login is put off by
    ``login_wait`` with ``daemon``'s settings. Returns the mailbox's health as written
    (when the write failed: as it would have been, so the caller still waits)."""
    now = now or utcnow()
    retry_at = None
    try:
        with sessions.begin() as session:
            # Locked (PostgreSQL): two processes refused at once count two refusals.
            row = session.scalar(select(Mailbox).where(Mailbox.key == mb.key)
                                 .with_for_update()) or mailbox_row(session, mb)
            row.last_error = error[:1000]
            row.down_since = row.down_since or now
            if login_refused and daemon is not None:
                tried = fingerprint.credentials(mb)
                # New credentials refused too: their own first refusal.
                same = row.login_refused_for in (None, tried)
                row.login_failures = (row.login_failures or 0) + 1 if same else 1
                row.login_refused_for = tried
                row.login_retry_at = retry_at = now + timedelta(
                    seconds=login_wait(row.login_failures, daemon))
            return Health(as_aware(row.down_since), retry_at)
    except Exception:
        log.exception("could not record the error of %s", mb.key)
        if login_refused and daemon is not None:
            retry_at = now + timedelta(seconds=daemon.auth_retry)
        return Health(now, retry_at)
