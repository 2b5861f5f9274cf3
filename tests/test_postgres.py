"""Several mailbot processes on one PostgreSQL database (issue 7): the database's own
locks keep every request decided once, every code given once, arrival order strict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select

from mailbot.db.models import Code, LedgerEntry, Request
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail
from tests.databases import fresh_postgres

N = 120
POOL = 80


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


@pytest.fixture
def pg_url():
    with fresh_postgres() as url:
        yield url


def _burst(tmp_path, imap_user, smtp_sink, url, tables=""):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], database_url=url,
                   tables=tables)
    w = bot.window()
    assert bot.import_readers([f"3{i:06d};Ala;Pg{i};pg{i}@patron.test;{_ok(w.year)}"
                               for i in range(N)]) == 0
    assert bot.import_codes([f"PG-CODE-{i:05d}" for i in range(POOL)]) == 0
    # Arrival order differs from UID order: every third mail is appended late but dated
    # early.
    order = sorted(range(N), key=lambda i: (i % 3 != 0, i))
    for i in order:
        raw, _ = request_mail(f"pg{i}@patron.test", "LEGIMI", f"Ala Pg{i} 3{i:06d}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    return bot


def _check(bot, smtp_sink) -> None:
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        reqs = s.scalars(select(Request).order_by(Request.received_at, Request.uid)).all()
        assert len(reqs) == N and all(r.state == "decided" for r in reqs)
        # The POOL earliest arrivals hold the codes, in arrival order.
        assert [r.outcome for r in reqs] == ["issued"] * POOL + ["pool_exhausted"] * (N - POOL)
        issued = s.scalars(select(Code).where(Code.issued_at.is_not(None))
                           .order_by(Code.id)).all()
        assert len({c.request_id for c in issued}) == POOL
        by_request = {c.request_id: c.code for c in issued}
        assert [by_request[r.id] for r in reqs[:POOL]] == [f"PG-CODE-{i:05d}"
                                                            for i in range(POOL)]
        assert s.scalar(select(func.count(LedgerEntry.id))) == POOL
    replies = Counter(m.message["In-Reply-To"] for m in smtp_sink.messages)
    assert set(replies) == {r.message_id for r in reqs}


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_racing_on_one_burst_give_the_same_outcomes_as_one(
        tmp_path, imap_user, smtp_sink, pg_url, processes):
    # Two or three `run --once` started at the same moment on the same mailbox and database:
    # every request decided once, codes in strict arrival order, each answered.
    bot = _burst(tmp_path, imap_user, smtp_sink, pg_url)
    cmd = [sys.executable, "-m", "mailbot", "--config", str(bot.config), "run", "--once"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(processes)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    _check(bot, smtp_sink)
    replies = Counter(m.message["In-Reply-To"] for m in smtp_sink.messages)
    assert max(replies.values()) == 1  # nobody answered twice
    assert "could not be decided" not in b"".join(e for _, e in outs).decode()


def _sending(conn) -> set[int]:
    """The processes holding outbox rows they have claimed to send (their advisory locks;
    make_engine names each connection after its process), seen on ``conn``."""
    from sqlalchemy import text

    from mailbot.respond.outbox import OUTBOX_LOCKS as _OUTBOX_LOCKS

    names = conn.scalars(text(
        "SELECT DISTINCT a.application_name FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.classid = :key AND a.datname = current_database()"),
        {"key": _OUTBOX_LOCKS}).all()
    conn.rollback()  # the next look sees the locks as they are then
    return {int(name.split()[1]) for name in names if name.startswith("mailbot ")}


def test_a_daemon_killed_mid_burst_is_taken_over_by_the_others(tmp_path, imap_user,
                                                               smtp_sink, pg_url):
    # Three daemons share the burst; the one sending (holding replies it claimed and has
    # not sent yet: the relay takes 20 ms a reply) is killed with SIGKILL in the middle.
    # The other two finish it: nothing stuck, every request decided once and answered.
    bot = _burst(tmp_path, imap_user, smtp_sink, pg_url,
                 tables="[daemon]\npoll_interval = 600.0\nreconnect_max = 1.0\n"
                        "send_backoff_max = 1.0\n[web]\nenabled = false\n")
    smtp_sink.data_delay = 0.02
    cmd = [sys.executable, "-m", "mailbot", "--config", str(bot.config), "run"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = [(tmp_path / f"daemon-{i}.log").open("wb") for i in range(3)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
             for log in logs]
    watcher = create_engine(pg_url)
    try:
        deadline = time.monotonic() + 60
        sending: set[int] = set()
        with watcher.connect() as watch:
            while (len(smtp_sink.messages) < 10 or not sending) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
                sending = _sending(watch)
        pids = [p.pid for p in procs]
        assert sending and sending <= set(pids), (sending, pids)
        victim = pids.index(min(sending))
        answered = len({m.message["In-Reply-To"] for m in smtp_sink.messages})
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(timeout=10)
        killed = time.monotonic()
        assert answered < N  # it was killed with replies of the burst still to send
        deadline = killed + 120
        while len({m.message["In-Reply-To"] for m in smtp_sink.messages}) < N \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        # Taken over at once, not when the others' 30-second timers come round: the
        # killed process's locks went with its connections, and the others were told
        # (NOTIFY) that there were replies to send.
        took_over = time.monotonic() - killed
    finally:
        watcher.dispose()
        others = [(i, p) for i, p in enumerate(procs) if p.poll() is None]
        for _i, p in others:
            p.send_signal(signal.SIGTERM)
        try:
            for i, p in others:
                code = p.wait(timeout=60)
                logs[i].close()
                assert code == 0, (tmp_path / f"daemon-{i}.log").read_text()[-3000:]
        finally:
            for p in procs:  # none left running, whatever failed above
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for log in logs:
                log.close()
    _check(bot, smtp_sink)
    replies = Counter(m.message["In-Reply-To"] for m in smtp_sink.messages)
    assert sum(replies.values()) - N <= 1  # at most the one reply the kill interrupted
    assert took_over < 15, f"the others took {took_over:.1f} s to finish the burst"


def test_a_burst_on_postgresql_is_sent_by_a_second_process_while_deciding(
        tmp_path, imap_user, smtp_sink, pg_url, monkeypatch):
    # A full decide batch waiting is a burst: a child process sends (its own connection,
    # advisory-lock claims) while this one decides. The outcome is the one-process one.
    from mailbot import runonce
    from mailbot.decide import sizes

    monkeypatch.setattr(sizes, "BATCH_SIZE", 40)
    started = []
    real = runonce.SenderProcess.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        started.append(self.process.pid)

    monkeypatch.setattr(runonce.SenderProcess, "__init__", spy)
    bot = _burst(tmp_path, imap_user, smtp_sink, pg_url)
    assert bot.run_once() == 0
    assert len(started) == 1 and started[0] != os.getpid()
    _check(bot, smtp_sink)


def test_a_sending_process_that_dies_is_reported_and_leaves_its_replies_pending(
        tmp_path, imap_user, smtp_sink, pg_url):
    from mailbot import runonce
    from mailbot.errors import MailbotError

    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], database_url=pg_url)
    sender = runonce.SenderProcess(bot.settings(), None)
    os.kill(sender.process.pid, signal.SIGKILL)
    with pytest.raises(MailbotError, match="ended without a report"):
        sender.finish()
    # An error inside the child comes back as that error.
    broken = bot.settings()
    object.__setattr__(broken, "database_url", pg_url.rsplit("/", 1)[0] + "/no_such_db")
    sender = runonce.SenderProcess(broken, None)
    with pytest.raises(Exception, match="no_such_db"):
        sender.finish()


def test_daemons_starting_together_record_their_jobs_without_colliding(pg_url):
    # Each daemon records its scheduled jobs at start. Two starting at once on a new
    # database both find no row for a job: the second must wait for the first's row and
    # update it, not fail with a unique violation (which stopped a daemon at start-up).
    import threading
    from datetime import UTC, datetime

    from mailbot.db.models import JobRun
    from mailbot.jobs import _record

    sessions = open_database(pg_url)
    first = sessions()
    first.add(JobRun(name="retention_purge"))
    first.flush()  # inserted, not committed: the other start-up is in between
    errors: list[BaseException] = []

    def second() -> None:
        try:
            _record(sessions, "retention_purge", next_run=datetime(2026, 12, 1, tzinfo=UTC))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)  # the second waits on the first's uncommitted row
    first.commit()
    first.close()
    thread.join(10)
    assert errors == []
    with sessions() as s:
        row = s.get(JobRun, "retention_purge")
        assert row is not None and row.next_run_at == datetime(2026, 12, 1, tzinfo=UTC)


def test_processes_on_one_database_wake_each_other_with_notifications(pg_url):
    # LISTEN/NOTIFY: what one process tells the channel reaches a listener on another
    # connection at once; with nothing told, the wait ends empty after its timeout.
    from mailbot.db import notify

    engine = open_database(pg_url).kw["bind"]
    assert notify.shared(engine)
    with notify.listening(engine, "mailbot-test") as wait:
        started = time.monotonic()
        assert wait(0.2) == []
        assert 0.15 < time.monotonic() - started < 5
        notify.notify(engine, "mailbot-test", "send")
        notify.notify(engine, "mailbot-test", "decide")
        got = wait(5.0)
        while len(got) < 2 and time.monotonic() - started < 10:
            got += wait(1.0)
        assert got == ["send", "decide"]
