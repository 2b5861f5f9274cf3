"""The respond stage: outbox rows -> SMTP (or a folder of .eml files for the demo).

Each row is marked sent in its own commit right after the server accepted it. A crash
between the two can at worst send that one reply again, with the same Message-ID. On
PostgreSQL several processes may send from one outbox: rows are claimed with advisory locks
(see _send_rows_claimed). A 4xx or
a dropped connection leaves the row pending for a later try; a 5xx marks it failed for staff.

The loop works on plain rows and single Core statements (no ORM unit of work): in a burst
it sends thousands of replies, and each one's bookkeeping must cost far less than sending.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPStatus
from sqlalchemy import Connection, Engine, bindparam, case, func, select, text, type_coerce
from sqlalchemy.exc import DBAPIError
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session, sessionmaker

from mailbot.addresses import smtp_form
from mailbot.clock import utcnow
from mailbot.config import SmtpSettings
from mailbot.db.models import Outbox, UTCDateTime
from mailbot.db.session import read_only, reading, sqlite_write
from mailbot.respond.sender_lock import WAIT_STEP, SenderLock, lock_path

log = logging.getLogger(__name__)


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool, unreachable: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        # The server could not be reached at all: the rest of the round would fail too.
        self.unreachable = unreachable


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unreachable: bool = False
    tried: set[int] = field(default_factory=set)  # outbox ids attempted
    held: int = 0  # due rows skipped because another process is sending them (PostgreSQL)


class FileTransport:
    """Writes each reply as ``<outbox id>.eml``; used by the demo and for dry runs."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.lanes = [self]

    async def __aenter__(self) -> FileTransport:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def prepare(self, row: Pending) -> None:
        return None

    async def finish(self, row: Pending) -> None:
        target = self.folder / f"{row.id:06d}-{row.outcome}.eml"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(row.message)
        os.replace(tmp, target)


