"""The sender's replies composed from their recipes (recipes.py), a page ahead.

A page of outbox rows is read, and its replies kept as recipes are handed to the worker
processes (mailbot.offload) at once; the page before it is sent meanwhile. When the sender
comes to the page, ``finish`` collects the messages. Without workers (one CPU, a few
replies, workers still starting) the page is composed in place when it is finished. The
bytes are the same either way: the same function, the same recipe, the same texts.

A reply that cannot be composed fails for staff (``record``) and the others go on; a row
with neither message nor recipe (purged meanwhile) fails the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection

from mailbot import offload
from mailbot.respond import recipes, text_sets
from mailbot.respond.smtp import TransportError
from mailbot.respond.text_sets import TextSet

log = logging.getLogger(__name__)

__all__ = ["Page"]


class Kept(Protocol):
    """An outbox row as the sender reads it (rows.Pending)."""

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
Record = Callable[[Any, TransportError | None], None]


class Page:
    """One page of rows whose replies are being composed."""

    def __init__(self, db: Connection, rows: list[Row]) -> None:
        """Starts composing ``rows``'s replies (their text sets are read in ``db`` now: a
        page is finished outside the transaction it was read in)."""
        self.rows: list[Any] = list(rows)
        self.sets: dict[int, TextSet | Exception] = {}
        loaded: dict[str, TextSet | Exception] = {}
        for row in self.rows:
            if row.message is None and row.recipe is not None and row.texts is not None:
                if row.texts not in loaded:
                    try:
                        loaded[row.texts] = text_sets.load(db, row.texts)
                    except Exception as exc:  # noqa: BLE001 - that row's failure alone
                        loaded[row.texts] = exc
                self.sets[row.id] = loaded[row.texts]
        jobs = [(row, self.sets[row.id]) for row in self.rows
                if isinstance(self.sets.get(row.id), TextSet)]
        self.made: dict[int, dict[str, Any]] = {}
        self.composer = offload.composer(replies=len(jobs), wait=False)
        if self.composer is not None:
            for row, text_set in jobs:
                holder = self.made[row.id] = {"message": None}
                self.composer.add(row.id, holder, (row.recipe, text_set))
            self.composer.flush()  # now, while the page before is sent

    def finish(self, record: Record) -> list[Any]:
        """The page's rows with their messages; a reply that cannot be composed (or has no
        message) is recorded as failed, and left out."""
        if self.composer is not None:
            try:
                self.composer.finish()
            except offload.ComposeFailed:  # that reply fails alone, composed in place
                self.made = {}
        out = []
        for row in self.rows:
            if row.id in self.sets:
                try:
                    message = self.made.get(row.id, {}).get("message") or _compose(
                        row, self.sets[row.id])
                except Exception as exc:  # noqa: BLE001 - one reply must never stop the others
                    log.error("outbox=%s request=%s could not be composed: %s", row.id,
                              row.request_id, type(exc).__name__)
                    record(row, TransportError(f"the reply could not be composed: "
                                               f"{type(exc).__name__}: {exc}", permanent=True))
                    continue
                row = replace(row, message=message)
            if row.message is None:
                record(row, TransportError("the reply has no message (purged)",
                                           permanent=True))
                continue
            out.append(row)
        return out


def _compose(row: Any, text_set: TextSet | Exception) -> bytes:
    if isinstance(text_set, Exception):
        raise text_set
    return recipes.compose_from(row.recipe, text_set)
