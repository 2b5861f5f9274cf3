"""Who is an eligible reader (issue 20), end to end with real Dovecot and SMTP: Targówek's
and Poznań's confirmed accounts, Tarnów's active reader whose renewals do not count."""

from __future__ import annotations

from datetime import timedelta

from tests.botenv import READER_HEADER, make_bot, request_mail, valid_reader
from tests.readers.test_sql import KohaDb, koha  # noqa: F401 - the module's MariaDB fixture


def _body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def _burst(bot, imap_user, mails: list[tuple[str, str]]) -> None:
    """LEGIMI requests (sender, body), a second apart in this order, then one run."""
    w = bot.window()
    for sec, (sender, body) in enumerate(mails, start=1):
        raw, _ = request_mail(sender, "LEGIMI", body)
        imap_user.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bot.run_once() == 0


def test_targowek_refuses_accounts_created_online_and_never_confirmed(
        tmp_path, imap_user, smtp_sink):
    # require_confirmed_account: a confirmed reader gets a code, an unconfirmed one the
    # reply saying to come with an ID, one the file says nothing about is not refused (the
    # library system is the authority); a reader file without the column is refused.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="require_confirmed_account = true")
    w = bot.window()
    ok = valid_reader(w.year)
    path = tmp_path / "czytelnicy.csv"
    path.write_text("\n".join([
        READER_HEADER + ";potwierdzone",
        f"0300001;Anna;Potwierdzona;a@patron.test;{ok};tak",
        f"0300002;Bartosz;Internetowy;b@patron.test;{ok};nie",
        f"0300003;Celina;Nieznana;c@patron.test;{ok};",
    ]) + "\n", encoding="utf-8")
    assert bot.cli("import-readers", str(path), "--library", bot.library) == 0
    assert bot.import_codes(["TGW-0001", "TGW-0002", "TGW-0003"]) == 0
    _burst(bot, imap_user, [("a@patron.test", "Anna Potwierdzona 0300001"),
                            ("b@patron.test", "Bartosz Internetowy 0300002"),
                            ("c@patron.test", "Celina Nieznana 0300003")])
    reqs = bot.requests()
    assert [r.outcome for r in reqs] == ["issued", "unconfirmed_account", "issued"]
    assert [r.code.code if r.code else None for r in reqs] == ["TGW-0001", None, "TGW-0002"]
    assert reqs[1].trail[-1] == {"rule": "unconfirmed_account", "result": "refused",
                                 "note": "unconfirmed_account", "args": {}}
    replies = {m.message["In-Reply-To"]: m.message for m in smtp_sink.messages}
    refused = replies[reqs[1].message_id]
    assert refused["X-Mailbot-Outcome"] == "unconfirmed_account"
    text = " ".join(_body(refused).split())
    assert "nie zostało jeszcze potwierdzone w bibliotece" in text
    assert "z dokumentem tożsamości" in text and "identity document" in text
    assert "TGW-" not in text

    # Without the column every reader would be "not known": the file is refused, exit 2,
    # and the readers on file keep what the last good file said.
    bare = tmp_path / "bez-kolumny.csv"
    bare.write_text(f"{READER_HEADER}\n0300002;Bartosz;Internetowy;b@patron.test;{ok}\n",
                    encoding="utf-8")
    assert bot.cli("import-readers", str(bare), "--library", bot.library) == 2
    raw, _ = request_mail("b@patron.test", "LEGIMI", "Bartosz Internetowy 0300002")
    imap_user.append(raw, internaldate=w + timedelta(seconds=10))
    assert bot.run_once() == 0
    assert bot.requests()[-1].outcome == "unconfirmed_account"


def test_the_same_readers_are_all_eligible_where_the_library_does_not_require_it(
        tmp_path, imap_user, smtp_sink):
    # The column may be in every library's file; only a library that requires confirmed
    # accounts refuses on it (existing configs keep working unchanged).
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    path = tmp_path / "czytelnicy.csv"
    path.write_text(f"{READER_HEADER};potwierdzone\n"
                    f"0310001;Bartosz;Internetowy;b@patron.test;{valid_reader(w.year)};nie\n",
                    encoding="utf-8")
    assert bot.cli("import-readers", str(path), "--library", bot.library) == 0
    assert bot.import_codes(["ANY-0001"]) == 0
    raw, _ = request_mail("b@patron.test", "LEGIMI", "Bartosz Internetowy 0310001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued"]


def test_tarnow_counts_a_checkout_within_three_months_not_a_renewal(
        tmp_path, imap_user, smtp_sink, koha: KohaDb):  # noqa: F811
    # active_loan_months = 3 against Koha itself (the koha preset): a book checked out 3
    # days ago makes an active reader; one checked out 100 days ago and renewed 5 days ago
    # does not (Koha's renewal leaves issuedate alone). Poznań-style confirmation on top:
    # the patron still in the OPAC self-registration category is refused for that.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=f"""
active_loan_months = 3
require_confirmed_account = true
reader_source = "sql"
[libraries.sql]
url = "{koha.ro_url}"
query = "koha"
timeout = 5.0
unconfirmed_categories = ["SELFREG"]
""")
    assert bot.import_codes(["TAR-0001", "TAR-0002"]) == 0
    _burst(bot, imap_user, [("agnieszka.wisniewska@example.pl", "Agnieszka Wiśniewska 0012345"),
                            ("maria.konopnicka@example.pl", "Maria Konopnicka 0134567"),
                            ("boleslaw.prus@example.pl", "Bolesław Prus 0145678")])
    reqs = bot.requests()
    assert [r.outcome for r in reqs] == ["issued", "no_loans_this_year", "unconfirmed_account"]
    renewed = reqs[1].trail[-1]
    assert renewed["note"] == "no_loans_since"
    last_loan = (koha.now - timedelta(days=100)).date().isoformat()
    assert renewed["args"]["last_loan_on"] == last_loan  # the checkout, not the renewal
    # The self-registered patron is refused for the account before the loans are asked.
    assert reqs[2].trail[-1]["rule"] == "unconfirmed_account"
    assert [r.code.code for r in reqs if r.code] == ["TAR-0001"]
