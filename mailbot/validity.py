"""How long a code gives access, as the replies say it: the shipped sentence ("30 days from
activation"), or a library's own for codes issued in a given month.

Sędziszów's codes issued in December run until the library's contract with the platform
ends, not 30 days. Its table says so::

    [libraries.validity.12]
    pl = "Kody wydane w grudniu działają do końca umowy biblioteki z serwisem (31 grudnia)."
    en = "Codes issued in December work until the library's contract ends (31 December)."

(or ``12 = { pl = "…", en = "…" }`` on one line under ``[libraries.validity]``). A key
is a month's number, "1" to "12" (the month the code was issued for, every year); a
month not given keeps the shipped sentence. Both languages are required: a reply carries
both, whichever the library sends (``languages``). The text is plain (escaped in the HTML
part) and stands for the whole sentence, in place of the shipped one, wherever a reply
explains the code: the issued reply, the code repeated (already_received) and the
activation reminder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

LANGUAGES = ("pl", "en")
# At most this long: one or two sentences, not a regulation pasted in.
MAX_CHARS = 600

# month number -> ((language, text), ...): hashable, as the settings must be.
Validity = tuple[tuple[int, tuple[tuple[str, str], ...]], ...]


def parse(value: Any) -> Validity:
    """The ``validity`` table as the config file has it. Raises ValueError naming the
    month and what is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError('must be a table of months, e.g. "12" = { pl = "…", en = "…" }')
    found: list[tuple[int, tuple[tuple[str, str], ...]]] = []
    for key, texts in value.items():
        month = _month_number(key)
        if not isinstance(texts, Mapping):
            raise ValueError(f'"{key}" must be a table {{ pl = "…", en = "…" }}')
        unknown = sorted(set(texts) - set(LANGUAGES))
        if unknown:
            raise ValueError(f'"{key}": unknown language {unknown[0]!r} (pl, en)')
        for lang in LANGUAGES:
            text = texts.get(lang)
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f'"{key}".{lang} is required (a non-empty text): a reply '
                                 "carries both languages")
            if len(text) > MAX_CHARS:
                raise ValueError(f'"{key}".{lang} is longer than {MAX_CHARS} characters')
        found.append((month, tuple((lang, " ".join(texts[lang].split()))
                                   for lang in LANGUAGES)))
    months = [m for m, _ in found]
    if len(set(months)) != len(months):
        raise ValueError("names a month twice (\"1\" and \"01\" are the same month)")
    return tuple(sorted(found))


class Sentence(NamedTuple):
    """The sentence in each language (``validity.pl`` in a template); hashable, so that
    replies with it still come from the shape cache (mailbot.respond.shapes)."""

    pl: str
    en: str


def text_for(validity: Validity, month: int) -> Sentence | None:
    """The library's sentence for codes of ``month`` (1-12); None: the shipped one."""
    for number, texts in validity:
        if number == month:
            return Sentence(**dict(texts))
    return None


def _month_number(key: Any) -> int:
    text = str(key).strip()
    if not text.isdigit() or not 1 <= int(text) <= 12:
        raise ValueError(f'unknown month "{key}": the keys are month numbers, "1" to "12"')
    return int(text)
