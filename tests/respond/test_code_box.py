"""The HTML replies on a phone, in real Chromium: nothing scrolls sideways, the code is one word.

Each reply's HTML, with a 40-character code (no hyphen or other break point) and a long
activation link, is opened at 360 and 390 px: the page must be no wider than the screen,
the code box must break inside the code, and the code must still be exactly the code
when read or copied (a selection of the box), with nothing put into it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from mailbot.respond import shapes
from mailbot.respond.render import NOTICES, REPLY_OUTCOMES, render_reply
from mailbot.respond.variables import CODE_OUTCOMES
from tests.test_golden_replies import _context
from tests.web.browser import ARGS, ensure_chromium

CODE = "ZQX7K9MD4PLW2RT8HN6VC3BY5FJ0GS1AEXU7QK2D"  # 40 characters
LONG_URL = "https://www.legimi.pl/" + "czytelnicy-biblioteki-publicznej-" * 3 + "aktywacja/"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Every element that holds the code as its whole text, and what the page measures.
_MEASURE = """(code) => {
  const boxes = [...document.querySelectorAll('td, span, code, div, p')]
      .filter(e => e.textContent.trim() === code);
  const out = {scroll: document.documentElement.scrollWidth,
               body: document.body.scrollWidth, boxes: []};
  for (const box of boxes) {
    const range = document.createRange();
    range.selectNodeContents(box);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    const style = getComputedStyle(box);
    const rect = box.getBoundingClientRect();
    out.boxes.push({text: box.textContent, copied: sel.toString(),
                    right: rect.right, height: rect.height,
                    lineHeight: parseFloat(style.lineHeight),
                    font: style.fontFamily, letterSpacing: style.letterSpacing});
  }
  return out;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = ensure_chromium()
    with sync_playwright() as pw:
        # No skip: if Chromium cannot start, this raises and the tests error.
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _html(outcome: str, service: str) -> str:
    ctx: dict[str, Any] = dict(_context(service), code=CODE, activation_url=LONG_URL)
    shapes.clear()
    return render_reply(outcome, ctx).html


@pytest.mark.parametrize("width", [360, 390])
def test_no_reply_scrolls_sideways_and_the_code_stays_one_word(browser: Browser,
                                                                width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        for outcome, service in itertools.product(REPLY_OUTCOMES + NOTICES,
                                                  ("legimi", "empik_go")):
            html = _html(outcome, service)
            page.set_content(html)
            got = page.evaluate(_MEASURE, CODE)
            where = f"{outcome}/{service} at {width} px"
            assert got["scroll"] <= width and got["body"] <= width, (where, got)
            if outcome not in CODE_OUTCOMES:
                assert got["boxes"] == [], where  # a refusal never shows a code
                continue
            assert CODE in html and f"{CODE}<" in html, where  # nothing inserted
            assert len(got["boxes"]) >= 1, where
            for box in got["boxes"]:
                assert box["text"] == CODE and box["copied"] == CODE, (where, box)
                assert box["right"] <= width, (where, box)
                # Broken inside the code (two lines or more), not shrunk or cut off.
                assert box["height"] >= 1.9 * box["lineHeight"], (where, box)
                assert "monospace" in box["font"] and box["letterSpacing"] != "normal", box
            if outcome == "issued" and service == "legimi":
                page.evaluate("getSelection().removeAllRanges()")
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=SHOTS / f"reply-issued-{width}.png", full_page=True)
    finally:
        page.close()


def test_a_short_code_stays_on_one_line_at_360(browser: Browser) -> None:
    # The box breaks only when it must: an ordinary code is one line, as before.
    page = browser.new_page(viewport={"width": 360, "height": 800})
    try:
        code = "ZQX7-CODE-4242"
        page.set_content(render_reply("issued", dict(_context("legimi"), code=code)).html)
        got = page.evaluate(_MEASURE, code)
        assert len(got["boxes"]) == 2  # Polish and English
        for box in got["boxes"]:
            assert box["copied"] == code
            assert box["height"] < 1.9 * box["lineHeight"], box
    finally:
        page.close()
