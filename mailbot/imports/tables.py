"""Reading the files staff import into one plain shape: a header and rows of strings.

Libraries hand us whatever their systems and the platforms' panels export: XLSX, legacy
binary XLS, an HTML table saved with an ``.xls`` name, or CSV/TSV in UTF-8 or Windows-1250.
The format is recognised by content, never by the file name, because the names lie.

Every cell comes out as a clean string (integral numbers without ``.0``, dates as ISO
``YYYY-MM-DD``, empty cells as ``""``), and every row keeps the number a person sees in a
spreadsheet, so an error can send them to the right place. What the columns mean is for
``readers.py`` and ``codes.py`` to decide; this module knows nothing about libraries.

``Problems`` collects the errors found while interpreting a table, so that one import run
reports many mistakes at once instead of one per attempt.

Files come from staff's uploads, so they may be hostile or simply huge: rows are counted as
they stream and a file is refused (``BadInput`` naming the bound, in Polish and English)
past ``max_rows`` rows, ``MAX_CELLS`` cells or ``max_bytes`` bytes (an XLSX's parts
unpacked), and an XLSX whose parts pack implausibly well (a zip bomb) or carry a DTD
(entities: XXE, "billion laughs") is refused before openpyxl parses any of it.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

from mailbot.errors import BadInput

__all__ = [
    "Problems",
    "Row",
    "Table",
    "column_letter",
    "header_key",
    "read_table",
]

# A title ("Czytelnicy — stan na 1.05.2024") may sit above the real header; more than a
# few such lines is not a title any more, so stop looking there.
MAX_TITLE_ROWS = 3
# How many problems one error message lists; beyond that, a count is more useful.
MAX_LISTED_PROBLEMS = 20
# The default bounds of one file (config ``[imports]``, see mailbot.config.ImportSettings).
MAX_ROWS = 500_000
MAX_BYTES = 256 * 1024 * 1024
# Rows × columns of the table as read: every row is padded to the widest, so one stray
# cell far to the right would otherwise multiply the memory of every row. A 200,000-reader
# export of ten columns is 2,000,000; at the bound a file takes ~350 MB while it is read
# (10,000,000 took 900 MB, in the daemon's process when imported on the dashboard).
MAX_CELLS = 4_000_000
# An XLSX part (over 1 MiB unpacked) packed better than this is a zip bomb: real
# workbooks' sheets pack 5-30 times (a 200,000-reader export: 13).
MAX_PACKING_RATIO = 100
_RATIO_FLOOR = 1024 * 1024

_XLSX_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0"
_DELIMITERS = (",", ";", "\t")
_SNIFF_RECORDS = 50
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_DECLARED_CHARSET = re.compile(
    rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)"""
    rb"""|<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""",
    re.IGNORECASE,
)


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


