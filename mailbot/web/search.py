"""Text search in SQL for the dashboard's lists: what staff type, matched the same way on
SQLite and PostgreSQL.

A name is found whatever its case and Polish letters ("lada" finds "Łada", "ŁADA" finds
"łada"): both sides are lowered and their accented letters made plain. PostgreSQL does it
with ``lower`` and ``translate`` (which maps both cases of each letter, so it works also
where the database's locale lowers ASCII only); SQLite, whose ``lower`` knows only ASCII
and which has no ``translate``, calls ``fold`` itself, registered on the connection by
``prepare``. What staff type is a literal: ``%`` and ``_`` match themselves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

# The letters of Polish names (and the few foreign ones common in them) and the plain
# letter each is searched as, upper and lower case.
_ACCENTED = "ąćęłńóśźżáäéöüĄĆĘŁŃÓŚŹŻÁÄÉÖÜ"
_PLAIN_LETTERS = "acelnoszzaaeouacelnoszzaaeou"
_PLAIN = str.maketrans(_ACCENTED, _PLAIN_LETTERS)
_SQLITE_FUNCTION = "mailbot_fold"

ESCAPE = "\\"


def fold(text: str | None) -> str | None:
    """``text`` as a search sees it: lower case, plain letters."""
    return None if text is None else text.lower().translate(_PLAIN)


class _Folded(FunctionElement[str]):
    """SQL: a text column as ``fold`` makes it."""

    name = "folded"
    type = String()
    inherit_cache = True


@compiles(_Folded)
def _folded_sql(element: _Folded, compiler: Any, **kw: Any) -> str:
    return (f"translate(lower({compiler.process(element.clauses, **kw)}), "
            f"'{_ACCENTED}', '{_PLAIN_LETTERS}')")


@compiles(_Folded, "sqlite")
def _folded_sqlite(element: _Folded, compiler: Any, **kw: Any) -> str:
    return f"{_SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"


def prepare(session: Session) -> None:
    """Makes ``fold`` callable from SQL on the session's connection (SQLite only: other
    databases have what it needs)."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.driver_connection
        raw.create_function(_SQLITE_FUNCTION, 1, fold, deterministic=True)


def literal_like(text: str) -> str:
    """``text`` for a LIKE pattern (with ``escape=ESCAPE``): its wildcards taken literally."""
    return (text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%")
            .replace("_", ESCAPE + "_"))


def contains(column: Any, text: str) -> Any:
    """SQL: ``column`` contains ``text``, ignoring case and accents (call ``prepare`` on
    the session first)."""
    return _Folded(column).like(f"%{literal_like(fold(text) or '')}%", escape=ESCAPE)


def starts_with(column: Any, text: str) -> Any:
    """SQL: ``column`` starts with ``text`` exactly (card numbers)."""
    return column.like(f"{literal_like(text)}%", escape=ESCAPE)
