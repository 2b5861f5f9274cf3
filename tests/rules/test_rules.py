"""The eligibility chain, rule by rule, on plain values (no mail, no database)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from mailbot.config import LibrarySettings
from mailbot.rules.chains import RULES, evaluate
from mailbot.rules.base import Facts, IssuedThisMonth, ReaderFacts
from mailbot.rules.window import next_window, window_opens

WAW = ZoneInfo("Europe/Warsaw")
LIB = LibrarySettings(id="lib", name="Biblioteka")
READER = ReaderFacts(card_number="0012345", first_name="Anna", last_name="Kowalska",
                     email="anna@example.org", valid_until=date(2027, 12, 31),
                     balance_due=Decimal("0"), overdue_items=0,
                     data_updated_on=date(2026, 2, 1), last_loan_on=date(2026, 10, 1))


def facts(**kw: object) -> Facts:
    base = dict(library=LIB, tz=WAW, month=(2026, 11), service="legimi",
                received_at=datetime(2026, 11, 1, 0, 0, 3, tzinfo=WAW), date_header=None,
                from_address="anna@example.org", card_candidates=("0012345",), card="0012345",
                name_text="Anna Kowalska 0012345", reader=READER)
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def outcome(f: Facts) -> str | None:
    hit, _trail = evaluate(f)
    return hit.outcome if hit else None


def test_every_rule_has_a_distinct_outcome_name():
    # Each rule's name is its outcome and its template name: no two alike.
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))


def test_an_eligible_patron_passes_every_rule_and_the_trail_lists_them_all():
    # A valid reader writing in the window passes; the trail records every rule asked.
    hit, trail = evaluate(facts())
    assert hit is None
    assert [t["rule"] for t in trail] == [r.name for r in RULES]


def test_a_request_received_at_235950_on_the_last_day_is_too_early():
    # Received 23:59:50 Warsaw time on 31 October, decided in November: too early.
    f = facts(received_at=datetime(2026, 10, 31, 23, 59, 50, tzinfo=WAW))
    assert outcome(f) == "too_early"


def test_a_date_header_before_the_window_is_too_early_even_if_received_after():
    # Sent 23:59:50 on the last day (Date header), received 00:00:05 on the 1st: too early.
    f = facts(received_at=datetime(2026, 11, 1, 0, 0, 5, tzinfo=WAW),
              date_header=datetime(2026, 10, 31, 23, 59, 50, tzinfo=WAW))
    assert outcome(f) == "too_early"


def test_the_window_opening_instant_itself_counts():
    # Received exactly at 00:00:00 on the 1st: in the window.
    assert outcome(facts(received_at=datetime(2026, 11, 1, tzinfo=WAW))) is None


@pytest.mark.parametrize(("year", "month", "utc_hour"), [
    (2026, 3, 23),   # 1 March 00:00 CET  = 28 Feb 23:00 UTC
    (2026, 4, 22),   # 1 April 00:00 CEST = 31 Mar 22:00 UTC (after the spring change)
    (2026, 11, 23),  # 1 November 00:00 CET (after the autumn change)
])
def test_the_window_is_dst_correct(year: int, month: int, utc_hour: int):
    # The opening is local midnight whatever the offset that month.
    opens = window_opens(LIB, WAW, year, month).astimezone(UTC)
    assert opens.hour == utc_hour and opens.minute == 0


def test_one_second_before_midnight_in_utc_terms_after_the_spring_change():
    # 31 March 2026 21:59:59 UTC is 23:59:59 CEST: too early for April; 22:00:00 UTC is in.
    april = (2026, 4)
    assert outcome(facts(month=april, received_at=datetime(2026, 3, 31, 21, 59, 59,
                                                           tzinfo=UTC))) == "too_early"
    assert outcome(facts(month=april, received_at=datetime(2026, 3, 31, 22, 0, 0,
                                                           tzinfo=UTC))) is None


def test_the_machines_time_zone_does_not_matter(monkeypatch: pytest.MonkeyPatch):
    # Under TZ=America/New_York and TZ=Asia/Tokyo the verdicts are the same as under UTC.
    cases = [datetime(2026, 10, 31, 22, 59, 50, tzinfo=UTC),  # 23:59:50 CET → too early
             datetime(2026, 10, 31, 23, 0, 1, tzinfo=UTC)]    # 00:00:01 CET → in window
    verdicts = []
    try:
        for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            verdicts.append([outcome(facts(received_at=c)) for c in cases])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert verdicts == [["too_early", None]] * 3


def test_a_later_opening_day_and_hour():
    # A library opening on the 10th at 10:00 refuses mail of the 10th at 09:59:59.
    lib = replace(LIB, window_day=10, window_time="10:00")
    early = facts(library=lib, received_at=datetime(2026, 11, 10, 9, 59, 59, tzinfo=WAW))
    assert outcome(facts(library=lib, received_at=datetime(2026, 11, 5, tzinfo=WAW))) == \
        "too_early"
    ok = facts(library=lib, received_at=datetime(2026, 11, 10, 10, 0, tzinfo=WAW))
    assert outcome(early) == "too_early" and outcome(ok) is None
    assert next_window(lib, WAW, 2026, 12) == datetime(2027, 1, 10, 10, 0, tzinfo=WAW)


def test_no_card_and_ambiguous_card():
    # No candidate → no_card; two candidates and no choice → ambiguous_card.
    assert outcome(facts(card_candidates=(), card=None, reader=None)) == "no_card"
    f = facts(card_candidates=("0012345", "0099999"), card=None, reader=None)
    hit, _ = evaluate(f)
    assert hit and hit.outcome == "ambiguous_card"
    assert hit.context["candidates"] == ["0012345", "0099999"]


def test_unknown_card():
    # A card not in the reader database is unknown_card.
    assert outcome(facts(reader=None)) == "unknown_card"


def test_name_mismatch_is_accent_and_case_insensitive():
    # "anna kowalska" matches Kowalska; "Anna Nowak" does not.
    assert outcome(facts(name_text="anna KOWALSKA, 0012345")) is None
    assert outcome(facts(name_text="Anna Nowak 0012345")) == "name_mismatch"
    lodz = replace(READER, last_name="Łódzka")
    assert outcome(facts(reader=lodz, name_text="Anna Lodzka 0012345")) is None


def test_name_check_can_be_turned_off():
    # A library that does not ask for the name lets "Anna Nowak" through.
    lib = replace(LIB, check_name=False)
    assert outcome(facts(library=lib, name_text="Anna Nowak 0012345")) is None


def test_sender_mismatch_only_when_the_policy_asks():
    # With check_sender, another address than the one on file is sender_mismatch.
    other = facts(from_address="someone@example.net")
    assert outcome(other) is None
    lib = replace(LIB, check_sender=True)
    assert outcome(replace(other, library=lib)) == "sender_mismatch"
    assert outcome(facts(library=lib, from_address="ANNA@example.org".lower())) is None


def test_inactive_account_debt_overdue():
    # Expired card, money owed, overdue loans: each its own outcome.
    assert outcome(facts(reader=replace(READER, valid_until=date(2026, 10, 31)))) == \
        "inactive_account"
    assert outcome(facts(reader=replace(READER, balance_due=Decimal("0.50")))) == "debt"
    assert outcome(facts(reader=replace(READER, overdue_items=1))) == "overdue"
    lenient = replace(LIB, max_balance_due="5.00")
    assert outcome(facts(library=lenient, reader=replace(READER, balance_due=Decimal("4.99")))) \
        is None


def test_data_updated_and_loans_this_year_only_when_asked():
    # Old data / no loan this year refuse only if the library's policy turns them on.
    stale = replace(READER, data_updated_on=date(2025, 12, 31), last_loan_on=date(2025, 5, 1))
    assert outcome(facts(reader=stale)) is None
    strict = replace(LIB, check_data_updated=True, check_loans_this_year=True)
    assert outcome(facts(library=strict, reader=stale)) == "data_not_updated"
    assert outcome(facts(library=strict, reader=replace(stale, data_updated_on=None))) == \
        "data_not_updated"
    fresh_data = replace(stale, data_updated_on=date(2026, 1, 2))
    assert outcome(facts(library=strict, reader=fresh_data)) == "no_loans_this_year"


def test_already_received_repeats_the_code_only_to_the_same_address():
    # A second request this month: the code is repeated only to the address it went to.
    prev = IssuedThisMonth(service="empik_go", code="EGO-1", email="anna@example.org",
                           issued_at=datetime(2026, 11, 1, 0, 1, tzinfo=UTC))
    hit, _ = evaluate(facts(issued_this_month=prev))
    assert hit and hit.outcome == "already_received" and hit.context["code"] == "EGO-1"
    hit, _ = evaluate(facts(issued_this_month=prev, from_address="other@example.org"))
    assert hit and hit.outcome == "already_received" and hit.context["code"] is None


def test_blocked_for_penalty_months_after_an_unactivated_code():
    # An unactivated code of August blocks September, October and November; December is free.
    f = facts(unactivated_months=("2026-08",))
    hit, _ = evaluate(f)
    assert hit and hit.outcome == "blocked" and hit.context["blocked_until"] == date(2026, 12, 1)
    december = facts(unactivated_months=("2026-08",), month=(2026, 12),
                     received_at=datetime(2026, 12, 1, 0, 0, 1, tzinfo=WAW))
    assert outcome(december) is None
    off = replace(LIB, penalty_months=0)
    assert outcome(facts(library=off, unactivated_months=("2026-10",))) is None


def test_the_first_refusal_wins_in_chain_order():
    # An expired card with debt is inactive_account (asked first), not debt.
    r = replace(READER, valid_until=date(2020, 1, 1), balance_due=Decimal("3"))
    assert outcome(facts(reader=r)) == "inactive_account"
