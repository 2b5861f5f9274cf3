"""The plain-text layout of a reply: lines filled to 78 columns, blank runs collapsed.

Text templates write a paragraph or list item as one line; ``tidy_text`` fills each line
over TEXT_WIDTH, with a hanging indent under list items, and never breaks a word (URLs,
codes), a date ("1 grudnia 2026"), "nr 0012345", "godz. 10:00" or "Empik Go", nor leaves
a Polish one-letter word at the end of a line. Hand-written rather than ``textwrap``,
which was several times slower here, and a burst wraps thousands of replies.
"""

from __future__ import annotations

import re
from functools import lru_cache

TEXT_WIDTH = 78

_LIST_MARKER = re.compile(r"^(\s*)((?:\d+[.)]|[-*•–])\s+)?")
_BLANK_RUN = re.compile(r"\n{3,}")
# A private-use character glues words together while wrapping; it never reaches output.
_GLUE = "\ue000"
# Never split a date ("1 grudnia 2026"), "nr 0012345", "godz. 10:00" or "Empik Go".
_KEEP_TOGETHER = r"\b\d{1,2} \w+ \d{4}\b|\b(?:nr|no\.|godz\.) (?=\S)|\bEmpik Go\b"
# Polish typesetting keeps one-letter words (w, z, i, a, o, u) off the end of a line.
_PL_ORPHAN = r"(?<![^\s(„])[aiouwzAIOUWZ] (?=\S)"
_GLUED = {
    "pl": re.compile(f"{_KEEP_TOGETHER}|{_PL_ORPHAN}"),
    None: re.compile(_KEEP_TOGETHER),
}


def tidy_text(text: str, lang: str | None = None) -> str:
    """Strip trailing spaces, collapse blank runs that guards leave, and wrap long lines
    (``lang`` None: only what every language keeps together)."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= TEXT_WIDTH:
            out.append(line)
        else:
            out.extend(fill(line, lang))
    return _BLANK_RUN.sub("\n\n", "\n".join(out)).strip("\n") + "\n"


def finish(text: str, html: str) -> tuple[str, str]:
    """The last step of every reply, however it was made (the templates, a cached shape):
    the whole text tidied around its dividers (the sections are wrapped already), the HTML
    ending in one line break. Both ways must give the same bytes, so it is written once."""
    return tidy_text(text), html.strip() + "\n"


def fill_once(line: str, lang: str | None) -> tuple[str, ...]:
    """Greedy fill of one long line, not cached: for a line holding a patron's value,
    which no other reply repeats."""
    marker = _LIST_MARKER.match(line)
    prefix = marker.group(0) if marker else ""  # indent and list marker, if any
    hang = " " * len(prefix)
    # No line should start with a dash: keep it with the word before.
    glued = line[len(prefix) :].replace(" – ", _GLUE + "– ").replace(" - ", _GLUE + "- ")
    glued = _GLUED.get(lang, _GLUED[None]).sub(_glue, glued)
    words = glued.split()
    lines: list[str] = []
    current = prefix + words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) <= TEXT_WIDTH:
            current += " " + word
        else:
            lines.append(current)
            current = hang + word
    lines.append(current)
    return tuple(part.replace(_GLUE, " ") for part in lines)


@lru_cache(maxsize=8192)
def fill(line: str, lang: str | None) -> tuple[str, ...]:
    """fill_once, cached: most long lines of a reply are the same for every patron, and a
    burst wraps them thousands of times."""
    return fill_once(line, lang)


def _glue(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", _GLUE)
