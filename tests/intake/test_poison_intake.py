"""One mail never stops a mailbox's intake (issue 15), over a real Maildir on disk and a
real Dovecot: a mail the parser, the clock or the database chokes on is set aside for
staff (a request in state ``error``, on the dashboard's queue, moved to the manual
folder) or, for a nonsense date, read as having none; every other mail is read, decided
and answered in arrival order, and the next poll neither repeats nor stalls."""

from __future__ import annotations

import logging
import mailbox
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from mailbot.db.models import Mailbox, Request
from mailbot.db.session import open_database
from mailbot.intake.parse import parse_mail
from tests.botenv import Bot, make_bot, request_mail, valid_reader

MANUAL = ".mailbot.manual"
PROCESSED = ".mailbot.processed"
REFUSE_MARK = b"X-Refused-By-The-Database: yes"
UNSTORABLE_SIZE = 54_321  # the test database refuses every row of a mail this long



def _maildir_bot(tmp_path: Path, smtp_sink, database_url: str | None = None,
                 patrons: int = 6) -> tuple[Bot, Path, datetime]:
    root = tmp_path / "Maildir"
    mailbox.Maildir(root, create=True)
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[], database_url=database_url,
                   tables=f"""
[[mailboxes]]
library = "lib"
address = "ebooki@biblioteka.test"
type = "maildir"
path = "{root}"

[web]
secret_key_file = "{tmp_path}/web.key"
""")
    w = bot.window()
    assert bot.import_readers([f"09100{i};Ala;Truta{i};p{i}@patron.test;"
                               f"{valid_reader(w.year)}"
                               for i in range(1, patrons + 1)]) == 0
    assert bot.import_codes([f"POISON-{i:02d}" for i in range(1, patrons + 1)]) == 0
    return bot, root, w


def _deliver(root: Path, raw: bytes, arrival: datetime) -> str:
    """Delivers into the Maildir as an MTA would; the file's mtime is the arrival."""
    key = mailbox.Maildir(root).add(raw)
    path = next(root.glob(f"new/{key}*"))
    os.utime(path, (arrival.timestamp(), arrival.timestamp()))
    return key


def _files(root: Path, folder: str = "") -> list[Path]:
    base = root / folder if folder else root
    return sorted(p for sub in ("new", "cur") for p in (base / sub).glob("*"))


def _deep_mime(sender: str, depth: int = 1000) -> bytes:
    raw = (f"Subject: LEGIMI\r\nFrom: {sender}\r\nMessage-ID: <deep-{depth}@patron.test>\r\n"
           "MIME-Version: 1.0\r\n").encode()
    for level in range(depth):
        raw += (f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n'
                f"--b{level}\r\n").encode()
    return raw + b"Content-Type: text/plain\r\n\r\nAla Glebia 0910099\r\n"


def _dated(sender: str, body: str, date_header: str) -> bytes:
    raw, _ = request_mail(sender, "LEGIMI", body)
    head, sep, rest = raw.partition(b"\n\n")
    return head + f"\nDate: {date_header}".encode() + sep + rest


YEAR_1 = "Mon, 1 Jan 0001 00:00:00 +0100"
YEAR_9999 = "Fri, 31 Dec 9999 23:59:59 -0100"


def _refuse_in_database(url: str) -> None:
    """The database itself refuses some rows, as a real one may refuse a value: every row
    whose stored mail carries REFUSE_MARK, and every row of a mail UNSTORABLE_SIZE long."""
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text(
                "CREATE TRIGGER refuse_rows BEFORE INSERT ON requests "
                f"WHEN instr(NEW.raw, X'{REFUSE_MARK.hex()}') > 0 "
                f"OR NEW.raw_size = {UNSTORABLE_SIZE} "
                "BEGIN SELECT RAISE(ABORT, 'row refused by the database'); END"))
        else:
            conn.execute(text(
                "CREATE FUNCTION refuse_rows() RETURNS trigger AS $$ BEGIN "
                f"IF position('\\x{REFUSE_MARK.hex()}'::bytea in NEW.raw) > 0 "
                f"OR NEW.raw_size = {UNSTORABLE_SIZE} THEN "
                "RAISE EXCEPTION 'row refused by the database'; END IF; RETURN NEW; "
                "END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse_rows BEFORE INSERT ON requests "
                              "FOR EACH ROW EXECUTE FUNCTION refuse_rows()"))
    engine.dispose()


