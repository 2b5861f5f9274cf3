"""Engine and session factory; the schema is managed by Alembic (mailbot/db/migrate.py)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as exc_
from sqlalchemy.orm import Session, sessionmaker

from mailbot.db.readonly import READ_ONLY, read_only

# Seconds a SQLite connection waits for another's write lock before giving up.
SQLITE_TIMEOUT = 30.0


def private_sqlite_file(url: str) -> None:
    """Creates the SQLite file of ``url`` readable by its owner only (0600), and takes
    the world's access to an existing one away: it holds patrons' data and the codes.

    SQLite gives the -wal and -shm files it creates the main file's permissions (and,
    made by root, its owner), so they follow (tests/test_paths.py). An in-memory database
    or a ``file:`` URI is left to whoever wrote it."""
    from mailbot.db.files import sqlite_file

    path = sqlite_file(url)
    if path is None:
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            try:
                mode = os.stat(name).st_mode & 0o777
                if mode & 0o007:
                    os.chmod(name, mode & ~0o007)
            except OSError:
                pass  # not there (-wal, -shm), or not ours to change: SQLite will say
        return
    except OSError:
        return  # no such folder and the like: SQLite's own error says it best
    # The umask may have taken bits away, never added any: 0600 or less, as meant.
    os.close(fd)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        # hide_parameters: a failed statement's message must never carry a code.
        engine = create_engine(url, connect_args={"timeout": SQLITE_TIMEOUT},
                               hide_parameters=True, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below): pysqlite's own transaction handling
            # starts transactions late and breaks SAVEPOINT.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL lets `status` read while the bot writes; foreign keys are off by default.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock at the start: two processes on one SQLite file
            # can never both read the same waiting request and both decide it. A reader
            # (read_only) takes no lock: in WAL mode it reads a snapshot while others write.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                try:
                    sqlite_write(conn.connection.driver_connection, "BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:  # as SQLAlchemy raises it elsewhere
                    raise exc_.OperationalError("BEGIN IMMEDIATE", (), exc) from exc

        return engine
    if url.startswith("postgresql") and "application_name" not in make_url(url).query:
        # Which mailbot process a connection belongs to, for whoever looks at
        # pg_stat_activity (several processes share one database in a consortium); a
        # name given in database_url is kept.
        kwargs["connect_args"] = {"application_name": f"mailbot {os.getpid()}",
                                  **kwargs.get("connect_args", {})}
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _pg_settings(dbapi_conn: Any, _record: Any) -> None:
            # psycopg prepares a statement run five times; PostgreSQL then may switch it to
            # a generic plan, and for the batch lookups (a column IN 200 values, on tables
            # that grew during the burst) that plan was ~8x slower than planning each run.
            with dbapi_conn.cursor() as cur:
                cur.execute("SET plan_cache_mode = force_custom_plan")
            dbapi_conn.commit()
            # Replies (~9 KB) are stored compressed; PostgreSQL's default pglz took ~0.3 ms
            # of server CPU a reply, lz4 (PostgreSQL 14+, when built with it) a fifth of
            # that for the same size. Without it, the default stays.
            try:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET default_toast_compression = lz4")
                dbapi_conn.commit()
            except Exception:  # noqa: BLE001 - an older or differently built server
                dbapi_conn.rollback()

    return engine


def sqlite_write(driver: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    """Runs ``sql`` (a statement that needs SQLite's write lock) on the driver's connection,
    asking for the lock again every millisecond while another connection holds it, for at
    most SQLITE_TIMEOUT seconds.

    SQLite's own busy handler sleeps in growing steps (1, 2, 5, 10 … up to 100 ms) before
    it looks again: with intake, deciding and the sender's marks taking the lock in turn
    in a burst, writers slept far longer than the lock was held (a consortium's polls
    waited for it most of the time)."""
    deadline = time.monotonic() + SQLITE_TIMEOUT
    driver.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                return driver.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
    finally:
        # The connection's own wait again, for statements that do not ask for the lock.
        driver.execute(f"PRAGMA busy_timeout = {int(SQLITE_TIMEOUT * 1000)}")


class _ReadingSession(Session):
    """A session that only reads: its transaction ends with COMMIT, not ROLLBACK.

    For a transaction that wrote nothing the two are the same, but psycopg forgets every
    statement it has prepared on the connection at a ROLLBACK (PostgreSQL might have
    dropped what they refer to), so each look at the queue or the outbox in a burst made
    the next batch's statements be parsed anew, and cost a DEALLOCATE ALL. After an
    error, or with ORM changes pending (a mistake in a session that only reads: they are
    never written), the transaction is rolled back as before; a COMMIT that fails (the
    connection gone after the last read) changes nothing for what was read."""

    def __exit__(self, type_: Any, value: Any, traceback: Any) -> None:
        try:
            if type_ is None and self.in_transaction() and \
                    not (self.new or self.dirty or self.deleted):
                self.commit()
        except exc_.DBAPIError:
            pass  # closed (and so rolled back) below
        finally:
            super().__exit__(type_, value, traceback)


def reading(sessions: sessionmaker[Session]) -> Session:
    """A session of ``sessions`` that only reads (db.readonly), for a ``with`` block.
    What it loads stays readable after the block (nothing is expired)."""
    return _ReadingSession(**{**sessions.kw, "bind": read_only(sessions.kw["bind"]),
                              "expire_on_commit": False})


def open_database(url: str, *, create: bool = True) -> sessionmaker[Session]:
    """The session factory; the schema is created or checked (Alembic, see migrate.py).

    ``create=False`` (a command that only reads) refuses, BadInput, where there is no
    SQLite file yet instead of making an empty one; and root is refused another user's
    database (mailbot.db.files)."""
    from mailbot.db.files import check_database_file
    from mailbot.db.migrate import ensure_schema

    check_database_file(url, create=create)
    engine = make_engine(url)
    ensure_schema(engine)
    return sessionmaker(engine, expire_on_commit=False)


def sync_config(sessions: sessionmaker[Session], settings: Any) -> None:
    """Makes the library and mailbox rows match the configuration (names may change).

    Looked at first without the write lock: when they match already, as at nearly every
    start of a command (`status` while the bot works a burst), nothing is written."""
    from sqlalchemy import select

    from mailbot.db.models import Library, Mailbox
    from mailbot.db.mailboxes import mailbox_row

    with reading(sessions) as session:
        names = {key: name for key, name in session.execute(select(Library.id, Library.name))}
        addresses = {key: address for key, address in
                     session.execute(select(Mailbox.key, Mailbox.address))}
    if all(names.get(lib.id) == lib.name for lib in settings.libraries) and \
            all(addresses.get(mb.key) == mb.address for mb in settings.mailboxes):
        return
    with sessions.begin() as session:
        for lib in settings.libraries:
            row = session.get(Library, lib.id)
            if row is None:
                session.add(Library(id=lib.id, name=lib.name))
            else:
                row.name = lib.name
        session.flush()
        for mb in settings.mailboxes:
            mailbox_row(session, mb)
