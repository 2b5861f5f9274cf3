"""The outbox's bookkeeping: which replies are due, who sends them, and what became of each.

Each row leaves through the relay of the mailbox it is sent from (relays.py), the relays
at the same time, each in (due_at, id) order over its own connections, and each as fast
as its sending limits allow (pacing.py): what they do not allow now stays pending,
untouched, for its slot. Each row is marked sent (with the relay's key, which its limits
count) in its own commit right after the relay accepted it. A crash between the two can at
worst send that one reply again, with the same Message-ID: one per relay, as relays hand
over at the same time. On PostgreSQL several processes may send from one outbox: rows are
claimed with advisory locks (rows.py), and a limited relay is sent through by one process
at a time (its allowance is read and spent under a relay lock); on SQLite one process at a
time holds the sender lock (sender_lock.py). A 4xx to one reply or a dropped connection
leaves the row pending for a later try (retry_delay); a 5xx marks it failed for staff. A
throttling answer or an authentication failure pauses the relay instead (relays.py) and
fails nothing.

A relay's rows are read, claimed and marked by rows.py (plain rows, single Core
statements: in a burst each reply's bookkeeping must cost far less than sending it); the
wire is smtp.py's, the overlapping of lanes deliver.py's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, func, select, text, type_coerce
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import Settings, SmtpSettings
from mailbot.db.models import Outbox, UTCDateTime
from mailbot.db.readonly import read_only
from mailbot.db.session import reading
from mailbot.login import fingerprint
from mailbot.outcomes import OutboxState
from mailbot.respond import pacing, relays
from mailbot.respond.relays import RelayState, Transports
from mailbot.respond.rows import (OUTBOX_LOCKS, Clock, Pending, Round, SendReport,
                                  retry_delay, send_rows_claimed, send_rows_sqlite)
from mailbot.respond.sender_lock import WAIT_STEP, SenderLock, lock_path

__all__ = ["OUTBOX_LOCKS", "Pending", "SendReport", "next_due", "retry_delay", "send_due",
           "send_while"]

log = logging.getLogger(__name__)

_RELAY_LOCK = text(f"SELECT pg_try_advisory_lock({relays.RELAY_LOCKS}, :id)")
_RELAY_UNLOCK = text(f"SELECT pg_advisory_unlock({relays.RELAY_LOCKS}, :id)")
# last_ok_at is written at most this often while nothing else changes (not each round).
_OK_EVERY = timedelta(seconds=60)
# run --once, while only replies held back by limits or pauses are due: seconds between looks.
HELD_BACK_LOOK = 0.5
# Relays sending at the same time in one round: each holds one or two database
# connections while it waits on its relay, and the pool (5 + 10 overflow) is shared with
# the decider and the watchers; a consortium may have a relay per library.
RELAYS_AT_ONCE = 4


async def send_due(sessions: sessionmaker[Session], settings: Settings, *,
                   now: datetime | None = None,
                   transports: Transports | None = None,
                   honour_retry: bool = False, retry_for: float | None = None,
                   backoff_max: float = 1800.0,
                   should_stop: Callable[[], bool] = lambda: False,
                   skip: set[int] | None = None, wait: bool = True,
                   skip_relays: Collection[str] = ()) -> SendReport:
    """Sends every pending reply that is due (except the ids in ``skip``, and the rows of
    the relays in ``skip_relays``) and that its relay's limits allow now; returns counts.

    Each row goes through ``settings.relay_for(row.library_id, row.mail_from)``, every
    relay's rows in (due_at, id) order over its own transport (from ``transports``, which
    the caller keeps open between rounds; else one for this round), the relays at once. A
    paused relay (relays.py) sends nothing; a limited one what pacing.allowance says; the
    rest stay pending, untouched, and ``wake_at`` says when to look again.

    ``now`` fixes the round's clock (also for the sent-marks: the limits count them), for
    tests and the demo; by default the real time. ``honour_retry`` (the daemon) waits out
    each row's pause after a temporary failure and gives up after ``retry_for`` seconds;
    ``run --once`` simply tries every due row again. On SQLite, while another process
    sends from the outbox (sender_lock), this waits for it to finish, or with
    ``wait=False`` returns at once with the due rows counted as ``held``.
    """
    report = SendReport()
    fixed = now
    clock: Clock = utcnow if fixed is None else (lambda: fixed)  # type: ignore[assignment,return-value]
    now = clock()
    with reading(sessions) as session:
        stmt = select(Outbox.id, Outbox.library_id, Outbox.mail_from).where(
            Outbox.state == OutboxState.PENDING, Outbox.due_at <= now)
        if honour_retry:
            stmt = stmt.where((Outbox.retry_at.is_(None)) | (Outbox.retry_at <= now))
        due = session.execute(stmt.order_by(Outbox.due_at, Outbox.id)).all()
    groups = _by_relay(settings, due, skip)
    for key in skip_relays:
        groups.pop(key, None)
    if not groups:
        return report
    path = lock_path(sessions.kw["bind"])
    lock = SenderLock(path) if path is not None else None
    if lock is not None and not await _take(lock, wait=wait, should_stop=should_stop):
        report.held = sum(len(ids) for _, ids in groups.values())
        return report
    try:
        with reading(sessions) as session:
            states = relays.read_states(session, groups)
        own = Transports() if transports is None else None
        try:
            work = Round(sessions, settings, transports or own, now, clock,  # type: ignore[arg-type]
                         retry_for, backoff_max, should_stop)
            at_once = asyncio.Semaphore(RELAYS_AT_ONCE)

            async def one_relay(relay: SmtpSettings, ids: list[int],
                                state: RelayState) -> SendReport:
                async with at_once:
                    return await _send_relay(work, relay, ids, state)

            parts = await asyncio.gather(*(
                one_relay(relay, ids, states.get(key, RelayState(key)))
                for key, (relay, ids) in groups.items()))
        finally:
            if own is not None:
                await own.__aexit__(None, None, None)
        for part in parts:
            report.add(part)
        return report
    finally:
        if lock is not None:
            lock.release()


def _by_relay(settings: Settings, due: Sequence[tuple[int, str, str]], skip: set[int] | None
              ) -> dict[str, tuple[SmtpSettings, list[int]]]:
    """The due ids by relay key (each list in the order read), with the relay."""
    routes: dict[tuple[str, str], tuple[SmtpSettings, list[int]]] = {}
    groups: dict[str, tuple[SmtpSettings, list[int]]] = {}
    for oid, library_id, mail_from in due:
        if skip and oid in skip:
            continue
        group = routes.get((library_id, mail_from))
        if group is None:
            relay = settings.relay_for(library_id, mail_from)
            group = groups.setdefault(relay.key, (relay, []))
            routes[(library_id, mail_from)] = group
        group[1].append(oid)
    return groups


async def _send_relay(work: Round, relay: SmtpSettings, ids: list[int],
                      state: RelayState) -> SendReport:
    """One relay's part of a round: its pause, its allowance, then its rows."""
    report = SendReport()
    if state.paused(work.now, relay):
        report.paused = len(ids)
        report.wake(state.paused_until)
        return report
    limits = pacing.Limits.of(relay)
    engine: Engine = work.sessions.kw["bind"]
    if not limits.limited:
        await _send_through(work, relay, ids, report, state)
        return report
    if engine.dialect.name != "postgresql":
        # SQLite: this process holds the sender lock, nobody else spends the allowance.
        with read_only(engine).connect() as conn:
            with conn.begin():
                recent = relays.recent_sends(conn, relay.key, work.now, limits.depth)
        await _send_allowed(work, relay, ids, report, state, limits, recent)
        return report
    # PostgreSQL: the relay's allowance is read and spent under its advisory lock, so two
    # processes never both spend it; a killed holder's lock goes with its connection.
    with engine.connect() as plain:
        conn = plain.execution_options(isolation_level="AUTOCOMMIT")
        lock = {"id": relays.lock_id(relay.key)}
        if not conn.execute(_RELAY_LOCK, lock).scalar():
            report.held = len(ids)
            return report
        try:
            recent = relays.recent_sends(conn, relay.key, work.now, limits.depth)
            await _send_allowed(work, relay, ids, report, state, limits, recent)
        finally:
            try:
                conn.execute(_RELAY_UNLOCK, lock)
            except DBAPIError:
                pass  # the connection is gone, and its lock with it
    return report


