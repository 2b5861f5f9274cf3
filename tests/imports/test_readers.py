"""The reader file (SPEC §4): headers in English or Polish, values checked, all-or-nothing."""

from __future__ import annotations

import datetime as dt
from datetime import date
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from mailbot.errors import BadInput
from mailbot.imports.readers import (
    ReaderRow,
    parse_balance_due,
    parse_email,
    parse_readers,
)
from mailbot.imports.tables import Table, read_table
from mailbot.values import parse_date

DATA = Path(__file__).parent / "data"


def csv_table(tmp_path: Path, text: str, *, name: str = "czytelnicy.csv", encoding: str = "utf-8") -> Table:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return read_table(path)


def bad_input(table: Table) -> BadInput:
    with pytest.raises(BadInput) as caught:
        parse_readers(table)
    return caught.value


# --- headers -----------------------------------------------------------------------------


def test_english_headers_give_every_field(tmp_path: Path) -> None:
    # One row with every column filled, in the SPEC's English names.
    table = csv_table(
        tmp_path,
        "card_number,first_name,last_name,email,valid_until,balance_due,overdue_items,"
        "data_updated_on,last_loan_on\n"
        "0001234,Anna,Nowak,Anna.Nowak@Example.PL,2025-12-31,12.50,2,2024-02-01,2024-04-30\n",
    )
    assert parse_readers(table) == [
        ReaderRow(
            card_number="0001234",
            first_name="Anna",
            last_name="Nowak",
            email="anna.nowak@example.pl",
            valid_until=date(2025, 12, 31),
            balance_due=Decimal("12.50"),
            overdue_items=2,
            data_updated_on=date(2024, 2, 1),
            last_loan_on=date(2024, 4, 30),
            birth_date=None,
            row=2,
        )
    ]


def test_polish_headers_with_accents_spaces_and_any_case_are_understood(tmp_path: Path) -> None:
    # "Numer karty", "IMIĘ", "Ważna do", "Zadłużenie", "Aktualizacja-danych" … all map.
    table = csv_table(
        tmp_path,
        "Numer karty;IMIĘ;Nazwisko;E-mail;Ważna do;Zadłużenie;Przetrzymania;"
        "Aktualizacja-danych;ostatnie_wypożyczenie\r\n"
        "0042;Łucja;Żółkiewska;lucja@example.pl;31.12.2025;1 234,50 zł;0;1.2.2024;30.04.2024\r\n",
        encoding="cp1250",
    )
    [reader] = parse_readers(table)
    assert (reader.card_number, reader.first_name, reader.last_name) == ("0042", "Łucja", "Żółkiewska")
    assert reader.valid_until == date(2025, 12, 31)
    assert reader.balance_due == Decimal("1234.50")
    assert reader.data_updated_on == date(2024, 2, 1)
    assert reader.last_loan_on == date(2024, 4, 30)


def test_optional_columns_may_be_left_out(tmp_path: Path) -> None:
    # Only the card number and the last name: no e-mail, no debt, no dates.
    [reader] = parse_readers(csv_table(tmp_path, "numer_karty,nazwisko\n7,Kos\n"))
    assert reader == ReaderRow("7", "", "Kos", None, None, Decimal(0), 0, None, None, None, row=2)


def test_empty_optional_cells_take_the_defaults(tmp_path: Path) -> None:
    # Empty amount means nothing owed; empty count means nothing overdue.
    [reader] = parse_readers(
        csv_table(tmp_path, "numer_karty;nazwisko;email;zadluzenie;przetrzymania;wazna_do\n7;Kos;;;;\n")
    )
    assert (reader.email, reader.balance_due, reader.overdue_items, reader.valid_until) == (
        None,
        Decimal(0),
        0,
        None,
    )


