"""Loop signals the real corpus showed we missed (issue 15), one by one: each automatic
mail is recognised for the reason it gives, and the patron's mail next to it is not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailbot.intake.bounce import find_bounce, report_reason
from mailbot.intake.loops import looks_automatic, loop_reason
from mailbot.intake.parse import parse_mail
from mailbot.intake.subjects import auto_subject, match_service, match_test_service

ROOT = Path(__file__).resolve().parents[2]


def mail(headers: str = "", body: str = "Dzień dobry, proszę o kod.\nKarta: 2000123456\n",
         *, sender: str = "Jan Kowalski <jan.kowalski@example.pl>",
         subject: str = "Re: LEGIMI") -> bytes:
    head = f"From: {sender}\nTo: ebooki@biblioteka.test\nSubject: {subject}\n" \
           f"Message-ID: <m1@example.pl>\nDate: Sun, 1 Nov 2026 00:00:05 +0100\n{headers}"
    return (head.rstrip("\n") + "\n\n" + body).encode("utf-8")


def reason(raw: bytes) -> str | None:
    """What intake's store calls: loop_reason, then the nested report check."""
    parsed = parse_mail(raw)
    return loop_reason(parsed, own_addresses=frozenset({"ebooki@biblioteka.test"})) \
        or report_reason(parsed, raw)


def test_a_patrons_plain_request_is_no_loop():
    # The control: a patron's "Re: LEGIMI" with a card is nothing automatic.
    raw = mail()
    assert reason(raw) is None and looks_automatic(parse_mail(raw)) is None
    assert match_service(parse_mail(raw).subject) == "legimi"


# --------------------------------------------------------------------------- senders


@pytest.mark.parametrize("sender, expected", [
    ("post_master@vtext.example.com", "mailer-daemon"),
    ("Post-Master@example.com", "mailer-daemon"),
    ("MAILER-DAEMON@mx.example.com", "mailer-daemon"),
    ("Gmail Team <gmail-noreply@google.com>", "no-reply-address"),
    ("no-reply@accounts.example.com", "no-reply-address"),
    ("noreply.alerts@example.com", "no-reply-address"),
    ("do_not_reply@example.com", "no-reply-address"),
    ("nie-odpowiadaj@urzad.example.pl", "no-reply-address"),
])
def test_daemon_and_no_reply_senders_are_loops(sender, expected):
    # post_master@ and any *noreply* / no-reply local part: never answered.
    assert reason(mail(sender=sender)) == expected


@pytest.mark.parametrize("sender", [
    "Norbert Eply <norbert.eply@example.pl>", "postmistrz@example.pl",
    "Anna Replyńska <anna@example.pl>",
])
def test_people_whose_addresses_only_resemble_those_are_not(sender):
    assert reason(mail(sender=sender)) is None


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("headers, expected", [
    ("X-Apple-Action: VACATION\n", "x-apple-action"),
    ("Mailing-List: contact nyaan-help@example.org; run by ezmlm\n", "mailing-list"),
    ("List-Subscribe: <mailto:nyaan-ctl@example.org?body=subscribe>\n", "list-subscribe"),
    ("X-MLServer: fml [fml 4.0.3 release (20011202/4.0.3)]\n", "x-mlserver"),
    ("X-Mailman-Version: 2.1b4\n", "x-mailman-version"),
    ("X-Loop: kijitora\n", "x-loop"),
    ("X-Failed-Recipients: jan@example.pl\n", "x-failed-recipients"),
    ("X-Bluebottle-Request: <1234>\n", "x-bluebottle-request"),
    ("X-JIRA-FingerPrint: 978a1eb52201518931e77cb5725717ff\n", "x-jira-fingerprint"),
])
def test_fields_only_software_writes_are_loops(headers, expected):
    assert reason(mail(headers)) == expected


def test_an_apple_rule_that_is_no_vacation_reply_is_not_a_loop():
    assert reason(mail("X-Apple-Action: FORWARD\n")) is None


