"""SPEC 2.6 and 2.7: one code per patron per month across services; the penalty (its
parameters and month arithmetic: mailbot.penalty)."""

from __future__ import annotations

from datetime import date
from typing import Any

from mailbot.clock import month_key, parse_month
from mailbot.penalty import Missed
from mailbot.rules.base import Facts, Hit


class AlreadyReceived:
    name = "already_received"
    description = ("This card already received a code this month, of a platform counted "
                   "across (one_a_month) or of the one asked for.")

    def check(self, facts: Facts) -> Hit | None:
        prev = facts.issued_this_month
        if prev is None:
            return None
        same_address = bool(prev.email) and prev.email == (facts.from_address or "").lower()
        repeat = same_address and facts.library.repeat_code_to_same_address
        context = {
            "previous_service": prev.service,
            "previous_issued_at": prev.issued_at,
            # Repeating the code is only safe to the address it already went to.
            "code": prev.code if repeat else None,
        }
        return Hit(self.name, "already_received_repeated" if repeat else "already_received",
                   context, args={"service": prev.service,
                                  "issued_at": prev.issued_at.isoformat()})


class Blocked:
    name = "blocked"
    description = ("Codes of recent months were issued and never activated, as often as the "
                   "library's penalty allows (mailbot.penalty).")

    def check(self, facts: Facts) -> Hit | None:
        rule = facts.library.penalty_rule
        if not rule.on or not facts.unactivated_months:
            return None
        block = rule.block(month_key(*facts.month), facts.unactivated_months)
        if block is None or facts.local_received.date() >= block.until:
            return None
        named = [(month, service) for month, service in facts.unactivated_codes
                 if month in block.months]
        # The reply says which codes (by month and service: the code itself never goes
        # into a refusal) and until when; staff read the same in the trail.
        context = {
            "blocked_until": block.until, "penalty_months": rule.block_months,
            "penalty_misses": rule.misses, "penalty_within_months": rule.within_months,
            "unactivated": tuple(
                Missed(date(*parse_month(month), 1), service)
                for month, service in named or [(m, "") for m in block.months]),
        }
        latest = block.months[-1]
        args: dict[str, Any] = {"month": latest, "until": block.until.isoformat()}
        if rule.misses > 1:
            return Hit(self.name, "blocked_misses", context,
                       args={**args, "n": len(block.months), "within": rule.within_months})
        return Hit(self.name, "blocked", context, args=args)


class AddressLimit:
    name = "address_limit"
    description = ("This sender address already received the policy's maximum of codes this "
                   "month (for several cards): no harvesting codes from one address.")

    def check(self, facts: Facts) -> Hit | None:
        cap = facts.library.max_codes_per_address_per_month
        if cap and facts.codes_to_address >= cap:
            return Hit(self.name, "address_limit", {"max_codes": cap},
                       args={"n": facts.codes_to_address, "cap": cap})
        return None
