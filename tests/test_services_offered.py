"""The services a library offers, a month's pool never imported, and an exhausted pool that
names the other service (issue 19, task E). End to end: real Dovecot, the aiosmtpd sink,
`mailbot run --once`, the dashboard's queue page."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from mailbot.clock import utcnow
from mailbot.config import settings_from_dict
from mailbot.db.models import Outbox
from mailbot.db.session import open_database
from mailbot.decide.writes import BatchWrites
from mailbot.desk import desk_check
from mailbot.errors import ConfigError
from mailbot.respond.staff_alert import pool_not_ready_alert
from mailbot.web.app import create_app
from tests.botenv import READER_HEADER, make_bot, request_mail, valid_reader
from tests.web.webenv import TestClient, login

PASSWORD = "correct horse battery"
STAFF = "it@biblioteka.test"


def _body(msg) -> str:
    """The text part with its lines joined (the text is wrapped, format=flowed or not)."""
    return " ".join(msg.get_body(("plain",)).get_content().split())


def _replies(sink) -> dict[str, object]:
    """The replies the sink got, by the request's Message-ID they answer."""
    return {m.message["In-Reply-To"]: m.message for m in sink.messages
            if m.message["In-Reply-To"]}


def _readers(bot, n: int) -> None:
    year = bot.window().year
    assert bot.import_readers([f"0810{i:03d};Ewa;Czyt{i};c{i}@patron.test;"
                               f"{valid_reader(year)}" for i in range(1, n + 1)]) == 0


def _ask(bot, user, i: int, subject: str, seconds: int) -> None:
    raw, _ = request_mail(f"c{i}@patron.test", subject, f"Ewa Czyt{i}, karta 0810{i:03d}")
    user.append(raw, internaldate=bot.window() + timedelta(seconds=seconds))


def test_a_library_offering_only_legimi_answers_empik_go_naming_legimi(
        tmp_path, imap_user, smtp_sink):
    # services = ["legimi"]: an EMPIK GO request (from a valid reader, with codes of both
    # services in the database) is service_not_offered, asked before anything else; the
    # reply names Legimi and the subject to write; a LEGIMI request is issued as ever.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy='services = ["legimi"]')
    _readers(bot, 2)
    assert bot.import_codes(["LEG-OFF-0001"]) == 0
    assert bot.import_codes(["EGO-OFF-0001"], service="empik_go") == 0
    _ask(bot, imap_user, 1, "EMPIK GO", 1)
    _ask(bot, imap_user, 2, "LEGIMI", 2)
    assert bot.run_once() == 0
    refused, issued = bot.requests()
    assert (refused.outcome, issued.outcome) == ("service_not_offered", "issued")
    assert refused.trail == [{"rule": "service_not_offered", "result": "refused",
                              "note": "service_not_offered",
                              "args": {"service": "empik_go", "offered": "Legimi"}}]
    reply = _replies(smtp_sink)[refused.message_id]
    assert reply["X-Mailbot-Outcome"] == "service_not_offered"
    text = _body(reply)
    assert "nie udostępnia kodów do serwisu Empik Go" in text
    assert "Udostępniamy kody do serwisu Legimi" in text and "z tematem LEGIMI" in text
    assert "We offer Legimi codes" in text and "EGO-OFF-0001" not in text
    # The desk offers only the library's services too.
    settings = bot.settings()
    with open_database(settings.database_url)() as session:
        verdict = desk_check(session, settings, library_id="lib", card="0810001",
                             name="Czyt1", service="empik_go", now=utcnow())
    assert verdict.outcome == "service_not_offered"


def test_a_service_not_known_is_a_config_error_naming_it(tmp_path, imap_user, smtp_sink):
    # A typo in services stops the bot at start with the key and the value (exit 2).
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy='services = ["legimi", "empik"]')
    assert bot.run_once() == 2
    with pytest.raises(ConfigError, match=r"libraries\[0\]\.services.*unknown service "
                                          r"'empik' \(known: legimi, empik_go\)"):
        bot.settings()
    # The staff address: the library's own, else the top-level one.
    both = settings_from_dict({"staff_email": "all@x.test", "libraries": [
        {"id": "a", "name": "A"}, {"id": "b", "name": "B", "staff_email": "b@x.test"}]})
    assert (both.staff_email_of("a"), both.staff_email_of("b")) == ("all@x.test", "b@x.test")


