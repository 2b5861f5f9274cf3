"""SPEC 2.6 and 2.7: one code per patron per month across services; the penalty."""

from __future__ import annotations

from datetime import date

from mailbot.clock import add_months, parse_month
from mailbot.rules.base import Facts, Hit


class AlreadyReceived:
    name = "already_received"
    description = "This card already received a code this month (Legimi or Empik Go)."

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
    description = "A code of a recent month was issued and never activated (penalty)."

    def check(self, facts: Facts) -> Hit | None:
        months = facts.library.penalty_months
        if months <= 0 or not facts.unactivated_months:
            return None
        latest = max(facts.unactivated_months)
        # Blocked for `months` months after the month of the unactivated code.
        y, m = add_months(*parse_month(latest), months + 1)
        until = date(y, m, 1)
        if facts.local_received.date() >= until:
            return None
        return Hit(self.name, "blocked", {"blocked_until": until, "penalty_months": months},
                   args={"month": latest, "until": until.isoformat()})


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
