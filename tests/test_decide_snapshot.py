"""SQLite: a batch is decided on a snapshot and written under the write lock.

SQLite has one write lock for the whole file. Were a batch decided inside it, the sender's
sent-marks and intake's stored chunks would wait a whole batch each time (in a burst: most
of the run). So a batch is read and decided without it, then written in a short
transaction that first checks the snapshot still holds: its requests still waiting, its
codes still free. Here another process decides the same requests, or a code is withdrawn,
between the snapshot and the write: the batch must be decided again, never twice.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import timedelta

from sqlalchemy import select, update

import mailbot.decide as decide
import mailbot.decide.policies as policies
import mailbot.decide.runner as runner
from mailbot.clock import utcnow
from mailbot.db.models import Code, LedgerEntry, Outbox, Request
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail


def _bot(tmp_path, imap_user, smtp_sink, n: int = 4, codes: int = 4):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"05000{i};Ala;Migawka{i};m{i}@patron.test;{ok}"
                        for i in range(1, n + 1)])
    bot.import_codes([f"SNAP-{i:04d}" for i in range(1, codes + 1)])
    for i in range(1, n + 1):
        raw, _ = request_mail(f"m{i}@patron.test", "LEGIMI", f"Ala Migawka{i} 05000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    return bot


def _db_path(bot) -> str:
    return bot.settings().database_url.removeprefix("sqlite:///")


def _state(bot):
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        requests = [(r.from_address, r.state, r.outcome) for r in
                    s.scalars(select(Request).order_by(Request.received_at))]
        issued = sorted(s.scalars(select(Code.code).where(Code.issued_at.is_not(None))))
        ledger = sorted(s.scalars(select(LedgerEntry.code_id)))
        replies = sorted(s.scalars(select(Outbox.to_address)))
    return requests, issued, ledger, replies


def test_a_batch_is_decided_without_the_write_lock(tmp_path, imap_user, smtp_sink,
                                                   monkeypatch):
    bot = _bot(tmp_path, imap_user, smtp_sink)
    took_lock: list[bool] = []
    real = runner.decide

    def watched(*args, **kwargs):
        # Another connection asks for the write lock, not waiting at all: it must get it
        # while the batch is being decided.
        other = sqlite3.connect(_db_path(bot), timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            took_lock.append(True)
        except sqlite3.OperationalError:
            took_lock.append(False)
        finally:
            other.close()
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "decide", watched)
    assert bot.run_once() == 0
    assert took_lock == [True] * 4
    requests, issued, ledger, replies = _state(bot)
    assert [r[2] for r in requests] == ["issued"] * 4
    assert issued == [f"SNAP-{i:04d}" for i in range(1, 5)]
    assert len(smtp_sink.wait_for(4)) == 4


def test_requests_another_process_decided_meanwhile_are_not_decided_twice(
        tmp_path, imap_user, smtp_sink, monkeypatch, caplog):
    bot = _bot(tmp_path, imap_user, smtp_sink)
    real = policies.write_checked
    raced: list[int] = []

    def racing(session, batch, library_id):
        if not raced:
            # Between this batch's snapshot and its write, another process (its own
            # engine and connections) decides every waiting request.
            raced.append(0)
            other = open_database(bot.settings().database_url)
            raced[0] = len(decide.decide_pending(other, bot.settings()))
            other.kw["bind"].dispose()
        return real(session, batch, library_id)

    monkeypatch.setattr(policies, "write_checked", racing)
    with caplog.at_level(logging.INFO, logger="mailbot.decide"):
        assert bot.run_once() == 0
    assert raced == [4]
    assert "deciding it again" in caplog.text
    requests, issued, ledger, replies = _state(bot)
    assert [r[1:] for r in requests] == [("decided", "issued")] * 4
    assert issued == [f"SNAP-{i:04d}" for i in range(1, 5)]
    assert len(ledger) == len(set(ledger)) == 4
    assert replies == sorted(f"m{i}@patron.test" for i in range(1, 5))
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(4)) == replies
    assert len(smtp_sink.messages) == 4


def test_a_code_withdrawn_meanwhile_is_not_issued(tmp_path, imap_user, smtp_sink,
                                                   monkeypatch):
    bot = _bot(tmp_path, imap_user, smtp_sink, n=3, codes=4)
    real = policies.write_checked
    withdrawn: list[str] = []

    def withdrawing(session, batch, library_id):
        if not withdrawn:
            # Staff take the pool's first code out (expired) after the batch chose it.
            other = open_database(bot.settings().database_url)
            with other.begin() as s:
                first = s.scalars(select(Code).order_by(Code.id)).first()
                s.execute(update(Code).where(Code.id == first.id).values(expired_at=utcnow()))
                withdrawn.append(first.code)
            other.kw["bind"].dispose()
        return real(session, batch, library_id)

    monkeypatch.setattr(policies, "write_checked", withdrawing)
    assert bot.run_once() == 0
    assert withdrawn == ["SNAP-0001"]
    requests, issued, ledger, replies = _state(bot)
    assert [r[1:] for r in requests] == [("decided", "issued")] * 3
    assert issued == ["SNAP-0002", "SNAP-0003", "SNAP-0004"]
    assert len(ledger) == 3
