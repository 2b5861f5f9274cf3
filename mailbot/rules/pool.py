"""SPEC 2.8: the month's pool of codes, the last word of a chain that found no refusal.

By e-mail the request gets the pool's next free code (in arrival order), unless the pool
is empty or its month has ended (unissued codes expire with their month). At the desk a
code may be handed out only if some are left beyond those owed to e-mail requests that
arrived earlier. Both only say so; taking the code is mailbot.ledger's.

A pool never imported for the month is not an empty one (SPEC 3): the window opened and
no code of the service is there, so the request is ``pool_not_ready`` — the reply says the
codes are not available yet and staff were told — never ``pool_exhausted``, which tells
the patron to wait for next month. A patron who wrote at 00:03 before IT imported the file
gets that reply at once rather than being held: holding would need a second, timed path
through the queue (and a reply that may never come if the pool is bought late or not at
all), while an immediate "not yet, write again later" is honest and costs the patron one
more mail. Staff get one alert per library, service and month (mailbot.respond.staff_alert).

An exhausted pool's reply names the library's other service when it still has codes this
month and the card may take one (Facts.other_services_left).

Quotas (mailbot.quotas, issue 20): while a library keeps part of the pool for the desk or
for first-time patrons, an e-mail request takes a code only from the parts it may draw
from (a first-timer's own part first, then the general part), the desk only from its own
part and what of the general part no earlier e-mail is owed. A request whose parts are
used up is ``pool_exhausted`` like any other, its trail note saying which part ran out
and until when the rest is kept. Within each part requests are served in arrival order:
the batch decides them so and keeps the parts' counts current as it goes.
"""

from __future__ import annotations

from mailbot import quotas
from mailbot.clock import month_end, month_key
from mailbot.outcomes import Outcome
from mailbot.rules.base import ELIGIBLE, Facts, Hit
from mailbot.rules.offered import offer


def _exhausted(facts: Facts, note: str, args: dict[str, object], *,
               others: bool = True) -> Hit:
    """pool_exhausted, naming the other services the patron could still ask for (none
    once the month is over: their codes expired with it too)."""
    named = facts.other_services_left if others else ()
    return Hit(Outcome.POOL_EXHAUSTED, note,
               {"other_services": tuple(offer(s, facts.catalogue) for s in named)},
               args=args)


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
        # A pool never imported is pool_not_ready, also when the month ended before the
        # request was decided: "wyczerpana" (run out) would be untrue of it (SPEC 3).
        if not facts.pool_imported and facts.next_code is None:
            return Hit(Outcome.POOL_NOT_READY, "pool_not_ready",
                       args={"service": facts.service, "month": month})
        if facts.decided_at >= month_end(year, mon, facts.tz):
            return _exhausted(facts, "month_ended", {"month": month}, others=False)
        code = facts.next_code
        if code is None:
            return _exhausted(facts, "no_code_left",
                              {"service": facts.service, "month": month})
        args = {"code_id": code.id, "pool_id": code.pool_id}
        if facts.quota is None:
            return Hit(Outcome.ISSUED, "code_from_pool", {"code": code.code},
                       result="issued", args=args)
        part = quotas.email_part(facts.quota, first_time=facts.first_time)
        if part is None:
            return _quota_used(facts, month)
        return Hit(Outcome.ISSUED, "code_from_part", {"code": code.code}, result="issued",
                   args={**args, "variant": part})


def _quota_used(facts: Facts, month: str) -> Hit:
    """pool_exhausted: free codes are left, but only in parts this request may not draw
    from (kept for the desk, or for first-time patrons) until the release time."""
    left = facts.quota
    assert left is not None
    variant = "first_time" if facts.first_time else "general"
    if left.release_at is not None:
        variant += "_release"
    hit = _exhausted(facts, "quota_used", {
        "service": facts.service, "month": month, "desk": left.desk,
        "first_time": left.first_time, "variant": variant,
        "release_at": left.release_at.isoformat() if left.release_at else None})
    # The reply says for whom the codes left are kept, and when they go to everybody
    # (None: not this month).
    kept = tuple(part for part, n in (("desk", left.desk), ("first_time", left.first_time))
                 if n > 0)
    return Hit(hit.outcome, hit.note, {**hit.context, "quota_kept": kept,
                                       "quota_release_at": left.release_at}, args=hit.args)


class DeskPool:
    name = "pool"
    description = ("A code for the patron at the counter, if the pool holds more than the "
                   "e-mail requests waiting ahead of them are owed.")
    recorded = False  # the desk shows the counts beside the verdict instead

    def conclude(self, facts: Facts, refusal: Hit | None) -> Hit | None:
        if refusal is not None:
            return None
        left, owed = facts.codes_left, facts.owed_to_email
        if facts.quota is not None and left > 0:
            if quotas.desk_part(facts.quota, owed) is not None:
                return Hit(ELIGIBLE, "all_rules_passed", result="passed")
            # The desk's part is used up, and the general part's codes are owed to
            # earlier e-mail requests (or gone); the first-time part is not the desk's.
            return Hit(Outcome.POOL_EXHAUSTED, "desk_quota_used", args={
                "general": facts.quota.general, "owed": owed,
                "first_time": facts.quota.first_time})
        if left - owed <= 0:
            if not facts.pool_imported:
                year, mon = facts.month
                return Hit(Outcome.POOL_NOT_READY, "pool_not_ready",
                           args={"service": facts.service, "month": month_key(year, mon)})
            if owed:
                return Hit(Outcome.POOL_EXHAUSTED, "codes_owed_to_email",
                           args={"left": left, "owed": owed})
            return Hit(Outcome.POOL_EXHAUSTED, "no_code_left_this_month")
        return Hit(ELIGIBLE, "all_rules_passed", result="passed")
