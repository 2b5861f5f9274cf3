"""TLS and secrets, end to end (issue 5): IMAPS/STARTTLS and SMTPS/STARTTLS verify the server's
certificate and host name by default, never fall back to plaintext, and no password shows up
in output or logs.

Real servers only: a Dovecot with a certificate from a CA the tests make (``tests/pki.py``),
aiosmtpd sinks with the same certificate. The certificate names 127.0.0.1 only, so reaching
the same server as ``localhost`` is a host name mismatch.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailbot.db.models import Outbox
from mailbot.db.session import open_database
from tests.botenv import Bot, request_mail
from tests.pki import Pki, make_test_pki
from tests.servers import Dovecot, ImapUser, SmtpLogin, SmtpSink

LIB = "lib"
IMAP_PASSWORD = "Imap-Secret-5c1e9a"
SMTP_USER = "mailbot-relay"
SMTP_PASSWORD = "Relay-Secret-77b2d4"
# Logs of the test servers themselves (aiosmtpd logs AUTH exchanges at DEBUG): not mailbot's.
SERVER_LOGGERS = ("mail.log",)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a server certificate valid for 127.0.0.1 only (not for localhost)."""
    return make_test_pki(tmp_path_factory.mktemp("mail-pki"), name="mail", hosts=("127.0.0.1",))


@pytest.fixture(scope="module")
def tls_dovecot(pki: Pki) -> Iterator[Dovecot]:
    """A Dovecot with ``ssl = yes``: IMAPS on ``imaps_port``, STARTTLS on ``port``."""
    server = Dovecot(tls=pki, ssl_mode="yes")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


_numbers = iter(range(1, 10_000))


@pytest.fixture
def tls_user(tls_dovecot: Dovecot) -> ImapUser:
    if not tls_dovecot.running:
        tls_dovecot.start()
    user = ImapUser(f"tlsuser{next(_numbers)}", IMAP_PASSWORD, tls_dovecot)
    tls_dovecot.add_user(user.name, user.password)
    return user


@pytest.fixture
def plain_user(imap_user_factory: Callable[..., ImapUser]) -> ImapUser:
    """A user on the suite's plaintext Dovecot (``ssl = no``: no STARTTLS offered)."""
    return imap_user_factory(password=IMAP_PASSWORD)


@pytest.fixture
def sink_factory() -> Iterator[Callable[..., SmtpSink]]:
    sinks: list[SmtpSink] = []

    def make(**kwargs: Any) -> SmtpSink:
        sink = SmtpSink(**kwargs).start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()


# --------------------------------------------------------------------------- helpers


