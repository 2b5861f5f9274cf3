"""A reader file taken for codes is refused before it becomes a pool (issue 19: a reader
export uploaded as codes made card numbers into Legimi codes)."""

from __future__ import annotations

from sqlalchemy import func, select

from mailbot.db.models import Code
from mailbot.db.session import open_database
from tests.botenv import READER_HEADER, make_bot, valid_reader


def _count(bot) -> int:
    with open_database(bot.settings().database_url)() as s:
        return s.scalar(select(func.count(Code.id)))


def test_a_reader_file_given_as_codes_is_refused(tmp_path, smtp_sink, capsys):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[])
    readers = tmp_path / "readers.csv"
    readers.write_text(READER_HEADER + "\n" + "".join(
        f"06{i:05d};Ala;Nowak{i};a{i}@patron.test;{valid_reader(2026)}\n" for i in range(12)),
        encoding="utf-8")
    args = ("import-codes", str(readers), "--library", "lib", "--service", "legimi",
            "--month", bot.month)
    capsys.readouterr()
    assert bot.cli(*args) == 2
    err = capsys.readouterr().err
    assert "readers.csv" in err and "looks like a reader file" in err
    assert "'numer_karty', 'nazwisko'" in err and "import-readers" in err
    # Naming a column does not make a reader file a pool either.
    assert bot.cli(*args, "--column", "numer_karty") == 2
    assert _count(bot) == 0


def test_card_numbers_in_a_column_found_by_shape_are_refused_unless_named(tmp_path,
                                                                         smtp_sink, capsys):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[])
    cards = tmp_path / "lista.csv"
    cards.write_text("numer\n" + "".join(f"060{i:04d}\n" for i in range(20)), encoding="utf-8")
    args = ("import-codes", str(cards), "--library", "lib", "--service", "legimi",
            "--month", bot.month)
    capsys.readouterr()
    assert bot.cli(*args) == 2
    err = capsys.readouterr().err
    assert "looks like one of this library's card numbers" in err and "--column" in err
    assert _count(bot) == 0
    # Codes that really are such numbers: their column named, they are imported.
    assert bot.cli(*args, "--column", "numer") == 0
    assert _count(bot) == 20


def test_ordinary_code_files_are_not_mistaken_for_readers(tmp_path, smtp_sink):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[])
    assert bot.import_codes([f"LEG-{i:06d}" for i in range(5)]) == 0  # header "kod"
    shaped = tmp_path / "bez-naglowka.csv"
    shaped.write_text("".join(f"EMP{i:09d}\n" for i in range(5)), encoding="utf-8")
    assert bot.cli("import-codes", str(shaped), "--library", "lib", "--service",
                   "empik_go", "--month", bot.month) == 0
    assert _count(bot) == 10
