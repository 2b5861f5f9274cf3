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
