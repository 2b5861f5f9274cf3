"""Many keys or rows in SQL: ``column IN (...)`` a few hundred values at a time, and many
rows inserted at once (by COPY on PostgreSQL).

How PostgreSQL plans a batch's single-row writes is db/tuning.py's (many_writes)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Column, Dialect, Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

T = TypeVar("T")

# SQL parameters per IN list: far below SQLite's (32,766) and PostgreSQL's limits.
IN_CHUNK = 500


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def in_chunks(values: Iterable[T]) -> Iterator[list[T]]:
    """The distinct ``values``, sorted, in lists of at most IN_CHUNK (one IN list each)."""
    return chunks(sorted(set(values)), IN_CHUNK)  # type: ignore[type-var]


# COPY … (FORMAT BINARY) sends each value in its type's binary form: the column types a
# batch insert may carry, as PostgreSQL names them (a VARCHAR value is sent as text, whose
# binary form is the same). Any other type: plain inserts.
_COPY_TYPES = {"INTEGER": "int4", "BIGINT": "int8", "SMALLINT": "int2", "VARCHAR": "text",
               "TEXT": "text", "JSON": "json", "BYTEA": "bytea", "BOOLEAN": "bool",
               "TIMESTAMP WITH TIME ZONE": "timestamptz", "DATE": "date", "NUMERIC": "numeric"}


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Inserts ``rows`` (dicts with the same keys) into ``table`` in ``session``'s
    transaction, with the columns' Python defaults where a row has no value.

    On PostgreSQL with ``COPY … FROM STDIN (FORMAT BINARY)``: a decide batch's 200 replies
    cost the server ~20 ms and us ~2 ms of CPU this way, ~40 and ~8 ms as 200 single-row
    inserts (SQLAlchemy's executemany, which is what every other database gets). The
    values go through the columns' own bind processing, as they would there.
    """
    if not rows:
        return
    keys = rows[0].keys()
    if any(row.keys() != keys for row in rows):
        # executemany would take the first row's keys and drop the others' extra values
        raise ValueError(f"rows for {table.name} differ in their keys")
    dialect = session.get_bind().dialect
    plan = _copy_plan(table, list(rows[0]), dialect) if dialect.name == "postgresql" \
        else None
    if plan is None:
        session.execute(insert(table), rows)
        return
    names, types, values = plan
    driver = session.connection().connection.driver_connection
    assert driver is not None
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row([value(row) for value in values])
    except dbapi_error as exc:
        # As SQLAlchemy raises it for an INSERT: callers tell a database that is busy or
        # gone (OperationalError: nothing is anyone's fault) from a refused row
        # (IntegrityError and the like), and the values stay out of the message.
        raise DBAPIError.instance(sql, None, exc, dbapi_error, hide_parameters=True,
                                  dialect=dialect) from exc


def _copy_plan(table: Table, keys: list[str], dialect: Dialect
               ) -> tuple[list[str], list[str], list[Any]] | None:
    """The columns COPY sends (the rows' own and those with a Python default), their
    PostgreSQL types and how to get each value from a row; None if a type is not one
    _COPY_TYPES knows."""
    names: list[str] = []
    types: list[str] = []
    values: list[Any] = []
    for column in table.columns:
        if column.key not in keys and (column.default is None or column.default.is_sequence
                                       or column.default.is_clause_element):
            continue  # the server's default (an id from its sequence) or NULL
        name = re.sub(r"\(.*\)", "", column.type.compile(dialect=dialect)).strip()
        if name not in _COPY_TYPES:
            return None
        names.append(column.name)
        types.append(_COPY_TYPES[name])
        values.append(_value_of(column, column.key in keys, dialect))
    return names, types, values


def _value_of(column: Column[Any], given: bool, dialect: Dialect) -> Any:
    # The dialect's own processing of the type (UTCDateTime's conversion to UTC, JSON
    # wrapped for psycopg's dumper), exactly what an INSERT's parameters get.
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    key = column.key
    if given:
        if process is None:
            return lambda row: row[key]
        return lambda row: process(row[key])
    default = column.default
    assert default is not None
    if default.is_callable:
        make = default.arg  # type: ignore[attr-defined]
        return (lambda row: make(None)) if process is None \
            else (lambda row: process(make(None)))
    fixed = process(default.arg) if process else default.arg  # type: ignore[attr-defined]
    return lambda row: fixed
