"""The `sql` reader source against real servers: Koha's schema on MariaDB, and PostgreSQL.

A fresh MariaDB database holds the subset of Koha's schema in ``koha_schema.sql`` and a
dozen patrons, each with one thing the preset query must get right. Dates are built from
the server's own ``NOW()`` so the data and the query agree on "today". A server that is
not running makes these tests fail with a message; they never skip.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pymysql
import pytest

from mailbot.config import SqlSourceSettings
from mailbot.errors import ConfigError, SourceUnavailable
from mailbot.readers.sql.presets import KOHA_QUERY
from mailbot.readers.sql.source import SqlReaders
from mailbot.rules.base import ReaderFacts

HOST = "127.0.0.1"
MARIADB_PORT = 3306
POSTGRES_PORT = 5432
SCHEMA = Path(__file__).with_name("koha_schema.sql")


# --------------------------------------------------------------------------- servers


def _mariadb_root(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host=HOST, port=MARIADB_PORT, user="root", database=database,
                           charset="utf8mb4", autocommit=True, connect_timeout=5)


def _wait_for(connect, start_command: list[str] | None, what: str):
    """Connect, starting the server once if it is down; fail the test run if it stays down."""
    try:
        return connect()
    except Exception as first:  # noqa: BLE001 - any failure: try to start the server
        error: Exception = first
    if start_command and shutil.which(start_command[0]):
        subprocess.run(start_command, check=False, capture_output=True, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                return connect()
            except Exception as again:  # noqa: BLE001
                error = again
                time.sleep(0.3)
    pytest.fail(f"{what} is not running and could not be started: {error}", pytrace=False)


@dataclass(frozen=True)
class KohaDb:
    name: str
    now: datetime  # the server's NOW() when the rows were loaded
    today: date
    ro_user: str
    ro_password: str

    def url(self, user: str = "root", password: str | None = None, port: int = MARIADB_PORT) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"mysql+pymysql://{auth}@{HOST}:{port}/{self.name}?charset=utf8mb4"

    @property
    def ro_url(self) -> str:
        return self.url(self.ro_user, self.ro_password)


@pytest.fixture(scope="module")
def koha() -> Iterator[KohaDb]:
    """A fresh MariaDB database with Koha's tables and the patrons below; dropped after."""
    root = _wait_for(_mariadb_root,
                     ["start-stop-daemon", "--start", "--oknodo", "--background",
                      "--exec", "/usr/sbin/mariadbd"],
                     f"MariaDB on {HOST}:{MARIADB_PORT}")
    name = f"mailbot_koha_{secrets.token_hex(4)}"
    ro_user, ro_password = f"mailbot_ro_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                        "COLLATE utf8mb4_unicode_ci")
            cur.execute(f"CREATE USER '{ro_user}'@'%' IDENTIFIED BY '{ro_password}'")
            cur.execute(f"GRANT SELECT ON `{name}`.* TO '{ro_user}'@'%'")
            cur.execute(f"USE `{name}`")
            for statement in SCHEMA.read_text(encoding="utf-8").split(";\n"):
                if statement.strip():
                    cur.execute(statement)
            cur.execute("SELECT NOW()")
            now = cur.fetchone()[0]
            _load_patrons(cur, now)
        yield KohaDb(name, now, now.date(), ro_user, ro_password)
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"DROP USER IF EXISTS '{ro_user}'@'%'")
        root.close()


# --------------------------------------------------------------------------- patrons

def _day(now: datetime, days: int) -> date:
    return (now + timedelta(days=days)).date()


