"""The requests list's search and channels (issue 19), on SQLite and on PostgreSQL: a card
number by its start, a name whatever its case and Polish letters, an address by a part of
it, typed wildcards taken literally; the codes issued at the desk listed beside the mail."""

from __future__ import annotations

from datetime import timedelta

from mailbot.clock import utcnow
from mailbot.db.session import open_database
from mailbot.desk import desk_issue
from mailbot.web.requests_list import RequestFilter, request_list
from tests.botenv import make_bot, request_mail


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def _found(session, settings, **filters) -> list[str]:  # noqa: ANN001
    rows, total = request_list(session, settings, ["lib"], RequestFilter(**filters))
    assert total == len(rows)
    return [f"desk:{r.desk.card_number}" if r.desk else r.request.from_address
            for r in rows]


def test_search_finds_cards_names_and_addresses_on_both_databases(
        tmp_path, imap_user, smtp_sink, database_url):
    # Two e-mail requests and one desk issue; each search finds what a librarian would
    # expect on SQLite and on PostgreSQL alike.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   database_url=database_url)
    y = bot.window().year
    assert bot.import_readers([
        f"0990001;Alicja;Łada;ala@patron.test;{_ok(y)}",
        f"0990002;Żaneta;Wróbel;zaneta_w@patron.test;{_ok(y)}",
        f"1230003;Jan;Dług;jan@patron.test;{_ok(y)}",
    ]) == 0
    assert bot.import_codes([f"SRCH-{i}" for i in range(5)]) == 0
    for n, (sender, body) in enumerate([("ala@patron.test", "Alicja Łada 0990001"),
                                        ("zaneta_w@patron.test", "Żaneta Wróbel 0990002")]):
        raw, _ = request_mail(sender, "LEGIMI", body)
        imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=n + 1))
    assert bot.run_once() == 0
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    with sessions.begin() as s:
        _, code = desk_issue(s, settings, library_id="lib", card="1230003", name="",
                             service="legimi", now=utcnow())
        assert code is not None
    with sessions() as s:
        # Newest first: the desk's code, then the mail in reverse order of arrival.
        assert _found(s, settings) == ["desk:1230003", "zaneta_w@patron.test",
                                       "ala@patron.test"]
        # Names: any case, with or without Polish letters, first or last name first.
        for q in ("łada", "ŁADA", "lada", "Alicja Łada", "łada alicja"):
            assert _found(s, settings, q=q) == ["ala@patron.test"], q
        for q in ("wróbel", "WROBEL", "żaneta"):
            assert _found(s, settings, q=q) == ["zaneta_w@patron.test"], q
        assert _found(s, settings, q="dług") == ["desk:1230003"]
        assert _found(s, settings, q="DLUG") == ["desk:1230003"]
        # Cards by their start only.
        assert _found(s, settings, q="0990") == ["zaneta_w@patron.test", "ala@patron.test"]
        assert _found(s, settings, q="123") == ["desk:1230003"]
        assert _found(s, settings, q="990001") == []
        assert _found(s, settings, card="09900") == ["zaneta_w@patron.test",
                                                     "ala@patron.test"]
        # Addresses by a part; "_" and "%" are letters, not wildcards.
        assert _found(s, settings, q="PATRON.test") == ["desk:1230003",
                                                        "zaneta_w@patron.test",
                                                        "ala@patron.test"]
        assert _found(s, settings, q="_") == ["zaneta_w@patron.test"]
        assert _found(s, settings, q="a_w@") == ["zaneta_w@patron.test"]
        assert _found(s, settings, q="%") == []
        assert _found(s, settings, address="a%a") == []
        assert _found(s, settings, address="ALA@") == ["ala@patron.test"]
        # Channels and the other filters.
        assert _found(s, settings, channel="desk") == ["desk:1230003"]
        assert _found(s, settings, channel="email") == ["zaneta_w@patron.test",
                                                        "ala@patron.test"]
        assert _found(s, settings, outcome="issued", q="patron") == [
            "desk:1230003", "zaneta_w@patron.test", "ala@patron.test"]
        assert _found(s, settings, outcome="debt") == []
        assert _found(s, settings, month=bot.month, service="legimi", channel="desk") == [
            "desk:1230003"]
        assert _found(s, settings, service="empik_go") == []
        [mailbox_id] = {r.request.mailbox_id for r in request_list(
            s, settings, ["lib"], RequestFilter(channel="email"))[0]}
        assert _found(s, settings, mailbox=str(mailbox_id)) == ["zaneta_w@patron.test",
                                                               "ala@patron.test"]
        # Pages of the merged list.
        rows, total = request_list(s, settings, ["lib"], RequestFilter(page=2), per_page=2)
        assert total == 3 and [r.request.from_address for r in rows] == ["ala@patron.test"]
        # Another library's staff see none of it.
        assert request_list(s, settings, ["elsewhere"], RequestFilter()) == ([], 0)
