"""Scheduled work (issue 4): activation reminders, month close, retention purge — each
safe to run twice and safe to miss."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from mailbot.clock import add_months, month_key, utcnow
from mailbot.db.models import Code, CodePool, LedgerEntry, Outbox, Request
from mailbot.db.session import open_database
from mailbot.housekeeping import close_months, purge_old_mail
from tests.botenv import make_bot, request_mail


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def _issue_three(tmp_path, imap_user, smtp_sink, policy="reminder_days = 31"):
    """Three codes issued by e-mail this month; returns the bot."""
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=policy)
    w = bot.window()
    bot.import_readers([f"07000{i};Ala;Przypomnij{i};p{i}@patron.test;{_ok(w.year)}"
                        for i in (1, 2, 3)])
    bot.import_codes(["REM-CODE-01", "REM-CODE-02", "REM-CODE-03"])
    for i in (1, 2, 3):
        raw, _ = request_mail(f"p{i}@patron.test", "LEGIMI", f"Ala Przypomnij{i} 07000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    smtp_sink.clear()
    return bot


def test_reminders_go_once_each_only_for_unactivated_codes_of_the_month(
        tmp_path, imap_user, smtp_sink, capsys):
    # Code 1 was activated (report imported); last month's unactivated code is not this
    # month's: a dry run lists codes 2 and 3 and sends nothing; `remind` sends exactly
    # those two, in Polish with the link and the deadline; a second `remind` sends none.
    bot = _issue_three(tmp_path, imap_user, smtp_sink)
    sessions = open_database(bot.settings().database_url)
    y, m = add_months(*[int(x) for x in bot.month.split("-")], -1)
    now = utcnow()
    with sessions.begin() as s:
        pool = CodePool(library_id="lib", service="legimi", month=month_key(y, m),
                        source_file="old", imported_at=now, size=1)
        s.add(pool)
        s.flush()
        old = Code(code="OLD-MONTH-01", pool_id=pool.id, library_id="lib", service="legimi",
                   month=month_key(y, m), issued_at=now - timedelta(days=35))
        s.add(old)
        s.flush()
        s.add(LedgerEntry(code_id=old.id, library_id="lib", service="legimi",
                          month=old.month, card_number="0700001", email="p1@patron.test",
                          issued_at=old.issued_at))
    report = tmp_path / "akt.csv"
    report.write_text("kod;aktywny\nREM-CODE-01;tak\nREM-CODE-02;nie\n")
    assert bot.cli("import-activations", str(report), "--library", "lib") == 0
    capsys.readouterr()

    assert bot.cli("remind", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "p2@patron.test" in out and "p3@patron.test" in out and "p1@" not in out
    assert "2 reminder(s) would be sent" in out
    assert smtp_sink.messages == []
    with sessions() as s:
        assert s.scalars(select(Outbox).where(Outbox.kind == "reminder")).all() == []

    assert bot.cli("remind") == 0
    got = {m.rcpt_tos[0]: m.message for m in smtp_sink.messages}
    assert set(got) == {"p2@patron.test", "p3@patron.test"}
    text = got["p2@patron.test"].get_body(("plain",)).get_content()
    assert "przypominamy" in text and "REM-CODE-02" in text and "https://www.legimi.pl/" in text
    assert "najpóźniej" in text and "Pana/Pani" in text
    assert got["p2@patron.test"]["Auto-Submitted"] == "auto-generated"
    assert got["p2@patron.test"]["X-Mailbot-Outcome"] == "reminder"
    assert "REM-CODE-03" not in text

    smtp_sink.clear()
    assert bot.cli("remind") == 0
    assert smtp_sink.messages == []


def test_no_reminders_before_the_reminder_day(tmp_path, imap_user, smtp_sink, capsys):
    # reminder_days = 0 turns reminders off: nothing is listed even in a dry run.
    bot = _issue_three(tmp_path, imap_user, smtp_sink, policy="reminder_days = 0")
    capsys.readouterr()
    assert bot.cli("remind", "--dry-run") == 0
    assert "0 reminder(s) would be sent" in capsys.readouterr().out


def test_month_close_expires_unissued_codes_of_ended_months_only_and_twice_is_harmless(
        tmp_path, imap_user, smtp_sink):
    # Last month's unissued code expires; this month's and issued ones do not.
    bot = _issue_three(tmp_path, imap_user, smtp_sink)
    bot.import_codes(["SPARE-CODE-1"])
    sessions = open_database(bot.settings().database_url)
    y, m = add_months(*[int(x) for x in bot.month.split("-")], -1)
    with sessions.begin() as s:
        pool = CodePool(library_id="lib", service="legimi", month=month_key(y, m),
                        source_file="old", imported_at=utcnow(), size=1)
        s.add(pool)
        s.flush()
        s.add(Code(code="UNUSED-OLD-1", pool_id=pool.id, library_id="lib", service="legimi",
                   month=month_key(y, m)))
    settings = bot.settings()
    assert close_months(sessions, settings, utcnow()) == 1
    assert close_months(sessions, settings, utcnow()) == 0
    with sessions() as s:
        expired = {c.code for c in s.scalars(select(Code).where(Code.expired_at.is_not(None)))}
    assert expired == {"UNUSED-OLD-1"}


def test_the_retention_purge_removes_raw_mail_but_keeps_outcomes_and_the_ledger(
        tmp_path, imap_user, smtp_sink):
    # 31 days later (retention 30): raw mail and reply bodies are gone, the outcome,
    # the card and the ledger remain; a second purge finds nothing.
    bot = _issue_three(tmp_path, imap_user, smtp_sink)
    sessions = open_database(bot.settings().database_url)
    settings = bot.settings()
    assert purge_old_mail(sessions, settings, utcnow()) == 0
    later = utcnow() + timedelta(days=31)
    assert purge_old_mail(sessions, settings, later) == 6
    assert purge_old_mail(sessions, settings, later) == 0
    with sessions() as s:
        reqs = s.scalars(select(Request)).all()
        assert all(r.raw is None and r.outcome == "issued" and r.card_number for r in reqs)
        assert all(o.message == b"" for o in s.scalars(select(Outbox)))
        assert len(s.scalars(select(LedgerEntry)).all()) == 3


def test_a_reminder_leaves_from_a_configured_mailbox_not_a_removed_ones_row(
        tmp_path, imap_user, smtp_sink):
    # The library's first mailbox row is of a mailbox since removed from the config: a
    # reminder of a desk-issued code (no request) or of a request that came in there was
    # sent from that address, which no relay serves any more (so: the global one).
    from mailbot.db.models import Mailbox
    from mailbot.housekeeping import _reminder_address

    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    settings = bot.settings()
    library = settings.libraries[0]
    sessions = open_database(settings.database_url)
    from mailbot.db.models import Library

    [configured] = settings.mailboxes
    with sessions.begin() as session:
        session.add(Library(id=library.id, name=library.name))
        stale = Mailbox(key="imap://old@imap.old.test:993/INBOX", library_id=library.id,
                        address="stare@biblioteka.test", last_uid=0)
        session.add(stale)
        session.flush()
        current = Mailbox(key=configured.key, library_id=library.id,
                          address=configured.address, last_uid=0)
        session.add(current)
        session.flush()
        assert stale.id < current.id
        came_to = {m.id: Request(mailbox_id=m.id) for m in (stale, current)}
        assert _reminder_address(session, settings, library, None) == configured.address
        assert _reminder_address(session, settings, library,
                                 came_to[stale.id]) == configured.address
        assert _reminder_address(session, settings, library,
                                 came_to[current.id]) == configured.address
