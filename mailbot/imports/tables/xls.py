"""Reading a legacy binary Excel (XLS) workbook's sheet (xlrd) as raw rows."""

from __future__ import annotations

from mailbot.errors import BadInput
from mailbot.imports.problems import ImportRefused
from mailbot.imports.tables.limits import Limit
from mailbot.imports.tables.table import Table, build_table, reason
from mailbot.imports.tables.workbook import pick_sheet, render

__all__ = ["xls_table"]


def xls_table(data: bytes, *, file: str, sheet: str | None, limit: Limit) -> Table:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except Exception as exc:  # xlrd raises XLRDError, struct errors, … for broken files
        raise ImportRefused.one(
            "bad_xls",
            "this looks like a legacy Excel (XLS) file but cannot be read; "
            "save it as XLSX or CSV",
            file=file,
        ) from exc
    try:
        try:
            ws = book.sheet_by_name(pick_sheet(book.sheet_names(), sheet, file=file))
        except BadInput:
            raise
        except Exception as exc:  # xlrd reads a sheet's records only now
            raise ImportRefused.one("unreadable",
                                    f"this XLS workbook cannot be read: {reason(exc)}",
                                    file=file, format="XLS", reason=reason(exc)) from exc
        rows = (
            (index + 1, [_xls_cell(cell, datemode=book.datemode) for cell in ws.row(index)])
            for index in range(ws.nrows)
        )
        return build_table(rows, file=file, limit=limit)
    finally:
        book.release_resources()


def _xls_cell(cell: object, *, datemode: int) -> str:
    import xlrd

    ctype, value = cell.ctype, cell.value  # type: ignore[attr-defined]
    if ctype == xlrd.XL_CELL_DATE:
        try:
            return render(xlrd.xldate.xldate_as_datetime(value, datemode))
        except (xlrd.xldate.XLDateError, ValueError, OverflowError):
            return render(value)
    if ctype == xlrd.XL_CELL_BOOLEAN:
        return render(bool(value))
    if ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return ""
    return render(value)
