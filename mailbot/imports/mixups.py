"""A reader file taken for codes: refused before it becomes a pool (pure).

Staff upload the month's files side by side; a reader export sent as codes would make card
numbers into codes, handed out to patrons. Two signs, either enough:
- the header names a reader file's required columns (a card number and a surname, in any
  of the names the reader import knows: ``numer_karty``, ``nazwisko`` …);
- the code column was found by the shape of its values, not by a header naming codes,
  and every value looks like one of this library's card numbers (its ``card_pattern``).
  A pool whose codes really are such numbers names its column (``--column`` or a ``kod``
  header), which skips this sign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailbot.imports.codes import CodeRow, named_code_column
from mailbot.imports.readers import REQUIRED_COLUMNS, reader_field
from mailbot.imports.tables import Table


@dataclass(frozen=True)
class Mixup:
    """Why a file is refused as codes: ``text`` in English (the command line), ``key``
    and ``args`` for the dashboard's catalogue."""

    text: str
    key: str
    args: dict[str, Any]  # a list of names is quoted by the dashboard as its language does

    def __str__(self) -> str:
        return self.text


def reader_headers(table: Table) -> Mixup | None:
    """Why ``table``'s header is a reader file's; None when it is not (asked first: a
    reader file's several text columns would otherwise be "ambiguous" as codes)."""
    fields = {reader_field(header): header for header in table.header}
    if all(f in fields for f in REQUIRED_COLUMNS):
        names = ", ".join(repr(fields[f]) for f in REQUIRED_COLUMNS)
        return Mixup(f"this looks like a reader file (columns {names}), not codes: import "
                     "it as readers (import-readers)", "reader_file",
                     {"columns": [fields[f] for f in REQUIRED_COLUMNS]})
    return None


def card_like_values(table: Table, rows: list[CodeRow], *, column: str | None,
                     card_pattern: str) -> Mixup | None:
    """Why the codes found look like card numbers; None when they do not, or when their
    column was named (by ``--column`` or by a header naming codes)."""
    if column is not None or named_code_column(table) or not rows:
        return None
    card = re.compile(card_pattern)
    if all(card.fullmatch(r.code) for r in rows):
        return Mixup("every value looks like one of this library's card numbers "
                     f"(card_pattern {card_pattern!r}), not a code: is this a reader file? "
                     "If they really are codes, name their column with --column",
                     "card_like", {})
    return None
