"""Intake from IMAP (imapclient): fetch what arrived since the last UID, store, then move.

The mailbox row remembers UIDVALIDITY and the last UID stored, in the same commit as the
stored requests, so nothing is fetched twice and nothing is skipped. Mail is moved (or
flagged) only after that commit; a crash in between leaves ``pending_move`` on the rows and
the next poll finishes the moves first. A new UIDVALIDITY starts again from UID 1; the
Message-ID check keeps already stored mail from becoming a second request.
"""

from __future__ import annotations

import logging
import ssl
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.exc import OperationalError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from mailbot import offload
from mailbot.clock import utcnow
from mailbot.config import MailboxSettings, Settings
from mailbot.db.batches import chunks, in_chunks, insert_rows
from mailbot.db.models import MID_POLL, Mailbox, Request
from mailbot.db.session import reading
from mailbot.intake.parse import ParsedMail, parse_mail, parse_messages, plausible_date
from mailbot.intake.store import (
    SEEN_ONLY,
    POLL_WORKERS,
    PollReport,
    ingest,
    known_message_ids,
    mailbox_row,
    message_id_of,
    poll_each,
    set_aside_alone,
)

log = logging.getLogger(__name__)

FETCH_CHUNK = 200
# A burst's first chunk is at most this big and is stored as soon as it is read (parsed
# here: the workers are still starting), so a start stores mail within a second of the
# poll beginning, however often the process is killed (a crash loop, cron with a timeout).
FIRST_CHUNK = 50
DATES_CHUNK = 2000  # UIDs a FETCH of arrival times names (under Dovecot's 64 KB line)


def connect(mb: MailboxSettings) -> IMAPClient:
    # Certificates and host names are verified; ca_file only changes whom we trust.
    context = ssl.create_default_context(cafile=mb.ca_file) if (mb.ssl or mb.starttls) \
        else None
    client = IMAPClient(mb.host, port=mb.port, ssl=mb.ssl, ssl_context=context,
                        timeout=mb.timeout)
    try:
        if mb.starttls:
            # Raises (before any LOGIN) when the server offers no STARTTLS: no plaintext.
            client.starttls(context)
        client.login(mb.username or "", mb.password or "")
    except BaseException:
        # Otherwise the socket stays open until the garbage collector finds it.
        try:
            client.shutdown()
        except OSError:
            pass
        raise
    # Aware datetimes for INTERNALDATE, never the machine's local time.
    client.normalise_times = False
    return client


def _aware(dt: datetime) -> datetime:
    """An INTERNALDATE as an aware instant (a zone-less one is UTC). One no mail can have
    (Dovecot takes an APPEND dated 1969 and reports a file's mtime of year 1 as 2105) is
    taken as arriving now, when the poll saw it: stored as year 1 it would come first in
    the queue, or fail to store; as 2105 it would wait for its turn until 2105."""
    when = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    now = utcnow()
    if plausible_date(when, now=now):
        return when
    log.warning("INTERNALDATE %s is no mail's arrival; taken as arriving now", when)
    return now


class _Folders:
    """Server folder names (configured with '/', the server may use another delimiter)."""

    def __init__(self, client: IMAPClient) -> None:
        self.client = client
        listing = client.list_folders(pattern="")
        delim = listing[0][1] if listing and listing[0][1] else b"/"
        self.delimiter = delim.decode() if isinstance(delim, bytes) else delim
        self.known: set[str] = set()

    def ensure(self, name: str) -> str:
        server_name = name.replace("/", self.delimiter)
        if server_name not in self.known:
            if not self.client.folder_exists(server_name):
                try:
                    self.client.create_folder(server_name)
                except IMAPClientError as exc:
                    # Another process (reading the same mailbox) created it just now.
                    if "ALREADYEXISTS" not in str(exc):
                        raise
                try:
                    self.client.subscribe_folder(server_name)
                except Exception:  # subscriptions are a convenience for staff only
                    pass
            self.known.add(server_name)
        return server_name


def _gone_already(exc: Exception) -> bool:
    """Another process (or staff) already moved or expunged these messages."""
    return "EXPUNGEISSUED" in str(exc) or "NONEXISTENT" in str(exc)


