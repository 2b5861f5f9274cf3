"""Time: always timezone-aware, and the month arithmetic the policy is written in.

The machine's own time zone never matters: every instant is aware, every calendar question
is asked in the library's zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import holidays


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_aware(dt: datetime) -> datetime:
    """Databases such as SQLite hand back naive datetimes; ours are stored in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def parse_month(text: str) -> tuple[int, int]:
    year, _, month = text.partition("-")
    y, m = int(year), int(month)
    if not (1 <= m <= 12 and 2000 <= y <= 2999) or len(text) != 7:
        raise ValueError(text)
    return y, m


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def month_of(instant: datetime, tz: ZoneInfo) -> tuple[int, int]:
    local = as_aware(instant).astimezone(tz)
    return local.year, local.month


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=tz)


def month_start(year: int, month: int, tz: ZoneInfo) -> datetime:
    return local_midnight(date(year, month, 1), tz)


def month_end(year: int, month: int, tz: ZoneInfo) -> datetime:
    """The first instant after the month (exclusive end), DST-correct."""
    return month_start(*next_month(year, month), tz)


def last_day(year: int, month: int) -> date:
    ny, nm = next_month(year, month)
    return date(ny, nm, 1) - timedelta(days=1)


@lru_cache(maxsize=64)
def _polish_holidays(year: int) -> holidays.HolidayBase:
    # Imported on first use: every command imports this module, few need the calendar,
    # and importing it costs ~50 ms of each start (a restarted daemon must store its
    # first mail within a second).
    import holidays

    return holidays.country_holidays("PL", years=year)


def is_working_day(day: date) -> bool:
    """Monday to Friday and not a Polish public holiday."""
    return day.weekday() < 5 and day not in _polish_holidays(day.year)


def first_working_day_from(day: date) -> date:
    while not is_working_day(day):
        day += timedelta(days=1)
    return day
