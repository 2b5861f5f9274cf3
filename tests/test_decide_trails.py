"""The rule trail stored with every decision stays exactly what it was (issue 16), notes
as catalogue keys with their values (issue 19: staff read them in their language).

Staff read the trail on the dashboard (which rules were asked, which refused and why), and
the refactor that made the rate limit, the pool and the eligibility test rules of declared
chains must not change a line of it. The demo's mails give every e-mail outcome; a second
set gives the eligibility test's verdicts, the address cap and the age limit. The demo's
trails are pinned in ``tests/data/decide_trails.json`` (taken before the refactor).
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.db.models import Request
from mailbot.db.session import open_database
from mailbot.demo import run_demo
from tests.botenv import READER_HEADER, make_bot, request_mail, valid_reader

PINNED = Path(__file__).parent / "data" / "decide_trails.json"
DEMO_NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_every_outcome_of_the_demo_keeps_its_full_trail(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]):
    # One request per outcome (and a few more): rule names, results, notes and their
    # values, in order.
    counter = itertools.count(1)
    monkeypatch.setattr("mailbot.demo.make_msgid",
                        lambda domain: f"<sample.{next(counter)}@{domain}>")
    assert run_demo(str(tmp_path / "demo"), now=DEMO_NOW) == 0
    capsys.readouterr()
    sessions = open_database(f"sqlite:///{tmp_path / 'demo' / 'demo.db'}")
    with sessions() as s:
        actual = [{"from": r.from_address, "outcome": r.outcome, "trail": r.trail}
                  for r in s.scalars(select(Request).order_by(Request.received_at))]
    if os.environ.get("UPDATE_GOLDEN") == "1":
        # One request a line: a changed trail shows as one changed line.
        PINNED.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in actual)
                          + "\n]\n", encoding="utf-8")
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    assert {r["outcome"] for r in actual} >= {
        "issued", "too_early", "pool_exhausted", "debt", "overdue", "inactive_account",
        "data_not_updated", "no_loans_this_year", "blocked", "sender_mismatch",
        "name_mismatch", "unknown_card", "no_card", "ambiguous_card", "already_received",
        "rate_limited"}
    assert actual == pinned


# The library offers the service asked for: every chain asks that first.
_OFFERED = {"rule": "service_not_offered", "result": "passed"}
_OPEN = {"rule": "too_early", "result": "passed"}
_PASSED = [{"rule": name, "result": "passed"} for name in (
    "no_card", "ambiguous_card", "unknown_card", "name_mismatch", "sender_mismatch",
    "already_received", "address_limit", "inactive_account", "unconfirmed_account",
    "age_restricted", "debt", "overdue", "data_not_updated", "no_loans_this_year", "blocked")]


def _upto(rule: str) -> list[dict[str, str]]:
    """The e-mail chain's passed rules before ``rule``."""
    names = [step["rule"] for step in _PASSED]
    return _PASSED[:names.index(rule)]


