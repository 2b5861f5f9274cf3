"""Body text as mailbot reads and compares it: one kind of line end, no invisible
characters (zero-width spaces, soft hyphens; no-break spaces as spaces), no trailing
spaces, quoted lines marked "> ", runs of blank lines as one."""

from __future__ import annotations

import re

# Zero-width characters and soft hyphens go; no-break spaces become spaces.
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
INVISIBLE.update({0xA0: " ", 0x202F: " ", 0x2007: " "})
_INVISIBLE_CHARS = re.compile("[" + "".join(map(chr, INVISIBLE)) + "]")


def plain(text: str) -> str:
    """Line ends unified, invisible characters and trailing spaces gone."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() and _INVISIBLE_CHARS.search(text):
        text = text.translate(INVISIBLE)
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    return text.strip("\n")


def quote_lines(text: str) -> str:
    """Every line of ``text`` marked as quoted ("> "; an empty line as ">")."""
    return "\n".join("> " + line if line else ">" for line in text.split("\n"))


_BLANK_LINES = re.compile(r"\n(?:[ \t>]*\n){2,}")


def squeeze_blank_lines(text: str) -> str:
    """Runs of blank (or only ">") lines as one blank line."""
    return _BLANK_LINES.sub("\n\n", text)
