"""The caps on one sender count the mailbox, not the spelling of its address (issue 15):
``collector+15@…`` … ``+19@…``, other letter case and, at gmail.com, dots get no code past
``max_codes_per_address_per_month`` and no reply past ``replies_per_sender_per_day``; each
reply still goes to the exact address the patron wrote from. End to end through real
Dovecot and ``run --once``, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from mailbot.db.migrate import upgrade
from mailbot.db.session import make_engine
from tests.botenv import make_bot, request_mail, valid_reader



def _bot(tmp_path, imap_user, smtp_sink, n, policy, database_url):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=policy,
                   database_url=database_url)
    w = bot.window()
    bot.import_readers([f"08000{i};Ala;Zly{i};z{i}@patron.test;{valid_reader(w.year)}"
                        for i in range(1, n + 1)])
    bot.import_codes([f"CAP-CODE-{i:02d}" for i in range(1, n + 1)])
    return bot, w


def test_tagged_forms_of_one_address_get_no_code_past_the_address_cap(
        tmp_path, imap_user, smtp_sink, database_url):
    # Cap 2: collector@ gets two codes; collector+15@ … +19@ (one in capitals) with five
    # more cards are refused as address_limit, each told so at the address it wrote from.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 7,
                  "max_codes_per_address_per_month = 2\nreplies_per_sender_per_day = 20",
                  database_url)
    senders = ["collector@patron.test", "collector@patron.test",
               *(f"collector+{i}@patron.test" for i in range(15, 19)), "COLLECTOR+19@Patron.test"]
    for i, sender in enumerate(senders, 1):
        raw, _ = request_mail(sender, "LEGIMI", f"Ala Zly{i} 08000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued"] * 2 + ["address_limit"] * 5
    assert len(smtp_sink.messages) == 7
    refusals = smtp_sink.messages[2:]
    assert all(m.message["X-Mailbot-Outcome"] == "address_limit" for m in refusals)
    assert all("CAP-CODE" not in m.message.get_body(("plain",)).get_content()
               for m in refusals)
    assert sorted(m.rcpt_tos[0].lower() for m in refusals) == sorted(
        s.lower() for s in senders[2:])


def test_gmail_dots_and_googlemail_are_one_mailbox_for_the_address_cap(
        tmp_path, imap_user, smtp_sink, database_url):
    # At gmail.com dots are no part of the name: c.ollector@gmail.com and
    # collector+x@googlemail.com are collector@gmail.com, whose one code is its cap.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 3, "max_codes_per_address_per_month = 1",
                  database_url)
    for i, sender in enumerate(["collector@gmail.com", "c.ollector@gmail.com",
                                "collector+x@googlemail.com"], 1):
        raw, _ = request_mail(sender, "LEGIMI", f"Ala Zly{i} 08000{i}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued", "address_limit", "address_limit"]


def test_tagged_forms_get_no_reply_past_the_daily_reply_cap(tmp_path, imap_user, smtp_sink,
                                                           database_url):
    # Cap 3 a day: spammy@, spammy+1@, Spammy+2@ are answered (each at its own address);
    # spammy+3@ and spammy+4@ the same day get no reply at all.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 1, "replies_per_sender_per_day = 3",
                  database_url)
    senders = ["spammy@patron.test", "spammy+1@patron.test", "Spammy+2@patron.test",
               "spammy+3@patron.test", "spammy+4@patron.test"]
    for i, sender in enumerate(senders):
        raw, _ = request_mail(sender, "LEGIMI", "hello")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i + 1))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["no_card"] * 3 + ["rate_limited"] * 2
    assert sorted(m.rcpt_tos[0].lower() for m in smtp_sink.messages) == sorted(
        s.lower() for s in senders[:3])


def test_the_caps_count_across_runs(tmp_path, imap_user, smtp_sink, database_url):
    # The count comes from the database too: a later run's collector+7@ is still refused.
    bot, w = _bot(tmp_path, imap_user, smtp_sink, 2, "max_codes_per_address_per_month = 1",
                  database_url)
    raw, _ = request_mail("collector@patron.test", "LEGIMI", "Ala Zly1 080001")
    imap_user.append(raw, internaldate=w + timedelta(seconds=1))
    assert bot.run_once() == 0
    raw, _ = request_mail("collector+7@patron.test", "LEGIMI", "Ala Zly2 080002")
    imap_user.append(raw, internaldate=w + timedelta(seconds=60))
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued", "address_limit"]


@pytest.mark.parametrize(("address", "key"), [
    ("collector@patron.test", "collector@patron.test"),
    ("Collector+15@Patron.TEST", "collector@patron.test"),
    ("collector+a+b@patron.test", "collector@patron.test"),
    ("+tag@patron.test", "+tag@patron.test"),  # nothing but a tag: the whole name stays
    ("j.o.h.n+x@GoogleMail.com", "john@gmail.com"),
    ("j.o.h.n@outlook.com", "j.o.h.n@outlook.com"),  # dots count elsewhere
    ("anna-tag@patron.test", "anna-tag@patron.test"),  # hyphens are real names' parts
    (None, None),
])
def test_the_address_key(address, key):
    # What two spellings of one mailbox share (and what different mailboxes do not).
    from mailbot.db.models import address_key

    assert address_key(address) == key


def test_the_migration_gives_earlier_rows_their_keys(tmp_path):
    # A database at 0002 with ledger and outbox rows of tagged addresses: after the
    # upgrade, they count as their mailbox.
    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO libraries (id, name) VALUES ('lib', 'L')")
        conn.exec_driver_sql(
            "INSERT INTO code_pools (id, library_id, service, month, source_file, imported_at,"
            " size) VALUES (1, 'lib', 'legimi', '2026-12', 'x.csv', '2026-12-01', 2)")
        for i, email in enumerate(["collector+1@patron.test", "c.o.l@gmail.com"], 1):
            conn.exec_driver_sql(
                "INSERT INTO codes (id, code, pool_id, library_id, service, month) "
                f"VALUES ({i}, 'OLD-CODE-{i}', 1, 'lib', 'legimi', '2026-12')")
            conn.exec_driver_sql(
                "INSERT INTO ledger (code_id, library_id, service, month, card_number, email,"
                f" issued_at, channel) VALUES ({i}, 'lib', 'legimi', '2026-12', 'c{i}',"
                f" '{email}', '2026-12-01', 'email')")
        conn.exec_driver_sql(
            "INSERT INTO outbox (kind, library_id, mail_from, to_address, message_id, outcome,"
            " message, state, created_at, due_at, attempts) VALUES ('reply', 'lib', 'a@b.test',"
            " 'Spammy+9@Patron.test', '<m1@x>', 'no_card', x'00', 'sent', '2026-12-01',"
            " '2026-12-01', 1)")
    upgrade(engine)
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT email_key FROM ledger")).scalars()) == [
            "col@gmail.com", "collector@patron.test"]
        assert conn.execute(sa.text("SELECT to_key FROM outbox")).scalar() == \
            "spammy@patron.test"
    engine.dispose()
