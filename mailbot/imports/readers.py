"""Interpreting a reader file (the library system's export of patrons) as reader rows.

Pure: a ``Table`` in, a list of ``ReaderRow`` out, or one ``BadInput`` listing every problem
found (file, row and column of each). Nothing is written anywhere, so the caller can apply
the result all or nothing.

Headers are matched case-, accent- and separator-insensitively, in English or Polish
(SPEC §4 "Reader file"). A header we do not know is an error rather than a column silently
ignored: a typo such as "zadluzneie" would otherwise import every patron as owing nothing.
Dates and amounts are read by ``mailbot.values``, as the SQL and SIP2 sources read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from mailbot.imports.problems import CellError, ImportRefused, Problems
from mailbot.imports.tables import Row, Table, header_key
from mailbot.rules.base import ReaderFacts
from mailbot.values import parse_amount, parse_date, parse_yes_no

__all__ = [
    "COLUMN_NAMES",
    "REQUIRED_COLUMNS",
    "ReaderRow",
    "parse_balance_due",
    "parse_count",
    "parse_email",
    "parse_readers",
]


@dataclass(frozen=True)
class ReaderRow(ReaderFacts):
    """One patron as the library system exported them; ``row`` is the file's row number."""

    row: int = 0


# Field → the headers accepted for it (compared through ``header_key``).
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "card_number": ("card_number", "numer_karty", "nr_karty"),
    "first_name": ("first_name", "imie"),
    "last_name": ("last_name", "nazwisko"),
    "email": ("email", "e-mail", "adres_email", "adres e-mail", "mail"),
    "valid_until": ("valid_until", "wazna_do", "konto_wazne_do", "wazne_do"),
    "balance_due": ("balance_due", "zadluzenie"),
    "overdue_items": ("overdue_items", "przetrzymania"),
    "data_updated_on": ("data_updated_on", "aktualizacja_danych"),
    "last_loan_on": ("last_loan_on", "ostatnie_wypozyczenie"),
    "birth_date": ("birth_date", "data_urodzenia"),
    # Confirmed at the desk (tak/nie; empty: not known): an account created online and
    # never confirmed is refused where the library requires confirmed accounts.
    "confirmed": ("confirmed", "potwierdzone", "potwierdzony", "potwierdzona",
                  "konto_potwierdzone", "potwierdzenie", "registered_at_desk",
                  "zarejestrowany_w_bibliotece", "potwierdzone_w_bibliotece"),
}
REQUIRED_COLUMNS = ("card_number", "last_name")

_FIELD_BY_KEY = {header_key(name): field for field, names in COLUMN_NAMES.items() for name in names}

_EMAIL = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s.]+")
# What Excel makes of a long card number in a CSV: 1.23457E+11. The digits are gone.
_SCIENTIFIC = re.compile(r"\d+([.,]\d+)?[eE][+-]?\d+")


def reader_field(header: str) -> str | None:
    """The reader field a header names (in any of its known names), or None."""
    return _FIELD_BY_KEY.get(header_key(header))


def parse_readers(table: Table, *, required: tuple[str, ...] = ()) -> list[ReaderRow]:
    """Every reader in ``table``; raises one ``BadInput`` listing all problems found.

    ``required``: fields the library's policy needs besides the card and the surname (a
    library requiring confirmed accounts needs ``confirmed``: without the column every
    reader would be "not known" and none refused)."""
    columns = _map_columns(table, REQUIRED_COLUMNS + tuple(
        f for f in required if f not in REQUIRED_COLUMNS))
    if not table.rows:
        raise ImportRefused.one(
            "no_readers", "there are no readers below the header", file=table.file,
            row=table.header_row,
        )
    problems = Problems(file=table.file)
    readers: list[ReaderRow] = []
    first_row_of_card: dict[str, int] = {}
    for row in table.rows:
        reader = _parse_row(row, columns=columns, table=table, problems=problems)
        if reader is None:
            continue
        earlier = first_row_of_card.setdefault(reader.card_number, reader.row)
        if earlier != reader.row:
            problems.add(
                f"card number {reader.card_number!r} is also in row {earlier}"
                f" (rows {earlier} and {reader.row})",
                row=reader.row,
                column=table.column_label(columns["card_number"]),
                key="card_twice",
                value=reader.card_number,
                earlier=earlier,
            )
        readers.append(reader)
    problems.raise_if_any()
    return readers


