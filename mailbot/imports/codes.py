"""Finding the access codes in a platform's export (Legimi, Empik Go) and checking them.

Pure: a ``Table`` in, a list of ``CodeRow`` out, or one ``BadInput`` listing every problem
found. The code column is found by its header (``kod``, ``code``, ``kod dostępu``…); failing
that, as the one column whose values all look like codes; ``column`` overrides both
(SPEC §4 "Code file"). Panels sometimes export without a header, so a first row that is
itself a code is read as data.

A code is issued at most once, ever, so anything doubtful (an empty cell, a value that is not
code-like, the same code twice) stops the import instead of being skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailbot.imports.problems import ImportRefused, Problems
from mailbot.imports.tables import Row, Table, column_letter, header_key

__all__ = ["CODE_HEADERS", "CodeRow", "code_column", "is_code_like", "parse_codes", "read_codes"]


@dataclass(frozen=True)
class CodeRow:
    """One code as written in the file; ``row`` is the file's row number."""

    code: str
    row: int


# Headers that name the code column outright (compared through ``header_key``).
CODE_HEADERS = (
    "kod",
    "kody",
    "code",
    "codes",
    "kod dostępu",
    "kody dostępu",
    "access code",
    "access codes",
    "voucher",
    "vouchery",
    "vouchers",
    "voucher code",
    "kod vouchera",
    "kod aktywacyjny",
    "kody aktywacyjne",
    "activation code",
    "kod promocyjny",
    "promo code",
)
# Words that make a longer header a code header too ("Kod Legimi", "Voucher ID"); "kodu"
# is left out on purpose: "Data wygenerowania kodu" is a date column.
_CODE_WORDS = {"kod", "kody", "code", "codes", "voucher", "vouchery", "vouchers"}
_CODE_KEYS = {header_key(name) for name in CODE_HEADERS}

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{5,63}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}-\d{2}-\d{4}")
_LETTER = re.compile(r"[A-Za-z]{1,3}")


def is_code_like(text: str) -> bool:
    """Letters, digits and hyphens, 6–64 long, and not a date (which has the same shape)."""
    return bool(_CODE.fullmatch(text)) and not _DATE.fullmatch(text)


def parse_codes(table: Table, *, column: str | int | None = None) -> list[CodeRow]:
    """The codes of ``table``; ``column`` is a header, a 1-based index or a letter like "B"."""
    codes, problems = read_codes(table, column=column)
    problems.raise_if_any()
    return codes


def read_codes(table: Table, *,
               column: str | int | None = None) -> tuple[list[CodeRow], Problems]:
    """The good codes of ``table`` and the problems of its other rows, not raised: the
    dashboard's preview lists those rows as refused. A file without a code column (or
    without rows) is still ``BadInput`` at once."""
    index, has_header = _choose_column(table, column)
    rows = table.rows if has_header else [Row(table.header_row, table.header), *table.rows]
    label = table.column_label(index) if has_header else column_letter(index)
    if not rows:
        raise _refused_at_header(table, "there are no codes below the header", key="no_codes")
    problems = Problems(file=table.file)

    def refuse(row: Row, message: str, *, key: str, **args: Any) -> None:
        # Every problem of a code is in its own cell: its row, the code column.
        problems.add(message, row=row.number, column=label, key=key, **args)

    codes: list[CodeRow] = []
    first_row_of_code: dict[str, int] = {}
    for row in rows:
        code = row.cells[index].strip()
        if not code:
            refuse(row, "the code cell is empty", key="code_empty")
        elif not is_code_like(code):
            refuse(row, f"{code!r} does not look like a code"
                   " (6–64 letters, digits and hyphens, not a date)",
                   key="not_a_code", value=code)
        else:
            # Platforms treat codes case-insensitively often enough that "abc" and "ABC"
            # in one file are far more likely a mistake than two distinct codes.
            earlier = first_row_of_code.setdefault(code.casefold(), row.number)
            if earlier != row.number:
                refuse(row, f"code {code!r} is also in row {earlier} (rows {earlier} and"
                       f" {row.number})", key="code_twice", value=code, earlier=earlier)
            else:
                codes.append(CodeRow(code=code, row=row.number))
    return codes, problems


def named_code_column(table: Table) -> bool:
    """Whether a header names the code column (else it is found by its values' shape)."""
    return bool(_named_columns(table))


def code_column(table: Table, option: str | int | None = None) -> int:
    """The index of the code column, found as ``parse_codes`` finds it."""
    return _choose_column(table, option)[0]