async def _send_allowed(work: Round, relay: SmtpSettings, ids: list[int],
                        report: SendReport, state: RelayState, limits: pacing.Limits,
                        recent: list[datetime]) -> None:
    allowed = pacing.allowance(limits, recent, work.now) or 0
    go, rest = ids[:allowed], ids[allowed:]
    if rest:
        # Untouched (no attempt, no retry_at): they keep their place for the next slot.
        report.paced = len(rest)
        report.wake(pacing.departures(limits, recent, work.now, len(go) + 1)[-1])
        log.debug("relay %s: %d repl%s wait for the sending limits", relay.key, len(rest),
                  "y" if len(rest) == 1 else "ies")
    if go:
        await _send_through(work, relay, go, report, state)


async def _send_through(work: Round, relay: SmtpSettings, ids: Sequence[int],
                        report: SendReport, state: RelayState) -> None:
    transport = await work.transports.get(relay)
    engine: Engine = work.sessions.kw["bind"]
    send = send_rows_claimed if engine.dialect.name == "postgresql" else send_rows_sqlite
    stopped = await send(engine, transport, relay.key, ids, report, work)
    now = work.clock()
    if stopped is not None and (stopped.auth or stopped.throttled):
        with engine.begin() as conn:
            new = relays.record_pause(
                conn, relay.key, "auth" if stopped.auth else "throttled", str(stopped), now,
                work.settings.daemon,
                refused_for=fingerprint.credentials(relay) if stopped.auth else None)
        report.paused += sum(1 for i in ids if i not in report.tried)
        report.wake(new.paused_until)
        log.warning("relay %s paused until %s (%s): %s", relay.key,
                    new.paused_until.isoformat(timespec="seconds") if new.paused_until else "?",
                    new.pause_reason, stopped)
        return
    if stopped is not None:
        report.unreachable = True
        report.down.add(relay.key)
        with engine.begin() as conn:
            relays.record_down(conn, relay.key, str(stopped), now)
        return
    if report.sent and (state.troubled or state.last_ok_at is None
                        or now - state.last_ok_at >= _OK_EVERY):
        with engine.begin() as conn:
            relays.record_ok(conn, relay.key, now, troubled=state.troubled)


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


