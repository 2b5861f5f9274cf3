"""Quotas within a pool (issue 20), end to end with real Dovecot and SMTP: WBP Poznań gives
half the month's codes online and half at the desk; Izabelin keeps a few codes for
first-time patrons. Within each part requests are served in arrival order."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailbot.clock import add_months, month_key, utcnow
from mailbot.db.models import Code, CodePool, LedgerEntry, Request
from mailbot.db.session import open_database, sync_config
from mailbot.decide import sizes
from mailbot.desk import desk_issue
from mailbot.intake.poll import poll_all
from mailbot.web.actions import ActionRefused, override
from mailbot.web.queries import queue_snapshot
from mailbot.web.app import create_app
from tests.botenv import make_bot, request_mail, valid_reader
from tests.databases import fresh_postgres

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.web.webenv import PASSWORD, csrf_of, login  # noqa: E402

POZNAN = """
[libraries.quotas]
desk_share = 0.5
"""
# The same library once its release time has passed (day 1, 00:01: already past whenever
# the test runs in the month's window, which opens on the 1st at 00:00).
POZNAN_RELEASED = POZNAN + """release_day = 1
release_time = "00:01"
"""

IZABELIN = """
[libraries.quotas]
first_time_codes = 2
"""


def _mail(imap_user, when, sender: str, body: str) -> None:
    raw, _ = request_mail(sender, "LEGIMI", body)
    imap_user.append(raw, internaldate=when)


def _reply_to(smtp_sink, request):
    [msg] = [m.message for m in smtp_sink.messages
             if m.message["In-Reply-To"] == request.message_id]
    return msg


def _plain(msg) -> str:
    return " ".join(msg.get_body(("plain",)).get_content().split())


def _trail_note(request) -> tuple[str, str | None]:
    step = request.trail[-1]
    return step["note"], step.get("args", {}).get("variant")


def test_poznan_half_online_half_at_the_desk_until_the_release(tmp_path, imap_user,
                                                                 smtp_sink):
    # 6 codes, half for the desk: a burst of 5 e-mails takes 3 (in arrival order), the
    # other 2 are pool_exhausted with a note that the e-mail part ran out; the desk still
    # issues from its own half, also with e-mails waiting; once the release time passed,
    # e-mail gets what the desk left.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=POZNAN)
    w = bot.window()
    assert bot.import_readers([f"030000{i};Ala;Poz{i};p{i}@patron.test;{valid_reader(w.year)}"
                               for i in range(1, 9)]) == 0
    assert bot.import_codes([f"POZ-{i:04d}" for i in range(1, 7)]) == 0
    # Arrival order differs from UID order: the mail appended first arrived last.
    order = [5, 1, 2, 3, 4]
    for i in order:
        _mail(imap_user, w + timedelta(seconds=i), f"p{i}@patron.test", f"Ala Poz{i} 030000{i}")
    assert bot.run_once() == 0
    reqs = bot.requests()
    assert [r.card_number for r in reqs] == [f"030000{i}" for i in range(1, 6)]
    assert [r.outcome for r in reqs] == ["issued"] * 3 + ["pool_exhausted"] * 2
    assert [r.code.code for r in reqs[:3]] == ["POZ-0001", "POZ-0002", "POZ-0003"]
    assert [_trail_note(r) for r in reqs[3:]] == [("quota_used", "general")] * 2
    outcomes = {m.message["In-Reply-To"]: m.message["X-Mailbot-Outcome"]
                for m in smtp_sink.messages}
    assert [outcomes[r.message_id] for r in reqs] == [r.outcome for r in reqs]
    # The refusal does not say the pool ran out (3 codes are left): it says the e-mail
    # part did, and that the rest is kept for the desk (until the month ends: no release).
    refusal = _plain(_reply_to(smtp_sink, reqs[3]))
    assert "wydawane przez e-mail zostały już wyczerpane" in refusal, refusal
    assert "zachowuje do wydania na miejscu, w bibliotece." in refusal
    assert "given out by e-mail have run out" in refusal
    assert "została już wyczerpana" not in refusal and "Od tego momentu" not in refusal

    settings = bot.settings()
    sessions = open_database(settings.database_url)
    sync_config(sessions, settings)
    # An e-mail waits undecided (stored, not decided): the desk's own half is not its.
    _mail(imap_user, utcnow() - timedelta(seconds=5), "p8@patron.test", "Ala Poz8 0300008")
    poll_all(sessions, settings)
    with sessions.begin() as s:
        for card in ("0300006", "0300007"):
            verdict, code = desk_issue(s, settings, library_id="lib", card=card, name="",
                                       service="legimi", now=utcnow())
            assert verdict.outcome == "eligible" and code is not None
            assert verdict.quota is not None and verdict.quota.general == 0
        [queue] = queue_snapshot(s, settings, ["lib"], utcnow())
        pool = {p.service: p for p in queue.quotas}["legimi"]
        assert (pool.left.general, pool.left.desk, pool.left.first_time) == (0, 1, 0)
        assert not pool.released and pool.left.release_at is None
    assert bot.run_once() == 0
    assert bot.requests()[-1].outcome == "pool_exhausted"  # the waiting e-mail: none left

    # The release time passed: the two refused patrons write again; the one code the
    # desk left goes to the earlier of them.
    bot.config.write_text(bot.config.read_text().replace(POZNAN, POZNAN_RELEASED))
    later = utcnow() - timedelta(seconds=2)
    _mail(imap_user, later, "p4@patron.test", "Ala Poz4 0300004")
    _mail(imap_user, later + timedelta(seconds=1), "p5@patron.test", "Ala Poz5 0300005")
    assert bot.run_once() == 0
    again = bot.requests()[-2:]
    assert [(r.card_number, r.outcome) for r in again] == [("0300004", "issued"),
                                                           ("0300005", "pool_exhausted")]
    assert again[0].code.code == "POZ-0006"
    assert _trail_note(again[1]) == ("no_code_left", None)
    with sessions() as s:
        assert s.scalar(select(Code).where(Code.issued_at.is_(None))) is None
        channels = [e.channel for e in s.scalars(select(LedgerEntry).order_by(LedgerEntry.id))]
    assert channels == ["email"] * 3 + ["desk"] * 2 + ["email"]


def _seed_last_month(bot, cards: list[str]) -> None:
    """Codes these cards got last month: they are not first-time patrons any more."""
    sessions = open_database(bot.settings().database_url)
    now = utcnow()
    prev = month_key(*add_months(*[int(x) for x in bot.month.split("-")], -1))
    with sessions.begin() as s:
        pool = CodePool(library_id="lib", service="legimi", month=prev, source_file="seed",
                        imported_at=now, size=len(cards))
        s.add(pool)
        s.flush()
        for n, card in enumerate(cards):
            code = Code(code=f"OLD-{n:04d}", pool_id=pool.id, library_id="lib",
                        service="legimi", month=prev, issued_at=now - timedelta(days=40))
            s.add(code)
            s.flush()
            s.add(LedgerEntry(code_id=code.id, library_id="lib", service="legimi",
                              month=prev, card_number=card, email=None,
                              issued_at=code.issued_at, channel="email"))


def _izabelin_burst(tmp_path, imap_user, smtp_sink, database_url=None):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=IZABELIN,
                   database_url=database_url)
    w = bot.window()
    old = [f"040000{i}" for i in range(1, 5)]
    new = [f"050000{i}" for i in range(1, 4)]
    assert bot.import_readers([f"{card};Ewa;Iza{card};{card}@patron.test;"
                               f"{valid_reader(w.year)}" for card in old + new]) == 0
    _seed_last_month(bot, old)
    assert bot.import_codes([f"IZA-{i:04d}" for i in range(1, 6)]) == 0
    plan = [old[0], old[1], new[0], old[2], old[3], new[1], new[2]]
    for n, card in enumerate(plan):
        _mail(imap_user, w + timedelta(seconds=n + 1), f"{card}@patron.test",
              f"Ewa Iza{card} {card}")
    return bot, plan


IZABELIN_OUTCOMES = [  # 5 codes, 2 kept for first-timers: 3 general
    ("0400001", "issued", ("code_from_part", "general")),
    ("0400002", "issued", ("code_from_part", "general")),
    ("0500001", "issued", ("code_from_part", "first_time")),
    ("0400003", "issued", ("code_from_part", "general")),  # the general part's last code
    ("0400004", "pool_exhausted", ("quota_used", "general")),
    # A later first-timer still gets a code after an earlier patron was refused:
    ("0500002", "issued", ("code_from_part", "first_time")),
    ("0500003", "pool_exhausted", ("no_code_left", None)),  # the pool is empty now
]


def _izabelin_outcomes(bot):
    return [(r.card_number, r.outcome, _trail_note(r)) for r in bot.requests()]


def test_izabelin_a_later_first_timer_gets_a_code_after_the_general_part_ran_out(
        tmp_path, imap_user, smtp_sink, database_url):
    # Four patrons who had codes before and three first-timers, in one burst (SQLite and
    # PostgreSQL): the first-timers' two codes go to the first two first-timers, in
    # arrival order, even after a patron who had codes before was refused; the codes are
    # the pool's next ones, in arrival order, each given once.
    bot, plan = _izabelin_burst(tmp_path, imap_user, smtp_sink, database_url)
    assert bot.run_once() == 0
    assert _izabelin_outcomes(bot) == IZABELIN_OUTCOMES
    issued = [r for r in bot.requests() if r.outcome == "issued"]
    assert [r.code.code for r in issued] == [f"IZA-{i:04d}" for i in range(1, 6)]
    assert len(smtp_sink.messages) == len(plan)
    # The patron refused while codes were left is told they are kept for first-timers.
    refusal = _plain(_reply_to(smtp_sink, bot.requests()[4]))
    assert ("zachowuje dla czytelników, którzy jeszcze nigdy nie otrzymali od niej kodu."
            in refusal), refusal
    assert "for patrons it has never issued a code to." in refusal
    # The last one was refused with the pool empty: the usual words.
    assert "została już wyczerpana" in _plain(_reply_to(smtp_sink, bot.requests()[6]))


def test_quota_counts_are_the_same_across_batch_boundaries(tmp_path, imap_user, smtp_sink,
                                                           monkeypatch):
    # Decided two requests a batch, the counts come from the ledger at each batch's start
    # and are kept current within it: the outcomes are those of one big batch.
    monkeypatch.setattr(sizes, "BATCH_SIZE", 2)
    bot, _ = _izabelin_burst(tmp_path, imap_user, smtp_sink)
    assert bot.run_once() == 0
    assert _izabelin_outcomes(bot) == IZABELIN_OUTCOMES


def test_the_desk_does_not_draw_from_the_first_timers_part(tmp_path, imap_user, smtp_sink):
    # Four patrons who had codes before take the 3 general codes (the fourth is refused);
    # the 2 left are the first-timers': the desk may not have them, a first-timer's
    # e-mail may.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=IZABELIN)
    w = bot.window()
    old = [f"040000{i}" for i in range(1, 5)]
    assert bot.import_readers([f"{card};Ewa;Iza{card};{card}@patron.test;"
                               f"{valid_reader(w.year)}" for card in [*old, "0500001"]]) == 0
    _seed_last_month(bot, old)
    assert bot.import_codes([f"IZA-{i:04d}" for i in range(1, 6)]) == 0
    for n, card in enumerate(old):
        _mail(imap_user, w + timedelta(seconds=n + 1), f"{card}@patron.test",
              f"Ewa Iza{card} {card}")
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued"] * 3 + ["pool_exhausted"]
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    with sessions.begin() as s:
        verdict, code = desk_issue(s, settings, library_id="lib", card="0400004", name="",
                                   service="legimi", now=utcnow())
    assert (verdict.outcome, verdict.note, code) == ("pool_exhausted", "desk_quota_used", None)
    assert verdict.args == {"general": 0, "owed": 0, "first_time": 2}
    # "Issue anyway" on the request page draws as the desk does: not the first-timers'.
    with sessions.begin() as s:
        refused = s.scalars(select(Request).where(Request.card_number == "0400004")).one()
        with pytest.raises(ActionRefused) as no_code:
            override(s, settings, request=refused, service="legimi", card="0400004",
                     reason="karta okazana", user="ala", now=utcnow())
    assert (no_code.value.key, no_code.value.params) == (
        "err_quota_kept", {"left": 2, "first_time": 2, "owed": 0})
    # The desk page shows the staff what is left of each part, and when it is released.
    bot.add_user("izabelin", PASSWORD)
    client = TestClient(create_app(settings, sessions), base_url="http://testserver")
    login(client, "izabelin")
    page = client.get("/desk")
    checked = client.post("/desk", data={
        "csrf": csrf_of(page.text), "library": "lib", "name": "", "service": "legimi",
        "card": "0400004", "action": "check"})
    assert checked.status_code == 200
    assert 'data-outcome="pool_exhausted"' in checked.text
    assert 'data-testid="desk-quota-desk">0<' in checked.text
    assert 'data-testid="desk-quota-first-time">2<' in checked.text
    assert "nigdy (wygasają z końcem miesiąca)" in checked.text  # no release_day
    _mail(imap_user, utcnow() - timedelta(seconds=1), "0500001@patron.test",
          "Ewa Iza0500001 0500001")
    assert bot.run_once() == 0
    last = bot.requests()[-1]
    assert (last.card_number, last.outcome, last.code.code) == ("0500001", "issued", "IZA-0004")


def test_issue_anyway_takes_the_desks_part_while_more_mail_waits_than_codes_are_free(
        tmp_path, imap_user, smtp_sink):
    # desk_codes = 2 of 4: two e-mails take the general part, the third is refused while
    # codes are kept. Three more e-mails then wait undecided, more than the 2 codes left:
    # they cannot have the desk's part, so "issue anyway" for the refused patron still
    # takes one of its codes, as the desk would.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="[libraries.quotas]\ndesk_codes = 2\n")
    w = bot.window()
    assert bot.import_readers([f"070000{i};Ola;Lada{i};o{i}@patron.test;"
                               f"{valid_reader(w.year)}" for i in range(1, 7)]) == 0
    assert bot.import_codes([f"DSK-{i:04d}" for i in range(1, 5)]) == 0
    for i in range(1, 4):
        _mail(imap_user, w + timedelta(seconds=i), f"o{i}@patron.test", f"Ola Lada{i} 070000{i}")
    assert bot.run_once() == 0
    assert [r.outcome for r in bot.requests()] == ["issued", "issued", "pool_exhausted"]
    settings = bot.settings()
    sessions = open_database(settings.database_url)
    for i in range(4, 7):
        _mail(imap_user, utcnow() - timedelta(seconds=10 - i), f"o{i}@patron.test",
              f"Ola Lada{i} 070000{i}")
    poll_all(sessions, settings)
    with sessions.begin() as s:
        refused = s.scalars(select(Request).where(Request.card_number == "0700003")).one()
        done = override(s, settings, request=refused, service="legimi", card="0700003",
                        reason="karta okazana", user="ala", now=utcnow())
        assert done.code.code == "DSK-0003"
    assert bot.run_once() == 0  # the waiting three: the desk's last code is not theirs
    assert [r.outcome for r in bot.requests()][3:] == ["pool_exhausted"] * 3


def test_processes_racing_on_postgresql_keep_the_quotas_and_the_arrival_order(
        tmp_path, imap_user, smtp_sink):
    # Three `run --once` at the same moment on one PostgreSQL database: each request
    # decided once, each answered once, and the outcomes those of one process.
    with fresh_postgres() as url:
        bot, _ = _izabelin_burst(tmp_path, imap_user, smtp_sink, url)
        cmd = [sys.executable, "-m", "mailbot", "--config", str(bot.config), "run", "--once"]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-3000:]
        assert _izabelin_outcomes(bot) == IZABELIN_OUTCOMES
        replies = Counter(m.message["In-Reply-To"] for m in smtp_sink.messages)
        assert sorted(replies.values()) == [1] * len(IZABELIN_OUTCOMES)
