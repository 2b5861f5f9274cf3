"""Long lists of keys in SQL: ``column IN (...)`` a few hundred values at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

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
