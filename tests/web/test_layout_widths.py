"""The dashboard at a desktop (1280 px), a tablet (768 px) and a phone (390 px) in real
Chromium: lists turn into labelled card rows on narrow screens, no page scrolls sideways,
and the live queue refreshes without moving keyboard focus or re-reading itself.

Saves docs/screenshots/{queue,requests,request}-{1280,768,390}.png."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import Page, expect

from tests.botenv import request_mail
from tests.web.conftest import SHOTS
from tests.web.test_axe import HEIGHT, WIDTHS, sideways

LONG = "alicja.bardzo-dluga-nazwa.lada@poczta.biblioteka-publiczna.test"

# Each list cell of each page: (its data-label, the ::before text shown, its box).
CELLS = """() => Array.from(document.querySelectorAll('main table > tbody > tr > td'))
  .filter(td => !td.hasAttribute('colspan')).map(td => {
    const r = td.getBoundingClientRect();
    return {label: td.getAttribute('data-label'), text: td.textContent.trim().slice(0, 40),
            before: getComputedStyle(td, '::before').content,
            left: r.left, right: r.right, width: r.width, height: r.height};
  })"""


def _requests(bot, imap_user) -> None:
    """Five decided requests: issued (a long address), debt, unknown card, already
    received and one with no card, so the report has several refusal columns."""
    mails = [(LONG, "Dzień dobry, proszę o kod. Alicja Łada 0990001"),
             ("jan@patron.test", "Jan Dług 0990003"),
             ("ktos@patron.test", "Ktoś Nieznany 0999999"),
             ("zaneta@patron.test", "Żaneta Wróbel 0990002"),
             ("zaneta@patron.test", "Żaneta Wróbel 0990002 jeszcze raz"),
             ("bez.karty@patron.test", "Dzień dobry, proszę o kod")]
    for i, (sender, body) in enumerate(mails):
        raw, _ = request_mail(sender, "LEGIMI", body)
        imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3 + i))
    assert bot.run_once() == 0


def test_lists_become_labelled_cards_and_no_page_scrolls_sideways(dashboard, imap_user):
    # At 768 and 390 px each list row is a card whose cells are labelled by their column
    # and lie inside the screen (no cut-off Wynik/Odpowiedź, no one-letter "Od" column);
    # at 1280 the tables stay tables and the report fits; no page is wider than the screen.
    bot, server, page, context, dialogs, sessions = dashboard
    base = server.url.rstrip("/")
    _requests(bot, imap_user)
    page.goto(base + "/requests")
    issued = page.locator("tr", has_text=LONG).locator("a").first.get_attribute("href")
    pages = {"queue": "/queue", "requests": "/requests", "request": issued,
             "reports": "/reports", "pools": "/pools", "audit": "/audit", "imports": "/imports"}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT[width]})
        for name, path in pages.items():
            page.goto(base + path)
            assert sideways(page) is None, (name, width, sideways(page))
            cells = page.evaluate(CELLS)
            unlabelled = [c["text"] for c in cells if not c["label"] and c["label"] != ""]
            assert not unlabelled, (name, "cells without data-label", unlabelled)
            if width < 900:
                for c in cells:
                    assert c["right"] <= width and c["left"] >= 0, (name, width, c)
                    if c["label"]:
                        assert c["before"] == f'"{c["label"]}"', (name, width, c)
                heads = page.evaluate("() => Array.from(document.querySelectorAll("
                                      "'main table > thead')).map(h => h.offsetHeight)")
                assert all(h <= 1 for h in heads), (name, width, "header row shown", heads)
            else:
                for c in cells:
                    assert c["before"] in ("none", "normal"), (name, width, c)
            if name in ("queue", "requests", "request"):
                page.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)
        # The long sender's address: whole words on a line or two, never a letter column.
        page.goto(base + "/requests")
        cell = page.locator("td", has_text=LONG)
        box = cell.bounding_box()
        line = cell.evaluate("td => parseFloat(getComputedStyle(td).lineHeight)")
        # (the label above it, then the address on at most three lines)
        assert box["width"] >= 150 and box["height"] <= 5 * line, (width, box, line)
        page.goto(base + "/reports")
        if width >= 900:
            fits = page.evaluate("() => { const t = document.querySelector('table.report');"
                                 " return [t.scrollWidth, t.parentElement.clientWidth]; }")
            assert fits[0] <= fits[1], ("the report table is wider than the page", fits)
            assert page.locator("table.report thead th").count() >= 10


def test_the_live_refresh_keeps_focus_and_announces_only_what_changed(dashboard, imap_user):
    # A librarian tabbing through the queue keeps her place when it refreshes; the page
    # says only "rozpatrzone (24 h): 1" (not the whole region), and nodes that did not
    # change stay the same nodes.
    bot, server, page, context, dialogs, sessions = dashboard
    live = page.locator("#live")
    assert live.get_attribute("aria-live") is None
    news = page.locator("#live-news")
    expect(news).to_have_attribute("role", "status")
    expect(news).to_have_text("")
    tile = page.locator("#live a.tile").nth(1)
    tile.focus()
    page.evaluate("""() => { window.__focused = document.activeElement;
                             window.__heading = document.querySelector('#live h2');
                             window.__tiles = document.querySelector('#live .tiles'); }""")
    assert page.evaluate("window.__focused.classList.contains('tile')")
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Alicja Łada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3))
    assert bot.run_once() == 0
    expect(page.get_by_test_id("decided-lib")).to_have_text("1", timeout=15000)
    expect(live).to_contain_text("ala@patron.test")
    still = page.evaluate("""() => ({
        focus: document.activeElement === window.__focused && window.__focused.isConnected,
        heading: document.querySelector('#live h2') === window.__heading,
        tiles: document.querySelector('#live .tiles') === window.__tiles})""")
    assert still == {"focus": True, "heading": True, "tiles": True}, still
    said = news.text_content()
    assert "rozpatrzone (24 h): 1" in said, said
    assert "Zaktualizowano" not in said and "ala@patron.test" not in said, said
    # A refresh with nothing new changes the clock only: focus stays, nothing is said.
    page.evaluate("document.getElementById('live-news').textContent = ''")
    before = page.get_by_test_id("updated").text_content()
    expect(page.get_by_test_id("updated")).not_to_have_text(before, timeout=10000)
    assert page.evaluate("document.activeElement === window.__focused")
    expect(news).to_have_text("")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement !== window.__focused && "
                         "document.activeElement.closest('#live') !== null")