def _refusal(bot: Bot) -> str:
    """The exception a refusing trigger raises through the database's driver."""
    return "IntegrityError" if bot.settings().database_url.startswith("sqlite") \
        else "ProgrammingError"


def _unstorable(sender: str, secret: str) -> bytes:
    """A request exactly UNSTORABLE_SIZE bytes long, with a secret in its body."""
    raw = (f"From: {sender}\r\nTo: ebooki@biblioteka.test\r\nSubject: LEGIMI\r\n"
           f"Message-ID: <unstorable@patron.test>\r\n\r\n{secret}\r\n").encode()
    line = b"x" * 70 + b"\r\n"
    raw += line * ((UNSTORABLE_SIZE - len(raw)) // len(line))
    raw += b"y" * (UNSTORABLE_SIZE - len(raw))
    assert len(raw) == UNSTORABLE_SIZE
    return raw


def _by_sender(bot: Bot) -> dict[str | None, Request]:
    return {r.from_address: r for r in bot.requests()}


def _codes_in_arrival_order(bot: Bot) -> list[tuple[str, str]]:
    return [(r.from_address, r.code.code) for r in bot.requests() if r.code is not None]


# ------------------------------------------------------------------------------- dates


@pytest.mark.parametrize("value", [YEAR_1, YEAR_9999, "Sat, 31 Dec 1989 23:00:00 +0000",
                                   "1 Jan 0001 00:00:00 GMT", "31 Dec 9999 23:59:59"])
def test_a_date_no_mail_can_have_counts_as_missing(value):
    # Year 1, 9999, before 1990 or days ahead: no date at all (never an overflow later).
    assert parse_mail(f"Date: {value}\r\n\r\nx".encode()).date is None


def test_dates_are_kept_from_1990_up_to_two_days_ahead():
    # From 1990 up to two days ahead (a client's time-zone mistake) a date is kept.
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    for when in (datetime(1990, 1, 1, 0, 0, tzinfo=UTC), soon):
        raw = f"Date: {when:%a, %d %b %Y %H:%M:%S} +0000\r\n\r\nx".encode()
        assert parse_mail(raw).date == when
    late = soon + timedelta(days=2)
    assert parse_mail(f"Date: {late:%a, %d %b %Y %H:%M:%S} +0000\r\n\r\nx".encode()).date \
        is None


# ------------------------------------------------------------------------------ Maildir


def test_a_maildir_with_deep_mime_and_impossible_dates_answers_everyone_in_order(
        tmp_path, smtp_sink, database_url):
    # Between six normal requests: MIME nested 1,000 deep, a Date of year 1 and of 9999.
    # The deep one is handled without the stdlib's recursion (never left waiting), the
    # dated ones count as undated and get their codes; all codes go in arrival order and
    # a second run repeats and stalls nothing.
    bot, root, w = _maildir_bot(tmp_path, smtp_sink, database_url, patrons=8)
    mails = [
        request_mail("p1@patron.test", "LEGIMI", "Ala Truta1 091001")[0],
        _deep_mime("deep@patron.test"),
        request_mail("p2@patron.test", "LEGIMI", "Ala Truta2 091002")[0],
        _dated("p3@patron.test", "Ala Truta3 091003", YEAR_1),
        request_mail("p4@patron.test", "LEGIMI", "Ala Truta4 091004")[0],
        _dated("p5@patron.test", "Ala Truta5 091005", YEAR_9999),
        request_mail("p6@patron.test", "LEGIMI", "Ala Truta6 091006")[0],
    ]
    for i, raw in enumerate(mails):
        _deliver(root, raw, w + timedelta(seconds=i + 1))

    assert bot.run_once() == 0
    got = _by_sender(bot)
    assert _codes_in_arrival_order(bot) == [
        (f"p{i}@patron.test", f"POISON-{i:02d}") for i in range(1, 7)]
    for i in range(1, 7):
        assert (got[f"p{i}@patron.test"].state, got[f"p{i}@patron.test"].outcome) \
            == ("decided", "issued")
    assert got["p3@patron.test"].date_header is None
    assert got["p5@patron.test"].date_header is None
    deep = got["deep@patron.test"]
    assert deep.state in ("decided", "manual", "error") and deep.outcome != "issued"
    replied = sorted(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert [a for a in replied if a.startswith("p")] == [f"p{i}@patron.test"
                                                         for i in range(1, 7)]
    assert _files(root) == []  # every mail has left the inbox
    assert len(_files(root, PROCESSED)) + len(_files(root, MANUAL)) == len(mails)

    sent = len(smtp_sink.messages)
    assert bot.run_once() == 0  # nothing repeated, nothing stuck
    assert len(bot.requests()) == len(mails)
    assert len(smtp_sink.messages) == sent
    assert not [r for r in bot.requests() if r.state == "new"]


def test_mail_the_database_refuses_is_set_aside_for_staff_and_the_rest_go_on(
        tmp_path, smtp_sink, database_url, caplog):
    # The database refuses one request's row (and its set-aside row with the mail in it):
    # a bare row in state error is stored, shown on the dashboard's queue, the mail moved
    # to the manual folder. Another mail's every row is refused: nothing stored, still
    # moved to the manual folder, logged without its content. The rest are answered in
    # order, and the next run repeats nothing.
    bot, root, w = _maildir_bot(tmp_path, smtp_sink, database_url, patrons=3)
    _refuse_in_database(bot.settings().database_url)
    refused, _ = request_mail("x1@patron.test", "LEGIMI", "Obcy 0999991",
                              headers={REFUSE_MARK.split(b":")[0].decode(): "yes"})
    assert REFUSE_MARK in refused
    mails = [
        request_mail("p1@patron.test", "LEGIMI", "Ala Truta1 091001")[0],
        refused,
        request_mail("p2@patron.test", "LEGIMI", "Ala Truta2 091002")[0],
        _unstorable("x2@patron.test", "TAJNE-DANE-CZYTELNIKA"),
        request_mail("p3@patron.test", "LEGIMI", "Ala Truta3 091003")[0],
    ]
    for i, raw in enumerate(mails):
        _deliver(root, raw, w + timedelta(seconds=i + 1))

    caplog.set_level(logging.INFO)
    assert bot.run_once() == 1  # the mail nothing of which could be stored is reported
    assert _codes_in_arrival_order(bot) == [
        (f"p{i}@patron.test", f"POISON-{i:02d}") for i in range(1, 4)]
    aside = [r for r in bot.requests() if r.state == "error"]
    assert len(aside) == 1 and aside[0].raw is None and aside[0].raw_size == len(refused)
    refusal = _refusal(bot)
    assert aside[0].error.startswith(refusal) and "mailbot/manual" in aside[0].error
    assert aside[0].received_at == w + timedelta(seconds=2)
    assert "x2@patron.test" not in {r.from_address for r in bot.requests()}
    assert "TAJNE-DANE-CZYTELNIKA" not in caplog.text
    assert _files(root) == []
    manual = [p.read_bytes() for p in _files(root, MANUAL)]
    assert sorted(manual) == sorted([refused, mails[3]])  # whole, untouched
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == [
        "p1@patron.test", "p2@patron.test", "p3@patron.test"]

    # Staff see it on the dashboard's queue, with the error on the request's page.
    from tests.web.webenv import login

    from starlette.testclient import TestClient

    from mailbot.web.app import create_app

    os.environ["MAILBOT_NEW_PASSWORD"] = "correct horse battery"
    try:
        assert bot.cli("user", "add", "staff", "--library", "lib") == 0
    finally:
        del os.environ["MAILBOT_NEW_PASSWORD"]
    settings = bot.settings()
    client = TestClient(create_app(settings, open_database(settings.database_url)))
    login(client, "staff", "correct horse battery")
    queue = client.get("/queue").text
    assert f'href="/requests/{aside[0].id}"' in queue
    page = client.get(f"/requests/{aside[0].id}").text
    assert refusal in page and "mailbot/manual" in page

    assert bot.run_once() == 0
    assert len(bot.requests()) == 4 and len(smtp_sink.messages) == 3


def test_a_maildir_mail_over_max_message_bytes_is_read_only_up_to_it(tmp_path, smtp_sink):
    # A 24 MB request: only max_message_bytes of it are read and stored (as IMAP fetches
    # it), it is decided as usual, and the file itself is moved whole.
    bot, root, w = _maildir_bot(tmp_path, smtp_sink, patrons=2)
    huge, _ = request_mail("p1@patron.test", "LEGIMI",
                           "Ala Truta1 091001\n" + ("x" * 998 + "\n") * 24_000)
    assert len(huge) > 24_000_000
    _deliver(root, huge, w + timedelta(seconds=1))
    _deliver(root, request_mail("p2@patron.test", "LEGIMI", "Ala Truta2 091002")[0],
             w + timedelta(seconds=2))
    assert bot.run_once() == 0
    limit = bot.settings().max_message_bytes
    got = _by_sender(bot)
    big = got["p1@patron.test"]
    assert len(big.raw) <= limit and big.raw_size <= limit
    assert huge.startswith(big.raw)
    assert (big.state, big.outcome) == ("decided", "issued")
    assert got["p2@patron.test"].outcome == "issued"
    sizes = sorted(p.stat().st_size for p in _files(root, PROCESSED))
    assert len(sizes) == 2 and sizes[-1] == len(huge)  # moved whole


# --------------------------------------------------------------------------------- IMAP


def _imap_bot(tmp_path, imap_user, smtp_sink, patrons: int) -> tuple[Bot, datetime]:
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    assert bot.import_readers([f"09100{i};Ala;Truta{i};p{i}@patron.test;"
                               f"{valid_reader(w.year)}"
                               for i in range(1, patrons + 1)]) == 0
    assert bot.import_codes([f"POISON-{i:02d}" for i in range(1, patrons + 1)]) == 0
    return bot, w


def test_impossible_dates_over_imap_are_stored_and_decided_not_skipped(
        tmp_path, imap_user, smtp_sink):
    # A Date of year 1 or 9999 over IMAP: stored (not silently left in the folder),
    # undated, and decided like the rest, in arrival order.
    bot, w = _imap_bot(tmp_path, imap_user, smtp_sink, 4)
    mails = [request_mail("p1@patron.test", "LEGIMI", "Ala Truta1 091001")[0],
             _dated("p2@patron.test", "Ala Truta2 091002", YEAR_1),
             _dated("p3@patron.test", "Ala Truta3 091003", YEAR_9999),
             request_mail("p4@patron.test", "LEGIMI", "Ala Truta4 091004")[0]]
    for i, raw in enumerate(mails):
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    assert bot.run_once() == 0
    got = _by_sender(bot)
    assert len(got) == 4
    assert got["p2@patron.test"].date_header is None
    assert got["p3@patron.test"].date_header is None
    assert _codes_in_arrival_order(bot) == [
        (f"p{i}@patron.test", f"POISON-{i:02d}") for i in range(1, 5)]
    assert imap_user.list("INBOX") == []
    assert bot.run_once() == 0 and len(bot.requests()) == 4 and len(smtp_sink.messages) == 4


def test_an_impossible_internaldate_is_taken_as_the_moment_the_poll_saw_the_mail(
        tmp_path, imap_user, smtp_sink):
    # Dovecot reports a file's mtime as INTERNALDATE: 1901 or 2100 are no arrival. Such
    # a mail does not jump the queue (1901) nor wait until 2100: it is taken as arriving
    # when the poll saw it, after the real arrivals, and decided by the next poll.
    bot, w = _imap_bot(tmp_path, imap_user, smtp_sink, 4)
    for i in (1, 2, 3, 4):
        imap_user.append(request_mail(f"p{i}@patron.test", "LEGIMI",
                                      f"Ala Truta{i} 09100{i}")[0],
                         internaldate=w + timedelta(seconds=i))
    files = sorted(imap_user.maildir.glob("new/*"), key=lambda p: p.stat().st_mtime)
    assert len(files) == 4
    os.utime(files[0], (4102444800, 4102444800))  # 2100-01-01: p1
    os.utime(files[2], (-62135510400, -62135510400))  # year 1 (Dovecot: 1901): p3
    before = datetime.now(UTC)
    assert bot.run_once() == 0
    got = _by_sender(bot)
    assert len(got) == 4
    for odd in ("p1@patron.test", "p3@patron.test"):
        assert got[odd].received_at >= before.replace(microsecond=0)
    assert _codes_in_arrival_order(bot) == [("p2@patron.test", "POISON-01"),
                                            ("p4@patron.test", "POISON-02")]
    time.sleep(1.1)  # the next poll starts a second later (the horizon has whole seconds)
    assert bot.run_once() == 0
    got = _by_sender(bot)
    assert {got[a].outcome for a in got} == {"issued"}
    assert len(smtp_sink.messages) == 4


def test_mail_the_database_refuses_over_imap_is_set_aside_not_left_unseen(
        tmp_path, imap_user, smtp_sink):
    # Over IMAP the same: a mail the database refuses is set aside for staff (a bare row
    # in state error, moved to the manual folder), one nothing of which can be stored is
    # moved there too; the others are answered in order and the next poll repeats none.
    bot, w = _imap_bot(tmp_path, imap_user, smtp_sink, 3)
    _refuse_in_database(bot.settings().database_url)
    refused, _ = request_mail("x1@patron.test", "LEGIMI", "Obcy 0999991",
                              headers={REFUSE_MARK.split(b":")[0].decode(): "yes"})
    mails = [request_mail("p1@patron.test", "LEGIMI", "Ala Truta1 091001")[0], refused,
             request_mail("p2@patron.test", "LEGIMI", "Ala Truta2 091002")[0],
             _unstorable("x2@patron.test", "TAJNE-DANE-CZYTELNIKA"),
             request_mail("p3@patron.test", "LEGIMI", "Ala Truta3 091003")[0]]
    for i, raw in enumerate(mails):
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    assert bot.run_once() == 1  # the unstorable mail is reported
    assert _codes_in_arrival_order(bot) == [
        (f"p{i}@patron.test", f"POISON-{i:02d}") for i in range(1, 4)]
    aside = [r for r in bot.requests() if r.state == "error"]
    manual = {m.raw.replace(b"\r\n", b"\n"): m.raw for m in imap_user.list("mailbot/manual")}
    assert sorted(manual) == sorted([refused, mails[3].replace(b"\r\n", b"\n")])
    assert len(aside) == 1 and aside[0].uid == 2
    assert aside[0].raw_size == len(manual[refused])
    assert aside[0].error.startswith(_refusal(bot)) and aside[0].pending_move is None
    assert imap_user.list("INBOX") == []
    assert bot.run_once() == 0
    assert len(bot.requests()) == 4 and len(smtp_sink.messages) == 3
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        assert s.scalars(select(Mailbox.last_error)).one() is None


def test_an_implausibly_long_message_id_neither_stops_the_mailbox_nor_is_answered_twice(
        tmp_path, smtp_sink, database_url):
    # A Message-ID of 900 CJK characters (3,000 bytes) is longer than PostgreSQL's index
    # takes; its refusal looked like the database being busy and held the Maildir for
    # ever. It is stored as its hash: the mail is answered, a copy of it is a duplicate,
    # and the requests after it are read and answered.
    bot, root, w = _maildir_bot(tmp_path, smtp_sink, database_url, patrons=3)
    raw, mid = request_mail("p1@patron.test", "LEGIMI", "Ala Truta1 091001")
    # Random characters: a repeated one would be compressed below the index's limit.
    rng = random.Random(15)
    long_id = "<" + "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(900)) + \
        "@patron.test>"
    raw = raw.replace(mid.encode(), long_id.encode("utf-8"))
    _deliver(root, raw, w + timedelta(seconds=1))
    _deliver(root, raw, w + timedelta(seconds=2))  # the same mail delivered twice
    _deliver(root, request_mail("p2@patron.test", "LEGIMI", "Ala Truta2 091002")[0],
             w + timedelta(seconds=3))
    assert bot.run_once() == 0
    assert _codes_in_arrival_order(bot) == [("p1@patron.test", "POISON-01"),
                                            ("p2@patron.test", "POISON-02")]
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == [
        "p1@patron.test", "p2@patron.test"]
    assert [r.message_id.endswith("@mailbot.long-message-id>") for r in bot.requests()] \
        == [True, False]
    assert _files(root) == []
