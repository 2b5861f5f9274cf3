"""Parsing the platform's activation report: which issued codes were activated, and when.

Panels export a code column and either an activation date (empty: not activated) or a
yes/no status. The report is pure data here; ``load.import_activations`` applies it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from mailbot.imports.codes import code_column, parse_codes
from mailbot.imports.problems import ImportRefused, Problems
from mailbot.imports.tables import Table, header_key
from mailbot.values import parse_date

DATE_HEADERS = ("data_aktywacji", "data_aktywowania", "aktywacja", "aktywowano",
                "activated_at", "activation_date", "activated_on", "date_activated",
                "data_uzycia", "wykorzystano", "used_at", "redeemed_at")
FLAG_HEADERS = ("aktywny", "aktywowany", "aktywowano_tak_nie", "activated", "active",
                "status", "stan", "wykorzystany", "used", "redeemed")
_YES = {"tak", "t", "yes", "y", "true", "1", "aktywny", "aktywowany", "aktywowano",
        "active", "activated", "used", "redeemed", "wykorzystany", "x", "✓"}
_NO = {"nie", "n", "no", "false", "0", "", "nieaktywny", "nieaktywowany", "inactive",
       "not activated", "unused", "niewykorzystany", "-"}
_DATE_START = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4}")


@dataclass(frozen=True)
class ActivationRow:
    code: str
    activated: bool
    activated_on: date | None
    row: int


def parse_activations(table: Table, *, column: str | None = None) -> list[ActivationRow]:
    codes = parse_codes(table, column=column)
    code_index = code_column(table, column)
    keys = [header_key(h) for h in table.header]
    dates = [i for i, k in enumerate(keys) if k in DATE_HEADERS and i != code_index]
    flags = [i for i, k in enumerate(keys) if k in FLAG_HEADERS and i != code_index]
    if not dates and not flags:
        raise ImportRefused.one(
            "no_activation_column",
            "no activation column found (a date such as 'data aktywacji' or a status such as "
            "'aktywny'); headers: " + ", ".join(table.header),
            file=table.file, row=table.header_row, headers=list(table.header))
    by_row = {row.number: row for row in table.rows}
    problems = Problems(file=table.file)
    result = []
    for code in codes:
        cells = by_row[code.row].cells
        activated, on = False, None
        for i in dates:
            text = cells[i].strip()
            if not text:
                continue
            found = _DATE_START.match(text)
            try:
                on = parse_date(found.group(0)) if found else parse_date(text)
            except ValueError as exc:
                problems.add(str(exc), row=code.row, column=table.column_label(i),
                             key="bad_date", value=text)
                continue
            activated = True
        for i in flags:
            text = cells[i].strip().casefold()
            if text in _YES:
                activated = True
            elif text not in _NO:
                problems.add(f"{cells[i]!r} is neither yes nor no (tak/nie)", row=code.row,
                             column=table.column_label(i), key="not_yes_no", value=cells[i])
        result.append(ActivationRow(code.code, activated, on, code.row))
    problems.raise_if_any()
    return result
