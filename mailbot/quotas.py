"""Quotas within a pool (issue 20): how many of a pool's free codes each kind of request
may still take. Pure: counts in, counts out.

A library may keep part of each pool (library × service × month) for the desk
(``desk_share`` of it, rounded down, or ``desk_codes``) and part for first-time patrons
(``first_time_codes``: cards this library never issued a code to), until the month's
release time (``release_day`` at ``release_time``, library time zone); from then on every
free code is for whoever asks first, as without quotas. What is not kept back is the
general part.

Who draws from which part, before the release:

- an e-mail request of a first-time patron: the first-time part, then the general part;
- any other e-mail request: the general part only;
- the desk (and a staff override): the desk part, then the general part — never the
  general codes owed to e-mail requests that arrived earlier and still wait.

Quotas are counts, not codes: the code handed out is always the pool's next one
(mailbot.ledger), a quota only says whether a request may take one. Nothing records which
part a code came from: the parts are worked out from what the ledger says of the pool
(``PoolUse``: codes free, issued, issued by staff, issued by e-mail to first-timers),
every kind counted against its own part first. That is the order the rules above draw
in, so the numbers are the same whoever asks — the next batch, another process, the
queue page, a restart after a crash — and nothing extra has to be written or kept in step.
A part overdrawn (two desks at once, a staff override) shrinks the parts after it, never
below nothing: the three always add up to the codes free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from mailbot.config.checks import parse_hhmm

if TYPE_CHECKING:
    from mailbot.config.quotas import QuotaSettings

Part = Literal["general", "desk", "first_time"]


@dataclass(frozen=True)
class PoolUse:
    """What the ledger says of one pool."""

    free: int  # codes that can still be issued
    issued: int = 0  # codes issued, by any channel
    staff: int = 0  # of those, at the desk or by a staff override
    first_time: int = 0  # of those, by e-mail to a card never issued a code before

    @property
    def size(self) -> int:
        """The pool as the quotas are a share of: codes issued or still to issue (codes
        withdrawn or expired are not part of it)."""
        return self.free + self.issued

    def after(self, *, staff: bool = False, first_time: bool = False) -> PoolUse:
        """The pool once one more code was issued."""
        return replace(self, free=self.free - 1, issued=self.issued + 1,
                       staff=self.staff + staff, first_time=self.first_time + first_time)


@dataclass(frozen=True)
class Parts:
    """What is left of a pool's free codes, part by part (they add up to the free codes),
    and when the kept parts are released (None: at the month's end)."""

    general: int
    desk: int
    first_time: int
    release_at: datetime | None = None

    @property
    def free(self) -> int:
        return self.general + self.desk + self.first_time


def reserved(quotas: QuotaSettings, size: int) -> tuple[int, int]:
    """The codes a pool of ``size`` keeps for the desk and for first-timers (the desk's
    first; together never more than the pool)."""
    if quotas.desk_codes is not None:
        desk = quotas.desk_codes
    else:
        desk = math.floor((quotas.desk_share or 0) * size + 1e-9)
    desk = min(desk, size)
    return desk, min(quotas.first_time_codes, size - desk)


def parts(quotas: QuotaSettings, use: PoolUse, *,
          release_at: datetime | None = None) -> Parts:
    """The pool's free codes, part by part, while the quotas hold."""
    desk_kept, first_kept = reserved(quotas, use.size)
    free = max(use.free, 0)
    desk = min(max(desk_kept - use.staff, 0), free)
    first = min(max(first_kept - use.first_time, 0), free - desk)
    return Parts(general=free - desk - first, desk=desk, first_time=first,
                 release_at=release_at)


def release_at(quotas: QuotaSettings, tz: ZoneInfo, year: int, month: int) -> datetime | None:
    """When the month's kept codes go to everybody (None: never, they expire unissued
    with the month like any other code)."""
    if quotas.release_day is None:
        return None
    at = parse_hhmm(quotas.release_time, "quotas.release_time")
    return datetime(year, month, quotas.release_day, at.hour, at.minute, tzinfo=tz)


def held(quotas: QuotaSettings, tz: ZoneInfo, year: int, month: int, now: datetime) -> bool:
    """Whether the month's quotas still hold at ``now`` (none kept: never)."""
    if not quotas.active:
        return False
    release = release_at(quotas, tz, year, month)
    return release is None or now < release


def email_part(left: Parts, *, first_time: bool) -> Part | None:
    """The part an e-mail request draws from (None: its parts are used up): a first-time
    patron's own part first, then the general part."""
    if first_time and left.first_time > 0:
        return "first_time"
    if left.general > 0:
        return "general"
    return None


def email_left(left: Parts, *, first_time: bool) -> int:
    """How many codes e-mail requests of this kind may still take."""
    return left.general + (left.first_time if first_time else 0)


def desk_part(left: Parts, owed: int) -> Part | None:
    """The part the desk draws from (None: nothing for it): its own part first, then what
    of the general part is not owed to the ``owed`` e-mail requests waiting ahead (all of
    them counted against the general part: whether a waiting mail is a first-timer's is
    known only once it is decided)."""
    if left.desk > 0:
        return "desk"
    if left.general - owed > 0:
        return "general"
    return None
