"""Many keys or rows in SQL: ``column IN (...)`` a few hundred values at a time; many
single-row writes in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from sqlalchemy import text
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


def many_writes(session: Session) -> None:
    """Tells PostgreSQL that the rest of ``session``'s transaction is many single-row
    writes of one shape (executemany: a decide batch's updates and inserts, a stored
    chunk of mail): they may use a generic plan once prepared.

    Connections run with plan_cache_mode = force_custom_plan (see make_engine), which
    the batch lookups need, and which would plan each of those writes again: 200 updates
    by key took ~20 ms of the server's time per batch, ~14 ms without. Nothing elsewhere.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = auto"))