def _toml(table: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        return json.dumps(str(v))  # a TOML basic string

    return "".join(f"{k} = {value(v)}\n" for k, v in table.items() if v is not None)


def make_tls_bot(tmp_path: Path, *, mailbox: dict[str, Any], smtp: dict[str, Any]) -> Bot:
    """A one-library, one-mailbox installation with explicit TLS settings on both sides."""
    config = tmp_path / "mailbot.toml"
    config.write_text(f"""
timezone = "Europe/Warsaw"
database_url = "sqlite:///{tmp_path}/mailbot.db"

[smtp]
{_toml(smtp)}
[[libraries]]
id = "{LIB}"
name = "Biblioteka Testowa"

[[mailboxes]]
library = "{LIB}"
address = "ebooki@biblioteka.test"
type = "imap"
{_toml(mailbox)}""", encoding="utf-8")
    return Bot(root=tmp_path, config=config, library=LIB)


def imap_settings(user: ImapUser, *, mode: str, ca_file: Path | None,
                  host: str | None = None) -> dict[str, Any]:
    """``mode``: "imaps" (implicit TLS), "starttls" or "plain"."""
    server = user.server
    port = server.imaps_port if mode == "imaps" else server.port
    return {"host": host or server.host, "port": port, "ssl": mode == "imaps",
            "starttls": mode == "starttls", "ca_file": ca_file, "username": user.name,
            "password": user.password}


def smtp_settings(sink: SmtpSink, *, mode: str, ca_file: Path | None, host: str | None = None,
                  auth: bool = False) -> dict[str, Any]:
    """``mode``: "smtps" (implicit TLS), "starttls" or "plain"."""
    return {"host": host or sink.host, "port": sink.port, "ssl": mode == "smtps",
            "starttls": mode == "starttls", "ca_file": ca_file,
            "username": SMTP_USER if auth else None, "password": SMTP_PASSWORD if auth else None}


def prepare(bot: Bot, user: ImapUser) -> str:
    """Readers, one code and one valid request in the INBOX; returns its Message-ID."""
    w = bot.window()
    y = w.year
    assert bot.import_readers([
        f"0010001;Anna;Kowalska;anna@patron.test;{y + 1}-12-31;0;0;{y}-01-15;{y}-02-01"]) == 0
    assert bot.import_codes(["LEG-TLS-0001"]) == 0
    raw, mid = request_mail("anna@patron.test", "LEGIMI", "Anna Kowalska 0010001",
                            date=w + timedelta(seconds=5))
    user.append(raw, internaldate=w + timedelta(seconds=5))
    return mid


def outbox(bot: Bot) -> list[Outbox]:
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        return list(s.scalars(select(Outbox).order_by(Outbox.id)))


def status(bot: Bot, capsys: pytest.CaptureFixture[str], *, exit_code: int = 0) -> str:
    """`mailbot status`'s output; it exits 1 when a mailbox or relay is failing."""
    capsys.readouterr()
    assert bot.cli("status") == exit_code
    return capsys.readouterr().out


def assert_no_secret(texts: list[str], caplog: pytest.LogCaptureFixture,
                     *secrets: str) -> None:
    """None of ``secrets`` (nor their base64, as AUTH sends them) in ``texts`` or the logs."""
    records = [r for r in caplog.records if not r.name.startswith(SERVER_LOGGERS)]
    assert records, "nothing was logged: the log check would prove nothing"
    logged = [logging.Formatter().format(r) for r in records]  # with tracebacks
    haystack = "\n".join(texts + logged)
    for secret in secrets:
        assert secret not in haystack
        assert base64.b64encode(secret.encode()).decode() not in haystack
        # AUTH PLAIN's "\0user\0password" as one base64 string
        plain = base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode()
        assert plain not in haystack


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the Dovecot log")
        time.sleep(0.02)


def _log_text(server: Dovecot) -> str:
    return server.log_path.read_text(encoding="utf-8", errors="replace")


def run_and_see_no_login(bot: Bot, user: ImapUser) -> int:
    """``run --once`` against ``user``'s Dovecot; asserts mailbot never logged in there.

    Dovecot logs a ``Login:`` line naming the user for every login and a ``no auth
    attempts`` line when a connection closes without one: once mailbot's connection has
    been logged as the latter, its login line would have been logged before it.
    """
    server = user.server
    _wait(lambda: len(server.login_lines(user.name)) == 1)  # the test's own APPEND
    closed_before = _log_text(server).count("no auth attempts")
    code = bot.run_once()
    _wait(lambda: _log_text(server).count("no auth attempts") > closed_before)
    assert len(server.login_lines(user.name)) == 1, server.login_lines(user.name)
    return code


# --------------------------------------------------------------------------- 1. IMAP TLS works


@pytest.mark.parametrize("mode", ["imaps", "starttls"])
def test_imap_over_tls_with_the_test_ca_fetches_and_answers(
        tmp_path, tls_user, smtp_sink, pki, mode, caplog, capsys):
    # IMAPS on the implicit-TLS port, or STARTTLS on the plain port, verified against the
    # test CA: a full run fetches the request and answers it, and every login was over TLS.
    caplog.set_level(logging.DEBUG)
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(tls_user, mode=mode, ca_file=pki.ca_file),
                       smtp=smtp_settings(smtp_sink, mode="plain", ca_file=None))
    mid = prepare(bot, tls_user)

    assert bot.run_once() == 0

    assert [r.outcome for r in bot.requests()] == ["issued"]
    [reply] = smtp_sink.messages
    assert reply.message["In-Reply-To"] == mid
    assert "LEG-TLS-0001" in reply.raw.decode()
    assert tls_user.list() == []  # moved out of INBOX
    # The test's APPEND and mailbot's session(s): Dovecot marks each TLS login "TLS"
    # (a plaintext loopback login would say "secured").
    _wait(lambda: len(tls_user.server.login_lines(tls_user.name)) >= 2)
    logins = [line for line in tls_user.server.login_lines(tls_user.name) if "Login:" in line]
    assert len(logins) >= 2 and all(", TLS," in line for line in logins), logins
    out = capsys.readouterr()
    assert "ERROR" not in status(bot, capsys)
    assert_no_secret([out.out, out.err], caplog, IMAP_PASSWORD)