def test_no_empik_go_pool_for_the_month_is_pool_not_ready_and_staff_are_told_once(
        tmp_path, imap_user, smtp_sink, capsys, database_url):
    # Legimi codes are there, Empik Go's were never imported: two EMPIK GO requests (in
    # two runs, so across restarts) are both pool_not_ready, never pool_exhausted; the
    # staff address gets one mail; the queue page shows the banner; status flags it.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy=f'staff_email = "{STAFF}"', database_url=database_url)
    _readers(bot, 3)
    assert bot.import_codes(["LEG-NR-0001"]) == 0
    _ask(bot, imap_user, 1, "EMPIK GO", 1)
    assert bot.run_once() == 0
    _ask(bot, imap_user, 2, "Empik Go", 2)
    _ask(bot, imap_user, 3, "LEGIMI", 3)
    assert bot.run_once() == 0
    first, second, legimi = bot.requests()
    assert [r.outcome for r in (first, second, legimi)] == [
        "pool_not_ready", "pool_not_ready", "issued"]
    assert first.trail[-1] == {"rule": "pool", "result": "refused", "note": "pool_not_ready",
                               "args": {"service": "empik_go", "month": bot.month}}
    replies = _replies(smtp_sink)
    for req in (first, second):
        text = _body(replies[req.message_id])
        assert replies[req.message_id]["X-Mailbot-Outcome"] == "pool_not_ready"
        assert "nie są jeszcze dostępne" in text and "zostali o tym powiadomieni" in text
        assert "wyczerpana" not in text and "run out" not in text
    to_staff = [m for m in smtp_sink.messages if STAFF in m.rcpt_tos]
    assert len(to_staff) == 1
    alert = to_staff[0].message
    assert alert["Auto-Submitted"] == "auto-generated"
    assert "Empik Go" in alert["Subject"] and bot.month in alert["Subject"]
    assert (f"mailbot import-codes PLIK.xlsx --library lib --service empik_go "
            f"--month {bot.month}") in _body(alert)
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    with sessions() as session:
        rows = session.scalars(select(Outbox).where(Outbox.kind == "staff_alert")).all()
        assert [(r.to_address, r.state) for r in rows] == [(STAFF, "sent")]
    capsys.readouterr()
    assert bot.cli("status") == 1  # needs attention
    assert "was not imported: 2 requests answered pool_not_ready" in capsys.readouterr().out
    # The monthly report has the outcome's column (from the catalogue).
    report = tmp_path / "report.xlsx"
    assert bot.cli("report", "--month", bot.month, "-o", str(report)) == 0
    cells = {str(c.value) for ws in load_workbook(report) for row in ws.iter_rows()
             for c in row if c.value is not None}
    assert "pula jeszcze niezaimportowana" in cells
    # The queue page: a banner for Empik Go (not for Legimi), with the count and a link.
    os.environ["MAILBOT_NEW_PASSWORD"] = PASSWORD
    try:
        assert bot.cli("user", "add", "kierowniczka", "--library", "lib") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    app = create_app(settings, sessions, secret="t" * 32)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        login(client, "kierowniczka", PASSWORD)
        pl = client.get("/queue/live?lang=pl").text
        en = client.get("/queue/live?lang=en").text
    assert 'data-testid="pool-not-ready-lib-empik_go"' in pl
    assert 'data-testid="pool-not-ready-lib-legimi"' not in pl
    assert f"Nie zaimportowano kodów Empik Go na {bot.month}" in pl
    assert "Taką odpowiedź dostały już 2 zgłoszenia." in pl
    assert f"/imports?library=lib&amp;service=empik_go&amp;month={bot.month}" in pl
    assert "2 requests have had that reply already." in en
    # Once the pool is imported the banner is gone.
    assert bot.import_codes(["EGO-NR-0001"], service="empik_go") == 0
    with TestClient(app, base_url="http://127.0.0.1") as client:
        login(client, "kierowniczka", PASSWORD)
        assert "pool-not-ready-lib" not in client.get("/queue/live?lang=pl").text