# --------------------------------------------------------------------------- reports


def _wrapped(report_type: str, fields: str, *, enclosed: bool = False,
             our_id: str = "<mailbot.0123456789abcdef0123@biblioteka.test>") -> bytes:
    """A gateway's report inside a multipart/mixed (not a top-level multipart/report);
    ``enclosed``: the report is inside a forwarded message/rfc822 instead."""
    report = (f"--R\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
              f"--R\nContent-Type: {report_type}\n\n{fields}\n\n"
              f"--R\nContent-Type: text/rfc822-headers\n\nMessage-ID: {our_id}\n"
              f"Subject: Re: LEGIMI\n\n--R--\n")
    if enclosed:
        inner = ("From: MAILER-DAEMON@mx.example.com\nSubject: Undeliverable\n"
                 'Content-Type: multipart/report; boundary="R"\n\n' + report)
        body = ("--M\nContent-Type: text/plain\n\nProszę zobaczyć, co przyszło. Karta "
                "2000123456\n\n--M\nContent-Type: message/rfc822\n\n" + inner + "\n--M--\n")
    else:
        body = "--M\nContent-Type: multipart/report; boundary=\"R\"\n\n" + report + "--M--\n"
    return mail('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="M"\n', body,
                sender="Mail Gateway <gateway@example.com>")


def test_a_delivery_report_nested_below_the_top_level_is_a_loop_and_a_bounce():
    # A multipart/mixed with a message/delivery-status part inside: a bounce, and when it
    # quotes one of our replies, find_bounce names it.
    raw = _wrapped("message/delivery-status",
                   "Reporting-MTA: dns; mx.example.com\n\nFinal-Recipient: rfc822; "
                   "jan@example.pl\nAction: failed\nStatus: 5.1.1")
    assert reason(raw) == "delivery-report"
    bounce = find_bounce(parse_mail(raw), raw)
    assert bounce is not None and "5.1.1" in bounce.reason
    assert bounce.message_ids == ("<mailbot.0123456789abcdef0123@biblioteka.test>",)


def test_an_arf_complaint_and_a_read_receipt_are_loops():
    arf = _wrapped("message/feedback-report",
                   "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1")
    mdn = _wrapped("message/disposition-notification",
                   "Final-Recipient: rfc822; jan@example.pl\nDisposition: manual-action/"
                   "MDN-sent-manually; displayed")
    assert reason(arf) == "feedback-report"
    assert reason(mdn) == "read-receipt"


def test_a_hotmail_complaint_report_is_a_loop():
    # Hotmail's JMRP: a multipart/mixed with only the mail complained of, which carries
    # X-HmXmrOriginalRecipient.
    body = ("--F\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n"
            "X-HmXmrOriginalRecipient: kijitora@example.com\nFrom: someone@example.com\n"
            "Subject: Nyaan\n\nNyaan\n--F--\n")
    raw = mail('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="F"\n', body,
               sender="staff@hotmail.com")
    assert reason(raw) == "feedback-report"


def test_a_patron_forwarding_a_bounce_they_got_is_not_silenced():
    # The report sits inside the patron's forwarded message/rfc822: the mail is theirs.
    raw = _wrapped("message/delivery-status", "Action: failed\nStatus: 5.1.1", enclosed=True)
    assert reason(raw.replace(b"gateway@example.com", b"jan.kowalski@example.pl")) is None


# --------------------------------------------------------------------------- subjects


