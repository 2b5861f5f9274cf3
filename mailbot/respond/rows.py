"""One relay's rows in a sending round: read a page (claimed with advisory locks on
PostgreSQL), handed to deliver.py, and each reply's outcome written on its row: sent (with
the relay's key, which its limits count), deferred with a pause, or failed for staff.

Plain rows and single Core statements (no ORM unit of work): in a burst thousands of
replies go, and each one's bookkeeping must cost far less than sending it. Which rows a
relay sends in a round, and when, is outbox.py's; the wire is smtp.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, select, text
from sqlalchemy import update as sa_update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import Settings
from mailbot.db import tuning
from mailbot.db.models import Outbox
from mailbot.db.readonly import read_only
from mailbot.db.session import sqlite_write
from mailbot.outcomes import OutboxState
from mailbot.respond.deliver import deliver
from mailbot.respond.relays import Transports
from mailbot.respond.smtp import Transport, TransportError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass
class SendReport:
    """What one sending round did (send_due), or a whole run's rounds (send_while)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unreachable: bool = False
    tried: set[int] = field(default_factory=set)  # outbox ids attempted
    held: int = 0  # due rows skipped because another process is sending them (PostgreSQL)
    paced: int = 0  # due rows left pending, untouched, by their relay's sending limits
    paused: int = 0  # due rows left pending because their relay is paused (throttled, auth)
    # When a relay with rows left over (paced or paused) may send again, the earliest.
    wake_at: datetime | None = None
    down: set[str] = field(default_factory=set)  # keys of the relays that were unreachable

    def add(self, other: SendReport) -> None:
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.unreachable = self.unreachable or other.unreachable
        self.tried |= other.tried
        self.held += other.held
        self.paced += other.paced
        self.paused += other.paused
        self.down |= other.down
        self.wake(other.wake_at)

    def wake(self, at: datetime | None) -> None:
        if at is not None and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at


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
    failing_since: datetime | None = None


_PENDING = (Outbox.id, Outbox.request_id, Outbox.kind, Outbox.outcome, Outbox.mail_from,
            Outbox.to_address, Outbox.message, Outbox.attempts, Outbox.created_at,
            Outbox.failing_since)
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


@dataclass(frozen=True)
class Round:
    """What every relay's part of one sending round shares (outbox.send_due): ``now`` and
    ``clock`` are the round's time (fixed in tests), the rest its retry policy."""

    sessions: sessionmaker[Session]
    settings: Settings
    transports: Transports
    now: datetime
    clock: Clock
    retry_for: float | None
    backoff_max: float
    should_stop: Callable[[], bool]


async def send_rows_sqlite(engine: Engine, transport: Transport, key: str, ids: Sequence[int],
                           report: SendReport, work: Round) -> TransportError | None:
    """SQLite: this process holds the outbox's sender lock (send_due), so no other process
    sends these rows meanwhile, and each page's rows are read after it was taken. Rows are
    read a page at a time on a reading connection (no write lock: a burst's decide batches
    and stored chunks hold it in turn, and the page must not wait for them), outside any
    transaction while the relay answers, and each reply is marked in its own short
    transaction. Returns the error that stopped the relay's round, if one did."""
    with engine.connect() as conn, read_only(engine).connect() as reader:
        mark_sent = _sent_marker(conn, key)

        def record(row: Pending, error: TransportError | None) -> None:
            if error is None:
                _record_sent(mark_sent, row, report, work.clock)  # one auto-committed statement
                return
            with conn.begin():
                _record(conn, row, error, report, work)

        for start in range(0, len(ids), PAGE):
            page = ids[start:start + PAGE]
            with reader.begin():
                found = {row.id: Pending(*row) for row in reader.execute(
                    select(*_PENDING).where(Outbox.id.in_(page),
                                            Outbox.state == OutboxState.PENDING))}
            rows = [found[i] for i in page if i in found]
            stopped = await deliver(transport, rows, record, work.should_stop)
            if stopped is not None:
                return stopped
            if work.should_stop():
                return None
    return None


