"""The queue page shows a mailbox that is down in red with the reason and what it means for
its library, and each relay's queue and health (issue 17); `mailbot status` says the same.
Real Dovecot (a branch with a wrong password) and aiosmtpd (a throttling relay)."""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta

import pytest

from mailbot.clock import utcnow
from mailbot.db.session import open_database
from mailbot.web import i18n
from tests.botenv import make_bot, request_mail, valid_reader
from mailbot.web.app import create_app
from tests.web.webenv import TestClient, login

PASSWORD = "correct horse battery"
TABLES = """
[daemon]
mailbox_grace = 60.0
auth_retry = 300.0
"""


@pytest.fixture
def broken_branch(tmp_path, imap_user_factory, smtp_sink):
    """A library whose branch 1 has a wrong password and whose relay throttles (421 at
    MAIL): after one run, branch 0's two requests are decided but their replies wait."""
    good, bad = imap_user_factory(), imap_user_factory()
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[good, bad], tables=TABLES)
    bot.config.write_text(bot.config.read_text().replace(
        f'password = "{bad.password}"', 'password = "wrong-Pa55"'))
    w = bot.window()
    assert bot.import_readers([f"07{i:05d};Ewa;Stan{i};s{i}@patron.test;{valid_reader(w.year)}"
                               for i in (1, 2)]) == 0
    assert bot.import_codes(["ST-0001", "ST-0002"]) == 0
    for i in (1, 2):
        good.append(request_mail(f"s{i}@patron.test", "LEGIMI", f"Ewa Stan{i} 07{i:05d}")[0],
                    internaldate=w + timedelta(seconds=i))
    os.environ["MAILBOT_NEW_PASSWORD"] = PASSWORD
    try:
        assert bot.cli("user", "add", "kierowniczka", "--library", "lib") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    assert bot.run_once() == 1
    return bot


def _page(bot, lang: str, *, later: float = 0.0) -> str:
    settings = bot.settings()
    app = create_app(settings, open_database(settings.database_url), secret="t" * 32,
                     clock=lambda: utcnow() + timedelta(seconds=later))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        login(client, "kierowniczka", PASSWORD)
        page = client.get(f"/queue/live?lang={lang}")
        assert page.status_code == 200
        return page.text


def _mailbox_row(html: str, address: str) -> str:
    m = re.search(rf'<tr class="down" data-testid="mailbox-{re.escape(address)}">(.*?)</tr>',
                  html, re.S)
    assert m, f"{address} is not shown as down"
    return re.sub(r"\s+", " ", m.group(1))


def test_a_mailbox_with_a_wrong_password_is_shown_in_red_with_the_reason(broken_branch):
    # Within the grace: the reason (the server's words, no b'…' and no password), since
    # when, that the library waits for it until a time in its zone, the next login.
    html = _page(broken_branch, "pl")
    row = _mailbox_row(html, "ebooki1@biblioteka.test")
    assert "AUTHENTICATIONFAILED" in row and "login refused" in row
    assert "nie działa od 20" in row
    assert "Zgłoszenia biblioteki czekają na tę skrzynkę do 20" in row
    assert re.search(r"Następna próba logowania: 20\S+ \d\d:\d\d CET \(po 1 odrzuconej próbie\)",
                     row), row
    assert "Godziny w strefie Europe/Warsaw." in html
    assert "wrong-Pa55" not in html and "b&#39;" not in html and "b'" not in row
    assert 'data-testid="mailbox-ebooki0@biblioteka.test"' in html
    assert '<tr class="down" data-testid="mailbox-ebooki0' not in html

    # After the grace the page says the library is decided without it.
    later = _page(broken_branch, "pl", later=61)
    assert "zgłoszenia biblioteki są rozpatrywane bez tej skrzynki" in \
        _mailbox_row(later, "ebooki1@biblioteka.test")
    english = _mailbox_row(_page(broken_branch, "en", later=61), "ebooki1@biblioteka.test")
    assert "the library&#39;s requests are decided without this mailbox" in english
    assert "Next login attempt:" in english and "(after 1 refused attempt)" in english


def test_a_throttling_relay_is_shown_with_its_queue_pause_and_reason(tmp_path, imap_user,
                                                                     smtp_sink, capsys):
    # The relay answers 421 4.7.0: the replies wait, the relay is paused for a while; the
    # page and `mailbot status` say how many wait, when the last goes out and why it is
    # paused.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=TABLES)
    smtp_table = f'[smtp]\nhost = "{smtp_sink.host}"\nport = {smtp_sink.port}\n'
    assert smtp_table in bot.config.read_text()
    bot.config.write_text(bot.config.read_text().replace(
        smtp_table, smtp_table + "max_per_minute = 30\nmax_per_day = 2000\n"))
    w = bot.window()
    assert bot.import_readers([f"08{i:05d};Jan;Wolny{i};w{i}@patron.test;{valid_reader(w.year)}"
                               for i in (1, 2, 3)]) == 0
    assert bot.import_codes(["WOLNY-0001", "WOLNY-0002", "WOLNY-0003"]) == 0
    for i in (1, 2, 3):
        imap_user.append(request_mail(f"w{i}@patron.test", "LEGIMI",
                                      f"Jan Wolny{i} 08{i:05d}")[0],
                         internaldate=w + timedelta(seconds=i))
    os.environ["MAILBOT_NEW_PASSWORD"] = PASSWORD
    try:
        assert bot.cli("user", "add", "kierowniczka", "--library", "lib") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    smtp_sink.fail_with(421, "4.7.0 Too many messages, slow down", stage="MAIL")
    try:
        bot.run_once()
    finally:
        smtp_sink.stop_failing()
    assert smtp_sink.messages == []
    html = _page(bot, "pl")
    m = re.search(r'<tr class="down" data-testid="relay-1">(.*?)</tr>', html, re.S)
    assert m, "the relay is not shown as paused"
    row = re.sub(r"\s+", " ", m.group(1))
    assert f"{smtp_sink.host}:{smtp_sink.port}" in row  # the relay's key
    assert "3 odpowiedzi czekają" in row
    assert "wysyłka wstrzymana do 20" in row and "CET" in row
    assert "dostawca poprosił o wolniejszą wysyłkę" in row
    assert "421" in row
    assert "limity: 30 na minutę, 2000 na dobę; wysłane w ciągu 24 h: 0" in row
    en = _page(bot, "en")
    assert "3 replies waiting" in en and "the provider asked us to send more slowly" in en

    capsys.readouterr()
    assert bot.cli("status") == 1  # a paused relay needs attention (issue 18)
    out = capsys.readouterr().out
    [relay] = [line for line in out.splitlines() if line.startswith("  relay ")]
    assert f"{smtp_sink.host}:{smtp_sink.port}: 3 waiting; last goes out 20" in relay, relay
    assert "limits 30/min 2000/day, 0 sent in 24 h" in relay
    assert "PAUSED until 20" in relay and "(the provider asked us to slow down)" in relay
    assert "ERROR since 20" in relay and "421" in relay
    assert out.splitlines().index("relays") > out.splitlines().index(
        next(line for line in out.splitlines() if "mailbox ebooki0" in line))