AUTO_SUBJECTS = [
    "[Automatyczna odpowiedź] Re: LEGIMI", "[Auto-Reply] Re: LEGIMI",
    "(Automatic reply) Re: LEGIMI", "[Out of Office] Re: LEGIMI", "Re: [Auto-Reply] LEGIMI",
    "Automatic reply: Re: LEGIMI", "Auto reply: Re: LEGIMI", "AutoRespons :Re: LEGIMI?",
    "Odpowiedź automatyczna: Re: LEGIMI", "Autoodpowiedź: Re: LEGIMI",
    "Abwesenheitsnotiz: Re: LEGIMI", "Réponse automatique : Re: LEGIMI",
    "Re: Re: LEGIMI (Automatic Response)", "Re: LEGIMI [Auto-Reply]",
    "RE: Re: LEGIMI : non remis (delivery failed)", "Undeliverable: Re: LEGIMI",
    "Niedostarczalne: Re: LEGIMI", "AUTO: Jan Kowalski is out of the office (returning 05/01)",
]


@pytest.mark.parametrize("subject", AUTO_SUBJECTS)
def test_an_auto_reply_tag_in_the_subject_makes_a_loop(subject):
    # The tag the answering machine put there is not stripped away into a request.
    assert auto_subject(subject)
    assert reason(mail(subject=subject)) == "auto-reply-subject"
    assert match_service(subject) is None and match_test_service(subject) is None


PATRON_SUBJECTS = [
    ("Re: LEGIMI", "legimi"), ("Odp: LEGIMI", "legimi"), ("ODP: Re: legimi", "legimi"),
    ("Fwd: LEGIMI", "legimi"), ("PD: Empik Go", "empik_go"), ("RE: [LEGIMI]", "legimi"),
    ("[ważne] LEGIMI", "legimi"), ("Re: (pilne) LEGIMI", "legimi"), ("AW: LEGIMI", "legimi"),
    ("Re[2]: LEGIMI", "legimi"), ("Odpowiedź: LEGIMI", "legimi"),
]


@pytest.mark.parametrize("subject, service", PATRON_SUBJECTS)
def test_a_patrons_reply_and_forward_prefixes_still_match(subject, service):
    assert match_service(subject) == service
    assert not auto_subject(subject) and reason(mail(subject=subject)) is None


@pytest.mark.parametrize("subject", [
    "Auto: sprzedam", "Automatyczne przedłużenie wypożyczeń", "Odpowiedź na pytanie",
    "Kod na urlop", "Re: Moja wiadomość nie została dostarczona?", "LEGIMI (ferie)",
    "LEGIMI (automatycznie przedłużone?)",
])
def test_words_in_a_persons_subject_are_no_tags(subject):
    # "auto" is a car in Polish; only a tag ("[…]", "(…)", "…:" in front) counts.
    assert not auto_subject(subject)


def test_a_forwarded_auto_reply_is_left_for_staff_not_silenced():
    # Someone forwarding an out-of-office note wrote that mail: no loop, and no request
    # either (the tag is the machine's): it goes to staff.
    subject = "Fwd: [Auto-Reply] Re: LEGIMI"
    assert not auto_subject(subject) and reason(mail(subject=subject)) is None
    assert match_service(subject) is None


# --------------------------------------------------------------------------- bodies


@pytest.mark.parametrize("body", [
    "------ Failed Recipients ------\n\n<jan@example.pl>: Requested action not taken: "
    "mailbox unavailable. [SMTP Error Code 550]\n",
    "Your message could not be delivered to\nduke@example.com\n",
    "I am out of the office until 05/01/2010.\n\nNote: This is an automated response to "
    "your message \"LEGIMI\" sent on 04/01/2010.\n",
    "Jestem na urlopie do 5 stycznia. Wiadomość wygenerowana automatycznie.\n",
    "This account is protected by Bluebottle. Please click on the following link to "
    "have your address added to the recipient's allowed list.\n",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<adf><prospect/></adf>\n",
    "We will be in touch. Click here to unsubscribe from further e-mails.\n",
])
def test_a_body_only_a_program_writes_is_for_staff(body):
    # No header says so, only the body: not silenced, but not answered either.
    raw = mail(body="Karta: 2000123456\n" + body)
    assert reason(raw) is None
    assert looks_automatic(parse_mail(raw)) is not None


