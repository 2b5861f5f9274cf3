"""Loops, bounces, abuse and hostile mail end to end (issue 5): nothing lost, nothing
given twice, no reply where none is due, the queue never stuck."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailbot.db.models import Outbox
from mailbot.db.session import open_database
from tests.botenv import make_bot, request_mail


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def _bot(tmp_path, imap_user, smtp_sink, n=3, **kw):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], **kw)
    w = bot.window()
    bot.import_readers([f"08000{i};Ala;Zly{i};z{i}@patron.test;{_ok(w.year)}"
                        for i in range(1, n + 1)])
    bot.import_codes([f"ABUSE-CODE-{i:02d}" for i in range(1, n + 1)])
    return bot, w


def _dsn(our_message_id: str, to: str) -> bytes:
    """A real-looking Postfix bounce of one of our replies."""
    return f"""From: MAILER-DAEMON@mx.patron.test (Mail Delivery System)
To: ebooki0@biblioteka.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <bounce-1@mx.patron.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.patron.test

Final-Recipient: rfc822; {to}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{to}>: Recipient address rejected: User unknown

--B
Content-Type: text/rfc822-headers

From: Biblioteka Testowa <ebooki0@biblioteka.test>
To: {to}
Subject: Re: LEGIMI
Message-ID: {our_message_id}

