"""Library policies end to end (issue 3): eligibility test mails, per-service months, send
windows, activation reports and penalties, and a consortium of libraries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from mailbot.clock import add_months, month_key, utcnow
from mailbot.db.models import Code, CodePool, LedgerEntry, Outbox
from mailbot.db.session import open_database
from tests.botenv import WAW, mailbox_toml, make_bot, request_mail


def _ok(year: int) -> str:
    return f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"


def _body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def test_a_test_mail_gets_a_verdict_issues_nothing_and_counts_for_nothing(
        tmp_path, imap_user, smtp_sink):
    # TEST LEGIMI from an eligible patron: "eligible", no code; one with debt: the reason
    # and what to do; a test sent before the window: when it opens. Then the real request
    # of the first patron still gets a code.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="eligibility_test = true")
    w = bot.window()
    bot.import_readers([f"0200001;Ala;Testowa;t1@patron.test;{_ok(w.year)}",
                        f"0200002;Ola;Dłużna;t2@patron.test;{w.year + 1}-12-31;5,00;0;"
                        f"{w.year}-01-15;{w.year}-02-01"])
    bot.import_codes(["TEST-CODE-0001"])
    for sec, sender, subject, body in [
        (-3600, "t1@patron.test", "TEST LEGIMI", "Ala Testowa 0200001"),
        (1, "t1@patron.test", "Test Legimi", "Ala Testowa 0200001"),
        (2, "t2@patron.test", "TEST LEGIMI", "Ola Dłużna 0200002"),
        (3, "t1@patron.test", "LEGIMI", "Ala Testowa 0200001"),
    ]:
        raw, _ = request_mail(sender, subject, body)
        imap_user.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bot.run_once() == 0
    reqs = bot.requests()
    assert [(r.kind, r.outcome) for r in reqs] == [
        ("test", "eligibility_test"), ("test", "eligibility_test"),
        ("test", "eligibility_test"), ("request", "issued")]
    assert [r.trail[-1]["result"] for r in reqs[:3]] == ["eligible", "eligible", "debt"]
    replies = {m.message["In-Reply-To"]: m.message for m in smtp_sink.messages}
    assert len(replies) == 4
    early, ok, debt, issued = (replies[r.message_id] for r in reqs)
    assert "od " in _body(early) and "godz." in _body(early)  # says when the window opens
    assert "spełnia Pan/Pani dziś wszystkie warunki" in _body(ok)
    assert "5,00 zł" in _body(debt)
    for m in (early, ok, debt):
        assert "TEST-CODE-0001" not in _body(m)
        assert m["X-Mailbot-Outcome"] == "eligibility_test"
    assert "TEST-CODE-0001" in _body(issued)


def test_test_mails_are_left_for_staff_where_the_library_offers_no_test(
        tmp_path, imap_user, smtp_sink):
    # Without eligibility_test, "TEST LEGIMI" is not the bot's mail.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    raw, _ = request_mail("x@patron.test", "TEST LEGIMI", "Ala 0200001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["not_a_request"]
    assert smtp_sink.messages == []


def test_one_code_a_month_across_services_or_per_service(tmp_path, imap_user_factory,
                                                         smtp_sink):
    # "across": Legimi then Empik Go → already_received; "per_service": both issued.
    for policy, second in (("across", "already_received"), ("per_service", "issued")):
        user = imap_user_factory()
        smtp_sink.clear()
        (tmp_path / policy).mkdir()
        bot = make_bot(tmp_path / policy, smtp=smtp_sink, mailboxes=[user],
                       policy=f'one_code_per_month = "{policy}"')
        w = bot.window()
        bot.import_readers([f"0210001;Ala;Dwa;d@patron.test;{_ok(w.year)}"])
        assert bot.import_codes([f"L-{policy.upper().replace('_', '')}-01"]) == 0
        assert bot.import_codes([f"E-{policy.upper().replace('_', '')}-01"], service="empik_go") == 0
        for sec, subject in ((1, "LEGIMI"), (2, "EMPIK GO"), (3, "EMPIK GO")):
            raw, _ = request_mail("d@patron.test", subject, "Ala Dwa 0210001")
            user.append(raw, internaldate=w + timedelta(seconds=sec))
        assert bot.run_once() == 0
        assert [r.outcome for r in bot.requests()] == ["issued", second, "already_received"]


def test_a_reply_outside_the_send_window_waits_but_the_code_is_already_allocated(
        tmp_path, imap_user, smtp_sink, capsys):
    # The send window excludes now: the decision (and the code) is made on arrival, the
    # reply waits in the outbox, due at the window's next opening.
    now = utcnow().astimezone(WAW)
    h = now.hour
    window = f"{h + 2:02d}:00-{h + 3:02d}:00" if h <= 20 else "01:00-02:00"
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy=f'send_window = "{window}"')
    w = bot.window()
    bot.import_readers([f"0220001;Ala;Okno;o@patron.test;{_ok(w.year)}"])
    bot.import_codes(["WIN-0001"])
    raw, _ = request_mail("o@patron.test", "LEGIMI", "Ala Okno 0220001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued"]
    assert smtp_sink.messages == []
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        [row] = s.scalars(select(Outbox)).all()
    assert row.state == "pending" and row.due_at > utcnow()
    assert row.due_at.astimezone(WAW).strftime("%H:%M") == window[:5]
    capsys.readouterr()
    bot.cli("status")
    assert "1 pending" in capsys.readouterr().out


def _seed_last_month(bot, cards_codes: list[tuple[str, str]]) -> str:
    """Codes issued last month (as if before this run), for penalty tests."""
    sessions = open_database(bot.settings().database_url)
    now = utcnow()
    y, m = add_months(*[int(x) for x in bot.month.split("-")], -1)
    prev = month_key(y, m)
    with sessions.begin() as s:
        pool = CodePool(library_id="lib", service="legimi", month=prev, source_file="seed",
                        imported_at=now, size=len(cards_codes))
        s.add(pool)
        s.flush()
        for card, code in cards_codes:
            c = Code(code=code, pool_id=pool.id, library_id="lib", service="legimi",
                     month=prev, issued_at=now - timedelta(days=40))
            s.add(c)
            s.flush()
            s.add(LedgerEntry(code_id=c.id, library_id="lib", service="legimi", month=prev,
                              card_number=card, email=None, issued_at=c.issued_at,
                              channel="desk"))
    return prev


def test_an_unactivated_code_blocks_only_once_the_activation_report_is_imported(
        tmp_path, imap_user, smtp_sink, capsys):
    # Last month A activated, B did not. Before the report: both get codes... after the
    # report (CSV from the panel): B is blocked for 3 months and told until when.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy="penalty_months = 3")
    w = bot.window()
    bot.import_readers([f"0230001;Ala;Aktywna;a@patron.test;{_ok(w.year)}",
                        f"0230002;Bogdan;Bierny;b@patron.test;{_ok(w.year)}",
                        f"0230003;Celina;Czekająca;c@patron.test;{_ok(w.year)}"])
    bot.import_codes(["NOW-0001", "NOW-0002", "NOW-0003"])
    _seed_last_month(bot, [("0230001", "PREV-AAAA-0001"), ("0230002", "PREV-BBBB-0002"),
                           ("0230003", "PREV-CCCC-0003")])
    raw, _ = request_mail("c@patron.test", "LEGIMI", "Celina Czekająca 0230003")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued"]  # no report yet: no penalty

    report = tmp_path / "aktywacje.csv"
    report.write_text("Kod;Data aktywacji\nPREV-AAAA-0001;03.10.2026\nPREV-BBBB-0002;\n"
                      "PREV-CCCC-0003;\nOTHER-LIB-9999;2026-10-01\n", encoding="utf-8")
    capsys.readouterr()
    assert bot.cli("import-activations", str(report), "--library", "lib") == 0
    assert "1 activated, 2 not activated, 1 unknown" in capsys.readouterr().out
    for i, (sender, body) in enumerate([("a@patron.test", "Ala Aktywna 0230001"),
                                        ("b@patron.test", "Bogdan Bierny 0230002")]):
        raw, _ = request_mail(sender, "LEGIMI", body)
        imap_user.append(raw, internaldate=w + timedelta(seconds=10 + i))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued", "issued", "blocked"]
    blocked = next(m.message for m in smtp_sink.messages
                   if m.message["X-Mailbot-Outcome"] == "blocked")
    assert "3 miesi" in _body(blocked) and "NOW-000" not in _body(blocked)


def test_a_broken_activation_report_changes_nothing(tmp_path, capsys):
    # A report with a bad date: exit 2, row and column named, no code marked, no month recorded.
    from types import SimpleNamespace

    bot = make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1), mailboxes=[])
    bot.import_codes(["ACT-000001", "ACT-000002"])
    report = tmp_path / "bad.csv"
    report.write_text("kod,data aktywacji\nACT-000001,2026-11-02\nACT-000002,wczoraj\n")
    assert bot.cli("import-activations", str(report), "--library", "lib") == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "data aktywacji" in err
    sessions = open_database(bot.settings().database_url)
    with sessions() as s:
        assert all(c.activated_at is None for c in s.scalars(select(Code)))


def test_a_consortium_of_three_libraries_with_two_mailboxes_each(tmp_path, imap_user_factory,
                                                                 smtp_sink):
    # Three libraries, two branch mailboxes each, one shared install: each library has its
    # own readers (the same card number is a different person), its own pool and its own
    # arrival order across its two mailboxes; replies come from the branch written to.
    users = {lib: (imap_user_factory(), imap_user_factory()) for lib in ("waw", "krk", "gda")}
    mb = "".join(mailbox_toml(lib, f"ebooki-{lib}-{i}@{lib}.test", u)
                 for lib, pair in users.items() for i, u in enumerate(pair))
    libs = "".join(f'\n[[libraries]]\nid = "{lib}"\nname = "Biblioteka {lib.upper()}"\n'
                   f'{extra}\n'
                   for lib, extra in (("waw", ""), ("krk", "window_time = \"00:00\""),
                                      ("gda", "check_sender = true")))
    config = tmp_path / "mailbot.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/c.db"\n[smtp]\nhost = '
                      f'"{smtp_sink.host}"\nport = {smtp_sink.port}\n{libs}{mb}')
    from tests.botenv import Bot

    bots = {lib: Bot(root=tmp_path, config=config, library=lib) for lib in users}
    w = bots["waw"].window()
    for lib, bot in bots.items():
        assert bot.import_readers([
            f"0000001;Jan;{lib.capitalize()}ski;jan@{lib}.patron;{_ok(w.year)}",
            f"0000002;Ewa;{lib.capitalize()}ska;ewa@{lib}.patron;{_ok(w.year)}",
            f"0000003;Olek;{lib.capitalize()}owy;olek@{lib}.patron;{_ok(w.year)}"]) == 0
        assert bot.import_codes([f"{lib.upper()}-CODE-01", f"{lib.upper()}-CODE-02"]) == 0
    # In every library: Olek writes first (branch 1), then Ewa (branch 0), then Jan
    # (branch 1) — UIDs per mailbox run the other way round.
    for lib, (b0, b1) in users.items():
        for sec, who, card, box in ((30, "Jan", "0000001", b1), (20, "Ewa", "0000002", b0),
                                    (10, "Olek", "0000003", b1)):
            surname = {"Jan": "ski", "Ewa": "ska", "Olek": "owy"}[who]
            raw, _ = request_mail(f"{who.lower()}@{lib}.patron", "LEGIMI",
                                  f"{who} {lib.capitalize()}{surname} {card}")
            box.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bots["waw"].run_once() == 0
    sessions = open_database(bots["waw"].settings().database_url)
    from mailbot.db.models import Request

    with sessions() as s:
        rows = s.scalars(select(Request).order_by(Request.library_id,
                                                  Request.received_at)).all()
        got = {(r.library_id, r.card_number): r.outcome for r in rows}
        codes = {(c.library_id, c.code): c.request_id is not None for c in s.scalars(select(Code))}
    for lib in users:
        assert got[(lib, "0000003")] == "issued"
        assert got[(lib, "0000002")] == "issued"
        assert got[(lib, "0000001")] == "pool_exhausted"
        assert codes[(lib, f"{lib.upper()}-CODE-01")] and codes[(lib, f"{lib.upper()}-CODE-02")]
    # Each patron's reply comes from the branch they wrote to, with their own library's code.
    for m in smtp_sink.messages:
        to = m.message["To"]
        lib = to.split("@")[1].split(".")[0]
        assert m.message["From"].endswith(f"@{lib}.test>")
        branch = 0 if to.startswith("ewa") else 1
        assert f"ebooki-{lib}-{branch}@" in m.message["From"]
        for other in users:
            if other != lib:
                assert f"{other.upper()}-CODE" not in m.raw.decode("utf-8", "replace")


def test_a_code_the_platform_reports_activated_is_never_handed_out(tmp_path, imap_user,
                                                                    smtp_sink, capsys):
    # A code of this month shows as activated in the panel (given out at the desk by
    # hand): the bot skips it and issues the next one.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    bot.import_readers([f"0240001;Ala;Pierwsza;p@patron.test;{_ok(w.year)}"])
    bot.import_codes(["DESK-USED-01", "FREE-CODE-02"])
    report = tmp_path / "akt.csv"
    report.write_text("kod;status\ndesk-used-01;aktywny\n")  # the panel's own letter case
    assert bot.cli("import-activations", str(report), "--library", "lib") == 0
    assert "no month in it has ended yet" in capsys.readouterr().out
    raw, _ = request_mail("p@patron.test", "LEGIMI", "Ala Pierwsza 0240001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.code.code for r in bot.requests()] == ["FREE-CODE-02"]


def test_test_mails_do_not_use_up_the_daily_reply_cap(tmp_path, imap_user, smtp_sink):
    # Cap 2 a day: two TEST mails, then the real request still gets its code.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="eligibility_test = true\nreplies_per_sender_per_day = 2")
    w = bot.window()
    bot.import_readers([f"0250001;Ala;Limit;l@patron.test;{_ok(w.year)}"])
    bot.import_codes(["CAP-CODE-01"])
    for sec, subject in ((1, "TEST LEGIMI"), (2, "TEST LEGIMI"), (3, "TEST LEGIMI"),
                         (4, "LEGIMI")):
        raw, _ = request_mail("l@patron.test", subject, "Ala Limit 0250001")
        imap_user.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == [
        "eligibility_test", "eligibility_test", "rate_limited", "issued"]
