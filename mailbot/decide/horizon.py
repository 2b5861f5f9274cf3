"""The arrival horizon: how far a library's requests may be decided, and who waits.

Requests are decided strictly in arrival order (INTERNALDATE) across all mailboxes of a
library, so a request may be decided only once every mailbox of its library has been read
completely past its arrival: an earlier mail still unread there would lose its code to it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session, sessionmaker

from mailbot.config import LibrarySettings, Settings
from mailbot.db.models import MID_POLL, Mailbox, Request, UTCDateTime
from mailbot.db.session import reading
from mailbot.outcomes import RequestState


def arrival_horizon(session: Session, settings: Settings,
                    library: LibrarySettings) -> datetime | None:
    """Requests arriving before this instant may be decided; None: no limit.

    A request must wait until every mailbox of its library has been read completely past
    its arrival, or an earlier mail still unread — in a slower (or broken) branch mailbox,
    or further along the very poll that is storing it — would lose its code to it.
    INTERNALDATE has whole seconds, so the horizon is the oldest completed poll's start,
    rounded down to the second.
    """
    keys = [m.key for m in settings.mailboxes_of(library.id)]
    if not keys:
        return None
    marks = session.scalars(select(Mailbox.caught_up_to).where(Mailbox.key.in_(keys))).all()
    return horizon(marks, len(keys))


def horizon(marks: Collection[datetime | None], mailboxes: int) -> datetime:
    """arrival_horizon of a library with ``mailboxes`` mailboxes, whose rows have these
    ``caught_up_to`` marks."""
    if any(m is not None and m <= MID_POLL for m in marks):
        return datetime.min.replace(tzinfo=UTC)  # a poll is half stored: wait for the rest
    if len(marks) < mailboxes or any(m is None for m in marks):
        return datetime.min.replace(tzinfo=UTC)
    return min(m for m in marks if m is not None).replace(microsecond=0)


@dataclass(frozen=True)
class Waiting:
    """Requests waiting to be decided, by library (libraries with none left out), and the
    libraries where some may be decided now (they arrived before the library's horizon),
    each with what it was ready with: (requests waiting, horizon)."""

    by_library: dict[str, int]
    ready: dict[str, tuple[int, datetime | None]]


def waiting(sessions: sessionmaker[Session], settings: Settings) -> Waiting:
    """Two queries for every library at once (a consortium has hundreds): which have
    requests waiting, and which of those a decide pass would find something to decide in."""
    keys = {m.key: m.library for m in settings.mailboxes}
    marks: dict[str, list[datetime | None]] = {}
    counts: dict[str, int] = {}
    ready: dict[str, tuple[int, datetime | None]] = {}
    with reading(sessions) as session:
        for key, mark in session.execute(select(Mailbox.key, Mailbox.caught_up_to)
                                         .where(Mailbox.key.in_(keys))):
            marks.setdefault(keys[key], []).append(mark)
        for library_id, n, earliest in session.execute(
                select(Request.library_id, func.count(),
                       type_coerce(func.min(Request.received_at), UTCDateTime))
                .where(Request.state == RequestState.NEW).group_by(Request.library_id)):
            counts[library_id] = n
            expected = len(settings.mailboxes_of(library_id))
            limit = horizon(marks.get(library_id, []), expected) if expected else None
            if limit is None or earliest < limit:
                ready[library_id] = (n, limit)
    return Waiting(counts, ready)


def waiting_on(session: Session, settings: Settings) -> list[str]:
    """Keys of mailboxes whose reading lags behind a request waiting to be decided."""
    lagging = []
    for library in settings.libraries:
        keys = [m.key for m in settings.mailboxes_of(library.id)]
        if not keys:
            continue
        newest = session.scalar(select(func.max(Request.received_at)).where(
            Request.library_id == library.id, Request.state == RequestState.NEW))
        if newest is None:
            continue
        for key, mark in session.execute(select(Mailbox.key, Mailbox.caught_up_to)
                                         .where(Mailbox.key.in_(keys))):
            if mark is None or mark.replace(microsecond=0) <= newest:
                lagging.append(key)
    return lagging
