"""Accounts confirmed at the desk (issue 20): the rule, where it is asked, and which sources
can tell -- on plain values (no mail, no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from mailbot.config import LibrarySettings, settings_from_dict
from mailbot.desk import OVERRULABLE
from mailbot.errors import BadInput, ConfigError
from mailbot.imports.readers import parse_readers
from mailbot.imports.tables import read_table
from mailbot.readers.sql.columns import as_flag, to_reader_facts
from mailbot.rules.chains import DESK, RULES, TEST, evaluate
from mailbot.values import parse_yes_no
from tests.rules.test_rules import LIB, READER, facts

REQUIRING = replace(LIB, require_confirmed_account=True)


def _outcome(**kw: object) -> str | None:
    hit, _ = evaluate(facts(**kw))
    return hit.outcome if hit else None


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("library", "confirmed", "expected"), [
    (REQUIRING, False, "unconfirmed_account"),
    (REQUIRING, True, None),
    (REQUIRING, None, None),  # the source does not say: the library system is the authority
    (LIB, False, None),  # the library does not require it: nobody is refused for it
])
def test_only_an_account_the_source_calls_unconfirmed_is_refused_where_required(
        library: LibrarySettings, confirmed: bool | None, expected: str | None) -> None:
    # Refused only when the library requires confirmed accounts AND the source says "no".
    reader = replace(READER, confirmed=confirmed)
    assert _outcome(library=library, reader=reader) == expected


def test_the_rule_leaves_a_trail_note_and_is_asked_after_the_account_validity() -> None:
    # An expired card that is also unconfirmed hears about the expiry first (the card must
    # be renewed at the desk anyway); a debt is asked after the confirmation.
    names = [r.name for r in RULES]
    assert names.index("inactive_account") + 1 == names.index("unconfirmed_account")
    reader = replace(READER, confirmed=False, valid_until=date(2026, 1, 31))
    assert _outcome(library=REQUIRING, reader=reader) == "inactive_account"
    reader = replace(READER, confirmed=False, balance_due=Decimal("5.00"))
    hit, trail = evaluate(facts(library=REQUIRING, reader=reader))
    assert hit is not None and hit.outcome == "unconfirmed_account"
    assert trail[-1] == {"rule": "unconfirmed_account", "result": "refused",
                         "note": "unconfirmed_account", "args": {}}


def test_the_test_mail_and_the_desk_ask_it_and_the_desk_may_overrule_it() -> None:
    # A TEST mail's verdict and the desk's use the same rule; the staff at the counter see
    # the patron's ID and may confirm the account and issue anyway.
    assert "unconfirmed_account" in [r.name for r in TEST.rules]
    assert "unconfirmed_account" in [r.name for r in DESK.rules]
    assert "unconfirmed_account" in OVERRULABLE


# --------------------------------------------------------------------------- the sources


@pytest.mark.parametrize(("text", "value"), [
    ("tak", True), ("TAK", True), ("t", True), ("1", True), ("x", True), ("potwierdzone", True),
    ("nie", False), ("N", False), ("0", False), ("niepotwierdzone", False), ("no", False),
    ("", None), ("  ", None),
])
def test_yes_and_no_are_read_in_polish_and_english(text: str, value: bool | None) -> None:
    # "tak"/"nie" as the other yes/no columns; empty is "not known", never a "no".
    assert parse_yes_no(text) is value


def test_a_yes_no_cell_that_is_neither_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="neither yes nor no"):
        parse_yes_no("może")


@pytest.mark.parametrize("header", ["potwierdzone", "Potwierdzony", "konto potwierdzone",
                                    "Zarejestrowany w bibliotece", "confirmed",
                                    "registered_at_desk"])
def test_the_reader_file_reads_the_confirmed_column_by_its_names(tmp_path: Path,
                                                                 header: str) -> None:
    # Any of the column's names; tak / nie / empty become True / False / None.
    path = tmp_path / "czytelnicy.csv"
    path.write_text(f"numer_karty;nazwisko;{header}\n0001;Nowak;tak\n0002;Kowalska;nie\n"
                    "0003;Wiśniewska;\n", encoding="utf-8")
    rows = parse_readers(read_table(path))
    assert [r.confirmed for r in rows] == [True, False, None]


def test_a_bad_confirmed_cell_names_its_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "czytelnicy.csv"
    path.write_text("numer_karty;nazwisko;potwierdzone\n0001;Nowak;chyba\n", encoding="utf-8")
    with pytest.raises(BadInput) as caught:
        parse_readers(read_table(path))
    problem = caught.value.problems[0]
    assert (problem.row, problem.column, problem.key) == (2, "potwierdzone", "not_yes_no")


def test_a_library_requiring_confirmed_accounts_needs_the_column_in_the_file(
        tmp_path: Path) -> None:
    # Without it every reader would be "not known" and nobody refused: the file is refused.
    path = tmp_path / "czytelnicy.csv"
    path.write_text("numer_karty;nazwisko\n0001;Nowak\n", encoding="utf-8")
    assert parse_readers(read_table(path))[0].confirmed is None
    with pytest.raises(BadInput, match="potwierdzone"):
        parse_readers(read_table(path), required=("confirmed",))


def test_the_sql_source_reads_confirmed_as_a_flag_and_may_require_it() -> None:
    # BOOLEAN, TINYINT 1/0 or tak/nie text; NULL not known. A library requiring confirmed
    # accounts needs the query to return the column (else the patron waits, named).
    assert [as_flag(v) for v in (True, 0, 1, "tak", b"nie", None)] == [
        True, False, True, True, False, None]
    with pytest.raises(ValueError):
        as_flag(2)
    facts_ = to_reader_facts(["last_name", "confirmed"], ("Nowak", 0), card="0001")
    assert facts_.confirmed is False
    assert to_reader_facts(["last_name"], ("Nowak",), card="0001").confirmed is None
    with pytest.raises(ValueError, match="confirmed"):
        to_reader_facts(["last_name"], ("Nowak",), card="0001",
                        required=frozenset({"confirmed"}))


# --------------------------------------------------------------------------- the config

_BASE = {"mailboxes": [{"library": "a", "address": "ebooki@a.example.org", "username": "u",
                        "password": "secret"}]}


def _library(**keys: object) -> dict:
    return {**_BASE, "libraries": [{"id": "a", "name": "Biblioteka A", **keys}]}


def test_a_source_that_cannot_tell_is_refused_at_start_up_naming_the_key() -> None:
    # SIP2 has no such flag; Koha's preset can tell only by the self-registration category.
    cases = (
        ({"reader_source": "sip2", "require_confirmed_account": True},
         r"libraries\[0\]\.require_confirmed_account'?: cannot be answered by a sip2"),
        ({"reader_source": "sql", "sql": {"url": "mysql+pymysql://ro@koha/koha"},
          "require_confirmed_account": True},
         r"libraries\[0\]\.sql\.unconfirmed_categories'?: is needed by "
         r"require_confirmed_account with the koha preset"),
        ({"reader_source": "sql", "sql": {"url": "sqlite:///x.db",
                                          "query": "SELECT 1 WHERE :card",
                                          "unconfirmed_categories": ["SELFREG"]}},
         r"libraries\[0\]\.sql\.unconfirmed_categories'?: is read by the koha preset only"),
        ({"reader_source": "sql", "sql": {"url": "mysql+pymysql://ro@koha/koha",
                                          "unconfirmed_categories": ["A,B"]}},
         r"libraries\[0\]\.sql\.unconfirmed_categories'?: 'A,B' is not a Koha patron"),
    )
    for keys, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            settings_from_dict(_library(**keys))
        assert err.value.exit_code == 2


def test_sources_that_can_tell_are_accepted_and_the_default_asks_nothing() -> None:
    # The reader file, a Koha preset told its categories, a library's own query.
    assert settings_from_dict(_library()).libraries[0].require_confirmed_account is False
    for keys in ({"require_confirmed_account": True},
                 {"require_confirmed_account": True, "reader_source": "sql",
                  "sql": {"url": "mysql+pymysql://ro@koha/koha",
                          "unconfirmed_categories": ["SELFREG"]}},
                 {"require_confirmed_account": True, "reader_source": "sql",
                  "sql": {"url": "sqlite:///x.db", "query": "SELECT 1 AS x WHERE :card"}}):
        assert settings_from_dict(_library(**keys)).libraries[0].require_confirmed_account
