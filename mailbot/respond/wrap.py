"""The plain-text layout of a reply: lines filled to 78 columns, blank runs collapsed.

Text templates write a paragraph or list item as one line; ``tidy_text`` fills each line
over TEXT_WIDTH and never breaks a word (URLs, codes), a date ("1 grudnia 2026"), "nr
0012345", "godz. 10:00", "Empik Go" or "3 miesiące", nor leaves a Polish one-letter word
at the end of a line. Hand-written rather than ``textwrap``, which was several times
slower here, and a burst wraps thousands of replies.

The text part is sent as ``format=flowed`` (RFC 3676, compose.py): a line that ``fill``
broke ends in a *soft* break, which a phone's mail client joins again and re-wraps to its
screen; every other line break is *hard* (the template's). While the text is made, a soft
break is SOFT_BREAK, a private-use character that no ``rstrip`` of tidying removes;
``soft_breaks`` writes it as the RFC's trailing space once the text is finished. A filled
line fits in 78 columns with that space (and with the space compose adds in front of a
line starting with one); the lines after the first are not indented, since a client that
joins them would keep the indent as spaces inside the paragraph.
"""

from __future__ import annotations

import re
from functools import lru_cache

TEXT_WIDTH = 78

_LIST_MARKER = re.compile(r"^(\s*)((?:\d+[.)]|[-*•–])\s+)?")
_BLANK_RUN = re.compile(r"\n{3,}")
# Marks a soft line break (RFC 3676) until soft_breaks writes it as a trailing space.
SOFT_BREAK = "\ue010"
# A private-use character glues words together while wrapping; it never reaches output.
_GLUE = "\ue000"
# Never split a date ("1 grudnia 2026"), "nr 0012345", "godz. 10:00", "Empik Go", nor a
# number from the word it counts ("3 miesiące", "30 dni").
_KEEP_TOGETHER = (r"\b\d{1,2} \w+ \d{4}\b|\b(?:nr|no\.|godz\.) (?=\S)|\bEmpik Go\b"
                  r"|\b\d+ (?=[^\W\d])")
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


def soft_breaks(text: str) -> str:
    """The finished text with each soft break written as RFC 3676 has it: a space at the
    end of the line."""
    return text.replace(SOFT_BREAK + "\n", " \n")


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
    # No line should start with a dash: keep it with the word before.
    glued = line[len(prefix) :].replace(" – ", _GLUE + "– ").replace(" - ", _GLUE + "- ")
    glued = _GLUED.get(lang, _GLUED[None]).sub(_glue, glued)
    words = glued.split()
    lines: list[str] = []
    current = prefix + words[0]
    # Room for the soft break's space; an indented first line also for the space
    # compose stuffs in front of it.
    width = TEXT_WIDTH - 1 - (prefix[:1] == " ")
    for word in words[1:]:
        if len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current + SOFT_BREAK)
            current = word
            width = TEXT_WIDTH - 1 - (word[:1] == ">" or word.startswith("From"))
    lines.append(current)
    return tuple(part.replace(_GLUE, " ") for part in lines)


@lru_cache(maxsize=8192)
def fill(line: str, lang: str | None) -> tuple[str, ...]:
    """fill_once, cached: most long lines of a reply are the same for every patron, and a
    burst wraps them thousands of times."""
    return fill_once(line, lang)


def _glue(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", _GLUE)
