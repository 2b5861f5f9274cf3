"""``SqlReaders``: the `sql` reader source -- ask the library system's own database who a card is.

A library points mailbot at its integrated library system's database with an SQLAlchemy
URL and a query (or a preset, ``"koha"``: see ``presets``). The query gets the card as the
bound parameter ``:card`` and returns at most one row, read by ``columns``.

Zero rows: the card does not exist (``None``). Any other trouble -- the server is down or
slow, the login is refused, the query fails, returns two rows or a column nobody knows --
raises :class:`~mailbot.errors.SourceUnavailable`: the patron's request waits, the staff
see why in ``status``, nobody is refused because of it.

The source only reads. Every lookup runs in a read-only transaction where the engine has
them (MariaDB/MySQL ``START TRANSACTION READ ONLY``, PostgreSQL ``SET TRANSACTION READ
ONLY``) and is rolled back, whatever the engine. A database account with nothing but
``SELECT`` on the tables the query reads is still the thing to give mailbot. Connecting,
reading and the statement itself are bounded by ``sql.timeout`` on both sides (driver
options, and a server-side statement limit).
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from mailbot.config import SqlSourceSettings
from mailbot.errors import ConfigError, SourceUnavailable
from mailbot.readers.sql.columns import to_reader_facts
from mailbot.readers.sql.presets import PRESET_BACKENDS, resolve_query
from mailbot.rules.base import ReaderFacts

__all__ = ["SqlReaders"]

log = logging.getLogger(__name__)


class SqlReaders:
    """A reader source backed by an SQL query against the library system's database."""

    name = "sql"

    def __init__(self, settings: SqlSourceSettings, *,
                 required: frozenset[str] = frozenset()) -> None:
        if not settings.url:
            raise ConfigError("is required for reader_source = \"sql\"", column="sql.url")
        try:
            self._url: URL = make_url(settings.url)
        except ArgumentError:
            # The message would echo the URL, password and all.
            raise ConfigError("is not an SQLAlchemy database URL", column="sql.url") from None
        if settings.timeout <= 0:
            raise ConfigError("must be a positive number of seconds", column="sql.timeout")
        self.timeout = float(settings.timeout)
        self.query, self.preset = resolve_query(settings.query)
        # Columns the library's policy needs the query to return (``columns``).
        self.required = frozenset(required)
        # The preset's parameters besides the card (a custom query gets only :card).
        self.params: dict[str, str] = {}
        if self.preset == "koha":
            self.params["unconfirmed_categories"] = ",".join(settings.unconfirmed_categories)
        backend = self._url.get_backend_name()
        if self.preset and backend not in PRESET_BACKENDS[self.preset]:
            raise ConfigError(
                f"the {self.preset!r} preset is written for "
                f"{' / '.join(sorted(PRESET_BACKENDS[self.preset]))}, not {backend!r}; "
                "give your own query", column="sql.query")
        self.safe_url = self._url.render_as_string(hide_password=True)
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SqlReaders {self.safe_url} query={self.preset or 'custom'}>"

    def lookup(self, session: Session | None, *, library_id: str, card: str) -> ReaderFacts | None:
        """The reader with this card, ``None`` if there is none; ``SourceUnavailable`` else.

        ``session`` (mailbot's own database) is not used: the answer comes from the
        library's database.
        """
        try:
            engine = self._get_engine()
            with engine.connect() as conn:
                self._begin_read_only(conn)
                result = conn.execute(text(self.query), {"card": card, **self.params})
                if not result.returns_rows:
                    raise SourceUnavailable(self._msg("the query returned no rows at all; "
                                                      "it must be a SELECT"))
                columns = [str(key) for key in result.keys()]
                rows = result.fetchmany(2)
        except SourceUnavailable:
            raise
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise SourceUnavailable(self._msg(self._describe(exc))) from exc
        if not rows:
            return None
        if len(rows) > 1:
            raise SourceUnavailable(self._msg(
                f"the query returned more than one row for card {card!r}; "
                "it must return exactly one row per card (or none)"))
        try:
            return to_reader_facts(columns, tuple(rows[0]), card=card,
                                   required=self.required)
        except ValueError as exc:
            raise SourceUnavailable(self._msg(str(exc))) from None

    def close(self) -> None:
        """Close the pooled connections (the engine is made again on the next lookup)."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    # ------------------------------------------------------------------ internals

    def _msg(self, reason: str) -> str:
        return f"sql reader source {self.safe_url}: {reason}"

    def _describe(self, exc: BaseException) -> str:
        # The DBAPI's own message says what happened, without SQLAlchemy's echo of the
        # statement; the password is scrubbed in case a driver ever repeats it.
        orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        reason = f"{type(orig).__name__}: {orig}".strip()
        if isinstance(exc, ImportError):
            reason = f"the database driver is not installed ({exc})"
        password = self._url.password
        if password:
            reason = reason.replace(str(password), "***")
        return reason

    def _get_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
                log.debug("sql reader source: engine for %s", self.safe_url)
            return self._engine

    def _create_engine(self) -> Engine:
        backend, driver = self._url.get_backend_name(), self._url.get_driver_name()
        given = set(self._url.query)
        connect_args = {k: v for k, v in _connect_args(backend, driver, self.timeout).items()
                        if k not in given}
        engine = create_engine(
            self._url,
            pool_pre_ping=True,
            pool_recycle=3600,
            pool_timeout=self.timeout,
            connect_args=connect_args,
        )
        if backend in ("mysql", "mariadb"):
            event.listen(engine, "connect", self._on_mysql_connect)
        return engine

    def _on_mysql_connect(self, dbapi_connection: Any, _record: Any) -> None:
        # Session defaults for every pooled connection: read-only transactions, and a
        # server-side limit so a runaway lookup stops on the server too (slightly after
        # the client gave up on it).
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
            limit = self.timeout + 1
            if "mariadb" in version.lower():
                cursor.execute(f"SET SESSION max_statement_time = {limit:.3f}")
            else:  # MySQL 5.7.8+: SELECT statements only, in milliseconds
                cursor.execute(f"SET SESSION max_execution_time = {math.ceil(limit * 1000)}")
        finally:
            cursor.close()

    def _begin_read_only(self, conn: Connection) -> None:
        backend = conn.dialect.name
        if backend in ("mysql", "mariadb"):
            conn.exec_driver_sql("START TRANSACTION READ ONLY")
        elif backend == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            # SET LOCAL, not a startup option: it also works behind pgbouncer.
            conn.exec_driver_sql(
                f"SET LOCAL statement_timeout = {math.ceil(self.timeout * 1000)}")
        # Other engines: no read-only mode asked for; the lookup is rolled back anyway.


def _connect_args(backend: str, driver: str, timeout: float) -> dict[str, Any]:
    """Driver options so that neither connecting nor reading can hang for ever."""
    seconds = max(1, math.ceil(timeout))
    if backend in ("mysql", "mariadb"):
        if driver == "pymysql":
            return {"connect_timeout": timeout, "read_timeout": timeout,
                    "write_timeout": timeout, "charset": "utf8mb4"}
        if driver in ("mysqldb", "mariadbconnector"):
            return {"connect_timeout": seconds, "read_timeout": seconds,
                    "write_timeout": seconds}
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        return {"connect_timeout": max(2, seconds)}  # libpq rounds anything below 2 up
    if backend == "postgresql" and driver == "pg8000":
        return {"timeout": timeout}
    return {}
