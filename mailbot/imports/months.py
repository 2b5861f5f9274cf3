"""Which month a code import is for, when staff do not say (pure).

Libraries buy next month's codes in the last days of this one; a form that offered the
current month put them there ("dodano 12 kodów (legimi, 2026-12)" on the 28th, for codes
meant for January), where they would be handed out at once to this month's latecomers.
From the ``NEXT_MONTH_FROM_DAY``-th of a month on (library time), the next month is
offered instead.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from mailbot.clock import as_aware, month_key, next_month

NEXT_MONTH_FROM_DAY = 20


def default_import_month(now: datetime, tz: ZoneInfo) -> str:
    """``YYYY-MM``: this month before the 20th (library time), the next one from it on."""
    local = as_aware(now).astimezone(tz)
    if local.day >= NEXT_MONTH_FROM_DAY:
        return month_key(*next_month(local.year, local.month))
    return month_key(local.year, local.month)
