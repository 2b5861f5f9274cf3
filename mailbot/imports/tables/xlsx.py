"""Reading an XLSX workbook's sheet (openpyxl, read-only and values only) as raw rows.

The zip was checked first (``zipcheck``); openpyxl only sees parts of bounded size without
a DTD.
"""

from __future__ import annotations

import io
import zipfile

from mailbot.errors import BadInput
from mailbot.imports.problems import ImportRefused
from mailbot.imports.tables.limits import Limit
from mailbot.imports.tables.table import Table, build_table, reason
from mailbot.imports.tables.workbook import pick_sheet, render

__all__ = ["xlsx_table"]


def xlsx_table(data: bytes, *, file: str, sheet: str | None, limit: Limit) -> Table:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken or foreign zip
        message = _zip_complaint(data)
        raise ImportRefused.one("ods" if "OpenDocument" in message else "bad_zip", message,
                                file=file) from exc
    try:
        worksheet = pick_sheet(workbook.sheetnames, sheet, file=file)
        ws = workbook[worksheet]
        # Some generators write a wrong <dimension>; read_only mode would trust it and
        # silently cut rows or columns off.
        ws.reset_dimensions()
        rows = (
            (number, [render(value) for value in values])
            for number, values in enumerate(ws.iter_rows(min_row=1, values_only=True), 1)
        )
        try:
            return build_table(rows, file=file, limit=limit)
        except BadInput:
            raise
        except Exception as exc:  # a broken sheet: XML errors, bad cell references, …
            raise ImportRefused.one("unreadable",
                                    f"this XLSX workbook cannot be read: {reason(exc)}",
                                    file=file, format="XLSX", reason=reason(exc)) from exc
    finally:
        workbook.close()


def _zip_complaint(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if b"opendocument" in archive.read("mimetype"):
                return "this is an OpenDocument (ODS) file; save it as XLSX or CSV"
    except Exception:  # noqa: BLE001 — any failure just means "not an ODS"
        pass
    return "this looks like a zip file but not a readable XLSX workbook"