def _map_columns(table: Table, required: tuple[str, ...] = REQUIRED_COLUMNS) -> dict[str, int]:
    """Field → column index; every header problem is reported before any row is read."""
    problems = Problems(file=table.file)
    columns: dict[str, int] = {}
    for index, header in enumerate(table.header):
        label = table.column_label(index)
        if not header:
            if any(row.cells[index] for row in table.rows):
                problems.add(
                    "this column has values but no header", row=table.header_row, column=label,
                    key="values_no_header",
                )
            continue
        field = _FIELD_BY_KEY.get(header_key(header))
        if field is None:
            problems.add(
                f"unknown column {header!r}; the known columns are {_known_names()}",
                row=table.header_row,
                column=header,
                key="unknown_column",
                name=header,
                known=_known_names(),
            )
        elif field in columns:
            problems.add(
                f"columns {table.header[columns[field]]!r} and {header!r} both mean {field}",
                row=table.header_row,
                column=header,
                key="columns_same_field",
                first=table.header[columns[field]],
                second=header,
            )
        else:
            columns[field] = index
    for field in required:
        if field not in columns:
            names = " or ".join(repr(name) for name in COLUMN_NAMES[field][:2])
            problems.add(f"the required column {names} is missing", row=table.header_row,
                         key="required_missing", names=list(COLUMN_NAMES[field][:2]))
    problems.raise_if_any()
    return columns


def _known_names() -> str:
    return ", ".join(f"{names[0]}|{names[1]}" for names in COLUMN_NAMES.values())


def _parse_row(
    row: Row, *, columns: dict[str, int], table: Table, problems: Problems
) -> ReaderRow | None:
    values: dict[str, object] = {}
    ok = True
    for field, parse in _PARSERS.items():
        index = columns.get(field)
        # A column left out of the file reads as empty cells, which every parser turns
        # into the field's default (no e-mail, nothing owed, …).
        text = row.cells[index].strip() if index is not None else ""
        try:
            values[field] = parse(text)
        except ValueError as exc:
            key, args = ((exc.key, exc.values) if isinstance(exc, CellError)
                         else (_VALUE_PROBLEM[field], {"value": text}))
            problems.add(str(exc), row=row.number, column=table.column_label(index or 0),
                         key=key, **args)
            ok = False
    return ReaderRow(**values, row=row.number) if ok else None  # type: ignore[arg-type]


# --- one cell each; a ValueError's text is what the user reads ---------------------------


def parse_card_number(text: str) -> str:
    if not text:
        raise CellError("card_empty", "the card number is empty")
    if _SCIENTIFIC.fullmatch(text):
        raise CellError(
            "card_scientific",
            f"{text!r} is a card number mangled by Excel into scientific notation;"
            " format the column as text and export again",
            value=text,
        )
    return text


def parse_name(text: str) -> str:
    return " ".join(text.split())


def parse_last_name(text: str) -> str:
    name = parse_name(text)
    if not name:
        raise CellError("last_name_empty", "the last name is empty")
    return name


def parse_email(text: str) -> str | None:
    if not text:
        return None
    address = text.lower()
    if not _EMAIL.fullmatch(address):
        raise CellError("not_email", f"{text!r} is not an e-mail address", value=text)
    return address


def parse_balance_due(text: str) -> Decimal:
    """Money owed, read as ``mailbot.values.parse_amount`` reads it; it cannot be negative."""
    if text.startswith(("-", "\u2212", "(")):
        raise CellError("negative_balance", f"{text!r}: the balance due cannot be negative",
                        value=text)
    amount = parse_amount(text)
    if amount < 0:  # "zł -5": the sign after the currency
        raise CellError("negative_balance", f"{text!r}: the balance due cannot be negative",
                        value=text)
    return amount


def parse_count(text: str) -> int:
    if not text:
        return 0
    if text.startswith(("-", "\u2212")):
        raise CellError("negative_count",
                        f"{text!r}: the number of overdue items cannot be negative", value=text)
    if not text.isdigit():
        raise CellError("not_whole", f"{text!r} is not a whole number of items", value=text)
    return int(text)


_PARSERS: dict[str, Callable[[str], object]] = {
    "card_number": parse_card_number,
    "first_name": parse_name,
    "last_name": parse_last_name,
    "email": parse_email,
    "valid_until": parse_date,
    "balance_due": parse_balance_due,
    "overdue_items": parse_count,
    "data_updated_on": parse_date,
    "last_loan_on": parse_date,
    "birth_date": parse_date,
    "confirmed": parse_yes_no,
}

# The dashboard's wording of a cell mailbot.values refused (a plain ValueError), by field.
_VALUE_PROBLEM: dict[str, str] = {
    "card_number": "bad_value", "first_name": "bad_value", "last_name": "bad_value",
    "email": "not_email", "valid_until": "bad_date", "balance_due": "bad_amount",
    "overdue_items": "not_whole", "data_updated_on": "bad_date", "last_loan_on": "bad_date",
    "birth_date": "bad_date", "confirmed": "not_yes_no",
}