def test_a_patron_quoting_a_bounce_or_our_reply_is_answered():
    # "> "-quoted bounce text, and our own reply's wording (PL and EN, as the templates
    # have it) even unquoted, as clients that do not quote leave it: nothing automatic.
    quoted = mail(body="Proszę o kod, karta 2000123456.\n\n> Your message could not be "
                       "delivered to\n> jan@example.pl\n")
    assert looks_automatic(parse_mail(quoted)) is None
    for lang in ("pl", "en"):
        macros = (ROOT / "templates" / "email" / lang / "_macros.txt.j2").read_text("utf-8")
        ours = re.sub(r"\{[{%#].*?[}%#]\}", "", macros)
        raw = mail(body="Karta 2000123456\n\n" + ours)
        assert looks_automatic(parse_mail(raw)) is None, lang


@pytest.mark.parametrize("sender, headers", [
    ("oracle@db01.example.com", ""), ("root@localhost.example.com", ""),
    ("jan.kowalski@example.pl", "X-Spam-Flag: YES\n"),
    ("jan.kowalski@yahoo.example.com",
     "X-Spam-Status: No, score=-1.1 required=5.0 tests=BAYES_00,FORGED_YAHOO_RCVD\n"),
])
def test_system_accounts_and_spam_filter_verdicts_are_for_staff(sender, headers):
    raw = mail(headers, sender=sender)
    assert reason(raw) is None and looks_automatic(parse_mail(raw)) is not None


def test_a_clean_spam_filter_verdict_changes_nothing():
    raw = mail("X-Spam-Flag: NO\nX-Spam-Status: No, score=-1.9 tests=BAYES_00\n")
    assert looks_automatic(parse_mail(raw)) is None


# --------------------------------------------------------------------------- intake


def _ingest(tmp_path: Path, raw: bytes) -> tuple[str, str, str]:
    """(state, outcome, note) of one mail taken in by intake, on a real SQLite database."""
    tmp_path.mkdir()
    from datetime import datetime, timezone

    from mailbot.config import settings_from_dict
    from mailbot.db.models import Request
    from mailbot.db.session import open_database, sync_config
    from mailbot.db.mailboxes import mailbox_row
    from mailbot.intake.store import ingest

    settings = settings_from_dict({
        "database_url": f"sqlite:///{tmp_path}/signals.db",
        "libraries": [{"id": "lib", "name": "Biblioteka Testowa"}],
        "mailboxes": [{"library": "lib", "address": "ebooki@biblioteka.test",
                       "username": "u", "password": "secret"}],
    })
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    now = datetime(2026, 11, 1, 0, 5, tzinfo=timezone.utc)
    with sessions.begin() as session:
        mb = settings.mailboxes[0]
        stored = ingest(session, settings=settings, mailbox=mailbox_row(session, mb), mb=mb,
                        uidvalidity=1, uid=1, received_at=now, raw=raw, now=now)
        row = session.get(Request, stored.request_id)
        return row.state, row.outcome, row.trail[0]["note"] if row.trail else ""


def test_intake_silences_a_nested_report_and_leaves_a_machine_body_to_staff(tmp_path):
    # Through the real ingest: the gateway's nested DSN ends ignored_loop; the plain-text
    # bounce with a patron-looking subject ends with staff (not_a_request), saying why.
    nested = _wrapped("message/delivery-status", "Action: failed\nStatus: 5.1.1")
    assert _ingest(tmp_path / "a", nested)[:2] == ("ignored", "ignored_loop")
    plain = mail(body="Karta 2000123456\n------ Failed Recipients ------\n\n<jan@example.pl>:"
                      " mailbox unavailable.\n")
    state, outcome, note = _ingest(tmp_path / "b", plain)
    assert (state, outcome) == ("manual", "not_a_request") and "automatic" in note
    assert _ingest(tmp_path / "c", mail())[:2] == ("new", None)