def test_a_missing_card_number_column_is_bad_input_naming_it(tmp_path: Path) -> None:
    # Without card numbers nothing can be matched.
    error = bad_input(csv_table(tmp_path, "imie,nazwisko\nAnna,Nowak\n"))
    assert str(error) == "czytelnicy.csv, row 1: the required column 'card_number' or 'numer_karty' is missing"


def test_a_missing_last_name_column_is_bad_input_naming_it(tmp_path: Path) -> None:
    # The surname is what a request is checked against.
    error = bad_input(csv_table(tmp_path, "numer_karty,imie\n1,Anna\n"))
    assert str(error) == "czytelnicy.csv, row 1: the required column 'last_name' or 'nazwisko' is missing"


def test_an_unknown_column_is_bad_input_not_silently_dropped(tmp_path: Path) -> None:
    # "zadluznie" is a typo for "zadluzenie": ignoring it would clear every debt.
    error = bad_input(csv_table(tmp_path, "numer_karty,nazwisko,zadluznie\n1,Nowak,5\n"))
    assert (error.file, error.row, error.column) == ("czytelnicy.csv", 1, "zadluznie")
    assert str(error).startswith("czytelnicy.csv, row 1, column 'zadluznie': unknown column 'zadluznie';")
    assert "balance_due|zadluzenie" in str(error)


def test_two_columns_meaning_the_same_field_are_bad_input(tmp_path: Path) -> None:
    # "email" and "adres e-mail" side by side: which one is right?
    error = bad_input(csv_table(tmp_path, "numer_karty,nazwisko,email,adres e-mail\n1,Nowak,a@b.pl,c@d.pl\n"))
    assert str(error) == (
        "czytelnicy.csv, row 1, column 'adres e-mail': "
        "columns 'email' and 'adres e-mail' both mean email"
    )


def test_values_under_a_column_without_header_are_bad_input(tmp_path: Path) -> None:
    # Column C has data but no header: say which column by its letter.
    error = bad_input(csv_table(tmp_path, "numer_karty,nazwisko,\n1,Nowak,x\n"))
    assert str(error) == "czytelnicy.csv, row 1, column 'C': this column has values but no header"


def test_an_empty_column_without_header_is_ignored(tmp_path: Path) -> None:
    # A trailing separator on the header only is harmless.
    table = csv_table(tmp_path, "numer_karty;nazwisko;;\n1;Nowak;;\n")
    assert [r.card_number for r in parse_readers(table)] == ["1"]


def test_a_header_without_rows_is_bad_input(tmp_path: Path) -> None:
    # An empty refresh must not look like "all readers are gone".
    error = bad_input(csv_table(tmp_path, "numer_karty,nazwisko\n"))
    assert str(error) == "czytelnicy.csv, row 1: there are no readers below the header"


# --- values ------------------------------------------------------------------------------


def test_card_numbers_keep_their_leading_zeros(tmp_path: Path) -> None:
    # "000123" stays "000123".
    [reader] = parse_readers(csv_table(tmp_path, "numer_karty,nazwisko\n  000123 ,Nowak\n"))
    assert reader.card_number == "000123"


def test_names_are_stripped_and_inner_spaces_collapsed(tmp_path: Path) -> None:
    # "  Anna   Maria " → "Anna Maria".
    [reader] = parse_readers(csv_table(tmp_path, "numer_karty,imie,nazwisko\n1,  Anna   Maria ,Nowak  \n"))
    assert (reader.first_name, reader.last_name) == ("Anna Maria", "Nowak")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", date(2024, 5, 1)),
        ("01.05.2024", date(2024, 5, 1)),
        ("1.5.2024", date(2024, 5, 1)),
        ("2024-05-01 13:45:00", date(2024, 5, 1)),
        ("", None),
    ],
)
def test_dates_are_iso_or_polish(text: str, expected: date | None) -> None:
    # ISO, DD.MM.YYYY and D.M.YYYY; a time after the date is ignored.
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.50", "12.50"),
        ("12,50", "12.50"),
        ("1 234,50", "1234.50"),
        ("1\u00a0234,50", "1234.50"),
        ("12,50 zł", "12.50"),
        ("12,50 PLN", "12.50"),
        ("1.234,50", "1234.50"),
        ("1,234.50", "1234.50"),
        ("7", "7"),
        ("", "0"),
    ],
)
def test_amounts_are_read_with_dot_or_comma(text: str, expected: str) -> None:
    # Decimal comma, thousands spaces and a currency suffix are all usual.
    assert parse_balance_due(text) == Decimal(expected)