def _load_patrons(cur, now: datetime) -> None:
    year = now.year
    def d(days: int) -> date:
        return _day(now, days)

    def at(days: int, hour: int = 12) -> datetime:
        return datetime.combine(d(days), datetime.min.time()).replace(hour=hour)

    patrons = [
        # borrowernumber, cardnumber, firstname, surname, email, dateofbirth, categorycode,
        # dateenrolled, dateexpiry, updated_on
        (1, "0012345", "Agnieszka", "Wiśniewska", "agnieszka.wisniewska@example.pl",
         date(1985, 3, 14), "DOROSLY", date(2015, 9, 1), d(365), at(-20)),
        (2, "0023456", "Grzegorz", "Brzęczyszczykiewicz", "g.brzeczyszczykiewicz@example.pl",
         date(1971, 11, 2), "DOROSLY", date(2010, 1, 12), d(200), at(-400)),
        (3, "0034567", "Małgorzata", "Żółkiewska", "malgorzata.zolkiewska@example.pl",
         date(1990, 7, 30), "DOROSLY", date(2019, 4, 4), d(100), at(-3)),
        (4, "0045678", "Łukasz", "Kołłątaj", "lukasz@kollataj.example.pl",
         date(1979, 5, 3), "DOROSLY", date(2012, 2, 2), d(90), at(-7)),
        (5, "0056789", "Jędrzej", "Śniadecki", "jedrzej.sniadecki@example.pl",
         date(1968, 8, 21), "DOROSLY", date(2008, 6, 6), d(300), at(-50)),
        (6, "0067890", "Zofia", "Nałkowska", "zofia.nalkowska@example.pl",
         date(1984, 11, 10), "DOROSLY", date(2016, 3, 8), d(150), at(-30)),
        (7, "0078901", "Stanisław", "Wyspiański", "stanislaw@wyspianski.example.pl",
         date(1969, 1, 15), "DOROSLY", date(2005, 5, 5), d(500), at(-2)),
        (8, "0089012", "Ewa", "Łętowska", "ewa.letowska@example.pl",
         date(1940, 6, 22), "SENIOR", date(2001, 10, 1), d(250), at(-1)),
        (9, "0090123", "Józef Ignacy", "Kraszewski", "jik@example.pl",
         date(1962, 7, 28), "DOROSLY", date(2003, 3, 3), d(200), at(-10)),
        (10, "0101234", "Wisława", "Szymborska", "wislawa.szymborska@example.pl",
         date(1953, 7, 2), "SENIOR", date(1999, 9, 9), d(-40), at(-40)),
        (11, "0112345", "Staś", "Tarkowski", "",
         date(year - 10, 6, 1), "DZIECKO", date(year - 3, 9, 1), d(700), at(-60)),
        # A book checked out 100 days ago and renewed since (Tarnów: renewals do not count).
        (13, "0134567", "Maria", "Konopnicka", "maria.konopnicka@example.pl",
         date(1972, 5, 23), "DOROSLY", date(2011, 1, 10), d(300), at(-5)),
        # Registered in the OPAC, never confirmed at the desk: Koha's self-registration
        # category (PatronSelfRegistrationDefaultCategory).
        (14, "0145678", "Bolesław", "Prus", "boleslaw.prus@example.pl",
         date(1987, 8, 20), "SELFREG", d(-3), d(27), at(-3)),
    ]
    cur.executemany(
        "INSERT INTO borrowers (borrowernumber, cardnumber, firstname, surname, email, "
        "dateofbirth, categorycode, dateenrolled, dateexpiry, updated_on, branchcode) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'MOK')", patrons)
    # A record migrated from an old system: no first name, and MySQL's "zero date".
    cur.execute("SET SESSION sql_mode = ''")
    cur.execute(
        "INSERT INTO borrowers (borrowernumber, cardnumber, firstname, surname, email, "
        "dateexpiry, updated_on, branchcode, categorycode) VALUES "
        "(12, '0123456', NULL, 'Sienkiewicz', NULL, '0000-00-00', %s, 'MOK', 'DOROSLY')",
        (at(-800),))
    # The child's guarantor note, as Koha keeps it (not read by the preset).
    cur.execute("UPDATE borrowers SET contactname = 'Tarkowski', contactfirstname = 'Władysław',"
                " updated_on = updated_on WHERE borrowernumber = 11")

    accountlines = [
        # borrowernumber, date, amount, amountoutstanding, debit, credit, status, description
        (1, at(-90), "5.000000", "0.000000", "OVERDUE", None, "RETURNED", "Przetrzymanie"),
        (1, at(-89), "-5.000000", "0.000000", None, "PAYMENT", None, "Wpłata gotówką"),
        (2, at(-30), "2.500000", "2.500000", "OVERDUE", None, "RETURNED", "Przetrzymanie"),
        (2, at(-25), "10.000000", "10.000000", "MANUAL", None, None, "Zniszczona okładka"),
        (2, at(-200), "4.000000", "0.000000", "OVERDUE", None, "RETURNED", "Przetrzymanie"),
        (2, at(-199), "-4.000000", "0.000000", None, "PAYMENT", None, "Wpłata"),
        (3, at(-15), "15.000000", "15.000000", "LOST", None, None, "Zagubiona książka"),
        (3, at(-14), "-5.000000", "-5.000000", None, "OVERPAYMENT", None, "Nadpłata"),
        (4, at(-15), "3.000000", "3.000000", "OVERDUE", None, "RETURNED", "Przetrzymanie"),
        (4, at(-12), "-8.000000", "-8.000000", None, "CREDIT", None, "Zwrot za zagubioną"),
        (6, at(-400), "1.000000", None, "MANUAL", None, None, "Stary wpis bez salda"),
    ]
    cur.executemany(
        "INSERT INTO accountlines (borrowernumber, date, amount, amountoutstanding, "
        "debit_type_code, credit_type_code, status, description, interface, branchcode) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'intranet', 'MOK')", accountlines)

    issues = [  # issue_id, borrowernumber, itemnumber, issuedate, date_due
        (101, 1, 5001, at(-3, 10), at(27, 23)),
        (102, 5, 5002, at(-40, 11), at(-10, 23)),  # overdue
        (103, 5, 5003, at(-2, 15), at(28, 23)),
        (104, 11, 5004, at(-5, 16), at(9, 23)),
    ]
    cur.executemany(
        "INSERT INTO issues (issue_id, borrowernumber, itemnumber, issuedate, date_due, "
        "branchcode) VALUES (%s, %s, %s, %s, %s, 'MOK')", issues)
    # Koha's renewal: date_due, lastreneweddate and renewals_count move, issuedate stays.
    cur.execute(
        "INSERT INTO issues (issue_id, borrowernumber, itemnumber, issuedate, date_due, "
        "lastreneweddate, renewals_count, branchcode) VALUES "
        "(105, 13, 5005, %s, %s, %s, 2, 'MOK')", (at(-100, 10), at(25, 23), at(-5, 9)))

    old_issues = [  # issue_id, borrowernumber, itemnumber, issuedate, date_due, returndate
        (11, 1, 6001, at(-60), at(-30), at(-35)),
        (12, 6, 6002, datetime(year - 1, 11, 20, 14), datetime(year - 1, 12, 18, 23),
         datetime(year - 1, 12, 10, 12)),
        (13, 6, 6003, datetime(year - 1, 3, 2, 9), datetime(year - 1, 3, 30, 23),
         datetime(year - 1, 3, 29, 17)),
        (14, 5, 6004, at(-10), at(20), at(-1)),  # older than his current loan 103
        (15, None, 6005, at(-1), at(29), at(0)),  # anonymised history: belongs to nobody
    ]
    cur.executemany(
        "INSERT INTO old_issues (issue_id, borrowernumber, itemnumber, issuedate, date_due, "
        "returndate, branchcode) VALUES (%s, %s, %s, %s, %s, %s, 'MOK')", old_issues)

    debarments = [  # borrowernumber, expiration, type, comment, created
        (7, None, "MANUAL", "Zniszczenie zbiorów – do wyjaśnienia", at(-100)),
        (8, d(20), "OVERDUES", "Upomnienie 3", at(-5)),
        (8, d(-300), "SUSPENSION", "Dawna blokada", at(-330)),
        (9, d(-30), "SUSPENSION", "Zawieszenie za przetrzymanie", at(-60)),
    ]
    cur.executemany(
        "INSERT INTO borrower_debarments (borrowernumber, expiration, type, comment, created) "
        "VALUES (%s, %s, %s, %s, %s)", debarments)
    # Koha keeps borrowers.debarred in step with the active restrictions.
    cur.execute("UPDATE borrowers SET debarred = '9999-12-31', updated_on = updated_on "
                "WHERE borrowernumber = 7")
    cur.execute("UPDATE borrowers SET debarred = %s, updated_on = updated_on "
                "WHERE borrowernumber = 8", (d(20),))


