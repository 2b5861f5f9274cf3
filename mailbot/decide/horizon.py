"""The arrival horizon: how far a library's requests may be decided, and who waits.

Requests are decided strictly in arrival order (INTERNALDATE) across all mailboxes of a
library, so a request may be decided only once every mailbox of its library has been read
completely past its arrival: an earlier mail still unread there would lose its code to it.

Only a mailbox that is failing (``last_error``, ``down_since``) longer than
``daemon.mailbox_grace`` stops counting: a wrong password on one branch mailbox must not
keep every other branch waiting for ever. Its library is decided without it. Once it takes
our login again (db/mailboxes.record_login_ok clears ``last_error``) it counts again, with
the mark of its last complete poll, until the poll under way has read it: its mail is then
simply waiting requests with earlier arrivals, decided in arrival order among what is
still undecided (README, "A mailbox that is down").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import as_aware, utcnow
from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import MID_POLL, Mailbox, Request, UTCDateTime
from mailbot.db.session import reading
from mailbot.outcomes import RequestState

_NOTHING = datetime.min.replace(tzinfo=UTC)


def grace_ends(down_since: datetime | None, grace: float) -> datetime | None:
    """When a mailbox failing since ``down_since`` stops holding its library (None: it is
    not down, or ``grace`` is 0 and it is waited for however long it is down)."""
    if grace <= 0 or down_since is None:
        return None
    return as_aware(down_since) + timedelta(seconds=grace)


def left_out(down_since: datetime | None, now: datetime, grace: float) -> bool:
    """Whether a mailbox failing since ``down_since`` no longer holds its library: it has
    been down ``grace`` seconds."""
    ends = grace_ends(down_since, grace)
    return ends is not None and ends <= now


def arrival_horizon(session: Session, settings: Settings, library: LibrarySettings, *,
                    now: datetime | None = None) -> datetime | None:
    """Requests arriving before this instant may be decided; None: no limit.

    A request must wait until every mailbox of its library has been read completely past
    its arrival, or an earlier mail still unread — in a slower (or broken) branch mailbox,
    or further along the very poll that is storing it — would lose its code to it.
    INTERNALDATE has whole seconds, so the horizon is the oldest completed poll's start,
    rounded down to the second. A mailbox down longer than the grace is left out (``now``:
    the wall clock, by default; ``down_since`` is one).
    """
    keys = [m.key for m in settings.mailboxes_of(library.id)]
    if not keys:
        return None
    rows = session.execute(select(*_HEALTH).where(Mailbox.key.in_(keys))).all()
    return _limit(rows, len(keys), now or utcnow(), settings.daemon.mailbox_grace)


# What the horizon reads of a mailbox row: (caught_up_to, down_since, last_error).
_HEALTH = (Mailbox.caught_up_to, Mailbox.down_since, Mailbox.last_error)
Health = tuple[datetime | None, datetime | None, str | None]


def _failing(down_since: datetime | None, last_error: str | None) -> datetime | None:
    """Since when the mailbox is failing; None while it works (or reads again after being
    down: it took our login, its poll is under way)."""
    return down_since if last_error is not None else None


def _limit(rows: Iterable[Health], mailboxes: int, now: datetime,
           grace: float) -> datetime | None:
    """The horizon of a library with ``mailboxes`` configured, whose rows have these
    (caught_up_to, down_since, last_error); None when every one of them is left out."""
    rows = list(rows)
    marks = [mark for mark, down, error in rows
             if not left_out(_failing(down, error), now, grace)]
    gone = len(rows) - len(marks)
    if gone and gone == mailboxes:
        return None  # nothing can come in: decide what there is
    return horizon(marks, mailboxes - gone)


def horizon(marks: Collection[datetime | None], mailboxes: int) -> datetime:
    """arrival_horizon of a library with ``mailboxes`` mailboxes (those that count), whose
    rows have these ``caught_up_to`` marks."""
    if any(m is not None and m <= MID_POLL for m in marks):
        return _NOTHING  # a poll is half stored: wait for the rest
    if len(marks) < mailboxes or any(m is None for m in marks):
        return _NOTHING
    return min(m for m in marks if m is not None).replace(microsecond=0)


@dataclass(frozen=True)
class Waiting:
    """Requests waiting to be decided, by library (libraries with none left out), and the
    libraries where some may be decided now (they arrived before the library's horizon),
    each with what it was ready with: (requests waiting, horizon)."""

    by_library: dict[str, int]
    ready: dict[str, tuple[int, datetime | None]]


def waiting(sessions: sessionmaker[Session], settings: Settings, *,
            now: datetime | None = None) -> Waiting:
    """Two queries for every library at once (a consortium has hundreds): which have
    requests waiting, and which of those a decide pass would find something to decide in."""
    now = now or utcnow()
    grace = settings.daemon.mailbox_grace
    keys = {m.key: m.library for m in settings.mailboxes}
    rows: dict[str, list[Health]] = {}
    counts: dict[str, int] = {}
    ready: dict[str, tuple[int, datetime | None]] = {}
    with reading(sessions) as session:
        for key, *health in session.execute(select(Mailbox.key, *_HEALTH)
                                            .where(Mailbox.key.in_(keys))):
            rows.setdefault(keys[key], []).append(tuple(health))  # type: ignore[arg-type]
        for library_id, n, earliest in session.execute(
                select(Request.library_id, func.count(),
                       type_coerce(func.min(Request.received_at), UTCDateTime))
                .where(Request.state == RequestState.NEW).group_by(Request.library_id)):
            counts[library_id] = n
            expected = len(settings.mailboxes_of(library_id))
            limit = _limit(rows.get(library_id, []), expected, now, grace) if expected \
                else None
            if limit is None or earliest < limit:
                ready[library_id] = (n, limit)
    return Waiting(counts, ready)


def waiting_on(session: Session, settings: Settings, *,
               now: datetime | None = None) -> list[str]:
    """Keys of mailboxes whose reading lags behind a request waiting to be decided (a
    mailbox down longer than the grace holds nobody back: it is not among them)."""
    now = now or utcnow()
    grace = settings.daemon.mailbox_grace
    lagging = []
    for library in settings.libraries:
        keys = [m.key for m in settings.mailboxes_of(library.id)]
        if not keys:
            continue
        newest = session.scalar(select(func.max(Request.received_at)).where(
            Request.library_id == library.id, Request.state == RequestState.NEW))
        if newest is None:
            continue
        for key, mark, down, error in session.execute(
                select(Mailbox.key, *_HEALTH).where(Mailbox.key.in_(keys))):
            if left_out(_failing(down, error), now, grace):
                continue
            if mark is None or mark.replace(microsecond=0) <= newest:
                lagging.append(key)
    return lagging


@dataclass
class MailboxHealth:
    """A mailbox as staff see it (the dashboard's queue page, ``mailbot status``): its last
    poll, and when it is failing, why, since when, what that means for its library (waited
    for until ``waits_until``, or decided without it since ``without_since``; neither:
    waited for however long, mailbox_grace = 0) and when its next login is tried."""

    address: str
    last_poll_at: datetime | None
    error: str | None
    down_since: datetime | None = None
    waits_until: datetime | None = None
    without_since: datetime | None = None
    next_login: datetime | None = None
    refused: int = 0  # logins refused in a row

    @property
    def reading_again(self) -> bool:
        """Down until just now: it took our login, its poll is under way."""
        return self.down_since is not None and self.error is None


def mailbox_health(mb: Mailbox, grace: float, now: datetime) -> MailboxHealth:
    down = as_aware(mb.down_since) if mb.down_since is not None else None
    health = MailboxHealth(mb.address, mb.last_poll_at, mb.last_error, down_since=down)
    ends = grace_ends(down, grace) if mb.last_error is not None else None
    if ends is not None and ends <= now:
        health.without_since = ends
    elif ends is not None:
        health.waits_until = ends
    retry = as_aware(mb.login_retry_at) if mb.login_retry_at is not None else None
    if retry is not None and retry > now:
        health.next_login, health.refused = retry, mb.login_failures or 0
    return health