def test_without_a_staff_address_pool_not_ready_sends_only_the_replies(
        tmp_path, imap_user, smtp_sink):
    # No staff_email: the patrons' replies only. A TEST mail's verdict says not ready too.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="eligibility_test = true")
    _readers(bot, 2)
    _ask(bot, imap_user, 1, "LEGIMI", 1)
    _ask(bot, imap_user, 2, "TEST LEGIMI", 2)
    assert bot.run_once() == 0
    request, test = bot.requests()
    assert (request.outcome, test.outcome) == ("pool_not_ready", "eligibility_test")
    assert test.trail[-1]["result"] == "pool_not_ready"
    assert sorted(m.rcpt_tos for m in smtp_sink.messages) == [("c1@patron.test",),
                                                             ("c2@patron.test",)]
    # Nobody was told, so the replies do not say staff were; the TEST reply has its own
    # text for the verdict.
    replies = _replies(smtp_sink)
    reply, verdict = (_body(replies[r.message_id]) for r in (request, test))
    assert "nie są jeszcze dostępne" in reply
    assert "powiadomieni" not in reply and "staff have been told" not in reply
    assert "Wynik: kody do serwisu Legimi" in verdict and "nie są jeszcze dostępne" in verdict
    assert "Result: the Legimi codes" in verdict and "powiadomieni" not in verdict


def test_a_test_mail_for_a_service_not_offered_names_the_one_offered(
        tmp_path, imap_user, smtp_sink):
    # A Legimi-only library: TEST EMPIK GO learns Empik Go is not offered and is asked to
    # write LEGIMI, never "EMPIK GO".
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy='services = ["legimi"]\neligibility_test = true')
    _readers(bot, 1)
    assert bot.import_codes(["LEG-TST-0001"]) == 0
    _ask(bot, imap_user, 1, "TEST EMPIK GO", 1)
    assert bot.run_once() == 0
    (test,) = bot.requests()
    assert (test.outcome, test.trail[-1]["result"]) == ("eligibility_test",
                                                        "service_not_offered")
    text = _body(_replies(smtp_sink)[test.message_id])
    assert "nie udostępnia kodów do serwisu Empik Go. Udostępniamy kody do serwisu Legimi" in text
    assert "prosimy wysłać wiadomość z tematem LEGIMI (bez słowa TEST)" in text
    assert "We offer Legimi codes" in text and "with the subject LEGIMI (without" in text
    assert "z tematem EMPIK GO" not in text and "subject EMPIK GO" not in text


def test_an_exhausted_empik_go_pool_names_legimi_while_legimi_has_codes(
        tmp_path, imap_user, smtp_sink, database_url):
    # One Empik Go code and one Legimi code, in one batch: the first EMPIK GO request gets
    # the code; the second is pool_exhausted and told Legimi codes are still there; a LEGIMI
    # request takes the last Legimi code; the next EMPIK GO request is pool_exhausted and
    # no longer told of Legimi. The reply still says when the next pool opens.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], database_url=database_url)
    _readers(bot, 4)
    assert bot.import_codes(["EGO-EX-0001"], service="empik_go") == 0
    assert bot.import_codes(["LEG-EX-0001"]) == 0
    for i, subject in enumerate(("EMPIK GO", "EMPIK GO", "LEGIMI", "EMPIK GO"), start=1):
        _ask(bot, imap_user, i, subject, i)
    assert bot.run_once() == 0
    reqs = bot.requests()
    assert [r.outcome for r in reqs] == ["issued", "pool_exhausted", "issued",
                                         "pool_exhausted"]
    replies = _replies(smtp_sink)
    named, not_named = (_body(replies[reqs[i].message_id]) for i in (1, 3))
    assert "Kody do serwisu Legimi" in named and "z tematem LEGIMI" in named
    assert "Legimi codes for" in named
    assert "Legimi" not in not_named
    for text in (named, not_named):
        # The next pool is Empik Go's: the sentence names it, so it cannot read as if the
        # LEGIMI mail suggested above would be ignored.
        assert "Nowa pula kodów do serwisu Empik Go będzie dostępna od" in text
        assert "Zgłoszenia dotyczące serwisu Empik Go prosimy wysyłać od tego" in text
        assert "The next pool of Empik Go codes opens" in text
        assert "wiadomości wysłane wcześniej" not in text
    assert reqs[1].trail[-1]["note"] == "no_code_left"


def test_an_exhausted_pool_does_not_name_a_service_the_card_already_had(
        tmp_path, imap_user, smtp_sink):
    # one_code_per_month = "per_service": a card that had its Legimi code this month is not
    # sent to Legimi when Empik Go runs out; a card that had none is.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy='one_code_per_month = "per_service"')
    _readers(bot, 2)
    assert bot.import_codes(["LEG-PS-0001", "LEG-PS-0002"]) == 0
    assert bot.import_codes(["EGO-PS-0000"], service="empik_go") == 0
    _ask(bot, imap_user, 2, "EMPIK GO", 1)  # takes the only Empik Go code
    _ask(bot, imap_user, 1, "LEGIMI", 2)
    _ask(bot, imap_user, 1, "EMPIK GO", 3)
    assert bot.run_once() == 0
    reqs = bot.requests()
    assert [r.outcome for r in reqs] == ["issued", "issued", "pool_exhausted"]
    assert "Legimi" not in _body(_replies(smtp_sink)[reqs[2].message_id])


