"""Quotas within a pool (issue 20): the arithmetic of the parts, the release time, and what
the pool's last word makes of them — on plain values."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from mailbot import quotas
from mailbot.config import LibrarySettings
from mailbot.config.load import settings_from_dict
from mailbot.config.sections import QuotaSettings
from mailbot.errors import ConfigError
from mailbot.outcomes import Outcome
from mailbot.quotas import Parts, PoolUse
from mailbot.rules.base import ELIGIBLE
from mailbot.rules.pool import DeskPool, Pool
from mailbot.web.notes import note_text
from tests.rules.test_rules import LIB, WAW, facts

HALF = QuotaSettings(desk_share=0.5, release_day=15, release_time="12:00")
FIRST = QuotaSettings(first_time_codes=2)


class _Code:
    id, code, pool_id, service = 7, "LEG-0007", 1, "legimi"


def test_no_quota_keeps_nothing_back():
    # The default: every code is general, as before quotas existed.
    assert not QuotaSettings().active
    assert LibrarySettings(id="a", name="A").quotas == QuotaSettings()
    assert quotas.reserved(QuotaSettings(), 10) == (0, 0)
    assert not quotas.held(QuotaSettings(), WAW, 2026, 11, datetime(2026, 11, 2, tzinfo=UTC))


def test_a_share_is_rounded_down_and_a_count_never_exceeds_the_pool():
    # Half of 11 is 5 for the desk (the odd code goes to e-mail); 0.29 of 100 is 29, not
    # 28 (float error); 20 desk codes of a pool of 8 are 8; first-timers get what is left.
    assert quotas.reserved(HALF, 11) == (5, 0)
    assert quotas.reserved(QuotaSettings(desk_share=0.29), 100) == (29, 0)
    assert quotas.reserved(QuotaSettings(desk_codes=20, first_time_codes=3), 8) == (8, 0)
    assert quotas.reserved(QuotaSettings(desk_codes=5, first_time_codes=3), 10) == (5, 3)
    assert quotas.reserved(QuotaSettings(desk_share=1.0), 6) == (6, 0)


def test_half_online_half_at_the_desk_step_by_step():
    # Poznań: 10 codes, 5 for the desk. Five e-mails use the general part up; the desk
    # still has its 5; a desk code beyond them comes out of the general part.
    use = PoolUse(free=10)
    assert quotas.parts(HALF, use) == Parts(general=5, desk=5, first_time=0)
    for _ in range(5):
        use = use.after()
    assert quotas.parts(HALF, use) == Parts(general=0, desk=5, first_time=0)
    use = PoolUse(free=10)
    for _ in range(6):
        use = use.after(staff=True)
    assert quotas.parts(HALF, use) == Parts(general=4, desk=0, first_time=0)


def test_first_timers_draw_their_own_part_first():
    # Izabelin: 5 codes, 2 for first-timers. Four codes to earlier patrons leave the
    # general part empty and the first-timers' two; a third first-timer takes a general
    # code.
    use = PoolUse(free=5)
    for _ in range(3):
        use = use.after()
    assert quotas.parts(FIRST, use) == Parts(general=0, desk=0, first_time=2)
    use = PoolUse(free=5).after(first_time=True).after(first_time=True).after(first_time=True)
    assert quotas.parts(FIRST, use) == Parts(general=2, desk=0, first_time=0)


def test_an_overdrawn_part_never_makes_another_negative():
    # Two desks at once (or a staff override) took more than the desk part and the
    # general part together: the parts still add up to the free codes, none below 0.
    q = QuotaSettings(desk_codes=2, first_time_codes=2)
    use = PoolUse(free=1, issued=5, staff=5)
    left = quotas.parts(q, use)
    assert left == Parts(general=0, desk=0, first_time=1) and left.free == 1
    assert quotas.parts(q, PoolUse(free=0, issued=6, staff=1)).free == 0


def test_who_draws_from_which_part():
    # A first-timer: own part, then general; anybody else: general only; the desk: its
    # own part, then what of the general part no waiting e-mail is owed.
    left = Parts(general=1, desk=2, first_time=1)
    assert quotas.email_part(left, first_time=True) == "first_time"
    assert quotas.email_part(left, first_time=False) == "general"
    assert quotas.email_part(replace(left, general=0), first_time=False) is None
    assert quotas.email_part(replace(left, first_time=0), first_time=True) == "general"
    assert quotas.email_left(left, first_time=True) == 2
    assert quotas.email_left(left, first_time=False) == 1
    # The desk: its own part whatever is owed to e-mail; the general part only beyond it.
    assert quotas.desk_part(left, owed=9) == "desk"
    assert quotas.desk_part(replace(left, desk=0), owed=0) == "general"
    assert quotas.desk_part(replace(left, desk=0), owed=1) is None
    # The first-time part is never the desk's.
    assert quotas.desk_part(Parts(general=0, desk=0, first_time=3), owed=0) is None


def test_the_release_is_on_the_library_clock_and_ends_the_quotas():
    # 15 November 12:00 Warsaw time is 11:00 UTC (CET); 15 July 12:00 is 10:00 UTC (CEST).
    nov = quotas.release_at(HALF, WAW, 2026, 11)
    assert nov == datetime(2026, 11, 15, 11, 0, tzinfo=UTC)
    assert quotas.release_at(HALF, WAW, 2026, 7) == datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
    assert quotas.held(HALF, WAW, 2026, 11, datetime(2026, 11, 15, 10, 59, 59, tzinfo=UTC))
    assert not quotas.held(HALF, WAW, 2026, 11, datetime(2026, 11, 15, 11, 0, tzinfo=UTC))
    # No release day: kept until the month ends.
    assert quotas.release_at(FIRST, WAW, 2026, 11) is None
    assert quotas.held(FIRST, WAW, 2026, 11, datetime(2026, 11, 30, 22, 59, tzinfo=UTC))


def _pool(**kw: object):
    return Pool().conclude(facts(decided_at=datetime(2026, 11, 2, tzinfo=UTC),
                                 next_code=_Code(), **kw), None)


def test_without_quotas_the_pool_issues_as_before():
    # No quota facts: the pool's next code, with the note it always had.
    hit = _pool()
    assert hit is not None and (hit.outcome, hit.note) == (Outcome.ISSUED, "code_from_pool")


def test_an_email_whose_parts_ran_out_is_pool_exhausted_naming_the_part_and_the_release():
    # Free codes are left, but kept for the desk until 15 November 12:00: pool_exhausted,
    # and staff read which part ran out and until when the rest is kept.
    release = datetime(2026, 11, 15, 11, 0, tzinfo=UTC)
    hit = _pool(quota=Parts(general=0, desk=5, first_time=0, release_at=release))
    assert hit is not None and hit.outcome == Outcome.POOL_EXHAUSTED
    assert hit.note == "quota_used" and hit.args["variant"] == "general_release"
    assert hit.context["quota_release_at"] == release
    step = {"rule": "pool", "result": "refused", "note": hit.note, "args": hit.args}
    assert note_text("pl", step, zone=WAW) == (
        "Część puli Legimi na listopad 2026 dla zgłoszeń e-mailowych jest wyczerpana; "
        "pozostałe kody są zarezerwowane (dla stanowiska: 5, dla nowych czytelników: 0) "
        "do 2026-11-15 12:00 CET.")
    assert "until 2026-11-15 12:00 CET" in (note_text("en", step, zone=WAW) or "")


def test_a_first_timer_takes_a_code_of_their_own_part_after_the_general_part_ran_out():
    # General part empty, one first-time code left: the first-timer gets it, another
    # patron is refused; a first-timer finding both parts empty is told so.
    left = Parts(general=0, desk=0, first_time=1)
    hit = _pool(quota=left, first_time=True)
    assert hit is not None and hit.outcome == Outcome.ISSUED
    assert (hit.note, hit.args["variant"]) == ("code_from_part", "first_time")
    assert "nowych czytelników" in (note_text("pl", {"note": hit.note, "args": hit.args},
                                              zone=WAW) or "")
    refused = _pool(quota=left, first_time=False)
    assert refused is not None and refused.outcome == Outcome.POOL_EXHAUSTED
    both = _pool(quota=Parts(general=0, desk=2, first_time=0), first_time=True)
    assert both is not None and both.args["variant"] == "first_time"
    assert note_text("en", {"note": both.note, "args": both.args}, zone=WAW).startswith(
        "A first-time patron, but both")


def _desk(**kw: object):
    return DeskPool().conclude(facts(decided_at=datetime(2026, 11, 2, tzinfo=UTC), **kw), None)


def test_the_desk_takes_its_own_part_even_when_every_general_code_is_owed():
    # Five e-mails wait for the general part's three codes: the desk's two are still its.
    hit = _desk(codes_left=5, owed_to_email=5, quota=Parts(general=3, desk=2, first_time=0))
    assert hit is not None and hit.outcome == ELIGIBLE


def test_the_desk_never_takes_general_codes_owed_to_earlier_emails_nor_first_timers_codes():
    # Desk part used up, three general codes and three e-mails waiting: nothing for the
    # desk (the first-timers' two are not its); two waiting: one for the desk.
    hit = _desk(codes_left=5, owed_to_email=3, quota=Parts(general=3, desk=0, first_time=2))
    assert hit is not None and (hit.outcome, hit.note) == (Outcome.POOL_EXHAUSTED,
                                                          "desk_quota_used")
    assert note_text("pl", {"note": hit.note, "args": hit.args}, zone=WAW) == (
        "Część puli dla stanowiska jest wyczerpana. W części ogólnej zostało kodów: 3, "
        "należą się wcześniejszym zgłoszeniom e-mail: 3; zarezerwowane dla nowych "
        "czytelników: 2.")
    ok = _desk(codes_left=5, owed_to_email=2, quota=Parts(general=3, desk=0, first_time=2))
    assert ok is not None and ok.outcome == ELIGIBLE
    # Nothing left at all: as without quotas.
    empty = _desk(codes_left=0, quota=Parts(general=0, desk=0, first_time=0))
    assert empty is not None and empty.note == "no_code_left_this_month"


# A mistake in [libraries.quotas] names the key (the command exits 2, as for any key).
@pytest.mark.parametrize("table, key, message", [
    ({"desk_share": 0.5, "desk_codes": 3}, "libraries[0].quotas", "not both"),
    ({"desk_share": 1.5}, "libraries[0].quotas.desk_share", "between 0 and 1"),
    ({"first_time_codes": -1}, "libraries[0].quotas.first_time_codes", "negative"),
    ({"release_day": 31}, "libraries[0].quotas.release_day", "between 1 and 28"),
    ({"release_time": "25:00"}, "libraries[0].quotas.release_time", "HH:MM"),
    ({"desk_part": 3}, "libraries[0].quotas.desk_part", "unknown key"),
])
def test_a_wrong_quota_key_is_named(table, key, message):
    data = {"smtp": {"host": "x"}, "libraries": [{"id": "a", "name": "A", "quotas": table}]}
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(data)
    assert caught.value.column == key and message in caught.value.message


def test_quotas_are_read_from_the_library_table():
    # [libraries.quotas] as written in the file.
    data = {"smtp": {"host": "x"}, "libraries": [{"id": "a", "name": "A", "quotas": {
        "desk_share": 0.5, "release_day": 15, "release_time": "12:00"}}]}
    assert settings_from_dict(data).libraries[0].quotas == HALF
    assert replace(LIB, quotas=HALF).quotas.active