--B--
""".replace("\n", "\r\n").encode()


def test_a_bounce_of_our_reply_marks_it_failed_for_staff_and_is_not_answered(
        tmp_path, imap_user, smtp_sink):
    # Our reply to z1 bounces (user unknown): the outbox row shows failed with the reason,
    # the bounce itself gets no reply.
    bot, w = _bot(tmp_path, imap_user, smtp_sink)
    raw, _ = request_mail("z1@patron.test", "LEGIMI", "Ala Zly1 080001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    ours = smtp_sink.messages[0].message["Message-ID"]
    smtp_sink.clear()
    imap_user.append(_dsn(ours, "z1@patron.test"), internaldate=w + timedelta(seconds=60))
    assert bot.run_once() == 0
    assert smtp_sink.messages == []
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        [row] = s.scalars(select(Outbox)).all()
    assert row.state == "failed" and "5.1.1" in row.last_error and "bounced" in row.last_error
    reqs = bot.requests()
    assert reqs[1].outcome == "ignored_loop" and reqs[1].trail[0]["note"] == "bounce_marked"


@pytest.mark.parametrize("headers", [
    {"Auto-Submitted": "auto-generated"},
    {"Precedence": "junk"}, {"Precedence": "auto_reply"},
    {"X-Autoreply": "yes"}, {"X-Autorespond": "yes"},
    {"X-Auto-Response-Suppress": "All"},
    {"List-Unsubscribe": "<mailto:leave@lists.test>"},
])
def test_every_kind_of_auto_generated_mail_is_left_unanswered(tmp_path, imap_user, smtp_sink,
                                                              headers):
    # The headers of issue 5's list each mean: no reply, no code.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 1)
    raw, _ = request_mail("z1@patron.test", "LEGIMI", "Ala Zly1 080001", headers=headers)
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["ignored_loop"]
    assert smtp_sink.messages == []


def test_a_postmaster_sender_and_a_delivery_report_are_not_answered(tmp_path, imap_user,
                                                                    smtp_sink):
    # From postmaster@…, or a multipart/report without our Message-ID: no reply.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 1)
    raw, _ = request_mail("postmaster@patron.test", "LEGIMI", "Ala Zly1 080001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    dsn = _dsn("<somebody-else@x.test>", "z1@patron.test").replace(b"MAILER-DAEMON", b"mx")
    imap_user.append(dsn, internaldate=w + timedelta(seconds=2))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["ignored_loop", "ignored_loop"]
    assert smtp_sink.messages == []


def test_one_address_cannot_harvest_codes_with_many_cards(tmp_path, imap_user, smtp_sink):
    # Cap 2 codes per address a month: the third card from the same address is refused
    # as address_limit (with a reply saying why), and no code is taken for it.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 3,
                  policy="max_codes_per_address_per_month = 2")
    for i in (1, 2, 3):
        raw, _ = request_mail("harvester@patron.test", "LEGIMI", f"Ala Zly{i} 08000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued", "issued", "address_limit"]
    refusal = smtp_sink.messages[-1].message
    assert refusal["X-Mailbot-Outcome"] == "address_limit"
    assert "ABUSE-CODE" not in refusal.get_body(("plain",)).get_content()


def test_the_daily_reply_cap_stops_answering(tmp_path, imap_user, smtp_sink):
    # Cap 3 replies a day: the 4th and 5th mail from one address get no reply at all.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 1, policy="replies_per_sender_per_day = 3")
    for i in range(5):
        raw, _ = request_mail("spammy@patron.test", "LEGIMI", "hello")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["no_card"] * 3 + ["rate_limited"] * 2
    assert len(smtp_sink.messages) == 3


def test_blocked_senders_are_ignored(tmp_path, imap_user, smtp_sink):
    # An exact address and a domain pattern on the block list: no reply, no code.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 2)
    bot.config.write_text('blocked_senders = ["z1@patron.test", "*@spam.test"]\n'
                          + bot.config.read_text())
    for i, (sender, n) in enumerate((("z1@patron.test", 1), ("bot@spam.test", 2),
                                     ("z2@patron.test", 2))):
        raw, _ = request_mail(sender, "LEGIMI", f"Ala Zly{n} 08000{n}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["ignored_sender", "ignored_sender", "issued"]
    assert [m.rcpt_tos[0] for m in smtp_sink.messages] == ["z2@patron.test"]


def test_header_injection_in_names_and_subjects_cannot_add_recipients(tmp_path, imap_user,
                                                                      smtp_sink):
    # CR/LF smuggled into the From display name and the subject (RFC 2047) never becomes a
    # header of our reply: one recipient, no Bcc, one Subject line.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 1)
    raw = (b"From: =?utf-8?q?Ala=0D=0ABcc:_victim@evil.test?= <z1@patron.test>\r\n"
           b"To: ebooki0@biblioteka.test\r\n"
           b"Subject: =?utf-8?q?LEGIMI=0D=0ABcc:_victim2@evil.test?=\r\n"
           b"Message-ID: <inject-1@patron.test>\r\n\r\n"
           b"Ala Zly1 080001\r\nImie: Ala\r\nBcc: x@evil.test\r\n" + b"A" * 5000 + b"\r\n")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    raw2 = raw.replace(b"=?utf-8?q?LEGIMI=0D=0ABcc:_victim2@evil.test?=", b"LEGIMI") \
        .replace(b"inject-1", b"inject-2")
    imap_user.append(raw2, internaldate=w + timedelta(seconds=2))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["not_a_request", "issued"]
    [reply] = smtp_sink.messages
    assert reply.rcpt_tos == ("z1@patron.test",) or list(reply.rcpt_tos) == ["z1@patron.test"]
    head = reply.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    assert b"Bcc" not in head and b"evil" not in head
    assert reply.message["To"] == "z1@patron.test"


def test_hostile_and_huge_mail_never_stops_the_queue_and_memory_stays_flat(
        tmp_path, imap_user, smtp_sink):
    # A 25 MB request, a 10,000-line body, 100 nested multiparts, binary garbage with a
    # broken charset: all handled (answered or left for staff), the genuine request behind
    # them is answered, and the run's peak memory stays far below the mail's size.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 2)
    huge, _ = request_mail("z1@patron.test", "LEGIMI",
                           "Ala Zly1 080001\n" + ("x" * 998 + "\n") * 25_000)
    assert len(huge) > 25_000_000
    lines, _ = request_mail("z3@patron.test", "LEGIMI", "linia\n" * 10_000)
    nested = b"Subject: LEGIMI\r\nFrom: z4@patron.test\r\nMessage-ID: <nest@p.test>\r\n"
    for depth in range(100):
        nested += (f'Content-Type: multipart/mixed; boundary="b{depth}"\r\n\r\n'
                   f"--b{depth}\r\n").encode()
    nested += b"Content-Type: text/plain\r\n\r\nAla 080002\r\n"
    garbage = (b"Subject: =?x-unknown?b?////?=\r\nFrom: z5@patron.test\r\n"
               b"Content-Type: text/plain; charset=nonsense\r\n\r\n" + bytes(range(256)) * 40)
    good, _ = request_mail("z2@patron.test", "LEGIMI", "Ala Zly2 080002")
    for i, raw in enumerate((huge, lines, nested, garbage, good)):
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    out = subprocess.run(
        [sys.executable, "-c",
         # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
         "import sys; from mailbot.cli import main; rc = main(sys.argv[1:]); "
         "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
         "print('MAXRSS', hwm.split()[1]); sys.exit(rc)",
         "--config", str(bot.config), "run", "--once"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    peak_kb = int(out.stdout.split("MAXRSS")[1].split()[0])
    print(f"peak RSS of run --once with a 25 MB mail: {peak_kb} kB")
    # ~60 MB is the interpreter with its libraries; reading the 25 MB mail whole (and
    # parsing it) would take several times its size.
    assert peak_kb < 120_000, f"peak RSS {peak_kb} kB"
    got = {r.from_address: (r.state, r.outcome) for r in bot.requests()}
    assert got["z1@patron.test"] == ("decided", "issued")
    assert got["z2@patron.test"] == ("decided", "issued")
    assert got["z3@patron.test"] == ("decided", "no_card")
    assert got["z4@patron.test"][0] in ("decided", "manual")
    assert got["z5@patron.test"] == ("manual", "not_a_request")
    assert not [r for r in bot.requests() if r.state in ("new", "error")]
    assert imap_user.list("INBOX") == []
