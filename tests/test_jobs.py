"""The scheduled jobs (APScheduler) around the daemon: recorded for `status`, and stopped
cleanly whatever they are doing when SIGTERM comes."""

from __future__ import annotations

import threading
from datetime import datetime
from types import SimpleNamespace

from apscheduler.triggers.cron import CronTrigger

from mailbot.db.models import JobRun
from mailbot.db.session import open_database, sync_config
from mailbot.jobs import Jobs
from tests.botenv import make_bot


def test_a_shutdown_while_a_job_runs_waits_for_it_and_does_not_hang(tmp_path):
    # APScheduler's shutdown(wait=True) holds the scheduler's job-store lock while it waits
    # for running jobs; a job that then asked the scheduler for its next run time (as ours
    # did, to record it) waited for that lock for ever: a daemon given SIGTERM during its
    # start-up catch-up never stopped.
    bot = make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1), mailboxes=[])
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    jobs = Jobs(sessions, settings)
    running, shutting_down = threading.Event(), threading.Event()

    def slow(_now: datetime) -> str:
        running.set()
        shutting_down.wait(10)
        return "done"

    jobs._add("slow", CronTrigger(hour=3, minute=0, timezone=settings.timezone), slow)
    jobs.scheduler.start()
    jobs.scheduler.add_job(jobs._run, "date", args=["slow"], id="slow (now)")
    assert running.wait(10)
    stopper = threading.Thread(target=jobs.shutdown, daemon=True)
    stopper.start()
    stopper.join(0.5)  # shutdown is now waiting for the job, holding the scheduler's lock
    shutting_down.set()
    stopper.join(10)
    assert not stopper.is_alive(), "the scheduler's shutdown hung on the running job"
    with sessions() as s:
        row = s.get(JobRun, "slow")
        assert row is not None and row.last_result == "done"
        assert row.next_run_at is not None and row.next_run_at.utcoffset() is not None
        assert row.next_run_at > row.last_run_at
