"""Accessibility of every dashboard page in real Chromium: axe-core (from the npm registry,
pinned in tests/web/axe/package.json, installed by scripts/test) is injected by Playwright
into each page at 1280, 768 and 390 px and must find no violation of impact "serious" or
"critical"; at each width the page must not scroll sideways.

A missing axe-core fails the test (it never skips): run scripts/test, or
`npm ci --prefix tests/web/axe`."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.botenv import request_mail
from tests.web.conftest import PASSWORD

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (1280, 768, 390)
HEIGHT = {1280: 860, 768: 1024, 390: 844}
BAD = ("serious", "critical")


def axe_source() -> Path:
    """The pinned axe-core script; a clear failure (not a skip) when it is not installed."""
    assert AXE.is_file(), (f"axe-core is not installed at {AXE}: run scripts/test (it runs "
                           "`npm ci --prefix tests/web/axe`), or that npm command yourself")
    return AXE


def axe_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line per node."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_source()))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    lines = []
    for v in result["violations"]:
        if v["impact"] not in BAD:
            continue
        for node in v["nodes"]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"{v['id']} ({v['impact']}) at {node['target']}: {v['help']}; "
                         f"{summary[:300]}")
    return lines


def sideways(page: Page) -> str | None:
    """Why the page scrolls sideways (the widest offending elements), or None."""
    return page.evaluate("""() => {
      const vw = document.documentElement.clientWidth;
      if (document.documentElement.scrollWidth <= vw) return null;
      const wide = [];
      for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if (r.right > vw + 1) {
          let inside = false;  // a deliberately scrollable region may be wider inside
          for (let p = el.parentElement; p; p = p.parentElement) {
            if (p.matches('[role=region][tabindex="0"]')) { inside = true; break; }
          }
          if (!inside) wide.push(el.tagName.toLowerCase() + (el.className ? '.' +
            String(el.className).split(' ').join('.') : '') + ' right=' + Math.round(r.right));
        }
      }
      return 'scrollWidth ' + document.documentElement.scrollWidth + ' > ' + vw + ': ' +
             wide.slice(0, 6).join(', ');
    }""")


def check_page(page: Page, name: str, width: int, problems: list[str]) -> None:
    """Adds this page's axe and sideways-scroll findings to ``problems``."""
    page.wait_for_load_state("load")
    problems.extend(f"[{name} @ {width}] {p}" for p in axe_problems(page))
    wide = sideways(page)
    if wide:
        problems.append(f"[{name} @ {width}] sideways scroll: {wide}")


def _new_page(context: Any, width: int, base: str, login: str | None = None) -> Page:
    # axe is injected as an inline script, which the dashboard's CSP (rightly) refuses:
    # this context bypasses the CSP for the test only; it has the librarian's cookies,
    # or logs in as ``login``.
    ctx = context.browser.new_context(viewport={"width": width, "height": HEIGHT[width]},
                                      locale="pl-PL", bypass_csp=True)
    page = ctx.new_page()
    if login is None:
        ctx.add_cookies(context.cookies())
    else:
        page.goto(base + "/login")
        page.fill("input[name=name]", login)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Kolejka na żywo")
    return page


def _existing(page: Page, base: str, paths: list[str]) -> list[str]:
    """Those of ``paths`` the dashboard serves (other tasks add pages as they land)."""
    found = []
    for path in paths:
        response = page.goto(base + path)
        if response is not None and response.status == 200:
            found.append(path)
    return found


