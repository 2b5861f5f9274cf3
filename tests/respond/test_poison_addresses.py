"""One poison reply never stops the others (issue 15): sender addresses a relay cannot take
are refused at intake and left for staff, internationalised (EAI) addresses are decoded
right and sent with SMTPUTF8 where the relay offers it (failed for staff where it does
not), and any error while preparing or sending one reply fails that reply only. End to
end through `mailbot run --once` (and the daemon) with Dovecot in and aiosmtpd out."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailbot.daemon import Daemon
from mailbot.db.models import Outbox
from mailbot.db.session import open_database
from mailbot.intake.parse import parse_mail
from mailbot.addresses import usable_address
from tests.botenv import make_bot, request_mail, valid_reader
from tests.servers import SmtpSink

POISON = "żółw@example.net"
NO_SMTPUTF8 = "the relay does not offer SMTPUTF8 for a non-ASCII address"



@pytest.fixture(params=["smtputf8", "ascii-only"])
def relay(request):
    """The suite's sink (it offers SMTPUTF8), or one that does not and reads only ASCII."""
    if request.param == "smtputf8":
        yield request.getfixturevalue("smtp_sink")
        return
    sink = SmtpSink(smtputf8=False).start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def ascii_relay():
    sink = SmtpSink(smtputf8=False).start()
    try:
        yield sink
    finally:
        sink.stop()


def _bot(tmp_path, imap_user, sink, n: int = 3, tables: str = ""):
    """A library with patrons p1..pn on file, n codes, and one SMTP connection."""
    bot = make_bot(tmp_path, smtp=sink, mailboxes=[imap_user], tables=tables)
    text = bot.config.read_text(encoding="utf-8")
    smtp = f"[smtp]\nhost = \"{sink.host}\"\nport = {sink.port}\n"
    assert smtp in text
    bot.config.write_text(text.replace(smtp, smtp + "connections = 1\n"), encoding="utf-8")
    w = bot.window()
    assert bot.import_readers([f"07{i:05d};Ala;Truc{i};p{i}@patron.test;"
                               f"{valid_reader(w.year)}"
                               for i in range(1, n + 1)]) == 0
    assert bot.import_codes([f"POISON-{i:04d}" for i in range(1, n + 1)]) == 0
    return bot, w


