"""A TEST mail's verdict (SPEC 3, where the library offers it): the test chain's last word.

The patron learns the verdict a request would get today; nothing is issued or counted,
and the reply never shows a code, not even a repeated one. The window is not a rule of
the test chain: a patron testing before it opens learns both whether they qualify and
when requests start to count (then the pool is not looked at: it may be refilled).
"""

from __future__ import annotations

from mailbot.outcomes import Outcome
from mailbot.rules.base import ELIGIBLE, Facts, Hit
from mailbot.rules.window import window_opens


class EligibilityTest:
    name = "eligibility_test"
    description = "A TEST mail: the verdict a request would get today; nothing issued."
    recorded = True

    def conclude(self, facts: Facts, refusal: Hit | None) -> Hit | None:
        before = facts.received_at < window_opens(facts.library, facts.tz, *facts.month)
        if refusal is None:
            verdict, context = ELIGIBLE, {}
            if not before and facts.codes_left <= 0:
                # A pool never imported is not an empty one (mailbot.rules.pool).
                verdict = (Outcome.POOL_EXHAUSTED if facts.pool_imported
                           else Outcome.POOL_NOT_READY)
        else:
            verdict, context = refusal.outcome, dict(refusal.context)
        context.pop("code", None)
        context.update(verdict=verdict, before_window=before)
        return Hit(Outcome.ELIGIBILITY_TEST,
                   "eligibility_test_before_window" if before else "eligibility_test",
                   context, result=verdict)
