"""SPEC 2.1: a month's requests count from the window's opening, library time."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from mailbot.clock import next_month
from mailbot.config import LibrarySettings, parse_hhmm
from mailbot.rules.base import Facts, Hit


def window_opens(library: LibrarySettings, tz: ZoneInfo, year: int, month: int) -> datetime:
    """When requests of the given month start to count (aware, DST-correct)."""
    return datetime.combine(date(year, month, library.window_day),
                            parse_hhmm(library.window_time), tzinfo=tz)


def next_window(library: LibrarySettings, tz: ZoneInfo, year: int, month: int) -> datetime:
    return window_opens(library, tz, *next_month(year, month))


class TooEarly:
    name = "too_early"
    description = "Sent before this month's window opened (receipt time or Date header)."

    def check(self, facts: Facts) -> Hit | None:
        opens = window_opens(facts.library, facts.tz, *facts.month)
        if facts.received_at < opens:
            return Hit(self.name, f"received {facts.local_received:%Y-%m-%d %H:%M:%S %Z}, "
                       f"window opens {opens:%Y-%m-%d %H:%M %Z}", {"window_opens": opens})
        if facts.date_header is not None and facts.date_header < opens:
            local = facts.date_header.astimezone(facts.tz)
            return Hit(self.name, f"Date header {local:%Y-%m-%d %H:%M:%S %Z} is before the "
                       f"window opened {opens:%Y-%m-%d %H:%M %Z}", {"window_opens": opens})
        return None
