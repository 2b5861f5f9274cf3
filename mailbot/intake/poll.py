"""Reading the mailboxes: one IMAP mailbox's poll, and every mailbox's, several at once.

A poll stores every new mail of the folder (intake/store.py) and moves it once stored
(intake/imap.py). The mailbox row (db/mailboxes.py) remembers UIDVALIDITY and the last UID
stored, in the same commit as the stored requests, so nothing is fetched twice and nothing
is skipped. Mail is moved (or flagged) only after that commit; a crash in between leaves
``pending_move`` on the rows and the next poll finishes the moves first. A new UIDVALIDITY
starts again from UID 1; the Message-ID check keeps already stored mail from becoming a
second request. A burst (more than one chunk) goes through intake/burst.py.

Each chunk's commit also says up to which arrival its library may be decided while the
rest is read (the mailbox's ``caught_up_to``): the decide stage serves a library only up
to its mailboxes' oldest such moment, so a later arrival can never take the code of an
earlier one not read yet.

A mailbox that fails is shown to staff with the reason and since when (db/mailboxes.py;
intake/failures.py says it plainly). After a refused login the next one waits
(``daemon.auth_retry``, growing): ``poll_each`` does not even connect before then, so a
wrong password is not tried again on every run of a cron job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from imapclient import IMAPClient
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import MailboxSettings, Settings
from mailbot.db import mailboxes
from mailbot.db.models import MID_POLL
from mailbot.db.session import reading
from mailbot.intake import burst, imap, store
from mailbot.intake.parse import ParsedMail
from mailbot.intake.failures import failure_text
from mailbot.intake.store import Fetched, Tally
from mailbot.login.failures import AuthFailure

log = logging.getLogger(__name__)

POLL_WORKERS = 8  # mailboxes read at once by `run --once` (each its own IMAP connection)


@dataclass
class PollReport:
    """What one poll of one mailbox did."""

    mailbox: str
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    moved: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, tally: Tally) -> None:
        self.fetched += tally.fetched
        self.stored += tally.stored
        self.duplicates += tally.duplicates
        self.errors += tally.errors


def _place(sessions: sessionmaker[Session], mb: MailboxSettings,
           uidvalidity: int) -> tuple[int, int]:
    """The mailbox row's id and last stored UID, the row made to match the folder first.
    Read without a write (the usual case: nothing changed) where it can be."""
    with reading(sessions) as session:
        known = mailboxes.folder_place(session, mb, uidvalidity)
    if known is not None:
        return known
    with sessions.begin() as session:
        return mailboxes.match_folder(session, mb, uidvalidity)


def poll_mailbox(sessions: sessionmaker[Session], settings: Settings, mb: MailboxSettings,
                 *, client: IMAPClient | None = None) -> PollReport:
    """Stores every new mail of one mailbox folder; moves it once stored."""
    report = PollReport(mb.key)
    own_client = client is None
    if client is None:
        client = imap.connect(mb)
        mailboxes.record_login_ok(sessions, mb)
    try:
        uidvalidity = imap.open_folder(client, mb.folder)
        folders = imap.Folders(client)
        mailbox_id, last_uid = _place(sessions, mb, uidvalidity)

        def move_here(uids: list[int], target: str) -> None:
            imap.move(client, folders, uids, target)

        report.moved += store.finish_moves(sessions, mailbox_id, uidvalidity, move_here)

        # Everything the server held when this poll started will have been stored: the
        # decide stage serves a library only up to its mailboxes' oldest such moment.
        poll_started = utcnow()
        uids = imap.new_uids(client, last_uid)
        planned = burst.poll_chunks(uids)
        # A burst of several chunks: the stored ones are moved on a second connection while
        # this one fetches the next (the server does the moving meanwhile).
        mover = burst.Mover(sessions, mb, mailbox_id, uidvalidity) if len(planned) > 1 \
            else None
        # Until the last chunk is stored, a later arrival already stored could take the
        # code of an earlier one not yet read: each chunk's commit says up to when the
        # library may be decided. In a burst the arrival times of the rest of the poll are
        # asked for once the first chunk is stored, so each later chunk says the earliest
        # arrival still unread (deciding goes on while the rest is read); without them
        # (and for the first chunk: storing it must not wait for them), nothing (MID_POLL)
        # until the poll is complete.
        arrived: dict[int, datetime] = {}
        unread_from: dict[int, datetime] = {}
        moved_ids: list[int] = []

        def fetch(n: int, chunk: list[int]) -> list[Fetched]:
            nonlocal arrived, unread_from
            if n == 1:  # a burst, its first chunk stored: the rest's arrival times
                arrived = imap.arrivals(client, uids[len(planned[0]):])
                unread_from = _unread_from(arrived, planned)
            messages = imap.fetch(client, chunk, settings.max_message_bytes, arrived)
            return [(uid, *messages[uid]) for uid in chunk if uid in messages]

        def stored(chunk: list[int], mails: list[Fetched],
                   parsed: dict[int, ParsedMail | None] | None) -> None:
            done = chunk[-1] == uids[-1]
            if done:
                horizon = poll_started
            elif chunk[-1] in unread_from:
                horizon = min(unread_from[chunk[-1]], poll_started)
            else:
                horizon = MID_POLL
            tally = store.store_chunk(sessions, settings, mb, mailbox_id, uidvalidity, mails,
                                      last_uid=max(chunk), caught_up_to=horizon,
                                      parsed=parsed)
            report.add(tally)
            if mover is not None:
                mover.submit(tally.to_move)
                return
            for target, dup_uids in tally.to_move.items():
                move_here(dup_uids, target)
            # (one chunk: the poll's last commit, below, marks them moved)
            report.moved += store.finish_moves(sessions, mailbox_id, uidvalidity, move_here,
                                               moved_ids=moved_ids)

        try:
            card_pattern = settings.library(mb.library).card_pattern
            for chunk, mails, parsed in burst.fetched_ahead(
                    planned, fetch, max_bytes=settings.max_message_bytes,
                    card_pattern=card_pattern):
                stored(chunk, mails, parsed)
        finally:
            if mover is not None:
                report.moved += mover.close()  # raises what a move raised
        with sessions.begin() as session:
            store.mark_moved(session, moved_ids)
            mailboxes.record_poll(session, mailbox_id, caught_up_to=poll_started)
    finally:
        if own_client:
            try:
                client.logout()
            except Exception:
                pass
    return report


def _unread_from(dates: dict[int, datetime], planned: list[list[int]]) -> dict[int, datetime]:
    """For each chunk's last UID: the earliest arrival among the UIDs after it, i.e. what
    is still unread once the poll has stored up to that chunk. Mail without a date (gone
    meanwhile) holds nothing back: it is stored by whoever moved it. {} without dates (the
    poll then holds the library until it is complete)."""
    if not dates:
        return {}
    out: dict[int, datetime] = {}
    earliest: datetime | None = None
    for chunk in reversed(planned):
        if earliest is not None:
            out[chunk[-1]] = earliest
        for uid in chunk:
            if uid in dates and (earliest is None or dates[uid] < earliest):
                earliest = dates[uid]
    return out


def poll_each(sessions: sessionmaker[Session], settings: Settings, kind: str,
              poll: Callable[[sessionmaker[Session], Settings, MailboxSettings], PollReport],
              *, workers: int = 1) -> list[PollReport]:
    """Runs ``poll`` on every mailbox of ``kind``; one failing mailbox does not stop the
    others (its error is logged, recorded for staff and put in its report).

    ``workers`` > 1 reads that many mailboxes at once: reading is mostly waiting for the
    mail server (a consortium has hundreds of mailboxes), and each mailbox's rows are
    stored in their own short transactions, so the readers only queue for the commits.
    Reports come back in configuration order."""
    boxes = [mb for mb in settings.mailboxes if mb.type == kind]

    def one(mb: MailboxSettings) -> PollReport:
        retry_at = mailboxes.login_deferred(sessions, mb)
        if retry_at is not None:
            when = retry_at.astimezone(settings.library_tz(mb.library))
            text = f"login refused before; next try at {when:%Y-%m-%d %H:%M:%S %Z}"
            log.warning("%s: %s", mb.key, text)
            return PollReport(mb.key, errors=[text])
        try:
            return poll(sessions, settings, mb)
        except Exception as exc:
            text = failure_text(exc, mb)
            refused = isinstance(exc, AuthFailure)
            health = mailboxes.record_mailbox_error(sessions, mb, text, login_refused=refused,
                                                    daemon=settings.daemon)
            if refused and health.login_retry_at is not None:
                when = health.login_retry_at.astimezone(settings.library_tz(mb.library))
                text += f" (next login at {when:%Y-%m-%d %H:%M:%S %Z})"
            log.error("poll failed: %s", text if refused else f"{mb.key}: {text}")
            return PollReport(mb.key, errors=[text])

    if workers <= 1 or len(boxes) <= 1:
        return [one(mb) for mb in boxes]
    with ThreadPoolExecutor(max_workers=min(workers, len(boxes)),
                            thread_name_prefix="poll") as pool:
        return list(pool.map(one, boxes))


def poll_all(sessions: sessionmaker[Session], settings: Settings) -> list[PollReport]:
    """Polls every configured IMAP mailbox, several at once; one failing mailbox does not
    stop the others."""
    return poll_each(sessions, settings, "imap", poll_mailbox, workers=POLL_WORKERS)
