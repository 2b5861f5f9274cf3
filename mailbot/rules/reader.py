"""SPEC 2.5: verification against the reader database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from mailbot.clock import add_months, last_day

from mailbot.rules.base import Facts, Hit
from mailbot.text import surname_matches


class UnknownCard:
    name = "unknown_card"
    description = "The card number is not in the library's reader database."

    def check(self, facts: Facts) -> Hit | None:
        if facts.reader is None:
            return Hit(self.name, "unknown_card", args={"card": facts.card or ""})
        return None


class NameMismatch:
    name = "name_mismatch"
    description = "The surname on file does not appear in the mail."

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        if facts.library.check_name and not surname_matches(facts.name_text,
                                                            facts.reader.last_name):
            return Hit(self.name, "name_mismatch")
        return None


class SenderMismatch:
    name = "sender_mismatch"
    description = "The sender address differs from the address on file (if the policy asks)."

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        if not facts.library.check_sender:
            return None
        on_file = (facts.reader.email or "").strip().lower()
        if not on_file or on_file != (facts.from_address or "").lower():
            return Hit(self.name, "sender_mismatch")
        return None


class InactiveAccount:
    name = "inactive_account"
    description = "The card's validity ended before the request arrived."

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        valid_until = facts.reader.valid_until
        if valid_until is not None and valid_until < facts.local_received.date():
            return Hit(self.name, "inactive_account", {"valid_until": valid_until},
                       args={"valid_until": valid_until.isoformat()})
        return None


class UnconfirmedAccount:
    name = "unconfirmed_account"
    description = ("The account was created online and never confirmed at the desk (if the "
                   "policy asks).")

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        # Only a source that says "not confirmed" refuses: a record that does not tell
        # (an empty cell, NULL) is the library system's to judge, as with a birth date.
        # A source that can never tell is refused at start-up (mailbot.config.load).
        if facts.library.require_confirmed_account and facts.reader.confirmed is False:
            return Hit(self.name, "unconfirmed_account")
        return None


class Debt:
    name = "debt"
    description = "Money owed to the library above the policy's limit."

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        if facts.reader.balance_due > Decimal(facts.library.max_balance_due):
            return Hit(self.name, "debt", {"balance_due": facts.reader.balance_due},
                       args={"amount": str(facts.reader.balance_due)})
        return None


class Overdue:
    name = "overdue"
    description = "Overdue loans on the account."

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        if facts.reader.overdue_items > facts.library.max_overdue_items:
            return Hit(self.name, "overdue", {"overdue_items": facts.reader.overdue_items},
                       args={"n": facts.reader.overdue_items})
        return None


class DataNotUpdated:
    name = "data_not_updated"
    description = "Personal data not updated this calendar year (if the policy asks)."

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        year = facts.local_received.year
        updated = facts.reader.data_updated_on
        if facts.library.check_data_updated and (updated is None or updated.year < year):
            if updated is None:
                return Hit(self.name, "data_never_updated", {"year": year})
            return Hit(self.name, "data_not_updated", {"year": year},
                       args={"updated_on": updated.isoformat()})
        return None


class NoLoansThisYear:
    name = "no_loans_this_year"
    description = ("Not an active reader: no loan this calendar year, or none in the last "
                   "N months (if the policy asks).")

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        today = facts.local_received.date()
        last = facts.reader.last_loan_on
        if facts.library.check_loans_this_year and (last is None or last.year < today.year):
            context = {"year": today.year, "since": None}
            if last is None:
                return Hit(self.name, "no_loans_ever", context)
            return Hit(self.name, "no_loans_this_year", context,
                       args={"last_loan_on": last.isoformat()})
        months = facts.library.active_loan_months
        if months:
            y, m = add_months(today.year, today.month, -months)
            since = date(y, m, min(today.day, last_day(y, m).day))
            if last is None or last < since:
                context = {"year": today.year, "since": since}
                if last is None:
                    return Hit(self.name, "no_loans_ever", context)
                return Hit(self.name, "no_loans_since", context,
                           args={"last_loan_on": last.isoformat(), "since": since.isoformat()})
        return None


class AgeRestricted:
    name = "age_restricted"
    description = "Younger than the service's minimum age (if the policy sets one)."

    def check(self, facts: Facts) -> Hit | None:
        assert facts.reader is not None
        min_age = facts.library.min_age(facts.service)
        born = facts.reader.birth_date
        if not min_age or born is None:
            # No birth date on file: the library system is the authority; we do not guess.
            return None
        today = facts.local_received.date()
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        if age < min_age:
            return Hit(self.name, "age_restricted", {"min_age": min_age},
                       args={"age": age, "min_age": min_age})
        return None
