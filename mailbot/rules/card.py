"""SPEC 2.4: exactly one card number in the mail, never a guess."""

from __future__ import annotations

from mailbot.rules.base import Facts, Hit


class NoCard:
    name = "no_card"
    description = "No card number found in the mail."

    def check(self, facts: Facts) -> Hit | None:
        if not facts.card_candidates:
            return Hit(self.name, "no_card")
        return None


class AmbiguousCard:
    name = "ambiguous_card"
    description = "More than one candidate card number: refuse rather than guess."

    def check(self, facts: Facts) -> Hit | None:
        if facts.card is None and len(facts.card_candidates) > 1:
            return Hit(self.name, "ambiguous_card", {"candidates": list(facts.card_candidates)},
                       args={"candidates": ", ".join(facts.card_candidates)})
        return None
