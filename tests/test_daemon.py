"""`mailbot run`, the unattended daemon, against real Dovecot and aiosmtpd (issue 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest

from mailbot.daemon import Daemon
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail

# No dashboard: `mailbot run` refuses to start when its port is taken (issue 18), and
# 8080 may be another test run's.
FAST = """
[daemon]
poll_interval = 600.0
reconnect_max = 1.0
send_backoff_max = 1.0

[web]
enabled = false
"""


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def _bot(tmp_path, imap_user, smtp_sink, n: int, tables: str = FAST, policy: str = ""):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=tables,
                   policy=policy)
    w = bot.window()
    assert bot.import_readers([f"06{i:05d};Ala;Demon{i};d{i}@patron.test;{_ok(w.year)}"
                               for i in range(1, n + 1)]) == 0
    assert bot.import_codes([f"DMN-{i:06d}" for i in range(1, n + 1)]) == 0
    return bot, w


def _append(imap_user, w, i: int) -> str:
    raw, mid = request_mail(f"d{i}@patron.test", "LEGIMI", f"Ala Demon{i} 06{i:05d}")
    imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    return mid


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def daemon_for():
    started = []

    def start(bot):
        settings = bot.settings()
        d = Daemon(settings, open_database(settings.database_url))
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
        d.join(30)


def _replies_per_request(smtp_sink) -> Counter:
    return Counter(m.message["In-Reply-To"] for m in smtp_sink.messages)


def test_under_idle_a_request_is_answered_without_waiting_for_a_poll(
        tmp_path, imap_user, smtp_sink, daemon_for):
    # Polling every 10 minutes, yet a request appended to the mailbox is answered in
    # seconds: IDLE told the daemon.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 3)
    daemon_for(bot)
    time.sleep(1.0)  # the watcher is in IDLE now
    for i in (1, 2, 3):
        mid = _append(imap_user, w, i)
        _wait(lambda mid=mid: mid in _replies_per_request(smtp_sink), 10, f"reply {i}")
    assert [r.outcome for r in bot.requests()] == ["issued"] * 3


def test_the_imap_server_restarted_mid_run_loses_and_repeats_nothing(
        tmp_path, imap_user, smtp_sink, dovecot, daemon_for):
    # Dovecot restarts between two bursts: the daemon reconnects, every request is
    # answered exactly once.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 10)
    daemon_for(bot)
    mids = [_append(imap_user, w, i) for i in range(1, 6)]
    _wait(lambda: len(smtp_sink.messages) >= 5, 15, "the first burst")
    dovecot.restart()
    mids += [_append(imap_user, w, i) for i in range(6, 11)]
    _wait(lambda: len(smtp_sink.messages) >= 10, 30, "the second burst")
    time.sleep(1.0)
    assert _replies_per_request(smtp_sink) == Counter({m: 1 for m in mids})


def test_smtp_refusing_with_421_and_451_for_a_while_then_accepting(
        tmp_path, imap_user, smtp_sink, daemon_for, monkeypatch):
    # The relay says 451 six times and 421 (closing) twice: every reply still goes out,
    # once each, after it recovers. (Throttling answers pause the relay 1, 2, 4 …
    # minutes, respond/relays.py; here a second at most, so the test waits seconds.)
    from mailbot.respond import relays

    monkeypatch.setattr(relays, "THROTTLE_FIRST", 0.25)
    monkeypatch.setattr(relays, "THROTTLE_MAX", 1.0)
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 6)
    smtp_sink.fail_with(451, "try again later", count=6)
    daemon_for(bot)
    mids = [_append(imap_user, w, i) for i in range(1, 4)]
    _wait(lambda: len(smtp_sink.messages) >= 3, 30, "replies after 451s")
    smtp_sink.fail_with(421, "shutting down", count=2)
    mids += [_append(imap_user, w, i) for i in range(4, 7)]
    _wait(lambda: len(smtp_sink.messages) >= 6, 30, "replies after 421s")
    time.sleep(1.0)
    assert _replies_per_request(smtp_sink) == Counter({m: 1 for m in mids})


def test_smtp_gone_for_a_while_every_reply_goes_out_after_recovery(
        tmp_path, imap_user, smtp_sink, daemon_for):
    # The relay is down while requests arrive: decisions are made (codes allocated in
    # order), replies wait, and all go out once when it comes back.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 5)
    smtp_sink.stop()
    try:
        daemon_for(bot)
        mids = [_append(imap_user, w, i) for i in range(1, 6)]
        _wait(lambda: [r.outcome for r in bot.requests()] == ["issued"] * 5, 20, "decisions")
        time.sleep(3.0)  # several failed rounds
    finally:
        smtp_sink.start()
    _wait(lambda: len(smtp_sink.messages) >= 5, 30, "replies after recovery")
    time.sleep(1.0)
    assert _replies_per_request(smtp_sink) == Counter({m: 1 for m in mids})


def test_status_shows_the_jobs_next_runs(tmp_path, imap_user, smtp_sink, daemon_for, capsys):
    # Once the daemon has started, status lists month close, retention and reminders.
    bot, _ = _bot(tmp_path, imap_user, smtp_sink, 1)
    daemon_for(bot)
    _wait(lambda: _jobs_ran(bot, capsys), 15, "the catch-up runs")


def _jobs_ran(bot, capsys) -> bool:
    capsys.readouterr()
    bot.cli("status")
    out = capsys.readouterr().out
    return all(f"{name}: next 20" in out for name in ("month_close", "retention_purge")) and \
        "reminders 10:00 Europe/Warsaw: next 20" in out and "last never" not in out


def test_sigterm_in_the_middle_of_a_burst_then_a_restart_answers_everyone_exactly_once(
        tmp_path, imap_user, smtp_sink):
    # The daemon (a real process) is stopped with SIGTERM while answering a burst of 60,
    # exits cleanly, is started again, and every request ends up answered exactly once.
    n = 60
    bot, w = _bot(tmp_path, imap_user, smtp_sink, n)
    mids = [_append(imap_user, w, i) for i in range(1, n + 1)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mailbot", "--config", str(bot.config), "run"]
    log1 = open(tmp_path / "run1.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT, env=env)
    try:
        _wait(lambda: len(smtp_sink.messages) >= 5, 30, "the first replies")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    first = len(smtp_sink.messages)
    assert first < n, "the burst was over before SIGTERM; nothing was interrupted"
    log2 = open(tmp_path / "run2.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log2, stderr=subprocess.STDOUT, env=env)
    try:
        _wait(lambda: len(smtp_sink.messages) >= n, 60, "every reply")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _replies_per_request(smtp_sink) == Counter({m: 1 for m in mids})
    assert [r.outcome for r in bot.requests()] == ["issued"] * n
    assert "stopping: finishing the current mail" in (tmp_path / "run1.log").read_text()


def test_a_server_without_idle_is_polled(tmp_path, imap_user, smtp_sink, daemon_for,
                                         monkeypatch):
    # Where the server does not offer IDLE the daemon polls (here every second).
    from imapclient import IMAPClient

    real = IMAPClient.has_capability
    monkeypatch.setattr(IMAPClient, "has_capability",
                        lambda self, cap: False if cap.upper() == "IDLE" else real(self, cap))
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 2, tables=FAST.replace("600.0", "1.0"))
    daemon_for(bot)
    time.sleep(1.5)
    mid = _append(imap_user, w, 1)
    _wait(lambda: mid in _replies_per_request(smtp_sink), 10, "a polled reply")


def test_two_branch_mailboxes_under_idle_are_served_in_arrival_order_and_fast(
        tmp_path, imap_user_factory, smtp_sink, daemon_for):
    # Two branch mailboxes of one library, both in IDLE: each request is answered within
    # seconds (the daemon reads the other branch past it before deciding), and the codes go
    # in arrival order across both.
    a, b = imap_user_factory(), imap_user_factory()
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[a, b], tables=FAST)
    w = bot.window()
    bot.import_readers([f"06{i:05d};Ala;Demon{i};d{i}@patron.test;{_ok(w.year)}"
                        for i in range(1, 5)])
    bot.import_codes([f"DMN-{i:06d}" for i in range(1, 5)])
    daemon_for(bot)
    time.sleep(1.0)
    for i, box in ((1, a), (2, b), (3, a), (4, b)):
        raw, mid = request_mail(f"d{i}@patron.test", "LEGIMI", f"Ala Demon{i} 06{i:05d}")
        box.append(raw)  # INTERNALDATE: now, as a real delivery
        _wait(lambda mid=mid: mid in _replies_per_request(smtp_sink), 10, f"reply {i}")
    issued = {r.card_number: r.code.code for r in bot.requests()}
    assert issued == {f"06{i:05d}": f"DMN-{i:06d}" for i in range(1, 5)}


def test_the_sender_sleeps_until_the_next_reply_is_due_and_rechecks_held_ones_soon():
    from datetime import UTC, datetime

    from mailbot.daemon import HELD_RECHECK, SEND_CHECK_EVERY, send_pause
    from mailbot.respond.outbox import SendReport

    now = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert send_pause(SendReport(), None, now) == SEND_CHECK_EVERY
    assert send_pause(SendReport(), now + timedelta(seconds=7), now) == 7.0
    assert send_pause(SendReport(), now + timedelta(hours=2), now) == SEND_CHECK_EVERY
    assert send_pause(SendReport(), now - timedelta(seconds=3), now) == 0.0
    # Due replies another process is sending (PostgreSQL): not at once again (that spun,
    # hammering the database while the other process sent a burst), but soon, to take
    # them over if that process dies.
    held = SendReport(held=3)
    assert send_pause(held, now - timedelta(seconds=3), now) == HELD_RECHECK <= 1.0
