"""The staff guide at /pomoc: docs/pl/przewodnik.md rendered inside the dashboard's frame,
and the screenshots it shows.

The guide is a Markdown file so that it reads the same on the code host and here; it is
rendered with markdown-it-py (CommonMark plus tables) with raw HTML off, so nothing in the
file can put a script or a form on the page. Its image links are relative
(``../screenshots/queue.png``) and are served from /pomoc/zrzuty/. It is readable without
a login: it holds no library's data (the screenshots show the test fixtures), and the
login page links to it for a librarian who cannot log in.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from mailbot.resources import docs_root
from mailbot.web.context import Ctx, page

GUIDE = "pl/przewodnik.md"
IMAGE_URL = "/pomoc/zrzuty/"
_SCREENSHOTS = "../screenshots/"
_IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.png")


def slug(text: str) -> str:
    """A heading's anchor as the code host makes it (lower case, letters kept with their
    diacritics, punctuation dropped, spaces to hyphens), so the guide's table of contents
    works in both places."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    # A wide table scrolls inside its own labelled, focusable region: the page never does.
    # Its name is its column headings: a screen reader tells one table from another.
    def table_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        label = escapeHtml("Tabela: " + ", ".join(tokens[idx].meta.get("columns", ())))
        return (f'<div class="scroll" tabindex="0" role="region" aria-label="{label}">'
                + renderer.renderToken(tokens, idx, options, env))

    def table_close(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        return renderer.renderToken(tokens, idx, options, env) + "</div>"

    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    return md


def render_guide(text: str) -> tuple[str, list[tuple[int, str, str]]]:
    """The guide's HTML, and its headings (level, anchor, text) for the table of contents.
    Images get their dashboard address; headings get the anchors the contents link to."""
    md = _markdown()
    tokens = md.parse(text)
    headings: list[tuple[int, str, str]] = []
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            end = next(j for j in range(i, len(tokens)) if tokens[j].type == "thead_close")
            token.meta["columns"] = [tokens[j + 1].content for j in range(i, end)
                                     if tokens[j].type == "th_open"]
        if token.type == "heading_open":
            title = tokens[i + 1].content
            anchor = slug(title)
            token.attrSet("id", anchor)
            headings.append((int(token.tag[1]), anchor, title))
        for child in token.children or ():
            if child.type == "image":
                src = str(child.attrGet("src") or "")
                if src.startswith(_SCREENSHOTS):
                    child.attrSet("src", IMAGE_URL + src[len(_SCREENSHOTS):])
                child.attrSet("loading", "lazy")
            elif child.type == "link_open":
                href = str(child.attrGet("href") or "")
                # A link to a screenshot opens the full-size image here too.
                if href.startswith(_SCREENSHOTS):
                    child.attrSet("href", IMAGE_URL + href[len(_SCREENSHOTS):])
    return md.renderer.render(tokens, md.options, {}), headings


_cache: dict[Path, tuple[float, str]] = {}
_lock = threading.Lock()


def guide_html() -> str:
    """The rendered guide, rendered again only when the file changed."""
    path = docs_root() / GUIDE
    mtime = path.stat().st_mtime
    with _lock:
        hit = _cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]
    html, _ = render_guide(path.read_text(encoding="utf-8"))
    with _lock:
        _cache[path] = (mtime, html)
    return html


@page(login=False)
def guide(ctx: Ctx) -> Response:
    return ctx.render("guide.html.j2", nav="guide", body=Markup(guide_html()))


@page(login=False)
def guide_image(ctx: Ctx, name: str) -> Response:
    # Only a plain file name of a PNG in the screenshots folder: no path can be smuggled in.
    path = docs_root() / "screenshots" / name
    if not _IMAGE_NAME.fullmatch(name) or not path.is_file():
        raise HTTPException(404)
    return FileResponse(path, media_type="image/png")
