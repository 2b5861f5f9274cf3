"""APScheduler wiring for the daemon's scheduled jobs (the work is in housekeeping.py).

Cron triggers run in each library's time zone. Every job also runs once at start-up, which
is how a run missed while the daemon was stopped catches up; each records its last and next
run in the ``job_runs`` table so ``mailbot status`` can show them from another process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import utcnow
from mailbot.config import Settings, parse_hhmm
from mailbot.db.models import JobRun
from mailbot.housekeeping import close_months, purge_old_mail, queue_reminders

log = logging.getLogger(__name__)


def _record(sessions: sessionmaker[Session], name: str, *, ran: datetime | None = None,
            result: str | None = None, next_run: datetime | None = None) -> None:
    values: dict[str, object] = {"next_run_at": next_run}
    if ran is not None:
        values.update(last_run_at=ran, last_result=result)
    with sessions.begin() as session:
        # Several daemons may start at once on one PostgreSQL database: the row is created
        # by whichever comes first (ON CONFLICT DO NOTHING), then updated.
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # imported here: the other dialect's module costs ~0.1 s of each start
            from sqlalchemy.dialects.sqlite import insert
        session.execute(insert(JobRun).values(name=name)
                        .on_conflict_do_nothing(index_elements=["name"]))
        session.execute(update(JobRun).where(JobRun.name == name).values(**values))


class Jobs:
    """Owns the BackgroundScheduler; ``wake`` is called when a job queued mail to send."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.wake = wake
        self.scheduler = BackgroundScheduler(timezone=settings.timezone, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        self.work: dict[str, Callable[[datetime], str]] = {}
        self.triggers: dict[str, CronTrigger] = {}
        d = settings.daemon
        close_at = parse_hhmm(d.month_close_time)
        purge_at = parse_hhmm(d.retention_time)
        self._add("month_close", CronTrigger(hour=close_at.hour, minute=close_at.minute,
                                             timezone=settings.timezone),
                  lambda now: f"{close_months(sessions, settings, now)} code(s) expired")
        self._add("retention_purge", CronTrigger(hour=purge_at.hour, minute=purge_at.minute,
                                                 timezone=settings.timezone),
                  lambda now: f"{purge_old_mail(sessions, settings, now)} purged")
        # One reminder job per distinct (time, zone): each run covers every library due.
        seen: set[tuple[str, str]] = set()
        for lib in settings.libraries:
            zone = lib.timezone or settings.timezone
            if lib.reminder_days <= 0 or (lib.reminder_time, zone) in seen:
                continue
            seen.add((lib.reminder_time, zone))
            at = parse_hhmm(lib.reminder_time)
            self._add(f"reminders {lib.reminder_time} {zone}",
                      CronTrigger(hour=at.hour, minute=at.minute, timezone=zone),
                      self._reminders)

    def _reminders(self, now: datetime) -> str:
        queued = queue_reminders(self.sessions, self.settings, now)
        if queued:
            self.wake()
        return f"{len(queued)} reminder(s) queued"

    def _add(self, name: str, trigger: CronTrigger, work: Callable[[datetime], str]) -> None:
        self.work[name] = work
        self.triggers[name] = trigger
        self.scheduler.add_job(self._run, trigger, args=[name], id=name, name=name)

    def _run(self, name: str) -> None:
        now = utcnow()
        try:
            result = self.work[name](now)
        except Exception as exc:  # a failing job must not kill the scheduler
            log.exception("job %s failed", name)
            result = f"failed: {type(exc).__name__}: {exc}"[:500]
        else:
            log.info("job %s: %s", name, result)
        # The next run comes from the trigger, not from scheduler.get_job(): a shutdown
        # holds the scheduler's job-store lock while it waits for running jobs to end, so
        # a job asking the scheduler anything then never ends (SIGTERM during the start-up
        # catch-up hung the daemon).
        _record(self.sessions, name, ran=now, result=result, next_run=self.next_run(name))

    def next_run(self, name: str) -> datetime | None:
        """When the job ``name`` next fires on its trigger (aware)."""
        trigger = self.triggers[name]
        return trigger.get_next_fire_time(None, datetime.now(trigger.timezone))

    def start(self) -> None:
        """Catches up (every job once, now), then runs them on their triggers."""
        self.scheduler.start()
        for name in self.work:
            _record(self.sessions, name, next_run=self.next_run(name))
            self.scheduler.add_job(self._run, "date", args=[name], id=f"{name} (catch-up)",
                                   run_date=utcnow() + timedelta(seconds=1))

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
