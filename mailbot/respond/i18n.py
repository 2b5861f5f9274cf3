"""Language-aware formatters for patron replies, used as Jinja filters.

Pure functions: no locale module, no global state, so output never depends on the
machine's locale settings. Polish needs the genitive month name in a date ("1 grudnia
2026") and the nominative one for a month on its own ("listopad 2026"); both are here.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from mailbot.services import SHIPPED_CATALOGUE, Catalogue

__all__ = [
    "LANGUAGES",
    "format_date",
    "format_datetime",
    "format_money",
    "format_month",
    "plural",
    "service_key",
    "service_name",
]

LANGUAGES: tuple[str, ...] = ("pl", "en")

_PL_MONTHS_GENITIVE = (
    "stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca",
    "lipca", "sierpnia", "września", "października", "listopada", "grudnia",
)  # fmt: skip
_PL_MONTHS_NOMINATIVE = (
    "styczeń", "luty", "marzec", "kwiecień", "maj", "czerwiec",
    "lipiec", "sierpień", "wrzesień", "październik", "listopad", "grudzień",
)  # fmt: skip
_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip



def _check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}; expected one of {LANGUAGES}")
    return lang


def format_date(d: date, lang: str) -> str:
    """``1 grudnia 2026`` / ``1 December 2026`` (a datetime is formatted by its date part)."""
    _check_lang(lang)
    if lang == "pl":
        return f"{d.day} {_PL_MONTHS_GENITIVE[d.month - 1]} {d.year}"
    return f"{d.day} {_EN_MONTHS[d.month - 1]} {d.year}"


def format_datetime(dt: datetime, lang: str) -> str:
    """``1 grudnia 2026, godz. 00:00`` / ``1 December 2026, 00:00``.

    Rendered in the datetime's own time zone, never converted: the caller passes it in
    library time. A naive datetime is refused because its wall time would be a guess.
    """
    _check_lang(lang)
    if not isinstance(dt, datetime):
        raise TypeError(f"format_datetime needs a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"format_datetime needs an aware datetime, got naive {dt!r}")
    day = format_date(dt, lang)
    if lang == "pl":
        return f"{day}, godz. {dt:%H:%M}"
    return f"{day}, {dt:%H:%M}"


def format_month(*args: object, lang: str | None = None) -> str:
    """``listopad 2026`` / ``November 2026`` (Polish nominative).

    Call as ``format_month(year, month, lang)`` or ``format_month(d, lang)`` with a date;
    ``lang`` may also be given by keyword.
    """
    first = args[0] if args else None
    second = args[1] if len(args) > 1 else None
    if isinstance(first, date):
        year, month, rest = first.year, first.month, args[1:]
    elif isinstance(first, int) and isinstance(second, int):
        year, month, rest = first, second, args[2:]
    else:
        raise TypeError("format_month(year, month, lang) or format_month(date, lang)")
    if rest:
        if lang is not None or len(rest) > 1 or not isinstance(rest[0], str):
            raise TypeError("format_month: expected one language code after the month")
        lang = rest[0]
    if lang is None:
        raise TypeError("format_month: lang is required")
    _check_lang(lang)
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    names = _PL_MONTHS_NOMINATIVE if lang == "pl" else _EN_MONTHS
    return f"{names[month - 1]} {year}"


def _group(digits: str, sep: str, min_len: int) -> str:
    if len(digits) < min_len:
        return digits
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return sep.join(parts)


def format_money(amount: Decimal | int | float | str, lang: str) -> str:
    """``12,50 zł`` / ``PLN 12.50``, rounded half-up to grosze.

    Polish groups thousands with a space only from five digits on ("1234,50 zł",
    "12 345,00 zł"), as Polish typesetting rules recommend.
    """
    _check_lang(lang)
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    whole, _, cents = f"{abs(value):f}".partition(".")
    if lang == "pl":
        return f"{sign}{_group(whole, ' ', 5)},{cents} zł"
    return f"{sign}PLN {_group(whole, ',', 4)}.{cents}"


def plural(n: int, *forms: str, lang: str) -> str:
    """Pick the noun form for ``n``: Polish takes (one, few, many), English (one, other).

    ``plural(3, "miesiąc", "miesiące", "miesięcy", lang="pl")`` -> ``"miesiące"``;
    ``plural(5, ...)`` -> ``"miesięcy"``; 12-14 take "many", 22-24 take "few".
    """
    _check_lang(lang)
    n = abs(int(n))
    if lang == "pl":
        if len(forms) != 3:
            raise TypeError("Polish plural needs three forms: one, few, many")
        one, few, many = forms
        if n == 1:
            return one
        if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
            return few
        return many
    if len(forms) != 2:
        raise TypeError("English plural needs two forms: one, other")
    return forms[0] if n == 1 else forms[1]


def service_name(service: str, catalogue: Catalogue = SHIPPED_CATALOGUE) -> str:
    """``legimi`` -> ``Legimi``, ``empik_go`` -> ``Empik Go``, a configured service's id
    -> its name in ``catalogue`` (the config's: Settings.catalogue); an unknown key is
    title-cased."""
    key = service_key(service)
    return catalogue.name(key) or key.replace("_", " ").title()


def service_key(service: str) -> str:
    """The service key for a key or display name: ``Empik Go`` / ``empik-go`` -> ``empik_go``."""
    key = "_".join(service.strip().lower().replace("-", " ").replace("_", " ").split())
    if key == "empikgo":
        return "empik_go"
    return key
