"""Upgrading from the previous release (issue 18): a database written by mailbot 0.1.0 is
brought to this version's schema by ``mailbot db upgrade`` with every old row intact, and
then serves: a new request in a real Dovecot mailbox is decided and answered through the
real SMTP test server.

The fixture ``tests/data/release-0.1.0.sqlite`` is the database of mailbot 0.1.0's own
demo (commit d66a310, Alembic revision 0004), so it holds every outcome, issued codes,
the ledger, the outbox and the demo's staff login. It was made with 0.1.0's code, not
this one's::

    mkdir /tmp/wt-rel && git archive d66a310 | tar -x -C /tmp/wt-rel
    cd /tmp/wt-rel      # so that `import mailbot` is 0.1.0's (check mailbot.__file__)
    /work/main/.venv/bin/python -m mailbot demo --no-serve --dir /tmp/rel-demo
    python3 - <<'EOF'
    import sqlite3
    src = sqlite3.connect("file:/tmp/rel-demo/demo.db?mode=ro", uri=True)
    dst = sqlite3.connect("tests/data/release-0.1.0.sqlite")  # run from the checkout
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    dst.execute("VACUUM")
    EOF

(``git worktree add /tmp/wt-rel d66a310`` does as well as the archive.) The demo ran on
2026-12-02, so its month is 2026-12: the test does not depend on today's date, it
imports this month's codes and refreshes one reader before serving. Make the fixture of
the next release the same way from that release's commit.

The fixture stays at the previous release's schema, never "upgraded" to this one's: while
no migration has been added since 0.1.0, HEAD is its revision and the upgrade step has
nothing to do; the first new migration makes it a real upgrade, which these tests then
prove. A new release adds its own fixture (``release-<version>.sqlite``) and keeps the
old ones: each is a database some library still has.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

from mailbot.clock import utcnow
from mailbot.db.migrate import HEAD, head_revision, known_revisions
from tests.botenv import Bot, mailbox_toml, request_mail, valid_reader

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "release-0.1.0.sqlite"
RELEASED_REVISION = "0004"

# What mailbot 0.1.0's demo decided, in arrival order (mailbot/demo.py of d66a310).
DEMO_OUTCOMES = [
    "too_early", "issued", "issued", "pool_exhausted", "debt", "overdue",
    "inactive_account", "data_not_updated", "no_loans_this_year", "blocked",
    "sender_mismatch", "name_mismatch", "unknown_card", "no_card", "ambiguous_card",
    "no_card", "already_received", "rate_limited", "ignored_loop", "not_a_request",
]

# The old rows, by columns 0.1.0 had: an upgrade may add columns, never lose these.
OLD_ROWS = {
    "requests": "SELECT id, mailbox_id, uidvalidity, uid, received_at, message_id, "
                "from_address, card_number, service, month, state, outcome, decided_at "
                "FROM requests ORDER BY id",
    "codes": "SELECT id, code, pool_id, library_id, service, month, request_id, issued_at, "
             "activated_at FROM codes ORDER BY id",
    "ledger": "SELECT id, code_id, library_id, service, month, card_number, email, "
              "request_id, issued_at, channel FROM ledger ORDER BY id",
    "outbox": "SELECT id, kind, request_id, code_id, to_address, message_id, outcome, "
              "state, sent_at FROM outbox ORDER BY id",
    "readers": "SELECT library_id, card_number, first_name, last_name, email FROM readers "
               "ORDER BY library_id, card_number",
    "code_pools": "SELECT id, library_id, service, month, size FROM code_pools ORDER BY id",
    "staff_users": "SELECT name FROM staff_users ORDER BY name",
}

# The demo's library, as 0.1.0's demo configured it; its mailbox is a real IMAP one here.
CONFIG = """timezone = "Europe/Warsaw"
database_url = "sqlite:///{db}"

[smtp]
host = "{smtp.host}"
port = {smtp.port}

[daemon]
reconnect_max = 1.0

[web]
enabled = false