def test_emails_are_lowercased() -> None:
    # Addresses are compared with the sender; case must not matter.
    assert parse_email("Jan.Kowalski@Poczta.Onet.PL") == "jan.kowalski@poczta.onet.pl"


def test_an_xlsx_with_numeric_card_and_date_cells_is_read(tmp_path: Path) -> None:
    # A card typed as a number arrives without ".0"; a date cell arrives as a date.
    workbook = openpyxl.Workbook()
    workbook.active.append(["Numer karty", "Nazwisko", "Ważna do", "Zadłużenie"])
    workbook.active.append([1234567, "Nowak", dt.datetime(2025, 6, 30), 2.5])
    workbook.save(tmp_path / "czytelnicy.xlsx")
    [reader] = parse_readers(read_table(tmp_path / "czytelnicy.xlsx"))
    assert (reader.card_number, reader.valid_until, reader.balance_due) == (
        "1234567",
        date(2025, 6, 30),
        Decimal("2.5"),
    )


def test_a_legacy_xls_reader_file_is_read() -> None:
    # The committed XLS fixture: Polish headers, a date cell, a numeric amount.
    first, second = parse_readers(read_table(DATA / "readers_legacy.xls"))
    assert first == ReaderRow(
        card_number="0001234",
        first_name="Łucja",
        last_name="Żółkiewska",
        email="lucja@example.pl",
        valid_until=date(2025, 12, 31),
        balance_due=Decimal("12.5"),
        overdue_items=0,
        data_updated_on=None,
        last_loan_on=None,
        birth_date=None,
        row=2,
    )
    assert (second.card_number, second.email, second.balance_due) == ("9876543", None, Decimal(0))


# --- errors, each located by row and column ----------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("wazna_do", "31-12-2025", "'31-12-2025' is not a date (expected YYYY-MM-DD or DD.MM.YYYY)"),
        ("wazna_do", "31.02.2025", "'31.02.2025' is not a day of the calendar"),
        ("zadluzenie", "dużo", "'dużo' is not an amount (expected e.g. 12.50, 12,50 or 1 234,50 zł)"),
        ("zadluzenie", "12,", "'12,' is not an amount (expected e.g. 12.50, 12,50 or 1 234,50 zł)"),
        ("zadluzenie", "-5,00", "'-5,00': the balance due cannot be negative"),
        ("zadluzenie", "PLN -5", "'PLN -5': the balance due cannot be negative"),
        ("zadluzenie", "1.234", "'1.234' is ambiguous: 1234 or 1.234? "
                                "(write 1234 or 1 234 if thousands are meant)"),
        ("zadluzenie", "12 50", "'12 50' is not an amount (expected e.g. 12.50, 12,50 or 1 234,50 zł)"),
        ("wazna_do", "05/01/2025", "'05/01/2025' is not a date (expected YYYY-MM-DD or DD.MM.YYYY)"),
        ("przetrzymania", "-1", "'-1': the number of overdue items cannot be negative"),
        ("przetrzymania", "dwa", "'dwa' is not a whole number of items"),
        ("email", "jan@", "'jan@' is not an e-mail address"),
        ("email", "jan@localhost", "'jan@localhost' is not an e-mail address"),
        ("email", "a@b.pl c@d.pl", "'a@b.pl c@d.pl' is not an e-mail address"),
    ],
)
def test_a_bad_value_is_bad_input_naming_row_and_column(
    tmp_path: Path, header: str, value: str, message: str
) -> None:
    # The second reader (row 3) has the bad value in column `header`.
    table = csv_table(tmp_path, f"numer_karty;nazwisko;{header}\n1;Nowak;\n2;Kos;{value}\n")
    error = bad_input(table)
    assert str(error) == f"czytelnicy.csv, row 3, column {header!r}: {message}"
    assert (error.file, error.row, error.column) == ("czytelnicy.csv", 3, header)


