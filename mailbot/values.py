"""Reading money amounts and dates from text, the one careful way every source shares.

Reader files (``imports/readers.py``), the library system's database (``readers/sql``) and
its SIP2 server (``readers/sip2``) all hand mailbot amounts and dates as text someone or
something wrote. Each used to read them its own way, and they disagreed: ``"12,50 zł"``
raised in one and was 12.50 in the others, ``"1.234.567"`` was 1234.567 in one and 1234567
in another. Here is the one reading; each caller keeps only its own policy (a reader file
refuses a negative balance, SIP2 counts a credit as 0 and ignores a date it cannot read,
the SQL source rounds to the cent). A text that cannot be read surely raises
``ValueError`` with a sentence saying why (the reader file shows it to staff, with the row
and the column); it never becomes a number somebody did not mean.

Amounts (``parse_amount``): ``"12.50"``, ``"12,50"``, ``"12,50 zł"``, ``"PLN 5"``,
``"$3.00"``, ``"1 234,56"``, ``"1.234,56"``, ``"1,234.56"``, ``"1.234.567"``, ``"-3,00"``,
``"(3,00)"`` (accounting's negative). Empty is 0. The decisions:

- With both ``.`` and ``,`` the last one is the decimal separator and occurs once; the
  other groups thousands. One of them occurring several times groups thousands
  (``"1.234.567"``, ``"1,000,000"``).
- Thousands groups (spaces of any width, apostrophes, or the separator that is not the
  decimal one, one kind per amount) are three digits each after a first group of one to
  three: ``"12 50"`` is refused, not read as 1250 -- it may as well be 12.50 with the comma
  lost.
- One ``.`` or ``,`` before exactly three digits after one to three digits (``"1.234"``,
  ``"1,234"``, ``"12.505"``) is **ambiguous** and refused: it is 1234 where dots or commas
  group thousands (Polish, German, English writing) and 1.234 where they are the decimal
  point (what a program prints). Either reading would be a silently wrong number for the
  writer who meant the other, and a balance decides whether a patron gets a code. Before
  fewer or more than three digits, after a ``0`` or after a grouped number it is the
  decimal separator (``"12,5"``, ``"0,125"``, ``"1234.567"``, ``"1 234,567"``).
- A separator needs digits on both sides (``"12,"`` may be ``"12,50"`` cut short).
- A currency may stand before or after the number: ``zł``, ``zl``, ``PLN``, ``EUR``,
  ``USD``, ``GBP``, ``CHF``, ``$``, ``€``, ``£`` (any case, an abbreviation dot allowed).
  Anything else around the digits is refused: ``"50 gr"`` is 0.50 zł, not 50.
- No exponents (``"1e3"``), no ``NaN``/``Infinity``: no exporter writes money that way.

Dates (``parse_date``): ISO ``YYYY-MM-DD`` (one-digit month and day too), the compact
``YYYYMMDD`` (SIP2's and ISO's basic form) and the Polish ``DD.MM.YYYY`` (``D.M.YYYY``
too), each optionally followed by a time of day and a time zone, which are ignored: the
date is taken as written, not converted (``"2024-05-01T23:30:00-05:00"`` is 1 May). SIP2's
18-character timestamp ``YYYYMMDDZZZZHHMMSS`` counts as a date and a time. MySQL's zero
date ``0000-00-00`` means "no date" and reads as ``None``, like an empty text. Refused:

- ``05/01/2024``: 1 May in the United States, 5 January in Europe. Slashes are read month
  first only when the caller says its source writes them so (``month_first=True``: SIP2,
  where Polaris sends ``MM/DD/YYYY``); a reader file or a database column never had them.
- Two-digit years (``01.05.24``): which century is a guess.
- Excel serial numbers (``45413``): the import reads a date cell as an ISO date already,
  so a bare number in a date column is a number, not a date the file meant.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

__all__ = ["parse_amount", "parse_date", "parse_yes_no"]

# --- amounts -----------------------------------------------------------------------------

_CURRENCY = r"(?:z[łl]|pln|eur|usd|gbp|chf|[$€£])\.?"
_AMOUNT = re.compile(
    rf"""(?P<open>\()?\s*
        (?P<sign>[-\u2212+])?\s*
        (?:(?P<before>{_CURRENCY})\s*)?
        (?P<sign_after_currency>[-\u2212+])?\s*
        (?P<number>\d[\d.,'\s\u00a0\u202f]*)
        \s*(?P<after>{_CURRENCY})?
        \s*(?P<close>\))?""",
    re.VERBOSE | re.IGNORECASE,
)
# Spaces of any width and apostrophes group thousands in hand-typed amounts.
_SPACING = re.compile(r"[\s\u00a0\u202f']")
_NOT_DIGITS = re.compile(r"\D")
# What nearly every cell holds ("0", "12,50", "3.00"): no grouping, no currency, and not
# three decimals, so none of the decisions above applies (a reader file has 200,000).
_PLAIN = re.compile(r"-?\d+(?:[.,](?:\d{1,2}|\d{4,}))?")


def parse_amount(text: str | None) -> Decimal:
    """The amount ``text`` writes, exactly (no rounding); empty (or ``None``) is 0.

    ``ValueError`` when it is not an amount or not surely one amount (see the module)."""
    text = (text or "").strip()
    if not text:
        return Decimal(0)
    if _PLAIN.fullmatch(text):
        amount = Decimal(text.replace(",", "."))
        return amount if amount else abs(amount)
    found = _AMOUNT.fullmatch(text)
    if (found is None or bool(found["open"]) != bool(found["close"])
            or (found["before"] and found["after"])
            or sum(bool(found[g]) for g in ("open", "sign", "sign_after_currency")) > 1):
        raise ValueError(_not_an_amount(text))
    digits = _plain_digits(found["number"].rstrip(), text)
    negative = bool(found["open"]) or (found["sign"] or found["sign_after_currency"] or "+") != "+"
    amount = Decimal(digits)
    return -amount if negative and amount else amount


def _plain_digits(number: str, text: str) -> str:
    """``number`` (digits and separators) as plain ``1234.56``; raises if it is not sure."""
    if not number[-1].isdigit():
        raise ValueError(_not_an_amount(text))
    grouping = {"'" if c == "'" else " " for c in _SPACING.findall(number)}
    dots, commas = number.count("."), number.count(",")
    decimal = ""
    if dots and commas:
        decimal = "." if number.rfind(".") > number.rfind(",") else ","
        if number.count(decimal) > 1:
            raise ValueError(_not_an_amount(text))
        grouping.add("," if decimal == "." else ".")
    elif dots + commas == 1:
        decimal = "." if dots else ","
    elif dots or commas:
        grouping.add("." if dots else ",")
    whole, _, fraction = number.partition(decimal) if decimal else (number, "", "")
    if decimal and not (fraction.isdigit() and whole):
        raise ValueError(_not_an_amount(text))
    if len(grouping) > 1:  # "1.234 567": two ways of grouping in one amount
        raise ValueError(_not_an_amount(text))
    if (decimal and not grouping and len(fraction) == 3 and len(whole) <= 3
            and whole[0] != "0"):
        raise ValueError(_ambiguous(text, whole, fraction))
    if grouping:
        groups = _NOT_DIGITS.split(whole)
        if not (0 < len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
                and len(groups) > 1):
            raise ValueError(_not_an_amount(text))
        whole = "".join(groups)
    elif not whole.isdigit():
        raise ValueError(_not_an_amount(text))
    return f"{whole}.{fraction}" if fraction else whole


def _not_an_amount(text: str) -> str:
    return f"{text!r} is not an amount (expected e.g. 12.50, 12,50 or 1 234,50 zł)"


def _ambiguous(text: str, whole: str, fraction: str) -> str:
    return (f"{text!r} is ambiguous: {whole}{fraction} or {whole}.{fraction}? "
            f"(write {whole}{fraction} or {whole} {fraction} if thousands are meant)")


# --- dates -------------------------------------------------------------------------------

_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?"
# Each form: the pattern, and which of its groups are the year, the month and the day.
_Form = tuple[re.Pattern[str], tuple[int, int, int]]
# XML Schema's xs:date may carry a time zone of its own: "2024-05-01Z".
_ISO: _Form = (re.compile(
    rf"(\d{{4}})-(\d{{1,2}})-(\d{{1,2}})(?:[T ]\s*{_TIME}|Z|[+-]\d{{2}}:\d{{2}})?",
    re.IGNORECASE), (1, 2, 3))
# SIP2's timestamp puts four characters of time zone (blanks: local) before HHMMSS.
_COMPACT: _Form = (re.compile(
    r"(\d{4})(\d{2})(\d{2})(?:[ A-Za-z0-9+-]{4}\d{6}|T\d{4}(?:\d{2})?Z?)?"), (1, 2, 3))
_POLISH: _Form = (re.compile(rf"(\d{{1,2}})\.(\d{{1,2}})\.(\d{{4}})(?:,?\s+{_TIME})?"),
                  (3, 2, 1))
_MONTH_FIRST: _Form = (re.compile(rf"(\d{{1,2}})/(\d{{1,2}})/(\d{{4}})(?:,?\s+{_TIME})?"),
                       (3, 1, 2))


def parse_date(text: str | None, *, month_first: bool = False) -> date | None:
    """The date ``text`` writes; ``None`` for empty or MySQL's zero date.

    ``month_first``: also read ``M/D/YYYY`` (a source known to write US dates).
    ``ValueError`` when it is not a date, or not a day of the calendar."""
    text = (text or "").strip()
    if not text:
        return None
    # The forms differ in their first separator, so at most one can match: try only it.
    if text[4:5] == "-":
        pattern, (y, m, d) = _ISO
    elif "." in text[1:3]:
        pattern, (y, m, d) = _POLISH
    elif month_first and "/" in text[1:3]:
        pattern, (y, m, d) = _MONTH_FIRST
    else:
        pattern, (y, m, d) = _COMPACT
    if found := pattern.fullmatch(text):
        year, month, day = int(found[y]), int(found[m]), int(found[d])
        if year == month == day == 0:
            return None  # "0000-00-00": MySQL's way of storing no date
        try:
            return date(year, month, day)
        except ValueError:
            raise ValueError(f"{text!r} is not a day of the calendar") from None
    raise ValueError(f"{text!r} is not a date (expected YYYY-MM-DD or DD.MM.YYYY)")


# Yes/no as people and library systems write it (``parse_yes_no``): Polish and English
# words, a mark, 1/0. The words of a "confirmed" column are there too ("niepotwierdzone").
_YES = frozenset({"tak", "t", "yes", "y", "true", "1", "x", "✓", "✔", "potwierdzone",
                  "potwierdzony", "potwierdzona", "confirmed"})
_NO = frozenset({"nie", "n", "no", "false", "0", "niepotwierdzone", "niepotwierdzony",
                 "niepotwierdzona", "unconfirmed", "not confirmed"})


def parse_yes_no(text: str | None) -> bool | None:
    """True or False as ``text`` says it (``"tak"``/``"nie"``, ``"yes"``/``"no"``, 1/0 …);
    ``None`` for empty: not known. Anything else is a ``ValueError``, never a guess."""
    word = " ".join((text or "").split()).casefold()
    if not word:
        return None
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise ValueError(f"{text!r} is neither yes nor no (tak/nie)")
