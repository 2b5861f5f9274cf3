"""SPEC 2.1 and 2.9: when a month's requests start to count, and when replies may go out."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from mailbot.clock import first_working_day_from, is_working_day, next_month
from mailbot.config import LibrarySettings, parse_hhmm, parse_window
from mailbot.rules.base import Facts, Hit


def window_opens(library: LibrarySettings, tz: ZoneInfo, year: int, month: int) -> datetime:
    """When requests of the given month start to count (aware, DST-correct)."""
    return _window_opens(library.window_day, library.window_working_day, library.window_time,
                         tz, year, month)


@lru_cache(maxsize=512)
def _window_opens(window_day: int, working_day: bool, at: str, tz: ZoneInfo, year: int,
                  month: int) -> datetime:
    # Asked several times for every request decided (the rule, the reply's context),
    # always about the same month or two: the holiday calendar is consulted once.
    day = date(year, month, window_day)
    if working_day:
        day = first_working_day_from(day)
    return datetime.combine(day, parse_hhmm(at), tzinfo=tz)


def next_window(library: LibrarySettings, tz: ZoneInfo, year: int, month: int) -> datetime:
    return window_opens(library, tz, *next_month(year, month))


def next_send_time(library: LibrarySettings, tz: ZoneInfo, now: datetime) -> datetime:
    """The earliest instant from ``now`` inside the library's send window."""
    if not library.send_window:
        return now
    start, end = parse_window(library.send_window)
    day = now.astimezone(tz).date()
    for _ in range(40):  # long enough for any run of holidays
        if not library.send_working_days_only or is_working_day(day):
            opens = datetime.combine(day, start, tzinfo=tz)
            closes = datetime.combine(day, end, tzinfo=tz)
            if now < opens:
                return opens
            if now < closes:
                return now
        day += timedelta(days=1)
    return now


class TooEarly:
    name = "too_early"
    description = "Sent before this month's window opened (receipt time or Date header)."

    def check(self, facts: Facts) -> Hit | None:
        opens = window_opens(facts.library, facts.tz, *facts.month)
        if facts.received_at < opens:
            # Instants as ISO strings with their offset: the dashboard shows them in the
            # library's zone, labelled (mailbot.web.notes).
            return Hit(self.name, "too_early", {"window_opens": opens},
                       args={"received_at": facts.received_at.isoformat(),
                             "opens_at": opens.isoformat()})
        if facts.date_header is not None and facts.date_header < opens:
            return Hit(self.name, "too_early_date_header", {"window_opens": opens},
                       args={"date_at": facts.date_header.isoformat(),
                             "opens_at": opens.isoformat()})
        return None
