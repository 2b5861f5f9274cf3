"""Amounts and dates are read one careful way (mailbot/values.py) by every source.

The reader file, the SQL source and the SIP2 source used to read them three ways and
disagreed (``"12,50 zł"`` raised in one, ``"1.234.567"`` was 1234.567 in another); the
``DISAGREED`` cases are those, and each of them is read differently by at least one of
the three old parsers. Now every caller reads them alike, keeping only its own policy.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest

from mailbot.imports.readers import parse_balance_due
from mailbot.readers.sip2.patron import extension_date, fee_amount
from mailbot.readers.sip2.wire import Sip2ProtocolError
from mailbot.readers.sql.columns import as_amount, as_date
from mailbot.values import parse_amount, parse_date

NOT_AN_AMOUNT = "is not an amount"
AMBIGUOUS = "is ambiguous"
NOT_A_DATE = "is not a date"
NOT_A_DAY = "is not a day of the calendar"

# text -> the amount, or the start of the error's reason.
AMOUNTS_DISAGREED: dict[str, str] = {
    "12,50 zł": "12.50",  # the SQL source raised
    "12,50zł": "12.50",
    "zł 12,50": "12.50",
    "PLN 5": "5",  # the SQL source and the reader file raised
    "EUR 5": "5",
    "$3.00": "3.00",
    "1.234.567": "1234567",  # SIP2 read 1234.567
    "1,000,000": "1000000",  # SIP2 read 1000.000
    "1.234,56": "1234.56",  # the SQL source raised
    "1,234.56": "1234.56",
    "1'234.50": "1234.50",
    "(3,00)": "-3.00",  # SIP2 read a debt of 3.00
    "\u22123,00": "-3.00",  # U+2212 MINUS SIGN: SIP2 read a debt of 3.00
    "1.234": AMBIGUOUS,  # 1.23 (SQL) or 1.234 (SIP2, reader file); 1234 meant as often
    "1,234": AMBIGUOUS,
    "12.505": AMBIGUOUS,  # SQL rounded it to 12.51
    "1,2,3": NOT_AN_AMOUNT,  # SIP2 read 12.3
    "1.5.2": NOT_AN_AMOUNT,  # SIP2 read 15.2
    "12.3.4,56": NOT_AN_AMOUNT,  # SIP2 read 1234.56
    "1..2": NOT_AN_AMOUNT,  # SIP2 read 1.2
    "1e3": NOT_AN_AMOUNT,  # SQL read 1000, SIP2 13
    "50 gr": NOT_AN_AMOUNT,  # SIP2 read 50 (groszy are hundredths)
    "12,": NOT_AN_AMOUNT,  # SQL and SIP2 read 12; may be "12,50" cut short
    "5.": NOT_AN_AMOUNT,
    ",5": NOT_AN_AMOUNT,  # SQL and SIP2 read 0.5; the reader file refused it
    "12 50": NOT_AN_AMOUNT,  # all read 1250; may as well be 12.50 with the comma lost
    "12,50 zł.": "12.50",  # SIP2 read 1250; SQL raised
    "12,50 PLN": "12.50",  # the SQL source raised
    "-$3.00": "-3.00",
    "1\u202f234,50": "1234.50",  # narrow no-break space: the SQL source raised
    "1.234 567": NOT_AN_AMOUNT,  # two ways of grouping: SQL read 1.23, SIP2 1.234567
    "(3,00": NOT_AN_AMOUNT,  # SIP2 read 3.00
    "12 zł PLN": NOT_AN_AMOUNT,  # SIP2 read 12
}
AMOUNTS_USUAL: dict[str | None, str] = {
    "12,50": "12.50",
    "12.50": "12.50",
    "12,5": "12.5",
    "7": "7",
    "0,5": "0.5",
    "1 234,56": "1234.56",
    "1\u00a0234,50": "1234.50",  # no-break space, as spreadsheets group thousands
    "1 234 567": "1234567",
    "-3,00": "-3.00",
    "0,125": "0.125",  # after a 0 no thousands can be meant
    "1234.567": "1234.567",  # four digits before: not a thousands group
    "1 234,567": "1234.567",  # grouped by spaces: the comma is the decimal one
    "-0,00": "0.00",
    "": "0",
    "  ": "0",
    None: "0",
    "dużo": NOT_AN_AMOUNT,
    "NaN": NOT_AN_AMOUNT,
    "Infinity": NOT_AN_AMOUNT,
    "12.50-": NOT_AN_AMOUNT,
    "--3": NOT_AN_AMOUNT,
}

# text -> the date (None: no date), or the start of the error's reason.
DATES_DISAGREED: dict[str, date | str | None] = {
    "1.5.2024": date(2024, 5, 1),  # SIP2 ignored it
    "2024-5-1": date(2024, 5, 1),  # the SQL source raised, SIP2 ignored it
    "20240501": date(2024, 5, 1),  # the reader file refused it
    "20240501    120000": date(2024, 5, 1),  # SIP2's timestamp; SQL and the file refused it
    "01.05.2024 13:45": date(2024, 5, 1),  # the SQL source raised
    "01.05.2024, 13:45:10": date(2024, 5, 1),
    "2024-05-01T13:45:00+02:00": date(2024, 5, 1),  # the reader file refused it
    "2024-05-01 13:45:00.123456+02": date(2024, 5, 1),  # PostgreSQL's timestamptz text
    "0000-00-00": None,  # MySQL's zero date; the reader file called it no day
    "0000-00-00 00:00:00": None,
    "20271231T235959Z": date(2027, 12, 31),  # ISO's basic form: the reader file refused it
    "2024-05-01Z": date(2024, 5, 1),  # xs:date with its zone: SQL and the file refused it
    "2024-05-01+02:00": date(2024, 5, 1),
    "2024-05-01-05": NOT_A_DATE,  # SQL and SIP2 read 1 May; a zone without minutes, or a typo
}
DATES_USUAL: dict[str | None, date | str | None] = {
    "2024-05-01": date(2024, 5, 1),
    "01.05.2024": date(2024, 5, 1),
    "2024-05-01 13:45:00": date(2024, 5, 1),
    "2024-05-01T13:45": date(2024, 5, 1),
    " 31.12.2025 ": date(2025, 12, 31),
    "": None,
    None: None,
    "31.02.2025": NOT_A_DAY,
    "20271340": NOT_A_DAY,
    "31-12-2025": NOT_A_DATE,
    "05/01/2025": NOT_A_DATE,  # 1 May or 5 January: slashes only where month-first is known
    "01.05.24": NOT_A_DATE,  # which century is a guess
    "45413": NOT_A_DATE,  # an Excel serial number: a number, not a date
    "wczoraj": NOT_A_DATE,
}


def _check_amount(text: str | None, expected: str) -> None:
    if expected[0].isdigit() or expected[0] == "-":
        assert parse_amount(text) == Decimal(expected)
        assert str(parse_amount(text)) == expected  # exactly as written: no rounding
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(repr(text))} {expected}"):
            parse_amount(text)


@pytest.mark.parametrize(("text", "expected"), AMOUNTS_DISAGREED.items())
def test_amounts_the_sources_read_differently_are_read_one_careful_way(
        text: str, expected: str) -> None:
    # An amount is read as written, or refused when it is not surely one amount.
    _check_amount(text, expected)


@pytest.mark.parametrize(("text", "expected"), AMOUNTS_USUAL.items())
def test_usual_amounts(text: str | None, expected: str) -> None:
    # Decimal comma or point, thousands spaces, a currency, a sign; empty is nothing.
    _check_amount(text, expected)


@pytest.mark.parametrize("text", [*AMOUNTS_DISAGREED, *AMOUNTS_USUAL])
def test_every_source_reads_an_amount_alike_with_its_own_policy(text: str | None) -> None:
    # SQL rounds to the cent, SIP2 calls an unreadable fee garbled, the reader file
    # refuses a negative balance; the number itself is the same for all three.
    try:
        amount = parse_amount(text)
    except ValueError:
        for read in (as_amount, parse_balance_due):
            with pytest.raises(ValueError):
                read(text or "")
        with pytest.raises(Sip2ProtocolError, match="fee amount"):
            fee_amount(text)
        return
    assert as_amount(text) == amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert fee_amount(text) == amount
    if amount >= 0 and not (text or "").startswith(("-", "\u2212", "(")):
        assert parse_balance_due(text or "") == amount
    else:  # also "-0,00": a minus in a balance is a mistake somewhere
        with pytest.raises(ValueError, match="the balance due cannot be negative"):
            parse_balance_due(text or "")


def _check_date(text: str | None, expected: date | str | None) -> None:
    if expected is None or isinstance(expected, date):
        assert parse_date(text) == expected
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(repr(text))} {expected}"):
            parse_date(text)


@pytest.mark.parametrize(("text", "expected"), DATES_DISAGREED.items())
def test_dates_the_sources_read_differently_are_read_one_way(
        text: str, expected: date | None) -> None:
    # ISO, compact and Polish dates, with or without a time; MySQL's zero date is none.
    _check_date(text, expected)


@pytest.mark.parametrize(("text", "expected"), DATES_USUAL.items())
def test_usual_dates(text: str | None, expected: date | str | None) -> None:
    # A date is taken as written; what is not surely one day is refused.
    _check_date(text, expected)


@pytest.mark.parametrize("text", [*DATES_DISAGREED, *DATES_USUAL])
def test_every_source_reads_a_date_alike_with_its_own_policy(text: str | None) -> None:
    # SQL says which column it cannot read; SIP2 ignores an extension it cannot read,
    # and reads slashes month first (Polaris).
    try:
        day = parse_date(text)
    except ValueError:
        with pytest.raises(ValueError):
            as_date(text or "")
    else:
        assert as_date(text or "") == day
    try:
        sip2_day = parse_date(text, month_first=True)
    except ValueError:
        sip2_day = None
    assert extension_date(text) == sip2_day


def test_slash_dates_are_month_first_only_where_the_source_writes_them_so() -> None:
    # Polaris sends MM/DD/YYYY over SIP2; a reader file or a database never had slashes.
    assert parse_date("12/31/2027", month_first=True) == date(2027, 12, 31)
    assert parse_date("05/01/2024 23:59", month_first=True) == date(2024, 5, 1)
    assert extension_date("05/01/2024") == date(2024, 5, 1)
    with pytest.raises(ValueError, match="is not a date"):
        parse_date("05/01/2024")
    with pytest.raises(ValueError, match="is not a day of the calendar"):
        parse_date("31/12/2027", month_first=True)


def test_the_ambiguity_is_explained() -> None:
    # Staff read this next to the row and column: both readings, and how to write one.
    with pytest.raises(ValueError) as caught:
        parse_amount("1.234")
    assert str(caught.value) == (
        "'1.234' is ambiguous: 1234 or 1.234? (write 1234 or 1 234 if thousands are meant)")
