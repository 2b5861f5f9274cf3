"""The `sql` reader source: ask the library system's own database who a card is.

A library points mailbot at its integrated library system's database with an SQLAlchemy
URL and a query (or a preset, ``"koha"``). The query gets the card as the bound parameter
``:card`` and returns at most one row whose columns are named after the fields of
:class:`~mailbot.rules.base.ReaderFacts`:

==================  ==========================================================
column              meaning (missing optional columns: ``NULL``/0)
==================  ==========================================================
``last_name``       required: the surname the mail's name is checked against
``card_number``     optional, defaults to the card asked for
``first_name``      optional
``email``           optional; empty means none
``valid_until``     optional; a date (or datetime, or ISO/``DD.MM.YYYY`` text)
``balance_due``     optional; money owed, >= 0 (numbers, ``"12,50"`` text)
``overdue_items``   optional; the count of overdue loans
``data_updated_on`` optional; when the personal data were last updated
``last_loan_on``    optional; the date of the most recent loan
``birth_date``      optional; for age limits
==================  ==========================================================

Zero rows: the card does not exist (``None``). Any other trouble -- the server is down or
slow, the login is refused, the query fails, returns two rows or a column nobody knows --
raises :class:`~mailbot.errors.SourceUnavailable`: the patron's request waits, the staff
see why in ``status``, nobody is refused because of it. An unknown column is an error, not
ignored, because a typo (``balance`` for ``balance_due``) would silently hand codes to
patrons who owe money.

The source only reads. Every lookup runs in a read-only transaction where the engine has
them (MariaDB/MySQL ``START TRANSACTION READ ONLY``, PostgreSQL ``SET TRANSACTION READ
ONLY``) and is rolled back, whatever the engine. A database account with nothing but
``SELECT`` on the tables the query reads is still the thing to give mailbot.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from mailbot.config import SqlSourceSettings
from mailbot.errors import ConfigError, SourceUnavailable
from mailbot.rules.base import ReaderFacts

log = logging.getLogger(__name__)

KOHA_QUERY = """\
SELECT
    f.card_number,
    f.first_name,
    f.last_name,
    f.email,
    CASE
        WHEN f.restricted_since IS NOT NULL
            THEN LEAST(COALESCE(f.dateexpiry, f.restricted_since - INTERVAL 1 DAY),
                       f.restricted_since - INTERVAL 1 DAY)
        ELSE f.dateexpiry
    END AS valid_until,
    GREATEST(COALESCE(f.balance, 0), 0) AS balance_due,
    f.overdue_items,
    DATE(f.updated_on) AS data_updated_on,
    DATE(GREATEST(COALESCE(f.current_loan, f.past_loan),
                  COALESCE(f.past_loan, f.current_loan))) AS last_loan_on,
    f.dateofbirth AS birth_date
FROM (
    SELECT
        b.cardnumber AS card_number,
        b.firstname AS first_name,
        b.surname AS last_name,
        NULLIF(TRIM(b.email), '') AS email,
        b.dateexpiry,
        b.dateofbirth,
        b.updated_on,
        (SELECT MIN(DATE(d.created))
           FROM borrower_debarments d
          WHERE d.borrowernumber = b.borrowernumber
            AND (d.expiration IS NULL OR d.expiration >= CURDATE())) AS restricted_since,
        (SELECT SUM(a.amountoutstanding)
           FROM accountlines a
          WHERE a.borrowernumber = b.borrowernumber) AS balance,
        (SELECT COUNT(*)
           FROM issues i
          WHERE i.borrowernumber = b.borrowernumber
            AND i.date_due < NOW()) AS overdue_items,
        (SELECT MAX(i.issuedate)
           FROM issues i
          WHERE i.borrowernumber = b.borrowernumber) AS current_loan,
        (SELECT MAX(o.issuedate)
           FROM old_issues o
          WHERE o.borrowernumber = b.borrowernumber) AS past_loan
    FROM borrowers b
    WHERE b.cardnumber = :card
) AS f"""
"""The preset ``query = "koha"``: Koha's own schema (``kohastructure.sql``), MariaDB/MySQL.

How each field is read from Koha:

- ``card_number``, ``first_name``, ``last_name``, ``email``, ``birth_date``:
  ``borrowers.cardnumber``, ``firstname``, ``surname``, ``email`` (empty is none),
  ``dateofbirth``; the card is found by ``borrowers.cardnumber = :card``.
- ``valid_until``: ``borrowers.dateexpiry`` -- unless the patron has an active restriction
  (a ``borrower_debarments`` row whose ``expiration`` is ``NULL``, i.e. indefinite, or not
  before today), of any type (manual, overdues, suspension, discharge). Koha blocks such a
  patron, so the account counts as not valid since the day before the earliest active
  restriction was placed (``DATE(created) - 1 day``, or ``dateexpiry`` if that is
  earlier; Koha also moves ``created`` when a restriction is edited): the
  ``inactive_account`` rule then refuses, also a request that waited days while the
  source was down (a plain "yesterday" would have let that one through). Expired
  restrictions are ignored. (The legacy column ``borrowers.debarred`` is Koha's cached
  copy of the same rows and is not read.)
- ``balance_due``: Koha's account balance, ``SUM(accountlines.amountoutstanding)`` over
  all the patron's lines -- debits (fines, fees) are positive, unapplied credits negative
  -- and 0 when the patron is in credit.
