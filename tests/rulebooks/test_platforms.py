"""Platforms as data (issue 20), end to end with real Dovecot and SMTP: WBP Poznań hands
out Legimi, Empik Go and ebookpoint BIBLIO, one platform per patron a month. The third
platform is a [[services]] table: its subject is understood, its codes imported and
issued, its reply names it and its page, and the report and the dashboard show it."""

from __future__ import annotations

import warnings
from datetime import timedelta

from openpyxl import load_workbook

from mailbot.db.session import open_database
from mailbot.web.app import create_app
from tests.botenv import make_bot, request_mail, valid_reader

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.web.webenv import PASSWORD, csrf_of, login  # noqa: E402

EBOOKPOINT = """
[[services]]
id = "ebookpoint"
name = "ebookpoint BIBLIO"
subjects = ["EBOOKPOINT", "EBOOKPOINT BIBLIO"]
activation_url = "https://ebookpoint.pl/biblio"
"""


STEPS = '''
[services.instructions]
pl = """
Na stronie {activation_url} prosimy zalogować się i wpisać kod.
Prosimy pobrać aplikację ebookpoint.
"""
en = "Please log in at {activation_url} and enter the code."
'''


def _body(msg) -> str:  # noqa: ANN001
    """The plain text, its lines (wrapped at 76) joined: a phrase reads whole."""
    return " ".join(msg.get_body(("plain",)).get_content().split())


def _html(msg) -> str:  # noqa: ANN001
    return msg.get_body(("html",)).get_content()


