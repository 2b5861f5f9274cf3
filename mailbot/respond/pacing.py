"""Pacing replies to a relay's sending limits: pure arithmetic on send times.

A provider caps how many messages one account may send in a sliding minute, hour or day
(Exchange Online 30 a minute, Gmail 500 or 2,000 a day, …). Given the limits, the times
that account sent at within the last day (the outbox's sent rows with its key, so that the
count holds across restarts and processes) and now, this says how many replies may go now,
when the next may go, and when the n-th waiting one will go out (the ETA that ``mailbot
status`` and the queue page show). No database, no sockets: respond/relays.py reads the
times, respond/outbox.py sends what is allowed.

A window of w seconds with limit L lets a reply go at t when fewer than L replies went in
(t - w, t]; so only the L-th latest send time matters: the next reply may go at that time
plus w.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

DAY = timedelta(days=1)


class HasLimits(Protocol):
    @property
    def max_per_minute(self) -> int | None: ...
    @property
    def max_per_hour(self) -> int | None: ...
    @property
    def max_per_day(self) -> int | None: ...


@dataclass(frozen=True)
class Limits:
    """At most this many replies in any sliding minute, hour and day (None: no limit)."""

    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None

    @classmethod
    def of(cls, relay: HasLimits) -> Limits:
        return cls(relay.max_per_minute, relay.max_per_hour, relay.max_per_day)

    @property
    def windows(self) -> tuple[tuple[timedelta, int], ...]:
        return tuple((span, limit) for span, limit in (
            (timedelta(minutes=1), self.per_minute), (timedelta(hours=1), self.per_hour),
            (DAY, self.per_day)) if limit is not None)

    @property
    def limited(self) -> bool:
        return bool(self.windows)

    @property
    def depth(self) -> int:
        """How many of the latest send times matter (the largest limit); 0 if unlimited."""
        return max((limit for _, limit in self.windows), default=0)


def _recent(limits: Limits, sent: Iterable[datetime], now: datetime) -> list[datetime]:
    """The send times that still count (within the last day), oldest first, at most
    ``depth`` of them. One after ``now`` (written by a process on a host whose clock runs
    ahead) counts as sent now: ignored, it would let the relay exceed its limits."""
    times = sorted(min(t, now) for t in sent if now - DAY < t)
    return times[max(0, len(times) - limits.depth):] if limits.depth else []


def allowance(limits: Limits, sent: Iterable[datetime], now: datetime) -> int | None:
    """How many replies may go now; None when the relay has no limits."""
    if not limits.limited:
        return None
    times = _recent(limits, sent, now)
    return max(0, min(limit - sum(1 for t in times if t > now - span)
                      for span, limit in limits.windows))


def next_slot(limits: Limits, sent: Iterable[datetime], now: datetime) -> datetime:
    """When the next reply may go: ``now`` if one may go now."""
    return _next(limits, _recent(limits, sent, now), now)


def _next(limits: Limits, times: list[datetime], after: datetime) -> datetime:
    slot = after
    for span, limit in limits.windows:
        if len(times) >= limit:
            slot = max(slot, times[-limit] + span)
    return slot


def departures(limits: Limits, sent: Iterable[datetime], now: datetime, n: int, *,
               not_before: datetime | None = None) -> list[datetime]:
    """When each of the next ``n`` replies goes out at the earliest, in order (each sent
    at its slot's opening; the relay's own speed is not counted). ``not_before``: the
    relay is paused until then."""
    times = _recent(limits, sent, now)
    at = max(now, not_before) if not_before is not None else now
    out = []
    for _ in range(n):
        at = _next(limits, times, at)
        times.append(at)
        out.append(at)
    return out


def departure(limits: Limits, sent: Iterable[datetime], now: datetime, n: int, *,
              not_before: datetime | None = None) -> datetime | None:
    """When the ``n``-th waiting reply (1-based) goes out; None when none waits."""
    if n <= 0:
        return None
    start = max(now, not_before) if not_before is not None else now
    if not limits.limited:
        return start
    return departures(limits, sent, now, n, not_before=not_before)[-1]
