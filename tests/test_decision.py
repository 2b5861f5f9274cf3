"""Deciding one request (mailbot/decide/decision.py), on plain values: no mail, no database.

Everything the decision needs is in its facts, the batch's counters included (replies to
the sender today, the pool's next free code, the codes left); the decision says the
outcome, the trail, what the reply adds, and which code to issue.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

from mailbot.decide.decision import decide
from mailbot.rules.base import IssuedThisMonth
from tests.rules.test_rules import READER, WAW, facts

CODE = SimpleNamespace(id=12, code="KOD-0012", pool_id=3, service="legimi")
DECIDED = datetime(2026, 11, 1, 0, 5, tzinfo=WAW)
PASSED = [{"rule": name, "result": "passed"} for name in (
    "no_card", "ambiguous_card", "unknown_card", "name_mismatch", "sender_mismatch",
    "already_received", "address_limit", "inactive_account", "unconfirmed_account",
    "age_restricted", "debt", "overdue", "data_not_updated", "no_loans_this_year", "blocked")]


def _facts(**kw: object):
    return facts(**{"decided_at": DECIDED, "next_code": CODE, **kw})


def test_an_eligible_request_is_issued_the_pools_next_code():
    # Every rule passes: the pool's next free code, named in the trail and the reply.
    d = decide(_facts())
    assert (d.outcome, d.code) == ("issued", CODE)
    assert d.trail == [{"rule": "service_not_offered", "result": "passed"},
                       {"rule": "too_early", "result": "passed"}, *PASSED,
                       {"rule": "pool", "result": "issued", "note": "code_from_pool",
                        "args": {"code_id": 12, "pool_id": 3}}]
    assert d.context == {"patron_first_name": "Anna", "code": "KOD-0012"}
    assert d.replies


def test_with_no_free_code_left_the_pool_is_exhausted():
    d = decide(_facts(next_code=None))
    assert (d.outcome, d.code) == ("pool_exhausted", None)
    assert d.trail[-1] == {"rule": "pool", "result": "refused", "note": "no_code_left",
                           "args": {"service": "legimi", "month": "2026-11"}}


def test_a_decision_after_its_month_ended_issues_nothing():
    # Unissued codes expire with their month, even if one is still in the pool's queue.
    d = decide(_facts(decided_at=datetime(2026, 11, 30, 23, 0, tzinfo=UTC)))
    assert (d.outcome, d.code) == ("pool_exhausted", None)
    assert d.trail[-1]["note"] == "month_ended"
    assert d.trail[-1]["args"] == {"month": "2026-11"}


def test_a_refusal_takes_no_code_and_says_why():
    d = decide(_facts(reader=replace(READER, balance_due=Decimal("2.50"))))
    assert (d.outcome, d.code) == ("debt", None)
    assert d.trail[-1] == {"rule": "debt", "result": "refused", "note": "debt",
                           "args": {"amount": "2.50"}}
    assert d.context["balance_due"] == Decimal("2.50")


def test_a_sender_past_the_daily_cap_gets_silence_and_a_one_line_trail():
    lib = replace(facts().library, replies_per_sender_per_day=3)
    d = decide(_facts(library=lib, replies_today=3))
    assert (d.outcome, d.code, d.replies) == ("rate_limited", None, False)
    assert d.trail == [{"rule": "rate_limit", "result": "refused",
                        "note": "rate_limit", "args": {"n": 3}}]
    # Under the cap the gate leaves no line at all.
    assert decide(_facts(library=lib, replies_today=2)).trail[0]["rule"] == \
        "service_not_offered"


def test_a_test_mail_gets_a_verdict_and_never_a_code():
    # Eligible with codes left; the pool empty; a refusal; before the window.
    d = decide(_facts(codes_left=4, next_code=None), test=True)
    assert (d.outcome, d.code) == ("eligibility_test", None)
    assert d.context["verdict"] == "eligible" and d.context["before_window"] is False
    assert d.trail == [{"rule": "service_not_offered", "result": "passed"}, *PASSED,
                       {"rule": "eligibility_test", "result": "eligible",
                                 "note": "eligibility_test", "args": {}}]
    assert decide(_facts(codes_left=0), test=True).context["verdict"] == "pool_exhausted"
    early = decide(_facts(codes_left=0, received_at=datetime(2026, 10, 31, 23, tzinfo=WAW)),
                   test=True)
    assert early.context["verdict"] == "eligible" and early.context["before_window"] is True
    assert early.trail[-1]["note"] == "eligibility_test_before_window"
    again = IssuedThisMonth(service="legimi", code="OLD-1", email="anna@example.org",
                            issued_at=datetime(2026, 11, 1, 0, 1, tzinfo=UTC))
    repeat = decide(_facts(issued_this_month=again, codes_left=4), test=True)
    assert repeat.context["verdict"] == "already_received" and "code" not in repeat.context
    assert repeat.trail[-2]["rule"] == "already_received"


def test_an_unknown_card_has_no_patron_name_in_the_reply():
    d = decide(_facts(reader=None))
    assert d.outcome == "unknown_card" and "patron_first_name" not in d.context
    assert d.code is None
