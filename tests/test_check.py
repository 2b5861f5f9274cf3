"""`mailbot check`: every mailbox, relay, reader source and the database, one line each,
against real servers (Dovecot, aiosmtpd); exit 0 only when all is well."""

from __future__ import annotations

import email
import email.policy
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailbot.cli import main
from tests.botenv import READER_HEADER, valid_reader
from tests.servers import LOCALHOST, ImapUser, SmtpSink, free_port

RELAY_USER, RELAY_PASSWORD = "relay-a", "relay-secret-7"


@pytest.fixture
def auth_relay() -> Iterator[SmtpSink]:
    """A library's own relay that wants a login (AUTH PLAIN/LOGIN, no TLS: loopback)."""
    sink = SmtpSink(auth=(RELAY_USER, RELAY_PASSWORD))
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def _mailbox(address: str, user: ImapUser, *, password: str | None = None,
             relay: str = "") -> str:
    return f"""
[[mailboxes]]
library = "{address.split('@')[0]}"
address = "{address}"
host = "{user.host}"
port = {user.port}
ssl = false
username = "{user.name}"
password = "{password or user.password}"
{relay}
"""


def _own_relay(sink: SmtpSink, *, password: str = RELAY_PASSWORD, port: int | None = None) -> str:
    return f"""
[mailboxes.smtp]
host = "{sink.host}"
port = {port or sink.port}
username = "{RELAY_USER}"
password = "{password}"
timeout = 5.0
"""


def _config(tmp_path: Path, *, smtp_port: int, libraries: str, mailboxes: str,
            smtp_timeout: float = 5.0, database_url: str | None = None,
            smtp_extra: str = "") -> Path:
    path = tmp_path / "mailbot.toml"
    path.write_text(f"""
timezone = "Europe/Warsaw"
database_url = "{database_url or f'sqlite:///{tmp_path}/mailbot.db'}"

[smtp]
host = "{LOCALHOST}"
port = {smtp_port}
timeout = {smtp_timeout}
{smtp_extra}
{libraries}
{mailboxes}
""", encoding="utf-8")
    return path


def _library(lib_id: str, extra: str = "") -> str:
    return f'\n[[libraries]]\nid = "{lib_id}"\nname = "Biblioteka {lib_id}"\n{extra}\n'


def _import_readers(config: Path, library: str) -> None:
    csv = config.parent / f"readers-{library}.csv"
    csv.write_text(f"{READER_HEADER}\n0001234;Anna;Nowak;anna@patron.test;"
                   f"{valid_reader(2026)}\n", encoding="utf-8")
    assert main(["--config", str(config), "import-readers", str(csv), "--library", library]) == 0


def _check(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["--config", str(config), "check", *args])
    return code, capsys.readouterr().out.splitlines()


def _line(lines: list[str], item: str) -> str:
    found = [line for line in lines if item in line]
    assert len(found) == 1, (item, lines)
    return found[0]


def _good(tmp_path: Path, imap_user_factory: Callable[..., ImapUser], smtp_sink: SmtpSink,
          auth_relay: SmtpSink, database_url: str | None = None) -> tuple[Path, list[ImapUser]]:
    """Two libraries: 'a' sends through its own relay (with a login), 'b' through [smtp]."""
    users = [imap_user_factory(), imap_user_factory()]
    for user in users:
        user.create_folder("mailbot/manual")
        user.create_folder("mailbot/processed")
    config = _config(tmp_path, smtp_port=smtp_sink.port,
                     libraries=_library("a") + _library("b"),
                     mailboxes=_mailbox("a@lib-a.test", users[0], relay=_own_relay(auth_relay))
                     + _mailbox("b@lib-b.test", users[1]), database_url=database_url)
    _import_readers(config, "a")
    _import_readers(config, "b")
    return config, users


def test_a_good_installation_passes(tmp_path, imap_user_factory, smtp_sink, auth_relay, capsys,
                                    database_url):
    # Every mailbox, relay, reader source and the database (SQLite or PostgreSQL) is OK:
    # exit 0, and nothing is sent.
    config, users = _good(tmp_path, imap_user_factory, smtp_sink, auth_relay, database_url)
    code, lines = _check(config, capsys)
    assert code == 0, lines
    items = lines[:-1]
    assert len(items) == 1 + 2 + 2 + 2  # database, 2 reader sources, 2 mailboxes, 2 relays
    assert all(line.startswith("OK") for line in items), lines
    assert lines[-1] == "7 OK, 0 FAIL, 0 SKIP"
    assert "schema at" in _line(lines, f"database {database_url.split(':')[0]}:")
    assert "1 reader(s)" in _line(lines, "library a reader source local")
    assert f"logged in as {RELAY_USER}" in _line(lines, f"relay smtp://{RELAY_USER}@")
    assert "takes mail from a@lib-a.test" in _line(lines, f"relay smtp://{RELAY_USER}@")
    assert "takes mail from b@lib-b.test" in _line(lines, "relay smtp://@")
    assert smtp_sink.messages == [] and auth_relay.messages == []
    assert [login.success for login in auth_relay.logins] == [True]
    for user in users:
        assert user.password not in "\n".join(lines)
    assert RELAY_PASSWORD not in "\n".join(lines)