def _expected(today: date, now: datetime) -> dict[str, ReaderFacts]:
    def d(days: int) -> date:
        return _day(now, days)

    year = today.year
    zero = Decimal("0.00")
    return {
        "clean": ReaderFacts("0012345", "Agnieszka", "Wiśniewska",
                             "agnieszka.wisniewska@example.pl", d(365), zero, 0, d(-20), d(-3),
                             date(1985, 3, 14)),
        "fines": ReaderFacts("0023456", "Grzegorz", "Brzęczyszczykiewicz",
                             "g.brzeczyszczykiewicz@example.pl", d(200), Decimal("12.50"), 0,
                             d(-400), None, date(1971, 11, 2)),
        "fine_less_credit": ReaderFacts("0034567", "Małgorzata", "Żółkiewska",
                                        "malgorzata.zolkiewska@example.pl", d(100),
                                        Decimal("10.00"), 0, d(-3), None, date(1990, 7, 30)),
        "in_credit": ReaderFacts("0045678", "Łukasz", "Kołłątaj", "lukasz@kollataj.example.pl",
                                 d(90), zero, 0, d(-7), None, date(1979, 5, 3)),
        "overdue": ReaderFacts("0056789", "Jędrzej", "Śniadecki",
                               "jedrzej.sniadecki@example.pl", d(300), zero, 1, d(-50), d(-2),
                               date(1968, 8, 21)),
        "old_loans_only": ReaderFacts("0067890", "Zofia", "Nałkowska",
                                      "zofia.nalkowska@example.pl", d(150), zero, 0, d(-30),
                                      date(year - 1, 11, 20), date(1984, 11, 10)),
        "restricted": ReaderFacts("0078901", "Stanisław", "Wyspiański",
                                  "stanislaw@wyspianski.example.pl", d(-101), zero, 0, d(-2),
                                  None, date(1969, 1, 15)),
        "restricted_until": ReaderFacts("0089012", "Ewa", "Łętowska",
                                        "ewa.letowska@example.pl", d(-6), zero, 0, d(-1), None,
                                        date(1940, 6, 22)),
        "restriction_over": ReaderFacts("0090123", "Józef Ignacy", "Kraszewski",
                                        "jik@example.pl", d(200), zero, 0, d(-10), None,
                                        date(1962, 7, 28)),
        "card_expired": ReaderFacts("0101234", "Wisława", "Szymborska",
                                    "wislawa.szymborska@example.pl", d(-40), zero, 0, d(-40),
                                    None, date(1953, 7, 2)),
        "child": ReaderFacts("0112345", "Staś", "Tarkowski", None, d(700), zero, 0, d(-60),
                             d(-5), date(year - 10, 6, 1)),
        "legacy_record": ReaderFacts("0123456", "", "Sienkiewicz", None, None, zero, 0,
                                     d(-800), None, None),
        "renewed": ReaderFacts("0134567", "Maria", "Konopnicka",
                               "maria.konopnicka@example.pl", d(300), zero, 0, d(-5), d(-100),
                               date(1972, 5, 23)),
        "self_registered": ReaderFacts("0145678", "Bolesław", "Prus",
                                       "boleslaw.prus@example.pl", d(27), zero, 0, d(-3), None,
                                       date(1987, 8, 20)),
    }


