"""Reading import files of every format staff meet into one header-and-rows shape."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pytest

from mailbot.errors import BadInput
from mailbot.imports.problems import Problems
from mailbot.imports.tables import Row, column_letter, header_key, read_table

DATA = Path(__file__).parent / "data"

LEGIMI_EXPORT = (
    '<html><head><meta charset="utf-8"></head><body>'
    "<table><tr><th>Kod</th><th>Data wygenerowania</th></tr>"
    "<tr><td>ABCD-1234-EFGH</td><td>2024-05-02 10:15:00</td></tr>"
    "<tr><td>IJKL-5678-MNOP</td><td>2024-05-02 10:15:00</td></tr>"
    "</table></body></html>"
)


def write_xlsx(path: Path, rows: list[list[object]], *, title: str = "Arkusz1") -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


# --- XLSX --------------------------------------------------------------------------------


def test_xlsx_cells_come_out_as_the_text_a_person_typed(tmp_path: Path) -> None:
    # Numbers lose a trailing ".0", dates become ISO, empty cells become "".
    path = write_xlsx(
        tmp_path / "czytelnicy.xlsx",
        [
            ["numer_karty", "nazwisko", "wazna_do", "zadluzenie", "email"],
            [1234567, "Nowak", dt.datetime(2025, 12, 31), 12.5, None],
            [7654321.0, "Kowalski", dt.date(2024, 1, 5), 0.1 + 0.2, "jan@example.pl"],
        ],
    )
    table = read_table(path)
    assert table.file == "czytelnicy.xlsx"
    assert table.header == ["numer_karty", "nazwisko", "wazna_do", "zadluzenie", "email"]
    assert table.header_row == 1
    assert table.rows == [
        Row(2, ["1234567", "Nowak", "2025-12-31", "12.5", ""]),
        Row(3, ["7654321", "Kowalski", "2024-01-05", "0.3", "jan@example.pl"]),
    ]


def test_xlsx_datetime_with_a_time_keeps_the_time(tmp_path: Path) -> None:
    # A generation timestamp is not a date; it must not be cut silently.
    path = write_xlsx(tmp_path / "kody.xlsx", [["Kod", "Wygenerowano"], ["ABCDEF12", dt.datetime(2024, 5, 2, 10, 15)]])
    assert read_table(path).rows[0].cells == ["ABCDEF12", "2024-05-02 10:15:00"]


def test_blank_rows_are_skipped_but_row_numbers_stay_those_of_the_sheet(tmp_path: Path) -> None:
    # Row 3 is blank: the next data row is still reported as row 4.
    path = write_xlsx(tmp_path / "kody.xlsx", [["Kod"], ["ABCDEF12"], [None], ["GHIJKL34"]])
    assert [row.number for row in read_table(path).rows] == [2, 4]


def test_header_is_the_first_non_empty_row(tmp_path: Path) -> None:
    # Two empty rows above the header: the header is row 3.
    path = write_xlsx(tmp_path / "kody.xlsx", [[None], [None, None], ["Kod"], ["ABCDEF12"]])
    table = read_table(path)
    assert (table.header, table.header_row) == (["Kod"], 3)
    assert table.rows == [Row(4, ["ABCDEF12"])]


def test_a_title_above_the_real_header_is_skipped(tmp_path: Path) -> None:
    # "Czytelnicy — stan na 1.05.2024" sits alone in row 1; the header is row 2.
    path = write_xlsx(
        tmp_path / "czytelnicy.xlsx",
        [["Czytelnicy — stan na 1.05.2024"], ["numer_karty", "nazwisko"], ["0001", "Nowak"]],
    )
    table = read_table(path)
    assert (table.header, table.header_row) == (["numer_karty", "nazwisko"], 2)


def test_a_one_column_file_keeps_its_header_even_with_a_stray_note(tmp_path: Path) -> None:
    # Row 3 has a note beside the code; that does not make row 3 the header.
    path = write_xlsx(tmp_path / "kody.xlsx", [["Kod"], ["ABCDEF12"], ["GHIJKL34", "sprawdzić"], ["MNOPQR56"]])
    table = read_table(path)
    assert (table.header, table.header_row) == (["Kod", ""], 1)
    assert table.rows[1] == Row(3, ["GHIJKL34", "sprawdzić"])


def test_rows_are_padded_to_the_widest_row(tmp_path: Path) -> None:
    # Consumers index cells by column without checking lengths.
    path = write_xlsx(tmp_path / "t.xlsx", [["a", "b", "c"], ["1"], ["1", "2", "3", "4"]])
    table = read_table(path)
    assert table.header == ["a", "b", "c", ""]
    assert [len(row.cells) for row in table.rows] == [4, 4]


def test_a_sheet_is_chosen_by_name_case_insensitively(tmp_path: Path) -> None:
    # --sheet "kody" finds the sheet "Kody" even when it is not the first one.
    workbook = openpyxl.Workbook()
    workbook.active.append(["Notatki"])
    workbook.create_sheet("Kody").append(["Kod"])
    workbook["Kody"].append(["ABCDEF12"])
    workbook.save(tmp_path / "kody.xlsx")
    assert read_table(tmp_path / "kody.xlsx", sheet="kody").rows == [Row(2, ["ABCDEF12"])]


def test_an_unknown_sheet_is_bad_input_listing_the_sheets(tmp_path: Path) -> None:
    # The message names the file and the sheets that do exist.
    path = write_xlsx(tmp_path / "kody.xlsx", [["Kod"]], title="Kody")
    with pytest.raises(BadInput) as caught:
        read_table(path, sheet="Maj")
    assert str(caught.value) == "kody.xlsx: no sheet named 'Maj'; the sheets are 'Kody'"
    assert caught.value.exit_code == 2


def test_format_is_recognised_by_content_not_by_name(tmp_path: Path) -> None:
    # An XLSX saved as "kody.csv" is still read as a workbook.
    path = write_xlsx(tmp_path / "kody.csv", [["Kod"], ["ABCDEF12"]])
    assert read_table(path).rows == [Row(2, ["ABCDEF12"])]


def test_an_ods_file_is_bad_input_saying_what_to_do(tmp_path: Path) -> None:
    # LibreOffice's own format is a zip too; say so instead of "corrupt file".
    path = tmp_path / "kody.ods"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
    with pytest.raises(BadInput, match=r"^kody\.ods: this is an OpenDocument \(ODS\) file"):
        read_table(path)


# --- legacy XLS --------------------------------------------------------------------------
# The fixtures were written once with xlwt (not a dependency):
#   ws.write(r, c, value) / ws.write(r, c, date, xlwt.easyxf(num_format_str="YYYY-MM-DD"))


def test_legacy_xls_is_read_with_dates_and_numbers_cleaned() -> None:
    # Row 4 is blank in the sheet; a code stored as a number loses no digits and no ".0".
    table = read_table(DATA / "codes_legacy.xls")
    assert table.header == ["Lp.", "Kod", "Data wygenerowania"]
    assert table.rows == [
        Row(2, ["1", "LGM-7Q2X-K9PA", "2024-05-02"]),
        Row(3, ["2", "LGM-3ZT8-W4MB", "2024-05-02"]),
        Row(5, ["3", "48213377", "2024-05-03"]),
    ]


def test_legacy_xls_keeps_polish_letters() -> None:
    # Headers and names with ąćęłńóśźż come out as written.
    table = read_table(DATA / "readers_legacy.xls")
    assert table.header[1:3] == ["Imię", "Nazwisko"]
    assert table.rows[0].cells[:3] == ["0001234", "Łucja", "Żółkiewska"]


def test_a_broken_legacy_xls_is_bad_input(tmp_path: Path) -> None:
    # OLE2 magic followed by garbage: a message, not a traceback.
    path = tmp_path / "kody.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    with pytest.raises(BadInput, match=r"^kody\.xls: this looks like a legacy Excel"):
        read_table(path)


# --- HTML tables saved as .xls -----------------------------------------------------------


def test_a_legimi_html_export_saved_as_xls_is_read_as_a_table(tmp_path: Path) -> None:
    # Legimi's panel writes an HTML table and calls it .xls.
    path = tmp_path / "kody_legimi.xls"
    path.write_text(LEGIMI_EXPORT, encoding="utf-8")
    table = read_table(path)
    assert table.header == ["Kod", "Data wygenerowania"]
    assert table.rows == [
        Row(2, ["ABCD-1234-EFGH", "2024-05-02 10:15:00"]),
        Row(3, ["IJKL-5678-MNOP", "2024-05-02 10:15:00"]),
    ]


def test_html_entities_breaks_nested_tags_and_unclosed_cells_are_handled(tmp_path: Path) -> None:
    # Sloppy panel HTML: no </td> or </tr>, <br> in a cell, &nbsp; and entities, a <b>.
    path = tmp_path / "eksport.xls"
    path.write_bytes(
        b"\xef\xbb\xbf<?xml version='1.0'?>\n<html><body><h1>Eksport</h1>"
        b"<table border=1><thead><tr><th>Kod&nbsp;dost&#281;pu<th>Uwagi</thead>"
        b"<tbody><tr><td> <b>ABCD-1234</b> <td>linia 1<br>linia&nbsp;2 &amp; koniec"
        b"<tr><td colspan=2>RAZEM</td></tr></tbody></table></body></html>"
    )
    table = read_table(path)
    assert table.header == ["Kod dostępu", "Uwagi"]
    assert table.rows == [
        Row(2, ["ABCD-1234", "linia 1 linia 2 & koniec"]),
        Row(3, ["RAZEM", ""]),
    ]


def test_a_layout_table_without_data_is_passed_over(tmp_path: Path) -> None:
    # The first table with any text in its rows is the data table.
    path = tmp_path / "eksport.xls"
    path.write_text(
        "<table><tr><td></td></tr></table>"
        "<table><tr><th>Kod</th></tr><tr><td>ABCDEF12</td></tr></table>",
        encoding="utf-8",
    )
    assert read_table(path).rows == [Row(2, ["ABCDEF12"])]


def test_html_charset_comes_from_the_meta_tag(tmp_path: Path) -> None:
    # A windows-1250 page says so in <meta>; Polish letters come out right.
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1250">'
        "</head><table><tr><th>Nazwisko</th></tr><tr><td>Źdźbło-Łąka</td></tr></table></html>"
    )
    path = tmp_path / "eksport.xls"
    path.write_bytes(html.encode("cp1250"))
    assert read_table(path).rows == [Row(2, ["Źdźbło-Łąka"])]


def test_html_without_a_charset_falls_back_to_cp1250(tmp_path: Path) -> None:
    # Not valid UTF-8 and no declaration: Windows-1250.
    path = tmp_path / "eksport.xls"
    path.write_bytes("<table><tr><th>Imię</th></tr><tr><td>Łucja</td></tr></table>".encode("cp1250"))
    table = read_table(path)
    assert (table.header, table.rows) == (["Imię"], [Row(2, ["Łucja"])])


def test_html_without_a_table_is_bad_input(tmp_path: Path) -> None:
    # A login page saved by mistake instead of the export.
    path = tmp_path / "kody.xls"
    path.write_text("<html><body><p>Zaloguj się</p></body></html>", encoding="utf-8")
    with pytest.raises(BadInput, match=r"^kody\.xls: this HTML file has no table with any data$"):
        read_table(path)


# --- CSV / TSV ---------------------------------------------------------------------------


def test_a_cp1250_csv_with_semicolons_keeps_polish_letters_and_decimal_commas(tmp_path: Path) -> None:
    # What Excel on a Polish Windows writes: ";" between fields, "," in amounts.
    path = tmp_path / "czytelnicy.csv"
    text = "numer_karty;imię;nazwisko;zadłużenie\r\n0012;Żaneta;Wąsowicz-Ćwik;12,50\r\n0013;Jan;Śliwa;0\r\n"
    path.write_bytes(text.encode("cp1250"))
    table = read_table(path)
    assert table.header == ["numer_karty", "imię", "nazwisko", "zadłużenie"]
    assert table.rows == [
        Row(2, ["0012", "Żaneta", "Wąsowicz-Ćwik", "12,50"]),
        Row(3, ["0013", "Jan", "Śliwa", "0"]),
    ]


def test_a_utf8_csv_with_bom_and_quoted_fields(tmp_path: Path) -> None:
    # The BOM is not part of the first header; quotes protect commas and line breaks.
    path = tmp_path / "czytelnicy.csv"
    text = 'card_number,last_name,note\n0001,"Nowak, Anna","line one\nline two"\n0002,Źrebiec,\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    table = read_table(path)
    assert table.header == ["card_number", "last_name", "note"]
    assert table.rows == [
        Row(2, ["0001", "Nowak, Anna", "line one\nline two"]),
        Row(3, ["0002", "Źrebiec", ""]),
    ]


def test_a_tab_separated_file_is_recognised(tmp_path: Path) -> None:
    # Tabs win over the commas inside the values.
    path = tmp_path / "czytelnicy.txt"
    path.write_text("numer_karty\tnazwisko\tzadluzenie\n1\tNowak\t1,50\n2\tKos\t2,00\n", encoding="utf-8")
    assert read_table(path).rows[0].cells == ["1", "Nowak", "1,50"]


def test_a_utf16_csv_with_bom_is_read(tmp_path: Path) -> None:
    # Excel's "Unicode text" export.
    path = tmp_path / "kody.txt"
    path.write_bytes("Kod\tUwagi\nĄBCDEF12\tżółw\n".encode("utf-16"))
    assert read_table(path).rows == [Row(2, ["ĄBCDEF12", "żółw"])]


def test_whitespace_only_rows_in_a_csv_are_skipped(tmp_path: Path) -> None:
    # Row 3 holds only separators and spaces; row 4 keeps its number.
    path = tmp_path / "kody.csv"
    path.write_text("Kod;Lp\nABCDEF12;1\n ; \nGHIJKL34;2\n", encoding="utf-8")
    assert [row.number for row in read_table(path).rows] == [2, 4]


# --- files with nothing in them ----------------------------------------------------------


def test_an_empty_file_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    # Zero bytes.
    path = tmp_path / "pusty.csv"
    path.write_bytes(b"")
    with pytest.raises(BadInput) as caught:
        read_table(path)
    assert str(caught.value) == "pusty.csv: the file is empty"
    assert caught.value.file == "pusty.csv"


def test_a_file_without_a_header_row_is_bad_input(tmp_path: Path) -> None:
    # Only separators: no row has any value.
    path = tmp_path / "pusty.csv"
    path.write_text(";;\n;;\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"^pusty\.csv: the file has no rows, not even a header$"):
        read_table(path)


def test_an_empty_workbook_is_bad_input(tmp_path: Path) -> None:
    # A saved but untouched XLSX.
    path = write_xlsx(tmp_path / "pusty.xlsx", [])
    with pytest.raises(BadInput, match=r"^pusty\.xlsx: the file has no rows"):
        read_table(path)


def test_a_binary_file_is_bad_input(tmp_path: Path) -> None:
    # A PDF picked by mistake.
    path = tmp_path / "kody.pdf"
    path.write_bytes(b"%PDF-1.4\x00\x01\x02")
    with pytest.raises(BadInput, match=r"^kody\.pdf: this is neither a spreadsheet nor a text file$"):
        read_table(path)


def test_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    # A typo in the path on the command line.
    with pytest.raises(BadInput, match=r"^brak\.csv: cannot read the file"):
        read_table(tmp_path / "brak.csv")


# --- helpers -----------------------------------------------------------------------------


def test_headers_compare_without_case_accents_or_separators() -> None:
    # "Ważna do", "WAZNA-DO" and "ważna_do" are one header.
    assert header_key("Ważna do") == header_key("WAZNA-DO") == header_key("ważna_do") == "wazna_do"
    assert header_key("Zadłużenie:") == "zadluzenie"
    assert header_key(" Numer  karty* ") == "numer_karty"


def test_column_letters_are_those_of_a_spreadsheet() -> None:
    # 0 → A, 25 → Z, 26 → AA.
    assert [column_letter(i) for i in (0, 1, 25, 26, 27, 701, 702)] == ["A", "B", "Z", "AA", "AB", "ZZ", "AAA"]


def test_problems_raise_one_bad_input_located_at_the_first(tmp_path: Path) -> None:
    # One problem: the message is just that problem, located.
    problems = Problems(file="f.csv")
    problems.raise_if_any()
    problems.add("is wrong", row=3, column="Kod")
    with pytest.raises(BadInput) as caught:
        problems.raise_if_any()
    assert str(caught.value) == "f.csv, row 3, column 'Kod': is wrong"


def test_problems_list_at_most_twenty_and_count_the_rest() -> None:
    # 25 problems: 20 listed, "… and 5 more".
    problems = Problems(file="f.csv")
    for row in range(2, 27):
        problems.add("is wrong", row=row, column="Kod")
    with pytest.raises(BadInput) as caught:
        problems.raise_if_any()
    lines = str(caught.value).splitlines()
    assert lines[0] == "f.csv, row 2, column 'Kod': is wrong"
    assert lines[1] == "25 problems in this file:"
    assert lines[2] == "  row 2, column 'Kod': is wrong"
    assert lines[21] == "  row 21, column 'Kod': is wrong"
    assert lines[22] == "  … and 5 more"
    assert (caught.value.row, caught.value.column) == (2, "Kod")
