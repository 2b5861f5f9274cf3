"""The test servers themselves: a real Dovecot and a real SMTP sink behave as the suite assumes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import aiosmtplib
import pytest

from tests.servers import SEPARATOR, Dovecot, SmtpSink, append, list_folder

WARSAW = ZoneInfo("Europe/Warsaw")

RAW = (
    b"From: Jan Kowalski <jan@example.org>\r\n"
    b"To: biblioteka@example.org\r\n"
    b"Subject: LEGIMI\r\n"
    b"Date: Fri, 01 Mar 2024 00:00:05 +0100\r\n"
    b"Message-ID: <req-1@example.org>\r\n"
    b"\r\n"
    b"Jan Kowalski, karta 0012345\r\n"
)


def _patron_mail(subject: str = "LEGIMI") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "mailbot@biblioteka.example"
    msg["To"] = "jan@example.org"
    msg["Subject"] = subject
    msg.set_content("Twój kod: ABC-123\n")
    return msg


def _send(sink: SmtpSink, msg: EmailMessage, **kwargs) -> None:
    asyncio.run(aiosmtplib.send(msg, hostname=sink.host, port=sink.port, timeout=10, **kwargs))


def test_append_keeps_the_exact_internaldate(imap_user):
    # A message appended with INTERNALDATE 00:00:05 Warsaw time reads back as that instant.
    when = datetime(2024, 3, 1, 0, 0, 5, tzinfo=WARSAW)
    uid = imap_user.append(RAW, internaldate=when)

    [stored] = imap_user.list()
    assert stored.uid == uid
    assert stored.internaldate.tzinfo is not None
    assert stored.internaldate == when
    assert stored.raw == RAW
    assert stored.flags == ()


def test_append_sets_flags_and_keeps_summer_time_offsets(imap_user):
    # Flags given to APPEND are stored, and a CEST (+02:00) INTERNALDATE survives exactly.
    when = datetime(2024, 7, 31, 23, 59, 59, tzinfo=WARSAW)
    imap_user.append(RAW, internaldate=when, flags=["\\Seen"])

    [stored] = imap_user.list()
    assert stored.internaldate == when
    assert stored.internaldate.utcoffset() is not None
    assert stored.flags == ("\\Seen",)


def test_naive_internaldate_is_refused(imap_user):
    # An INTERNALDATE without a time zone is ambiguous and must be rejected before sending.
    with pytest.raises(ValueError):
        imap_user.append(RAW, internaldate=datetime(2024, 3, 1, 0, 0, 5))


def test_a_fresh_user_has_only_an_empty_inbox(imap_user):
    # A new test user starts with nothing but an empty INBOX.
    assert imap_user.folders() == ["INBOX"]
    assert imap_user.list() == []


def test_users_do_not_see_each_others_mail(imap_user_factory):
    # Mail appended for one user never shows up in another user's mailbox.
    alice, bob = imap_user_factory(), imap_user_factory()
    alice.append(RAW, internaldate=datetime(2024, 3, 1, tzinfo=timezone.utc))

    assert len(alice.list()) == 1
    assert bob.list() == []
    assert alice.maildir != bob.maildir


def test_subfolders_use_slash_as_separator(imap_user):
    # Folders are named with '/', e.g. mailbot/manual, and can hold appended mail.
    assert SEPARATOR == "/"
    imap_user.create_folder("mailbot/manual")
    imap_user.append(RAW, folder="mailbot/manual", internaldate=datetime.now(timezone.utc))

    assert "mailbot/manual" in imap_user.folders()
    assert len(imap_user.list("mailbot/manual")) == 1
    assert imap_user.list("INBOX") == []


def test_server_offers_idle_move_and_uidplus(imap_user):
    # The client code relies on IDLE, MOVE and UIDPLUS; the test server must offer them.
    with imap_user.connect() as client:
        caps = set(client.capabilities())
    assert {b"IDLE", b"MOVE", b"UIDPLUS"} <= caps


def test_restart_keeps_mail_and_port():
    # After a restart the server listens on the same port and still has the same mail.
    when = datetime(2024, 3, 10, 9, 59, 59, tzinfo=WARSAW)
    with Dovecot() as server:
        server.add_user("reader", "pw")
        uid = append(server, "reader", "pw", RAW, internaldate=when)
        port = server.port

        server.restart()

        assert server.port == port
        [stored] = list_folder(server, "reader", "pw")
        assert (stored.uid, stored.internaldate, stored.raw) == (uid, when, RAW)


def test_users_added_while_running_can_log_in(dovecot):
    # The passwd-file is re-read, so a user added to a running server can log in at once.
    dovecot.add_user("late-arrival", "pw")
    assert list_folder(dovecot, "late-arrival", "pw") == []


def test_sink_records_what_aiosmtplib_sends(smtp_sink):
    # A message sent over real SMTP is recorded with its envelope, raw bytes and parsed form.
    _send(
        smtp_sink,
        _patron_mail("Kod Legimi"),
        sender="bounce@biblioteka.example",
        recipients=["jan@example.org"],
    )

    [mail] = smtp_sink.messages
    assert mail.mail_from == "bounce@biblioteka.example"
    assert mail.rcpt_tos == ("jan@example.org",)
    assert mail.message["Subject"] == "Kod Legimi"
    assert "ABC-123" in mail.message.get_content()
    assert b"Subject: Kod Legimi" in mail.raw


def test_sink_starts_empty_for_every_test(smtp_sink):
    # Mail sent in another test is not visible here.
    assert smtp_sink.messages == []


def test_fail_with_451_rejects_then_accepts_again(smtp_sink):
    # With fail_with(451, count=1) the first send raises 451; the next one is accepted.
    smtp_sink.fail_with(451, "Local problem, try later", count=1)

    with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
        _send(smtp_sink, _patron_mail("first"))
    assert caught.value.code == 451
    assert smtp_sink.messages == []

    _send(smtp_sink, _patron_mail("second"))
    assert [m.message["Subject"] for m in smtp_sink.messages] == ["second"]


def test_fail_with_550_at_rcpt_refuses_the_recipient(smtp_sink):
    # A permanent 550 on RCPT refuses the recipient and nothing is delivered.
    smtp_sink.fail_with(550, "No such user", stage="RCPT")

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
        _send(smtp_sink, _patron_mail())
    assert [r.code for r in caught.value.recipients] == [550]
    assert smtp_sink.messages == []

    smtp_sink.stop_failing()
    _send(smtp_sink, _patron_mail())
    assert len(smtp_sink.messages) == 1


def test_fail_with_421_closes_the_connection(smtp_sink):
    # A 421 reply is reported to the client and the server hangs up; the next session works.
    smtp_sink.fail_with(421, "Service shutting down", count=1, stage="MAIL")

    async def scenario() -> None:
        client = aiosmtplib.SMTP(hostname=smtp_sink.host, port=smtp_sink.port, timeout=10)
        await client.connect()
        with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
            await client.send_message(_patron_mail())
        assert caught.value.code == 421
        assert not client.is_connected

    asyncio.run(scenario())
    _send(smtp_sink, _patron_mail())
    assert len(smtp_sink.messages) == 1


def test_sink_with_auth_requires_login():
    # A sink built with auth=(user, password) refuses unauthenticated mail and accepts logins.
    with SmtpSink(auth=("bot", "s3cret")) as sink:
        with pytest.raises(aiosmtplib.SMTPException):
            _send(sink, _patron_mail())
        _send(sink, _patron_mail(), username="bot", password="s3cret")
        [mail] = sink.messages
        assert mail.auth_login == "bot"


def test_wait_for_times_out_without_mail(smtp_sink):
    # wait_for() raises TimeoutError when the expected mail never arrives.
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(1, timeout=timedelta(milliseconds=200).total_seconds())
