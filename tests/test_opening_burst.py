"""A month's opening burst, end to end: real Dovecot in, real aiosmtpd out (SPEC 2–4)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.botenv import WAW, make_bot, request_mail

STRICT = """check_sender = true
check_data_updated = true
check_loans_this_year = true
replies_per_sender_per_day = 3
"""


def _readers(year: int) -> list[str]:
    ok = f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"
    return [
        f"0010001;Anna;Kowalska;anna@patron.test;{ok}",
        f"0010002;Piotr;Nowak;piotr@patron.test;{ok}",
        f"0010003;Zofia;Wiśniewska;zofia@patron.test;{ok}",
        f"0010004;Jan;Wójcik;jan@patron.test;{year + 1}-12-31;12,50;0;{year}-01-15;{year}-02-01",
        f"0010005;Maria;Kamińska;maria@patron.test;{year + 1}-12-31;0;2;{year}-01-15;{year}-02-01",
        f"0010006;Tomasz;Lewandowski;tomasz@patron.test;{year - 1}-12-31;0;0;{year}-01-15;"
        f"{year}-02-01",
        f"0010007;Ewa;Zielińska;ewa@patron.test;{year + 1}-12-31;0;0;{year - 1}-12-01;"
        f"{year}-02-01",
        f"0010008;Karol;Szymański;karol@patron.test;{year + 1}-12-31;0;0;{year}-01-15;"
        f"{year - 1}-12-01",
        f"0010009;Paweł;Dąbrowski;pawel@patron.test;{ok}",
        f"0010010;Kasia;Kozłowska;kasia@patron.test;{ok}",
        f"0010011;Michał;Jankowski;michal@patron.test;{ok}",
    ]


def test_opening_burst_every_outcome_is_right_threaded_and_never_leaks_a_code(
        tmp_path, imap_user, smtp_sink, database_url):
    # Every outcome the local reader table supports, in one burst: right outcome, right
    # recipient, threaded, headed, and no refusal carries a code (SQLite and PostgreSQL).
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=STRICT,
                   database_url=database_url)
    w = bot.window()
    assert bot.import_readers(_readers(w.year)) == 0
    codes = ["LEG-AAAA-0001", "LEG-AAAA-0002"]
    assert bot.import_codes(codes) == 0
    assert bot.import_codes(["EGO-BBBB-0001"], service="empik_go") == 0

    plan = [  # (seconds after the window opens, sender, subject, body, expected outcome)
        (-10, "anna@patron.test", "LEGIMI", "Anna Kowalska 0010001", "too_early"),
        (1, "Anna Kowalska <anna@patron.test>", "LEGIMI", "Anna Kowalska\nkarta 0010001",
         "issued"),
        (2, "piotr@patron.test", "=?UTF-8?Q?Empik_Go?=",
         "<p>Dzień dobry,<br>Piotr Nowak, nr karty <b>0010002</b></p>", "issued"),
        (3, "zofia@patron.test", "empik go", "Zofia Wiśniewska 0010003", "pool_exhausted"),
        (4, "jan@patron.test", "Re: LEGIMI", "Jan Wójcik 0010004", "debt"),
        (5, "maria@patron.test", "LEGIMI", "Maria Kamińska 0010005", "overdue"),
        (6, "tomasz@patron.test", "LEGIMI", "Tomasz Lewandowski 0010006", "inactive_account"),
        (7, "ewa@patron.test", "LEGIMI", "Ewa Zielińska 0010007", "data_not_updated"),
        (8, "karol@patron.test", "LEGIMI", "Karol Szymański 0010008", "no_loans_this_year"),
        (9, "someone@else.test", "LEGIMI", "Paweł Dąbrowski 0010009", "sender_mismatch"),
        (10, "kasia@patron.test", "LEGIMI", "Katarzyna Nowacka 0010010", "name_mismatch"),
        (11, "x@else.test", "LEGIMI", "Jan Nieznany 0099999", "unknown_card"),
        (12, "michal@patron.test", "LEGIMI", "Michał Jankowski, proszę o kod", "no_card"),
        (13, "michal@patron.test", "LEGIMI", "Michał Jankowski\n0010011 lub 0010012",
         "ambiguous_card"),
        (14, "anna@patron.test", "Fwd: Legimi", "Anna Kowalska 0010001", "already_received"),
        (15, "michal@patron.test", "LEGIMI", "Michał Jankowski", "no_card"),
        (16, "michal@patron.test", "LEGIMI", "Michał Jankowski 0010011", "rate_limited"),
        (17, "mailer-daemon@patron.test", "Undelivered Mail Returned to Sender",
         "LEGIMI 0010001", "ignored_loop"),
        (18, "czytelnik@patron.test", "Godziny otwarcia", "Kiedy jesteście otwarci?",
         "not_a_request"),
    ]
    sent_ids = {}
    for offset, sender, subject, body, expected in plan:
        html = body.startswith("<p>")
        raw, mid = request_mail(sender, subject, body, html=html,
                                date=w + timedelta(seconds=offset))
        imap_user.append(raw, internaldate=w + timedelta(seconds=offset))
        sent_ids[mid] = (sender, expected)

    assert bot.run_once() == 0

    outcomes = [(r.from_address, r.outcome) for r in bot.requests()]
    assert [o for _, o in outcomes] == [p[4] for p in plan]

    replies = smtp_sink.messages
    answered = {mid: exp for mid, (_s, exp) in sent_ids.items()
                if exp not in ("ignored_loop", "not_a_request", "rate_limited")}
    assert len(replies) == len(answered)
    by_parent = {m.message["In-Reply-To"]: m for m in replies}
    assert set(by_parent) == set(answered)
    issued_codes = set()
    for mid, expected in answered.items():
        reply = by_parent[mid]
        sender = sent_ids[mid][0]
        addr = sender.split("<")[-1].rstrip(">")
        msg = reply.message
        assert reply.rcpt_tos == (addr,) or list(reply.rcpt_tos) == [addr]
        assert msg["To"] == addr
        assert msg["X-Mailbot-Outcome"] == expected
        assert msg["Auto-Submitted"] == "auto-replied"
        assert mid in msg["References"]
        assert msg["Subject"].lower().startswith(("re:", "fwd:")) or \
            msg["Subject"].startswith("Re:")
        assert msg["Message-ID"].startswith("<mailbot.")
        assert msg.is_multipart()
        types = [p.get_content_type() for p in msg.iter_parts()]
        assert types == ["text/plain", "text/html"]
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "Dzień dobry" in text and "Biblioteka Testowa" in text
        found = {c for c in codes + ["EGO-BBBB-0001"] if c in text or c in html}
        if expected == "issued":
            assert len(found) == 1
            issued_codes |= found
        elif expected == "already_received":
            assert found == {"LEG-AAAA-0001"}  # repeated to the address it went to
        else:
            assert not found, f"{expected} reply leaks a code"
    assert issued_codes == {"LEG-AAAA-0001", "EGO-BBBB-0001"}

    # Mail has left the inbox: requests to the processed folder, the rest for staff.
    assert imap_user.list("INBOX") == []
    manual = imap_user.list("mailbot/manual")
    assert len(manual) == 1 and b"Godziny otwarcia" in manual[0].raw
    assert "\\Seen" not in manual[0].flags  # untouched for staff
    assert len(imap_user.list("mailbot/processed")) == len(plan) - 1


def test_arrival_order_beats_uid_order_across_two_mailboxes(tmp_path, imap_user_factory,
                                                             smtp_sink, database_url):
    # UIDs run opposite to INTERNALDATE and the mail is split over two branch mailboxes:
    # the earliest arrivals get the last codes.
    a, b = imap_user_factory(), imap_user_factory()
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[a, b], database_url=database_url)
    w = bot.window()
    year = w.year
    ok = f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"
    bot.import_readers([f"00200{i:02d};Imie;Nazwisko{i};p{i}@patron.test;{ok}"
                        for i in range(1, 7)])
    bot.import_codes(["ORD-0001", "ORD-0002", "ORD-0003"])
    # Appended latest-first, so UID order is the reverse of arrival order.
    arrivals = {i: w + timedelta(seconds=10 * i) for i in range(1, 7)}
    for i in sorted(arrivals, reverse=True):
        raw, _ = request_mail(f"p{i}@patron.test", "LEGIMI", f"Nazwisko{i} 00200{i:02d}")
        (a if i % 2 else b).append(raw, internaldate=arrivals[i])
    assert bot.run_once() == 0
    got = {r.card_number: r.outcome for r in bot.requests()}
    assert got == {"0020001": "issued", "0020002": "issued", "0020003": "issued",
                   "0020004": "pool_exhausted", "0020005": "pool_exhausted",
                   "0020006": "pool_exhausted"}
    # And the codes went out in arrival order.
    reqs = bot.requests()
    assert [r.code.code for r in reqs if r.code] == ["ORD-0001", "ORD-0002", "ORD-0003"]


def test_a_mail_received_at_235950_on_the_last_day_is_too_early_whatever_the_machine_tz(
        tmp_path, imap_user, smtp_sink, monkeypatch):
    # INTERNALDATE 23:59:50 Warsaw on the last day → too_early; 00:00:00 on the 1st is in;
    # a Date header of 23:59:50 on a mail received after midnight → too_early; TZ is ignored.
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
        w = bot.window()
        year = w.year
        ok = f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"
        bot.import_readers([f"003000{i};Ala;Tester{i};t{i}@patron.test;{ok}" for i in range(1, 4)])
        bot.import_codes(["TZ-0001", "TZ-0002", "TZ-0003"])
        late = w - timedelta(seconds=10)
        assert late.astimezone(WAW).strftime("%H:%M:%S") == "23:59:50"
        raw, _ = request_mail("t1@patron.test", "LEGIMI", "Tester1 0030001", date=late)
        imap_user.append(raw, internaldate=late)
        raw, _ = request_mail("t2@patron.test", "LEGIMI", "Tester2 0030002", date=w)
        imap_user.append(raw, internaldate=w)
        raw, _ = request_mail("t3@patron.test", "LEGIMI", "Tester3 0030003", date=late)
        imap_user.append(raw, internaldate=w + timedelta(seconds=5))
        assert bot.run_once() == 0
        got = {r.card_number: r.outcome for r in bot.requests()}
        assert got == {"0030001": "too_early", "0030002": "issued", "0030003": "too_early"}
        early_reply = next(m for m in smtp_sink.messages
                           if m.message["X-Mailbot-Outcome"] == "too_early")
        assert "TZ-000" not in early_reply.raw.decode("ascii", "replace")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_second_run_over_the_same_mailbox_sends_nothing_more(tmp_path, imap_user, smtp_sink):
    # run --once twice, and even with the mail copied back into INBOX: one reply each.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    year = w.year
    ok = f"{year + 1}-12-31;0;0;{year}-01-15;{year}-02-01"
    bot.import_readers([f"004000{i};Ala;Powt{i};r{i}@patron.test;{ok}" for i in range(1, 4)])
    bot.import_codes(["RE-0001", "RE-0002", "RE-0003"])
    raws = []
    for i in range(1, 4):
        raw, _ = request_mail(f"r{i}@patron.test", "LEGIMI", f"Powt{i} 004000{i}")
        raws.append(raw)
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 3
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 3
    # The same mail delivered again (same Message-ID) is not a new request.
    imap_user.append(raws[0], internaldate=w + timedelta(seconds=30))
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 3
    assert len(bot.requests()) == 3
    assert imap_user.list("INBOX") == []


def test_mail_is_left_flagged_when_no_processed_folder_is_configured(tmp_path, imap_user_factory,
                                                                     smtp_sink):
    # processed_folder = "" keeps handled mail in INBOX, flagged \\Seen, never read twice.
    user = imap_user_factory()
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[user])
    bot.config.write_text(bot.config.read_text().replace(
        'type = "imap"', 'type = "imap"\nprocessed_folder = ""'))
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"0050001;Ala;Flaga;f@patron.test;{ok}"])
    bot.import_codes(["FL-0001"])
    raw, _ = request_mail("f@patron.test", "LEGIMI", "Ala Flaga 0050001")
    user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0 and bot.run_once() == 0
    inbox = user.list("INBOX")
    assert len(inbox) == 1 and "\\Seen" in inbox[0].flags
    assert len(smtp_sink.messages) == 1


@pytest.mark.parametrize("headers", [
    {"Auto-Submitted": "auto-replied"},
    {"Precedence": "bulk"},
    {"Precedence": "list"},
    {"List-Id": "<czytelnicy.lists.test>"},
    {"Return-Path": "<>"},
])
def test_auto_generated_mail_is_never_answered(tmp_path, imap_user, smtp_sink, headers):
    # A request-looking mail with a loop header gets no reply and no code.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"0060001;Ala;Petla;loop@patron.test;{ok}"])
    bot.import_codes(["LOOP-0001"])
    raw, _ = request_mail("loop@patron.test", "LEGIMI", "Ala Petla 0060001", headers=headers)
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["ignored_loop"]
    assert smtp_sink.messages == []


def test_our_own_reply_coming_back_is_ignored(tmp_path, imap_user, smtp_sink):
    # A reply of ours that lands in the mailbox (e.g. a patron's Bcc) is not answered.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"0070001;Ala;Echo;echo@patron.test;{ok}"])
    bot.import_codes(["ECHO-0001"])
    raw, _ = request_mail("echo@patron.test", "LEGIMI", "Ala Echo 0070001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    ours = smtp_sink.messages[0].raw
    imap_user.append(ours, internaldate=w + timedelta(seconds=5))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued", "ignored_loop"]
    assert len(smtp_sink.messages) == 1


def test_codes_and_passwords_never_appear_in_logs(tmp_path, imap_user, smtp_sink, caplog):
    # Even at DEBUG, nothing mailbot or its client libraries log holds a code or a password.
    import logging

    caplog.set_level(logging.DEBUG)
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"015000{i};Ala;Log{i};l{i}@patron.test;{ok}" for i in (1, 2)])
    bot.import_codes(["SECRET-CODE-0001", "SECRET-CODE-0002"])
    for i in (1, 2):
        raw, _ = request_mail(f"l{i}@patron.test", "LEGIMI", f"Ala Log{i} 015000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    raw, _ = request_mail("l1@patron.test", "LEGIMI", "Ala Log1 0150001 again")
    imap_user.append(raw, internaldate=w + timedelta(seconds=5))
    assert bot.run_once() == 0
    ours = [r for r in caplog.records
            if r.name.split(".")[0] in ("mailbot", "imapclient", "aiosmtplib", "sqlalchemy")]
    assert any(r.name.startswith("mailbot.decide") for r in ours)
    text = "\n".join(r.getMessage() for r in ours)
    assert "SECRET-CODE" not in text
    assert imap_user.password not in text


@pytest.mark.parametrize("sender", [None, "Anna Kowalska", "undisclosed-recipients:;",
                                    "x" * 400 + "@patron.test"])
def test_a_request_without_a_usable_sender_goes_to_staff_and_uses_no_code(
        tmp_path, imap_user, smtp_sink, sender):
    # No From, a From without an address or an absurdly long one: nobody to answer, so no
    # code is taken; the mail waits in the manual folder, and the next request is served.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"0160001;Ala;Bezadresu;a@patron.test;{ok}",
                        f"0160002;Ola;Zadresem;o@patron.test;{ok}"])
    bot.import_codes(["NOFROM-0001"])
    raw, _ = request_mail("placeholder@patron.test", "LEGIMI", "Ala Bezadresu 0160001")
    line = b"From: placeholder@patron.test\n"
    raw = raw.replace(line, b"" if sender is None else f"From: {sender}\n".encode())
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    raw, _ = request_mail("o@patron.test", "LEGIMI", "Ola Zadresem 0160002")
    imap_user.append(raw, internaldate=w + timedelta(seconds=2))
    assert bot.run_once() == 0
    assert [(r.state, r.outcome) for r in bot.requests()] == [
        ("manual", "not_a_request"), ("decided", "issued")]
    assert [m.rcpt_tos[0] for m in smtp_sink.messages] == ["o@patron.test"]
    assert len(imap_user.list("mailbot/manual")) == 1
