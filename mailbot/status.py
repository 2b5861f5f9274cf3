"""What ``mailbot status`` reports: per library its reader source, the month's pools, the
queue, the outbox and each mailbox's last poll and health (a mailbox in error: why, since
when, whether its library is already decided without it, when its next login is tried);
then each relay's queue and health, and the scheduled jobs.

Read without SQLite's write lock (db.session.reading): ``status`` answers at once while
the bot works a burst.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import as_aware, month_key, month_of, utcnow
from mailbot.config import SERVICES, Settings
from mailbot.db.models import Code, JobRun, Library, Mailbox, Outbox, Request
from mailbot.db.session import reading
from mailbot.decide.horizon import mailbox_health
from mailbot.outcomes import OutboxState, RequestState
from mailbot.respond.relays import RelayQueue, queue_by_relay

_WHEN = "%Y-%m-%d %H:%M:%S %Z"


def status_lines(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    now = utcnow()
    lines = []
    relays = queue_by_relay(sessions, settings, now)
    with reading(sessions) as session:
        for lib in settings.libraries:
            month = month_key(*month_of(now, settings.library_tz(lib.id)))
            lines.append(f"library {lib.id} ({lib.name}), month {month}")
            row = session.get(Library, lib.id)
            if row is not None and row.source_error:
                since = row.source_down_since.astimezone(settings.library_tz(lib.id)).strftime(
                    "%Y-%m-%d %H:%M %Z") if row.source_down_since else "?"
                lines.append(f"  reader source {lib.reader_source}: DOWN since {since} "
                             f"({row.source_error}); requests wait")
            else:
                lines.append(f"  reader source {lib.reader_source}: ok")
            for service in SERVICES:
                total, left = session.execute(
                    select(func.count(Code.id),
                           func.count(Code.id).filter(Code.issued_at.is_(None)))
                    .where(Code.library_id == lib.id, Code.service == service,
                           Code.month == month)
                ).one()
                lines.append(f"  pool {service:9} {left:6} left of {total}")
            queue = dict(session.execute(
                select(Request.state, func.count(Request.id))
                .where(Request.library_id == lib.id).group_by(Request.state)).all())
            lines.append(f"  queue: {queue.get(RequestState.NEW, 0)} waiting, "
                         f"{queue.get(RequestState.ERROR, 0)} set aside for staff, "
                         f"{queue.get(RequestState.MANUAL, 0)} in manual folder")
            outbox = dict(session.execute(
                select(Outbox.state, func.count(Outbox.id))
                .where(Outbox.library_id == lib.id).group_by(Outbox.state)).all())
            lines.append(f"  outbox: {outbox.get(OutboxState.PENDING, 0)} pending, "
                         f"{outbox.get(OutboxState.FAILED, 0)} failed, "
                         f"{outbox.get(OutboxState.SENT, 0)} sent")
            for mb in session.scalars(select(Mailbox).where(Mailbox.library_id == lib.id)
                                      .order_by(Mailbox.id)):
                when = mb.last_poll_at.astimezone(settings.library_tz(lib.id)).strftime(
                    "%Y-%m-%d %H:%M:%S %Z") if mb.last_poll_at else "never"
                health = f"  ERROR: {mb.last_error}" if mb.last_error else ""
                lines.append(f"  mailbox {mb.address} last poll {when}{health}")
                lines += [f"    {line}" for line in mailbox_trouble(
                    mb, settings.daemon.mailbox_grace, settings.library_tz(lib.id), now)]
        tz = ZoneInfo(settings.timezone)
        if relays:
            lines.append("relays")
        lines += [f"  {relay_line(q, tz)}" for q in relays]
        jobs = session.scalars(select(JobRun).order_by(JobRun.name)).all()
        if jobs:
            lines.append("jobs")
            fmt = "%Y-%m-%d %H:%M %Z"
        for job in jobs:
            last = job.last_run_at.astimezone(tz).strftime(fmt) if job.last_run_at else "never"
            nxt = job.next_run_at.astimezone(tz).strftime(fmt) if job.next_run_at else "-"
            lines.append(f"  {job.name}: next {nxt}, last {last}"
                         + (f" ({job.last_result})" if job.last_result else ""))
    return lines


def _at(when: datetime, tz: ZoneInfo) -> str:
    return as_aware(when).astimezone(tz).strftime(_WHEN)


def mailbox_trouble(mb: Mailbox, grace: float, tz: ZoneInfo, now: datetime) -> list[str]:
    """What a mailbox in error means for its library: since when it is down, whether its
    library's requests still wait for it, and when its next login is tried (worked out as
    for the dashboard: decide.horizon.mailbox_health)."""
    health = mailbox_health(mb, grace, now)
    lines = []
    if health.reading_again:
        lines.append(f"reading again after being down since {_at(health.down_since, tz)}; "
                     "the library's requests wait until it is read")
    elif health.down_since is not None:
        since = f"down since {_at(health.down_since, tz)}"
        if health.without_since is not None:
            lines.append(f"{since}; the library is decided without it since "
                         f"{_at(health.without_since, tz)}"
                         " (its mail, once read, is decided among what is still undecided)")
        elif health.waits_until is not None:
            lines.append(f"{since}; the library's requests wait for it until "
                         f"{_at(health.waits_until, tz)}, then are decided without it")
        else:
            lines.append(f"{since}; the library's requests wait for it (mailbox_grace = 0)")
    if health.next_login is not None:
        refused = health.refused
        lines.append(f"next login {_at(health.next_login, tz)} "
                     f"(refused {refused} time{'' if refused == 1 else 's'} in a row)")
    return lines


def relay_line(q: RelayQueue, tz: ZoneInfo) -> str:
    """One relay: replies waiting, when the last will go out, its limits, pause and last
    error."""
    parts = [f"relay {q.key}: {q.waiting} waiting"]
    if q.later:
        parts[0] += f" (+{q.later} due later)"
    if q.waiting and q.last_at is not None:
        parts.append(f"last goes out {_at(q.last_at, tz)}")
    limits = [f"{n}/{span}" for n, span in ((q.limits.per_minute, "min"),
                                            (q.limits.per_hour, "h"),
                                            (q.limits.per_day, "day")) if n is not None]
    if limits:
        parts.append(f"limits {' '.join(limits)}, {q.sent_last_day} sent in 24 h")
    if q.paused_until is not None:
        why = {"auth": "login refused", "throttled": "the provider asked us to slow down"}
        parts.append(f"PAUSED until {_at(q.paused_until, tz)} "
                     f"({why.get(q.pause_reason or '', q.pause_reason or '?')})")
    if q.last_error:
        since = f" since {_at(q.down_since, tz)}" if q.down_since else ""
        parts.append(f"ERROR{since}: {q.last_error}")
    elif q.paused_until is None:
        parts.append("ok")
    return "; ".join(parts)
