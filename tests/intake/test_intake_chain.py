"""The intake chain through the real ``ingest``: one mail per way intake can sort a mail,
each stored with exactly the state, outcome, trail and folder it has always had, whether
ingest writes the row itself or hands it to the chunk's one insert."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from mailbot.config import settings_from_dict
from mailbot.db.batches import insert_rows
from mailbot.db.models import Mailbox, Outbox, Request
from mailbot.db.session import open_database, sync_config
from mailbot.intake.store import ingest

NOW = datetime(2026, 11, 1, 0, 5, tzinfo=UTC)
OUR_REPLY = "<mailbot.0123456789abcdef0123@biblioteka.test>"


def mail(headers: str = "", body: str = "Dzień dobry, proszę o kod.\nKarta: 2000123456\n",
         *, sender: str = "Jan Kowalski <jan.kowalski@example.pl>",
         subject: str = "Re: LEGIMI", message_id: str = "<m1@example.pl>") -> bytes:
    head = f"From: {sender}\nTo: ebooki@biblioteka.test\nSubject: {subject}\n" \
           f"Message-ID: {message_id}\nDate: Sun, 1 Nov 2026 00:00:05 +0100\n{headers}"
    return (head.rstrip("\n") + "\n\n" + body).encode("utf-8")


def bounce(our_id: str = OUR_REPLY) -> bytes:
    report = (f"--R\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
              f"--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; "
              f"mx.example.com\n\nFinal-Recipient: rfc822; jan@example.pl\nAction: failed\n"
              f"Status: 5.1.1\n\n--R\nContent-Type: text/rfc822-headers\n\n"
              f"Message-ID: {our_id}\nSubject: Re: LEGIMI\n\n--R--\n")
    return mail('MIME-Version: 1.0\nContent-Type: multipart/report; boundary="R"\n', report,
                sender="MAILER-DAEMON@mx.example.com", subject="Undelivered Mail")


def nested_report() -> bytes:
    report = ("--R\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
              "--R\nContent-Type: message/delivery-status\n\nAction: failed\nStatus: 5.1.1\n"
              "\n--R--\n")
    return mail('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="M"\n',
                '--M\nContent-Type: multipart/report; boundary="R"\n\n' + report + "--M--\n",
                sender="Mail Gateway <gateway@example.com>")


PROCESSED, MANUAL = "mailbot/processed", "mailbot/manual"


def refused(rule: str, note: str, **args: Any) -> list[dict[str, Any]]:
    return [{"rule": rule, "result": "refused", "note": note, "args": args}]


# (mail, state, outcome, kind, service, trail, pending_move): each way intake sorts mail.
CASES: dict[str, tuple[bytes, str, str | None, str, str | None, list[Any], str]] = {
    "a request": (mail(), "new", None, "request", "legimi", [], PROCESSED),
    "a test request": (mail(subject="TEST LEGIMI"), "new", None, "test", "legimi", [],
                       PROCESSED),
    "an auto-reply": (mail("Auto-Submitted: auto-replied\n"), "ignored", "ignored_loop",
                      "request", None, refused("loop", "loop_auto_submitted"), PROCESSED),
    "a report nested in a mixed mail": (
        nested_report(), "ignored", "ignored_loop", "request", None,
        refused("loop", "loop_delivery_report"), PROCESSED),
    "a bounce of our stored reply": (
        bounce(), "ignored", "ignored_loop", "request", None,
        refused("loop", "bounce_marked", replies="1", reason="5.1.1"), PROCESSED),
    "a bounce of a reply not stored": (
        bounce("<mailbot.fedcba9876543210fedc@biblioteka.test>"), "ignored", "ignored_loop",
        "request", None, refused("loop", "bounce_unmatched"),
        PROCESSED),
    "a blocked sender": (
        mail(sender="Zenon <z@spam.test>"), "ignored", "ignored_sender", "request", None,
        refused("blocked_senders", "blocked_sender"), PROCESSED),
    "a blocked sender's test": (
        mail(sender="z@spam.test", subject="TEST LEGIMI"), "ignored", "ignored_sender", "test",
        None, refused("blocked_senders", "blocked_sender"), PROCESSED),
    "a subject naming no service": (
        mail(subject="Pytanie o godziny otwarcia"), "manual", "not_a_request", "request",
        None, refused("subject", "no_service"), MANUAL),
    "a body reading like a program's": (
        mail(body="Karta 2000123456\n------ Failed Recipients ------\n\n<jan@example.pl>:"
                  " mailbox unavailable.\n"),
        "manual", "not_a_request", "request", None,
        refused("loop", "reads_automatic", phrase="failed recipients"), MANUAL),
    "no usable sender": (
        mail(sender="jan"), "manual", "not_a_request", "request", None,
        refused("sender", "no_sender"), MANUAL),
}


def _intake(url: str):
    settings = settings_from_dict({
        "database_url": url,
        "blocked_senders": ["*@spam.test"],
        "libraries": [{"id": "lib", "name": "Biblioteka Testowa", "eligibility_test": True}],
        "mailboxes": [{"library": "lib", "address": "ebooki@biblioteka.test",
                       "username": "u", "password": "secret"}],
    })
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    with sessions.begin() as session:
        session.add(Outbox(library_id="lib", mail_from="ebooki@biblioteka.test",
                           to_address="jan@example.pl", message_id=OUR_REPLY,
                           outcome="issued", message=b"", created_at=NOW, due_at=NOW))
    return settings, sessions


@pytest.fixture
def intake(tmp_path: Path):
    return _intake(f"sqlite:///{tmp_path}/chain.db")


def _take_in(settings, sessions, raw: bytes, *, chunked: bool, uid: int = 1):
    mb = settings.mailboxes[0]
    with sessions.begin() as session:
        mailbox = session.scalars(select(Mailbox)).one()
        if not chunked:
            return ingest(session, settings=settings, mailbox=mailbox, mb=mb, uidvalidity=1,
                          uid=uid, received_at=NOW, raw=raw, now=NOW)
        rows: list[dict[str, Any]] = []
        from mailbot.intake.parse import parse_mail

        stored = ingest(session, settings=settings, mailbox=mailbox, mb=mb, uidvalidity=1,
                        uid=uid, received_at=NOW, raw=raw, now=NOW, flush=False,
                        parsed=parse_mail(raw, max_bytes=settings.max_message_bytes),
                        rows=rows)
        insert_rows(session, Request.__table__, rows)
        return stored


@pytest.mark.parametrize("chunked", [False, True], ids=["alone", "in a chunk"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_way_intake_sorts_a_mail_stores_the_same_row(intake, case, chunked):
    # Whatever the chain decides, the row says it exactly so: state, outcome, the one
    # refusing rule with its note, the folder the mail goes to, the service only for a
    # request; decided at intake unless it is a request for the decide stage.
    _check(*intake, case, chunked=chunked)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_each_way_intake_sorts_a_mail_stores_the_same_row(database_url):
    # The same rows on PostgreSQL, where a chunk's rows go in by COPY.
    settings, sessions = _intake(database_url)
    for case in CASES:
        for chunked in (False, True):
            _check(settings, sessions, case, chunked=chunked)
            with sessions.begin() as session:
                session.execute(delete(Request))
                session.execute(update(Outbox).values(state="pending", last_error=None))


def _check(settings, sessions, case: str, *, chunked: bool) -> None:
    raw, state, outcome, kind, service, trail, pending_move = CASES[case]
    stored = _take_in(settings, sessions, raw, chunked=chunked)
    assert stored.move_to == pending_move and not stored.duplicate
    with sessions() as s:
        [row] = s.scalars(select(Request)).all()
        box = s.scalars(select(Outbox)).one()
    assert (row.state, row.outcome, row.kind, row.service, row.trail, row.pending_move) == (
        state, outcome, kind, service, trail, pending_move), case
    assert row.decided_at == (None if outcome is None else NOW)
    assert row.from_address == {"no usable sender": None,
                                "a blocked sender": "z@spam.test",
                                "a blocked sender's test": "z@spam.test",
                                "a bounce of our stored reply": "mailer-daemon@mx.example.com",
                                "a bounce of a reply not stored":
                                    "mailer-daemon@mx.example.com",
                                "a report nested in a mixed mail": "gateway@example.com",
                                }.get(case, "jan.kowalski@example.pl")
    # Only a bounce of a reply we stored marks that reply failed, for staff.
    if case == "a bounce of our stored reply":
        assert (box.state, box.last_error) == ("failed", "bounced: 5.1.1")
    else:
        assert (box.state, box.last_error) == ("pending", None)


@pytest.mark.parametrize("chunked", [False, True], ids=["alone", "in a chunk"])
def test_a_copy_goes_where_the_original_went_and_is_not_stored_again(intake, chunked):
    # The same Message-ID again: no second row; a request's copy goes to the processed
    # folder, a copy of mail left for staff to the manual folder.
    settings, sessions = intake
    request, staff = mail(), mail(subject="Pytanie", message_id="<m2@example.pl>")
    _take_in(settings, sessions, request, chunked=chunked, uid=1)
    _take_in(settings, sessions, staff, chunked=chunked, uid=2)
    again = [_take_in(settings, sessions, raw, chunked=chunked, uid=uid)
             for uid, raw in ((3, request), (4, staff))]
    assert [(s.request_id, s.move_to, s.duplicate) for s in again] == [
        (None, PROCESSED, True), (None, MANUAL, True)]
    with sessions() as s:
        assert s.scalars(select(Request.uid).order_by(Request.uid)).all() == [1, 2]
