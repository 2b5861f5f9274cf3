"""SPEC 2.10: at most so many replies a day to one sender; past that, silence.

A gate, not an eligibility rule: it is asked before the chain, says nothing in the trail
when the sender is under the cap, and a sender past it gets no reply at all (a test mail
no verdict either). It counts by the address's mailbox (``address_key``: tagged forms and
letter case are one sender), as the batch's counters do.
"""

from __future__ import annotations

from mailbot.outcomes import Outcome
from mailbot.rules.base import Facts, Hit


class RateLimit:
    # The trail names the check; the outcome is rate_limited.
    name = "rate_limit"
    description = "This sender already got the policy's maximum of replies today: no reply."

    def check(self, facts: Facts) -> Hit | None:
        cap = facts.library.replies_per_sender_per_day
        if cap > 0 and facts.from_address and facts.replies_today >= cap:
            return Hit(Outcome.RATE_LIMITED, "rate_limit", args={"n": cap})
        return None