- ``overdue_items``: current loans (``issues``) whose ``date_due`` is before ``NOW()``.
- ``data_updated_on``: the date of ``borrowers.updated_on``. Koha bumps that timestamp on
  *any* change of the row (staff edits, card renewal, but also OPAC logins when
  ``TrackLastPatronActivity`` is on), so it is lenient. A library that means "the patron
  confirmed their data at the desk" can use a custom query with
  ``COALESCE(b.date_renewed, b.dateenrolled) AS data_updated_on`` instead.
- ``last_loan_on``: the latest ``issuedate`` over current (``issues``) and returned
  (``old_issues``) loans. Patrons whose reading history Koha anonymises (privacy
  "never") lose their ``old_issues``; only their current loans count.

All aggregates are correlated subqueries on Koha's indexed ``borrowernumber`` columns, so
a lookup reads one patron's rows only. Dates are compared with the database's
``CURDATE()``/``NOW()``, in the time zone Koha stores its dates in.
"""

PRESETS: Mapping[str, str] = {"koha": KOHA_QUERY}
# Presets written in one SQL dialect: the backends they run on.
_PRESET_BACKENDS: Mapping[str, frozenset[str]] = {"koha": frozenset({"mysql", "mariadb"})}

FIELDS = (
    "card_number", "first_name", "last_name", "email", "valid_until", "balance_due",
    "overdue_items", "data_updated_on", "last_loan_on", "birth_date",
)
REQUIRED = frozenset({"last_name"})

_CARD_PARAM = re.compile(r"(?<![:\w]):card\b")
_CENT = Decimal("0.01")


class SqlReaders:
    """A reader source backed by an SQL query against the library system's database."""

    name = "sql"

    def __init__(self, settings: SqlSourceSettings) -> None:
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
        self.query, self.preset = _resolve_query(settings.query)
        backend = self._url.get_backend_name()
        if self.preset and backend not in _PRESET_BACKENDS[self.preset]:
            raise ConfigError(
                f"the {self.preset!r} preset is written for "
                f"{' / '.join(sorted(_PRESET_BACKENDS[self.preset]))}, not {backend!r}; "
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
                result = conn.execute(text(self.query), {"card": card})
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
            return to_reader_facts(columns, tuple(rows[0]), card=card)
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


def _resolve_query(query: str) -> tuple[str, str | None]:
    """(SQL, preset name or None) for the ``sql.query`` setting."""
    name = (query or "").strip()
    if name.lower() in PRESETS:
        return PRESETS[name.lower()], name.lower()
    if not _CARD_PARAM.search(name):
        raise ConfigError(
            f"must be a preset ({', '.join(sorted(PRESETS))}) or an SQL query with the "
            "bound parameter :card", column="sql.query")
    return name, None


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


# ---------------------------------------------------------------------- row -> facts


def to_reader_facts(columns: list[str], values: tuple[Any, ...], *, card: str) -> ReaderFacts:
    """Build ``ReaderFacts`` from one result row; ``ValueError`` names the bad column."""
    row: dict[str, Any] = {}
    for column, value in zip(columns, values, strict=True):
        key = column.strip().lower()
        if key not in FIELDS:
            raise ValueError(
                f"the query returned the column {column!r}, which is not a reader field; "
                f"name the columns {', '.join(FIELDS)}")
        if key in row:
            raise ValueError(f"the query returned the column {key!r} twice")
        row[key] = value
    missing = REQUIRED - row.keys()
    if missing:
        raise ValueError(f"the query must return the column(s) {', '.join(sorted(missing))}")

    def field(name: str, convert: Any) -> Any:
        try:
            return convert(row.get(name))
        except (ValueError, TypeError, InvalidOperation, ArithmeticError):
            raise ValueError(f"column {name}: cannot read {row.get(name)!r}") from None

    card_number = _text(row.get("card_number")) or card
    return ReaderFacts(
        card_number=card_number,
        first_name=_text(row.get("first_name")),
        last_name=_text(row.get("last_name")),
        email=_text(row.get("email")) or None,
        valid_until=field("valid_until", as_date),
        balance_due=field("balance_due", as_amount),
        overdue_items=field("overdue_items", as_count),
        data_updated_on=field("data_updated_on", as_date),
        last_loan_on=field("last_loan_on", as_date),
        birth_date=field("birth_date", as_date),
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip()


def as_date(value: Any) -> date | None:
    """A date from a DATE/DATETIME/TIMESTAMP value or text; empty and zero dates are None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if isinstance(value, str):
        s = value.strip()
        if not s or s.startswith("0000-00-00"):  # MySQL's "zero date": no date at all
            return None
        m = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", s)
        if m:
            return date(int(m[3]), int(m[2]), int(m[1]))
        return datetime.fromisoformat(s).date() if len(s) > 10 else date.fromisoformat(s)
    raise TypeError(f"not a date: {type(value).__name__}")


def as_amount(value: Any) -> Decimal:
    """Money as a Decimal rounded to the cent; ``None`` is 0."""
    if value is None:
        return Decimal("0.00")
    if isinstance(value, bool):
        raise TypeError("not an amount: bool")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite amount")
        amount = Decimal(repr(value))
    elif isinstance(value, (Decimal, int)):
        amount = Decimal(value)
    else:
        s = _text(value).replace("\u00a0", "").replace(" ", "").replace(",", ".")
        amount = Decimal(s) if s else Decimal(0)
    if not amount.is_finite():
        raise ValueError("not a finite amount")
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def as_count(value: Any) -> int:
    """A whole, non-negative number; ``None`` is 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        number = value
    else:
        d = Decimal(value) if isinstance(value, (float, Decimal)) else Decimal(_text(value))
        if not d.is_finite() or d != d.to_integral_value():
            raise ValueError("not a whole number")
        number = int(d)
    if number < 0:
        raise ValueError("negative")
    return number
