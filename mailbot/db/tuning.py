"""PostgreSQL session settings that a burst's speed depends on, in one place.

Every connection starts as make_engine sets it (db/session.py): ``plan_cache_mode =
force_custom_plan``, because the decide batch's lookups (a column IN 200 values, on tables
that grow during the burst) ran ~8x slower on the generic plan PostgreSQL switches to after
five runs. Two kinds of work want otherwise, and say so here by what they are about to do:

``many_writes(session)``
    the rest of a decide batch's transaction is many single-row writes of one shape
    (executemany): ``SET LOCAL plan_cache_mode = auto`` lets them keep a generic plan.
    200 updates by key: ~20 → ~14 ms of the server's time per batch.
``many_marks(conn)``
    an autocommitted connection is about to write one small mark per reply (the sender's
    sent-marks): ``plan_cache_mode = auto`` (10,000 marks by primary key: server CPU
    1.57 → 1.22 s) and ``synchronous_commit = off`` (no waiting ~1 ms per reply for the
    WAL flush, under the hand-over lock). Both are set back when it is done, before the
    connection returns to the pool.

Figures from docs/performance.md. Nothing here changes what is written, only how
PostgreSQL plans and flushes it; on other databases these do nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

_PLANS_KEPT_IN_TRANSACTION = text("SET LOCAL plan_cache_mode = auto")


def many_writes(session: Session) -> None:
    """Tells PostgreSQL that the rest of ``session``'s transaction is many single-row
    writes of one shape (a decide batch's updates of its requests and codes; its inserts
    go by COPY, see db.batches.insert_rows): they may use a generic plan once prepared.
    Only until the transaction ends; nothing elsewhere."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_PLANS_KEPT_IN_TRANSACTION)


@contextmanager
def many_marks(conn: Connection) -> Iterator[None]:
    """For the duration, ``conn`` (autocommit) writes one small mark per reply, each found
    by primary key: it keeps generic plans and does not wait for each commit's WAL flush.
    Both settings are restored afterwards (on a connection that is still there)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    with _unflushed_commits(conn), _kept_plans(conn):
        yield


@contextmanager
def _unflushed_commits(conn: Connection) -> Iterator[None]:
    # The marks do not wait for their WAL record to reach the disk (~1 ms each here, one
    # per reply). A mark is still committed, seen by every other process and kept when
    # this process is killed; only a crash of the database server itself could lose the
    # last fraction of a second of marks, and those replies would be sent again, the same
    # messages — the bargain SQLite's synchronous=NORMAL already makes
    # (docs/reliability.md).
    try:
        conn.execute(text("SET synchronous_commit = off"))
        yield
    finally:
        _set_back(conn, "RESET synchronous_commit")


@contextmanager
def _kept_plans(conn: Connection) -> Iterator[None]:
    # By primary key or a list of ids, the plan PostgreSQL keeps after a few runs is as
    # good as a fresh one, and planning each of 10,000 marks cost ~0.35 s of server CPU.
    before = conn.scalar(text("SHOW plan_cache_mode"))
    try:
        conn.execute(text("SET plan_cache_mode = auto"))
        yield
    finally:
        _set_back(conn, f"SET plan_cache_mode = {before}")  # as it was


def _set_back(conn: Connection, statement: str) -> None:
    if conn.invalidated:
        return  # the connection is gone, and its settings with it
    try:
        conn.execute(text(statement))
    except DBAPIError:
        pass  # likewise
