"""The eligibility rules, in the order they are asked (a chain as data, like Mailman's).

The first rule that refuses decides the outcome; the trail records every rule asked. If
none refuses, the decide stage allocates a code (``issued``) or finds the pool empty
(``pool_exhausted``).
"""

from __future__ import annotations

from typing import Any

from mailbot.rules.base import Facts, Hit, Rule
from mailbot.rules.card import AmbiguousCard, NoCard
from mailbot.rules.once_a_month import AddressLimit, AlreadyReceived, Blocked
from mailbot.rules.reader import (
    AgeRestricted,
    DataNotUpdated,
    Debt,
    InactiveAccount,
    NameMismatch,
    NoLoansThisYear,
    Overdue,
    SenderMismatch,
    UnknownCard,
)
from mailbot.rules.window import TooEarly

RULES: tuple[Rule, ...] = (
    TooEarly(),
    NoCard(),
    AmbiguousCard(),
    UnknownCard(),
    NameMismatch(),
    SenderMismatch(),
    AlreadyReceived(),
    AddressLimit(),
    InactiveAccount(),
    AgeRestricted(),
    Debt(),
    Overdue(),
    DataNotUpdated(),
    NoLoansThisYear(),
    Blocked(),
)

def evaluate(facts: Facts, rules: tuple[Rule, ...] = RULES) -> tuple[Hit | None, list[dict[str, Any]]]:
    """Runs the chain; returns the first refusal (or None) and the rule trail."""
    trail: list[dict[str, Any]] = []
    for rule in rules:
        hit = rule.check(facts)
        if hit is not None:
            trail.append({"rule": rule.name, "result": "refused", "note": hit.note})
            return hit, trail
        trail.append({"rule": rule.name, "result": "passed"})
    return None, trail