def code_column_label(table: Table, option: str | int | None = None) -> str:
    """How the messages name the code column: its header, or its letter in a file that
    has no header."""
    index, has_header = _choose_column(table, option)
    return table.column_label(index) if has_header else column_letter(index)


def _choose_column(table: Table, option: str | int | None) -> tuple[int, bool]:
    """The code column's index, and whether the table's first row is a header at all."""
    named = _named_columns(table)
    if option is not None:
        index, by_name = _column_from_option(table, option)
        return index, bool(named) or by_name or not _header_is_a_code(table, index)
    if len(named) == 1:
        return named[0], True
    if named:
        _raise_ambiguous(table, named)
    candidates = [i for i in range(len(table.header)) if _holds_codes(table, i)]
    if not candidates:
        raise _refused_at_header(
            table, f"no column of codes found among {_listed(table)}; name it with --column",
            key="no_code_column", columns=_labels(table))
    if len(candidates) > 1:
        _raise_ambiguous(table, candidates)
    return candidates[0], not _header_is_a_code(table, candidates[0])


def _named_columns(table: Table) -> list[int]:
    """Columns whose header names codes: exact names first, then headers with a code word."""
    keys = [header_key(header) for header in table.header]
    exact = [i for i, key in enumerate(keys) if key in _CODE_KEYS]
    return exact or [i for i, key in enumerate(keys) if _CODE_WORDS & set(key.split("_"))]


def _raise_ambiguous(table: Table, indexes: list[int]) -> None:
    which = ", ".join(repr(table.column_label(i)) for i in indexes)
    raise _refused_at_header(
        table, f"several columns could hold the codes ({which}); choose one with --column",
        key="code_columns_ambiguous", columns=[table.column_label(i) for i in indexes])


def _refused_at_header(table: Table, message: str, *, key: str,
                       **args: Any) -> ImportRefused:
    """A refusal of the file as a whole (no codes, no single code column): located at its
    header row, where the code column should have been named."""
    return ImportRefused.one(key, message, file=table.file, row=table.header_row, **args)


def _column_from_option(table: Table, option: str | int) -> tuple[int, bool]:
    """The column ``--column`` means, and whether it was named by its header."""
    text = str(option).strip()
    width = len(table.header)

    def refused(message: str, *, key: str, **args: Any) -> ImportRefused:
        # About the option, not a cell: the dashboard names its form field instead.
        return ImportRefused.one(key, message, file=table.file, option="--column", name=text,
                                 **args)

    by_name = [i for i, h in enumerate(table.header) if h and header_key(h) == header_key(text)]
    if len(by_name) > 1:
        raise refused(f"several columns are named {text!r}; give a letter or a number",
                      key="column_name_twice")
    if by_name:
        return by_name[0], True
    if text.isdigit():
        index = int(text) - 1
    elif _LETTER.fullmatch(text):
        index = _letter_index(text)
    else:
        raise refused(f"no column {text!r}; the columns are {_listed(table)}",
                      key="no_such_column", columns=_labels(table))
    if not 0 <= index < width:
        columns = "column" if width == 1 else "columns"
        raise refused(f"no column {text!r}: the file has {width} {columns}",
                      key="column_out_of_range", n=width)
    return index, False


def _letter_index(letters: str) -> int:
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


def _holds_codes(table: Table, index: int) -> bool:
    """Whether every non-empty value below the header (or in it, if alone) is code-like."""
    values = [row.cells[index] for row in table.rows if row.cells[index]]
    if not table.rows:
        values = [table.header[index]] if table.header[index] else []
    return bool(values) and all(is_code_like(value) for value in values)


def _header_is_a_code(table: Table, index: int) -> bool:
    """Whether a headerless export put a code where the header should be.

    A plain word such as "Kupony" is code-like too, so the header must also look like the
    codes below it: contain a digit, or have their shape (lengths and hyphen positions).
    """
    header = table.header[index]
    if not is_code_like(header):
        return False
    if any(c.isdigit() for c in header):
        return True
    below = next((row.cells[index] for row in table.rows if row.cells[index]), None)
    return below is not None and _shape(header) == _shape(below)


def _shape(code: str) -> str:
    return re.sub(r"[A-Za-z0-9]", "x", code)


def _labels(table: Table) -> list[str]:
    """The columns' labels, for the dashboard to quote as its language does."""
    return [table.column_label(i) for i in range(len(table.header))]


def _listed(table: Table) -> str:
    return ", ".join(repr(table.column_label(i)) for i in range(len(table.header))) or "none"
