"""How a decide batch holds the database: one policy per engine, behind one interface.

SQLite has one write lock for the whole file: a batch is read and decided on a snapshot
without it and written under it (``SnapshotThenCheck``), so the sender's marks and
intake's chunks are not held up for a whole batch; if the snapshot went out of date
meanwhile, the batch is decided again. PostgreSQL locks rows, and the library with an
advisory lock (``LockedLibrary``): the batch is one transaction, as it reads.

Either way a batch is written whole or not at all, and one library's requests are decided
by one process at a time, in arrival order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from mailbot.db.batches import in_chunks
from mailbot.db.models import Code, Request
from mailbot.db.session import reading
from mailbot.decide.writes import BatchWrites
from mailbot.ledger import FREE
from mailbot.outcomes import RequestState

log = logging.getLogger(__name__)


class DecidedBatch(Protocol):
    writes: BatchWrites  # what the decided batch writes


B = TypeVar("B", bound=DecidedBatch)


class Stale(Exception):
    """The batch was decided on a snapshot that went out of date: decide it again."""


class Policy(Protocol):
    # Whether the batch writes itself in the session it is decided in.
    writes_in_place: bool

    def run(self, sessions: sessionmaker[Session], library_id: str,
            decide: Callable[[Session], B | None]) -> B | None:
        """``decide(session)``s the next batch (None: nothing waits) in a transaction of
        this policy's kind and has it written; raises Stale when it must be decided
        again."""
        ...


def policy_for(sessions: sessionmaker[Session]) -> Policy:
    if sessions.kw["bind"].dialect.name == "sqlite":
        return SnapshotThenCheck()
    return LockedLibrary()


class SnapshotThenCheck:
    writes_in_place = False

    def run(self, sessions: sessionmaker[Session], library_id: str,
            decide: Callable[[Session], B | None]) -> B | None:
        with reading(sessions) as session:
            found = decide(session)
        if found is not None:
            with sessions.begin() as session:
                if not write_checked(session, found.writes, library_id):
                    raise Stale
        return found


class LockedLibrary:
    writes_in_place = True

    def run(self, sessions: sessionmaker[Session], library_id: str,
            decide: Callable[[Session], B | None]) -> B | None:
        with sessions.begin() as session:
            lock_library(session, library_id)
            return decide(session)


def write_checked(session: Session, batch: BatchWrites, library_id: str) -> bool:
    """Writes a batch decided on a snapshot (SQLite), in ``session``, which holds the write
    lock; False, writing nothing, if the snapshot is out of date.

    Between the snapshot and the lock another process may have decided the same requests
    (every decider takes the earliest waiting ones, so a race always overlaps) or staff may
    have set a request aside or withdrawn a code: then a request is no longer waiting or a
    code no longer free, and the batch is decided again from a new snapshot. Anything else
    written meanwhile — mail stored, replies sent, readers or codes imported — leaves the
    batch what it would have been a moment earlier."""
    if not still_valid(session, batch):
        log.info("library %s: requests or codes changed while a batch was decided; "
                 "deciding it again", library_id)
        return False
    batch.write(session)
    return True


def still_valid(session: Session, batch: BatchWrites) -> bool:
    """Whether, in ``session``, the requests ``batch`` decided all still wait and the codes
    it took are all still free."""
    for chunk in in_chunks(batch.request_ids):
        if session.scalar(select(func.count(Request.id)).where(
                Request.id.in_(chunk), Request.state == RequestState.NEW)) != len(chunk):
            return False
    for chunk in in_chunks(batch.code_ids):
        if session.scalar(select(func.count(Code.id)).where(
                Code.id.in_(chunk), *FREE)) != len(chunk):
            return False
    return True


def lock_library(session: Session, library_id: str) -> None:
    """One decision at a time per library, across every process on the database.

    PostgreSQL: a transaction-scoped advisory lock (released at commit, or when a killed
    process's connection goes); the next request is chosen only after it is held, so
    arrival order is strict however many bot processes run. SQLite: every transaction
    begins IMMEDIATE, which already serialises writers.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"mailbot.decide:{library_id}"})