# --------------------------------------------------------------------------- helpers


def _source(url: str, query: str = "koha", timeout: float = 5.0) -> SqlReaders:
    return SqlReaders(SqlSourceSettings(url=url, query=query, timeout=timeout))


def _lookup(source: SqlReaders, card: str) -> ReaderFacts | None:
    try:
        return source.lookup(None, library_id="mok", card=card)
    finally:
        source.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- the preset


@pytest.mark.parametrize("who", [
    "clean", "fines", "fine_less_credit", "in_credit", "overdue", "old_loans_only",
    "restricted", "restricted_until", "restriction_over", "card_expired", "child",
    "legacy_record", "renewed", "self_registered",
])
def test_koha_preset_reads_every_field_of_each_patron(koha: KohaDb, who: str) -> None:
    # Each patron comes back with exactly the facts Koha holds for them, via a SELECT-only login.
    expected = _expected(koha.today, koha.now)[who]
    assert _lookup(_source(koha.ro_url), expected.card_number) == expected


def test_koha_preset_tells_confirmed_accounts_by_the_self_registration_category(
        koha: KohaDb) -> None:
    # Told the categories of accounts registered online (sql.unconfirmed_categories): a
    # patron in one is not confirmed, every other one is; not told, nobody is known.
    expected = _expected(koha.today, koha.now)
    source = SqlReaders(SqlSourceSettings(url=koha.ro_url, unconfirmed_categories=("SELFREG",
                                                                                   "WWW")))
    assert _lookup(source, "0145678") == replace(expected["self_registered"], confirmed=False)
    for who in ("clean", "child", "legacy_record"):
        assert _lookup(source, expected[who].card_number) == replace(expected[who],
                                                                     confirmed=True)
    assert _lookup(_source(koha.ro_url), "0145678").confirmed is None