class SmtpLane:
    """One reused aiosmtplib connection; reconnects when the server drops it.

    A reply goes out in two steps: ``prepare`` (MAIL FROM, RCPT TO, DATA up to the relay's
    354) and ``finish`` (the message and the final dot, which is when the relay takes it).
    Only ``finish`` can make a reply delivered, so the sender serialises ``finish`` and its
    commit across lanes while the other lanes prepare."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None
        self.in_data = False  # DATA was accepted (354): the relay now reads a message

    async def close(self) -> None:
        if self.in_data:
            # Mid-DATA, QUIT would be read as message text: drop the connection, and the
            # relay discards the unfinished message.
            self._drop()
        if self.client is not None and self.client.is_connected:
            try:
                await self.client.quit()
            except aiosmtplib.SMTPException:
                pass

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, use_tls=s.ssl, start_tls=s.starttls,
            timeout=s.timeout,
            # Certificates and host names are verified; ca_file only changes whom we trust.
            tls_context=ssl.create_default_context(cafile=s.ca_file) if s.ssl or s.starttls
            else None,
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            # Greet now, as aiosmtplib's mail() would: the first envelope then knows the
            # relay's extensions (SIZE) like every later one.
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        if s.username:
            try:
                await client.login(s.username, s.password or "")
            except BaseException:
                client.close()  # not left open for the garbage collector
                raise
        return client

    async def prepare(self, row: Pending) -> None:
        if self.in_data:
            self._drop()  # a reply prepared but never handed over (the round stopped)
        if self.client is None or not self.client.is_connected:
            try:
                self.client = await self._connect()
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                self._drop()
                raise TransportError(f"cannot reach {self.settings.host}:{self.settings.port}: "
                                     f"{type(exc).__name__}: {exc}", permanent=False,
                                     unreachable=True) from None
        try:
            try:
                await self._envelope(row)
            except aiosmtplib.SMTPServerDisconnected:
                # The relay closed our idle connection: one fresh try, then it counts.
                self._drop()
                self.client = await self._connect()
                await self._envelope(row)
        except aiosmtplib.SMTPRecipientRefused as exc:
            self._drop()  # nothing half-done is left on the relay's side
            raise TransportError(f"recipient refused: {exc.code} {exc.message}",
                                 permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPAuthenticationError) as exc:
            # The relay refuses us, not this reply: no reply is at fault, none may be
            # failed for it. Stop the round; staff see the error on the pending rows.
            self._drop()
            raise TransportError(f"relay refused us: {exc.code} {exc.message}",
                                 permanent=False, unreachable=True) from None
        except Exception as exc:
            raise self._failed(exc) from None

    async def _envelope(self, row: Pending) -> None:
        client = self.client
        assert client is not None
        options = []
        if client.supports_extension("size"):
            # RFC 1870: octets as transmitted, each line ending a CRLF.
            size = len(row.message) + row.message.count(b"\n") - row.message.count(b"\r\n")
            options.append(f"size={size}")
        # What aiosmtplib's mail() and rcpt() send and check, without their address
        # parsing (email.utils, ~20 µs an address, twice per reply, and for a non-ASCII
        # address it re-parses what intake already checked and can garble it). The paths
        # are the stored addresses themselves, checked once more by mailbot.addresses.
        sender, recipient = smtp_path(row.mail_from), smtp_path(row.to_address)
        utf8 = False
        if sender is None or recipient is None:
            sender, recipient, utf8 = _paths(row)
            if utf8:
                if not client.supports_extension("smtputf8"):
                    raise TransportError(
                        "the relay does not offer SMTPUTF8 for a non-ASCII address "
                        "(RFC 6531); staff may answer from a mailbox that can", permanent=True)
                options.append("SMTPUTF8")
        response = await client.execute_command(
            b"MAIL", b"FROM:" + sender, *(o.encode("ascii") for o in options))
        if response.code != SMTPStatus.completed:
            if utf8:
                # Refused for this reply's SMTPUTF8 envelope, not for who we are: the
                # other replies go on.
                self._drop()
                raise TransportError(f"MAIL FROM with SMTPUTF8 refused: {response.code} "
                                     f"{response.message}", permanent=response.code >= 500)
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, row.mail_from)
        response = await client.execute_command(b"RCPT", b"TO:" + recipient)
        if response.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
            raise aiosmtplib.SMTPRecipientRefused(response.code, response.message,
                                                  row.to_address)
        response = await client.execute_command(b"DATA")
        if response.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        self.in_data = True

    async def finish(self, row: Pending) -> None:
        assert self.client is not None and self.client.protocol is not None and self.in_data
        try:
            # aiosmtplib's data() would send DATA here and wait for 354 (prepare did that,
            # outside the hand-over lock) and run two regular expressions over the whole
            # message (~0.2 ms for a 9 KB reply): on_the_wire does the same with bytes
            # methods. write + read_response is what its own data() does after the 354.
            protocol = self.client.protocol
            protocol.write(on_the_wire(row.message))
            self.in_data = False
            response = await protocol.read_response(timeout=self.settings.timeout)
            if response.code != SMTPStatus.completed:
                raise aiosmtplib.SMTPDataError(response.code, response.message)
        except Exception as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> TransportError:
        """``exc`` from one reply's envelope or hand-over as that reply's failure. Only a
        refusal of the envelope itself (see _envelope) keeps the connection: after
        anything else the relay's state is unknown, and the next reply starts afresh."""
        if isinstance(exc, TransportError):
            return exc
        self._drop()
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return TransportError(f"{exc.code} {exc.message}", permanent=exc.code >= 500)
        if isinstance(exc, (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)):
            return TransportError(f"{type(exc).__name__}: {exc}", permanent=False)
        return unexpected(exc)

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        self.in_data = False