def test_an_exhausted_pool_does_not_name_a_service_the_patron_is_too_young_for(
        tmp_path, imap_user, smtp_sink):
    # min_age_legimi = 16: a ten-year-old whose Empik Go request finds the pool empty is
    # not sent to Legimi (a LEGIMI request would be age_restricted); an adult is.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="min_age_legimi = 16")
    year = bot.window().year
    readers = tmp_path / "readers-age.csv"
    readers.write_text("\n".join([
        f"{READER_HEADER};data_urodzenia",
        f"0810001;Ewa;Czyt1;c1@patron.test;{valid_reader(year)};{year - 30}-01-01",
        f"0810002;Ewa;Czyt2;c2@patron.test;{valid_reader(year)};{year - 10}-01-01",
        f"0810003;Ewa;Czyt3;c3@patron.test;{valid_reader(year)};{year - 30}-01-01"]) + "\n",
        encoding="utf-8")
    assert bot.cli("import-readers", str(readers), "--library", "lib") == 0
    assert bot.import_codes(["EGO-AGE-0001"], service="empik_go") == 0
    assert bot.import_codes(["LEG-AGE-0001"]) == 0
    for i in (1, 2, 3):
        _ask(bot, imap_user, i, "EMPIK GO", i)
    assert bot.run_once() == 0
    reqs = bot.requests()
    assert [r.outcome for r in reqs] == ["issued", "pool_exhausted", "pool_exhausted"]
    replies = _replies(smtp_sink)
    assert "Legimi" not in _body(replies[reqs[1].message_id])  # ten years old
    assert "z tematem LEGIMI" in _body(replies[reqs[2].message_id])  # an adult


def test_two_pool_not_ready_in_one_batch_make_one_alert_whatever_mailbox_sends_it(
        tmp_path, imap_user, smtp_sink):
    # Two EMPIK GO mails decided in one run: both pool_not_ready, one staff alert, the run
    # does not fail. The alert's Message-ID does not depend on the sending mailbox: with
    # the first mailbox renamed mid-month, no second alert is made.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy=f'staff_email = "{STAFF}"')
    _readers(bot, 2)
    assert bot.import_codes(["LEG-TWO-0001"]) == 0
    _ask(bot, imap_user, 1, "EMPIK GO", 1)
    _ask(bot, imap_user, 2, "EMPIK GO", 2)
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["pool_not_ready", "pool_not_ready"]
    assert len([m for m in smtp_sink.messages if STAFF in m.rcpt_tos]) == 1
    settings = bot.settings()
    library = settings.library("lib")
    renamed = [replace(mb, address="nowa-skrzynka@biblioteka.test")
               for mb in settings.mailboxes_of("lib")]
    sessions = open_database(settings.database_url)
    now = utcnow()
    with sessions() as session:
        assert len(session.scalars(select(Outbox).where(Outbox.kind == "staff_alert")).all()) == 1
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(settings), "mailboxes_of", lambda self, lib_id: renamed)
            assert pool_not_ready_alert(session, settings, library, service="empik_go",
                                        month=bot.month, received_at=now, now=now,
                                        tz=settings.library_tz("lib")) is None


def test_an_alert_written_twice_is_one_row_and_no_error(tmp_path, imap_user, smtp_sink):
    # Another process wrote the month's alert between this batch's check and its write:
    # the insert skips it (no IntegrityError rolling back the patrons' decisions).
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy=f'staff_email = "{STAFF}"')
    assert bot.run_once() == 0  # creates the database and the library's row
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    now = utcnow()
    with sessions.begin() as session:
        row = pool_not_ready_alert(session, settings, settings.library("lib"),
                                   service="empik_go", month=bot.month, received_at=now,
                                   now=now, tz=settings.library_tz("lib"))
        assert row is not None
        for _ in range(2):
            writes = BatchWrites(None)
            writes.alert(dict(row))
            writes.write(session, decisions=False)
    with sessions() as session:
        assert len(session.scalars(select(Outbox).where(Outbox.kind == "staff_alert")).all()) == 1
