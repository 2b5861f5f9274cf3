"""The services a library offers and the pool's verdicts (mailbot/rules/offered.py, pool.py),
on plain facts: a service not offered is refused before anything else; a pool never
imported is pool_not_ready, not pool_exhausted; an exhausted pool names the other service."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from mailbot.decide.decision import decide
from mailbot.rules.chains import DESK, run
from mailbot.rules.offered import Offer
from tests.rules.test_rules import LIB, WAW, facts

DECIDED = datetime(2026, 11, 1, 0, 5, tzinfo=WAW)
LEGIMI_ONLY = replace(LIB, services=("legimi",))


def test_a_service_the_library_does_not_offer_is_refused_first_naming_what_it_offers():
    # Even before the window and without a card: the answer would be the same later.
    early = facts(library=LEGIMI_ONLY, service="empik_go", card=None, card_candidates=(),
                  reader=None, received_at=datetime(2026, 10, 31, 23, tzinfo=WAW),
                  decided_at=DECIDED)
    d = decide(early)
    assert d.outcome == "service_not_offered"
    assert d.trail == [{"rule": "service_not_offered", "result": "refused",
                        "note": "service_not_offered",
                        "args": {"service": "empik_go", "offered": "Legimi"}}]
    assert d.context["offered"] == (Offer("legimi", "Legimi", "LEGIMI"),)
    # The offered service goes on to the other rules.
    assert decide(replace(early, service="legimi")).outcome == "too_early"
    # The desk, too.
    hit, _ = run(DESK, facts(library=LEGIMI_ONLY, service="empik_go", decided_at=DECIDED,
                             codes_left=5))
    assert hit is not None and hit.outcome == "service_not_offered"


def test_no_pool_imported_is_pool_not_ready_and_an_empty_one_is_exhausted():
    base = facts(decided_at=DECIDED, next_code=None)
    assert decide(replace(base, pool_imported=False)).outcome == "pool_not_ready"
    assert decide(replace(base, pool_imported=False)).trail[-1] == {
        "rule": "pool", "result": "refused", "note": "pool_not_ready",
        "args": {"service": "legimi", "month": "2026-11"}}
    assert decide(base).outcome == "pool_exhausted"
    desk = replace(base, codes_left=0)
    assert run(DESK, replace(desk, pool_imported=False))[0].outcome == "pool_not_ready"
    assert run(DESK, desk)[0].outcome == "pool_exhausted"


def test_an_exhausted_pool_names_the_other_services_left():
    d = decide(facts(service="empik_go", decided_at=DECIDED, next_code=None,
                     other_services_left=("legimi",)))
    assert (d.outcome, d.context["other_services"]) == (
        "pool_exhausted", (Offer("legimi", "Legimi", "LEGIMI"),))
    none_left = decide(facts(service="empik_go", decided_at=DECIDED, next_code=None))
    assert none_left.context["other_services"] == ()


def test_a_test_mail_says_pool_not_ready_where_no_pool_was_imported():
    none_imported = facts(decided_at=DECIDED, codes_left=0, pool_imported=False)
    assert decide(none_imported, test=True).context["verdict"] == "pool_not_ready"
    assert decide(replace(none_imported, pool_imported=True),
                  test=True).context["verdict"] == "pool_exhausted"


def test_after_the_month_ended_a_pool_never_imported_is_still_not_ready_and_none_named():
    # Decided after the month's end: a pool never imported is pool_not_ready (never
    # "wyczerpana"); one that ran out is pool_exhausted and names no other service, whose
    # codes expired with the month too.
    late = facts(service="empik_go", decided_at=datetime(2026, 12, 1, 0, 1, tzinfo=WAW),
                 next_code=None, other_services_left=("legimi",))
    assert decide(replace(late, pool_imported=False)).outcome == "pool_not_ready"
    ended = decide(late)
    assert (ended.outcome, ended.trail[-1]["note"]) == ("pool_exhausted", "month_ended")
    assert ended.context["other_services"] == ()