def test_each_broken_item_is_named(tmp_path, imap_user_factory, smtp_sink, auth_relay, capsys):
    # A wrong mailbox password, missing folders, an unreachable relay, a relay refusing its
    # password, a library without readers and an sql source without its table: each is a
    # FAIL line naming the item and why, and the exit code is 1. No password is printed.
    good, wrong, bare = imap_user_factory(), imap_user_factory(), imap_user_factory()
    good.create_folder("mailbot/manual")
    good.create_folder("mailbot/processed")
    wrong_password = "not-the-password-3"
    koha = tmp_path / "koha.db"
    sqlite3.connect(koha).close()  # a database without the borrowers table
    sql = f'reader_source = "sql"\n[libraries.sql]\nurl = "sqlite:///{koha}"\n' \
          'query = "SELECT cardnumber AS card_number FROM borrowers WHERE cardnumber = :card"\n'
    dead_port = free_port()
    config = _config(
        tmp_path, smtp_port=dead_port,
        libraries=_library("a") + _library("b") + _library("c", sql),
        mailboxes=_mailbox("a@lib-a.test", good)
        + _mailbox("b@lib-b.test", wrong, password=wrong_password,
                   relay=_own_relay(auth_relay, password="wrong-relay-pw"))
        + _mailbox("c@lib-c.test", bare))
    _import_readers(config, "a")

    code, lines = _check(config, capsys)
    assert code == 1, lines
    text = "\n".join(lines)
    assert _line(lines, "database ").startswith("OK")
    assert _line(lines, "library a reader source local").startswith("OK")
    no_readers = _line(lines, "library b reader source local")
    assert no_readers.startswith("FAIL") and "no readers imported" in no_readers
    assert "import-readers FILE --library b" in no_readers
    no_table = _line(lines, "library c reader source sql")
    assert no_table.startswith("FAIL") and "borrowers" in no_table
    assert _line(lines, "mailbox a@lib-a.test").startswith("OK")
    refused = _line(lines, "mailbox b@lib-b.test")
    assert refused.startswith("FAIL") and "login refused" in refused
    assert f"imap://{wrong.name}@" in refused  # the mailbox's key, as in the config
    folders = _line(lines, "mailbox c@lib-c.test")
    assert folders.startswith("FAIL")
    assert "'mailbot/manual' (manual_folder) does not exist" in folders
    assert "'mailbot/processed' (processed_folder) does not exist" in folders
    unreachable = _line(lines, f"relay smtp://@{LOCALHOST}:{dead_port}")
    assert unreachable.startswith("FAIL") and "cannot connect" in unreachable
    relay_refused = _line(lines, f"relay smtp://{RELAY_USER}@")
    assert relay_refused.startswith("FAIL") and "login refused" in relay_refused
    assert "535" in relay_refused
    assert lines[-1] == "3 OK, 6 FAIL, 0 SKIP"
    for secret in (wrong_password, "wrong-relay-pw", good.password, bare.password):
        assert secret not in text

    # --create-folders creates what was missing; that mailbox is then OK.
    code, lines = _check(config, capsys, "--create-folders")
    created = _line(lines, "mailbox c@lib-c.test")
    assert created.startswith("OK") and "created mailbot/manual, mailbot/processed" in created
    assert {"mailbot/manual", "mailbot/processed"} <= set(bare.folders())
    code, lines = _check(config, capsys)
    assert _line(lines, "mailbox c@lib-c.test").startswith("OK")
    assert code == 1  # the rest is still broken


