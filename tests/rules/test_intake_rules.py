"""The intake chain on its own: pure rules over intake facts, asked in a declared order."""

from __future__ import annotations

from dataclasses import replace

from mailbot.intake.parse import parse_mail
from mailbot.outcomes import Outcome, RequestState
from mailbot.rules.intake import (
    A_REQUEST,
    INTAKE_RULES,
    SORTED,
    GoesTo,
    IntakeFacts,
    sort_mail,
)

OWN = frozenset({"ebooki@biblioteka.test"})


def facts(headers: str = "", body: str = "Proszę o kod. Karta 2000123456\n",
          **changes: object) -> IntakeFacts:
    raw = (f"From: Jan <jan@example.pl>\nTo: ebooki@biblioteka.test\nSubject: LEGIMI\n"
           f"Message-ID: <m1@example.pl>\n{headers}\n{body}").encode()
    base = IntakeFacts(parsed=parse_mail(raw), raw=raw, sender="jan@example.pl",
                       service="legimi", own_addresses=OWN, blocked_senders=("*@spam.test",))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_chain_is_declared_in_the_order_intake_asks():
    # Loops first (never answered, whatever else), then the block list, then what staff
    # must look at: no service, a body that reads automatic, no sender.
    assert [type(r).__name__ for r in INTAKE_RULES] == [
        "AutomaticMail", "BlockedSender", "NoService", "ReadsAutomatic", "NoSender"]
    assert [r.name for r in INTAKE_RULES] == [
        "loop", "blocked_senders", "subject", "loop", "sender"]
    assert all(r.description for r in INTAKE_RULES)


def test_a_patrons_request_passes_every_rule():
    assert sort_mail(facts()) == A_REQUEST
    assert (A_REQUEST.state, A_REQUEST.goes_to, A_REQUEST.trail) == (
        RequestState.NEW, GoesTo.PROCESSED, [])


def test_the_first_rule_that_hits_sorts_the_mail():
    # An auto-reply from a blocked sender with no service: the loop rule decides.
    sorting = sort_mail(facts("Auto-Submitted: auto-replied\n", sender="z@spam.test",
                              service=None))
    assert (sorting.state, sorting.outcome, sorting.goes_to) == (
        RequestState.IGNORED, Outcome.IGNORED_LOOP, GoesTo.PROCESSED)
    assert sorting.trail == [{"rule": "loop", "result": "refused",
                              "note": "loop_auto_submitted", "args": {}}]
    # Not automatic: the block list, before the missing service.
    assert sort_mail(facts(sender="z@spam.test", service=None)).outcome == \
        Outcome.IGNORED_SENDER


def test_a_bounce_of_our_reply_names_what_was_marked_failed():
    sorting = sort_mail(facts(bounced="outbox 7 marked failed (5.1.1)"))
    assert (sorting.note, sorting.args) == ("bounce_marked",
                                            {"replies": "7", "reason": "5.1.1"})
    assert sorting.outcome == Outcome.IGNORED_LOOP
    unmatched = sort_mail(facts(bounced="not one of our stored replies"))
    assert (unmatched.note, unmatched.args) == ("bounce_unmatched", {})


def test_each_loop_reason_is_a_catalogue_key_with_its_values():
    # Staff read why a mail was ignored in their language: a key, and the header named.
    for headers, note, args in [
            ("Precedence: bulk\n", "loop_precedence", {"value": "bulk"}),
            ("X-Mailman-Version: 2.1\n", "loop_header", {"header": "X-Mailman-Version"}),
            ("List-Id: <l.example>\n", "loop_mailing_list", {})]:
        sorting = sort_mail(facts(headers))
        assert (sorting.rule, sorting.note, sorting.args) == ("loop", note, args)


def test_what_is_no_request_is_left_for_staff_saying_why():
    for changes, rule, note in [
            ({"service": None}, "subject", "no_service"),
            ({"sender": None}, "sender", "no_sender")]:
        sorting = sort_mail(facts(**changes))
        assert (sorting.state, sorting.outcome, sorting.goes_to, sorting.rule,
                sorting.note) == (RequestState.MANUAL, Outcome.NOT_A_REQUEST, GoesTo.MANUAL,
                                  rule, note)


def test_every_outcome_the_chain_gives_is_sorted_and_never_answered():
    assert set(SORTED) == {Outcome.IGNORED_LOOP, Outcome.IGNORED_SENDER,
                           Outcome.NOT_A_REQUEST}
    assert not any(outcome.replies for outcome in SORTED)