def test_polish_counts_take_the_right_form():
    # 1 odpowiedź, 2–4 odpowiedzi czekają, 5–21 odpowiedzi czeka, 22–24 again czekają.
    forms = {n: i18n.tn("pl", "relay_waiting", n) for n in (1, 2, 4, 5, 12, 14, 21, 22, 25)}
    assert forms == {1: "1 odpowiedź czeka", 2: "2 odpowiedzi czekają",
                     4: "4 odpowiedzi czekają", 5: "5 odpowiedzi czeka",
                     12: "12 odpowiedzi czeka", 14: "14 odpowiedzi czeka",
                     21: "21 odpowiedzi czeka", 22: "22 odpowiedzi czekają",
                     25: "25 odpowiedzi czeka"}
    assert i18n.tn("en", "relay_waiting", 1) == "1 reply waiting"
    assert i18n.tn("en", "relay_waiting", 3) == "3 replies waiting"
    for key in i18n.keys("pl"):
        if i18n.is_counted("pl", key):
            assert all(i18n.is_counted(lang, key) for lang in i18n.LANGUAGES), key


def test_in_the_browser_the_queue_shows_the_broken_branch_and_the_paused_relay(
        tmp_path, imap_user_factory, smtp_sink):
    # Chromium: branch 1 (wrong password) in red with its reason, the library decided
    # without it after the grace (1 s), the relay paused after a 421 with the two replies
    # waiting; the red rows say so in words too (not the colour alone). Screenshot for
    # the README.
    from playwright.sync_api import expect, sync_playwright

    from mailbot.web.server import WebServer
    from tests.servers import free_port
    from tests.web.browser import ARGS, ensure_chromium
    from tests.web.test_browser import SHOTS

    good, bad = imap_user_factory(), imap_user_factory()
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[good, bad],
                   tables=TABLES.replace("mailbox_grace = 60.0", "mailbox_grace = 1.0"))
    bot.config.write_text(bot.config.read_text().replace(
        f'password = "{bad.password}"', 'password = "wrong-Pa55"'))
    w = bot.window()
    assert bot.import_readers([f"07{i:05d};Ewa;Stan{i};s{i}@patron.test;{valid_reader(w.year)}"
                               for i in (1, 2)]) == 0
    assert bot.import_codes(["STAN-0001", "STAN-0002"]) == 0
    for i in (1, 2):
        good.append(request_mail(f"s{i}@patron.test", "LEGIMI", f"Ewa Stan{i} 07{i:05d}")[0],
                    internaldate=w + timedelta(seconds=i))
    os.environ["MAILBOT_NEW_PASSWORD"] = PASSWORD
    try:
        assert bot.cli("user", "add", "kierowniczka", "--library", "lib") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    assert bot.run_once() == 1
    time.sleep(1.1)  # the grace
    smtp_sink.fail_with(421, "4.7.0 Too many messages, slow down", stage="MAIL")
    try:
        assert bot.run_once() == 1
    finally:
        smtp_sink.stop_failing()
    assert smtp_sink.messages == []

    settings = bot.settings()
    server = WebServer(create_app(settings, open_database(settings.database_url)),
                       host="127.0.0.1", port=free_port())
    assert server.start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=ensure_chromium(), args=ARGS,
                                         headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900},
                                        locale="pl-PL")
                page.goto(server.url + "login")
                page.fill("input[name=name]", "kierowniczka")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                expect(page.locator("h1")).to_have_text("Kolejka na żywo")
                down = page.get_by_test_id("mailbox-ebooki1@biblioteka.test")
                expect(down).to_contain_text("błąd")
                expect(down).to_contain_text("AUTHENTICATIONFAILED")
                expect(down).to_contain_text("rozpatrywane bez tej skrzynki")
                color = down.locator(".down-note").evaluate("e => getComputedStyle(e).color")
                assert color == "rgb(179, 38, 30)", color  # --bad
                relay = page.get_by_test_id("relay-1")
                expect(relay).to_contain_text("2 odpowiedzi czekają")
                expect(relay).to_contain_text("dostawca poprosił o wolniejszą wysyłkę")
                assert page.locator("html").get_attribute("lang") == "pl"
                page.screenshot(path=SHOTS / "queue-mailbox-down.png", full_page=True)
            finally:
                browser.close()
    finally:
        server.stop()
        server.join()
