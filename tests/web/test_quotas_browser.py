"""The queue page's pool quotas (issue 20) in real Chromium: what is left of the general,
desk and first-time parts of each pool and when they are released, in Polish and English,
at 1280, 768 and 390 px, without sideways scrolling and with no serious axe-core finding.

Saves docs/screenshots/queue-quotas-{1280,768,390}.png."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect, sync_playwright

from mailbot.db.session import open_database
from mailbot.web.app import create_app
from mailbot.web.server import WebServer
from tests.botenv import make_bot, request_mail, valid_reader
from tests.servers import free_port
from tests.web.browser import ARGS, ensure_chromium
from tests.web.conftest import PASSWORD, SHOTS
from tests.web.test_axe import HEIGHT, WIDTHS, axe_problems, sideways

# 10 codes: 4 for the desk, 2 for first-timers, 4 general; released on the 28th at 12:00.
QUOTAS = """
[libraries.quotas]
desk_share = 0.4
first_time_codes = 2
release_day = 28
release_time = "12:00"
"""


@pytest.fixture
def quota_site(tmp_path, imap_user, smtp_sink):
    """A library keeping quotas, one decided request (a first-timer's code), the dashboard
    on a free port and Chromium."""
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=QUOTAS)
    w = bot.window()
    assert bot.import_readers([f"0990001;Alicja;Łada;ala@patron.test;"
                               f"{valid_reader(w.year)}"]) == 0
    assert bot.import_codes([f"LEG-{i:04d}-Q" for i in range(1, 11)]) == 0
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Alicja Łada 0990001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=3))
    assert bot.run_once() == 0
    bot.add_user("bibliotekarka", PASSWORD)
    settings = bot.settings()
    server = WebServer(create_app(settings, open_database(settings.database_url)),
                       host="127.0.0.1", port=free_port())
    assert server.start(), "the dashboard did not start"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=ensure_chromium(), args=ARGS,
                                     headless=True)
        try:
            yield bot, server, browser
        finally:
            browser.close()
            server.stop()
            server.join()


def _logged_in(browser, server, width: int, locale: str):  # noqa: ANN202
    # axe is injected as an inline script, which the dashboard's CSP refuses: a context
    # that bypasses it, for the test only.
    ctx = browser.new_context(viewport={"width": width, "height": HEIGHT[width]},
                              locale=locale, bypass_csp=True)
    page = ctx.new_page()
    page.goto(server.url + "login")
    page.fill("input[name=name]", "bibliotekarka")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/queue")
    return ctx, page


def test_the_queue_shows_each_quotas_remainder_at_every_width(quota_site):
    # The first-timer's code came out of the first-time part: general 4, desk 4,
    # first-time 1 left, kept until the 28th 12:00; labelled cells at 390 px, no sideways
    # scroll, no serious axe finding; the English page says the same in English.
    bot, server, browser = quota_site
    assert [r.outcome for r in bot.requests()] == ["issued"]
    for width in WIDTHS:
        ctx, page = _logged_in(browser, server, width, "pl-PL")
        panel = page.get_by_test_id("quotas-lib")
        expect(panel).to_contain_text("Części puli")
        row = page.get_by_test_id("quota-lib-legimi")
        expect(row.get_by_test_id("quota-general")).to_have_text("4")
        expect(row.get_by_test_id("quota-desk")).to_have_text("4")
        expect(row.get_by_test_id("quota-first-time")).to_have_text("1")
        expect(row).to_contain_text(f"{bot.month}-28 12:00")
        assert sideways(page) is None, (width, sideways(page))
        box = panel.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        if width == 390:  # a card per pool, each value labelled by its column
            label = row.get_by_test_id("quota-desk").evaluate(
                "td => getComputedStyle(td, '::before').content")
            assert "stanowisko" in label
        assert axe_problems(page) == [], (width, axe_problems(page))
        page.screenshot(path=SHOTS / f"queue-quotas-{width}.png")
        ctx.close()
    ctx, page = _logged_in(browser, server, 1280, "pl-PL")
    page.goto(server.url + "queue?lang=en")
    panel = page.get_by_test_id("quotas-lib")
    expect(panel).to_contain_text("Pool quotas")
    expect(panel).to_contain_text("first-time patrons")
    ctx.close()