def read_table(path: str | Path, *, sheet: str | None = None, max_rows: int = MAX_ROWS,
               max_bytes: int = MAX_BYTES) -> Table:
    """Read an XLSX, XLS, HTML-table or CSV/TSV file; ``sheet`` picks a workbook sheet.

    A file of more than ``max_rows`` rows below its header, or more than ``max_bytes``
    bytes (an XLSX: its parts unpacked), is refused as a whole."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise BadInput(_too_big(size, max_bytes), file=name)
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read the file: {exc.strerror or exc}", file=name) from exc
    if not data.strip():
        raise BadInput("the file is empty", file=name)
    limit = _Limit(name, max_rows)
    if data.startswith(_XLSX_MAGIC):
        _check_zip(data, file=name, max_bytes=max_bytes)
        return _xlsx_table(data, file=name, sheet=sheet, limit=limit)
    if data.startswith(_OLE2_MAGIC):
        return _xls_table(data, file=name, sheet=sheet, limit=limit)
    if _is_html(data):
        return _build_table(_html_rows(data, file=name, limit=limit), file=name, limit=limit)
    text = _decode_text(data, file=name)
    del data  # the text is all that is needed now: half the memory of a big CSV
    return _build_table(_csv_rows(text, file=name), file=name, limit=limit)


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


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an imported file, located as precisely as we can."""

    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class Problems:
    """Collects problems in one file and raises them together as one ``BadInput``."""

    def __init__(self, *, file: str) -> None:
        self.file = file
        self.found: list[Problem] = []
        self.count = 0

    def add(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        # Only the listed ones are kept: a file of a million bad rows is one count.
        self.count += 1
        if len(self.found) < MAX_LISTED_PROBLEMS:
            self.found.append(Problem(message, row=row, column=column))

    def raise_if_any(self) -> None:
        """Raise one ``BadInput`` located at the first problem and listing the others."""
        if not self.found:
            return
        first = self.found[0]
        message = first.message
        if self.count > 1:
            listed = "\n".join(f"  {p}" for p in self.found)
            message = f"{message}\n{self.count} problems in this file:\n{listed}"
            if self.count > len(self.found):
                message += f"\n  … and {self.count - len(self.found)} more"
        raise BadInput(message, file=self.file, row=first.row, column=first.column)


# --- from raw rows to a table ------------------------------------------------------------

_RawRow = tuple[int, list[str]]


class _Limit:
    """The bound on rows and cells of one file, checked as its rows stream in."""

    def __init__(self, file: str, max_rows: int) -> None:
        self.file = file
        self.max_rows = max_rows

    def too_many_rows(self) -> BadInput:
        n = f"{self.max_rows:,}"
        return BadInput(
            f"plik ma więcej niż {n.replace(',', ' ')} wierszy, a jeden import przyjmuje "
            f"najwyżej tyle ([imports] max_rows); proszę podzielić go na mniejsze pliki / "
            f"the file has "
            f"more than {n} rows, the most one import takes ([imports] max_rows); split it "
            "into smaller files; nothing imported", file=self.file)

    def too_many_cells(self, rows: int, width: int) -> BadInput:
        n = f"{MAX_CELLS:,}"
        return BadInput(
            f"plik ma zbyt wiele komórek ({rows} wierszy × {width} kolumn, najwyżej "
            f"{n.replace(',', ' ')}); proszę usunąć zbędne kolumny / the file has too many cells "
            f"({rows} rows × {width} columns, at most {n}); remove the columns not needed; "
            "nothing imported", file=self.file)


def _too_big(size: int, max_bytes: int) -> str:
    mib = f"{max_bytes / 2**20:.0f}"
    return (f"plik jest za duży ({size / 2**20:.1f} MiB, najwyżej {mib} MiB, [imports] "
            f"max_bytes) / the file is too large ({size / 2**20:.1f} MiB, at most {mib} MiB, "
            "[imports] max_bytes); nothing imported")


def _build_table(raw_rows: Iterable[_RawRow], *, file: str, limit: _Limit) -> Table:
    """The table of ``raw_rows``, consumed one by one: a file past the bounds is refused
    after reading no more than the bounds' worth of it."""
    stream = ((number, cells) for number, cells in
              ((number, _trim(cells)) for number, cells in raw_rows) if cells)
    # The header is found among the first rows (a title may sit above it).
    head = list(itertools.islice(stream, MAX_TITLE_ROWS + 2))
    if not head:
        raise BadInput("the file has no rows, not even a header", file=file)
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


def _header_index(rows: list[_RawRow]) -> int:
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


# --- cell values -------------------------------------------------------------------------


def _render(value: object) -> str:
    """A cell value as the text a person would type for it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _render_float(value)
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral() else str(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds")
    return str(value).strip()


def _render_float(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return ""
    if value.is_integer():
        # Card numbers and codes typed into Excel become floats; 1234.0 is never meant.
        return str(int(value))
    # Excel shows 15 significant digits; binary noise beyond that (0.30000000000000004)
    # is not what anybody typed.
    return format(value, ".15g")


# --- XLSX --------------------------------------------------------------------------------


def _check_zip(data: bytes, *, file: str, max_bytes: int) -> None:
    """Refuses a zip whose parts unpack to more than ``max_bytes``, pack suspiciously well,
    or hold a DTD, before any XML parser sees them.

    The sizes checked are the ones the zip declares: Python's zipfile never unpacks a part
    past its declared size (it fails the CRC check instead), so they bound what openpyxl
    can read. An XLSX never carries a DTD; one in any part can only be there to define
    entities (an external one reading a file of this machine, or nested ones expanding
    to gigabytes), so such a file is refused whatever the XML parser would make of it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise BadInput("this looks like a zip file but not a readable XLSX workbook",
                       file=file) from exc
    with archive:
        members = archive.infolist()
        unpacked = sum(info.file_size for info in members)
        if unpacked > max_bytes:
            raise BadInput(_too_big(unpacked, max_bytes).replace(
                "plik jest za duży (", "plik po rozpakowaniu jest za duży (").replace(
                "the file is too large (", "the file is too large unpacked ("), file=file)
        for info in members:
            if info.file_size > _RATIO_FLOOR and \
                    info.file_size > MAX_PACKING_RATIO * max(info.compress_size, 1):
                raise BadInput(
                    f"część {info.filename!r} po rozpakowaniu ma {info.file_size // 2**20} MiB "
                    f"(spakowana {info.compress_size // 1024} KiB): to bomba zip, a nie "
                    f"arkusz / part "
                    f"{info.filename!r} unpacks to {info.file_size // 2**20} MiB from "
                    f"{info.compress_size // 1024} KiB: a zip bomb, not a workbook; "
                    "nothing imported", file=file)
        for info in members:
            if not info.is_dir() and _holds_dtd(archive, info):
                raise BadInput(
                    f"część {info.filename!r} zawiera deklarację DTD lub encji (<!DOCTYPE>), "
                    f"której żaden arkusz nie ma / part {info.filename!r} declares a DTD or "
                    "entities (<!DOCTYPE>), which no workbook has; nothing imported",
                    file=file)


# "<!DOCTYPE" and "<!ENTITY" as UTF-8 (and ASCII-compatible encodings) and as UTF-16: an
# XML part may be in either.
_DTD_MARKS = tuple(mark.encode(enc) for mark in ("<!DOCTYPE", "<!ENTITY")
                   for enc in ("ascii", "utf-16-le", "utf-16-be"))
_CHUNK = 1024 * 1024


def _holds_dtd(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether the part contains a DTD anywhere (read in chunks: its size is bounded)."""
    overlap = max(len(mark) for mark in _DTD_MARKS) - 1
    tail = b""
    try:
        with archive.open(info) as part:
            while chunk := part.read(_CHUNK):
                window = tail + chunk
                if any(mark in window for mark in _DTD_MARKS):
                    return True
                tail = window[-overlap:]
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError,
            RuntimeError):
        return False  # a broken part: openpyxl will say the workbook is unreadable
    return False


def _xlsx_table(data: bytes, *, file: str, sheet: str | None, limit: _Limit) -> Table:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken or foreign zip
        raise BadInput(_zip_complaint(data), file=file) from exc
    try:
        worksheet = _pick_sheet(workbook.sheetnames, sheet, file=file)
        ws = workbook[worksheet]
        # Some generators write a wrong <dimension>; read_only mode would trust it and
        # silently cut rows or columns off.
        ws.reset_dimensions()
        rows = (
            (number, [_render(value) for value in values])
            for number, values in enumerate(ws.iter_rows(min_row=1, values_only=True), 1)
        )
        try:
            return _build_table(rows, file=file, limit=limit)
        except BadInput:
            raise
        except Exception as exc:  # a broken sheet: XML errors, bad cell references, …
            raise BadInput(f"this XLSX workbook cannot be read: {_reason(exc)}",
                           file=file) from exc
    finally:
        workbook.close()


def _reason(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def _zip_complaint(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if b"opendocument" in archive.read("mimetype"):
                return "this is an OpenDocument (ODS) file; save it as XLSX or CSV"
    except Exception:  # noqa: BLE001 — any failure just means "not an ODS"
        pass
    return "this looks like a zip file but not a readable XLSX workbook"


def _pick_sheet(names: list[str], wanted: str | None, *, file: str) -> str:
    if not names:
        raise BadInput("the workbook has no sheets", file=file)
    if wanted is None:
        return names[0]
    for name in names:
        if name.strip().casefold() == wanted.strip().casefold():
            return name
    listed = ", ".join(repr(n) for n in names)
    raise BadInput(f"no sheet named {wanted!r}; the sheets are {listed}", file=file)


# --- legacy XLS --------------------------------------------------------------------------


def _xls_table(data: bytes, *, file: str, sheet: str | None, limit: _Limit) -> Table:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except Exception as exc:  # xlrd raises XLRDError, struct errors, … for broken files
        raise BadInput(
            "this looks like a legacy Excel (XLS) file but cannot be read; "
            "save it as XLSX or CSV",
            file=file,
        ) from exc
    try:
        try:
            ws = book.sheet_by_name(_pick_sheet(book.sheet_names(), sheet, file=file))
        except BadInput:
            raise
        except Exception as exc:  # xlrd reads a sheet's records only now
            raise BadInput(f"this XLS workbook cannot be read: {_reason(exc)}",
                           file=file) from exc
        rows = (
            (index + 1, [_xls_cell(cell, datemode=book.datemode) for cell in ws.row(index)])
            for index in range(ws.nrows)
        )
        return _build_table(rows, file=file, limit=limit)
    finally:
        book.release_resources()


def _xls_cell(cell: object, *, datemode: int) -> str:
    import xlrd

    ctype, value = cell.ctype, cell.value  # type: ignore[attr-defined]
    if ctype == xlrd.XL_CELL_DATE:
        try:
            return _render(xlrd.xldate.xldate_as_datetime(value, datemode))
        except (xlrd.xldate.XLDateError, ValueError, OverflowError):
            return _render(value)
    if ctype == xlrd.XL_CELL_BOOLEAN:
        return _render(bool(value))
    if ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return ""
    return _render(value)


# --- text: encodings ---------------------------------------------------------------------


def _strip_bom(data: bytes) -> tuple[bytes, str | None]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :], encoding
    return data, None


def _decode_text(data: bytes, *, file: str, declared: str | None = None) -> str:
    """Text from bytes: a BOM wins, then a declared charset, then UTF-8, then cp1250."""
    body, bom_encoding = _strip_bom(data)
    if bom_encoding:
        try:
            return body.decode(bom_encoding)
        except UnicodeDecodeError as exc:
            raise BadInput(f"the file is not valid {bom_encoding} text", file=file) from exc
    if b"\x00" in body:
        raise BadInput("this is neither a spreadsheet nor a text file", file=file)
    # cp1250 decodes almost any byte string, so it must come last: it is what Excel on a
    # Polish Windows writes when asked for "CSV".
    for encoding in (declared, "utf-8", "cp1250"):
        if encoding:
            try:
                return body.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                continue
    raise BadInput("the file is neither UTF-8 nor Windows-1250 text", file=file)


# --- HTML tables -------------------------------------------------------------------------


def _is_html(data: bytes) -> bool:
    body, bom_encoding = _strip_bom(data)
    if bom_encoding and bom_encoding != "utf-8":
        body = body.decode(bom_encoding, errors="replace").encode("utf-8")
    return body.lstrip()[:1] == b"<"


def _html_rows(data: bytes, *, file: str, limit: _Limit) -> list[_RawRow]:
    found = _DECLARED_CHARSET.search(data[:4096])
    declared = None
    if found:
        declared = (found.group(1) or found.group(2)).decode("ascii", errors="replace")
    text = _decode_text(data, file=file, declared=declared)
    # Entities are never expanded here (HTMLParser knows only HTML's own character
    # references), so a DTD in the file is just ignored text.
    parser = _TableParser(limit)
    try:
        for start in range(0, len(text), _CHUNK):
            parser.feed(text[start : start + _CHUNK])
        parser.close()
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 — HTMLParser on hostile input
        raise BadInput(f"this HTML file cannot be read: {_reason(exc)}", file=file) from exc
    for rows in parser.tables:
        if any(any(cell for cell in cells) for cells in rows):
            return [(number, cells) for number, cells in enumerate(rows, 1)]
    raise BadInput("this HTML file has no table with any data", file=file)


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

    def __init__(self, limit: _Limit) -> None:
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


# --- CSV / TSV ---------------------------------------------------------------------------


def _csv_rows(text: str, *, file: str) -> Iterator[_RawRow]:
    delimiter = _sniff_delimiter(text)
    try:
        for number, cells in enumerate(csv.reader(_lines(text), delimiter=delimiter), 1):
            yield number, cells
    except csv.Error as exc:
        raise BadInput(f"this CSV file cannot be read: {exc}", file=file) from exc


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, one at a time, as csv.reader wants them.

    Not io.StringIO: that copies the whole text (at up to four bytes a character) first.
    Lines end as with ``newline=""``: at "\r\n", "\n" or a lone "\r" (old Mac exports),
    kept for csv.reader, which reads them as line ends or parts of a quoted field."""
    for found in _LINE.finditer(text):
        yield found.group()


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits most rows into the same number of (several) fields.

    A Polish CSV uses ``;`` because ``,`` is the decimal separator, so "12,50" must not
    make ``,`` win: a real delimiter gives the same field count on most rows.
    """

    def score(delimiter: str) -> tuple[int, int, int]:
        # Last resort for one-column files: the delimiter that occurs at all (";;" rows).
        occurs = text.count(delimiter, 0, 10_000)
        try:
            sample = itertools.islice(
                csv.reader(_lines(text), delimiter=delimiter), _SNIFF_RECORDS
            )
            wide = [len(record) for record in sample if len(record) > 1]
        except csv.Error:
            return (0, 0, occurs)
        if not wide:
            return (0, 0, occurs)
        common = max(set(wide), key=lambda count: (wide.count(count), count))
        return (wide.count(common), common, occurs)

    return max(_DELIMITERS, key=score)
