"""IMAP intake against real Dovecot: nothing fetched twice, nothing skipped, moves after commit."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailbot.db.models import Mailbox, Request
from mailbot.db.session import open_database
from mailbot import offload
from mailbot.intake import burst, imap, reading, store
from mailbot.intake import parse as parsing
from tests.botenv import make_bot, request_mail


def _reader_row(card: str, surname: str, email: str, year: int) -> str:
    return f"{card};Ala;{surname};{email};{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def _bot_on_folder(tmp_path, user, smtp, folder: str):
    bot = make_bot(tmp_path, smtp=smtp, mailboxes=[user])
    bot.config.write_text(bot.config.read_text().replace(
        'type = "imap"', f'type = "imap"\nfolder = "{folder}"'))
    return bot


def test_a_new_uidvalidity_reads_the_folder_again_without_repeating_or_losing_mail(
        tmp_path, imap_user, smtp_sink):
    # The folder is recreated (new UIDVALIDITY, UIDs from 1 again): the old mail is not
    # answered twice, the new mail with a low UID is not skipped.
    imap_user.create_folder("Zgloszenia")
    bot = _bot_on_folder(tmp_path, imap_user, smtp_sink, "Zgloszenia")
    w = bot.window()
    bot.import_readers([_reader_row(f"008000{i}", f"Uid{i}", f"u{i}@patron.test", w.year)
                        for i in range(1, 5)])
    bot.import_codes([f"UIDV-000{i}" for i in range(1, 5)])
    raws = []
    for i in range(1, 4):
        raw, _ = request_mail(f"u{i}@patron.test", "LEGIMI", f"Ala Uid{i} 008000{i}")
        raws.append(raw)
        imap_user.append(raw, internaldate=w + timedelta(seconds=i), folder="Zgloszenia")
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 3

    with imap_user.connect() as client:
        client.delete_folder("Zgloszenia")
        client.create_folder("Zgloszenia")
    # The old mail comes back (e.g. restored by an admin) and one new request arrives.
    imap_user.append(raws[0], internaldate=w + timedelta(seconds=1), folder="Zgloszenia")
    raw, _ = request_mail("u4@patron.test", "LEGIMI", "Ala Uid4 0080004")
    imap_user.append(raw, internaldate=w + timedelta(seconds=60), folder="Zgloszenia")
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 4
    outcomes = {r.card_number: r.outcome for r in bot.requests()}
    assert outcomes == {f"008000{i}": "issued" for i in range(1, 5)}
    assert imap_user.list("Zgloszenia") == []


def test_mail_is_moved_only_after_the_commit_and_a_failed_move_is_finished_next_time(
        tmp_path, imap_user, smtp_sink, monkeypatch):
    # The connection dies while moving: the requests are already stored (all of them: the
    # read was complete), so the same run decides and answers them; the next run moves the
    # mail and answers nothing again.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    bot.import_readers([_reader_row("0090001", "Ruch", "m@patron.test", w.year)])
    bot.import_codes(["MOVE-0001"])
    raw, _ = request_mail("m@patron.test", "LEGIMI", "Ala Ruch 0090001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))

    real_move = imap.move

    def broken_move(*args, **kwargs):
        raise ConnectionResetError("connection lost while moving")

    monkeypatch.setattr(imap, "move", broken_move)
    assert bot.run_once() == 1  # the mailbox reports its error...
    assert len(smtp_sink.messages) == 1  # ...but what was stored was decided and answered
    assert len(imap_user.list("INBOX")) == 1
    [req] = bot.requests()
    assert req.pending_move == "mailbot/processed"

    monkeypatch.setattr(imap, "move", real_move)
    assert bot.run_once() == 0
    assert imap_user.list("INBOX") == []
    assert len(imap_user.list("mailbot/processed")) == 1
    assert len(smtp_sink.messages) == 1
    assert bot.requests()[0].pending_move is None


def test_an_oversized_mail_is_read_only_up_to_the_cap_and_still_answered(
        tmp_path, imap_user, smtp_sink):
    # A 3 MB request (a big attachment) is fetched only up to max_message_bytes.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    bot.config.write_text(bot.config.read_text().replace(
        "[smtp]", "max_message_bytes = 200000\n\n[smtp]"))
    w = bot.window()
    bot.import_readers([_reader_row("0100001", "Duza", "big@patron.test", w.year)])
    bot.import_codes(["BIG-0001"])
    raw, _ = request_mail("big@patron.test", "LEGIMI", "Ala Duza 0100001\n" + "x" * 76 * 40000)
    assert len(raw) > 3_000_000
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    [req] = bot.requests()
    assert req.outcome == "issued" and req.raw_size <= 200_000


def test_a_mailbox_that_cannot_be_read_holds_its_librarys_queue_and_is_shown(
        tmp_path, imap_user_factory, smtp_sink, capsys):
    # One of two branch mailboxes has a wrong password. An earlier request may be sitting
    # there, so the other branch's request waits (strict arrival order, SPEC 2.2); run exits
    # 1 and status names the failing mailbox. Fixed, the next run once the login's
    # back-off is over (daemon.auth_retry) decides it.
    good, bad = imap_user_factory(), imap_user_factory()
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[good, bad],
                   tables="[daemon]\nauth_retry = 0.5\n")
    right = bot.config.read_text()
    bot.config.write_text(right.replace(f'password = "{bad.password}"', 'password = "wrong"'))
    w = bot.window()
    bot.import_readers([_reader_row("0110001", "Dobra", "g@patron.test", w.year)])
    bot.import_codes(["GOOD-0001"])
    raw, _ = request_mail("g@patron.test", "LEGIMI", "Ala Dobra 0110001")
    good.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 1
    assert [r.state for r in bot.requests()] == ["new"]
    assert smtp_sink.messages == []
    capsys.readouterr()
    assert bot.cli("status") == 1  # a mailbox in error needs attention (issue 18)
    out = capsys.readouterr().out
    assert "ebooki1@biblioteka.test" in out and "ERROR" in out and "1 waiting" in out
    assert "wrong" not in out  # never a password
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        rows = {m.address: m for m in s.scalars(select(Mailbox))}
    assert rows["ebooki0@biblioteka.test"].last_poll_at is not None
    assert rows["ebooki1@biblioteka.test"].last_error

    bot.config.write_text(right)
    time.sleep(0.6)  # the refused login's back-off
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued"]
    assert len(smtp_sink.messages) == 1


def test_status_shows_pools_queue_outbox_and_last_poll(tmp_path, imap_user, smtp_sink, capsys):
    # After a run, status shows codes left, nothing waiting and the mailbox's last poll.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    bot.import_readers([_reader_row("0120001", "Stan", "s@patron.test", w.year)])
    bot.import_codes(["ST-0001", "ST-0002"])
    raw, _ = request_mail("s@patron.test", "LEGIMI", "Ala Stan 0120001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    capsys.readouterr()
    assert bot.cli("status") == 0
    out = capsys.readouterr().out
    assert "legimi         1 left of 2" in out
    assert "0 waiting" in out and "1 sent" in out
    assert "last poll 20" in out


def _burst_bot(tmp_path, imap_user, smtp_sink, n: int):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    bot.import_readers([_reader_row(f"011{i:04d}", f"Fala{i}", f"f{i}@patron.test", w.year)
                        for i in range(n)])
    bot.import_codes([f"WAVE-{i:04d}" for i in range(n)])
    raws = []
    for i in range(n):
        raw, _ = request_mail(f"f{i}@patron.test", "LEGIMI", f"Ala Fala{i} 011{i:04d}")
        raws.append(raw)
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    return bot, raws, w


def _start_workers_and_watch_chunks(monkeypatch) -> list[int]:
    """Starts the parsing workers; the list returned fills with the UIDs of each chunk
    that no worker had taken up when it was to be stored (parsed in this process)."""
    assert offload.start(wait=True), "one CPU: the parsing workers cannot be tested here"
    left_here: list[int] = []
    real_result = burst.ParsedAhead.result

    def result(self):
        got = real_result(self)
        if not got:
            left_here.extend(self.uids)
        return got

    monkeypatch.setattr(burst.ParsedAhead, "result", result)
    return left_here


def test_a_burst_of_several_chunks_is_moved_on_a_second_connection_while_reading(
        tmp_path, imap_user, smtp_sink, monkeypatch, dovecot):
    # 3 mails a chunk, 11 requests and a repeat of the first: the chunks already stored are
    # moved on a second IMAP connection (a second login), every mail ends where it
    # belongs, the repeat too, and everything is answered once.
    monkeypatch.setattr(burst, "FETCH_CHUNK", 3)
    bot, raws, w = _burst_bot(tmp_path, imap_user, smtp_sink, 11)
    imap_user.append(raws[0], internaldate=w + timedelta(seconds=30))
    logins = len(dovecot.login_lines(imap_user.name))
    # ...and each chunk but the first is parsed by the worker processes while the next is
    # fetched: this process parses none of those, neither to store nor to decide. The
    # first chunk is parsed and stored here at once (a start stores mail without waiting
    # for the workers or the next fetch: issue 15's restart liveness), once. A chunk no
    # worker has taken up yet when it is to be stored (usually only the last, which has
    # no fetch after it to overlap with, or any on a busy machine) is parsed here rather
    # than waited for, once (as a chunk is while the workers are still starting, see
    # below; here they are started first).
    left_here = _start_workers_and_watch_chunks(monkeypatch)
    parsed_here: list[bytes] = []
    real_parse = parsing.parse_mail
    monkeypatch.setattr(parsing, "parse_mail",
                        lambda raw, **kw: parsed_here.append(raw) or real_parse(raw, **kw))
    assert bot.run_once() == 0
    # UIDs 1-11 are f0-f10, UID 12 the repeat of f0.
    sender_of = {uid: f"f{(uid - 1) % 11}".encode() for uid in range(1, 13)}
    senders = [raw.split(b"@", 1)[0].rsplit(b" ", 1)[-1] for raw in parsed_here]
    first_chunk = [1, 2, 3]
    assert sorted(senders) == sorted(sender_of[uid] for uid in first_chunk + left_here), (
        senders, left_here)
    # Four chunks: the first parsed here, the middle two overlap a fetch, as the first
    # two did before it was stored at once (issue 15).
    assert len(left_here) < 9  # the workers did parse
    assert len(dovecot.login_lines(imap_user.name)) - logins == 2
    assert imap_user.list("INBOX") == []
    assert len(imap_user.list("mailbot/processed")) == 12
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted(
        f"f{i}@patron.test" for i in range(11))
    assert all(r.pending_move is None for r in bot.requests())


def test_a_burst_asks_for_each_arrival_time_once(tmp_path, imap_user, smtp_sink, monkeypatch):
    # The first chunk is fetched with its arrival times and stored at once; then the
    # arrival times of the rest of the burst are asked for (to decide while reading), and
    # the later chunks' FETCHes ask only for the mail. Each arrival time is asked for
    # once, for the UIDs it concerns, and each request keeps its own INTERNALDATE.
    from imapclient import IMAPClient

    monkeypatch.setattr(burst, "FETCH_CHUNK", 3)
    bot, _raws, w = _burst_bot(tmp_path, imap_user, smtp_sink, 8)
    asked: list[list[str]] = []
    real_fetch = IMAPClient.fetch

    def fetch(self, messages, data, *args, **kwargs):
        asked.append([str(item).split("<")[0] for item in data] + [sorted(messages)])
        return real_fetch(self, messages, data, *args, **kwargs)

    monkeypatch.setattr(IMAPClient, "fetch", fetch)
    assert bot.run_once() == 0
    assert asked == [["INTERNALDATE", "BODY.PEEK[]", [1, 2, 3]],
                     ["INTERNALDATE", [4, 5, 6, 7, 8]],
                     ["BODY.PEEK[]", [4, 5, 6]], ["BODY.PEEK[]", [7, 8]]]
    assert [r.received_at for r in bot.requests()] == [w + timedelta(seconds=i)
                                                      for i in range(8)]
    assert len(smtp_sink.messages) == 8


def test_a_fetch_with_known_arrival_times_keeps_only_the_mails_it_asked_for():
    # A server may add FETCH responses nobody asked for (another session changed a
    # message's flags): with the arrival times already known they carry no mail and are
    # not taken for one.
    arrived = {5: datetime(2026, 11, 1, 0, 3, tzinfo=UTC),
               6: datetime(2026, 11, 1, 0, 4, tzinfo=UTC),
               9: datetime(2026, 11, 1, 0, 5, tzinfo=UTC)}

    class Client:
        def fetch(self, uids, data):
            assert data == ["BODY.PEEK[]<0.1000>"] and uids == [5, 6]
            return {5: {b"BODY[]<0>": b"mail five"}, 6: {b"BODY[]<0>": b"mail six"},
                    9: {b"FLAGS": (b"\\Seen",)}, 7: {b"FLAGS": ()}}

    assert imap.fetch(Client(), [5, 6], 1000, arrived) == {
        5: (arrived[5], b"mail five"), 6: (arrived[6], b"mail six")}


def test_in_a_burst_the_workers_also_find_the_card_and_name_for_the_librarys_pattern(
        tmp_path, imap_user, smtp_sink, monkeypatch):
    # The library's cards look like AB000123. Deciding needs each mail's card and the
    # patron's name beside it: the parsing workers work both out for that pattern with the
    # parse, so this process does not search the text again (bar the first chunk, parsed
    # here, and the last, which may be, see above), and the name is the one beside the
    # library's card.
    monkeypatch.setattr(burst, "FETCH_CHUNK", 3)
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy='card_pattern = "AB[0-9]{6}"')
    w = bot.window()
    surnames = [f"Fala{letter}" for letter in "abcdefghijk"]
    bot.import_readers([_reader_row(f"AB{i:06d}", surnames[i], f"f{i}@patron.test", w.year)
                        for i in range(11)])
    bot.import_codes([f"WAVE-{i:04d}" for i in range(11)])
    for i in range(11):
        raw, _ = request_mail(f"f{i}@patron.test", "LEGIMI",
                              f"Dzień dobry, proszę o kod.\nNr karty: AB{i:06d}\n"
                              f"Ala {surnames[i]}\n\nTel. 601 234 567")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    left_here = _start_workers_and_watch_chunks(monkeypatch)
    searched_here: list[str] = []
    real_find = reading.find_cards
    monkeypatch.setattr(reading, "find_cards", lambda source, **kw: searched_here.extend(
        re.findall(r"AB[0-9]{6}", source.unquoted)) or real_find(source, **kw))
    assert bot.run_once() == 0
    assert [(r.outcome, r.card_number, r.patron_name) for r in bot.requests()] == [
        ("issued", f"AB{i:06d}", f"Ala {surnames[i]}") for i in range(11)]
    # Only the mails of the first chunk and of a chunk no worker had taken up (see above)
    # are searched here.
    assert sorted(searched_here) == sorted(f"AB{uid - 1:06d}"
                                           for uid in [1, 2, 3] + left_here)
    # Four chunks: the first parsed here, the middle two overlap a fetch, as the first
    # two did before it was stored at once (issue 15).
    assert len(left_here) < 8  # the workers did read the others


def test_a_chunk_the_workers_have_not_started_on_is_parsed_here(monkeypatch):
    # The workers are still starting (or busy): their task is cancelled and the chunk is
    # parsed in place rather than waited for; nothing is lost either way.
    from concurrent.futures import Future

    never_started: Future[object] = Future()
    monkeypatch.setattr(offload, "submit", lambda *_args: never_started)
    raw, _ = request_mail("f1@patron.test", "LEGIMI", "Ala Fala1 0110001")
    ahead = burst.ParsedAhead([(7, datetime.now(UTC), raw)], max_bytes=1 << 20)
    assert ahead.result() == {}
    assert never_started.cancelled()


def test_a_move_failing_on_the_second_connection_is_finished_by_the_next_poll(
        tmp_path, imap_user, smtp_sink, monkeypatch):
    monkeypatch.setattr(burst, "FETCH_CHUNK", 3)
    bot, _raws, _w = _burst_bot(tmp_path, imap_user, smtp_sink, 7)
    real_move = imap.move

    def failing(*args, **kwargs):
        raise ConnectionResetError("connection lost while moving")

    monkeypatch.setattr(imap, "move", failing)
    assert bot.run_once() == 1  # the mailbox reports the error...
    assert len(smtp_sink.messages) == 7  # ...but everything stored was decided and answered
    assert imap_user.list("INBOX")  # some mail is still there, noted as to be moved
    assert any(r.pending_move for r in bot.requests())
    monkeypatch.setattr(imap, "move", real_move)
    assert bot.run_once() == 0
    assert imap_user.list("INBOX") == []
    assert len(smtp_sink.messages) == 7
    assert all(r.pending_move is None for r in bot.requests())


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_burst_is_decided_while_it_is_read_yet_strictly_in_arrival_order(
        tmp_path, imap_user, smtp_sink, monkeypatch, database_url):
    # Chunks of 3 by UID; arrival times (INTERNALDATE) not in UID order: UID 8, in the
    # last chunk, arrived second. After the first chunk is stored only the mail that
    # arrived first may be decided (the poll knows every arrival time of the burst: the
    # earliest still unread is UID 8's); the others wait for the last chunk. One code
    # short: the mail that arrived last is the one refused.
    monkeypatch.setattr(burst, "FETCH_CHUNK", 3)
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], database_url=database_url)
    w = bot.window()
    n = 9
    bot.import_readers([_reader_row(f"012{i:04d}", f"Fala{i}", f"g{i}@patron.test", w.year)
                        for i in range(n)])
    bot.import_codes([f"ORDER-{i:04d}" for i in range(n - 1)])
    arrival = {0: 10, 1: 30, 2: 40, 3: 50, 4: 60, 5: 70, 6: 80, 7: 20, 8: 90}  # by UID - 1
    for i in range(n):
        raw, _ = request_mail(f"g{i}@patron.test", "LEGIMI", f"Ala Fala{i} 012{i:04d}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=arrival[i]))
    sessions = open_database(bot.settings().database_url)
    decided_before_last_chunk: list[int] = []
    real_store = store.store_chunk

    def watched_store(*args, **kwargs):
        mails = args[5]
        if mails[0][0] == 7:  # the last chunk: give the deciding thread its chance first
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with sessions() as s:
                    decided = s.scalars(select(Request.uid).where(
                        Request.state == "decided")).all()
                if decided:
                    break
                time.sleep(0.02)
            decided_before_last_chunk.extend(decided)
        return real_store(*args, **kwargs)

    monkeypatch.setattr(store, "store_chunk", watched_store)
    assert bot.run_once() == 0
    assert decided_before_last_chunk == [1]  # the first arrival, and nothing else yet
    reqs = bot.requests()  # by arrival
    assert [r.uid for r in reqs] == [1, 8, 2, 3, 4, 5, 6, 7, 9]
    assert [r.outcome for r in reqs] == ["issued"] * (n - 1) + ["pool_exhausted"]
    assert [r.code.code for r in reqs[:-1]] == [f"ORDER-{i:04d}" for i in range(n - 1)]
    assert len(smtp_sink.messages) == n


def test_a_burst_is_planned_as_a_small_first_chunk_then_full_ones():
    # One chunk's worth is one chunk; more is a burst whose first chunk is small, so a
    # start stores mail at once (issue 15), and the rest full chunks.
    assert burst.poll_chunks([]) == []
    assert burst.poll_chunks(list(range(1, 201))) == [list(range(1, 201))]
    assert [len(c) for c in burst.poll_chunks(list(range(1, 452)))] == [50, 200, 200, 1]
    assert burst.poll_chunks(list(range(1, 12)), 3) == [[1, 2, 3], [4, 5, 6], [7, 8, 9],
                                                         [10, 11]]


def test_a_bursts_first_chunk_is_stored_before_the_rest_is_fetched(monkeypatch):
    # The order of work of a burst: the first chunk is stored as soon as it is fetched;
    # each later one is stored after the next fetch (its parse overlapping that fetch),
    # the last after all fetches. Without workers every chunk is parsed at storing.
    monkeypatch.setattr(offload, "submit", lambda *_args: None)
    planned = burst.poll_chunks(list(range(1, 12)), 3)
    work: list[tuple[str, int]] = []

    def fetch(n, chunk):
        work.append(("fetch", n))
        return [(uid, datetime.now(UTC), b"") for uid in chunk]

    for chunk, mails, parsed in burst.fetched_ahead(planned, fetch, max_bytes=1000,
                                                    card_pattern=None):
        assert [uid for uid, _d, _r in mails] == chunk
        assert parsed == (None if chunk is planned[0] else {})
        work.append(("store", planned.index(chunk)))
    assert work == [("fetch", 0), ("store", 0), ("fetch", 1), ("fetch", 2), ("store", 1),
                    ("fetch", 3), ("store", 2), ("store", 3)]
