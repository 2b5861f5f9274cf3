"""The decide stage's error policy: one bad mail is set aside, the queue goes on, and a
failure half-way through a decision leaves no trace (no code consumed, no reply)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

import mailbot.decide as decide
import mailbot.decide.context as context
import mailbot.decide.writes as writes
from mailbot.db.models import Code, LedgerEntry
from mailbot.db.session import open_database, sync_config
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
    real = writes.compose_reply

    def flaky(**kw):
        if kw["to"] == "b2@patron.test":
            raise RuntimeError("template exploded")
        return real(**kw)

    monkeypatch.setattr(writes, "compose_reply", flaky)
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


def test_a_library_is_ready_once_every_mailbox_is_read_past_a_waiting_request(
        tmp_path, imap_user_factory, smtp_sink):
    # run --once decides, while it is still reading, only the libraries where a pass
    # would find something: every mailbox of theirs read past a waiting request.
    from datetime import UTC, datetime

    from mailbot.db.models import Mailbox, Request
    from mailbot.db.session import sync_config

    bot = make_bot(tmp_path, smtp=smtp_sink,
                   mailboxes=[imap_user_factory(), imap_user_factory()])
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    t0 = datetime(2026, 11, 3, 8, 0, 0, tzinfo=UTC)
    with sessions.begin() as s:
        first, second = s.scalars(select(Mailbox).order_by(Mailbox.id)).all()
        for uid in (1, 2):
            s.add(Request(library_id="lib", mailbox_id=first.id, uidvalidity=1, uid=uid,
                          received_at=t0 + timedelta(seconds=10 * uid), fetched_at=t0,
                          message_id=f"<r{uid}@t>", raw=b"", subject="LEGIMI"))
        first.caught_up_to = t0 + timedelta(minutes=5)
    assert decide.waiting(sessions, settings).by_library == {"lib": 2}
    assert decide.waiting(sessions, settings).ready == {}  # the second: never read
    with sessions.begin() as s:
        s.get(Mailbox, second.id).caught_up_to = t0 + timedelta(seconds=15, microseconds=7)
    # Read past the first request (to the second: INTERNALDATE has whole seconds).
    assert decide.waiting(sessions, settings).ready == {
        "lib": (2, t0 + timedelta(seconds=15))}
    with sessions.begin() as s:
        s.get(Request, 1).state = "decided"
    assert decide.waiting(sessions, settings).by_library == {"lib": 1}
    assert decide.waiting(sessions, settings).ready == {}  # the second arrived later


def test_while_reading_a_library_that_could_not_be_decided_is_not_tried_again_and_again(
        tmp_path, imap_user, smtp_sink, monkeypatch):
    # Its reader source is down, say: its requests stay waiting, and run --once must not
    # spin on it (and log it) for as long as the other mailboxes take to read.
    import time
    from datetime import UTC, datetime

    import mailbot.intake.poll as imap
    from mailbot.db.models import Mailbox, Request
    from mailbot.db.session import sync_config
    from mailbot.runonce import run_once

    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    t0 = datetime(2026, 11, 3, 8, 0, 0, tzinfo=UTC)
    with sessions.begin() as s:
        box = s.scalars(select(Mailbox)).one()
        s.add(Request(library_id="lib", mailbox_id=box.id, uidvalidity=1, uid=1,
                      received_at=t0, fetched_at=t0, message_id="<r1@t>", raw=b"",
                      subject="LEGIMI"))
        box.caught_up_to = t0 + timedelta(minutes=1)

    def slow_reading(*_args, **_kwargs):
        time.sleep(0.6)  # the other mailboxes of a consortium
        return []

    passes: list[object] = []

    def nothing_decided(*_args, only=None, **_kwargs):
        passes.append(only)
        return []

    monkeypatch.setattr(imap, "poll_all", slow_reading)
    monkeypatch.setattr(decide, "decide_pending", nothing_decided)
    run_once(sessions, settings)
    assert passes == [{"lib"}, None]  # once while reading, once when it is done


def test_a_batch_is_read_as_rows_not_as_orm_objects(tmp_path, imap_user, smtp_sink):
    # A burst decides thousands of requests and writes its decisions with bulk UPDATEs:
    # the waiting requests are read as plain rows (no identity map, no instance state
    # per request), which was ~6 % of the deciding thread's time.
    from sqlalchemy import event

    from mailbot.db.models import Request

    bot = _setup(tmp_path, imap_user, smtp_sink, 3)
    loaded: list[int] = []

    def on_load(target, _context):
        loaded.append(target.id)

    event.listen(Request, "load", on_load)
    try:
        assert bot.run_once() == 0
    finally:
        event.remove(Request, "load", on_load)
    assert [r.outcome for r in bot.requests()] == ["issued"] * 3
    assert loaded == []


def test_the_part_of_a_reply_shared_by_a_month_is_worked_out_once(
        tmp_path, imap_user, smtp_sink, monkeypatch):
    # The library's name and contact, the window dates, the deadline: the same for every
    # reply of a month, so not worked out again for each of a burst's thousands.
    bot = _setup(tmp_path, imap_user, smtp_sink, 3)
    asked: list[tuple[int, int]] = []
    real = context.next_window
    monkeypatch.setattr(context, "next_window",
                        lambda library, tz, y, m: asked.append((y, m)) or real(library, tz, y, m))
    context.month_context.cache_clear()
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued"] * 3
    assert len(smtp_sink.messages) == 3
    assert len(asked) == 1


def test_a_pass_asks_once_which_reader_sources_were_down_not_once_per_library(
        tmp_path, imap_user, smtp_sink):
    # A consortium's pass decides hundreds of libraries: whether each one's reader source
    # was down when last asked is read for all of them at once.
    from sqlalchemy import event

    extra = "".join(f'\n[[libraries]]\nid = "other{i}"\nname = "Filia {i}"\n' for i in range(3))
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=extra)
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)  # the library rows exist
    looks: list[str] = []

    def count(conn, cursor, statement, *args):
        if "source_error" in statement and statement.lstrip().upper().startswith("SELECT"):
            looks.append(statement)

    event.listen(sessions.kw["bind"], "before_cursor_execute", count)
    assert decide.decide_pending(sessions, settings) == []
    assert len(settings.libraries) == 4 and len(looks) == 1, looks
