"""The intake chain: what intake makes of a mail before any patron data is looked at.

Like the eligibility rules (``mailbot/rules/__init__.py``), a chain as data: small pure
rules asked in order, the first that hits sorts the mail. Mail a program wrote, and a
blocked sender's, is ignored (never answered, moved out of the way); mail that is not
recognisably a patron's request is left for staff in the manual folder. A mail no rule
hits is a request (``new``) for the decide stage. The trail records the hit only: the
rules that passed are the eligibility rules' business, asked later.

Each rule reads the facts only; what needs the database (a bounce matched to our stored
replies, which marks them failed) is done by intake's store before the chain is asked.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from mailbot.intake.bounce import report_reason
from mailbot.intake.loops import looks_automatic, loop_reason, reason_note
from mailbot.intake.parse import ParsedMail
from mailbot.outcomes import Outcome, RequestState
from mailbot.rules.base import Hit


class GoesTo(StrEnum):
    """Where a sorted mail is moved in its mailbox."""

    PROCESSED = "processed"  # out of the way (the processed folder, or flagged \Seen)
    MANUAL = "manual"  # the manual folder, for staff


@dataclass(frozen=True, slots=True)  # (slots: a burst builds one a mail, twice as fast)
class IntakeFacts:
    """What the intake chain looks at in one mail."""

    parsed: ParsedMail
    # The raw bytes: a report nested below the top level is found there.
    raw: bytes
    # The address a reply would go to (mailbot.addresses.usable_address), None if none.
    sender: str | None
    # The service the subject asks for (a test's, where the library answers tests).
    service: str | None
    own_addresses: Collection[str]
    blocked_senders: Collection[str]
    # A bounce of replies of ours: what intake's store marked failed because of it.
    bounced: str | None = None


class IntakeRule(Protocol):
    name: str  # what the trail calls it
    description: str

    def check(self, facts: IntakeFacts) -> Hit | None: ...


# What intake's store says of a bounce it matched (intake.store._mark_bounced).
_BOUNCE_MARKED = re.compile(r"outbox ([\d, ]+) marked failed \((.*)\)\Z", re.S)


def _bounce_note(bounced: str) -> Hit:
    """The trail note of a bounce of our replies: which were marked failed, and why (the
    reason is the receiving server's own words)."""
    marked = _BOUNCE_MARKED.match(bounced)
    if marked is not None:
        return Hit(Outcome.IGNORED_LOOP, "bounce_marked",
                   args={"replies": marked.group(1), "reason": marked.group(2)})
    if bounced == "not one of our stored replies":
        return Hit(Outcome.IGNORED_LOOP, "bounce_unmatched")
    return Hit(Outcome.IGNORED_LOOP, "bounce_other", args={"detail": bounced})


# What looks_automatic says of a mail, when it is not a phrase quoted from the mail.
_READS_KEYS = {"system account": "reads_system_account", "spam filter: spam": "reads_spam",
               "spam filter: forged sender": "reads_forged_sender"}


class AutomaticMail:
    name = "loop"
    description = ("A program wrote it (RFC 3834 headers, a report, a bounce of our "
                   "reply, our own address): never answered.")

    def check(self, facts: IntakeFacts) -> Hit | None:
        if facts.bounced is not None:
            return _bounce_note(facts.bounced)
        # A report nested below the top level (a gateway's DSN, an ARF complaint) is
        # found in the raw bytes; loop_reason sees the top level.
        reason = (loop_reason(facts.parsed, own_addresses=facts.own_addresses)
                  or report_reason(facts.parsed, facts.raw))
        if reason is None:
            return None
        note, args = reason_note(reason)
        return Hit(Outcome.IGNORED_LOOP, note, args=args)


class BlockedSender:
    name = "blocked_senders"
    description = ("The sender is on the configured block list (exact addresses or "
                   "patterns such as *@spam.example): never answered.")

    def check(self, facts: IntakeFacts) -> Hit | None:
        address = facts.sender
        if address and any(fnmatch.fnmatchcase(address, pattern.lower())
                           for pattern in facts.blocked_senders):
            return Hit(Outcome.IGNORED_SENDER, "blocked_sender")
        return None


class NoService:
    name = "subject"
    description = "The subject names no service: left for staff."

    def check(self, facts: IntakeFacts) -> Hit | None:
        if facts.service is None:
            return Hit(Outcome.NOT_A_REQUEST, "no_service")
        return None


class ReadsAutomatic:
    name = "loop"
    description = ("Only the body says a program wrote it: too weak to silence, so staff "
                   "decide.")

    def check(self, facts: IntakeFacts) -> Hit | None:
        machine = looks_automatic(facts.parsed)
        if machine is not None:
            key = _READS_KEYS.get(machine)
            if key is not None:
                return Hit(Outcome.NOT_A_REQUEST, key)
            # A phrase of the mail itself ("out of office"): quoted as the mail has it.
            return Hit(Outcome.NOT_A_REQUEST, "reads_automatic", args={"phrase": machine})
        return None


class NoSender:
    name = "sender"
    description = ("No address to answer: nothing may be issued to nobody; staff look at "
                   "it.")

    def check(self, facts: IntakeFacts) -> Hit | None:
        if facts.sender is None:
            return Hit(Outcome.NOT_A_REQUEST, "no_sender")
        return None


INTAKE_RULES: tuple[IntakeRule, ...] = (
    AutomaticMail(),
    BlockedSender(),
    NoService(),
    ReadsAutomatic(),
    NoSender(),
)

# What each outcome of the chain does with the mail: the request's state, its folder.
SORTED: dict[Outcome, tuple[RequestState, GoesTo]] = {
    Outcome.IGNORED_LOOP: (RequestState.IGNORED, GoesTo.PROCESSED),
    Outcome.IGNORED_SENDER: (RequestState.IGNORED, GoesTo.PROCESSED),
    Outcome.NOT_A_REQUEST: (RequestState.MANUAL, GoesTo.MANUAL),
}


@dataclass(frozen=True)
class Sorting:
    """The chain's verdict on one mail: a request (``outcome`` None) or settled here."""

    state: RequestState
    goes_to: GoesTo
    outcome: Outcome | None = None
    rule: str | None = None
    note: str = ""
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def trail(self) -> list[dict[str, Any]]:
        if self.rule is None:
            return []
        return [{"rule": self.rule, "result": "refused", "note": self.note,
                 "args": self.args}]


A_REQUEST = Sorting(RequestState.NEW, GoesTo.PROCESSED)


def sort_mail(facts: IntakeFacts,
              rules: tuple[IntakeRule, ...] = INTAKE_RULES) -> Sorting:
    """Runs the intake chain: the first rule that hits settles the mail."""
    for rule in rules:
        hit = rule.check(facts)
        if hit is not None:
            outcome = Outcome(hit.outcome)
            state, goes_to = SORTED[outcome]
            return Sorting(state, goes_to, outcome, rule.name, hit.note, hit.args)
    return A_REQUEST
