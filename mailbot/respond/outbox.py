"""The outbox's bookkeeping: which replies are due, who sends them, and what became of each.

Each row is marked sent in its own commit right after the relay accepted it. A crash
between the two can at worst send that one reply again, with the same Message-ID. On
PostgreSQL several processes may send from one outbox: rows are claimed with advisory locks
(see _send_rows_claimed); on SQLite one process at a time holds the sender lock
(sender_lock.py). A 4xx or a dropped connection leaves the row pending for a later try
(retry_delay); a 5xx marks it failed for staff.

The loop works on plain rows and single Core statements (no ORM unit of work): in a burst
it sends thousands of replies, and each one's bookkeeping must cost far less than sending.
The wire is smtp.py's, the overlapping of lanes deliver.py's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, case, func, select, text, type_coerce
from sqlalchemy import update as sa_update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import SmtpSettings
from mailbot.db import tuning
from mailbot.db.models import Outbox, UTCDateTime
from mailbot.db.readonly import read_only
from mailbot.db.session import reading, sqlite_write
from mailbot.outcomes import OutboxState
from mailbot.respond.deliver import deliver
from mailbot.respond.sender_lock import WAIT_STEP, SenderLock, lock_path
from mailbot.respond.smtp import Transport, TransportError, transport_for

log = logging.getLogger(__name__)


@dataclass
class SendReport:
    """What one sending round did (send_due), or a whole run's rounds (send_while)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unreachable: bool = False
    tried: set[int] = field(default_factory=set)  # outbox ids attempted
    held: int = 0  # due rows skipped because another process is sending them (PostgreSQL)


@dataclass(frozen=True)
class Pending:
    """What sending one outbox row needs (read without the ORM)."""

    id: int
    request_id: int | None
    kind: str
    outcome: str | None
    mail_from: str
    to_address: str
    message: bytes
    attempts: int
    created_at: datetime


_PENDING = (Outbox.id, Outbox.request_id, Outbox.kind, Outbox.outcome, Outbox.mail_from,
            Outbox.to_address, Outbox.message, Outbox.attempts, Outbox.created_at)
PAGE = 100  # rows read at once (SQLite), so memory stays flat in a burst
# Advisory lock keys (two-integer form, which never meets the decide stage's one-bigint
# keys): the outbox, then the row id. pg_locks shows a sender's claims under this classid.
OUTBOX_LOCKS = 0x6D62  # "mb"
_CLAIM = text(f"SELECT id, pg_try_advisory_lock({OUTBOX_LOCKS}, id) "
              "FROM unnest(CAST(:ids AS integer[])) AS id")
_RELEASE = text(f"SELECT pg_advisory_unlock({OUTBOX_LOCKS}, id) "
                "FROM unnest(CAST(:ids AS integer[])) AS id")
_STILL_PENDING = sa_update(Outbox).where(Outbox.id == bindparam("oid"),
                                         Outbox.state == OutboxState.PENDING)


def retry_delay(attempts: int, backoff_max: float) -> timedelta:
    """30 s, 1 min, 2 min … after the 1st, 2nd, 3rd failure, at most ``backoff_max``."""
    return timedelta(seconds=min(backoff_max, 30.0 * 2 ** max(0, attempts - 1)))


async def send_due(sessions: sessionmaker[Session], smtp: SmtpSettings, *,
                   now: datetime | None = None,
                   transport: Transport | None = None,
                   honour_retry: bool = False, retry_for: float | None = None,
                   backoff_max: float = 1800.0,
                   should_stop: Callable[[], bool] = lambda: False,
                   skip: set[int] | None = None, wait: bool = True) -> SendReport:
    """Sends every pending reply that is due (except the ids in ``skip``); returns counts.

    ``honour_retry`` (the daemon) waits out each row's pause after a temporary failure and
    gives up after ``retry_for`` seconds; ``run --once`` simply tries every due row again.
    On SQLite, while another process sends from the outbox (sender_lock), this waits for
    it to finish, or with ``wait=False`` returns at once with the due rows counted as
    ``held``.
    """
    report = SendReport()
    now = now or utcnow()
    with reading(sessions) as session:
        stmt = select(Outbox.id).where(Outbox.state == OutboxState.PENDING,
                                       Outbox.due_at <= now)
        if honour_retry:
            stmt = stmt.where((Outbox.retry_at.is_(None)) | (Outbox.retry_at <= now))
        ids = session.scalars(stmt.order_by(Outbox.due_at, Outbox.id)).all()
    if skip:
        ids = [i for i in ids if i not in skip]
    if not ids:
        return report
    path = lock_path(sessions.kw["bind"])
    lock = SenderLock(path) if path is not None else None
    if lock is not None and not await _take(lock, wait=wait, should_stop=should_stop):
        report.held = len(ids)
        return report
    try:
        if transport is None:
            async with transport_for(smtp) as own:
                return await _send_rows(sessions, own, ids, report, retry_for=retry_for,
                                        backoff_max=backoff_max, should_stop=should_stop)
        return await _send_rows(sessions, transport, ids, report, retry_for=retry_for,
                                backoff_max=backoff_max, should_stop=should_stop)
    finally:
        if lock is not None:
            lock.release()


