"""The outbox sender against a real aiosmtpd: temporary failures wait, permanent ones are
marked for staff, and a sent reply is never sent again. On SQLite and on PostgreSQL, where
`run --once` sends while it is still deciding and claims rows with advisory locks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from mailbot.db.models import Outbox
from mailbot.db.session import open_database
from mailbot.respond.outbox import next_due
from tests.botenv import make_bot, request_mail


def _outbox(bot):
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        return {o.to_address: o for o in s.scalars(select(Outbox))}


def _two_requests(tmp_path, imap_user, smtp_sink, database_url=None):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], database_url=database_url)
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"014000{i};Ala;Poczta{i};s{i}@patron.test;{ok}" for i in (1, 2)])
    bot.import_codes(["SEND-0001", "SEND-0002"])
    for i in (1, 2):
        raw, _ = request_mail(f"s{i}@patron.test", "LEGIMI", f"Ala Poczta{i} 014000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    return bot


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_temporary_refusal_leaves_the_reply_pending_and_the_next_run_sends_it(
        tmp_path, imap_user, smtp_sink, database_url):
    # 451 for the first RCPT (greylisting of that recipient): that reply stays pending with
    # the error noted; the next run sends it; nobody gets two replies. (A 451 at the end of
    # DATA throttles the whole relay instead: tests/test_relay_limits.py.)
    bot = _two_requests(tmp_path, imap_user, smtp_sink, database_url)
    smtp_sink.fail_with(451, "greylisted, try later", count=1, stage="RCPT")
    assert bot.run_once() == 1  # a reply could not be sent now
    assert len(smtp_sink.messages) == 1
    box = _outbox(bot)  # (two connections: either reply's DATA may be the first)
    assert sorted(o.state for o in box.values()) == ["pending", "sent"]
    waiting = next(o for o in box.values() if o.state == "pending")
    assert "451" in (waiting.last_error or "")
    assert bot.run_once() == 0
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["s1@patron.test",
                                                                 "s2@patron.test"]
    box = _outbox(bot)
    assert {o.state for o in box.values()} == {"sent"}
    # The sent-mark is written straight on the driver (respond/outbox.py): it must still
    # read back as an aware time in this run, with the attempts counted.
    assert sorted(o.attempts for o in box.values()) == [1, 2]
    for o in box.values():
        assert o.sent_at is not None and o.sent_at.utcoffset() == timedelta(0)
        assert abs((datetime.now(UTC) - o.sent_at).total_seconds()) < 60


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_permanent_refusal_is_marked_failed_for_staff_and_not_retried(
        tmp_path, imap_user, smtp_sink, database_url):
    # 550 for one recipient: that reply is failed (with the reason), never retried. (The
    # two replies' envelopes go out on two connections at once: either may be refused.)
    bot = _two_requests(tmp_path, imap_user, smtp_sink, database_url)
    smtp_sink.fail_with(550, "no such user", count=1, stage="RCPT")
    assert bot.run_once() == 1  # a reply could not be sent now
    box = _outbox(bot)
    assert sorted(o.state for o in box.values()) == ["failed", "sent"]
    refused = next(to for to, o in box.items() if o.state == "failed")
    assert "550" in (box[refused].last_error or "")
    assert bot.run_once() == 0
    assert [m.rcpt_tos[0] for m in smtp_sink.messages] == [
        to for to in ("s1@patron.test", "s2@patron.test") if to != refused]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_an_unreachable_relay_keeps_every_reply_pending_until_it_is_back(
        tmp_path, imap_user, smtp_sink, database_url):
    # The relay is down: decisions are made and kept, replies wait, then all go out once.
    bot = _two_requests(tmp_path, imap_user, smtp_sink, database_url)
    smtp_sink.stop()
    try:
        assert bot.run_once() == 1  # a reply could not be sent now
        assert {o.state for o in _outbox(bot).values()} == {"pending"}
        assert [r.outcome for r in bot.requests()] == ["issued", "issued"]
    finally:
        smtp_sink.start()
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 2
    assert {o.state for o in _outbox(bot).values()} == {"sent"}


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_relay_refusing_our_sender_fails_no_reply(
        tmp_path, imap_user, smtp_sink, database_url):
    # 550 at MAIL FROM is the relay's problem, not the replies': they stay pending (with
    # the error shown) and go out once the relay accepts us again.
    bot = _two_requests(tmp_path, imap_user, smtp_sink, database_url)
    # Refused for the whole first run (on PostgreSQL a run tries once more after deciding,
    # so a single refusal would be over by then).
    smtp_sink.fail_with(550, "sender address rejected", stage="MAIL")
    assert bot.run_once() == 1  # a reply could not be sent now
    box = _outbox(bot)
    assert {o.state for o in box.values()} == {"pending"}
    assert any("550" in (o.last_error or "") for o in box.values())
    smtp_sink.stop_failing()
    assert bot.run_once() == 0
    assert {o.state for o in _outbox(bot).values()} == {"sent"}
    assert len(smtp_sink.messages) == 2


def _pending_pair(tmp_path, imap_user, smtp_sink, database_url):
    """Two replies decided while the relay was down: both pending in the outbox."""
    bot = _two_requests(tmp_path, imap_user, smtp_sink, database_url)
    smtp_sink.stop()
    try:
        assert bot.run_once() == 1  # a reply could not be sent now
    finally:
        smtp_sink.start()
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        ids = sorted(s.scalars(select(Outbox.id).where(Outbox.state == "pending")))
    assert len(ids) == 2
    return bot, sessions, ids


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_next_due_is_when_the_earliest_pending_reply_may_be_sent(
        tmp_path, imap_user, smtp_sink, database_url):
    # The daemon's sender sleeps until then: a row's own due time, or its pause after a
    # temporary failure when that is later; sent rows do not count.
    _, sessions, (a, b) = _pending_pair(tmp_path, imap_user, smtp_sink, database_url)
    t = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    with sessions.begin() as s:
        s.get(Outbox, a).due_at, s.get(Outbox, a).retry_at = t + timedelta(minutes=10), None
        s.get(Outbox, b).due_at = t + timedelta(minutes=5)
        s.get(Outbox, b).retry_at = t + timedelta(minutes=20)
    assert next_due(sessions) == t + timedelta(minutes=10)
    with sessions.begin() as s:
        s.get(Outbox, a).state = "sent"
    got = next_due(sessions)
    assert got == t + timedelta(minutes=20) and got.utcoffset() == timedelta(0)
    with sessions.begin() as s:
        s.get(Outbox, b).state = "failed"
    assert next_due(sessions) is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_replies_another_process_is_sending_are_reported_as_held_and_left_to_it(
        tmp_path, imap_user, smtp_sink, database_url):
    # Another process holds both rows (its advisory locks): this one sends neither and says
    # so (the daemon then looks again within a second instead of at once, over and over);
    # once that process lets go (or dies), the rows are sent here.
    from mailbot.respond.outbox import OUTBOX_LOCKS, send_due

    bot, sessions, ids = _pending_pair(tmp_path, imap_user, smtp_sink, database_url)
    settings = bot.settings()
    # Its own engine: a connection of this process's pool, once closed, would go back to
    # the pool with its locks and might be the very one the sender takes next.
    from mailbot.db.session import make_engine

    other_engine = make_engine(settings.database_url)
    other = other_engine.connect()
    try:
        for oid in ids:
            assert other.execute(text("SELECT pg_try_advisory_lock(:k, :id)"),
                                 {"k": OUTBOX_LOCKS, "id": oid}).scalar()
        report = asyncio.run(send_due(sessions, settings))
        assert (report.sent, report.held, report.tried) == (0, 2, set())
        assert smtp_sink.messages == []
    finally:
        other.close()  # its locks go with its connection, as with a killed process
        other_engine.dispose()
    report = asyncio.run(send_due(sessions, settings))
    assert (report.sent, report.held) == (2, 0)
    assert len(smtp_sink.messages) == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_sent_marks_let_postgresql_keep_a_plan_and_the_connection_is_set_back(
        tmp_path, imap_user, smtp_sink, database_url, monkeypatch):
    # Each reply's mark is an UPDATE by primary key: planned once, not for every reply as
    # make_engine's setting (for the batch lookups) would have it. The connection goes
    # back to the pool with that setting restored.
    from contextlib import contextmanager

    from mailbot.db import tuning
    from mailbot.respond.outbox import send_due

    bot, sessions, _ids = _pending_pair(tmp_path, imap_user, smtp_sink, database_url)
    seen: list[tuple[str, str, object]] = []
    real = tuning.many_marks

    @contextmanager
    def spy(conn):
        with real(conn):
            seen.append((conn.execute(text("SHOW plan_cache_mode")).scalar(),
                         conn.execute(text("SHOW synchronous_commit")).scalar(),
                         conn.connection.dbapi_connection))
            yield

    monkeypatch.setattr(tuning, "many_marks", spy)
    report = asyncio.run(send_due(sessions, bot.settings()))
    assert report.sent == 2 and [mode for mode, _s, _c in seen] == ["auto"]
    assert seen[0][1] == "off"  # nor does each mark wait for its WAL flush
    driver = seen[0][2]
    assert driver.execute("SHOW plan_cache_mode").fetchone()[0] == "force_custom_plan"
    assert driver.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    driver.rollback()
