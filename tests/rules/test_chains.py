"""The chains are declared (mailbot/rules/chains.py), not filtered: each one's rules, in
order, are what the filters over the e-mail chain used to give."""

from __future__ import annotations

from mailbot.rules.chains import DESK, EMAIL, RULES, TEST


def _names(rules) -> list[str]:
    return [rule.name for rule in rules]


def test_the_email_chain_is_the_rate_limit_the_eligibility_rules_and_the_pool():
    assert _names(EMAIL.gates) == ["rate_limit"]
    assert EMAIL.rules == RULES
    assert EMAIL.verdict is not None and EMAIL.verdict.name == "pool"


def test_the_test_chain_asks_every_rule_but_the_window():
    # A patron testing before the window learns whether they qualify and when it opens.
    assert _names(TEST.gates) == ["rate_limit"]
    assert _names(TEST.rules) == [n for n in _names(RULES) if n != "too_early"]
    assert TEST.verdict is not None and TEST.verdict.name == "eligibility_test"


def test_the_desk_chain_leaves_out_what_cannot_apply_at_a_counter():
    # The staff type the card and see the patron: no card search, sender or address cap.
    assert DESK.gates == ()
    assert _names(DESK.rules) == [n for n in _names(RULES) if n not in (
        "sender_mismatch", "address_limit", "no_card", "ambiguous_card")]
    assert DESK.verdict is not None and not DESK.verdict.recorded