def test_every_dashboard_page_passes_axe_and_never_scrolls_sideways(dashboard, imap_user):
    # Serious or critical axe-core findings, or a page wider than the screen, at any of
    # the three widths on any page, fail the test with the list of what was found.
    bot, server, page, context, dialogs, sessions = dashboard
    base = server.url.rstrip("/")
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Dzień dobry, Alicja Łada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3))
    raw, _ = request_mail("jan@patron.test", "LEGIMI", "Jan Dług 0990003")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=4))
    assert bot.run_once() == 0
    page.goto(base + "/requests")
    request_urls = [base + h for h in page.locator("table.list tbody a").evaluate_all(
        "els => els.map(a => a.getAttribute('href'))")]
    assert len(request_urls) == 2, request_urls
    # A desk issue gives a slip and an audit entry.
    page.goto(base + "/desk")
    page.fill("input[name=card]", "0990002")
    page.fill("input[name=name]", "Żaneta Wróbel")
    page.click("button[value=check]")
    page.click("button[value=issue]")
    expect(page.get_by_test_id("slip-code")).to_be_visible()
    slip_url = page.url
    month = bot.month
    os.environ["MAILBOT_NEW_PASSWORD"] = PASSWORD
    try:  # the consortium's administrator sees the account pages
        assert bot.cli("user", "add", "administrator", "--admin") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    # Pages that later tasks of issue 19 add; each one that exists is checked too.
    extra = _existing(page, base, ["/texts", "/pomoc"])

    problems: list[str] = []
    checked: list[str] = []
    for width in WIDTHS:
        p = _new_page(context, width, base)

        def visit(name: str, url: str) -> None:
            response = p.goto(url)
            assert response is not None and response.status == 200, (name, url)
            check_page(p, name, width, problems)
            checked.append(name)
        visit("queue", base + "/queue")
        visit("requests", base + "/requests")
        for i, url in enumerate(request_urls):
            visit(f"request-{i + 1}", url)
        visit("pools", base + "/pools")
        visit("pools-chart", base + f"/pools?library=lib&service=legimi&month={month}")
        visit("pool-withdraw", base + f"/pools/withdraw?library=lib&service=legimi&month={month}")
        visit("desk", base + "/desk")
        for card, name in (("0990003", "Jan Dług"), ("0990001", "Alicja Łada")):
            p.fill("input[name=card]", card)
            p.fill("input[name=name]", name)
            p.click("button[value=check]")
            expect(p.get_by_test_id("verdict")).to_be_visible()
            p.locator(".verdict details summary").click()
            check_page(p, f"desk-verdict-{card}", width, problems)
        visit("slip", slip_url)
        visit("imports", base + "/imports")
        # An import that fails shows its row-level error.
        form = p.locator("#import-readers")
        form.locator("input[type=file]").set_input_files(
            {"name": "czytelnicy.csv", "mimeType": "text/csv",
             "buffer": "numer_karty;imie;nazwisko;email;wazna_do\n"
                       "0990011;Ela;Zła;ela@patron.test;31.13.2030\n".encode()})
        form.locator("button[type=submit]").click()
        expect(p.get_by_test_id("import-error")).to_be_visible()
        check_page(p, "imports-error", width, problems)
        # A codes file goes to its preview first (cancelled here: nothing is imported).
        form = p.locator("#import-codes")
        form.locator("input[type=file]").set_input_files(
            {"name": "legimi.csv", "mimeType": "text/csv",
             "buffer": b"kod\nLEG-AXE-0001-XYZ\nLEG-AXE-0002-XYZ\n"})
        form.locator("button[type=submit]").click()
        expect(p.get_by_test_id("import-preview")).to_be_visible()
        check_page(p, "import-preview", width, problems)
        checked.append("import-preview")
        p.get_by_test_id("preview-cancel").click()
        visit("reports", base + "/reports")
        visit("audit", base + "/audit")
        for path in extra:
            visit(path.strip("/"), base + path)
        p.context.close()
        admin = _new_page(context, width, base, login="administrator")
        for name, path in (("accounts", "/accounts"),
                           ("account-remove", "/accounts/remove?name=bibliotekarka")):
            response = admin.goto(base + path)
            assert response is not None and response.status == 200, (name, response)
            check_page(admin, name, width, problems)
            checked.append(name)
        admin.goto(base + "/accounts")
        admin.locator("details summary").first.click()
        check_page(admin, "accounts-open", width, problems)
        admin.context.close()
        # The login page, logged out.
        anon = context.browser.new_context(viewport={"width": width, "height": HEIGHT[width]},
                                           locale="pl-PL", bypass_csp=True)
        lp = anon.new_page()
        lp.goto(base + "/login")
        check_page(lp, "login", width, problems)
        lp.fill("input[name=name]", "bibliotekarka")
        lp.fill("input[name=password]", PASSWORD + "-wrong")
        lp.click("button[type=submit]")
        expect(lp.locator(".flash.error")).to_be_visible()
        check_page(lp, "login-error", width, problems)
        anon.close()
    print("checked:", ", ".join(sorted(set(checked))))
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
