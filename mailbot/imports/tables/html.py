"""Reading the first HTML table with data as raw rows (web panels' ".xls" exports).

Entities are never expanded here (HTMLParser knows only HTML's own character references),
so a DTD in the file is just ignored text. Every table of the page counts towards the
file's bounds as it grows.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mailbot.errors import BadInput
from mailbot.imports.problems import ImportRefused
from mailbot.imports.tables.decoding import decode_text, strip_bom
from mailbot.imports.tables.limits import MAX_CELLS, Limit
from mailbot.imports.tables.table import MAX_TITLE_ROWS, RawRow, reason

__all__ = ["html_rows", "is_html"]

_DECLARED_CHARSET = re.compile(
    rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)"""
    rb"""|<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""",
    re.IGNORECASE,
)
_CHUNK = 1024 * 1024


def is_html(data: bytes) -> bool:
    body, bom_encoding = strip_bom(data)
    if bom_encoding and bom_encoding != "utf-8":
        body = body.decode(bom_encoding, errors="replace").encode("utf-8")
    return body.lstrip()[:1] == b"<"


def html_rows(data: bytes, *, file: str, limit: Limit) -> list[RawRow]:
    found = _DECLARED_CHARSET.search(data[:4096])
    declared = None
    if found:
        declared = (found.group(1) or found.group(2)).decode("ascii", errors="replace")
    text = decode_text(data, file=file, declared=declared)
    parser = _TableParser(limit)
    try:
        for start in range(0, len(text), _CHUNK):
            parser.feed(text[start : start + _CHUNK])
        parser.close()
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 — HTMLParser on hostile input
        raise ImportRefused.one("unreadable", f"this HTML file cannot be read: {reason(exc)}",
                                file=file, format="HTML", reason=reason(exc)) from exc
    for rows in parser.tables:
        if any(any(cell for cell in cells) for cells in rows):
            return [(number, cells) for number, cells in enumerate(rows, 1)]
    raise ImportRefused.one("html_no_table", "this HTML file has no table with any data",
                            file=file)


class _OpenTable:
    """A table being parsed; cells collect text pieces until the table closes."""

    def __init__(self, rows: list[list[list[str]]]) -> None:
        self.rows = rows
        self.row: list[list[str]] | None = None
        self.cell: list[str] | None = None


class _TableParser(HTMLParser):
    """Every ``<table>`` of a document as rows of cell texts, in document order.

    Web panels write sloppy HTML: unclosed ``<td>``/``<tr>``, layout tables around the data
    table, ``<br>`` inside cells. A new cell or row closes the previous one, and text
    belongs to the innermost open table only.
    """

    _BREAKING = {"br", "p", "div", "li"}
    # Layout tables around the data add a few rows and cells beyond the file's bounds.
    _SLACK = 1000

    def __init__(self, limit: Limit) -> None:
        super().__init__(convert_charrefs=True)
        self._raw: list[list[list[list[str]]]] = []
        self._open: list[_OpenTable] = []
        self._skipping = 0
        self._limit = limit
        self._rows = self._cells = 0

    @property
    def tables(self) -> list[list[list[str]]]:
        return [
            [[" ".join("".join(pieces).split()) for pieces in row] for row in table]
            for table in self._raw
        ]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skipping += 1
        elif tag == "table":
            rows: list[list[list[str]]] = []
            self._raw.append(rows)
            self._open.append(_OpenTable(rows))
        elif not self._open:
            return
        elif tag == "tr":
            self._start_row(self._open[-1])
        elif tag in ("td", "th"):
            self._start_cell(self._open[-1], colspan=_colspan(attrs))
        elif tag in self._BREAKING:
            self._text(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKING:
            self._text(" ")
        else:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skipping = max(0, self._skipping - 1)
        elif not self._open:
            return
        elif tag == "table":
            self._open.pop()
        elif tag == "tr":
            self._open[-1].row = None
            self._open[-1].cell = None
        elif tag in ("td", "th"):
            self._open[-1].cell = None
        elif tag in self._BREAKING:
            self._text(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._text(data)

    def _text(self, data: str) -> None:
        if self._open and self._open[-1].cell is not None:
            self._open[-1].cell.append(data)

    def _start_row(self, table: _OpenTable) -> None:
        # Every table of the page is kept until its end: bounded as a whole, as it grows.
        self._rows += 1
        if self._rows > self._limit.max_rows + MAX_TITLE_ROWS + 1 + self._SLACK:
            raise self._limit.too_many_rows()
        table.row = []
        table.rows.append(table.row)
        table.cell = None

    def _start_cell(self, table: _OpenTable, *, colspan: int) -> None:
        if table.row is None:
            self._start_row(table)
        assert table.row is not None
        table.cell = []
        table.row.append(table.cell)
        # A spanning cell still occupies its columns; without fillers the cells after it
        # would slide under the wrong header.
        table.row.extend([] for _ in range(colspan - 1))
        self._cells += colspan
        if self._cells > MAX_CELLS + self._SLACK:
            raise self._limit.too_many_cells(self._rows, len(table.row))


def _colspan(attrs: list[tuple[str, str | None]]) -> int:
    for name, value in attrs:
        if name == "colspan" and value and value.strip().isdigit():
            return max(1, min(int(value), 100))
    return 1