def test_poznan_three_platforms_one_platform_per_patron_a_month(tmp_path, imap_user,
                                                                  smtp_sink, capsys):
    # A burst for all three platforms: each pool hands out its codes in arrival order; a
    # patron with a code of one platform this month is already_received on another; the
    # ebookpoint pool runs out and the reply names the platforms still open.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=EBOOKPOINT)
    w = bot.window()
    assert bot.import_readers([f"040000{i};Ala;Pozn{i};p{i}@patron.test;{valid_reader(w.year)}"
                               for i in range(1, 8)]) == 0
    assert bot.import_codes(["LEG-0001", "LEG-0002"]) == 0
    assert bot.import_codes(["EGO-0001", "EGO-0002"], service="empik_go") == 0
    assert bot.import_codes(["EBP-0001", "EBP-0002"], service="ebookpoint") == 0
    # An id the config does not know: exit 2, naming the ones it does.
    capsys.readouterr()
    assert bot.import_codes(["X-1"], service="ebokpoint") == 2
    assert "legimi or empik_go or ebookpoint" in capsys.readouterr().err
    burst = [
        ("p1@patron.test", "EBOOKPOINT", "Ala Pozn1 0400001"),         # issued EBP-0001
        ("p2@patron.test", "Re: ebookpoint biblio", "Ala Pozn2 0400002"),  # issued EBP-0002
        ("obcy@patron.test", "EBOOKPOINT", "Jan Obcy 0499999"),        # unknown_card
        ("p3@patron.test", "LEGIMI", "Ala Pozn3 0400003"),             # issued LEG-0001
        ("p1@patron.test", "LEGIMI", "Ala Pozn1 0400001"),             # already_received
        ("p4@patron.test", "E-book point", "Ala Pozn4 0400004"),       # pool_exhausted
        ("p5@patron.test", "EMPIK GO", "Ala Pozn5 0400005"),           # issued EGO-0001
        ("p2@patron.test", "Empik Go", "Ala Pozn2 0400002"),           # already_received
        ("p6@patron.test", "Legimi", "Ala Pozn6 0400006"),             # issued LEG-0002
    ]
    for sec, (sender, subject, body) in enumerate(burst, start=1):
        raw, _ = request_mail(sender, subject, body)
        imap_user.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bot.run_once() == 0
    reqs = bot.requests()
    assert [(r.service, r.outcome, r.code.code if r.code else None) for r in reqs] == [
        ("ebookpoint", "issued", "EBP-0001"),
        ("ebookpoint", "issued", "EBP-0002"),
        ("ebookpoint", "unknown_card", None),
        ("legimi", "issued", "LEG-0001"),
        ("legimi", "already_received", None),
        ("ebookpoint", "pool_exhausted", None),
        ("empik_go", "issued", "EGO-0001"),
        ("empik_go", "already_received", None),
        ("legimi", "issued", "LEG-0002"),
    ]
    replies = {m.message["In-Reply-To"]: m.message for m in smtp_sink.messages}
    assert len(replies) == len(burst)
    issued, _, unknown, _, already, exhausted, *_ = (replies[r.message_id] for r in reqs)
    # The ebookpoint reply names it and its page, in both languages, text and HTML.
    text, html = _body(issued), _html(issued)
    assert "EBP-0001" in text and "ebookpoint BIBLIO" in text
    assert "https://ebookpoint.pl/biblio" in text and "https://ebookpoint.pl/biblio" in html
    assert "kod dostępu do serwisu ebookpoint BIBLIO" in text
    # How to write again lists the library's three platforms' subjects.
    assert "w temacie: LEGIMI, EMPIK GO albo EBOOKPOINT" in _body(unknown)
    assert "subject: LEGIMI, EMPIK GO or EBOOKPOINT" in _body(unknown)
    # Already received: the code was of ebookpoint (the platform is named).
    assert "ebookpoint BIBLIO" in _body(already)
    # Exhausted: the platforms still open, with their subjects.
    assert "EMPIK GO" in _body(exhausted) and "EBP-" not in _body(exhausted)

    # The XLSX report has the third platform's rows: 4 requests, 2 issued, 2 bought.
    report = tmp_path / "report.xlsx"
    assert bot.cli("report", "--month", bot.month, "-o", str(report)) == 0
    rows = [tuple(c.value for c in row) for row in load_workbook(report).active.iter_rows()]
    header = rows[2]
    assert header[2:5] == ("Serwis", "Zgłoszenia", "Wydane kody")
    bought = header.index("Kupione")
    total = {r[2]: r for r in rows[3:] if r[1] == "RAZEM"}
    assert list(total) == ["Legimi", "Empik Go", "ebookpoint BIBLIO"]
    ebp = total["ebookpoint BIBLIO"]
    assert (ebp[3], ebp[4], ebp[bought]) == (4, 2, 2)
    assert ebp[header.index("brak kodów w puli")] == 1

    # The dashboard: the pools page and the requests filter show ebookpoint.
    bot.add_user("poznan", PASSWORD)
    settings = bot.settings()
    client = TestClient(create_app(settings, open_database(settings.database_url)),
                        base_url="http://testserver")
    login(client, "poznan")
    pools = client.get("/pools?service=ebookpoint")
    assert pools.status_code == 200
    assert '<option value="ebookpoint" selected>ebookpoint BIBLIO</option>' in pools.text
    assert "ebookpoint BIBLIO</td>" in pools.text  # its pool's row
    listed = client.get("/requests?service=ebookpoint")
    assert listed.status_code == 200
    assert '<option value="ebookpoint" selected>ebookpoint BIBLIO</option>' in listed.text
    assert "p4@patron.test" in listed.text and "p5@patron.test" not in listed.text
    imports = client.get("/imports")
    assert '<option value="ebookpoint"' in imports.text
    desk = client.get("/desk")
    assert 'value="ebookpoint"' in desk.text
    # The desk issues ebookpoint from a code imported later; the slip names the platform,
    # its page and steps for it (the generic ones: the catalogue has none of its own).
    assert bot.import_codes(["EBP-0003"], service="ebookpoint") == 0
    r = client.post("/desk", data={"csrf": csrf_of(desk.text), "library": "lib",
                                   "card": "0400007", "name": "", "service": "ebookpoint",
                                   "action": "issue"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/desk/slip/")
    slip = client.get(r.headers["location"]).text
    assert "EBP-0003" in slip and "ebookpoint BIBLIO" in slip
    assert "https://ebookpoint.pl/biblio" in slip
    assert "Pobierz aplikację ebookpoint BIBLIO" in slip


def test_a_platform_outside_one_a_month_is_counted_only_against_itself(
        tmp_path, imap_user, smtp_sink):
    # ebookpoint with one_a_month = false: a patron with a Legimi code this month still
    # gets one of ebookpoint, but a second ebookpoint code or an Empik Go code is refused.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   tables=EBOOKPOINT + "one_a_month = false\n" + STEPS)
    w = bot.window()
    assert bot.import_readers([f"0410001;Ola;Osobna;o@patron.test;{valid_reader(w.year)}"]) == 0
    assert bot.import_codes(["LEG-1001"]) == 0
    assert bot.import_codes(["EGO-1001"], service="empik_go") == 0
    assert bot.import_codes(["EBP-1001", "EBP-1002"], service="ebookpoint") == 0
    for sec, subject in enumerate(("LEGIMI", "EBOOKPOINT", "EBOOKPOINT", "EMPIK GO"), start=1):
        raw, _ = request_mail("o@patron.test", subject, "Ola Osobna 0410001")
        imap_user.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bot.run_once() == 0
    assert [(r.service, r.outcome) for r in bot.requests()] == [
        ("legimi", "issued"), ("ebookpoint", "issued"), ("ebookpoint", "already_received"),
        ("empik_go", "already_received")]
    # The refused Empik Go request names the Legimi code, not the ebookpoint one.
    assert bot.requests()[3].trail[-1]["args"]["service"] == "legimi"
    # The ebookpoint reply gives the table's own steps, the page put in, in each language.
    replies = {m.message["In-Reply-To"]: m.message for m in smtp_sink.messages}
    issued = replies[bot.requests()[1].message_id]
    text, html = _body(issued), _html(issued)
    assert "1. Na stronie https://ebookpoint.pl/biblio prosimy zalogować się" in text
    assert "2. Prosimy pobrać aplikację ebookpoint." in text
    assert "1. Please log in at https://ebookpoint.pl/biblio and enter the code." in text
    assert '<li>Na stronie <a href="https://ebookpoint.pl/biblio"' in html
    assert "Prosimy aktywować kod na stronie serwisu" not in text  # not the generic steps


def test_a_library_offering_two_of_three_refuses_the_third_naming_its_own(
        tmp_path, imap_user, smtp_sink):
    # services = ["legimi", "ebookpoint"]: EMPIK GO is service_not_offered, and the reply
    # names the two the library does offer, with their subjects.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=EBOOKPOINT,
                   policy='services = ["legimi", "ebookpoint"]')
    raw, _ = request_mail("x@patron.test", "EMPIK GO", "Ala 0420001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["service_not_offered"]
    [reply] = [m.message for m in smtp_sink.messages]
    assert "EBOOKPOINT" in _body(reply) and "ebookpoint BIBLIO" in _body(reply)
    assert "LEGIMI" in _body(reply)
