"""The code file (SPEC §4): the code column is found, every code is checked, none twice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest

from mailbot.errors import BadInput
from mailbot.imports.codes import CodeRow, is_code_like, parse_codes
from mailbot.imports.tables import Table, read_table

DATA = Path(__file__).parent / "data"


def csv_table(tmp_path: Path, text: str, *, name: str = "kody.csv") -> Table:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return read_table(path)


def codes_of(table: Table, **options: object) -> list[str]:
    return [row.code for row in parse_codes(table, **options)]  # type: ignore[arg-type]


def bad_input(table: Table, **options: object) -> BadInput:
    with pytest.raises(BadInput) as caught:
        parse_codes(table, **options)  # type: ignore[arg-type]
    return caught.value


# --- finding the column ------------------------------------------------------------------


def test_a_code_column_is_found_by_its_polish_header(tmp_path: Path) -> None:
    # "Kod" beside a counter and a date column.
    table = csv_table(tmp_path, "Lp.;Kod;Data\n1;ABCD-1234-EFGH;2024-05-02\n2;IJKL-5678-MNOP;2024-05-02\n")
    assert parse_codes(table) == [CodeRow("ABCD-1234-EFGH", row=2), CodeRow("IJKL-5678-MNOP", row=3)]


@pytest.mark.parametrize(
    "header",
    ["kod", "KOD", "Kody", "code", "Codes", "Kod dostępu", "kod dostepu", "KOD_DOSTĘPU",
     "Access code", "Voucher", "Kod aktywacyjny", "Kod Legimi", "Voucher ID"],
)
def test_a_code_column_is_found_by_any_usual_header(tmp_path: Path, header: str) -> None:
    # Case, accents, separators and an extra word do not matter.
    table = csv_table(tmp_path, f"Uwagi;{header}\nx;ABCDEF12\n")
    assert codes_of(table) == ["ABCDEF12"]


def test_the_generation_date_column_is_not_taken_for_the_codes(tmp_path: Path) -> None:
    # "Data wygenerowania kodu" mentions codes but holds dates; the unnamed codes win.
    table = csv_table(tmp_path, "Numer;Data wygenerowania kodu\nABCDEF12;2024-05-02\n")
    assert codes_of(table) == ["ABCDEF12"]


def test_a_legimi_html_export_saved_as_xls_gives_its_codes(tmp_path: Path) -> None:
    # The panel's HTML table with <th>Kod</th>: codes from rows 2 and 3.
    path = tmp_path / "legimi_maj.xls"
    path.write_text(
        '<html><head><meta charset="utf-8"></head><body><table>'
        "<tr><th>Kod</th><th>Data wygenerowania</th></tr>"
        "<tr><td>ABCD-1234-EFGH</td><td>2024-05-02</td></tr>"
        "<tr><td>IJKL-5678-MNOP</td><td>2024-05-02</td></tr>"
        "</table></body></html>",
        encoding="utf-8",
    )
    assert parse_codes(read_table(path)) == [
        CodeRow("ABCD-1234-EFGH", row=2),
        CodeRow("IJKL-5678-MNOP", row=3),
    ]


def test_without_a_known_header_the_one_code_like_column_is_taken(tmp_path: Path) -> None:
    # "Lp." counts 1, 2, 3 and "Wygenerowano" holds dates: only column B looks like codes.
    table = csv_table(
        tmp_path,
        "Lp.;Numer;Wygenerowano\n1;QWER5678TY;2024-05-02\n2;ASDF1234GH;2024-05-02\n3;ZXCV9012BN;2024-05-03\n",
    )
    assert codes_of(table) == ["QWER5678TY", "ASDF1234GH", "ZXCV9012BN"]


def test_an_export_without_header_starts_with_a_code_in_row_1(tmp_path: Path) -> None:
    # No header at all: row 1 is data and keeps its number.
    table = csv_table(tmp_path, "ABCD-1234-EFGH;2024-05-02\nIJKL-5678-MNOP;2024-05-02\n")
    assert parse_codes(table) == [CodeRow("ABCD-1234-EFGH", row=1), CodeRow("IJKL-5678-MNOP", row=2)]


def test_a_one_column_export_without_header_gives_every_code(tmp_path: Path) -> None:
    # A plain list of codes, one a line.
    table = csv_table(tmp_path, "ABCDEF12\nGHIJKL34\nMNOPQR56\n")
    assert codes_of(table) == ["ABCDEF12", "GHIJKL34", "MNOPQR56"]


def test_a_single_code_without_header_is_one_code(tmp_path: Path) -> None:
    # One line, one code: it is not a header with nothing below.
    assert parse_codes(csv_table(tmp_path, "ABCD-1234-EFGH\n")) == [CodeRow("ABCD-1234-EFGH", row=1)]


def test_a_plain_word_header_is_not_taken_for_a_code(tmp_path: Path) -> None:
    # "Kupony" is six letters, like a code, but nothing like the codes below it.
    table = csv_table(tmp_path, "Kupony\nABCD-1234-EFGH\n")
    assert parse_codes(table) == [CodeRow("ABCD-1234-EFGH", row=2)]


@pytest.mark.parametrize("column", ["Numer", "numer", "2", 2, "B", "b"])
def test_the_column_option_names_a_header_a_number_or_a_letter(tmp_path: Path, column: object) -> None:
    # --column picks column B however it is written, over the "Kod" header.
    table = csv_table(tmp_path, "Kod;Numer\nX;ABCDEF12\nY;GHIJKL34\n")
    assert parse_codes(table, column=column) == [CodeRow("ABCDEF12", row=2), CodeRow("GHIJKL34", row=3)]


def test_the_column_option_settles_two_candidates(tmp_path: Path) -> None:
    # Two code-like columns; --column A chooses.
    table = csv_table(tmp_path, "Seria;Numer\nSERIA-001;ABCDEF12\n")
    assert codes_of(table, column="A") == ["SERIA-001"]


def test_the_column_option_on_a_headerless_export_keeps_row_1(tmp_path: Path) -> None:
    # --column 1 on a file whose first row is already a code.
    table = csv_table(tmp_path, "ABCD-1234-EFGH;x\nIJKL-5678-MNOP;y\n")
    assert codes_of(table, column="1") == ["ABCD-1234-EFGH", "IJKL-5678-MNOP"]


def test_a_legacy_xls_code_file_is_read() -> None:
    # The committed XLS fixture: "Kod" column, a blank row 4, a code stored as a number.
    assert parse_codes(read_table(DATA / "codes_legacy.xls")) == [
        CodeRow("LGM-7Q2X-K9PA", row=2),
        CodeRow("LGM-3ZT8-W4MB", row=3),
        CodeRow("48213377", row=5),
    ]


def test_an_xlsx_code_stored_as_a_number_has_no_decimal_point(tmp_path: Path) -> None:
    # 48213377 typed into Excel is the code "48213377", never "48213377.0".
    workbook = openpyxl.Workbook()
    workbook.active.append(["Kod", "Wygenerowano"])
    workbook.active.append([48213377, dt.datetime(2024, 5, 2, 10, 0)])
    workbook.active.append(["ABCD-1234", dt.datetime(2024, 5, 2, 10, 0)])
    workbook.save(tmp_path / "kody.xlsx")
    assert codes_of(read_table(tmp_path / "kody.xlsx")) == ["48213377", "ABCD-1234"]


def test_codes_are_stripped_and_keep_their_case(tmp_path: Path) -> None:
    # " abCD-1234 " → "abCD-1234".
    assert codes_of(csv_table(tmp_path, "Kod\n  abCD-1234 \n")) == ["abCD-1234"]


def test_what_looks_like_a_code() -> None:
    # Letters, digits, hyphens, 6 to 64 long, not starting with a hyphen, not a date.
    assert is_code_like("ABCD-1234-EFGH")
    assert is_code_like("123456")
    assert not is_code_like("12345")
    assert not is_code_like("-ABCDEF")
    assert not is_code_like("ABCD 1234")
    assert not is_code_like("2024-05-02")
    assert not is_code_like("A" * 65)


# --- errors ------------------------------------------------------------------------------


def test_no_code_column_is_bad_input_listing_the_headers(tmp_path: Path) -> None:
    # Nothing named like codes, nothing code-like: say what columns there are.
    error = bad_input(csv_table(tmp_path, "Lp.;Data\n1;2024-05-02\n"))
    assert str(error) == (
        "kody.csv, row 1: no column of codes found among 'Lp.', 'Data'; name it with --column"
    )


def test_two_code_like_columns_are_bad_input_listing_them(tmp_path: Path) -> None:
    # "Seria" and "Numer" both hold code-like values: do not guess.
    error = bad_input(csv_table(tmp_path, "Lp.;Seria;Numer\n1;SERIA-001;ABCDEF12\n"))
    assert str(error) == (
        "kody.csv, row 1: several columns could hold the codes ('Seria', 'Numer'); "
        "choose one with --column"
    )


def test_two_code_headers_are_bad_input_listing_them(tmp_path: Path) -> None:
    # "Kod" and "Kody" side by side.
    error = bad_input(csv_table(tmp_path, "Kod;Kody\nABCDEF12;GHIJKL34\n"))
    assert str(error) == (
        "kody.csv, row 1: several columns could hold the codes ('Kod', 'Kody'); choose one with --column"
    )


def test_an_unknown_column_option_is_bad_input_listing_the_headers(tmp_path: Path) -> None:
    # --column "Numer kodu" where there is no such header.
    error = bad_input(csv_table(tmp_path, "Lp.;Kod\n1;ABCDEF12\n"), column="Numer kodu")
    assert str(error) == "kody.csv: no column 'Numer kodu'; the columns are 'Lp.', 'Kod'"


def test_a_column_option_beyond_the_last_column_is_bad_input(tmp_path: Path) -> None:
    # --column 5 in a two-column file.
    error = bad_input(csv_table(tmp_path, "Lp.;Kod\n1;ABCDEF12\n"), column="5")
    assert str(error) == "kody.csv: no column '5': the file has 2 columns"


def test_an_empty_code_cell_is_bad_input_naming_the_row(tmp_path: Path) -> None:
    # Row 3 has a counter but no code.
    error = bad_input(csv_table(tmp_path, "Lp.;Kod\n1;ABCDEF12\n2;\n3;GHIJKL34\n"))
    assert str(error) == "kody.csv, row 3, column 'Kod': the code cell is empty"
    assert (error.row, error.column) == (3, "Kod")


def test_a_value_that_is_not_a_code_is_bad_input_naming_the_row(tmp_path: Path) -> None:
    # A summary line "Razem: 2" at the bottom of the export.
    error = bad_input(csv_table(tmp_path, "Kod\nABCDEF12\nGHIJKL34\nRazem: 2\n"))
    assert str(error) == (
        "kody.csv, row 4, column 'Kod': 'Razem: 2' does not look like a code"
        " (6–64 letters, digits and hyphens, not a date)"
    )


def test_a_date_in_the_code_column_is_bad_input(tmp_path: Path) -> None:
    # Columns pasted in the wrong order: a date where a code should be.
    error = bad_input(csv_table(tmp_path, "Kod;Data\nABCDEF12;x\n2024-05-02;y\n"))
    assert (error.row, error.column) == (3, "Kod")
    assert "'2024-05-02' does not look like a code" in str(error)


def test_a_code_twice_is_bad_input_naming_both_rows(tmp_path: Path) -> None:
    # The same code in rows 2 and 4 (in other case): issuing it twice would fail a patron.
    error = bad_input(csv_table(tmp_path, "Kod\nABCD-1234\nEFGH-5678\nabcd-1234\n"))
    assert str(error) == "kody.csv, row 4, column 'Kod': code 'abcd-1234' is also in row 2 (rows 2 and 4)"


def test_errors_in_a_headerless_export_name_the_column_by_letter(tmp_path: Path) -> None:
    # No header, so the column is "A"; the duplicate is in rows 1 and 3.
    error = bad_input(csv_table(tmp_path, "ABCDEF12\nGHIJKL34\nABCDEF12\n"))
    assert str(error) == "kody.csv, row 3, column 'A': code 'ABCDEF12' is also in row 1 (rows 1 and 3)"


def test_every_bad_code_is_listed_in_one_error(tmp_path: Path) -> None:
    # An empty cell, a bad value and a duplicate: all three reported at once.
    error = bad_input(csv_table(tmp_path, "Lp.;Kod\n1;ABCDEF12\n2;\n3;zły kod\n4;ABCDEF12\n"))
    assert str(error).splitlines()[1:] == [
        "3 problems in this file:",
        "  row 3, column 'Kod': the code cell is empty",
        "  row 4, column 'Kod': 'zły kod' does not look like a code (6–64 letters, digits and hyphens, not a date)",
        "  row 5, column 'Kod': code 'ABCDEF12' is also in row 2 (rows 2 and 5)",
    ]


def test_a_header_without_codes_is_bad_input(tmp_path: Path) -> None:
    # The export of an empty pool: nothing to add is a mistake worth telling.
    error = bad_input(csv_table(tmp_path, "Kod;Data wygenerowania\n"))
    assert str(error) == "kody.csv, row 1: there are no codes below the header"
