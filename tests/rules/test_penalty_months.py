"""The penalty's month arithmetic (mailbot.penalty) and its keys, on plain values: which
months are looked at, which misses trigger a block, and when it ends (issue 20)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from mailbot.config import LibrarySettings, settings_from_dict
from mailbot.errors import ConfigError
from mailbot.penalty import OFF, Block, Penalty, from_months
from mailbot.rules.chains import evaluate
from tests.rules.test_rules import LIB, facts

MOKOTOW = Penalty(misses=1, within_months=1, block_months=3)
TARGOWEK = Penalty(misses=2, within_months=3, block_months=1)
NADARZYN = Penalty(misses=1, within_months=1, block_months=1)


def test_the_months_looked_at_end_the_month_before_and_reach_back_block_plus_window():
    # A request of November: its own month never counts (its code can still be activated).
    assert MOKOTOW.months_looked_at("2026-11") == ("2026-10", "2026-09", "2026-08")
    assert NADARZYN.months_looked_at("2026-11") == ("2026-10",)
    # Two misses within three months, blocking one month: a trigger in October, counted
    # over August-October.
    assert TARGOWEK.months_looked_at("2026-11") == ("2026-10", "2026-09", "2026-08")
    assert Penalty(2, 3, 2).months_looked_at("2027-01") == (
        "2026-12", "2026-11", "2026-10", "2026-09")
    assert OFF.months_looked_at("2026-11") == ()


def test_one_miss_blocks_the_three_months_after_its_month():
    # August's unactivated code: September, October, November refused; from 1 December free.
    for month in ("2026-09", "2026-10", "2026-11"):
        assert MOKOTOW.block(month, ["2026-08"]) == Block(date(2026, 12, 1), ("2026-08",))
    assert MOKOTOW.block("2026-12", ["2026-08"]) is None
    # The latest miss decides the end; across a new year too.
    assert MOKOTOW.block("2027-01", ["2026-10", "2026-12"]) == \
        Block(date(2027, 4, 1), ("2026-12",))


def test_the_next_month_only():
    assert NADARZYN.block("2026-11", ["2026-10"]) == Block(date(2026, 12, 1), ("2026-10",))
    assert NADARZYN.block("2026-11", ["2026-09"]) is None


def test_two_misses_within_three_months_and_not_one_or_two_far_apart():
    assert TARGOWEK.block("2026-11", ["2026-10"]) is None
    assert TARGOWEK.block("2026-11", ["2026-08", "2026-10"]) == \
        Block(date(2026, 12, 1), ("2026-08", "2026-10"))
    assert TARGOWEK.block("2026-11", ["2026-09", "2026-10"]) == \
        Block(date(2026, 12, 1), ("2026-09", "2026-10"))
    # Four months apart: not within three.
    assert TARGOWEK.block("2026-11", ["2026-07", "2026-10"]) is None
    # September's second miss blocked October; by November it is over.
    assert TARGOWEK.block("2026-10", ["2026-08", "2026-09"]) is not None
    assert TARGOWEK.block("2026-11", ["2026-08", "2026-09"]) is None
    # Three misses: all of the trigger's window are named.
    assert TARGOWEK.block("2026-11", ["2026-08", "2026-09", "2026-10"]).months == \
        ("2026-08", "2026-09", "2026-10")


def test_a_longer_block_after_several_misses_counts_from_the_last_of_them():
    # Two within three, blocking three months: misses in May and July block August to
    # October; a request of October is still refused, one of November is not.
    rule = Penalty(2, 3, 3)
    assert rule.block("2026-10", ["2026-05", "2026-07"]) == \
        Block(date(2026, 11, 1), ("2026-05", "2026-07"))
    assert rule.block("2026-11", ["2026-05", "2026-07"]) is None


def test_penalty_months_is_one_miss_one_month_n_months():
    assert from_months(3) == MOKOTOW and from_months(1) == NADARZYN and not from_months(0).on
    assert LIB.penalty_rule == MOKOTOW  # the default: as before
    assert replace(LIB, penalty_months=0).penalty_rule == OFF
    assert replace(LIB, penalty=TARGOWEK).penalty_rule == TARGOWEK


def test_the_rule_refuses_with_the_months_and_the_note_for_several_misses():
    lib = replace(LIB, penalty=TARGOWEK)
    hit, _ = evaluate(facts(library=lib, unactivated_months=("2026-08", "2026-10"),
                            unactivated_codes=(("2026-08", "legimi"), ("2026-10", "empik_go"))))
    assert hit and hit.outcome == "blocked" and hit.note == "blocked_misses"
    assert hit.context["blocked_until"] == date(2026, 12, 1)
    assert [(m.month, m.service) for m in hit.context["unactivated"]] == [
        (date(2026, 8, 1), "legimi"), (date(2026, 10, 1), "empik_go")]
    assert hit.args == {"month": "2026-10", "until": "2026-12-01", "n": 2, "within": 3}
    # No code in the context, in the args or anywhere in the trail.
    assert "code" not in hit.context
    one, _ = evaluate(facts(library=lib, unactivated_months=("2026-10",)))
    assert one is None


def _library(**keys):
    data = {"libraries": [{"id": "targowek", "name": "Biblioteka Targówek", **keys}]}
    return settings_from_dict(data).libraries[0]


def test_the_keys_as_the_file_gives_them():
    assert _library(penalty={"misses": 2, "within_months": 3, "block_months": 1}
                    ).penalty_rule == TARGOWEK
    assert _library(penalty=0).penalty_rule == OFF and _library(penalty=False).penalty_rule == OFF
    assert _library(penalty_months=1).penalty_rule == NADARZYN
    assert _library().penalty_rule == MOKOTOW
    assert isinstance(_library(), LibrarySettings)


@pytest.mark.parametrize(("keys", "column", "message"), [
    ({"penalty": 0, "penalty_months": 3}, "libraries[0]",
     "penalty and penalty_months are both given"),
    ({"penalty": {"misses": 2}}, "libraries[0].penalty", "needs within_months, block_months"),
    ({"penalty": {"misses": 4, "within_months": 3, "block_months": 1}},
     "libraries[0].penalty", "misses must be between 1 and within_months"),
    ({"penalty": {"misses": 1, "within_months": 1, "block_months": 0}},
     "libraries[0].penalty", "block_months must be between 1 and 24"),
    ({"penalty": {"misses": 1, "within_months": 13, "block_months": 1}},
     "libraries[0].penalty", "within_months must be between 1 and 12"),
    ({"penalty": {"misses": "2", "within_months": 3, "block_months": 1}},
     "libraries[0].penalty", "misses must be an integer"),
    ({"penalty": {"misses": 1, "within_months": 1, "block_month": 1}},
     "libraries[0].penalty", "unknown key 'block_month'"),
    ({"penalty": 3}, "libraries[0].penalty", "must be 0, false or a table"),
    ({"penalty": True}, "libraries[0].penalty", "must be 0, false or a table"),
])
def test_a_wrong_penalty_is_a_config_error_naming_the_keys(keys, column, message):
    with pytest.raises(ConfigError) as err:
        _library(**keys)
    assert err.value.column == column and message in err.value.message, err.value
