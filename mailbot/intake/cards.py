"""The patron's card number in a mail (SPEC §2.4): every plausible number and the one
chosen (a card-labelled one, else the only one left), looked for in what the sender wrote
now, and in what they quoted only when that has none.

Numbers in groups ("karta 2000 000 123") count as their digits joined when a card label
stands before them; phone numbers, dates, postal codes, account numbers (IBAN/NRB) and
digits inside addresses or links are never cards. Card numbers stay strings: leading
zeros matter.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from mailbot.intake.mail.quotes import split_quotes
from mailbot.intake.parse import DEFAULT_CARD_PATTERN, ParsedMail
from mailbot.text import fold


@dataclass(frozen=True, slots=True)
class CardSearch:
    """What ``find_cards`` saw: every plausible card number, and the one it chose, if any."""

    candidates: tuple[str, ...]
    card: str | None
    from_quote: bool

    @property
    def ambiguous(self) -> bool:
        return self.card is None and len(self.candidates) > 1


_CARD_LABEL = r"kart\w*|karc\w*|czytelni\w*|legitymac\w*|card\w*|barcode|kod\w* kreskow\w*"
_PHONE_LABEL = r"tel|tel\w+|phone|mobile|mob|kom|komork\w*|gsm|fax|cell"
_OTHER_LABEL = (
    r"pesel|nip|regon|iban|swift|bic|faktur\w*|zamowieni\w*|order|zip|postal|pocztow\w*"
    r"|data|date|urodzeni\w*"
)
_LABEL = re.compile(
    rf"\b(?:(?P<card>{_CARD_LABEL})|(?P<phone>{_PHONE_LABEL})|(?P<other>{_OTHER_LABEL}))\b"
)
_PHONE_PREFIX = re.compile(r"(?:\+\s*|\b00)48[\s.\-]*$|\(\s*\+?\s*48\s*\)[\s.\-]*$|\+\s*$")
_GROUPED_PHONE = re.compile(r"\d{3}([ \-])\d{3}\1\d{3}")
_DATE = re.compile(r"\d{1,2}[./\-]\d{1,2}[./\-]\d{2,4}|\d{4}[./\-]\d{1,2}[./\-]\d{1,2}")
_POSTAL = re.compile(r"\d{2}-\d{3}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,8}(?: ?[A-Z0-9]{1,3})?\b")
_LABEL_REACH = 25


@lru_cache(maxsize=32)
def _card_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![^\W_])(?:{pattern})(?![^\W_])")


def _line_before(text: str, start: int) -> tuple[str, int]:
    """Up to _LABEL_REACH characters before start on the same line, and where the line starts
    (-1 when it starts further back than that)."""
    low = max(0, start - _LABEL_REACH)
    newline = text.rfind("\n", low, start)
    if newline >= 0:
        return text[newline + 1 : start], newline + 1
    return text[low:start], (0 if low == 0 else -1)


def _label_before(text: str, start: int) -> str | None:
    """The kind of the nearest label before position start: "card", "phone" or "other".

    The label is looked for on the same line, up to _LABEL_REACH characters back; a number
    alone on its line may take a label that ends the line above ("Numer karty:").
    """
    window, line_start = _line_before(text, start)
    from_above = False
    if line_start > 0 and not window.strip(" \t>:.#-=*"):
        end = line_start - 1
        for _ in range(3):  # the line above, skipping up to two blank lines
            above, begin = _line_before(text, end)
            if above.strip(" \t>"):
                window, from_above = above, True
                break
            if begin <= 0:
                break
            end = begin - 1
    folded = fold(window)
    last = None
    for match in _LABEL.finditer(folded):
        last = match
    if last is None or (from_above and folded[last.end() :].strip(" \t:.#-=*")):
        return None
    return last.lastgroup


_NEAR = 100  # how far around a number its "word" and digit groups are looked at
_WORD_BEFORE = re.compile(r"\S*\Z")
_WORD_AFTER = re.compile(r"\S*")


def _excluded(text: str, start: int, end: int, value: str) -> bool:
    """Phone numbers, dates, postal codes, IBANs, and digits inside addresses or links."""
    before = text[max(0, start - _NEAR) : start]
    after = text[end : end + _NEAR]
    if _PHONE_PREFIX.search(before[-8:]):
        return True
    if _GROUPED_PHONE.fullmatch(value) or _DATE.fullmatch(value) or _POSTAL.fullmatch(value):
        return True
    groups = _DIGIT_GROUPS_BEFORE.search(before).group() + value
    groups = (groups + _DIGIT_GROUPS_AFTER.match(after).group()).strip("./-")
    if groups != value and (_DATE.fullmatch(groups) or _POSTAL.fullmatch(groups)):
        return True
    word = _WORD_BEFORE.search(before).group() + value + _WORD_AFTER.match(after).group()
    if "@" in word or "://" in word or word.lower().startswith("www."):
        return True
    ibans = _IBAN.finditer(text, max(0, start - _NEAR), end + _NEAR)
    return any(m.start() <= start and end <= m.end() for m in ibans)


_DIGIT_GROUPS_BEFORE = re.compile(r"[\d./-]*\Z")
_DIGIT_GROUPS_AFTER = re.compile(r"[\d./-]*")
# A mail listing more distinct numbers than this is ambiguous whatever the rest says, and
# numbers past the first MAX_CARD_MATCHES are not looked at.
MAX_CARD_CANDIDATES = 100
MAX_CARD_MATCHES = 1000


# A card number as printed, in groups of digits with single spaces or hyphens between:
# "2000 000 123", "2000-000-123", "5 901234 123457". Groups of seven or more digits are
# numbers of their own ("0012345 12" is not one number).
_DIGIT_GROUPS = re.compile(r"(?<![^\W_])\d{1,6}(?:[ -]\d{1,6})+(?![^\W_])")
_GROUP_SEPARATORS = re.compile(r"[ -]")
_MAX_GROUPED_DIGITS = 40  # no card number is longer; anything longer is not looked at
# Never a card, whatever label stands before them: phone numbers as Poles write them
# (mobile 601 234 567 or 601 23 45 67, landline 22 123 45 67, with the 48 country code),
# dates with spaces, account numbers (NRB), and a street number before a postal code
# ("Długa 12 34-567 Kraków").
_GROUPED_NOT_CARD = re.compile(
    r"(?:48[ -])?(?:\d{3}[ -]\d{3}[ -]\d{3}|\d{3}[ -]\d{2}[ -]\d{2}[ -]\d{2}"
    r"|\d{2}[ -]\d{3}[ -]\d{2}[ -]\d{2})"
    r"|\d{1,2} \d{1,2} \d{4}|\d{4} \d{1,2} \d{1,2}"
    r"|\d{2}(?: \d{4}){6}"
    r"|[\d -]* \d{2}-\d{3}"
)


def _grouped_cards(text: str, regex: re.Pattern[str]) -> list[tuple[int, int, str]]:
    """Card numbers written in groups: (start, end, the digits joined) for each run of digit
    groups that a card label stands before ("karta 2000 000 123", "nr karty: 2000-000-123",
    as _label_before finds labels) and whose joined digits are a whole card number for
    ``regex``. Runs the pattern takes as they are written are left to it; runs
    whose every group is a card number on its own are separate numbers; phone numbers,
    dates, postal codes and account numbers are never cards."""
    found: list[tuple[int, int, str]] = []
    for run in _DIGIT_GROUPS.finditer(text):
        written = run.group()
        groups = _GROUP_SEPARATORS.split(written)
        joined = "".join(groups)
        if len(joined) > _MAX_GROUPED_DIGITS or not regex.fullmatch(joined):
            continue
        if regex.fullmatch(written) or all(regex.fullmatch(g) for g in groups):
            continue
        if _label_before(text, run.start()) != "card":
            continue
        start, end = run.span()
        if _PHONE_PREFIX.search(text[max(0, start - 8) : start]):
            continue
        if (_GROUPED_NOT_CARD.fullmatch(written) or _DATE.fullmatch(written)
                or _POSTAL.fullmatch(written)):
            continue
        ibans = _IBAN.finditer(text, max(0, start - _NEAR), end + _NEAR)
        if any(m.start() <= start and end <= m.end() for m in ibans):
            continue
        found.append((start, end, joined))
        if len(found) >= MAX_CARD_CANDIDATES:
            break
    return found


def _search(text: str, regex: re.Pattern[str]) -> tuple[list[str], list[str]]:
    """(distinct eligible candidates, distinct card-labelled ones), in order of appearance.

    A card number written in groups counts as its digits joined ("karta 2000 000 123" is
    2000000123), and the groups in it are not numbers of their own."""
    eligible: dict[str, None] = {}
    labelled: dict[str, None] = {}
    grouped = _grouped_cards(text, regex)
    at = 0  # the next grouped card to take; each goes in before the matches after it
    for seen, match in enumerate(regex.finditer(text)):
        if seen >= MAX_CARD_MATCHES:
            break
        while at < len(grouped) and grouped[at][0] <= match.start():
            if grouped[at][1] > match.start():  # this match is one of its groups
                break
            labelled[grouped[at][2]] = None
            eligible[grouped[at][2]] = None
            at += 1
        if at < len(grouped) and grouped[at][0] <= match.start() < grouped[at][1]:
            continue
        value = match.group()
        kind = _label_before(text, match.start())
        if kind == "card":
            labelled[value] = None
        elif kind is not None or _excluded(text, match.start(), match.end(), value):
            continue
        eligible[value] = None
        if len(eligible) >= MAX_CARD_CANDIDATES:
            break
    for _start, _end, value in grouped[at:]:
        if len(eligible) >= MAX_CARD_CANDIDATES:
            break
        labelled[value] = None
        eligible[value] = None
    return list(eligible), list(labelled)


def find_cards(source: ParsedMail | str, *, pattern: str = DEFAULT_CARD_PATTERN) -> CardSearch:
    """Find the patron's card number: unquoted text first, else the quote.

    One distinct labelled number ("nr karty: 0012345") wins; otherwise phone numbers,
    dates, postal codes and the like are set aside and exactly one distinct number must
    remain. Card numbers stay strings: leading zeros matter. ``pattern`` is the library's
    regex for a whole card number; a bad pattern raises ``re.error``.
    """
    if isinstance(source, ParsedMail):
        parts = (source.unquoted, source.quoted)
    else:
        parts = split_quotes(source or "")
    regex = _card_regex(pattern)
    for from_quote, text in enumerate(parts):
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)  # fullwidth digits
        eligible, labelled = _search(text, regex)
        if not eligible:
            continue
        if len(labelled) == 1:
            return CardSearch(tuple(eligible), labelled[0], bool(from_quote))
        card = eligible[0] if len(eligible) == 1 else None
        return CardSearch(tuple(eligible), card, bool(from_quote))
    return CardSearch((), None, False)