async def send_rows_claimed(engine: Engine, transport: Transport, key: str,
                            ids: Sequence[int], report: SendReport, work: Round
                            ) -> TransportError | None:
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
                mark_sent = _sent_marker(conn, key)

                def record(row: Pending, error: TransportError | None) -> None:
                    if error is None:
                        _record_sent(mark_sent, row, report, work.clock)
                        return
                    _record(conn, row, error, report, work)

                for start in range(0, len(ids), PAGE):
                    page = list(ids[start:start + PAGE])
                    claimed = [oid for oid, got in conn.execute(_CLAIM, {"ids": page}) if got]
                    report.held += len(page) - len(claimed)
                    rows = [Pending(*row) for row in conn.execute(
                        select(*_PENDING).where(Outbox.id.in_(claimed),
                                                Outbox.state == OutboxState.PENDING)
                        .order_by(Outbox.due_at, Outbox.id))] if claimed else []
                    stopped = await deliver(transport, rows, record, work.should_stop)
                    if stopped is not None:
                        return stopped
                    if claimed:
                        conn.execute(_RELEASE, {"ids": claimed})
                    if work.should_stop():
                        return None
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock_all()"))
                except DBAPIError:
                    pass  # the connection is gone, and its locks with it
    return None


def _record(conn: Connection, row: Pending, error: TransportError,
            report: SendReport, work: Round) -> None:
    """Marks one failed attempt on its row: failed for staff, or deferred with a pause.

    Only a row still pending is changed (staff may have cancelled it meanwhile). A
    throttling answer or an authentication failure is the relay's, not the reply's: the
    row is left as it was (the relay is paused: _send_through)."""
    if error.throttled or error.auth:
        # Not "tried" either: run --once must not skip it for the rest of the run and send
        # the relay's later replies before it once the pause is over (outbox._send_through
        # counts it among the paused).
        log.info("outbox=%s request=%s left pending: the relay %s", row.id, row.request_id,
                 "refused our login" if error.auth else "asks us to slow down")
        return
    report.tried.add(row.id)
    now = utcnow()
    attempts = row.attempts + 1
    last_error = str(error)[:1000]
    # Counted from the first failure: a reply the relay's limits or pause held back for a
    # day has not been failing meanwhile.
    failing_since = row.failing_since or now
    expired = (work.retry_for is not None
               and (now - failing_since).total_seconds() > work.retry_for)
    if error.permanent or expired:
        conn.execute(_STILL_PENDING.values(state=OutboxState.FAILED, attempts=attempts,
                                           last_error=last_error), {"oid": row.id})
        report.failed += 1
        log.warning("outbox=%s request=%s failed%s: %s", row.id, row.request_id,
                    " (gave up retrying)" if not error.permanent else "", error)
    else:
        conn.execute(_STILL_PENDING.values(
            attempts=attempts, last_error=last_error, failing_since=failing_since,
            retry_at=now + retry_delay(attempts, work.backoff_max)), {"oid": row.id})
        report.deferred += 1
        log.warning("outbox=%s request=%s deferred: %s", row.id, row.request_id, error)


MarkSent = Callable[[int, datetime, int], object]


def _sent_marker(conn: Connection, key: str) -> MarkSent:
    """The sent-mark (with the relay's key, which its limits count) as one statement
    straight on the driver's connection, committed by itself (SQLite outside any
    transaction, PostgreSQL in autocommit).

    It runs once per reply under the hand-over lock, between the relay's 250 and the next
    hand-over; SQLAlchemy's begin/execute/commit around the same UPDATE cost as much again
    as the statement. The values go through the column types' own bind processing."""
    dialect = conn.dialect
    at = Outbox.__table__.c.sent_at.type.bind_processor(dialect) or (lambda value: value)
    p = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (f"UPDATE {Outbox.__tablename__} SET state = '{OutboxState.SENT}', "
           f"sent_at = {p}, attempts = {p}, relay = {p} "
           f"WHERE id = {p} AND state = '{OutboxState.PENDING}'")
    driver = conn.connection.driver_connection
    assert driver is not None

    if dialect.name != "sqlite":
        def mark(oid: int, when: datetime, attempts: int) -> object:
            return driver.execute(sql, (at(when), attempts, key, oid))
        return mark

    def mark_sqlite(oid: int, when: datetime, attempts: int) -> object:
        # While intake or a decide batch holds SQLite's write lock, every SMTP connection
        # waits behind this mark: it asks for the lock each millisecond (sqlite_write).
        return sqlite_write(driver, sql, (at(when), attempts, key, oid))
    return mark_sqlite


def _record_sent(mark_sent: MarkSent, row: Pending, report: SendReport, clock: Clock) -> None:
    mark_sent(row.id, clock(), row.attempts + 1)
    report.tried.add(row.id)
    report.sent += 1
    # One line per reply only with --verbose: a burst sends thousands, and each line cost
    # as much as the sent-mark itself; deliver logs each page's count.
    log.debug("outbox=%s request=%s sent kind=%s outcome=%s", row.id, row.request_id,
              row.kind, row.outcome)