def test_send_test_delivers_through_each_relay(tmp_path, imap_user_factory, smtp_sink,
                                               auth_relay, capsys):
    # --send-test sends a short bilingual message through each relay, from an address that
    # relay serves, logged in as that relay's account.
    config, _users = _good(tmp_path, imap_user_factory, smtp_sink, auth_relay)
    code, lines = _check(config, capsys, "--send-test", "it@consortium.test")
    assert code == 0, lines
    assert _line(lines, f"test message via relay smtp://{RELAY_USER}@").startswith("OK")
    assert _line(lines, "test message via relay smtp://@").startswith("OK")
    (own,) = auth_relay.wait_for(1)
    (shared,) = smtp_sink.wait_for(1)
    assert own.mail_from == "a@lib-a.test" and own.rcpt_tos == ("it@consortium.test",)
    assert own.auth_login == RELAY_USER
    assert shared.mail_from == "b@lib-b.test" and shared.rcpt_tos == ("it@consortium.test",)
    msg = email.message_from_bytes(own.raw, policy=email.policy.default)
    assert msg["Subject"] == "mailbot: wiadomość testowa / test message"
    assert msg["From"] == "a@lib-a.test" and msg["To"] == "it@consortium.test"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert "To jest wiadomość testowa" in body and "This is a test message" in body
    assert f"smtp://{RELAY_USER}@" in body and RELAY_PASSWORD not in own.raw.decode()


def test_send_test_to_a_non_address_is_bad_input(tmp_path, imap_user_factory, smtp_sink,
                                                 auth_relay, capsys):
    # A typo in the address is a user error (exit 2), before anything is sent.
    config, _users = _good(tmp_path, imap_user_factory, smtp_sink, auth_relay)
    assert main(["--config", str(config), "check", "--send-test", "it at consortium"]) == 2
    assert smtp_sink.messages == [] and auth_relay.messages == []


def test_a_hung_relay_does_not_hang_the_check(tmp_path, imap_user_factory, smtp_sink, capsys):
    # A relay that accepts the connection and never greets fails after its timeout; the
    # other items are still checked.
    user = imap_user_factory()
    user.create_folder("mailbot/manual")
    user.create_folder("mailbot/processed")
    with socket.socket() as silent:
        silent.bind((LOCALHOST, 0))
        silent.listen(5)  # the kernel completes the handshake; nobody ever answers
        config = _config(tmp_path, smtp_port=silent.getsockname()[1], smtp_timeout=1.0,
                         libraries=_library("a"), mailboxes=_mailbox("a@lib-a.test", user))
        _import_readers(config, "a")
        started = time.monotonic()
        code, lines = _check(config, capsys)
        assert time.monotonic() - started < 15
    assert code == 1
    hung = _line(lines, "relay smtp://@")
    assert hung.startswith("FAIL") and "cannot connect" in hung
    assert _line(lines, "mailbox a@lib-a.test").startswith("OK")


def test_a_database_behind_the_migrations_is_named(tmp_path, imap_user_factory, smtp_sink,
                                                    auth_relay, capsys):
    # A schema older than this mailbot's newest migration fails, saying what to run.
    config, _users = _good(tmp_path, imap_user_factory, smtp_sink, auth_relay)
    with sqlite3.connect(tmp_path / "mailbot.db") as db:
        head = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        db.execute("UPDATE alembic_version SET version_num = '0003'")
    code, lines = _check(config, capsys)
    assert code == 1
    behind = _line(lines, "database sqlite:///")
    assert behind.startswith("FAIL")
    assert f"at revision 0003, this mailbot needs {head}" in behind
    assert "mailbot db upgrade" in behind


def test_a_database_that_could_not_be_created_fails(tmp_path, smtp_sink, capsys):
    # database_url pointing into a folder that is not there: the first run would fail.
    config = _config(tmp_path, smtp_port=smtp_sink.port, libraries=_library("a"),
                     database_url=f"sqlite:///{tmp_path}/nowhere/mailbot.db",
                     smtp_extra=f'file_outbox = "{tmp_path}/outbox"', mailboxes="")
    code, lines = _check(config, capsys)
    assert code == 1
    database = _line(lines, "database sqlite:///")
    assert database.startswith("FAIL") and "nowhere does not exist" in database, database


