"""SPEC 2.8: the month's pool of codes, the last word of a chain that found no refusal.

By e-mail the request gets the pool's next free code (in arrival order), unless the pool
is empty or its month has ended (unissued codes expire with their month). At the desk a
code may be handed out only if some are left beyond those owed to e-mail requests that
arrived earlier. Both only say so; taking the code is mailbot.ledger's.
"""

from __future__ import annotations

from mailbot.clock import month_end, month_key
from mailbot.outcomes import Outcome
from mailbot.rules.base import ELIGIBLE, Facts, Hit


class Pool:
    name = "pool"
    description = "The pool's next free code of the request's service and month, if any."
    recorded = True

    def conclude(self, facts: Facts, refusal: Hit | None) -> Hit | None:
        if refusal is not None:
            return None
        year, mon = facts.month
        month = month_key(year, mon)
        assert facts.decided_at is not None
        if facts.decided_at >= month_end(year, mon, facts.tz):
            return Hit(Outcome.POOL_EXHAUSTED,
                       f"decided after {month} ended: its codes expired")
        code = facts.next_code
        if code is None:
            return Hit(Outcome.POOL_EXHAUSTED, f"no {facts.service} code left for {month}")
        return Hit(Outcome.ISSUED, f"code #{code.id} from pool #{code.pool_id}",
                   {"code": code.code}, result="issued")


class DeskPool:
    name = "pool"
    description = ("A code for the patron at the counter, if the pool holds more than the "
                   "e-mail requests waiting ahead of them are owed.")
    recorded = False  # the desk shows the counts beside the verdict instead

    def conclude(self, facts: Facts, refusal: Hit | None) -> Hit | None:
        if refusal is not None:
            return None
        left, owed = facts.codes_left, facts.owed_to_email
        if left - owed <= 0:
            note = (f"{left} code(s) left, {owed} owed to earlier e-mail requests" if owed
                    else "no code left this month")
            return Hit(Outcome.POOL_EXHAUSTED, note)
        return Hit(ELIGIBLE, "all rules passed", result="passed")