[[libraries]]
id = "demo"
name = "Biblioteka Publiczna Demo"
contact = "tel. 22 000 00 00, wypozyczalnia@biblioteka-demo.example.org"
check_sender = true
check_data_updated = true
check_loans_this_year = true
penalty_months = 3
replies_per_sender_per_day = 3
reminder_days = 0
{mailbox}
"""


def _rows(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {table: conn.execute(sql).fetchall() for table, sql in OLD_ROWS.items()}
    finally:
        conn.close()


def _revision(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    finally:
        conn.close()


def _upgraded(tmp_path: Path, imap_user, smtp_sink, capsys) -> Bot:
    db = tmp_path / "mailbot.db"
    shutil.copyfile(FIXTURE, db)
    config = tmp_path / "mailbot.toml"
    config.write_text(CONFIG.format(db=db, smtp=smtp_sink, mailbox=mailbox_toml(
        "demo", "ebooki@biblioteka-demo.example.org", imap_user)), encoding="utf-8")
    bot = Bot(root=tmp_path, config=config, library="demo")
    capsys.readouterr()
    assert bot.cli("db", "upgrade") == 0
    assert f"schema {RELEASED_REVISION} -> {HEAD}" in capsys.readouterr().out
    return bot


def test_the_fixture_is_the_released_schema_with_every_outcome():
    # The fixture is what 0.1.0 wrote: revision 0004, the demo's 20 decisions; a
    # revision this mailbot's migrations still know how to start from.
    assert _revision(FIXTURE) == RELEASED_REVISION
    assert RELEASED_REVISION in known_revisions()
    rows = _rows(FIXTURE)
    assert [r[11] for r in sorted(rows["requests"], key=lambda r: (r[4], r[3]))] == \
        DEMO_OUTCOMES


def test_db_upgrade_brings_a_release_0_1_0_database_to_head_with_its_rows_intact(
        tmp_path, imap_user, smtp_sink, capsys):
    # `mailbot db upgrade` on 0.1.0's database: revision HEAD, and every old row —
    # requests and outcomes, issued codes with their requests, the ledger, the outbox,
    # readers, pools, the staff login — as it was.
    before = _rows(FIXTURE)
    bot = _upgraded(tmp_path, imap_user, smtp_sink, capsys)
    assert HEAD == head_revision() and HEAD in known_revisions()
    assert _revision(tmp_path / "mailbot.db") == HEAD
    assert _rows(tmp_path / "mailbot.db") == before
    # And what they mean, through this version's models.
    issued = {(r.card_number, r.code.code) for r in bot.requests() if r.code is not None}
    assert issued == {("0001001", "LEG-1201-DEMO"), ("0001002", "EGO-DEMO-0001")}
    assert sorted((entry[5], entry[9]) for entry in before["ledger"]) == \
        [("0001001", "email"), ("0001002", "email"), ("0001009", "desk")]
    assert [r.outcome for r in bot.requests()] == DEMO_OUTCOMES


def test_an_upgraded_release_0_1_0_database_serves_a_new_request(
        tmp_path, imap_user, smtp_sink, capsys):
    # After the upgrade, this month's codes imported and a reader's data refreshed, a
    # request in a real Dovecot mailbox is decided (issued, a code 0.1.0 never gave) and
    # its reply reaches the real SMTP server; the old decisions stay as they were.
    bot = _upgraded(tmp_path, imap_user, smtp_sink, capsys)
    before = _rows(tmp_path / "mailbot.db")
    given = {row[1] for row in before["codes"] if row[7] is not None}
    now = utcnow()
    assert bot.import_codes([f"UPG-{i:04d}" for i in range(1, 4)]) == 0
    # Paweł Dąbrowski (0001010) wrote from another address in 0.1.0's demo
    # (sender_mismatch); now he writes from his own.
    assert bot.import_readers([f"0001010;Paweł;Dąbrowski;pawel.d@example.org;"
                               f"{valid_reader(now.year)}"]) == 0
    raw, mid = request_mail("Paweł Dąbrowski <pawel.d@example.org>", "LEGIMI",
                            "Dzień dobry,\nproszę o kod.\nPaweł Dąbrowski, karta 0001010")
    imap_user.append(raw, internaldate=now - timedelta(seconds=30))
    assert bot.run_once() == 0

    new = [r for r in bot.requests() if r.message_id == mid]
    assert len(new) == 1 and new[0].outcome == "issued"
    code = new[0].code.code
    assert code not in given
    replies = smtp_sink.messages
    assert len(replies) == 1
    reply = replies[0].message
    assert reply["In-Reply-To"] == mid and reply["X-Mailbot-Outcome"] == "issued"
    assert reply["To"] == "pawel.d@example.org"
    assert code in reply.get_body(("plain",)).get_content()
    after = _rows(tmp_path / "mailbot.db")
    assert after["requests"][:len(before["requests"])] == before["requests"]
    assert after["ledger"][:len(before["ledger"])] == before["ledger"]