async def _take(lock: SenderLock, *, wait: bool, should_stop: Callable[[], bool]) -> bool:
    """The SQLite outbox's sender lock: True once held; False if another process holds it
    and we may not wait (or are stopping)."""
    told = False
    while not lock.try_acquire():
        if not wait or should_stop():
            log.debug("not sending now: %s", lock.holder())
            return False
        if not told:
            log.info("waiting to send: %s", lock.holder())
            told = True
        await asyncio.sleep(WAIT_STEP)
    return True


async def send_while(sessions: sessionmaker[Session], smtp: SmtpSettings,
                     deciding: threading.Event, *, now: datetime | None = None) -> SendReport:
    """Sends replies as they are decided, until ``deciding`` is cleared; then one last round.

    For ``run --once``: the burst's replies go out while later requests are still being
    read and decided (on PostgreSQL each row is claimed with an advisory lock; on SQLite
    this is the run's only sender, and each mark is its own short transaction). One
    transport (its SMTP connections) throughout."""
    total = SendReport()
    async with transport_for(smtp) as transport:
        while True:
            last = not deciding.is_set()
            # A reply tried once in this run (and deferred) waits for the next run, as it
            # would without the overlap.
            report = await send_due(sessions, smtp, now=now, transport=transport,
                                    skip=total.tried)
            total.tried |= report.tried
            total.sent += report.sent
            total.deferred += report.deferred
            total.failed += report.failed
            total.unreachable = report.unreachable
            if last:
                return total
            if report.deferred or report.unreachable:
                # The relay is in trouble: try once more when deciding is done, as a
                # run without this overlap would.
                while deciding.is_set():
                    await asyncio.sleep(0.05)
            elif report.sent == 0:
                await asyncio.sleep(0.05)  # nothing decided since the last look


async def _send_rows(sessions: sessionmaker[Session], transport: Transport,
                     ids: Sequence[int], report: SendReport, *, retry_for: float | None,
                     backoff_max: float, should_stop: Callable[[], bool]) -> SendReport:
    engine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        return await _send_rows_claimed(engine, transport, ids, report, retry_for=retry_for,
                                        backoff_max=backoff_max, should_stop=should_stop)
    # SQLite: this process holds the outbox's sender lock (send_due), so no other process
    # sends these rows meanwhile, and each page's rows are read after it was taken. Rows
    # are read a page at a time on a reading
    # connection (no write lock: a burst's decide batches and stored chunks hold it in
    # turn, and the page must not wait for them), outside any transaction while the relay
    # answers, and each reply is marked in its own short transaction.
    with engine.connect() as conn, read_only(engine).connect() as reader:
        mark_sent = _sent_marker(conn)

        def record(row: Pending, error: TransportError | None) -> None:
            if error is None:
                _record_sent(mark_sent, row, report)  # one auto-committed statement
                return
            with conn.begin():
                _record(conn, row, error, report, retry_for, backoff_max)

        for start in range(0, len(ids), PAGE):
            page = ids[start:start + PAGE]
            with reader.begin():
                found = {row.id: Pending(*row) for row in reader.execute(
                    select(*_PENDING).where(Outbox.id.in_(page),
                                            Outbox.state == OutboxState.PENDING))}
            rows = [found[i] for i in page if i in found]
            if await deliver(transport, rows, record, should_stop):
                report.unreachable = True
                return report
            if should_stop():
                return report
    return report