def test_a_missing_database_is_named_not_created(tmp_path, smtp_sink, capsys):
    # Before the first run there is no database: check says so, creates none and does
    # not fail for it while its folder is writable (the first import or run creates it).
    # A Maildir that is not there fails until --create-folders makes it; a file outbox
    # takes the test message as a file.
    config = _config(tmp_path, smtp_port=smtp_sink.port, libraries=_library("a"),
                     smtp_extra=f'file_outbox = "{tmp_path}/outbox"',
                     mailboxes=f'[[mailboxes]]\nlibrary = "a"\naddress = "a@lib-a.test"\n'
                               f'type = "maildir"\npath = "{tmp_path}/md"\n')
    code, lines = _check(config, capsys)
    assert code == 1
    database = _line(lines, "database sqlite:///")
    assert database.startswith("OK") and "not created yet" in database, database
    reader = _line(lines, "library a reader source local")
    assert reader.startswith("FAIL") and "no readers imported" in reader, reader
    assert not (tmp_path / "mailbot.db").exists()
    maildir = _line(lines, "mailbox a@lib-a.test")
    assert maildir.startswith("FAIL") and "--create-folders" in maildir
    assert "will be written to" in _line(lines, "relay file:")
    code, lines = _check(config, capsys, "--create-folders", "--send-test", "it@x.test")
    assert _line(lines, "mailbox a@lib-a.test").startswith("OK")
    assert (tmp_path / "md" / "cur").is_dir() and (tmp_path / "md" / ".mailbot.manual").is_dir()
    assert _line(lines, "test message via relay file:").startswith("OK")
    (written,) = (tmp_path / "outbox").glob("check-*.eml")
    assert not (tmp_path / "mailbot.db").exists()
    msg = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert msg["From"] == "a@lib-a.test" and msg["To"] == "it@x.test"
    assert smtp_sink.messages == []


def test_sip2_sources_are_logged_in_to(tmp_path, smtp_sink, capsys):
    # A sip2 reader source is OK when it logs in and answers SC Status; a refused login
    # names the server and fails, without printing the SIP2 password.
    from tests.readers.sip2server import Sip2TestServer

    with Sip2TestServer([], username="mailbot", password="sip-secret-1") as sip:
        def sip2(password: str) -> str:
            return (f'reader_source = "sip2"\n[libraries.sip2]\nhost = "{LOCALHOST}"\n'
                    f'port = {sip.port}\nusername = "mailbot"\npassword = "{password}"\n'
                    'timeout = 2.0\nretries = 0\n')

        config = _config(tmp_path, smtp_port=smtp_sink.port,
                         libraries=_library("a", sip2("sip-secret-1"))
                         + _library("b", sip2("wrong-sip-2")), mailboxes="")
        code, lines = _check(config, capsys)
    assert code == 1  # no database yet, and library b's login
    good = _line(lines, "library a reader source sip2")
    assert good.startswith("OK") and "logged in as mailbot; online" in good
    refused = _line(lines, "library b reader source sip2")
    assert refused.startswith("FAIL") and "login refused" in refused
    assert "sip-secret-1" not in "\n".join(lines) and "wrong-sip-2" not in "\n".join(lines)


def test_an_item_that_never_answers_fails_after_its_own_time_limit():
    # Whatever an item waits for, it fails once its time limit has passed; the items after
    # it are still run and reported, in order.
    from mailbot.check.deadline import run_all
    from mailbot.check.items import Check

    started = time.monotonic()
    results = list(run_all([Check("stuck", lambda: time.sleep(30) or "", timeout=0.3),
                            Check("fine", lambda: "ok", timeout=5.0)]))
    assert time.monotonic() - started < 3
    assert [(r.state, r.item) for r in results] == [("FAIL", "stuck"), ("OK", "fine")]
    assert results[0].detail == "no answer within 0.3 s"


def test_every_address_a_shared_relay_sends_for_is_tried(tmp_path, imap_user_factory,
                                                         smtp_sink, capsys):
    # Two libraries share the consortium's [smtp]; it takes mail from one domain only (a
    # provider's sender-domain rule). Trying the first mailbox's address alone passed; each
    # address is tried, and the refused one is named.
    users = [imap_user_factory(), imap_user_factory()]
    for user in users:
        user.create_folder("mailbot/manual")
        user.create_folder("mailbot/processed")
    config = _config(tmp_path, smtp_port=smtp_sink.port, libraries=_library("a") + _library("b"),
                     mailboxes=_mailbox("a@lib-a.test", users[0]) + _mailbox("b@lib-b.test",
                                                                             users[1]))
    _import_readers(config, "a")
    _import_readers(config, "b")
    smtp_sink.fail_with(553, "5.7.1 Sender address rejected: not owned by user", count=1,
                        stage="MAIL")
    code, lines = _check(config, capsys)
    relay = _line(lines, "relay smtp://@")
    assert code == 1 and relay.startswith("FAIL"), lines
    assert "MAIL FROM:<a@lib-a.test> is refused: 553" in relay
    assert "b@lib-b.test" not in relay  # the second address was taken
    code, lines = _check(config, capsys)
    assert code == 0 and "takes mail from a@lib-a.test, b@lib-b.test" in _line(
        lines, "relay smtp://@")