def test_the_eligibility_test_the_address_cap_and_the_age_limit_keep_their_trails(
        tmp_path, imap_user, smtp_sink):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=(
        "eligibility_test = true\nmax_codes_per_address_per_month = 1\nmin_age_legimi = 16\n"
        "replies_per_sender_per_day = 5"))
    w = bot.window()
    ok = valid_reader(w.year)
    young = f"{w.year - 10}-01-01"
    header_birth = ";data_urodzenia"
    rows = [f"0700001;Ala;Trop1;a1@patron.test;{ok};",
            f"0700002;Ola;Trop2;fam@patron.test;{ok};",
            f"0700003;Ela;Trop3;fam@patron.test;{ok};",
            f"0700004;Iza;Trop4;young@patron.test;{ok};{young}",
            f"0700005;Jan;Trop5;debt@patron.test;{w.year + 1}-12-31;5,00;0;"
            f"{w.year}-01-15;{w.year}-02-01;"]
    path = bot.root / "readers-trails.csv"
    path.write_text("\n".join([READER_HEADER + header_birth, *rows]) + "\n",
                    encoding="utf-8")
    assert bot.cli("import-readers", str(path), "--library", bot.library) == 0
    assert bot.import_codes(["TRAIL-0001", "TRAIL-0002"]) == 0
    for sec, sender, subject, body in [
        (-60, "a1@patron.test", "TEST LEGIMI", "Ala Trop1 0700001"),   # before the window
        (1, "a1@patron.test", "TEST LEGIMI", "Ala Trop1 0700001"),     # eligible
        (2, "debt@patron.test", "TEST LEGIMI", "Jan Trop5 0700005"),   # the refusal's verdict
        (3, "fam@patron.test", "LEGIMI", "Ola Trop2 0700002"),         # issued
        (4, "fam@patron.test", "LEGIMI", "Ela Trop3 0700003"),         # address_limit
        (5, "young@patron.test", "LEGIMI", "Iza Trop4 0700004"),       # age_restricted
        (6, "a1@patron.test", "LEGIMI", "Ala Trop1 0700001"),          # issued (the last)
        (7, "fam@patron.test", "TEST LEGIMI", "Ola Trop2 0700002"),    # already received
        (8, "debt@patron.test", "LEGIMI", "Jan Trop5 0700005"),        # debt
    ]:
        raw, _ = request_mail(sender, subject, body)
        imap_user.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bot.run_once() == 0
    got = [(r.kind, r.outcome, r.trail) for r in bot.requests()]
    test_note = {"note": "eligibility_test", "args": {}}
    issued = [r for r in bot.requests() if r.outcome == "issued"]
    pool_notes = [{"note": "code_from_pool",
                   "args": {"code_id": r.code.id, "pool_id": r.code.pool_id}} for r in issued]
    debt_note = {"note": "debt", "args": {"amount": "5.00"}}
    assert [g[:2] for g in got] == [
        ("test", "eligibility_test"), ("test", "eligibility_test"),
        ("test", "eligibility_test"), ("request", "issued"), ("request", "address_limit"),
        ("request", "age_restricted"), ("request", "issued"), ("test", "eligibility_test"),
        ("request", "debt")]
    trails = [g[2] for g in got]
    assert trails[0] == [_OFFERED, *_PASSED, {"rule": "eligibility_test", "result": "eligible",
                                    "note": "eligibility_test_before_window", "args": {}}]
    assert trails[1] == [_OFFERED, *_PASSED, {"rule": "eligibility_test", "result": "eligible",
                                    **test_note}]
    assert trails[2] == [_OFFERED, *_upto("debt"),
                         {"rule": "debt", "result": "refused", **debt_note},
                         {"rule": "eligibility_test", "result": "debt", **test_note}]
    assert trails[3] == [_OFFERED, _OPEN, *_PASSED,
                         {"rule": "pool", "result": "issued", **pool_notes[0]}]
    assert trails[4] == [_OFFERED, _OPEN, *_upto("address_limit"),
                         {"rule": "address_limit", "result": "refused",
                          "note": "address_limit", "args": {"n": 1, "cap": 1}}]
    assert trails[5] == [_OFFERED, _OPEN, *_upto("age_restricted"),
                         {"rule": "age_restricted", "result": "refused",
                          "note": "age_restricted", "args": {"age": 10, "min_age": 16}}]
    assert trails[6] == [_OFFERED, _OPEN, *_PASSED,
                         {"rule": "pool", "result": "issued", **pool_notes[1]}]
    assert trails[7][-1] == {"rule": "eligibility_test", "result": "already_received",
                             **test_note}
    assert trails[7][-2]["rule"] == "already_received"
    assert trails[7][-2]["result"] == "refused"
    # (The rule does not know a test's reply shows no code: its note is the e-mail's.)
    assert trails[7][-2]["note"] == "already_received_repeated"
    assert trails[8][-1] == {"rule": "debt", "result": "refused", **debt_note}


def test_a_test_after_the_pool_ran_out_and_the_rate_limit_keep_their_trails(
        tmp_path, imap_user, smtp_sink):
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user],
                   policy="eligibility_test = true\nreplies_per_sender_per_day = 1")
    w = bot.window()
    bot.import_readers([f"0710001;Ala;Rut1;r1@patron.test;{valid_reader(w.year)}",
                        f"0710002;Ola;Rut2;r2@patron.test;{valid_reader(w.year)}"])
    bot.import_codes(["RUT-0001"])
    for sec, sender, subject, body in [
        (1, "r1@patron.test", "LEGIMI", "Ala Rut1 0710001"),       # issued, the last code
        (2, "r2@patron.test", "LEGIMI", "Ola Rut2 0710002"),       # pool_exhausted
        (3, "r2@patron.test", "TEST LEGIMI", "Ola Rut2 0710002"),  # verdict pool_exhausted
        (4, "r2@patron.test", "LEGIMI", "Ola Rut2 0710002"),       # rate_limited (1 a day)
    ]:
        raw, _ = request_mail(sender, subject, body)
        imap_user.append(raw, internaldate=w + timedelta(seconds=sec))
    assert bot.run_once() == 0
    reqs = bot.requests()
    assert [r.outcome for r in reqs] == ["issued", "pool_exhausted", "eligibility_test",
                                         "rate_limited"]
    assert reqs[1].trail == [_OFFERED, _OPEN, *_PASSED,
                             {"rule": "pool", "result": "refused", "note": "no_code_left",
                              "args": {"service": "legimi", "month": bot.month}}]
    assert reqs[2].trail == [_OFFERED, *_PASSED, {"rule": "eligibility_test",
                                        "result": "pool_exhausted",
                                        "note": "eligibility_test", "args": {}}]
    assert reqs[3].trail == [{"rule": "rate_limit", "result": "refused",
                              "note": "rate_limit", "args": {"n": 1}}]