async def send_while(sessions: sessionmaker[Session], settings: Settings,
                     deciding: threading.Event, *, now: datetime | None = None) -> SendReport:
    """Sends replies as they are decided, until ``deciding`` is cleared; then one last round.

    For ``run --once``: the burst's replies go out while later requests are still being
    read and decided (on PostgreSQL each row is claimed with an advisory lock; on SQLite
    this is the run's only sender, and each mark is its own short transaction). One
    transport per relay (its SMTP connections) throughout. What the relays' limits do not
    allow in this run is left pending, in order, for the next run (no waiting here)."""
    total = SendReport()
    async with Transports() as transports:
        while True:
            last = not deciding.is_set()
            # A reply tried once in this run (and deferred) waits for the next run, as it
            # would without the overlap.
            report = await send_due(sessions, settings, now=now, transports=transports,
                                    skip=total.tried)
            total.tried |= report.tried
            total.sent += report.sent
            total.deferred += report.deferred
            total.failed += report.failed
            total.unreachable = report.unreachable
            total.down |= report.down
            # Left over in the last look (not summed: each round sees them again).
            total.paced, total.paused, total.wake_at = report.paced, report.paused, report.wake_at
            if last:
                return total
            if report.deferred or report.unreachable:
                # The relay is in trouble: try once more when deciding is done, as a
                # run without this overlap would.
                while deciding.is_set():
                    await asyncio.sleep(0.05)
            elif report.sent == 0 and (report.paced or report.paused):
                # Only what the limits or a pause hold back is due: look again in a
                # while, not every 50 ms (each look reads the due rows).
                await asyncio.sleep(HELD_BACK_LOOK)
            elif report.sent == 0:
                await asyncio.sleep(0.05)  # nothing decided since the last look


def next_due(sessions: sessionmaker[Session]) -> datetime | None:
    """When the earliest pending reply becomes sendable (for the daemon's sleep)."""
    sendable = case((Outbox.retry_at > Outbox.due_at, Outbox.retry_at), else_=Outbox.due_at)
    with reading(sessions) as session:
        return session.scalar(select(type_coerce(func.min(sendable), UTCDateTime))
                              .where(Outbox.state == OutboxState.PENDING))
