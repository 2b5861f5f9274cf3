"""Deciding one request: its facts in, its decision out. Pure.

Everything a decision needs (the reader, the card's codes this month, the sender's
counters, the pool's next free code) is read beforehand into ``Facts``; the chain
(mailbot.rules.chains: the e-mail chain, or the test chain for a TEST mail) says the
outcome and leaves the trail. Nothing here knows of sessions, batches or workers: the
caller takes the code and writes the reply (mailbot.decide.runner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailbot.outcomes import NO_REPLY_OUTCOMES, Outcome
from mailbot.rules.chains import EMAIL, TEST, run
from mailbot.rules.base import Facts, FreeCode

NO_REPLY = frozenset(NO_REPLY_OUTCOMES)


@dataclass(frozen=True)
class Decision:
    outcome: str
    # Every rule asked, in order: {"rule", "result", "note"?} (what staff read).
    trail: list[dict[str, Any]]
    # What the outcome adds to the reply's context (mailbot.decide.context).
    context: dict[str, Any]
    # The code to issue: the pool's next free code of the request's service and month.
    code: FreeCode | None = None

    @property
    def replies(self) -> bool:
        """The patron gets a reply (if the request has an address to send it to)."""
        return self.outcome not in NO_REPLY


def decide(facts: Facts, *, test: bool = False) -> Decision:
    """The decision on a request (``test``: a TEST mail, which gets a verdict only)."""
    hit, trail = run(TEST if test else EMAIL, facts)
    assert hit is not None  # both chains end in a verdict
    context: dict[str, Any] = {}
    if facts.reader is not None:
        context["patron_first_name"] = facts.reader.first_name
    context.update(hit.context)
    code = facts.next_code if hit.outcome == Outcome.ISSUED else None
    return Decision(hit.outcome, trail, context, code)
