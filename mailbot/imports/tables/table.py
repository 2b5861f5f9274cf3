"""The one shape every import file is read into: a header and rows of strings.

Every cell is a clean string (see ``workbook.render`` for spreadsheet values), every row is
as wide as the widest one and keeps the number a person sees in a spreadsheet, so an error
can send them to the right place. A title ("Czytelnicy — stan na 1.05.2024") above the
real header is skipped. What the columns mean is for ``imports.readers`` and
``imports.codes`` to decide; this knows nothing about libraries.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from mailbot.imports.problems import ImportRefused
from mailbot.imports.tables.limits import MAX_CELLS, Limit

__all__ = ["MAX_TITLE_ROWS", "RawRow", "Row", "Table", "build_table", "column_letter",
           "header_key", "reason"]

# A title may sit above the real header; more than a few such lines is not a title any
# more, so stop looking there.
MAX_TITLE_ROWS = 3

# A row as a format reader yields it: its number in the file, and its cells as text.
RawRow = tuple[int, list[str]]


@dataclass(frozen=True, slots=True)
class Row:
    """One non-blank row: its number as a spreadsheet shows it, and its cells as text."""

    number: int
    cells: list[str]


@dataclass(frozen=True)
class Table:
    """A file read into a header and rows; every row is as wide as the widest one."""

    file: str
    header: list[str]
    header_row: int
    rows: list[Row]

    def column_label(self, index: int) -> str:
        """The header text of a column, or its spreadsheet letter when it has none."""
        if index < len(self.header) and self.header[index]:
            return self.header[index]
        return column_letter(index)


def header_key(text: str) -> str:
    """A header reduced for comparison: no case, no accents, ``' '``/``-``/``_`` alike."""
    # "ł" has no decomposition in Unicode, so NFKD alone would keep it.
    text = text.replace("ł", "l").replace("Ł", "L")
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    # Trailing ":" or "*" (a "required" marker) are decoration people add to headers.
    return re.sub(r"[\s_\-]+", "_", plain).strip("_.:* ")


def column_letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index: 0 → A, 27 → AB."""
    letters = ""
    number = index + 1
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def reason(exc: Exception) -> str:
    """A reading library's exception, short enough to follow "cannot be read: "."""
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def build_table(raw_rows: Iterable[RawRow], *, file: str, limit: Limit) -> Table:
    """The table of ``raw_rows``, consumed one by one: a file past the bounds is refused
    after reading no more than the bounds' worth of it."""
    stream = ((number, cells) for number, cells in
              ((number, _trim(cells)) for number, cells in raw_rows) if cells)
    # The header is found among the first rows (a title may sit above it).
    head = list(itertools.islice(stream, MAX_TITLE_ROWS + 2))
    if not head:
        raise ImportRefused.one("no_rows", "the file has no rows, not even a header", file=file)
    start = _header_index(head)
    header_number, header = head[start]
    body: list[tuple[int, list[str]]] = []
    width = len(header)
    for number, cells in itertools.chain(head[start + 1 :], stream):
        body.append((number, cells))
        if len(body) > limit.max_rows:
            raise limit.too_many_rows()
        if len(cells) > width:
            width = len(cells)
        if (len(body) + 1) * width > MAX_CELLS:
            raise limit.too_many_cells(len(body) + 1, width)
    rows = []
    for number, cells in body:
        cells.extend([""] * (width - len(cells)))  # in place: no second copy of the file
        rows.append(Row(number=number, cells=cells))
    return Table(
        file=file,
        header=_pad([" ".join(cell.split()) for cell in header], width),
        header_row=header_number,
        rows=rows,
    )


def _header_index(rows: list[RawRow]) -> int:
    """Where the header is: past a title of lone cells above a wider row, if any."""
    for index, (_, cells) in enumerate(rows[: MAX_TITLE_ROWS + 1]):
        if _filled(cells) >= 2:
            # Only lone-cell rows above a wide row make a title, and only if the data below
            # is wide too: a one-column list of codes with one stray note keeps its header.
            following = rows[index + 1 : index + 2]
            if index == 0 or all(_filled(cells) >= 2 for _, cells in following):
                return index
            return 0
    return 0


def _filled(cells: list[str]) -> int:
    return sum(1 for cell in cells if cell)


def _trim(cells: list[str]) -> list[str]:
    cells = [cell.strip() for cell in cells]
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _pad(cells: list[str], width: int) -> list[str]:
    return cells + [""] * (width - len(cells))