def test_a_library_requiring_confirmed_accounts_needs_a_query_that_says_so(
        koha: KohaDb) -> None:
    # Its own query without the column keeps the patron waiting, naming the column.
    query = "SELECT surname AS last_name FROM borrowers WHERE cardnumber = :card"
    source = SqlReaders(SqlSourceSettings(url=koha.ro_url, query=query),
                        required=frozenset({"confirmed"}))
    with pytest.raises(SourceUnavailable, match="confirmed"):
        _lookup(source, "0012345")
    query = ("SELECT surname AS last_name, categorycode <> 'SELFREG' AS confirmed "
             "FROM borrowers WHERE cardnumber = :card")
    source = SqlReaders(SqlSourceSettings(url=koha.ro_url, query=query),
                        required=frozenset({"confirmed"}))
    assert _lookup(source, "0145678").confirmed is False


def test_unknown_card_is_none(koha: KohaDb) -> None:
    # A card Koha does not know is None, not an error; leading zeros are part of the card.
    source = _source(koha.ro_url)
    try:
        assert source.lookup(None, library_id="mok", card="0999999") is None
        assert source.lookup(None, library_id="mok", card="12345") is None
    finally:
        source.close()


def test_one_source_answers_many_lookups_on_its_pooled_engine(koha: KohaDb) -> None:
    # Successive lookups reuse one engine and keep answering.
    source = _source(koha.ro_url)
    try:
        first = source.lookup(None, library_id="mok", card="0023456")
        engine = source._engine
        again = source.lookup(None, library_id="mok", card="0023456")
        assert first == again and first is not None and source._engine is engine
    finally:
        source.close()


def test_koha_preset_needs_mariadb_or_mysql() -> None:
    # The Koha preset on a PostgreSQL URL is a config error, found before any lookup.
    with pytest.raises(ConfigError, match="koha"):
        _source(f"postgresql+psycopg://postgres@{HOST}:{POSTGRES_PORT}/test")


def test_a_query_without_the_card_parameter_is_a_config_error() -> None:
    # A query that cannot receive the card (or a misspelt preset) is refused at startup.
    with pytest.raises(ConfigError, match=":card"):
        _source(f"mysql+pymysql://root@{HOST}/x", query="kohaa")
    with pytest.raises(ConfigError, match=":card"):
        _source(f"mysql+pymysql://root@{HOST}/x",
                query="SELECT surname AS last_name FROM borrowers")


def test_koha_query_reads_only_the_koha_tables() -> None:
    # The preset touches borrowers, accountlines, issues, old_issues, borrower_debarments only.
    tables = set(re.findall(r"\bFROM\s+(\w+)", KOHA_QUERY))
    assert tables == {"borrowers", "accountlines", "issues", "old_issues", "borrower_debarments"}


# --------------------------------------------------------------------------- custom queries


def test_custom_query_with_some_columns_fills_the_rest_with_defaults(koha: KohaDb) -> None:
    # A library's own query may return only what it has; the other fields are None or 0.
    query = ("SELECT surname AS last_name, dateexpiry AS valid_until, "
             "DATE_FORMAT(dateofbirth, '%d.%m.%Y') AS birth_date "
             "FROM borrowers WHERE cardnumber = :card")
    facts = _lookup(_source(koha.ro_url, query), "0101234")
    assert facts == ReaderFacts("0101234", "", "Szymborska", None, _day(koha.now, -40),
                                Decimal("0.00"), 0, None, None, date(1953, 7, 2))


def test_query_returning_two_rows_keeps_the_patron_waiting(koha: KohaDb) -> None:
    # Two rows for one card is a broken query: SourceUnavailable saying one row is required.
    query = ("SELECT surname AS last_name FROM borrowers "
             "WHERE cardnumber = :card OR categorycode = 'SENIOR'")
    with pytest.raises(SourceUnavailable, match="more than one row.*exactly one row"):
        _lookup(_source(koha.ro_url, query), "0012345")


def test_unknown_column_keeps_the_patron_waiting(koha: KohaDb) -> None:
    # A misnamed column (balance for balance_due) must not silently count as "owes nothing".
    query = ("SELECT surname AS last_name, 99 AS balance FROM borrowers "
             "WHERE cardnumber = :card")
    with pytest.raises(SourceUnavailable, match="'balance'.*not a reader field"):
        _lookup(_source(koha.ro_url, query), "0012345")