_LINE_END = re.compile(rb"\r\n|\n|\r")
# A plain ASCII address (dot-atom local part, a domain name): quote_address would give it
# back unchanged between angle brackets; anything else goes through aiosmtplib's parsing.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                            r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def smtp_path(address: str) -> bytes | None:
    """``<address>`` for MAIL FROM / RCPT TO when it is a plain ASCII address, else None."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return None


def _paths(row: Pending) -> tuple[bytes, bytes, bool]:
    """MAIL FROM and RCPT TO paths of a reply whose addresses are not plain ASCII, and
    whether they need SMTPUTF8: a Unicode domain after an ASCII local part goes as
    A-labels (``xn--…``), plain ASCII. An address no relay can take (an outbox row written
    before intake checked addresses this way, a reader file's e-mail) fails this reply:
    the patron's for good, our own mailbox's address for a while (staff can correct the
    configuration meanwhile)."""
    sender = smtp_form(row.mail_from)
    if sender is None:
        raise TransportError(f"our sender address {row.mail_from!r} is not usable in an "
                             "SMTP envelope", permanent=False)
    recipient = smtp_form(row.to_address)
    if recipient is None:
        raise TransportError(f"not a usable recipient address: {row.to_address!r}",
                             permanent=True)
    return (b"<" + sender[0] + b">", b"<" + recipient[0] + b">", sender[1] or recipient[1])


# Plausibly passing by themselves: a retry may succeed.
_TEMPORARY = (OSError, asyncio.TimeoutError, MemoryError)


def unexpected(exc: Exception) -> TransportError:
    """An error nobody foresaw while preparing or sending one reply: that reply fails
    (for staff, with the error named; deferred when it may pass by itself), never the
    round with the other replies in it."""
    log.error("unexpected error while sending one reply", exc_info=exc)
    return TransportError(f"unexpected error while sending: {type(exc).__name__}: {exc}"[:1000],
                          permanent=not isinstance(exc, _TEMPORARY))


def on_the_wire(message: bytes) -> bytes:
    """``message`` as DATA carries it: CRLF line ends, dot-stuffed (RFC 5321 4.5.2), and
    the final dot. Composed replies use bare LF, so a plain replace does it."""
    if b"\r" in message:
        message = _LINE_END.sub(b"\r\n", message)
    else:
        message = message.replace(b"\n", b"\r\n")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class SmtpTransport:
    """``smtp.connections`` lanes (connections) to the relay, opened as needed."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.lanes = [SmtpLane(settings) for _ in range(max(1, settings.connections))]

    async def __aenter__(self) -> SmtpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for lane in self.lanes:
            await lane.close()


def transport_for(settings: SmtpSettings) -> FileTransport | SmtpTransport:
    return FileTransport(settings.file_outbox) if settings.file_outbox else SmtpTransport(settings)


def retry_delay(attempts: int, backoff_max: float) -> timedelta:
    """30 s, 1 min, 2 min … after the 1st, 2nd, 3rd failure, at most ``backoff_max``."""
    return timedelta(seconds=min(backoff_max, 30.0 * 2 ** max(0, attempts - 1)))


async def send_due(sessions: sessionmaker[Session], smtp: SmtpSettings, *,
                   now: datetime | None = None,
                   transport: FileTransport | SmtpTransport | None = None,
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
        stmt = select(Outbox.id).where(Outbox.state == "pending", Outbox.due_at <= now)
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
# keys): the outbox, then the row id.
_OUTBOX_LOCKS = 0x6D62  # "mb"
_CLAIM = text(f"SELECT id, pg_try_advisory_lock({_OUTBOX_LOCKS}, id) "
              "FROM unnest(CAST(:ids AS integer[])) AS id")
_RELEASE = text(f"SELECT pg_advisory_unlock({_OUTBOX_LOCKS}, id) "
                "FROM unnest(CAST(:ids AS integer[])) AS id")
_STILL_PENDING = sa_update(Outbox).where(Outbox.id == bindparam("oid"),
                                         Outbox.state == "pending")


async def _send_rows(sessions: sessionmaker[Session], transport: FileTransport | SmtpTransport,
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
                    select(*_PENDING).where(Outbox.id.in_(page), Outbox.state == "pending"))}
            rows = [found[i] for i in page if i in found]
            if await _deliver(transport, rows, record, should_stop):
                report.unreachable = True
                return report
            if should_stop():
                return report
    return report


async def _send_rows_claimed(engine: Engine, transport: FileTransport | SmtpTransport,
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
        plan_mode = conn.scalar(text("SHOW plan_cache_mode"))
        try:
            # The marks this connection writes do not wait for their WAL record to reach
            # the disk (~1 ms each here, one per reply, under the hand-over lock). A mark is
            # still committed, seen by every other process and kept when this process is
            # killed; only a crash of the database server itself could lose the last
            # fraction of a second of marks, and those replies would be sent again, the
            # same messages — the bargain SQLite's synchronous=NORMAL already makes
            # (docs/reliability.md).
            conn.execute(text("SET synchronous_commit = off"))
            # Its statements find rows by primary key or a list of ids: the plan
            # PostgreSQL keeps after a few runs does (make_engine forces a plan per run,
            # which the batch lookups need), and 10,000 marks cost ~0.35 s less of the
            # server's CPU.
            conn.execute(text("SET plan_cache_mode = auto"))
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
                    select(*_PENDING).where(Outbox.id.in_(claimed), Outbox.state == "pending")
                    .order_by(Outbox.due_at, Outbox.id))] if claimed else []
                if await _deliver(transport, rows, record, should_stop):
                    report.unreachable = True
                    return report
                if claimed:
                    conn.execute(_RELEASE, {"ids": claimed})
                if should_stop():
                    return report
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
                conn.execute(text("RESET synchronous_commit"))
                conn.execute(text(f"SET plan_cache_mode = {plan_mode}"))  # as it was
            except DBAPIError:
                pass  # the connection is gone, and its locks with it
    return report