def _move(client: IMAPClient, folders: _Folders, uids: list[int], target: str) -> None:
    try:
        _move_now(client, folders, uids, target)
    except IMAPClientError as exc:
        if not _gone_already(exc):
            raise
        client.noop()  # learn about the expunges, then move whatever is still here
        _move_now(client, folders, uids, target)


def _move_now(client: IMAPClient, folders: _Folders, uids: list[int], target: str) -> None:
    if not uids:
        return
    if target == SEEN_ONLY:
        client.add_flags(uids, [b"\\Seen"], silent=True)
        return
    server_name = folders.ensure(target)
    if client.has_capability("MOVE"):
        client.move(uids, server_name)
        return
    client.copy(uids, server_name)
    client.add_flags(uids, [b"\\Deleted"], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        # A plain EXPUNGE would also remove mail staff marked deleted: leave ours flagged.
        log.warning("server has neither MOVE nor UIDPLUS: %d handled mail(s) copied and "
                    "flagged \\Deleted, not expunged", len(uids))


def _finish_moves(client: IMAPClient, folders: _Folders, sessions: sessionmaker[Session],
                  mailbox_id: int, uidvalidity: int, *,
                  moved_ids: list[int] | None = None) -> int:
    """Moves the mailbox's stored mail still to be moved; the number moved.

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
        _move(client, folders, [uid for _, uid in items], target)
        if moved_ids is not None:
            moved_ids.extend(rid for rid, _ in items)
        else:
            with sessions.begin() as session:
                _moved(session, [rid for rid, _ in items])
        moved += len(items)
    return moved


def _moved(session: Session, request_ids: list[int]) -> None:
    for ids in in_chunks(request_ids):
        session.execute(update(Request).where(Request.id.in_(ids)).values(pending_move=None))


def _mailbox_for_poll(sessions: sessionmaker[Session], mb: MailboxSettings,
                      uidvalidity: int) -> tuple[int, int]:
    """The mailbox row's id and last stored UID, the row made to match the folder first
    (created, its address updated, its UIDs forgotten after a UIDVALIDITY change). Read
    without a write (the usual case: nothing changed) where it can be."""
    with reading(sessions) as session:
        known = session.execute(select(Mailbox.id, Mailbox.last_uid).where(
            Mailbox.key == mb.key, Mailbox.uidvalidity == uidvalidity,
            Mailbox.address == mb.address)).first()
    if known is not None:
        return known[0], known[1]
    with sessions.begin() as session:
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


def poll_mailbox(sessions: sessionmaker[Session], settings: Settings, mb: MailboxSettings,
                 *, client: IMAPClient | None = None) -> PollReport:
    """Stores every new mail of one mailbox folder; moves it once stored."""
    report = PollReport(mb.key)
    own_client = client is None
    client = client or connect(mb)
    try:
        info = client.select_folder(mb.folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        folders = _Folders(client)
        mailbox_id, last_uid = _mailbox_for_poll(sessions, mb, uidvalidity)
        report.moved += _finish_moves(client, folders, sessions, mailbox_id, uidvalidity)

        # Everything the server held when this poll started will have been stored: the
        # decide stage serves a library only up to its mailboxes' oldest such moment.
        poll_started = utcnow()
        # "n:*" always matches the highest UID, even one below n: filter.
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        # A burst of several chunks: the stored ones are moved on a second connection while
        # this one fetches the next (the server does the moving meanwhile).
        mover = _Mover(sessions, mb, mailbox_id, uidvalidity) if len(uids) > FETCH_CHUNK \
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

        def store(chunk: list[int], mails: list[tuple[int, datetime, bytes]],
                  parsed: ParsedAhead | None) -> None:
            done = chunk[-1] == uids[-1]
            if done:
                horizon = poll_started
            elif chunk[-1] in unread_from:
                horizon = min(unread_from[chunk[-1]], poll_started)
            else:
                horizon = MID_POLL
            duplicates = store_chunk(
                sessions, settings, mb, mailbox_id, uidvalidity, mails,
                last_uid=max(chunk), report=report, caught_up_to=horizon,
                parsed=parsed.result() if parsed is not None else None)
            if mover is not None:
                mover.submit(duplicates)
                return
            for target, dup_uids in duplicates.items():
                _move(client, folders, dup_uids, target)
            # (one chunk: the poll's last commit, below, marks them moved)
            report.moved += _finish_moves(client, folders, sessions, mailbox_id,
                                          uidvalidity, moved_ids=moved_ids)

        try:
            # In a burst, each chunk but the first is parsed by worker processes while the
            # next one is fetched, and stored after that; the first (FIRST_CHUNK) is
            # stored at once.
            waiting: tuple[list[int], list[tuple[int, datetime, bytes]],
                           ParsedAhead | None] | None = None
            card_pattern = settings.library(mb.library).card_pattern
            planned = poll_chunks(uids)
            for n, chunk in enumerate(planned):
                if n == 1:  # a burst, its first chunk stored: the rest's arrival times
                    arrived = _arrivals(client, uids[len(planned[0]):])
                    unread_from = _unread_from(arrived, uids)
                messages = _fetch(client, chunk, settings.max_message_bytes, arrived)
                mails = [(uid, *messages[uid]) for uid in chunk if uid in messages]
                if mover is None or n == 0:
                    store(chunk, mails, None)
                    continue
                ahead = ParsedAhead(mails, settings.max_message_bytes, card_pattern)
                if waiting is not None:
                    store(*waiting)
                waiting = (chunk, mails, ahead)
            if waiting is not None:
                store(*waiting)
        finally:
            if mover is not None:
                report.moved += mover.close()  # raises what a move raised
        with sessions.begin() as session:
            _moved(session, moved_ids)
            row = session.get(Mailbox, mailbox_id)
            assert row is not None
            row.last_poll_at, row.last_error = utcnow(), None
            row.caught_up_to = poll_started
    finally:
        if own_client:
            try:
                client.logout()
            except Exception:
                pass
    return report


class _Mover:
    """Moves stored mail on its own connection, chunk after chunk, in order.

    Moving is the server's work (~0.1 ms a mail for Dovecot); on a second connection it
    runs while the poll fetches and stores the next chunk. Mail not moved yet keeps its
    ``pending_move``, so a failure or a crash leaves it to the next poll, as before."""

    def __init__(self, sessions: sessionmaker[Session], mb: MailboxSettings,
                 mailbox_id: int, uidvalidity: int) -> None:
        self.sessions, self.mb = sessions, mb
        self.mailbox_id, self.uidvalidity = mailbox_id, uidvalidity
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"move-{mb.key}")
        self.client: IMAPClient | None = None
        self.folders: _Folders | None = None
        self.done: list[Future[int]] = []

    def submit(self, duplicates: dict[str, list[int]]) -> None:
        self.done.append(self.pool.submit(self._move, duplicates))

    def _move(self, duplicates: dict[str, list[int]]) -> int:
        if self.client is None:
            self.client = connect(self.mb)
            info = self.client.select_folder(self.mb.folder)
            if int(info[b"UIDVALIDITY"]) != self.uidvalidity:
                raise IMAPClientError(f"{self.mb.key}: UIDVALIDITY changed during the poll")
            self.folders = _Folders(self.client)
        assert self.folders is not None
        for target, dup_uids in duplicates.items():
            _move(self.client, self.folders, dup_uids, target)
        return _finish_moves(self.client, self.folders, self.sessions, self.mailbox_id,
                             self.uidvalidity)

    def close(self) -> int:
        """Waits for every move; the number moved, or the first error."""
        try:
            return sum(future.result() for future in self.done)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            if self.client is not None:
                try:
                    self.client.logout()
                except Exception:
                    pass


def store_chunk(sessions: sessionmaker[Session], settings: Settings, mb: MailboxSettings,
                mailbox_id: int, uidvalidity: int,
                mails: list[tuple[int, datetime, bytes]], *, last_uid: int,
                report: PollReport, caught_up_to: datetime | None = None,
                parsed: dict[int, ParsedMail | None] | None = None
                ) -> dict[str, list[int]]:
    """Stores fetched mails and the mailbox's new last UID in one commit.

    Should the database refuse the batch, each mail is stored on its own, so one mail the
    database cannot take is set aside for staff (store.set_aside_alone: a row in state
    ``error``, or, should even that be refused, nothing stored, an error in the log and the
    mail moved to the manual folder) instead of blocking the mailbox forever.
    Returns the duplicates' UIDs by the folder they must go to.
    """
    try:
        return _store(sessions, settings, mb, mailbox_id, uidvalidity, mails, last_uid, report,
                      caught_up_to, parsed)
    except OperationalError:
        raise  # the database is busy or gone: not a bad mail; nothing may be skipped
    except Exception:
        log.exception("%s: storing %d mail(s) together failed; storing one by one", mb.key,
                      len(mails))
    duplicates: dict[str, list[int]] = defaultdict(list)
    for mail in mails:
        try:
            for target, uids in _store(sessions, settings, mb, mailbox_id, uidvalidity, [mail],
                                       mail[0], report).items():
                duplicates[target] += uids
        except OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - this mail only: set aside for staff
            uid, received_at, raw = mail
            aside = set_aside_alone(sessions, mb, mailbox_id, uidvalidity=uidvalidity,
                                    uid=uid, received_at=received_at, raw=raw,
                                    now=utcnow(), exc=exc)
            if aside is None:
                continue  # another process stored it meanwhile, and moves it
            report.fetched += 1
            if aside.request_id is None:
                # A copy of a mail already set aside, or nothing at all could be stored:
                # moved to the manual folder now (a stored row is moved by its
                # pending_move with the rest).
                duplicates[aside.move_to].append(uid)
                if aside.duplicate:
                    report.duplicates += 1
                else:
                    report.errors.append(f"uid {uid} could not be stored; moved to "
                                         f"{aside.move_to}")
            else:
                report.stored += 1
    with sessions.begin() as session:
        row = session.get(Mailbox, mailbox_id)
        assert row is not None
        row.last_uid = max(row.last_uid, last_uid)
        if caught_up_to is not None:
            row.caught_up_to = caught_up_to
    return duplicates


def _store(sessions: sessionmaker[Session], settings: Settings, mb: MailboxSettings,
           mailbox_id: int, uidvalidity: int, mails: list[tuple[int, datetime, bytes]],
           last_uid: int, report: PollReport, caught_up_to: datetime | None = None,
           parsed: dict[int, ParsedMail | None] | None = None) -> dict[str, list[int]]:
    duplicates: dict[str, list[int]] = defaultdict(list)
    fetched = stored = dups = 0
    with sessions.begin() as session:
        # Locked: another process reading the same mailbox waits here, then skips what
        # this one stored (no second request, no unique-constraint failure).
        row = session.get(Mailbox, mailbox_id, with_for_update=True)
        assert row is not None
        now = utcnow()
        stored_before = row.last_uid
        fresh = [(uid, internaldate, raw,
                  parsed[uid] if parsed and parsed.get(uid) is not None
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
            fetched += 1
            if result.duplicate:
                duplicates[result.move_to].append(uid)
                dups += 1
            else:
                stored += 1
        if rows:
            insert_rows(session, Request.__table__, rows)
        row.last_uid = max(row.last_uid, last_uid)
        if caught_up_to is not None:
            row.caught_up_to = caught_up_to
    report.fetched += fetched
    report.stored += stored
    report.duplicates += dups
    return duplicates


def _arrivals(client: IMAPClient, uids: list[int]) -> dict[int, datetime]:
    """Every UID's arrival (INTERNALDATE), asked for first in a burst; {} if they cannot be
    had. Mail gone meanwhile (another process moved it) has none."""
    found: dict[int, Any] = {}
    try:
        # A few thousand UIDs a command: a longer list passes servers' line limits.
        for part in chunks(uids, DATES_CHUNK):
            found.update(client.fetch(part, ["INTERNALDATE"]))
    except IMAPClientError as exc:
        log.warning("arrival times of the burst not read (%s); deciding waits for the "
                    "whole poll", exc)
        return {}
    return {uid: _aware(data[b"INTERNALDATE"]) for uid, data in found.items()
            if b"INTERNALDATE" in data}


def poll_chunks(uids: list[int]) -> list[list[int]]:
    """The chunks a poll fetches and stores, in order (a burst's first one small)."""
    if len(uids) <= FETCH_CHUNK:
        return [uids] if uids else []
    first = min(FIRST_CHUNK, FETCH_CHUNK)
    return [uids[:first], *chunks(uids[first:], FETCH_CHUNK)]


def _unread_from(dates: dict[int, datetime], uids: list[int]) -> dict[int, datetime]:
    """For each chunk's last UID: the earliest arrival among the UIDs after it, i.e. what
    is still unread once the poll has stored up to that chunk. Mail without a date (gone
    meanwhile) holds nothing back: it is stored by whoever moved it. {} without dates (the
    poll then holds the library until it is complete)."""
    if not dates:
        return {}
    out: dict[int, datetime] = {}
    earliest: datetime | None = None
    for chunk in reversed(poll_chunks(uids)):
        if earliest is not None:
            out[chunk[-1]] = earliest
        for uid in chunk:
            if uid in dates and (earliest is None or dates[uid] < earliest):
                earliest = dates[uid]
    return out


class ParsedAhead:
    """A chunk's mails parsed by the worker processes (mailbot/offload.py) meanwhile;
    ``result`` is {uid: parse}, with no entry where that was not possible (the mail is
    then parsed here, as without workers)."""

    def __init__(self, mails: list[tuple[int, datetime, bytes]], max_bytes: int,
                 card_pattern: str | None = None) -> None:
        self.uids = [uid for uid, _d, _r in mails]
        # With the library's card pattern, the workers also find the card and the name,
        # which deciding needs (parse.read_mail).
        self.future = offload.submit(parse_messages, [raw for _u, _d, raw in mails],
                                     max_bytes, card_pattern)

    def result(self) -> dict[int, ParsedMail | None]:
        # Not started yet (the workers are still starting up): parsed here instead.
        if self.future is None or self.future.cancel():
            return {}
        try:
            return dict(zip(self.uids, self.future.result()))
        except Exception as exc:  # lost workers: parsed here instead
            log.warning("parsing workers failed (%s); parsing in place", type(exc).__name__)
            return {}


def _parse_or_none(raw: bytes, settings: Settings) -> ParsedMail | None:
    """Parsed once here for the whole chunk; a mail that fails is left to ingest, which
    sets it aside for staff."""
    try:
        return parse_mail(raw, max_bytes=settings.max_message_bytes)
    except Exception:
        return None


def _fetch(client: IMAPClient, uids: list[int], max_bytes: int,
           arrived: dict[int, datetime] | None = None) -> dict[int, tuple[datetime, bytes]]:
    """INTERNALDATE and the raw mail; oversized mail only up to ``max_bytes`` (flat memory).
    The INTERNALDATEs a burst asked for first (``arrived``) are not asked for again (a
    message's INTERNALDATE never changes).

    Mail another process moved away meanwhile is simply not there any more."""
    known = {uid: arrived[uid] for uid in uids} \
        if arrived and all(uid in arrived for uid in uids) else None
    try:
        return _fetch_now(client, uids, max_bytes, known)
    except IMAPClientError as exc:
        if not _gone_already(exc):
            raise
        client.noop()
        return _fetch_now(client, uids, max_bytes, known)


def _fetch_now(client: IMAPClient, uids: list[int], max_bytes: int,
               known: dict[int, datetime] | None) -> dict[int, tuple[datetime, bytes]]:
    # One FETCH for the chunk: a partial fetch returns a small mail whole and a large one
    # only up to max_bytes, so no separate size query is needed.
    part = f"BODY.PEEK[]<0.{max_bytes}>"
    out: dict[int, tuple[datetime, bytes]] = {}
    for uid, data in client.fetch(uids, [part] if known else ["INTERNALDATE", part]).items():
        key = next((k for k in data if k.startswith(b"BODY[]")), None)
        if known is not None and (uid not in known or key is None):
            continue  # an unasked-for FETCH (another session's flag change, say)
        arrived = known[uid] if known is not None else _aware(data[b"INTERNALDATE"])
        out[uid] = (arrived, data.get(key) or b"")
    return out


def poll_all(sessions: sessionmaker[Session], settings: Settings) -> list[PollReport]:
    """Polls every configured IMAP mailbox, several at once; one failing mailbox does not
    stop the others."""
    return poll_each(sessions, settings, "imap", poll_mailbox, workers=POLL_WORKERS)