def test_a_column_that_is_no_date_keeps_the_patron_waiting(koha: KohaDb) -> None:
    # A value that cannot be read as its field's type names the column and does not refuse.
    query = ("SELECT surname AS last_name, 'soon' AS valid_until FROM borrowers "
             "WHERE cardnumber = :card")
    with pytest.raises(SourceUnavailable, match="column valid_until"):
        _lookup(_source(koha.ro_url, query), "0012345")


def test_an_amount_as_text_is_read_as_the_reader_file_reads_it(koha: KohaDb) -> None:
    # "12,50 zł" and "1.234,56" in a text column are amounts (they raised before).
    for written, amount in (("12,50 zł", "12.50"), ("1.234,56", "1234.56"), ("PLN 5", "5.00")):
        query = (f"SELECT surname AS last_name, '{written}' AS balance_due FROM borrowers "
                 "WHERE cardnumber = :card")
        facts = _lookup(_source(koha.ro_url, query), "0012345")
        assert facts is not None and facts.balance_due == Decimal(amount)


def test_an_ambiguous_amount_keeps_the_patron_waiting_naming_the_column(koha: KohaDb) -> None:
    # "1.234" may be 1234 or 1.234: never a guess (it was 1.23), the request waits.
    query = ("SELECT surname AS last_name, '1.234' AS balance_due FROM borrowers "
             "WHERE cardnumber = :card")
    with pytest.raises(SourceUnavailable, match="column balance_due: cannot read '1.234'"):
        _lookup(_source(koha.ro_url, query), "0012345")


def test_lookup_runs_read_only_even_with_a_login_that_could_write(koha: KohaDb) -> None:
    # An INSERT smuggled in as the query fails in the read-only transaction; nothing is written.
    query = ("INSERT INTO borrowers (cardnumber, surname, branchcode, categorycode) "
             "VALUES (:card, 'Intruz', 'MOK', 'DOROSLY')")
    with pytest.raises(SourceUnavailable, match="READ ONLY"):
        _lookup(_source(koha.url(), query), "6666666")
    root = _mariadb_root(koha.name)
    try:
        with root.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM borrowers WHERE cardnumber = '6666666'")
            assert cur.fetchone()[0] == 0
    finally:
        root.close()


# --------------------------------------------------------------------------- failures


def test_server_not_listening_is_unavailable_at_once(koha: KohaDb) -> None:
    # MariaDB down (nothing on the port): SourceUnavailable within a second, not a refusal.
    source = _source(koha.url(port=_closed_port()), timeout=5)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="Can't connect"):
        _lookup(source, "0012345")
    assert time.monotonic() - started < 1.5


def test_server_that_accepts_but_never_answers_times_out(koha: KohaDb) -> None:
    # A server that hangs before its greeting is given up after the configured timeout.
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(5)
    try:
        source = _source(koha.url(port=listener.getsockname()[1]), timeout=1)
        started = time.monotonic()
        with pytest.raises(SourceUnavailable):
            _lookup(source, "0012345")
        assert time.monotonic() - started < 3
    finally:
        listener.close()


def test_slow_query_times_out(koha: KohaDb) -> None:
    # A query slower than the timeout is abandoned: SourceUnavailable, the patron waits.
    query = ("SELECT surname AS last_name, SLEEP(4) AS overdue_items FROM borrowers "
             "WHERE cardnumber = :card")
    started = time.monotonic()
    with pytest.raises(SourceUnavailable):
        _lookup(_source(koha.ro_url, query, timeout=1), "0012345")
    assert time.monotonic() - started < 2.5


def test_server_gone_mid_query_is_unavailable(koha: KohaDb) -> None:
    # The connection killed while the query runs (a server restart) is SourceUnavailable.
    marker = secrets.token_hex(4)
    query = (f"SELECT surname AS last_name, SLEEP(3) AS overdue_items, '{marker}' AS first_name "
             "FROM borrowers WHERE cardnumber = :card")

    def kill_it() -> None:
        root = _mariadb_root()
        try:
            with root.cursor() as cur:
                for _ in range(50):
                    cur.execute("SELECT ID FROM information_schema.PROCESSLIST "
                                "WHERE INFO LIKE %s AND INFO NOT LIKE %s",
                                (f"%{marker}%", "%PROCESSLIST%"))
                    row = cur.fetchone()
                    if row:
                        cur.execute(f"KILL CONNECTION {int(row[0])}")
                        return
                    time.sleep(0.05)
        finally:
            root.close()

    killer = threading.Thread(target=kill_it)
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(SourceUnavailable, match="OperationalError"):
            _lookup(_source(koha.ro_url, query, timeout=5), "0012345")
    finally:
        killer.join()
    assert time.monotonic() - started < 2.5