async def _deliver(transport: FileTransport | SmtpTransport, rows: list[Pending],
                   record: Callable[[Pending, TransportError | None], None],
                   should_stop: Callable[[], bool]) -> bool:
    """Sends ``rows`` over the transport's lanes; True if the relay could not be reached.

    While one lane hands its reply over (DATA and the final dot) and the reply is marked
    sent, the other lanes may only prepare theirs (MAIL FROM, RCPT TO): the relay takes one
    reply at a time and each is committed before the next is taken, so a crash can leave
    at most one reply sent but not marked (docs/reliability.md)."""
    queue = deque(rows)
    sent: list[int] = []
    handing_over = asyncio.Lock()
    unreachable = False

    async def lane_loop(lane: Any) -> None:
        nonlocal unreachable
        while queue and not unreachable and not should_stop():
            row = queue.popleft()
            error = await _attempt(lane.prepare, row)
            if error is None:
                async with handing_over:
                    if unreachable:
                        # Another lane found the relay refusing us: the round stops here,
                        # and this reply, prepared but not handed over, simply waits.
                        return
                    error = await _attempt(lane.finish, row)
                    record(row, error)
                    if error is None:
                        sent.append(row.id)
            else:
                record(row, error)
            if error is not None and error.unreachable:
                unreachable = True

    lanes = transport.lanes[:max(1, min(len(transport.lanes), len(rows)))]
    await asyncio.gather(*(lane_loop(lane) for lane in lanes))
    if sent:
        log.info("sent %d repl%s (outbox %s)", len(sent), "y" if len(sent) == 1 else "ies",
                 _id_ranges(sent))
    return unreachable


def _id_ranges(ids: list[int]) -> str:
    """``3-7, 9, 12-13``: the ids, sorted, as runs."""
    ids = sorted(ids)
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


async def _attempt(step: Callable[[Pending], Awaitable[None]],
                   row: Pending) -> TransportError | None:
    try:
        await step(row)
    except TransportError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - one reply must never stop the others
        return unexpected(exc)
    return None


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
        conn.execute(_STILL_PENDING.values(state="failed", attempts=attempts,
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
    sql = (f"UPDATE {Outbox.__tablename__} SET state = 'sent', sent_at = {p}, "
           f"attempts = {p} WHERE id = {p} AND state = 'pending'")
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
    # as much as the sent-mark itself; _deliver logs each page's count.
    log.debug("outbox=%s request=%s sent kind=%s outcome=%s", row.id, row.request_id,
              row.kind, row.outcome)


def next_due(sessions: sessionmaker[Session]) -> datetime | None:
    """When the earliest pending reply becomes sendable (for the daemon's sleep)."""
    sendable = case((Outbox.retry_at > Outbox.due_at, Outbox.retry_at), else_=Outbox.due_at)
    with reading(sessions) as session:
        return session.scalar(select(type_coerce(func.min(sendable), UTCDateTime))
                              .where(Outbox.state == "pending"))