def _patrons(imap_user, w, n: int = 3, first: int = 10) -> None:
    for i in range(1, n + 1):
        raw, _ = request_mail(f"p{i}@patron.test", "LEGIMI", f"Ala Truc{i} 07{i:05d}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=first + i))


def _with_from(from_header: bytes, body: str = "Ala Nikt 0799999") -> bytes:
    """A request whose From header is exactly these bytes (8-bit, or a mess)."""
    raw, _ = request_mail("placeholder@patron.test", "LEGIMI", body)
    assert raw.startswith(b"From: placeholder@patron.test\n")
    return b"From: " + from_header + raw[len(b"From: placeholder@patron.test"):]


def _outbox(bot) -> list[Outbox]:
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        return list(s.scalars(select(Outbox).order_by(Outbox.id)))


def _to_header(mail) -> str:
    """The To header as the reply's bytes carry it (UTF-8 for an EAI address, RFC 6532)."""
    [value] = re.findall(rb"^To: ([^\r\n]*)", mail.raw, re.M)
    return value.decode("utf-8")


def _patrons_answered(sink) -> list[str]:
    return sorted(m.rcpt_tos[0] for m in sink.messages if m.rcpt_tos[0].startswith("p"))


def test_a_raw_8bit_non_ascii_sender_does_not_stop_the_replies_to_later_patrons(
        tmp_path, imap_user, relay):
    # `From: żółw@example.net` (raw UTF-8) first, three patrons after it, one SMTP
    # connection: the three are answered in the same run. The poison reply goes out with
    # SMTPUTF8 where the relay offers it, and is failed for staff, naming why, where not.
    bot, w = _bot(tmp_path, imap_user, relay)
    imap_user.append(_with_from(POISON.encode()), internaldate=w + timedelta(seconds=1))
    _patrons(imap_user, w)
    # Exit 1 where the poison reply could not be sent (monitoring sees the failed reply).
    assert bot.run_once() == (0 if relay.smtputf8 else 1)
    assert _patrons_answered(relay) == ["p1@patron.test", "p2@patron.test", "p3@patron.test"]
    assert bot.requests()[0].from_address == POISON
    poison = next(o for o in _outbox(bot) if o.to_address == POISON)
    if relay.smtputf8:
        [mail] = [m for m in relay.messages if m.rcpt_tos == (POISON,)]
        assert "SMTPUTF8" in mail.mail_options
        assert _to_header(mail) == POISON
        assert poison.state == "sent"
    else:
        assert all(POISON not in m.rcpt_tos for m in relay.messages)
        assert poison.state == "failed" and poison.attempts == 1
        assert NO_SMTPUTF8 in poison.last_error
        assert bot.run_once() == 0  # failed for good: not tried again
        assert len(relay.messages) == 3


def test_an_rfc2047_sender_is_answered_at_the_decoded_address_never_a_mangled_one(
        tmp_path, imap_user, smtp_sink):
    # Python's email package writes `=?utf-8?b?xbzDs8WCdw==?=@example.net`: the request
    # is stored with the real address, and the reply goes to it with SMTPUTF8, the To
    # header naming the same address (RFC 6532), not a lowercased base64 mangled by a
    # second parse.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 1)
    raw, _ = request_mail(POISON, "LEGIMI", "Ala Nikt 0799999")
    assert b"=?utf-8?b?" in raw.split(b"\n")[0]
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    _patrons(imap_user, w, 1)
    assert bot.run_once() == 0
    assert bot.requests()[0].from_address == POISON
    mine = [m for m in smtp_sink.messages if not m.rcpt_tos[0].startswith("p")]
    assert [m.rcpt_tos for m in mine] == [(POISON,)]
    assert "SMTPUTF8" in mine[0].mail_options
    assert _to_header(mine[0]) == POISON
    assert _patrons_answered(smtp_sink) == ["p1@patron.test"]


def test_an_ascii_name_at_an_idna_domain_goes_out_as_punycode_without_smtputf8(
        tmp_path, imap_user, ascii_relay):
    # `ala@żółw.pl` (the domain as RFC 2047 words, as Python writes it) to a relay without
    # SMTPUTF8: RCPT TO and the To header carry the A-label `xn--w-uga1v8h.pl`, plain ASCII.
    bot, w = _bot(tmp_path, imap_user, ascii_relay, 1)
    raw, _ = request_mail("ala@żółw.pl", "LEGIMI", "Ala Nikt 0799999")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert bot.requests()[0].from_address == "ala@żółw.pl"
    [mail] = ascii_relay.messages
    assert mail.rcpt_tos == ("ala@xn--w-uga1v8h.pl",)
    assert "SMTPUTF8" not in mail.mail_options
    assert mail.raw.isascii() and mail.message["To"] == "ala@xn--w-uga1v8h.pl"


def test_a_bare_local_name_in_a_comma_mess_is_refused_at_intake_for_staff(
        tmp_path, imap_user, smtp_sink):
    # `x <ebooki-staff,z@example.net>` never becomes `RCPT TO:<ebooki-staff>` (a local
    # staff mailbox): no usable sender address, left for staff in the manual folder. The
    # patron after it is answered.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 1)
    imap_user.append(_with_from(b"x <ebooki-staff,z@example.net>"),
                     internaldate=w + timedelta(seconds=1))
    _patrons(imap_user, w, 1)
    assert bot.run_once() == 0
    first = bot.requests()[0]
    assert (first.state, first.outcome, first.from_address) == ("manual", "not_a_request", None)
    assert first.trail[0]["note"] == "no_sender"
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("p1@patron.test",)]
    assert len(imap_user.list("mailbot/manual")) == 1


def test_sender_addresses_a_relay_cannot_take_are_refused_and_encoded_ones_decoded():
    # What intake stores as the address to answer (None: no usable sender address, for
    # staff): encoded words decoded to the real text before lowercasing, never mangled;
    # bare local names, several mailboxes, groups, control characters, lone surrogates,
    # undecodable bytes and domains that are no host names refused. Quoted local parts
    # (RFC 5321) are fine.
    cases = {
        b"Jan Kowalski <Jan@Example.PL>": "jan@example.pl",
        "Żółw <ŻÓŁW@example.net>".encode(): "żółw@example.net",
        b"=?utf-8?b?xbzDs8WCdw==?=@example.net": "żółw@example.net",
        b"=?UTF-8?B?xbvDk8WBVw==?=@Example.NET": "żółw@example.net",
        b"=?utf-8?q?=C5=BC=C3=B3=C5=82w?=@example.net": "żółw@example.net",
        b"Ala <=?utf-8?b?xbzDs8WCdw==?=@=?utf-8?b?xbzDs8WCdw==?=.pl>": "żółw@żółw.pl",
        "ala@żółw.pl".encode(): "ala@żółw.pl",
        b"\xa3ucja Mi\xb3a <Lucja@example.pl>": "lucja@example.pl",  # a cp1250 name
        b"\xbf\xf3\xb3w@example.net": None,  # 8-bit, not UTF-8 (RFC 6532): not guessed
        b"x <ebooki-staff,z@example.net>": None,
        b"<ebooki-staff>": None,
        b"a@b.pl, c@d.pl": None,
        b"a@b.pl, Ola <o@b.pl>": None,
        b"Friends: a@b.pl;": None,
        b"a\x01b@example.net": None,
        b"a\x7fb@example.net": None,
        b"=?utf-8?b?/w==?=@example.net": None,  # one byte, no UTF-8: nothing to decode
        b"=?x-unknown?b?AAAA?=@example.net": None,
        b"a@example": None,
        b"a@-example.net": None,
        b"a@exa_mple.net": None,
        b"a@xn--zz.net": None,
        b"a@192.0.2.1": None,
        b"a@[192.0.2.1]": None,
        b'"Ala Nowak"@Example.net': '"ala nowak"@example.net',  # quoted: a relay takes it
        b'""@example.net': None,
        b"a..b@example.net": None,
        b"a@b@example.net": None,
        b"a" * 65 + b"@example.net": None,
    }
    got = {header: usable_address(parse_mail(_with_from(header)).from_address)
           for header in cases}
    assert got == cases
    assert usable_address("\udccc\udcbcw@example.net") is None  # bytes Python escaped
    assert usable_address("a\u200db@example.net") is None  # a zero-width joiner


