"""Per-library policy rows (issue 3), each both ways, on plain values."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from mailbot.clock import first_working_day_from, is_working_day
from mailbot.config import LibrarySettings, settings_from_dict
from mailbot.errors import ConfigError
from mailbot.rules.chains import evaluate
from mailbot.rules.window import next_send_time, window_opens
from tests.rules.test_rules import READER, facts

WAW = ZoneInfo("Europe/Warsaw")
LIB = LibrarySettings(id="lib", name="Biblioteka")


def outcome(**kw: object) -> str | None:
    hit, _ = evaluate(facts(**kw))
    return hit.outcome if hit else None


@pytest.mark.parametrize(("day", "working"), [
    (date(2026, 1, 1), False),   # Nowy Rok
    (date(2026, 1, 2), True),
    (date(2026, 1, 6), False),   # Trzech Króli
    (date(2026, 4, 6), False),   # Poniedziałek Wielkanocny
    (date(2026, 11, 11), False),  # Narodowe Święto Niepodległości
    (date(2026, 11, 14), False),  # a Saturday
    (date(2026, 12, 24), False),  # Wigilia, a public holiday from 2025
    (date(2026, 11, 20), True),
])
def test_the_polish_holiday_calendar(day: date, working: bool):
    # Weekends and Polish public holidays are not working days.
    assert is_working_day(day) is working


def test_a_window_on_the_first_working_day_skips_a_holiday_1st_and_the_weekend():
    # 1 May 2027 is a Saturday holiday, 3 May (Monday) is Constitution Day: the window
    # opens on Tuesday 4 May; 1 January 2026 (a Thursday holiday) moves to Friday the 2nd.
    lib = replace(LIB, window_working_day=True, window_time="10:00")
    assert window_opens(lib, WAW, 2027, 5) == datetime(2027, 5, 4, 10, 0, tzinfo=WAW)
    assert window_opens(lib, WAW, 2026, 1) == datetime(2026, 1, 2, 10, 0, tzinfo=WAW)
    assert window_opens(lib, WAW, 2026, 12) == datetime(2026, 12, 1, 10, 0, tzinfo=WAW)
    plain = replace(LIB, window_time="10:00")
    assert window_opens(plain, WAW, 2027, 5) == datetime(2027, 5, 1, 10, 0, tzinfo=WAW)
    assert first_working_day_from(date(2026, 12, 24)) == date(2026, 12, 28)


def test_a_request_before_the_first_working_day_is_too_early():
    # With the window on the first working day 10:00, mail of 1 January 2026 is too early.
    lib = replace(LIB, window_working_day=True, window_time="10:00")
    early = dict(library=lib, month=(2026, 1),
                 received_at=datetime(2026, 1, 1, 12, 0, tzinfo=WAW))
    assert outcome(**early) == "too_early"
    assert outcome(**{**early, "received_at": datetime(2026, 1, 2, 10, 0, tzinfo=WAW)}) is None


@pytest.mark.parametrize(("now", "due"), [
    (datetime(2026, 11, 2, 0, 3, tzinfo=WAW), datetime(2026, 11, 2, 10, 0, tzinfo=WAW)),
    (datetime(2026, 11, 2, 12, 0, tzinfo=WAW), datetime(2026, 11, 2, 12, 0, tzinfo=WAW)),
    (datetime(2026, 11, 2, 16, 0, tzinfo=WAW), datetime(2026, 11, 3, 10, 0, tzinfo=WAW)),
    # Friday evening → Monday; 10 November evening → 12th (11th is a holiday).
    (datetime(2026, 11, 6, 17, 0, tzinfo=WAW), datetime(2026, 11, 9, 10, 0, tzinfo=WAW)),
    (datetime(2026, 11, 10, 18, 0, tzinfo=WAW), datetime(2026, 11, 12, 10, 0, tzinfo=WAW)),
])
def test_replies_wait_for_the_send_window_on_working_days(now: datetime, due: datetime):
    # Office hours 10:00–16:00 on working days: a reply decided outside them waits.
    lib = replace(LIB, send_window="10:00-16:00", send_working_days_only=True)
    assert next_send_time(lib, WAW, now) == due


def test_without_a_send_window_replies_go_at_once_and_every_day_counts_when_asked():
    # No window: now. A window on all days: Saturday 10:00 is fine.
    now = datetime(2026, 11, 14, 3, 0, tzinfo=WAW)  # Saturday
    assert next_send_time(LIB, WAW, now) == now
    lib = replace(LIB, send_window="10:00-16:00")
    assert next_send_time(lib, WAW, now) == datetime(2026, 11, 14, 10, 0, tzinfo=WAW)


def test_active_reader_a_loan_within_the_last_n_months():
    # 6 months: a loan on 2 May counts on 1 November; one on 30 April does not.
    lib = replace(LIB, active_loan_months=6)
    ok = replace(READER, last_loan_on=date(2026, 5, 2))
    stale = replace(READER, last_loan_on=date(2026, 4, 30))
    assert outcome(library=lib, reader=ok) is None
    hit, _ = evaluate(facts(library=lib, reader=stale))
    assert hit and hit.outcome == "no_loans_this_year"
    assert hit.context["since"] == date(2026, 5, 1)
    assert outcome(library=lib, reader=replace(READER, last_loan_on=None)) == \
        "no_loans_this_year"
    assert outcome(reader=stale) is None  # the default policy does not ask


@pytest.mark.parametrize(("service", "born", "expected"), [
    ("legimi", date(2013, 11, 1), None),          # 13 today
    ("legimi", date(2013, 11, 2), "age_restricted"),  # 13 tomorrow
    ("empik_go", date(2010, 1, 1), "age_restricted"),  # 16 < 18
    ("empik_go", date(2008, 10, 31), None),
    ("empik_go", None, None),                      # no birth date on file: not guessed
])
def test_minimum_age_per_service(service: str, born: date | None, expected: str | None):
    # Legimi 13+, Empik Go 18+, judged on the day the request arrived.
    lib = replace(LIB, min_age_legimi=13, min_age_empik_go=18)
    hit, _ = evaluate(facts(library=lib, service=service, reader=replace(READER, birth_date=born)))
    assert (hit.outcome if hit else None) == expected
    if hit:
        assert hit.context["min_age"] == lib.min_age(service)


def test_no_age_limit_by_default():
    # Without a configured minimum age a child gets a code.
    assert outcome(reader=replace(READER, birth_date=date(2020, 1, 1))) is None


def test_policy_keys_are_validated():
    # A bad send window, a negative number, sip2 with a loans check are refused by key.
    base = {"libraries": [{"id": "a", "name": "A"}]}
    for lib, key in (({"send_window": "16:00-10:00"}, "send_window"),
                     ({"send_window": "10-16"}, "send_window"),
                     ({"active_loan_months": -1}, "active_loan_months"),
                     ({"one_code_per_month": "sometimes"}, "one_code_per_month"),
                     ({"reader_source": "sip2", "check_loans_this_year": True},
                      "check_loans_this_year"),
                     ({"reader_source": "sql"}, "sql.url"),
                     ({"max_balance_due": "dużo"}, "max_balance_due")):
        data = {**base, "libraries": [{**base["libraries"][0], **lib}]}
        with pytest.raises(ConfigError, match=key):
            settings_from_dict(data)