async def _send_rows_claimed(engine: Engine, transport: Transport,
                             ids: Sequence[int], report: SendReport, *,
                             retry_for: float | None, backoff_max: float,
                             should_stop: Callable[[], bool]) -> SendReport:
    """PostgreSQL, where several processes may send from one outbox.

    A page of rows is claimed with session advisory locks (pg_try_advisory_lock): a row
    another process holds is skipped, and a killed process's locks go with its connection,
    so the others take its rows over. The rows' state is read after the locks are held, so
    a row another process sent meanwhile is seen as sent. Each reply is then marked in its
    own autocommitted statement right after the relay accepted it.
    """
    with engine.connect() as plain:
        conn = plain.execution_options(isolation_level="AUTOCOMMIT")
        # One short mark per reply, under the hand-over lock.
        with tuning.many_marks(conn):
            try:
                mark_sent = _sent_marker(conn)

                def record(row: Pending, error: TransportError | None) -> None:
                    if error is None:
                        _record_sent(mark_sent, row, report)
                        return
                    _record(conn, row, error, report, retry_for, backoff_max)

                for start in range(0, len(ids), PAGE):
                    page = list(ids[start:start + PAGE])
                    claimed = [oid for oid, got in conn.execute(_CLAIM, {"ids": page}) if got]
                    report.held += len(page) - len(claimed)
                    rows = [Pending(*row) for row in conn.execute(
                        select(*_PENDING).where(Outbox.id.in_(claimed),
                                                Outbox.state == OutboxState.PENDING)
                        .order_by(Outbox.due_at, Outbox.id))] if claimed else []
                    if await deliver(transport, rows, record, should_stop):
                        report.unreachable = True
                        return report
                    if claimed:
                        conn.execute(_RELEASE, {"ids": claimed})
                    if should_stop():
                        return report
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock_all()"))
                except DBAPIError:
                    pass  # the connection is gone, and its locks with it
    return report


def _record(conn: Connection, row: Pending, error: TransportError,
            report: SendReport, retry_for: float | None, backoff_max: float) -> None:
    """Marks one failed attempt on its row: failed for staff, or deferred with a pause.

    Only a row still pending is changed (staff may have cancelled it meanwhile)."""
    now = utcnow()
    attempts = row.attempts + 1
    report.tried.add(row.id)
    last_error = str(error)[:1000]
    expired = retry_for is not None and (now - row.created_at).total_seconds() > retry_for
    if error.permanent or expired:
        conn.execute(_STILL_PENDING.values(state=OutboxState.FAILED, attempts=attempts,
                                           last_error=last_error), {"oid": row.id})
        report.failed += 1
        log.warning("outbox=%s request=%s failed%s: %s", row.id, row.request_id,
                    " (gave up retrying)" if not error.permanent else "", error)
    else:
        conn.execute(_STILL_PENDING.values(attempts=attempts, last_error=last_error,
                                           retry_at=now + retry_delay(attempts, backoff_max)),
                     {"oid": row.id})
        report.deferred += 1
        log.warning("outbox=%s request=%s deferred: %s", row.id, row.request_id, error)


MarkSent = Callable[[int, datetime, int], object]


def _sent_marker(conn: Connection) -> MarkSent:
    """The sent-mark as one statement straight on the driver's connection, committed by
    itself (SQLite outside any transaction, PostgreSQL in autocommit).

    It runs once per reply under the hand-over lock, between the relay's 250 and the next
    hand-over; SQLAlchemy's begin/execute/commit around the same UPDATE cost as much again
    as the statement. The values go through the column types' own bind processing."""
    dialect = conn.dialect
    at = Outbox.__table__.c.sent_at.type.bind_processor(dialect) or (lambda value: value)
    p = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (f"UPDATE {Outbox.__tablename__} SET state = '{OutboxState.SENT}', "
           f"sent_at = {p}, attempts = {p} WHERE id = {p} AND state = '{OutboxState.PENDING}'")
    driver = conn.connection.driver_connection
    assert driver is not None

    if dialect.name != "sqlite":
        def mark(oid: int, when: datetime, attempts: int) -> object:
            return driver.execute(sql, (at(when), attempts, oid))
        return mark

    def mark_sqlite(oid: int, when: datetime, attempts: int) -> object:
        # While intake or a decide batch holds SQLite's write lock, every SMTP connection
        # waits behind this mark: it asks for the lock each millisecond (sqlite_write).
        return sqlite_write(driver, sql, (at(when), attempts, oid))
    return mark_sqlite


def _record_sent(mark_sent: MarkSent, row: Pending, report: SendReport) -> None:
    mark_sent(row.id, utcnow(), row.attempts + 1)
    report.tried.add(row.id)
    report.sent += 1
    # One line per reply only with --verbose: a burst sends thousands, and each line cost
    # as much as the sent-mark itself; deliver logs each page's count.
    log.debug("outbox=%s request=%s sent kind=%s outcome=%s", row.id, row.request_id,
              row.kind, row.outcome)


def next_due(sessions: sessionmaker[Session]) -> datetime | None:
    """When the earliest pending reply becomes sendable (for the daemon's sleep)."""
    sendable = case((Outbox.retry_at > Outbox.due_at, Outbox.retry_at), else_=Outbox.due_at)
    with reading(sessions) as session:
        return session.scalar(select(type_coerce(func.min(sendable), UTCDateTime))
                              .where(Outbox.state == OutboxState.PENDING))