def test_an_unexpected_error_in_one_reply_fails_that_reply_only(tmp_path, imap_user, smtp_sink):
    # One pending reply's stored message cannot be handled (text, not bytes: the database
    # was edited by hand) and another's address is one intake refuses today (an outbox
    # row from before): each fails for staff with the error named; the other two replies
    # go out in the same run, over the one connection; nothing reaches `ebooki-staff`.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 4)
    _patrons(imap_user, w, 4)
    # The replies are decided, not sent (the relay refuses us; a 451 here would pause the
    # relay for a minute: a throttling answer).
    smtp_sink.fail_with(550, "5.7.1 not now", stage="MAIL")
    assert bot.run_once() == 1  # a reply could not be sent now
    smtp_sink.stop_failing()
    box = _outbox(bot)
    assert [o.state for o in box] == ["pending"] * 4 and smtp_sink.messages == []
    db = sqlite3.connect(tmp_path / "mailbot.db")
    with db:
        db.execute("UPDATE outbox SET message = CAST(message AS TEXT) WHERE id = ?",
                   (box[0].id,))
        db.execute("UPDATE outbox SET to_address = 'ebooki-staff,z@example.net' "
                   "WHERE id = ?", (box[1].id,))
    db.close()
    assert bot.run_once() == 1  # two replies failed
    assert _patrons_answered(smtp_sink) == ["p3@patron.test", "p4@patron.test"]
    assert all("ebooki-staff" not in m.rcpt_tos[0] for m in smtp_sink.messages)
    after = {o.id: o for o in _outbox(bot)}
    text, mess = after[box[0].id], after[box[1].id]
    assert text.state == "failed" and "unexpected error" in text.last_error \
        and "TypeError" in text.last_error
    assert mess.state == "failed" and "not a usable recipient address" in mess.last_error
    assert [after[o.id].state for o in box[2:]] == ["sent", "sent"]


def test_the_daemon_keeps_sending_past_a_poison_reply(tmp_path, imap_user, ascii_relay,
                                                      caplog):
    # The daemon, one connection, a relay without SMTPUTF8: the raw 8-bit sender's reply
    # is failed for staff and the three patrons after it are answered in seconds; the
    # sender never crashes (it used to, every 5 s, sending nothing else).
    bot, w = _bot(tmp_path, imap_user, ascii_relay, tables="""
[daemon]
poll_interval = 600.0
reconnect_max = 1.0
send_backoff_max = 1.0

[web]
enabled = false
""")
    imap_user.append(_with_from(POISON.encode()), internaldate=w + timedelta(seconds=1))
    _patrons(imap_user, w)
    settings = bot.settings()
    daemon = Daemon(settings, open_database(settings.database_url))
    with caplog.at_level(logging.ERROR):
        daemon.start()
        try:
            deadline = time.monotonic() + 20
            while len(ascii_relay.messages) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _patrons_answered(ascii_relay) == [
                "p1@patron.test", "p2@patron.test", "p3@patron.test"]
            while time.monotonic() < deadline and not any(
                    o.state == "failed" for o in _outbox(bot)):
                time.sleep(0.05)
        finally:
            daemon.stop()
            daemon.join(30)
    poison = next(o for o in _outbox(bot) if o.to_address == POISON)
    assert poison.state == "failed" and NO_SMTPUTF8 in poison.last_error
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]
