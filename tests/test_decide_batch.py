"""Deciding in batches gives exactly what deciding one request at a time gives.

mailbot.decide.batch reads what the rules need once per batch and keeps it current in memory;
a mistake there would show only when two requests of one batch touch the same card,
address or pool. The same mail is decided once with batches of one request and once with
one batch for everything, on SQLite and PostgreSQL, and every outcome, code and reply
must agree: a card asking twice, one address asking for several cards (address limit),
one sender writing too often (reply cap), the pool running out mid-batch, eligibility
tests before and after it ran out, unknown cards and wrong names.
"""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes

import pytest
from sqlalchemy import select

import mailbot.decide.sizes as sizes
import mailbot.decide.runner as runner
from mailbot.clock import utcnow
from mailbot.db.models import LedgerEntry, Outbox
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail

POLICY = """eligibility_test = true
replies_per_sender_per_day = 3
max_codes_per_address_per_month = 2
"""


def _mails(year: int) -> list[tuple[str, str, str]]:
    """(sender, subject, body) in arrival order."""
    mails = [(f"r{i}@patron.test", "LEGIMI", f"Ala Czyt{i} 04000{i}") for i in range(1, 7)]
    mails += [
        ("r1@patron.test", "LEGIMI", "Ala Czyt1 040001"),       # asks again: already_received
        ("r1@patron.test", "LEGIMI", "Ala Czyt1 040001"),       # the third reply today
        ("r1@patron.test", "LEGIMI", "Ala Czyt1 040001"),       # beyond the cap: no reply
        ("family@patron.test", "LEGIMI", "Ola Rodz7 040007"),   # one address, three cards
        ("family@patron.test", "LEGIMI", "Ela Rodz8 040008"),   # (the last two codes)
        ("family@patron.test", "LEGIMI", "Iza Rodz9 040009"),   # address limit (2)
        ("r11@patron.test", "LEGIMI", "Ala Czyt11 0400011"),    # the pool ran out
        ("t1@patron.test", "TEST LEGIMI", "Ala Test10 0400010"),  # ... and a test says so
        ("x@patron.test", "LEGIMI", "Ktoś Obcy 0499999"),        # unknown card
        ("r5@patron.test", "LEGIMI", "Zenon Inny 040005"),      # wrong name for the card
    ]
    return mails


def _decide_all(tmp_path, user, smtp_sink, database_url, batch: int, monkeypatch):
    monkeypatch.setattr(sizes, "BATCH_SIZE", batch)
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[user], policy=POLICY,
                   database_url=database_url)
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    readers = [f"04000{i};Ala;Czyt{i};r{i}@patron.test;{ok}" for i in range(1, 7)]
    readers += [f"04000{i};{n};Rodz{i};family@patron.test;{ok}"
                for i, n in ((7, "Ola"), (8, "Ela"), (9, "Iza"))]
    readers.append(f"0400010;Ala;Test10;t1@patron.test;{ok}")
    readers.append(f"0400011;Ala;Czyt11;r11@patron.test;{ok}")
    assert bot.import_readers(readers) == 0
    assert bot.import_codes([f"BATCH-{i:03d}" for i in range(1, 9)]) == 0
    # The TEST mail comes after the pool ran out; the first requests in arrival order.
    for n, (sender, subject, body) in enumerate(_mails(w.year), start=1):
        raw, _ = request_mail(sender, subject, body)
        user.append(raw, internaldate=w + timedelta(seconds=n))
    assert bot.run_once() == 0
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        outcomes = [(r.from_address, r.card_number, r.outcome, r.code.code if r.code else None)
                    for r in bot.requests()]
        ledger = sorted(s.execute(select(LedgerEntry.card_number, LedgerEntry.email)).all())
        replies = sorted((o.to_address, o.outcome, _body(o.message))
                         for o in s.scalars(select(Outbox)))
    return outcomes, ledger, replies


def _body(raw: bytes) -> str:
    msg = message_from_bytes(raw)
    return msg.get_payload()[0].get_payload(decode=True).decode()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_one_batch_decides_exactly_as_one_request_at_a_time(
        tmp_path, imap_user_factory, smtp_sink, database_url, monkeypatch):
    # Both runs decide at one instant: a reply quotes when the card's code was issued
    # ("data wydania: … 01:47"), which would differ when the runs fall in two minutes.
    decided_at = utcnow()
    monkeypatch.setattr(runner, "utcnow", lambda: decided_at)
    one = tmp_path / "one"
    one.mkdir()
    single = _decide_all(one, imap_user_factory(), smtp_sink, database_url, 1, monkeypatch)
    smtp_sink.clear()
    many = tmp_path / "many"
    many.mkdir()
    from tests.databases import fresh_postgres

    if database_url.startswith("postgresql"):
        with fresh_postgres() as other:
            batched = _decide_all(many, imap_user_factory(), smtp_sink, other, 200,
                                  monkeypatch)
    else:
        batched = _decide_all(many, imap_user_factory(), smtp_sink,
                              f"sqlite:///{many}/batched.db", 200, monkeypatch)
    assert batched == single
    assert [o[2] for o in single[0]] == [
        "issued", "issued", "issued", "issued", "issued", "issued",
        "already_received", "already_received", "rate_limited",
        "issued", "issued", "address_limit", "pool_exhausted",
        "eligibility_test", "unknown_card", "name_mismatch",
    ]
    test_reply = next(body for to, outcome, body in single[2] if outcome == "eligibility_test")
    assert "pula" in test_reply.lower() or "wyczerp" in test_reply.lower(), test_reply
    # Codes in arrival order, none twice.
    codes = [o[3] for o in single[0] if o[2] == "issued"]
    assert codes == sorted(codes) and len(set(codes)) == len(codes)
