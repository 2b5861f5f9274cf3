"""One sending round over many relays, and run --once's rounds around a relay's pause,
against real aiosmtpd relays (outbox rows written directly: no mailbox is read)."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from mailbot.config import load_settings
from mailbot.db.models import Outbox
from mailbot.db.session import open_database, sync_config
from mailbot.outcomes import OutboxState
from mailbot.respond import relays
from mailbot.respond.outbox import send_due, send_while
from tests.servers import SmtpSink


def _setup(tmp_path: Path, sinks: list[SmtpSink]):  # noqa: ANN202
    parts = [f'database_url = "sqlite:///{tmp_path}/mailbot.db"\n'
             '[[libraries]]\nid = "a"\nname = "A"\n']
    for i, sink in enumerate(sinks):
        maildir = tmp_path / f"md{i}"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        parts.append(f'[[mailboxes]]\nlibrary = "a"\naddress = "filia{i}@a.test"\n'
                     f'type = "maildir"\npath = "{maildir}"\n'
                     f'[mailboxes.smtp]\nhost = "{sink.host}"\nport = {sink.port}\n'
                     'timeout = 10.0\n')
    (tmp_path / "mailbot.toml").write_text("".join(parts), encoding="utf-8")
    settings = load_settings(tmp_path / "mailbot.toml")
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    return settings, sessions


def _queue(sessions, rows: list[tuple[str, str]], at: datetime) -> None:  # noqa: ANN001
    with sessions.begin() as session:
        for n, (sender, to) in enumerate(rows):
            session.add(Outbox(kind="reply", library_id="a", mail_from=sender, to_address=to,
                               message_id=f"<r{n}@a.test>", outcome="issued",
                               message=f"From: {sender}\nTo: {to}\nSubject: r{n}\n\nr{n}\n"
                               .encode(), state=OutboxState.PENDING, created_at=at,
                               due_at=at, attempts=0))


def test_a_round_over_more_relays_than_the_pool_has_connections_sends_every_reply(tmp_path):
    # A consortium with a relay per library: nine relays due at once. Each relay holds a
    # database connection or two while it waits on its relay; all at once they emptied
    # the pool (5 + 10) and the round blocked, then failed, sending nothing.
    with ExitStack() as stack:
        sinks = [stack.enter_context(SmtpSink()) for _ in range(9)]
        for sink in sinks:
            sink.data_delay = 0.2
        settings, sessions = _setup(tmp_path, sinks)
        _queue(sessions, [(f"filia{i}@a.test", f"p{i}-{j}@patron.test")
                          for i in range(9) for j in range(2)],
               datetime.now(UTC) - timedelta(seconds=5))
        report = asyncio.run(asyncio.wait_for(send_due(sessions, settings), 60))
        assert report.sent == 18
        for i, sink in enumerate(sinks):
            assert [m.rcpt_tos for m in sink.wait_for(2)] == [(f"p{i}-0@patron.test",),
                                                              (f"p{i}-1@patron.test",)]


def test_run_once_keeps_a_relays_order_across_its_pause(tmp_path, monkeypatch):
    # The first reply is throttled ("451 4.7.1 Please slow down" after its data); the
    # pause ends within the same run --once. The throttled reply was counted as tried and
    # skipped for the rest of the run, so the relay got r1, r2, then r0.
    monkeypatch.setattr(relays, "THROTTLE_FIRST", 0.3)
    with SmtpSink() as sink:
        settings, sessions = _setup(tmp_path, [sink])
        _queue(sessions, [("filia0@a.test", f"r{n}@patron.test") for n in range(3)],
               datetime.now(UTC) - timedelta(seconds=5))
        sink.fail_with(451, "4.7.1 Please slow down", count=1, stage="DATA")
        deciding = threading.Event()
        deciding.set()
        timer = threading.Timer(2.0, deciding.clear)
        timer.start()
        started = time.monotonic()
        report = asyncio.run(send_while(sessions, settings, deciding))
        timer.join()
        assert report.sent == 3 and time.monotonic() - started < 10
        assert [m.rcpt_tos for m in sink.wait_for(3)] == [("r0@patron.test",),
                                                          ("r1@patron.test",),
                                                          ("r2@patron.test",)]
        with sessions() as session:
            assert set(session.scalars(select(Outbox.state))) == {OutboxState.SENT}


def test_a_reply_held_back_for_days_is_retried_from_its_first_failure(tmp_path):
    # Queued three days ago (a max_per_day relay, a weekend-long pause), first tried now:
    # a greylisting 450 defers it. send_retry_for (2 days) counted from created_at failed
    # it at once; it counts from the first failure.
    with SmtpSink() as sink:
        settings, sessions = _setup(tmp_path, [sink])
        _queue(sessions, [("filia0@a.test", "r0@patron.test")],
               datetime.now(UTC) - timedelta(days=3))
        sink.fail_with(450, "4.2.0 Greylisted, please try again later", count=2, stage="RCPT")
        report = asyncio.run(send_due(sessions, settings, honour_retry=True,
                                      retry_for=172800.0))
        assert (report.deferred, report.failed) == (1, 0)
        with sessions.begin() as session:
            row = session.scalars(select(Outbox)).one()
            assert row.state == OutboxState.PENDING and row.attempts == 1
            first = row.failing_since
            assert first is not None and datetime.now(UTC) - first < timedelta(minutes=1)
            # Two days and more of failures later, the next temporary failure gives up.
            row.failing_since = first - timedelta(days=2, seconds=1)
            row.retry_at = None
        report = asyncio.run(send_due(sessions, settings, honour_retry=True,
                                      retry_for=172800.0))
        assert (report.deferred, report.failed) == (0, 1)


def test_a_relay_that_cannot_be_reached_is_named_in_words(tmp_path):
    # Not "SMTPConnectError: Error connecting to 127.0.0.1 on port N: [Errno 111] Connect
    # call failed ('127.0.0.1', N)" on the dashboard.
    from mailbot.db.models import Relay

    sink = SmtpSink()  # never started: nothing listens on its port
    settings, sessions = _setup(tmp_path, [sink])
    _queue(sessions, [("filia0@a.test", "r0@patron.test")], datetime.now(UTC))
    report = asyncio.run(send_due(sessions, settings))
    assert report.unreachable and report.sent == 0
    with sessions() as session:
        [relay] = session.scalars(select(Relay)).all()
    assert relay.last_error == (f"cannot reach {sink.host}:{sink.port}: connection refused: "
                                "is the relay running, are host and port right?")
