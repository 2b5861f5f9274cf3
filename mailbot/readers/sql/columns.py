"""One row of the `sql` reader source's query, as the ``ReaderFacts`` the rules see.

The query returns at most one row whose columns are named after the fields of
:class:`~mailbot.rules.base.ReaderFacts`:

==================  ==========================================================
column              meaning (missing optional columns: ``NULL``/0)
==================  ==========================================================
``last_name``       required: the surname the mail's name is checked against
``card_number``     optional, defaults to the card asked for
``first_name``      optional
``email``           optional; empty means none
``valid_until``     optional; a date (or datetime, or ISO/``DD.MM.YYYY`` text)
``balance_due``     optional; money owed, >= 0 (numbers, ``"12,50"`` text)
``overdue_items``   optional; the count of overdue loans
``data_updated_on`` optional; when the personal data were last updated
``last_loan_on``    optional; the date of the most recent checkout -- not of a
                    renewal, where the library system tells them apart
``birth_date``      optional; for age limits
``confirmed``       optional; the account was confirmed at the desk: a boolean,
                    1/0 or ``tak``/``nie`` text; ``NULL``: not known. Required
                    where the library requires confirmed accounts
==================  ==========================================================

Typed values (``DATE``, ``DECIMAL``, ``DOUBLE``...) are taken as the driver gives them;
text is read by :mod:`mailbot.values`, so a text that is not surely a date or an amount
(``"1.234"``: 1234 or 1.234?) is an error naming the column. An unknown column is an
error, not ignored, because a typo (``balance`` for ``balance_due``) would silently hand
codes to patrons who owe money.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from mailbot.rules.base import ReaderFacts
from mailbot.values import parse_amount, parse_date, parse_yes_no

__all__ = ["FIELDS", "REQUIRED", "as_amount", "as_count", "as_date", "as_flag",
           "to_reader_facts"]

FIELDS = (
    "card_number", "first_name", "last_name", "email", "valid_until", "balance_due",
    "overdue_items", "data_updated_on", "last_loan_on", "birth_date", "confirmed",
)
REQUIRED = frozenset({"last_name"})

_CENT = Decimal("0.01")


def to_reader_facts(columns: list[str], values: tuple[Any, ...], *, card: str,
                    required: frozenset[str] = REQUIRED) -> ReaderFacts:
    """Build ``ReaderFacts`` from one result row; ``ValueError`` names the bad column.

    ``required``: the columns the query must return (the library's policy may need more
    than the surname: ``confirmed`` where it requires confirmed accounts)."""
    row: dict[str, Any] = {}
    for column, value in zip(columns, values, strict=True):
        key = column.strip().lower()
        if key not in FIELDS:
            raise ValueError(
                f"the query returned the column {column!r}, which is not a reader field; "
                f"name the columns {', '.join(FIELDS)}")
        if key in row:
            raise ValueError(f"the query returned the column {key!r} twice")
        row[key] = value
    missing = (REQUIRED | required) - row.keys()
    if missing:
        raise ValueError(f"the query must return the column(s) {', '.join(sorted(missing))}")

    def field(name: str, convert: Any) -> Any:
        try:
            return convert(row.get(name))
        except (ValueError, TypeError, InvalidOperation, ArithmeticError):
            raise ValueError(f"column {name}: cannot read {row.get(name)!r}") from None

    card_number = _text(row.get("card_number")) or card
    return ReaderFacts(
        card_number=card_number,
        first_name=_text(row.get("first_name")),
        last_name=_text(row.get("last_name")),
        email=_text(row.get("email")) or None,
        valid_until=field("valid_until", as_date),
        balance_due=field("balance_due", as_amount),
        overdue_items=field("overdue_items", as_count),
        data_updated_on=field("data_updated_on", as_date),
        last_loan_on=field("last_loan_on", as_date),
        birth_date=field("birth_date", as_date),
        confirmed=field("confirmed", as_flag),
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip()


def as_date(value: Any) -> date | None:
    """A date from a DATE/DATETIME/TIMESTAMP value or text; empty and zero dates are None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if isinstance(value, str):
        return parse_date(value)
    raise TypeError(f"not a date: {type(value).__name__}")


def as_flag(value: Any) -> bool | None:
    """Yes or no from a BOOLEAN/TINYINT (1/0) or text (``tak``/``nie``); ``None`` is not known."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal)) and value in (0, 1):
        return bool(value)
    if isinstance(value, (str, bytes)):
        return parse_yes_no(_text(value))
    raise ValueError(f"not yes or no: {value!r}")


def as_amount(value: Any) -> Decimal:
    """Money as a Decimal rounded to the cent; ``None`` is 0."""
    if value is None:
        return Decimal("0.00")
    if isinstance(value, bool):
        raise TypeError("not an amount: bool")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite amount")
        amount = Decimal(repr(value))
    elif isinstance(value, (Decimal, int)):
        amount = Decimal(value)
    else:
        amount = parse_amount(_text(value))  # text: "12,50 zł", "1 234,56", ...
    if not amount.is_finite():
        raise ValueError("not a finite amount")
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def as_count(value: Any) -> int:
    """A whole, non-negative number; ``None`` is 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        number = value
    else:
        d = Decimal(value) if isinstance(value, (float, Decimal)) else Decimal(_text(value))
        if not d.is_finite() or d != d.to_integral_value():
            raise ValueError("not a whole number")
        number = int(d)
    if number < 0:
        raise ValueError("negative")
    return number
