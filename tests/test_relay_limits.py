"""A relay per mailbox and its sending limits, against real relays (aiosmtpd) and a real
Dovecot: each library's replies and reminders leave through its own account; a limited
relay's burst is paced in arrival order across runs and a kill, with the ETA right; a
throttling answer pauses the relay instead of failing replies; a refused login pauses it
per daemon.auth_retry."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from mailbot.clock import utcnow
from mailbot.db.models import Relay
from mailbot.db.session import open_database
from mailbot.respond.outbox import send_due
from mailbot.respond.relays import queue_by_relay
from mailbot.runonce import run_once
from tests.relayenv import Branch, make_consortium, outbox_rows, request_burst
from tests.servers import SmtpSink

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def relay_b():
    """A second relay (library B's own account)."""
    with SmtpSink() as sink:
        yield sink


def _relay_row(sessions, key):
    with sessions() as s:
        row = s.get(Relay, key)
        s.expunge_all()
        return row


def test_two_libraries_reply_and_remind_through_their_own_relays(
        tmp_path, imap_user_factory, smtp_sink, relay_b):
    # Library A has no relay of its own (the global [smtp]), library B has its own: every
    # reply leaves through its library's relay with that library's From, and a reminder
    # of B's code too; each sent row remembers the relay it went through.
    a, b = imap_user_factory(), imap_user_factory()
    bots = make_consortium(tmp_path, smtp=smtp_sink, branches=[
        Branch("liba", a), Branch("libb", b, relay_b)], policy="reminder_days = 31")
    to_a = request_burst(bots["liba"], a, 2)
    to_b = request_burst(bots["libb"], b, 3)
    assert bots["liba"].run_once() == 0
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted(to_a)
    assert sorted(m.rcpt_tos[0] for m in relay_b.messages) == sorted(to_b)
    assert {m.mail_from for m in smtp_sink.messages} == {"ebooki@liba.test"}
    assert {m.mail_from for m in relay_b.messages} == {"ebooki@libb.test"}
    assert {m.message["From"].addresses[0].addr_spec for m in relay_b.messages} == {
        "ebooki@libb.test"}
    settings = bots["liba"].settings()
    keys = {row.to_address: row.relay for row in outbox_rows(bots["liba"])}
    assert {keys[t] for t in to_a} == {settings.smtp.key}
    assert {keys[t] for t in to_b} == {settings.mailboxes[1].smtp.key}

    smtp_sink.clear()
    relay_b.clear()
    assert bots["libb"].cli("remind") == 0  # every code of this month is due a reminder
    reminded_b = [m for m in relay_b.messages]
    assert sorted(m.rcpt_tos[0] for m in reminded_b) == sorted(to_b)
    assert {m.mail_from for m in reminded_b} == {"ebooki@libb.test"}
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted(to_a)
    assert {m.mail_from for m in smtp_sink.messages} == {"ebooki@liba.test"}


def _kill_during_sending(bot, sink, after: int) -> None:
    """``mailbot run --once`` in a process of its own, SIGKILLed (its whole process group)
    once the relay has taken ``after`` replies."""
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(bot.config),
                             "run", "--once"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sink.wait_for(after, timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_burst_through_a_relay_limited_to_30_a_minute_is_paced_in_arrival_order(
        tmp_path, imap_user_factory, smtp_sink, relay_b, database_url):
    # 100 requests, the library's relay allows 30 a minute. The first run is killed while
    # it sends; then runs a minute apart (time injected, no real waiting) each send 30, in
    # arrival order, leaving the rest untouched; nothing is lost, nothing sent twice (but
    # for the one reply a kill can catch between the relay's 250 and its mark, which goes
    # again byte for byte); the ETA shown after the first paced run is when the last
    # reply really went.
    user = imap_user_factory()
    bots = make_consortium(tmp_path, smtp=smtp_sink, database_url=database_url, branches=[
        Branch("libb", user, relay_b, {"max_per_minute": 30, "connections": 1})])
    bot = bots["libb"]
    arrivals = request_burst(bot, user, 100)
    relay_b.data_delay = 0.05  # a slow relay: the kill lands among the hand-overs
    _kill_during_sending(bot, relay_b, 10)
    killed_run = len(relay_b.messages)
    assert 10 <= killed_run <= 30
    relay_b.data_delay = 0.0
    marked = sum(o.state == "sent" for o in outbox_rows(bot))  # by the killed run
    assert killed_run - 1 <= marked <= killed_run

    settings = bot.settings()
    sessions = open_database(settings.database_url)
    key = settings.mailboxes[0].smtp.key
    start = utcnow() + timedelta(seconds=61)  # the killed run's minute is over
    eta = None
    for minute in range(10):
        now = start + timedelta(minutes=minute)
        before = len(relay_b.messages)
        result = run_once(sessions, settings, now=now)
        sent_now = len(relay_b.messages) - before
        assert sent_now <= 30
        pending = [o for o in outbox_rows(bot) if o.state == "pending"]
        if minute == 0:
            assert sent_now == 30
            (queue,) = [q for q in queue_by_relay(sessions, settings, now) if q.key == key]
            assert queue.waiting == len(pending) > 0
            assert queue.limits.per_minute == 30 and queue.sent_last_day == marked + 30
            assert queue.next_slot == now + timedelta(minutes=1)
            eta = queue.last_at
        # What the limit did not allow is untouched: no attempt, no pause of its own.
        assert all(o.attempts == 0 and o.retry_at is None and o.last_error is None
                   for o in pending)
        assert result["sent"].paced == len(pending)
        if not pending:
            break
    rows = outbox_rows(bot)
    assert {o.state for o in rows} == {"sent"} and len(rows) == 100
    assert {o.relay for o in rows} == {key}
    last = max(o.sent_at for o in rows)
    assert eta is not None and abs((last - eta).total_seconds()) <= 60

    got = [m.rcpt_tos[0] for m in relay_b.messages]
    first_seen = list(dict.fromkeys(got))
    assert first_seen == arrivals  # every patron, in arrival order
    twice = [to for to in set(got) if got.count(to) > 1]
    assert len(twice) <= 1
    for to in twice:
        ids = {m.message["Message-ID"] for m in relay_b.messages if m.rcpt_tos[0] == to}
        assert len(ids) == 1
    # Never more than 30 in any minute (the runs with injected time; the killed run's
    # sends are more than a minute before them).
    times = sorted(o.sent_at for o in rows)
    assert all(times[i + 30] - times[i] >= timedelta(minutes=1)
               for i in range(len(times) - 30))
    assert smtp_sink.messages == []  # nothing through the global relay
    sessions.kw["bind"].dispose()


def _pending_pair(tmp_path, imap_user_factory, relay, **relay_keys):
    user = imap_user_factory()
    default = SmtpSink().start() if relay_keys.pop("own", False) else None
    bots = make_consortium(tmp_path, smtp=default or relay, branches=[
        Branch("liba", user, relay if default else None, relay_keys)])
    request_burst(bots["liba"], user, 2)
    return bots["liba"], default


@pytest.mark.parametrize(("code", "text", "stage"), [
    (421, "4.7.0 Try again later, closing connection", "MAIL"),
    (451, "4.7.1 Rate limited, slow down", "DATA"),
    (452, "4.5.3 Too many messages this hour", "MAIL"),
    (550, "5.4.5 Daily user sending limit exceeded.", "DATA"),
    (554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", "DATA"),
    (450, "4.4.2 Message submission rate for this client has exceeded the configured limit",
     "MAIL"),
])
def test_a_throttling_answer_pauses_the_relay_and_fails_no_reply(
        tmp_path, imap_user_factory, smtp_sink, code, text, stage):
    # The relay says "too much": no reply is failed or counted as an attempt; the relay is
    # paused 1 minute (every process sees it: the relays table), then 2 after the next
    # throttling answer; nothing is tried during the pause; after it the replies go and
    # the pause is forgotten.
    bot, _ = _pending_pair(tmp_path, imap_user_factory, smtp_sink)
    smtp_sink.fail_with(code, text, stage=stage)  # until told otherwise
    started = utcnow()
    assert bot.run_once() == 1  # a reply could not be sent now
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    key = settings.smtp.key
    rows = outbox_rows(bot)
    assert [(o.state, o.attempts, o.retry_at, o.last_error) for o in rows] == [
        ("pending", 0, None, None)] * 2
    relay = _relay_row(sessions, key)
    assert (relay.pause_reason, relay.failures) == ("throttled", 1)
    assert str(code) in relay.last_error
    pause = (relay.paused_until - started).total_seconds()
    assert 60 <= pause <= 60 + (utcnow() - started).total_seconds()
    (queue,) = queue_by_relay(sessions, settings, utcnow())
    assert (queue.waiting, queue.pause_reason, queue.paused_until) == (
        2, "throttled", relay.paused_until)
    assert queue.last_at == relay.paused_until == queue.next_slot

    smtp_sink.stop_failing()
    assert bot.run_once() == 1  # still paused, not even tried: held by the pause
    assert smtp_sink.messages == [] and {o.attempts for o in outbox_rows(bot)} == {0}

    smtp_sink.fail_with(code, text, stage=stage)
    later = relay.paused_until + timedelta(seconds=1)
    report = asyncio.run(send_due(sessions, settings, now=later))
    assert (report.sent, report.failed, report.deferred) == (0, 0, 0) and report.paused == 2
    relay = _relay_row(sessions, key)
    assert relay.failures == 2 and relay.paused_until == later + timedelta(minutes=2)

    smtp_sink.stop_failing()
    report = asyncio.run(send_due(sessions, settings, now=relay.paused_until))
    assert report.sent == 2 and len(smtp_sink.messages) == 2
    relay = _relay_row(sessions, key)
    assert (relay.paused_until, relay.pause_reason, relay.failures, relay.last_error) == (
        None, None, 0, None)
    assert relay.last_ok_at is not None
    sessions.kw["bind"].dispose()


def test_greylisting_of_one_recipient_defers_that_reply_only(
        tmp_path, imap_user_factory, smtp_sink):
    # 450 to one RCPT TO: that reply waits (an attempt counted, a retry time), the other
    # goes; the relay is not paused.
    bot, _ = _pending_pair(tmp_path, imap_user_factory, smtp_sink)
    smtp_sink.fail_with(450, "4.2.0 Greylisted, please try again later", count=1,
                        stage="RCPT")
    assert bot.run_once() == 1  # a reply could not be sent now
    rows = outbox_rows(bot)
    assert sorted(o.state for o in rows) == ["pending", "sent"]
    waiting = next(o for o in rows if o.state == "pending")
    assert waiting.attempts == 1 and waiting.retry_at is not None
    assert "450" in waiting.last_error
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    relay = _relay_row(sessions, settings.smtp.key)
    assert relay is None or relay.paused_until is None
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 2
    sessions.kw["bind"].dispose()


def test_a_refused_login_pauses_the_relay_per_auth_retry_and_is_not_hammered(
        tmp_path, imap_user_factory):
    # The relay refuses our password: the replies stay pending (no attempt counted), the
    # relay is paused daemon.auth_retry (300 s), the reason named; a run during the pause
    # does not log in at all; the next failure doubles the pause.
    with SmtpSink(auth=("relay-user", "right-password")) as relay:
        bot, default = _pending_pair(tmp_path, imap_user_factory, relay, own=True,
                                     username="relay-user", password="wrong-password")
        try:
            started = utcnow()
            assert bot.run_once() == 1  # a reply could not be sent now
            settings = bot.settings()
            sessions = open_database(settings.database_url)
            key = settings.mailboxes[0].smtp.key
            assert [(o.state, o.attempts) for o in outbox_rows(bot)] == [("pending", 0)] * 2
            state = _relay_row(sessions, key)
            assert (state.pause_reason, state.failures) == ("auth", 1)
            assert "535" in state.last_error and "wrong-password" not in state.last_error
            pause = (state.paused_until - started).total_seconds()
            assert 300 <= pause <= 300 + (utcnow() - started).total_seconds()
            logins = len(relay.logins)
            # One connection tries (aiosmtplib tries PLAIN, then LOGIN); the second one
            # waits for it and does not try at all.
            assert 1 <= logins <= 2 and not any(x.success for x in relay.logins)

            assert bot.run_once() == 1  # held by the pause
            assert len(relay.logins) == logins  # paused: not tried again

            later = state.paused_until + timedelta(seconds=1)
            asyncio.run(send_due(sessions, settings, now=later))
            state = _relay_row(sessions, key)
            assert state.failures == 2 and state.paused_until == later + timedelta(seconds=600)
            assert len(relay.logins) > logins
            assert {o.attempts for o in outbox_rows(bot)} == {0}
            assert default.messages == [] and relay.messages == []

            # IT corrects the password: the pause the wrong one earned (10 minutes now)
            # does not hold the right one back; the replies go at once.
            bot.config.write_text(bot.config.read_text().replace('"wrong-password"',
                                                                 '"right-password"'))
            assert bot.run_once() == 0
            assert len(relay.wait_for(2)) == 2
            state = _relay_row(sessions, key)
            assert (state.paused_until, state.pause_reason, state.failures) == (None, None, 0)
            sessions.kw["bind"].dispose()
        finally:
            default.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_processes_never_both_spend_one_relays_allowance(
        tmp_path, imap_user_factory, smtp_sink, relay_b, database_url):
    # PostgreSQL, two senders (two engines, as two processes) at the same moment on a
    # relay limited to 30 a minute with 60 replies due: together they send 30, not 60;
    # the one that found the relay busy says so (held) and sends nothing through it.
    from mailbot.db.session import make_engine
    from sqlalchemy.orm import sessionmaker

    user = imap_user_factory()
    bots = make_consortium(tmp_path, smtp=smtp_sink, database_url=database_url, branches=[
        Branch("libb", user, relay_b, {"max_per_minute": 30})])
    bot = bots["libb"]
    request_burst(bot, user, 60)
    relay_b.fail_with(421, "4.3.2 not now", stage="MAIL")  # decided, not sent
    assert bot.run_once() == 1  # a reply could not be sent now
    relay_b.stop_failing()
    settings = bot.settings()
    later = utcnow() + timedelta(minutes=31)  # after the throttling pause
    engines = [make_engine(settings.database_url) for _ in range(2)]
    try:
        factories = [sessionmaker(bind=e) for e in engines]

        async def both():
            return await asyncio.gather(*(send_due(f, settings, now=later) for f in factories))

        reports = asyncio.run(both())
        assert sum(r.sent for r in reports) == 30 == len(relay_b.messages)
        assert sorted(r.held for r in reports) == [0, 60]
    finally:
        for e in engines:
            e.dispose()


def test_the_daemon_sleeps_until_a_limited_relays_next_slot() -> None:
    # Replies held back by a relay's limits are due already: the sender sleeps until the
    # slot opens (at most SEND_CHECK_EVERY), not 0 s over and over.
    from mailbot.daemon import SEND_CHECK_EVERY, send_pause
    from mailbot.respond.outbox import SendReport

    now = utcnow()
    paced = SendReport(paced=70, wake_at=now + timedelta(seconds=12))
    assert send_pause(paced, now - timedelta(seconds=5), now) == 12.0
    assert send_pause(paced, None, now) == 12.0
    assert send_pause(paced, now + timedelta(seconds=3), now) == 3.0  # another row's retry
    slow = SendReport(paused=2, wake_at=now + timedelta(minutes=30))
    assert send_pause(slow, now, now) == SEND_CHECK_EVERY


def test_the_daemon_sends_through_one_relay_while_the_other_is_down(
        tmp_path, imap_user_factory, smtp_sink, relay_b):
    # Library B's relay is down: library A's replies still go out in seconds (B's back-off
    # is B's alone); once B's relay is back, B's replies go too, each once.
    from mailbot.daemon import Daemon

    a, b = imap_user_factory(), imap_user_factory()
    bots = make_consortium(tmp_path, smtp=smtp_sink, branches=[
        Branch("liba", a), Branch("libb", b, relay_b)],
        daemon="poll_interval = 600.0\nreconnect_max = 2.0\nsend_backoff_max = 1.0\n",
        tables="[web]\nenabled = false\n")
    port = relay_b.port
    relay_b.stop()
    settings = bots["liba"].settings()
    daemon = Daemon(settings, open_database(settings.database_url))
    try:
        to_b = request_burst(bots["libb"], b, 3)
        daemon.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
                o.state == "pending" and o.last_error for o in outbox_rows(bots["libb"])):
            time.sleep(0.2)
        to_a = request_burst(bots["liba"], a, 3)  # while B's relay is down
        smtp_sink.wait_for(3, timeout=15)
        assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted(to_a)
        relay_b.port = port
        relay_b.start()
        relay_b.wait_for(3, timeout=15)
    finally:
        daemon.stop()
        daemon.join(30)
    time.sleep(0.5)
    assert sorted(m.rcpt_tos[0] for m in relay_b.messages) == sorted(to_b)
    assert len(smtp_sink.messages) == 3