# --------------------------------------------------------------------------- 2. no CA: refused


@pytest.mark.parametrize("mode", ["imaps", "starttls"])
def test_imap_self_signed_server_is_refused_without_ca_file(
        tmp_path, tls_user, smtp_sink, mode, caplog, capsys):
    # No ca_file (system CAs only): the test CA's server is refused, run --once exits 1,
    # nothing is fetched, status shows the certificate error, and no password leaks.
    caplog.set_level(logging.DEBUG)
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(tls_user, mode=mode, ca_file=None),
                       smtp=smtp_settings(smtp_sink, mode="plain", ca_file=None))
    prepare(bot, tls_user)
    capsys.readouterr()

    assert run_and_see_no_login(bot, tls_user) == 1
    run_out = capsys.readouterr()

    assert bot.requests() == []
    assert len(tls_user.list()) == 1  # still waiting in INBOX
    assert smtp_sink.messages == []
    text = status(bot, capsys, exit_code=1)
    [line] = [line for line in text.splitlines() if "mailbox ebooki@biblioteka.test" in line]
    assert "ERROR" in line and "certificate verify failed" in line, line
    assert "certificate verify failed" in run_out.err
    assert_no_secret([run_out.out, run_out.err, text], caplog, IMAP_PASSWORD)


# --------------------------------------------------------------------------- 3. host names


def test_imap_host_name_not_in_the_certificate_is_refused(
        tmp_path, tls_user, smtp_sink, pki, capsys):
    # The certificate names 127.0.0.1 only: the same server reached as "localhost" is
    # refused even though the CA is trusted, before any login.
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(tls_user, mode="imaps", ca_file=pki.ca_file,
                                                       host="localhost"),
                       smtp=smtp_settings(smtp_sink, mode="plain", ca_file=None))
    prepare(bot, tls_user)

    assert run_and_see_no_login(bot, tls_user) == 1

    assert bot.requests() == []
    text = status(bot, capsys, exit_code=1)
    assert "ERROR" in text and "Hostname mismatch" in text and "'localhost'" in text, text


def test_smtp_host_name_not_in_the_certificate_is_refused(
        tmp_path, plain_user, sink_factory, pki):
    # SMTPS to a sink whose certificate names 127.0.0.1 only, reached as "localhost": no
    # reply goes out, it stays pending with the host name error.
    sink = sink_factory(tls=pki, implicit_tls=True)
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(plain_user, mode="plain", ca_file=None),
                       smtp=smtp_settings(sink, mode="smtps", ca_file=pki.ca_file,
                                          host="localhost"))
    prepare(bot, plain_user)

    bot.run_once()

    assert sink.messages == []
    [row] = outbox(bot)
    assert row.state == "pending"
    assert "Hostname mismatch" in (row.last_error or ""), row.last_error


# --------------------------------------------------------------------------- 4. SMTP TLS


@pytest.mark.parametrize("mode", ["smtps", "starttls"])
def test_smtp_over_tls_with_the_test_ca_delivers(tmp_path, plain_user, sink_factory, pki, mode):
    # SMTPS, or STARTTLS on a sink that refuses mail before it, verified against the test CA:
    # the reply is delivered, over TLS.
    sink = sink_factory(tls=pki, implicit_tls=mode == "smtps",
                        require_starttls=mode == "starttls")
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(plain_user, mode="plain", ca_file=None),
                       smtp=smtp_settings(sink, mode=mode, ca_file=pki.ca_file))
    mid = prepare(bot, plain_user)

    assert bot.run_once() == 0

    [reply] = sink.messages
    assert reply.tls
    assert reply.message["In-Reply-To"] == mid
    assert [row.state for row in outbox(bot)] == ["sent"]


