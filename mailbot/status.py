"""What ``mailbot status`` reports: per library its reader source, the month's pools, the
queue, the outbox and each mailbox's last poll; then the scheduled jobs.

Read without SQLite's write lock (db.session.reading): ``status`` answers at once while
the bot works a burst.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import month_key, month_of, utcnow
from mailbot.config import SERVICES, Settings
from mailbot.db.models import Code, JobRun, Library, Mailbox, Outbox, Request
from mailbot.db.session import reading
from mailbot.outcomes import OutboxState, RequestState


def status_lines(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    now = utcnow()
    lines = []
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
        jobs = session.scalars(select(JobRun).order_by(JobRun.name)).all()
        if jobs:
            tz = ZoneInfo(settings.timezone)
            lines.append("jobs")
            fmt = "%Y-%m-%d %H:%M %Z"
        for job in jobs:
            last = job.last_run_at.astimezone(tz).strftime(fmt) if job.last_run_at else "never"
            nxt = job.next_run_at.astimezone(tz).strftime(fmt) if job.next_run_at else "-"
            lines.append(f"  {job.name}: next {nxt}, last {last}"
                         + (f" ({job.last_result})" if job.last_result else ""))
    return lines
