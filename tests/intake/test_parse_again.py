"""Intake keeps its parse of a request for the decide stage of the same process
(parse_cache.RECENT): what decide takes must be exactly the parse of the same bytes."""

from __future__ import annotations

from mailbot.intake import parse_cache
from mailbot.intake.parse import ParsedMail, parse_mail
from mailbot.intake.parse_cache import RecentParses, parse_mail_again, remember_parse
from tests.botenv import request_mail


def _raw(i: int) -> bytes:
    return request_mail(f"p{i}@patron.test", "LEGIMI", f"Ala Kot 01400{i}")[0]


def test_a_kept_parse_is_taken_once_and_only_for_the_same_bytes_and_limit() -> None:
    parse_cache.RECENT.clear()
    raw = _raw(1)
    kept = parse_mail(raw, max_bytes=5000)
    remember_parse(raw, kept, max_bytes=5000)
    assert parse_mail_again(raw, max_bytes=4000) is not kept  # another limit: parsed anew
    assert parse_mail_again(raw + b"\n", max_bytes=5000) is not kept  # other bytes
    assert parse_mail_again(bytes(raw), max_bytes=5000) is kept  # equal bytes, any object
    again = parse_mail_again(raw, max_bytes=5000)  # taken once; then parsed as usual
    assert again is not kept and again == kept


def test_the_oldest_parses_go_first_when_the_limit_is_reached() -> None:
    recent = RecentParses(limit=3)
    raws = [_raw(i) for i in range(5)]
    for raw in raws:
        recent.keep(raw, 100, parse_mail(raw, max_bytes=100))
    assert [recent.take(raw, 100) is not None for raw in raws] == [False, False, True, True,
                                                                   True]


def test_run_once_parses_each_request_once(tmp_path, imap_user, smtp_sink, monkeypatch) -> None:
    from datetime import timedelta

    from tests.botenv import make_bot

    calls: list[int] = []
    real = parse_mail

    def counting(raw: bytes, **kw: object) -> ParsedMail:
        calls.append(len(raw))
        return real(raw, **kw)  # type: ignore[arg-type]

    # Every parse, at intake, in the cache or on a worker, goes through this one name.
    monkeypatch.setattr("mailbot.intake.parse.parse_mail", counting)
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"014000{i};Ala;Poczta{i};s{i}@patron.test;{ok}" for i in (1, 2, 3)])
    bot.import_codes(["ONCE-0001", "ONCE-0002", "ONCE-0003"])
    for i in (1, 2, 3):
        raw, _ = request_mail(f"s{i}@patron.test", "LEGIMI", f"Ala Poczta{i} 014000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    assert len(smtp_sink.wait_for(3)) == 3
    assert len(calls) == 3  # read once at intake, not again when decided


def test_a_workers_parse_carries_the_card_and_name_for_the_pattern_it_was_given() -> None:
    from mailbot.intake.parse import DEFAULT_CARD_PATTERN
    from mailbot.intake.parse_cache import parse_messages
    from mailbot.intake.reading import read_mail

    raw = request_mail("p@patron.test", "LEGIMI", "Proszę o kod.\nNr karty: AB123456\n"
                                                   "Anna Kowalska\n\nTel. 601 234 567")[0]
    [carried] = parse_messages([raw], 1 << 20, r"AB[0-9]{6}")
    plain = parse_mail(raw, max_bytes=1 << 20)
    assert carried == plain and plain.reading is None  # the same mail, read further
    reading = carried.reading
    assert reading == read_mail(plain, r"AB[0-9]{6}")
    assert (reading.cards.card, reading.name) == ("AB123456", "Anna Kowalska")
    assert read_mail(carried, r"AB[0-9]{6}") is reading  # taken as the worker left it
    other = read_mail(carried, DEFAULT_CARD_PATTERN)  # another pattern: read anew
    assert (other.pattern, other.cards.card, other.name) == (DEFAULT_CARD_PATTERN, None, None)
    assert parse_messages([raw], 1 << 20) == [plain] and \
        parse_messages([raw], 1 << 20)[0].reading is None
    # No card of the library's kind: no name is taken from beside a number of another
    # kind (the default pattern would see a card in 1234567 and the name above it).
    other_kind = parse_mail(request_mail("p@patron.test", "LEGIMI",
                                         "Proszę o kod.\nJan Kowalski\n1234567\n")[0])
    assert read_mail(other_kind).name == "Jan Kowalski"
    none = read_mail(other_kind, r"AB[0-9]{6}")
    assert (none.cards.card, none.name) == (None, None)