@pytest.mark.parametrize("mode", ["smtps", "starttls"])
def test_smtp_self_signed_relay_is_refused_without_ca_file(
        tmp_path, plain_user, sink_factory, pki, mode, caplog, capsys):
    # No ca_file: the test CA's relay is refused; the decision stands (the code is issued
    # and kept for the patron), the reply stays pending with the certificate error, and
    # the SMTP password is never sent (no AUTH attempt) nor shown.
    caplog.set_level(logging.DEBUG)
    sink = sink_factory(tls=pki, implicit_tls=mode == "smtps", auth=(SMTP_USER, SMTP_PASSWORD))
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(plain_user, mode="plain", ca_file=None),
                       smtp=smtp_settings(sink, mode=mode, ca_file=None, auth=True))
    prepare(bot, plain_user)
    capsys.readouterr()

    bot.run_once()
    run_out = capsys.readouterr()

    assert sink.messages == [] and sink.logins == []
    [req] = bot.requests()
    assert req.outcome == "issued" and req.code is not None
    [row] = outbox(bot)
    assert row.state == "pending" and row.outcome == "issued"
    assert "certificate verify failed" in (row.last_error or ""), row.last_error
    text = status(bot, capsys, exit_code=1)
    assert "outbox: 1 pending, 0 failed, 0 sent" in text
    assert_no_secret([run_out.out, run_out.err, text, row.last_error or ""], caplog,
                     SMTP_PASSWORD)


def test_smtp_auth_over_starttls_logs_in_and_never_shows_the_password(
        tmp_path, plain_user, sink_factory, pki, caplog, capsys):
    # AUTH over STARTTLS (the sink offers AUTH only after STARTTLS): the login works, the
    # reply is delivered, and neither password appears in output or logs (DEBUG).
    caplog.set_level(logging.DEBUG)
    sink = sink_factory(tls=pki, require_starttls=True, auth=(SMTP_USER, SMTP_PASSWORD))
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(plain_user, mode="plain", ca_file=None),
                       smtp=smtp_settings(sink, mode="starttls", ca_file=pki.ca_file, auth=True))
    prepare(bot, plain_user)
    capsys.readouterr()

    assert bot.cli("--verbose", "run", "--once") == 0
    run_out = capsys.readouterr()

    assert sink.logins == [SmtpLogin(SMTP_USER, True, tls=True)]
    [reply] = sink.messages
    assert reply.tls and reply.auth_login == SMTP_USER
    text = status(bot, capsys)
    assert_no_secret([run_out.out, run_out.err, text], caplog, SMTP_PASSWORD, IMAP_PASSWORD)


# --------------------------------------------------------------------------- 5. no downgrade


def test_imap_starttls_required_but_not_offered_never_logs_in_in_cleartext(
        tmp_path, plain_user, smtp_sink, pki, capsys):
    # starttls = true, but the server offers no STARTTLS: mailbot stops before LOGIN rather
    # than going on in plaintext; the mailbox shows the error and nothing is fetched.
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(plain_user, mode="starttls",
                                                       ca_file=pki.ca_file),
                       smtp=smtp_settings(smtp_sink, mode="plain", ca_file=None))
    prepare(bot, plain_user)

    assert run_and_see_no_login(bot, plain_user) == 1

    assert bot.requests() == []
    assert len(plain_user.list()) == 1
    text = status(bot, capsys, exit_code=1)
    assert "ERROR" in text and "STARTTLS" in text, text


def test_smtp_starttls_required_but_not_offered_never_authenticates_in_cleartext(
        tmp_path, plain_user, sink_factory, pki):
    # starttls = true, but the relay offers no STARTTLS (and would take AUTH in the clear):
    # mailbot neither authenticates nor sends; the reply stays pending with the reason.
    sink = sink_factory(auth=(SMTP_USER, SMTP_PASSWORD))
    bot = make_tls_bot(tmp_path, mailbox=imap_settings(plain_user, mode="plain", ca_file=None),
                       smtp=smtp_settings(sink, mode="starttls", ca_file=pki.ca_file, auth=True))
    prepare(bot, plain_user)

    bot.run_once()

    assert sink.logins == [] and sink.messages == []
    [row] = outbox(bot)
    assert row.state == "pending"
    assert "STARTTLS" in (row.last_error or ""), row.last_error
