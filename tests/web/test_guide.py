"""The staff guide (docs/pl/przewodnik.md) served at /pomoc: it renders in Polish inside
the dashboard's frame, every screenshot it shows is served, every outcome of the catalogue
is explained in its outcomes table, and every page's footer (the login page's too) links
to it."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from playwright.sync_api import expect

from mailbot.outcomes import Outcome
from mailbot.resources import docs_root
from mailbot.web.views.guide import GUIDE, render_guide
from tests.web.conftest import SHOTS
from tests.web.webenv import login, make_site

GUIDE_FILE = Path(__file__).resolve().parents[2] / "docs" / "pl" / "przewodnik.md"


def _outcome_rows() -> dict[str, str]:
    """The guide's outcomes table: first cell (the label as the dashboard shows it) ->
    the rest of the row."""
    tokens = MarkdownIt("commonmark").enable("table").parse(
        GUIDE_FILE.read_text(encoding="utf-8"))
    rows: dict[str, str] = {}
    in_table = False
    cells: list[str] = []
    for i, token in enumerate(tokens):
        if token.type == "th_open" and tokens[i + 1].content == "Wynik":
            in_table = True
        elif token.type == "table_close":
            in_table = False
        elif in_table and token.type == "td_open":
            cells.append(tokens[i + 1].content)
        elif in_table and token.type == "tr_close" and cells:
            rows[cells[0]] = " ".join(cells[1:])
            cells = []
    return rows


def test_the_guide_the_dashboard_reads_is_the_one_in_docs():
    # A checkout finds docs/ beside the package, as it finds templates/ (resources.py).
    assert docs_root() / GUIDE == GUIDE_FILE


def test_the_guide_text_cannot_put_markup_on_a_dashboard_page():
    # Raw HTML in the Markdown comes out as text; screenshots get their /pomoc address;
    # headings get the anchors the contents link to; a table scrolls in its own region.
    html, headings = render_guide(
        "# Miesiąc: krok po kroku\n\n<script>alert(1)</script>\n\n"
        '<img src=x onerror="alert(1)">\n\n![Kolejka](../screenshots/queue.png)\n\n'
        "| Wynik | Co to znaczy |\n|---|---|\n| za wcześnie | przed otwarciem |\n")
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<img src="/pomoc/zrzuty/queue.png" alt="Kolejka" loading="lazy" />' in html
    assert headings == [(1, "miesiąc-krok-po-kroku", "Miesiąc: krok po kroku")]
    assert '<h1 id="miesiąc-krok-po-kroku">' in html
    assert '<div class="scroll" tabindex="0" role="region" aria-label="Tabela: Wynik, ' \
           'Co to znaczy"><table>' in html


def test_every_outcome_is_explained_under_its_dashboard_label():
    # Each outcome of the catalogue has a row named as the dashboard names it, with text.
    rows = _outcome_rows()
    missing = [f"{o.value} ({o.label('pl')})" for o in Outcome if o.label("pl") not in rows]
    assert not missing, f"outcomes missing from the guide's table: {missing}"
    for outcome in Outcome:
        meaning_and_advice = rows[outcome.label("pl")]
        assert len(meaning_and_advice.split()) >= 6, outcome
    # And no row names an outcome the dashboard does not show.
    labels = {o.label("pl") for o in Outcome}
    assert not set(rows) - labels, set(rows) - labels


def test_pomoc_renders_the_guide_in_polish_with_every_image_served(tmp_path):
    # /pomoc: the guide inside the dashboard's frame, Polish headings, a working contents
    # list, and every image it shows answered with a PNG.
    site = make_site(tmp_path)
    c = site.client()
    r = c.get("/pomoc")
    assert r.status_code == 200
    html = r.text
    assert '<article class="card guide" lang="pl"' in html
    assert "<h1 id=\"przewodnik-dla-pracowników-biblioteki\">Przewodnik dla pracowników " \
           "biblioteki</h1>" in html
    for heading in ("Miesiąc krok po kroku", "Wyniki zgłoszeń: co znaczą i co powiedzieć "
                    "czytelnikowi", "Konta pracowników i teksty odpowiedzi",
                    "Gdy coś nie działa"):
        assert heading in html, heading
    for outcome in Outcome:
        assert f"<td>{outcome.label('pl')}</td>" in html, outcome
    ids = set(re.findall(r' id="([^"]+)"', html))
    anchors = [unquote(a) for a in re.findall(r'href="#([^"]+)"', html)]
    assert anchors and not [a for a in anchors if a not in ids], anchors
    article = html.split("<article", 1)[1].split("</article>", 1)[0]
    # Raw HTML in the Markdown is not passed through (the guide is text, never markup).
    assert "<script" not in article and "<form" not in article

    images = re.findall(r'<img src="([^"]+)"', article)
    referenced = re.findall(r"!\[[^\]]*\]\(\.\./screenshots/([^)]+)\)",
                            GUIDE_FILE.read_text(encoding="utf-8"))
    assert len(images) == len(referenced) >= 10
    for src in images:
        assert src.startswith("/pomoc/zrzuty/"), src
        img = c.get(unescape(src))
        assert img.status_code == 200, src
        assert img.headers["content-type"] == "image/png", src
        assert img.content.startswith(b"\x89PNG\r\n\x1a\n"), src

    # Only a screenshot's plain name is served: nothing else under docs/, nothing missing.
    for bad in ("/pomoc/zrzuty/nie-ma-takiego.png", "/pomoc/zrzuty/..%2Fpl%2Fprzewodnik.md",
                "/pomoc/zrzuty/przewodnik.md", "/pomoc/zrzuty/.png"):
        assert c.get(bad).status_code == 404, bad


def test_the_footer_links_to_the_guide_before_and_after_login(tmp_path):
    # The login page and every page behind it link to /pomoc in the footer.
    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0
    c = site.client()
    footer = re.compile(r'<footer class="foot">.*<a href="/pomoc"[^>]*>Przewodnik dla '
                        r"pracowników</a>.*</footer>", re.S)
    assert footer.search(c.get("/login").text)
    assert login(c, "anna").status_code == 200
    for url in ("/queue", "/requests", "/pools", "/desk", "/imports", "/reports", "/audit",
                "/pomoc"):
        r = c.get(url)
        assert r.status_code == 200, url
        assert footer.search(r.text), url
    # Logged in, the guide keeps the dashboard's menu.
    assert 'class="main-nav"' in c.get("/pomoc").text
    # In English the link says the guide is Polish.
    en = c.get("/queue?lang=en").text
    assert '<a href="/pomoc" data-testid="guide-link">Staff guide (in Polish)</a>' in en


def test_a_librarian_opens_the_guide_from_the_footer_and_sees_every_screenshot(dashboard):
    # Real Chromium: footer link -> the guide; every image decodes; no sideways scroll on a
    # phone; the outcomes table readable there.
    _bot, _server, page, _context, _dialogs, _sessions = dashboard
    page.get_by_test_id("guide-link").click()
    expect(page.locator("article.guide h1")).to_have_text(
        "Przewodnik dla pracowników biblioteki")
    images = page.locator("article.guide img").all()
    assert len(images) >= 10
    for img in images:
        img.scroll_into_view_if_needed()  # they load lazily
        # decode() settles once the image is loaded, and fails for a broken one.
        width = img.evaluate("i => i.decode().then(() => i.naturalWidth, () => 0)")
        assert width > 0, img.get_attribute("src")
    # The contents list jumps to its section (the anchors carry Polish letters).
    page.evaluate("window.scrollTo(0, 0)")
    page.get_by_role("link", name="Wyniki zgłoszeń: co znaczą i co powiedzieć czytelnikowi"
                     ).click()
    table_heading = page.locator('[id="3-wyniki-zgłoszeń-co-znaczą-i-co-powiedzieć-'
                                 'czytelnikowi"]')
    expect(table_heading).to_be_in_viewport()
    page.screenshot(path=SHOTS / "guide.png")
    for width in (768, 390):
        page.set_viewport_size({"width": width, "height": 860})
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, (width, wide)
    # On a phone each outcome is a card: its label above its meaning, not a squeezed column.
    row = page.locator("article.guide tr", has_text="pula jeszcze niezaimportowana")
    label, meaning = row.locator("td").nth(0), row.locator("td").nth(1)
    assert label.bounding_box()["y"] < meaning.bounding_box()["y"]
    assert meaning.bounding_box()["width"] > 300
    table_heading.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "guide-390.png")
