"""The database (reachable, its schema at this mailbot's migrations' head) and each
library's reader source: local (readers imported?), sql (connects and the query runs),
sip2 (connects, logs in, the server answers SC Status). Nothing is written: the schema is
not upgraded here (``mailbot db upgrade`` does that), no SQLite file is created. A SQLite
file not created yet is not a failure on a new installation (``mailbot init``, then
``check``): the first import or run creates it, so its folder must be there and writable."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import Engine, func, make_url, select
from sqlalchemy.exc import SQLAlchemyError

from mailbot.check.items import Failed
from mailbot.config import LibrarySettings
from mailbot.db.files import sqlite_file
from mailbot.db.migrate import current_revision, head_revision
from mailbot.db.models import Reader
from mailbot.db.session import make_engine
from mailbot.errors import BadInput, SourceUnavailable

# The card a sql or sip2 source is asked about: the answer (none, most likely) does not
# matter, only that the source can give one.
PROBE_CARD = "0000000000"


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """mailbot's own database, one engine for every check that reads it."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def missing_file(self) -> Path | None:
        """The SQLite file of the url when it does not exist (yet); else None."""
        path = sqlite_file(self.url)
        return path if path is not None and not path.exists() else None

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                u = make_url(self.url)
                missing = self.missing_file()
                if missing is not None:
                    raise Failed(f"no database file {missing} yet (`mailbot db upgrade` or "
                                 "the first `mailbot run` creates it)")
                kwargs = {}
                if u.get_backend_name() == "postgresql" and u.get_driver_name() in (
                        "psycopg", "psycopg2"):
                    kwargs["connect_args"] = {"connect_timeout": max(2, round(self.timeout))}
                self._engine = make_engine(self.url, **kwargs)
            return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def check_database(db: Database) -> str:
    missing = db.missing_file()
    if missing is not None:
        folder = missing.parent
        if not folder.is_dir():
            raise Failed(f"no database file {missing}, and its folder {folder} does not exist "
                         "(mailbot init makes it; or fix database_url)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise Failed(f"no database file {missing}, and its folder {folder} is not "
                         "writable for this user: the first run could not create it")
        return (f"not created yet: the first import or `mailbot run` creates {missing} "
                f"(its folder is writable)")
    try:
        current = current_revision(db.engine())
    except SQLAlchemyError as exc:
        raise Failed(f"cannot connect: {_reason(exc)}") from None
    head = head_revision()
    if current is None:
        raise Failed(f"no mailbot schema in it (this mailbot needs {head}): `mailbot db "
                     "upgrade` or the first `mailbot run` creates it")
    if current != head:
        raise Failed(f"the schema is at revision {current}, this mailbot needs {head}: run "
                     "`mailbot db upgrade` (with the bot processes stopped)")
    return f"reachable; schema at {head} (the newest)"


def check_reader_source(lib: LibrarySettings, db: Database) -> str:
    if lib.reader_source == "sql":
        return _sql(lib)
    if lib.reader_source == "sip2":
        return _sip2(lib)
    count = 0
    if db.missing_file() is None:  # else: a new installation, nothing imported yet
        try:
            with db.engine().connect() as conn:
                count = conn.scalar(select(func.count()).select_from(Reader)
                                    .where(Reader.library_id == lib.id))
        except SQLAlchemyError as exc:
            raise Failed(f"the database cannot be read: {_reason(exc)}") from None
    if not count:
        raise Failed("no readers imported: `mailbot import-readers FILE --library "
                     f"{lib.id}` (or the dashboard's import page)")
    return f"{count} reader(s) imported"


def _sql(lib: LibrarySettings) -> str:
    from mailbot.readers.sql.source import SqlReaders

    try:
        source = SqlReaders(lib.sql)
    except BadInput as exc:
        raise Failed(str(exc)) from None
    try:
        source.lookup(None, library_id=lib.id, card=PROBE_CARD)
    except SourceUnavailable as exc:
        raise Failed(str(exc)) from None
    finally:
        source.close()
    return f"{source.safe_url} answers; the query ({source.preset or 'custom'}) runs"


def _sip2(lib: LibrarySettings) -> str:
    from mailbot.readers.sip2.client import Sip2Readers

    s = lib.sip2
    try:
        with Sip2Readers(s) as source:
            online = source.ping()
    except SourceUnavailable as exc:
        raise Failed(str(exc)) from None
    where = f"SIP2 server {s.host}:{s.port}" + (" (TLS)" if s.tls else "")
    login = f", logged in as {s.username}" if s.username else ""
    if not online:
        raise Failed(f"{where}{login}: the server says it is offline (SC Status)")
    return f"{where} answers{login}; online"


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {orig}".strip().splitlines()[0][:300]