def test_source_reconnects_after_its_pooled_connection_died(koha: KohaDb) -> None:
    # After the server dropped an idle pooled connection, the next lookup still answers.
    query = ("SELECT surname AS last_name, CONNECTION_ID() AS overdue_items "
             "FROM borrowers WHERE cardnumber = :card")
    source = _source(koha.ro_url, query)
    try:
        first = source.lookup(None, library_id="mok", card="0012345")
        assert first is not None
        root = _mariadb_root()
        try:
            with root.cursor() as cur:
                cur.execute(f"KILL CONNECTION {first.overdue_items}")
        finally:
            root.close()
        second = source.lookup(None, library_id="mok", card="0012345")
        assert second is not None and second.overdue_items != first.overdue_items
    finally:
        source.close()


def test_wrong_password_is_unavailable_and_the_message_hides_it(koha: KohaDb) -> None:
    # A refused login keeps patrons waiting; neither password appears in the message.
    wrong = "Zle-Haslo-" + secrets.token_hex(4)
    with pytest.raises(SourceUnavailable) as caught:
        _lookup(_source(koha.url(koha.ro_user, wrong)), "0012345")
    message = str(caught.value)
    assert "Access denied" in message and koha.ro_user in message and "***" in message
    assert wrong not in message and koha.ro_password not in message
    assert wrong not in repr(_source(koha.url(koha.ro_user, wrong)))


# --------------------------------------------------------------------------- PostgreSQL


def _postgres() -> psycopg.Connection:
    return psycopg.connect(host=HOST, port=POSTGRES_PORT, dbname="test", user="postgres",
                           autocommit=True, connect_timeout=5)


def test_custom_query_on_postgresql() -> None:
    # The source is engine-agnostic: a PostgreSQL query answers, converts types, stays read-only.
    pg = _wait_for(_postgres, ["pg_ctlcluster", "15", "main", "start"],
                   f"PostgreSQL on {HOST}:{POSTGRES_PORT}")
    schema = f"mailbot_{secrets.token_hex(4)}"
    try:
        pg.execute(f"CREATE SCHEMA {schema}")
        pg.execute(f"""CREATE TABLE {schema}.czytelnicy (
            karta text PRIMARY KEY, imie text, nazwisko text NOT NULL, email text,
            wazna_do text, saldo double precision, przetrzymania bigint,
            zmiana timestamptz, urodzony date)""")
        pg.execute(f"INSERT INTO {schema}.czytelnicy VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                   ("000777", "Bolesław", "Prus", "b.prus@example.pl", "31.12.2030", 12.5, 2,
                    datetime.fromisoformat("2026-02-03T12:00:00+01:00"), date(1947, 8, 20)))
        query = (f"SELECT karta AS card_number, imie AS first_name, nazwisko AS last_name, "
                 f"email, wazna_do AS valid_until, saldo AS balance_due, "
                 f"przetrzymania AS overdue_items, zmiana AS data_updated_on, "
                 f"urodzony AS birth_date FROM {schema}.czytelnicy WHERE karta = :card")
        url = f"postgresql+psycopg://postgres@{HOST}:{POSTGRES_PORT}/test"
        source = _source(url, query, timeout=3)
        try:
            assert source.lookup(None, library_id="x", card="000777") == ReaderFacts(
                "000777", "Bolesław", "Prus", "b.prus@example.pl", date(2030, 12, 31),
                Decimal("12.50"), 2, date(2026, 2, 3), None, date(1947, 8, 20))
            assert source.lookup(None, library_id="x", card="777") is None
        finally:
            source.close()
        writer = (f"INSERT INTO {schema}.czytelnicy (karta, nazwisko) VALUES (:card, 'X') "
                  "RETURNING nazwisko AS last_name")
        with pytest.raises(SourceUnavailable, match="read-only transaction"):
            _lookup(_source(url, writer), "000888")
        assert pg.execute(f"SELECT count(*) FROM {schema}.czytelnicy").fetchone()[0] == 1
    finally:
        pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        pg.close()
