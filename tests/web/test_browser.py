"""End to end in real headless Chromium (Debian's, through Playwright) against the
dashboard served by uvicorn on 127.0.0.1, with the real Dovecot and aiosmtpd fixtures.

Each step saves a screenshot to docs/screenshots/ (the README shows them)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import openpyxl
from playwright.sync_api import expect
from sqlalchemy import func, select

from mailbot.db.models import LedgerEntry, Reader
from tests.botenv import request_mail

from tests.web.conftest import SHOTS


def test_the_live_queue_shows_a_request_appended_to_dovecot(dashboard, imap_user):
    # The queue page, left open, shows a new request once the bot has decided it — no
    # reload; the request page shows the mail safely (its HTML never runs) and the rule
    # trail and the reply.
    bot, server, page, context, dialogs, sessions = dashboard
    expect(page.get_by_test_id("decided-lib")).to_have_text("0")
    page.evaluate("window.__stillTheSamePage = true")
    html = ("<p>Dzień dobry, proszę o kod.</p><p>Alicja Łada, karta 0990001</p>"
            "<script>parent.document.title='pwned'; alert('x')</script>"
            "<img src=x onerror=\"parent.document.title='pwned'\">")
    raw, _ = request_mail("ala@patron.test", "LEGIMI", html, html=True)
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3))
    # As cron would: `mailbot run --once` in its own process (the page stays open).
    done = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(bot.config), "run",
                           "--once"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expect(page.get_by_test_id("decided-lib")).to_have_text("1", timeout=15000)
    assert page.evaluate("window.__stillTheSamePage") is True
    expect(page.locator("#live")).to_contain_text("ala@patron.test")
    expect(page.locator("#live")).to_contain_text("wydano kod")
    page.screenshot(path=SHOTS / "queue.png", full_page=True)

    page.locator("#live a", has_text=":").first.click()
    expect(page.locator("h1")).to_contain_text("Zgłoszenie nr")
    expect(page.get_by_test_id("mail-text")).to_contain_text("Alicja Łada, karta 0990001")
    page.locator("summary", has_text="Pokaż wersję HTML").click()
    frame = page.frame_locator("iframe.mail-frame")
    expect(frame.locator("p").first).to_contain_text("Dzień dobry")
    page.wait_for_timeout(500)
    assert "pwned" not in page.title() and dialogs == []
    expect(page.locator(".trail")).to_contain_text("pula kodów")
    page.locator("summary", has_text="Treść odpowiedzi").click()
    expect(page.locator(".reply")).to_contain_text("LEG-0001-E2E")
    page.screenshot(path=SHOTS / "request.png", full_page=True)

    tablet = context.new_page()
    tablet.set_viewport_size({"width": 820, "height": 1180})
    tablet.goto(server.url + "queue")
    expect(tablet.get_by_test_id("decided-lib")).to_have_text("1")
    tablet.screenshot(path=SHOTS / "queue-tablet.png", full_page=True)
    tablet.close()


def test_desk_imports_pools_reports_and_audit_in_the_browser(dashboard, tmp_path):
    # A walk-in patron gets a code and a printed slip; an import with a bad row shows the
    # row-level message and changes nothing; the monthly report downloads and opens.
    bot, server, page, context, dialogs, sessions = dashboard
    page.click("nav >> text=Wydanie przy ladzie")
    page.fill("input[name=card]", "0990003")
    page.fill("input[name=name]", "Jan Dług")
    page.click("button[value=check]")
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-outcome", "debt")
    page.fill("input[name=card]", "0990002")
    page.fill("input[name=name]", "Żaneta Wróbel")
    page.click("button[value=check]")
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-outcome", "eligible")
    page.screenshot(path=SHOTS / "desk.png", full_page=True)
    page.click("button[value=issue]")
    expect(page.get_by_test_id("slip-code")).to_have_text("LEG-0001-E2E")
    expect(page.locator(".slip")).to_contain_text("Żaneta Wróbel")
    page.screenshot(path=SHOTS / "slip.png", full_page=True)
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()
    page.screenshot(path=SHOTS / "slip-print.png", full_page=True)
    page.emulate_media(media="screen")
    with sessions() as s:
        entry = s.scalars(select(LedgerEntry)).one()
        assert (entry.channel, entry.card_number) == ("desk", "0990002")

    page.click("nav >> text=Import")
    with sessions() as s:
        readers_before = s.scalar(select(func.count(Reader.id)))
    bad = ("numer_karty;imie;nazwisko;email;wazna_do\n"
           "0990010;Ola;Nowa;ola@patron.test;31.12.2030\n"
           "0990011;Ela;Zła;ela@patron.test;31.13.2030\n").encode()
    form = page.locator("#import-readers")
    form.locator("input[type=file]").set_input_files(
        {"name": "czytelnicy.csv", "mimeType": "text/csv", "buffer": bad})
    form.locator("button[type=submit]").click()
    error = page.get_by_test_id("import-error")
    expect(error).to_contain_text("czytelnicy.csv, wiersz 3")
    expect(error).to_contain_text("Nic nie zaimportowano")
    page.screenshot(path=SHOTS / "imports-error.png", full_page=True)
    with sessions() as s:
        assert s.scalar(select(func.count(Reader.id))) == readers_before
    good = page.locator("#import-codes")
    good.locator("input[type=file]").set_input_files(
        {"name": "legimi-extra.csv", "mimeType": "text/csv",
         "buffer": b"kod\nLEG-EXTRA-1\nLEG-EXTRA-2\n"})
    good.locator("button[type=submit]").click()
    page.get_by_test_id("preview-confirm").click()
    expect(page.get_by_test_id("import-result")).to_contain_text("dodano 2 kody")

    page.click("nav >> text=Pule kodów")
    expect(page.locator("svg.chart").first).to_be_visible()
    page.screenshot(path=SHOTS / "pools.png", full_page=True)

    page.click("nav >> text=Raporty")
    with page.expect_download() as info:
        page.get_by_test_id("download").click()
    target = tmp_path / "raport.xlsx"
    info.value.save_as(target)
    wb = openpyxl.load_workbook(target)
    ws = wb[bot.month]
    header = [c.value for c in ws[3]]
    rows = [dict(zip(header, (c.value for c in row), strict=True))
            for row in ws.iter_rows(min_row=4)]
    total = next(r for r in rows if r["Filia (skrzynka)"] == "RAZEM"
                 and r["Serwis"] == "Legimi")
    desk = next(r for r in rows if r["Filia (skrzynka)"] == "wydane przy ladzie")
    assert (total["Wydane kody"], desk["Wydane kody"], total["Kupione"]) == (1, 1, 7)
    page.screenshot(path=SHOTS / "reports.png", full_page=True)

    page.click("nav >> text=Dziennik działań")
    expect(page.locator("table.list")).to_contain_text("wydanie przy ladzie")
    expect(page.locator("table.list")).to_contain_text("import kodów")
    page.screenshot(path=SHOTS / "audit.png", full_page=True)
    assert dialogs == []


def test_staff_withdraw_a_pools_unissued_codes_after_a_confirmation(dashboard, imap_user):
    # Pule kodów: "Wycofaj niewydane" shows what goes and what stays, and only the button
    # on that page withdraws; the issued code stays, the audit log says who did it.
    bot, server, page, context, dialogs, sessions = dashboard
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Alicja Łada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3))
    assert bot.run_once() == 0
    page.goto(server.url + "pools")
    row = page.locator("table.list tbody tr", has_text="Legimi")
    expect(row).to_contain_text("4")  # five bought, one issued
    row.get_by_role("link", name="Wycofaj niewydane").click()
    expect(page.locator("h1")).to_have_text("Wycofanie niewydanych kodów puli")
    expect(page.locator("main")).to_contain_text("Do wycofania: 4")
    expect(page.locator("main")).to_contain_text("wydane 1, wygasłe 0")
    page.screenshot(path=SHOTS / "pool-withdraw.png", full_page=True)
    with sessions() as s:  # the confirmation page changed nothing
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 1
    page.get_by_role("button", name="Wycofaj te kody").click()
    expect(page.locator(".flash")).to_contain_text("Wycofano niewydane kody: 4")
    expect(page.locator("table.list tbody tr", has_text="Legimi")).not_to_contain_text(
        "Wycofaj niewydane")
    page.goto(server.url + "audit")
    expect(page.locator("table")).to_contain_text("wycofanie puli")
    expect(page.locator("table")).to_contain_text("bibliotekarka")
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 1
