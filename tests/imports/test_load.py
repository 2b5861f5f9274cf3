"""Imports through the CLI: all or nothing, exit 2 with file/row/column, re-import updates."""

from __future__ import annotations

from types import SimpleNamespace

from openpyxl import Workbook
from sqlalchemy import func, select

from mailbot.db.models import Code, CodePool, Reader
from mailbot.db.session import open_database
from tests.botenv import make_bot

NO_SMTP = SimpleNamespace(host="127.0.0.1", port=1)


def _counts(bot):
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        return (s.scalar(select(func.count(Reader.id))), s.scalar(select(func.count(Code.id))),
                s.scalar(select(func.count(CodePool.id))))


def test_a_reimport_of_the_same_readers_updates_and_never_duplicates(tmp_path, capsys):
    # Importing twice keeps one row per card; a changed balance is updated.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    rows = ["0000001;Anna;Kowalska;a@x.pl;2030-12-31;0;0;2026-01-01;2026-02-01",
            "0000002;Jan;Nowak;j@x.pl;2030-12-31;0;0;2026-01-01;2026-02-01"]
    assert bot.import_readers(rows) == 0
    assert bot.import_readers(rows) == 0
    assert "0 readers added, 0 updated, 2 unchanged" in capsys.readouterr().out
    rows[1] = rows[1].replace(";0;0;", ";7,50;0;")
    assert bot.import_readers(rows) == 0
    assert "0 readers added, 1 updated, 1 unchanged" in capsys.readouterr().out
    assert _counts(bot)[0] == 2
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        jan = s.scalar(select(Reader).where(Reader.card_number == "0000002"))
        assert str(jan.balance_due) == "7.50"


def test_a_broken_readers_file_changes_nothing_and_exits_2(tmp_path, capsys):
    # One bad date in row 3: exit 2, message names file, row and column; no reader stored.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    rows = ["0000001;Anna;Kowalska;a@x.pl;2030-12-31;0;0;2026-01-01;2026-02-01",
            "0000002;Jan;Nowak;j@x.pl;31.02.2030;0;0;2026-01-01;2026-02-01"]
    assert bot.import_readers(rows) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "wazna_do" in err and "readers-" in err
    assert _counts(bot)[0] == 0


def test_a_code_already_in_any_pool_refuses_the_whole_file(tmp_path, capsys):
    # The second file repeats one code of the first: exit 2, nothing of it imported.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    assert bot.import_codes(["AAA-000001", "AAA-000002"]) == 0
    assert bot.import_codes(["BBB-000001", "AAA-000002", "BBB-000003"],
                            service="empik_go") == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "already imported" in err
    assert _counts(bot)[1:] == (2, 1)


def test_codes_from_an_xlsx_with_a_polish_header(tmp_path, capsys):
    # An XLSX export with "Kod dostępu" imports through the CLI.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    wb = Workbook()
    ws = wb.active
    ws.append(["Lp.", "Kod dostępu"])
    for i in range(1, 6):
        ws.append([i, f"XLSX-CODE-{i:04d}"])
    path = tmp_path / "legimi.xlsx"
    wb.save(path)
    assert bot.cli("import-codes", str(path), "--library", "lib", "--service", "legimi",
                   "--month", bot.month) == 0
    assert "5 legimi codes" in capsys.readouterr().out


def test_a_past_month_and_an_unknown_library_are_refused(tmp_path, capsys):
    # Codes for a month already over could never be issued; a wrong library id is named.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    path = tmp_path / "c.csv"
    path.write_text("kod\nOLD-000001\n")
    assert bot.cli("import-codes", str(path), "--library", "lib", "--service", "legimi",
                   "--month", "2020-01") == 2
    assert "2020-01 is over" in capsys.readouterr().err
    assert bot.cli("import-codes", str(path), "--library", "nope", "--service", "legimi",
                   "--month", bot.month) == 2
    assert "unknown library 'nope'" in capsys.readouterr().err
    assert _counts(bot) == (0, 0, 0)


def test_birth_dates_are_imported_for_age_limits(tmp_path):
    # A "data_urodzenia" column (DD.MM.YYYY) fills the reader's birth date.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    path = tmp_path / "dzieci.csv"
    path.write_text("numer_karty;imie;nazwisko;data_urodzenia\n0000009;Staś;Mały;05.06.2015\n",
                    encoding="utf-8")
    assert bot.cli("import-readers", str(path), "--library", "lib") == 0
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        assert str(s.scalar(select(Reader.birth_date))) == "2015-06-05"


def test_a_code_differing_only_in_letter_case_is_the_same_code(tmp_path, capsys):
    # "abc-000001" after "ABC-000001" is refused as already imported.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    assert bot.import_codes(["ABC-000001"]) == 0
    assert bot.import_codes(["abc-000001"], service="empik_go") == 2
    assert "already imported" in capsys.readouterr().err


def test_a_full_export_can_remove_readers_no_longer_in_it(tmp_path, capsys):
    # --remove-missing: a card cancelled in the library system disappears here too.
    bot = make_bot(tmp_path, smtp=NO_SMTP, mailboxes=[])
    both = ["0000001;Anna;Kowalska;a@x.pl;2030-12-31;0;0;2026-01-01;2026-02-01",
            "0000002;Jan;Nowak;j@x.pl;2030-12-31;0;0;2026-01-01;2026-02-01"]
    assert bot.import_readers(both) == 0
    path = tmp_path / "full.csv"
    from tests.botenv import READER_HEADER

    path.write_text(READER_HEADER + "\n" + both[0] + "\n", encoding="utf-8")
    assert bot.cli("import-readers", str(path), "--library", "lib", "--remove-missing") == 0
    assert "1 removed" in capsys.readouterr().out
    assert _counts(bot)[0] == 1
