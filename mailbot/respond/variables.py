"""What each outcome's reply templates may use: the context variables, and the check that
a reply's context has them.

The compose code passes these; a *required* one that is missing is a bug and raises
``jinja2.UndefinedError`` naming it, an *optional* one may be missing or ``None``
(tests/respond/test_templates.py holds every template to this list):

always, required
    ``library_name`` (str), ``service`` (the service's id: "legimi", "empik_go", one of
    [[services]]), ``service_name`` (str),
    ``subject`` (the patron's subject, decoded), ``received_at`` (aware datetime, library
    tz), ``month`` (date: first day of the request's month), ``next_window`` (aware
    datetime: when next month's requests open), ``window_opens`` (aware datetime: when
    this month's requests start to count).
always, optional
    ``card_number`` (str), ``patron_name`` (str), ``library_contact`` (str, may span
    lines: phone, e-mail, opening hours), ``service_steps`` (mailbot.services.Steps:
    ``.pl``, ``.en``, the activation steps a [[services]] table gives; None: the
    templates' own), ``service_subjects`` (tuple of str: the subjects of the library's
    services, when they are not LEGIMI and EMPIK GO; decide.context.service_texts).
issued
    ``code``, ``deadline`` (date: last day to activate), ``penalty_months`` (int: the
    months a penalty blocks, 0 = no penalty); optional ``activation_url``,
    ``penalty_misses`` and ``penalty_within_months`` (int: the penalty follows that many
    months with an unactivated code within that many months; mailbot.penalty),
    ``validity`` (mailbot.validity.Sentence: ``.pl``, ``.en``, the library's sentence on
    how long access lasts, for codes of this month; None: the shipped sentence). The
    reminder notice has the same.
already_received
    ``previous_service_name`` (str), ``previous_issued_at`` (aware datetime), ``deadline``
    (date); optional ``code`` (only when the code may be repeated to this sender),
    ``activation_url``, ``previous_service`` (key; derived from the name when absent),
    ``validity`` (as issued).
debt: ``balance_due`` (Decimal). overdue: ``overdue_items`` (int).
pool_exhausted: optional ``other_services`` (Offers: service, name, keyword; the
library's other services still open to the patron this month), ``quota_kept`` (tuple of
"desk", "first_time": the parts of the pool still holding codes this request may not
take; mailbot.quotas) and ``quota_release_at`` (aware datetime: when those go to
everybody; None: not this month). service_not_offered:
``offered`` (the same, for the services the library offers; an eligibility_test's
verdict service_not_offered has it too). pool_not_ready: optional ``staff_told`` (bool:
staff were sent the alert; the reply says so only then).
unconfirmed_account: only the variables every reply has.
inactive_account: optional ``valid_until`` (date). blocked: ``blocked_until`` (date: first
day a code can be asked for again), ``penalty_months`` (int: the months a block lasts);
optional ``unactivated`` (mailbot.penalty.Missed: ``month`` (date, first day), ``service``,
``service_name``: the codes not activated that made the block, oldest first; never the
code), ``penalty_misses``, ``penalty_within_months`` (int, as issued). ambiguous_card:
``candidates`` (list[str]). age_restricted: ``min_age`` (int). data_not_updated,
no_loans_this_year: ``year`` (int); no_loans_this_year also ``since`` (date|None:
the policy's "a loan within N months" variant).

``code`` is removed from the context of every outcome except ``issued`` and
``already_received`` (and the ``reminder`` notice), so a refusal can never show one,
whatever the caller passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from jinja2 import UndefinedError

from mailbot import outcomes
from mailbot.outcomes import Notice, Outcome
from mailbot.respond import i18n

__all__ = ["CODE_OUTCOMES", "CONTEXT_VARIABLES", "Variables", "prepare_context"]

# The only outcomes whose templates may show a code.
CODE_OUTCOMES: frozenset[str] = outcomes.CODE_OUTCOMES | {Notice.REMINDER}


class Variables(NamedTuple):
    required: frozenset[str]
    optional: frozenset[str]


_COMMON_REQUIRED = frozenset(
    {
        "library_name",
        "service",
        "service_name",
        "subject",
        "received_at",
        "month",
        "next_window",
        "window_opens",
    }
)
_COMMON_OPTIONAL = frozenset({"card_number", "patron_name", "library_contact",
                              "service_steps", "service_subjects"})


def _vars(required: Sequence[str] = (), optional: Sequence[str] = ()) -> Variables:
    return Variables(_COMMON_REQUIRED | set(required), _COMMON_OPTIONAL | set(optional))


# outcome -> the variables its templates may use.
CONTEXT_VARIABLES: Mapping[str, Variables] = {
    Outcome.ISSUED: _vars(["code", "deadline", "penalty_months"], [
        "activation_url", "penalty_misses", "penalty_within_months", "validity"]),
    Outcome.ALREADY_RECEIVED: _vars(
        ["previous_service_name", "previous_issued_at", "deadline"],
        ["code", "activation_url", "previous_service", "validity"],
    ),
    Outcome.TOO_EARLY: _vars(),
    Outcome.NO_CARD: _vars(),
    Outcome.AMBIGUOUS_CARD: _vars(["candidates"]),
    Outcome.UNKNOWN_CARD: _vars(),
    Outcome.NAME_MISMATCH: _vars(),
    Outcome.SENDER_MISMATCH: _vars(),
    Outcome.INACTIVE_ACCOUNT: _vars([], ["valid_until"]),
    # Only what every reply has: the reply says how to confirm the account (mailbot.rules.reader).
    Outcome.UNCONFIRMED_ACCOUNT: _vars(),
    Outcome.DEBT: _vars(["balance_due"]),
    Outcome.OVERDUE: _vars(["overdue_items"]),
    Outcome.DATA_NOT_UPDATED: _vars(["year"]),
    Outcome.NO_LOANS_THIS_YEAR: _vars(["year"], ["since"]),
    Outcome.BLOCKED: _vars(["blocked_until", "penalty_months"], [
        "unactivated", "penalty_misses", "penalty_within_months"]),
    # The other services the patron may still ask for this month: mailbot.rules.offered.Offer.
    # quota_kept, quota_release_at: codes left, but kept for others (mailbot.quotas).
    Outcome.POOL_EXHAUSTED: _vars([], ["other_services", "quota_kept", "quota_release_at"]),
    # staff_told: a staff address was (or is being) sent the alert: the reply says so.
    Outcome.POOL_NOT_READY: _vars([], ["staff_told"]),
    # The services the library does offer: Offer (service, name, keyword).
    Outcome.SERVICE_NOT_OFFERED: _vars(["offered"]),
    Outcome.AGE_RESTRICTED: _vars(["min_age"]),
    # The verdict of a TEST LEGIMI / TEST EMPIK GO mail: "eligible" or a refusal outcome,
    # with that refusal's own variables when it has them.
    Outcome.ELIGIBILITY_TEST: _vars(["verdict"], [
        "before_window", "candidates", "valid_until", "min_age", "balance_due",
        "overdue_items", "year", "since", "blocked_until", "penalty_months", "unactivated",
        "penalty_misses", "penalty_within_months",
        "previous_service_name", "max_codes", "offered"]),
    Notice.REMINDER: _vars(["code", "deadline", "penalty_months"], [
        "activation_url", "penalty_misses", "penalty_within_months", "validity"]),
    Outcome.ADDRESS_LIMIT: _vars(["max_codes"]),
}


def prepare_context(outcome: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The context ``outcome``'s templates are rendered with: every required variable
    there (else UndefinedError), every optional one at least ``None``, no ``code`` where
    none may be shown."""
    spec = CONTEXT_VARIABLES[outcome]
    missing = sorted(name for name in spec.required if name not in context)
    if missing:
        raise UndefinedError(
            f"render_reply({outcome!r}): missing context variable(s): {', '.join(missing)}"
        )
    ctx = dict(context)
    if outcome not in CODE_OUTCOMES:
        ctx.pop("code", None)
    for name in spec.optional:
        ctx.setdefault(name, None)
    if outcome == Outcome.ALREADY_RECEIVED and not ctx.get("previous_service"):
        ctx["previous_service"] = i18n.service_key(str(ctx["previous_service_name"]))
    return ctx
