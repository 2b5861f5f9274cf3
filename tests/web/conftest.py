"""The logged-in dashboard in real headless Chromium, shared by the browser tests.

``dashboard`` yields (bot, server, page, context, dialogs, sessions): a library with three
readers, five Legimi codes and one IMAP mailbox on the real Dovecot fixture, the dashboard
served by uvicorn on a free loopback port, and a Chromium page logged in as the librarian
"bibliotekarka" (library "lib"; password ``PASSWORD``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from mailbot.db.session import open_database
from mailbot.web.app import create_app
from mailbot.web.server import WebServer
from tests.botenv import make_bot
from tests.servers import free_port
from tests.web.browser import ARGS, ensure_chromium

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "biblioteka-2026!"


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


@pytest.fixture
def dashboard(tmp_path, imap_user, smtp_sink):
    """A library with readers, codes and one IMAP mailbox; the dashboard on a free port;
    a logged-in Chromium page."""
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy='contact = "tel. 22 123 45 67"',
                   tables="[web]\nlive_refresh_seconds = 2.0\n")
    w = bot.window()
    assert bot.import_readers([
        f"0990001;Alicja;Łada;ala@patron.test;{_ok(w.year)}",
        f"0990002;Żaneta;Wróbel;zaneta@patron.test;{_ok(w.year)}",
        f"0990003;Jan;Dług;jan@patron.test;{w.year + 1}-12-31;9,99;0;{w.year}-01-15;"
        f"{w.year}-02-01"]) == 0
    assert bot.import_codes([f"LEG-{i:04d}-E2E" for i in range(1, 6)]) == 0
    bot.add_user("bibliotekarka", PASSWORD)
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    server = WebServer(create_app(settings, sessions), host="127.0.0.1", port=free_port())
    assert server.start(), "the dashboard did not start"
    chromium = ensure_chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # No skip: if Chromium cannot start, this raises and the test errors.
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860},
                                          accept_downloads=True, locale="pl-PL")
            page = context.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(server.url + "login")
            expect(page.locator("h1")).to_have_text("Logowanie")
            page.fill("input[name=name]", "bibliotekarka")
            page.fill("input[name=password]", PASSWORD)
            page.screenshot(path=SHOTS / "login.png")
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Kolejka na żywo")
            yield bot, server, page, context, dialogs, sessions
        finally:
            browser.close()
            server.stop()
            server.join()
