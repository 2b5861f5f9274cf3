"""The queue's warning that a month's pool was not imported, in real Chromium (issue 19,
task E): it appears by itself (the live refresh) once a patron's EMPIK GO request is
answered pool_not_ready, names the service, the month and how many were answered so, links
to the import, fits the screen at 1280, 768 and 390 px and passes axe-core; it is gone once
the codes are imported.

Saves docs/screenshots/queue-pool-not-ready-{1280,768,390}.png."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import expect

from tests.botenv import request_mail
from tests.web.conftest import SHOTS
from tests.web.test_axe import HEIGHT, WIDTHS, axe_problems, sideways


def test_the_queue_warns_of_a_pool_not_imported_at_every_width(dashboard, imap_user):
    # The fixture's library has Legimi codes and never had Empik Go: no warning until a
    # patron asks for Empik Go; then one, live, without reloading the page.
    bot, server, page, context, dialogs, sessions = dashboard
    banner = page.get_by_test_id("pool-not-ready-lib-empik_go")
    expect(page.locator("h1")).to_have_text("Kolejka na żywo")
    expect(banner).to_have_count(0)
    raw, _ = request_mail("ala@patron.test", "EMPIK GO", "Alicja Łada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=5))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["pool_not_ready"]
    expect(banner).to_be_visible(timeout=10_000)  # the live refresh brought it in
    expect(banner).to_contain_text(f"Nie zaimportowano kodów Empik Go na {bot.month}")
    expect(banner).to_contain_text("Taką odpowiedź dostało już 1 zgłoszenie.")
    expect(page.get_by_test_id("pool-not-ready-lib-legimi")).to_have_count(0)
    link = banner.get_by_role("link", name=f"Importuj kody Empik Go na {bot.month}")
    assert link.get_attribute("href") == (
        f"/imports?library=lib&service=empik_go&month={bot.month}")
    for width in WIDTHS:
        # axe is injected as an inline script, which the dashboard's CSP refuses: a context
        # that bypasses it, for the test only, with the logged-in cookies.
        ctx = context.browser.new_context(viewport={"width": width, "height": HEIGHT[width]},
                                          locale="pl-PL", bypass_csp=True)
        ctx.add_cookies(context.cookies())
        narrow = ctx.new_page()
        narrow.goto(server.url + "queue")
        shown = narrow.get_by_test_id("pool-not-ready-lib-empik_go")
        expect(shown).to_be_visible()
        assert sideways(narrow) is None, (width, sideways(narrow))
        box = shown.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        assert axe_problems(narrow) == [], (width, axe_problems(narrow))
        narrow.screenshot(path=SHOTS / f"queue-pool-not-ready-{width}.png")
        ctx.close()
    # The codes arrive: the warning goes.
    assert bot.import_codes(["EGO-0001-E2E"], service="empik_go") == 0
    page.goto(server.url + "queue")
    expect(page.locator("h1")).to_have_text("Kolejka na żywo")
    expect(banner).to_have_count(0)