def test_an_empty_card_number_is_bad_input(tmp_path: Path) -> None:
    # Row 3 has a name but no card.
    error = bad_input(csv_table(tmp_path, "Numer karty,Nazwisko\n1,Nowak\n,Kos\n"))
    assert str(error) == "czytelnicy.csv, row 3, column 'Numer karty': the card number is empty"


def test_an_empty_last_name_is_bad_input(tmp_path: Path) -> None:
    # Row 2 has a card but no surname to check requests against.
    error = bad_input(csv_table(tmp_path, "numer_karty,nazwisko\n1, \n"))
    assert str(error) == "czytelnicy.csv, row 2, column 'nazwisko': the last name is empty"


def test_a_card_number_mangled_by_excel_is_bad_input(tmp_path: Path) -> None:
    # "1.23457E+11": the real digits are lost; importing it would match nobody.
    error = bad_input(csv_table(tmp_path, "numer_karty;nazwisko\n1,23457E+11;Nowak\n"))
    assert str(error).startswith(
        "czytelnicy.csv, row 2, column 'numer_karty': '1,23457E+11' is a card number mangled by Excel"
    )


def test_a_card_number_twice_is_bad_input_naming_both_rows(tmp_path: Path) -> None:
    # Card 0007 in rows 2 and 4: which record is right is for a person to decide.
    error = bad_input(csv_table(tmp_path, "numer_karty,nazwisko\n0007,Nowak\n0008,Kos\n0007,Nowakowa\n"))
    assert str(error) == (
        "czytelnicy.csv, row 4, column 'numer_karty': card number '0007' is also in row 2 (rows 2 and 4)"
    )


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    # Three bad rows: one run reports all three, located at the first.
    table = csv_table(
        tmp_path,
        "numer_karty;nazwisko;email;wazna_do\n"
        "1;Nowak;zly-adres;2025-01-01\n"
        "2;Kos;kos@example.pl;wczoraj\n"
        ";Lis;;\n",
    )
    error = bad_input(table)
    assert (error.row, error.column) == (2, "email")
    assert str(error).splitlines() == [
        "czytelnicy.csv, row 2, column 'email': 'zly-adres' is not an e-mail address",
        "3 problems in this file:",
        "  row 2, column 'email': 'zly-adres' is not an e-mail address",
        "  row 3, column 'wazna_do': 'wczoraj' is not a date (expected YYYY-MM-DD or DD.MM.YYYY)",
        "  row 4, column 'numer_karty': the card number is empty",
    ]


def test_at_most_twenty_problems_are_listed(tmp_path: Path) -> None:
    # 30 bad e-mails: 20 listed, the rest counted.
    rows = "".join(f"{n};Nowak;zly\n" for n in range(30))
    message = str(bad_input(csv_table(tmp_path, "numer_karty;nazwisko;email\n" + rows)))
    assert "30 problems in this file:" in message
    assert message.count("is not an e-mail address") == 21  # the first line, then 20 listed
    assert message.endswith("  … and 10 more")


def test_header_problems_are_reported_together(tmp_path: Path) -> None:
    # An unknown column and a missing required one in the same header.
    message = str(bad_input(csv_table(tmp_path, "numer_karty,nazwsko\n1,Nowak\n")))
    assert "  row 1, column 'nazwsko': unknown column 'nazwsko';" in message
    assert "  row 1: the required column 'last_name' or 'nazwisko' is missing" in message
