"""The sender's replies composed from their recipes (recipes.py), a page at a time.

A page of outbox rows is read; each reply kept as a recipe is composed just before the
page is sent, in the sending process (the texts it names are read once a process from
``reply_texts``). A reply that cannot be composed fails for staff (``record``) and the
others go on; a row with neither message nor recipe fails the same way.

Not on the worker processes: measured in a 10,000-reply burst (issue 21), composing a
page ahead on them left the burst's length as it was (SQLite 1.06–1.18 and 1.08–1.11 of
the bytes-in-the-outbox run with and without them; PostgreSQL 10.37 and 10.16 s, 10.66
and 10.81 s), while their two processes took 60 MB more: the sender's time goes to the
mark after each reply (docs/performance.md), not to composing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol, TypeVar

from sqlalchemy import Connection

from mailbot.respond import recipes
from mailbot.respond.smtp import TransportError

log = logging.getLogger(__name__)

__all__ = ["made"]


class Kept(Protocol):
    """An outbox row as the sender reads it (rows.Pending, a frozen dataclass)."""

    @property
    def id(self) -> int: ...
    @property
    def request_id(self) -> int | None: ...
    @property
    def message(self) -> bytes | None: ...
    @property
    def recipe(self) -> str | None: ...
    @property
    def texts(self) -> str | None: ...


Row = TypeVar("Row", bound=Kept)


def made(db: Connection, rows: list[Row],
         record: Callable[[Row, TransportError | None], None]) -> list[Row]:
    """``rows`` with their messages, in order; a reply that cannot be composed (or has no
    message) is recorded as failed, and left out."""
    out: list[Row] = []
    for row in rows:
        if row.message is None and row.recipe is not None and row.texts is not None:
            try:
                row = replace(row, message=recipes.compose(db, row.recipe, row.texts))  # type: ignore[type-var]
            except Exception as exc:  # noqa: BLE001 - one reply must never stop the others
                log.error("outbox=%s request=%s could not be composed: %s", row.id,
                          row.request_id, type(exc).__name__)
                record(row, TransportError(f"the reply could not be composed: "
                                           f"{type(exc).__name__}: {exc}", permanent=True))
                continue
        if row.message is None:
            record(row, TransportError("the reply has no message (purged)", permanent=True))
            continue
        out.append(row)
    return out
