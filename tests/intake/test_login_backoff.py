"""A refused login waits before the next one, growing; the errors a mailbox shows staff
are said plainly (issue 17). Pure functions, and real sockets on 127.0.0.1 for the
errors."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from mailbot.config import DaemonSettings, MailboxSettings
from mailbot.db.mailboxes import login_wait
from mailbot.decide.horizon import _limit, grace_ends, horizon, left_out
from mailbot.db.models import MID_POLL
from mailbot.intake import imap
from mailbot.intake.failures import failure_text, plain
from mailbot.login.failures import AuthFailure
from tests.servers import free_port

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _mb(**kw) -> MailboxSettings:
    return MailboxSettings(library="lib", address="ebooki@biblioteka.test", host="127.0.0.1",
                           port=kw.pop("port", 143), ssl=False, username="filia",
                           password=kw.pop("password", "Tajne-Haslo-1"),
                           timeout=kw.pop("timeout", 2.0), **kw)


def test_the_wait_after_refused_logins_doubles_up_to_the_cap():
    # 300 s, 600 s, 1,200 s, 2,400 s, then 3,600 s however many more.
    d = DaemonSettings()
    assert [login_wait(n, d) for n in range(1, 8)] == [300, 600, 1200, 2400, 3600, 3600, 3600]


def test_a_mailbox_down_longer_than_the_grace_no_longer_holds_its_library():
    # Two mailboxes: one read up to 09:00:05, one down since 09:00 (never read). Within
    # the 900 s grace nothing may be decided; after it, up to the other's mark; with
    # grace 0 it waits for ever; down but taking our login again (no last_error): it holds.
    rows = [(T0 + timedelta(seconds=5, microseconds=300), None, None), (None, T0, "refused")]
    assert _limit(rows, 2, T0 + timedelta(seconds=899), 900.0).year == 1
    assert _limit(rows, 2, T0 + timedelta(seconds=900), 900.0) == T0 + timedelta(seconds=5)
    assert _limit(rows, 2, T0 + timedelta(days=3), 0.0).year == 1
    reading_again = [rows[0], (None, T0, None)]
    assert _limit(reading_again, 2, T0 + timedelta(days=3), 900.0).year == 1
    # Every mailbox down past the grace: what is stored is decided.
    assert _limit([(None, T0, "x")], 1, T0 + timedelta(hours=1), 900.0) is None
    # A mailbox whose row is missing still holds (it was never even tried).
    assert _limit([rows[1]], 2, T0 + timedelta(hours=1), 900.0).year == 1
    # A half-stored poll of a mailbox that counts still holds.
    assert horizon([MID_POLL, T0], 2).year == 1
    assert grace_ends(T0, 0.0) is None and grace_ends(None, 900.0) is None
    assert left_out(T0, T0 + timedelta(seconds=900), 900.0)
    assert not left_out(T0, T0 + timedelta(seconds=899.9), 900.0)


def test_a_refused_login_is_shown_as_the_login_module_says_it_without_the_password():
    exc = AuthFailure("imap://filia@127.0.0.1:143/INBOX", "[AUTHENTICATIONFAILED] "
                      "Authentication failed.", advice="check the password")
    text = failure_text(exc, _mb())
    assert text == ("imap://filia@127.0.0.1:143/INBOX: login refused: [AUTHENTICATIONFAILED] "
                    "Authentication failed. — check the password")


def test_bytes_reprs_are_unwrapped_and_an_echoed_password_blanked():
    assert plain("LoginError: b'[AUTHENTICATIONFAILED] Authentication failed.'") == \
        "LoginError: [AUTHENTICATIONFAILED] Authentication failed."
    assert plain("""[b"it's", b'x']""") == "[it's, x]"
    from imapclient.exceptions import IMAPClientError
    text = failure_text(IMAPClientError("select failed: b'[NONEXISTENT] Unknown Tajne-Haslo-1'"),
                        _mb())
    assert text == "127.0.0.1:143: the server refused: select failed: [NONEXISTENT] Unknown ***"


def test_a_closed_port_and_an_unknown_host_are_named_plainly():
    # Real sockets: nothing listens on the port; ".invalid" never resolves (RFC 6761).
    port = free_port()
    with pytest.raises(OSError) as refused:
        imap.connect(_mb(port=port))
    assert failure_text(refused.value, _mb(port=port)) == (
        f"127.0.0.1:{port}: connection refused: is the server running, are host and port "
        "right?")
    assert "host name not found" in failure_text(
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"), _mb())


def test_a_server_that_never_answers_is_a_timeout():
    # A listening socket that accepts and says nothing: the greeting times out.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        mb = _mb(port=server.getsockname()[1], timeout=0.3)
        with pytest.raises(OSError) as silent:
            imap.connect(mb)
    assert failure_text(silent.value, mb) == f"127.0.0.1:{mb.port}: no answer within 0.3 s"
