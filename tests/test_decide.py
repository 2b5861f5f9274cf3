"""The decide stage's error policy: one bad mail is set aside, the queue goes on, and a
failure half-way through a decision leaves no trace (no code consumed, no reply)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

import mailbot.decide as decide
from mailbot.db.models import Code, LedgerEntry
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail


def _setup(tmp_path, imap_user, smtp_sink, n: int):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"013000{i};Ala;Blad{i};b{i}@patron.test;{ok}" for i in range(1, n + 1)])
    bot.import_codes([f"ERR-000{i}" for i in range(1, n + 1)])
    for i in range(1, n + 1):
        raw, _ = request_mail(f"b{i}@patron.test", "LEGIMI", f"Ala Blad{i} 013000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    return bot


def test_a_mail_that_crashes_the_decision_is_set_aside_and_the_rest_go_on(
        tmp_path, imap_user, smtp_sink, monkeypatch):
    # Rendering the reply for the second request blows up after its code was allocated:
    # that request is set aside for staff, its code stays free, the others are answered.
    bot = _setup(tmp_path, imap_user, smtp_sink, 3)
    real = decide.compose_reply

    def flaky(**kw):
        if kw["to"] == "b2@patron.test":
            raise RuntimeError("template exploded")
        return real(**kw)

    monkeypatch.setattr(decide, "compose_reply", flaky)
    assert bot.run_once() == 0
    reqs = {r.card_number or r.from_address: r for r in bot.requests()}
    states = [(r.from_address, r.state, r.outcome) for r in bot.requests()]
    assert states == [("b1@patron.test", "decided", "issued"),
                      ("b2@patron.test", "error", None),
                      ("b3@patron.test", "decided", "issued")]
    assert "template exploded" in (reqs["b2@patron.test"].error or "")
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["b1@patron.test",
                                                                 "b3@patron.test"]
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        issued = {c.code: c.request_id is not None for c in s.scalars(select(Code))}
        ledger = s.scalars(select(LedgerEntry.card_number)).all()
    # Rolled back whole: the code the failed decision had taken is free again.
    assert issued == {"ERR-0001": True, "ERR-0002": True, "ERR-0003": False}
    assert sorted(ledger) == ["0130001", "0130003"]
