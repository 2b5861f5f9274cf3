"""The chains, declared: which rules are asked, in which order, and what has the last word.

Like Mailman's chains, a chain is data. Its gates are asked first (a sender past the daily
reply cap gets nothing; a gate that passes leaves no line in the trail); then its rules in
order, each one a line of the trail, the first refusal ending them; then its verdict
concludes from the facts and that refusal: the pool issues a code, a test states its
verdict, the desk weighs the codes owed to e-mail. The trail is the record staff read.

The fourth chain, intake's (is this mail a request at all?), is asked before any patron
data is read and is declared beside its rules in ``mailbot/rules/intake.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailbot.rules.base import Facts, Hit, Rule, Verdict
from mailbot.rules.card import AmbiguousCard, NoCard
from mailbot.rules.eligibility_test import EligibilityTest
from mailbot.rules.offered import ServiceNotOffered
from mailbot.rules.once_a_month import AddressLimit, AlreadyReceived, Blocked
from mailbot.rules.pool import DeskPool, Pool
from mailbot.rules.rate_limit import RateLimit
from mailbot.rules.reader import (
    AgeRestricted,
    DataNotUpdated,
    Debt,
    InactiveAccount,
    NameMismatch,
    NoLoansThisYear,
    Overdue,
    SenderMismatch,
    UnconfirmedAccount,
    UnknownCard,
)
from mailbot.rules.window import TooEarly

Trail = list[dict[str, Any]]


@dataclass(frozen=True)
class Chain:
    name: str
    gates: tuple[Rule, ...]
    rules: tuple[Rule, ...]
    verdict: Verdict | None = None


# The eligibility rules of an e-mail request, in the order they are asked (the order of
# the monthly report's columns). A service the library does not offer is asked first, even
# before the window (mailbot.rules.offered: no later answer would be of use to the patron).
RULES: tuple[Rule, ...] = (
    ServiceNotOffered(),
    TooEarly(),
    NoCard(),
    AmbiguousCard(),
    UnknownCard(),
    NameMismatch(),
    SenderMismatch(),
    AlreadyReceived(),
    AddressLimit(),
    InactiveAccount(),
    UnconfirmedAccount(),
    AgeRestricted(),
    Debt(),
    Overdue(),
    DataNotUpdated(),
    NoLoansThisYear(),
    Blocked(),
)

EMAIL = Chain("email", gates=(RateLimit(),), rules=RULES, verdict=Pool())

# A TEST mail: every eligibility rule but the window (the verdict says when it opens), so
# a rule added to RULES is asked of a TEST mail too.
TEST = Chain("test", gates=(RateLimit(),),
             rules=tuple(rule for rule in RULES if not isinstance(rule, TooEarly)),
             verdict=EligibilityTest())

# The walk-in desk: the staff type the card and see the patron, so no card search, no
# sender address and no per-address cap; the window still applies, and only the library's
# own services are handed out.
DESK = Chain("desk", gates=(), rules=(
    ServiceNotOffered(),
    TooEarly(),
    UnknownCard(),
    NameMismatch(),
    AlreadyReceived(),
    InactiveAccount(),
    UnconfirmedAccount(),
    AgeRestricted(),
    Debt(),
    Overdue(),
    DataNotUpdated(),
    NoLoansThisYear(),
    Blocked(),
), verdict=DeskPool())


def evaluate(facts: Facts, rules: tuple[Rule, ...] = RULES) -> tuple[Hit | None, Trail]:
    """Asks ``rules`` in order; returns the first refusal (or None) and the rule trail."""
    trail: Trail = []
    for rule in rules:
        hit = rule.check(facts)
        if hit is not None:
            trail.append({"rule": rule.name, "result": hit.result, "note": hit.note,
                          "args": hit.args})
            return hit, trail
        trail.append({"rule": rule.name, "result": "passed"})
    return None, trail


def run(chain: Chain, facts: Facts) -> tuple[Hit | None, Trail]:
    """Runs ``chain``: its outcome (None only for a chain without a verdict whose rules all
    passed) and the trail."""
    for gate in chain.gates:
        hit = gate.check(facts)
        if hit is not None:
            return hit, [{"rule": gate.name, "result": hit.result, "note": hit.note,
                          "args": hit.args}]
    refusal, trail = evaluate(facts, chain.rules)
    if chain.verdict is None:
        return refusal, trail
    hit = chain.verdict.conclude(facts, refusal)
    if hit is None:
        return refusal, trail
    if chain.verdict.recorded:
        trail.append({"rule": chain.verdict.name, "result": hit.result, "note": hit.note,
                          "args": hit.args})
    return hit, trail
