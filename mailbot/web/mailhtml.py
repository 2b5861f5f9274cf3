"""A patron's mail HTML made inert before staff see it: nothing in it may make the browser
fetch, connect to or navigate anywhere (a tracking pixel, a preconnect, a frame or a
refresh would tell the sender that, when and from where staff read the mail).

An allow-list, parsed with a real HTML5 parser (selectolax/Lexbor, as a browser parses it,
never regexes over markup): text and layout elements are kept with plain presentational
attributes; anything that can load or run something is removed with its content; any
other element is unwrapped (its text stays). Links keep their text, and their target is
shown as a tooltip instead of being followable; images stay only as inline ``data:``
images. CSS is kept only when it cannot refer to anything (no ``url``, ``@import``,
``image-set``, escapes). The frame's own Content-Security-Policy (views.requests.mail_html) still
forbids every fetch: this is the second wall, and the one that also stops preconnects.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

# Removed together with everything inside them.
DROPPED = (
    "script", "style", "link", "meta", "base", "iframe", "frame", "frameset", "noframes",
    "object", "embed", "applet", "param", "video", "audio", "source", "track", "picture",
    "svg", "math", "canvas", "portal", "fencedframe", "noscript", "noembed", "template",
    "input", "button", "select", "option", "optgroup", "textarea", "datalist",
    "output", "dialog", "slot", "head",
)

# Kept (with only the attributes below); any element in neither list is unwrapped.
KEPT = frozenset({
    "html", "body", "p", "br", "hr", "div", "span", "b", "i", "u", "s", "strong", "em",
    "small", "big", "sub", "sup", "strike", "font", "center", "mark", "del", "ins", "abbr",
    "cite", "q", "code", "pre", "kbd", "samp", "var", "tt", "blockquote", "address",
    "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd",
    "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "colgroup", "col",
    "section", "article", "header", "footer", "main", "nav", "aside", "figure",
    "figcaption", "details", "summary", "wbr", "a", "img",
})

ATTRIBUTES = frozenset({
    "align", "valign", "width", "height", "colspan", "rowspan", "border", "cellpadding",
    "cellspacing", "bgcolor", "color", "face", "size", "dir", "lang", "alt", "title",
    "start", "reversed", "span", "nowrap", "style", "open",
})

# Inline images only, in formats that cannot refer to anything else (not SVG).
DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|jpg|webp|bmp);base64,[A-Za-z0-9+/=\s]*\Z",
                        re.IGNORECASE)
# CSS that could name a resource, in any spelling a browser accepts (escapes included).
UNSAFE_CSS = re.compile(r"[\\@&]|url|image|src|expression|behavior|binding|import",
                        re.IGNORECASE)


def inert_html(html: str) -> str:
    """The mail's HTML with everything active or external removed (see the module doc)."""
    tree = LexborHTMLParser(html)
    tree.strip_tags(list(DROPPED), recursive=True)
    for node in list(tree.root.traverse(include_text=False)):
        if node.tag == "-comment":
            node.decompose()
    present = {node.tag for node in tree.root.traverse(include_text=False)}
    tree.unwrap_tags([tag for tag in present if tag not in KEPT])
    for node in tree.root.traverse(include_text=False):
        _clean_attributes(node)
    return tree.html or ""


def _clean_attributes(node) -> None:  # noqa: ANN001 (a selectolax node)
    attrs = node.attrs
    original = dict(attrs)
    for name in original:
        del attrs[name]
    for name, value in original.items():
        name = name.lower()
        value = value or ""
        if name in ATTRIBUTES and not (name == "style" and UNSAFE_CSS.search(value)):
            attrs[name] = value
    if node.tag == "a" and original.get("href"):
        # Not followable (the frame must not navigate), but staff can see where it led.
        attrs["title"] = original["href"][:500]
    if node.tag == "img":
        src = (original.get("src") or "").strip()
        if DATA_IMAGE.match(src):
            attrs["src"] = src
