"""When a mail was written: its Date field as an aware datetime, and which instants a
real mail can carry (``plausible_date``, also asked of IMAP's INTERNALDATE)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from mailbot.intake.mail.headers import collapse

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_RFC5322_DATE = re.compile(
    r"\s*(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s+([+-])(\d{2})(\d{2})(?:\s.*)?"
)


# A date outside these bounds is nonsense (a client's clock, or an attack: year 1 or 9999
# overflow as soon as they are converted to UTC or stored) and counts as no date at all.
# The future bound allows for any time-zone mistake (at most 26 h) plus a skewed clock.
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=2)
_WRITTEN_YEAR = re.compile(r"\d{1,2}\s+[A-Za-z]{3}\s+(\d{3,4})\b")  # "1 Jan 0001"


def plausible_date(when: datetime, *, now: datetime | None = None) -> bool:
    """Whether an aware instant (a Date header, an INTERNALDATE) can be a real mail's:
    from 1990 up to two days after ``now``."""
    now = now or datetime.now(timezone.utc)
    try:
        return EARLIEST_DATE <= when <= now + FUTURE_SLACK
    except (OverflowError, ValueError, TypeError):  # naive, or beyond datetime's range
        return False


def parse_date(value: str | None) -> datetime | None:
    """An aware datetime; "-0000" and zone-less dates are UTC; nonsense is None, and so
    is a date outside ``plausible_date`` (before 1990, or more than two days ahead)."""
    if not value:
        return None
    value = value[:200]
    match = _RFC5322_DATE.fullmatch(value)
    month = _MONTHS.get(match.group(2).lower()) if match else None
    when: datetime | None
    if match and month:  # the usual shape, without the stdlib's slower general parser
        day, _, year, hour, minute, second, sign, tzh, tzm = match.groups()
        offset = int(tzh) * 60 + int(tzm)
        try:
            zone = (
                timezone.utc
                if offset == 0
                else timezone(timedelta(minutes=-offset if sign == "-" else offset))
            )
            when = datetime(
                int(year), month, int(day), int(hour), int(minute), int(second or 0), tzinfo=zone
            )
        except ValueError:
            return None
    else:
        try:
            when = parsedate_to_datetime(collapse(value))
        except Exception:  # noqa: BLE001 - any unparseable date is simply unknown
            return None
        if when is None:
            return None
        written = _WRITTEN_YEAR.search(value)
        if written and int(written.group(1)) != when.year:
            return None  # the stdlib reads "0001" as 2001 (two-digit years): year 1 it is
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    return when if plausible_date(when) else None
