"""Reading the files staff import into one plain shape: a header and rows of strings.

Libraries hand us whatever their systems and the platforms' panels export: XLSX, legacy
binary XLS, an HTML table saved with an ``.xls`` name, or CSV/TSV in UTF-8 or Windows-1250.
The format is recognised by content, never by the file name, because the names lie.
``read_table`` looks at the first bytes and hands the file to its module, one concept each:

- ``table``: the shape (``Table``, ``Row``), the header found below a title, ``header_key``
- ``limits``: the bounds of one file (rows, cells, bytes) and the refusals naming them
- ``zipcheck``: zip bombs and DTDs refused before openpyxl parses an XLSX
- ``workbook``: what XLSX and XLS share -- the sheet chosen, cell values as typed text
- ``xlsx`` (openpyxl), ``xls`` (xlrd): the two workbook formats
- ``decoding``: text files' bytes to text (BOM, declared charset, UTF-8, cp1250)
- ``html``: the first HTML table with data; ``csv``: CSV/TSV, its delimiter sniffed

What the columns mean is for ``imports.readers`` and ``imports.codes`` to decide; this
package knows nothing about libraries.
"""

from __future__ import annotations

from pathlib import Path

from mailbot.imports.problems import ImportRefused
from mailbot.imports.tables.csv import csv_rows
from mailbot.imports.tables.decoding import decode_text
from mailbot.imports.tables.html import html_rows, is_html
from mailbot.imports.tables.limits import MAX_BYTES, MAX_ROWS, Limit, too_big
from mailbot.imports.tables.table import Row, Table, build_table, column_letter, header_key
from mailbot.imports.tables.xls import xls_table
from mailbot.imports.tables.xlsx import xlsx_table
from mailbot.imports.tables.zipcheck import check_zip

__all__ = ["Row", "Table", "column_letter", "header_key", "read_table"]

_XLSX_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0"


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
            raise ImportRefused.in_both(too_big(size, max_bytes), file=name)
        data = path.read_bytes()
    except OSError as exc:
        raise ImportRefused.one("cannot_read", f"cannot read the file: {exc.strerror or exc}",
                                file=name, reason=str(exc.strerror or exc)) from exc
    if not data.strip():
        raise ImportRefused.one("file_empty", "the file is empty", file=name)
    limit = Limit(name, max_rows)
    if data.startswith(_XLSX_MAGIC):
        check_zip(data, file=name, max_bytes=max_bytes)
        return xlsx_table(data, file=name, sheet=sheet, limit=limit)
    if data.startswith(_OLE2_MAGIC):
        return xls_table(data, file=name, sheet=sheet, limit=limit)
    if is_html(data):
        return build_table(html_rows(data, file=name, limit=limit), file=name, limit=limit)
    text = decode_text(data, file=name)
    del data  # the text is all that is needed now: half the memory of a big CSV
    return build_table(csv_rows(text, file=name), file=name, limit=limit)
