"""The outcome catalogue is the one vocabulary: every list of outcomes agrees with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.outcomes import (
    CODE_OUTCOMES,
    NO_REPLY_OUTCOMES,
    REFUSALS,
    REPLY_OUTCOMES,
    Outcome,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "email"


@pytest.mark.parametrize("outcome", list(Outcome))
def test_an_outcome_has_templates_exactly_when_it_gets_a_reply(outcome: Outcome) -> None:
    # A reply needs both parts in both languages; an unanswered outcome must have none,
    # or someone will think it is sent.
    files = [TEMPLATES / lang / f"{outcome}.{part}.j2" for lang in ("pl", "en")
             for part in ("txt", "html")]
    assert all(f.exists() for f in files) is outcome.replies
    assert any(f.exists() for f in files) is outcome.replies


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_a_label_in_both_languages(outcome: Outcome) -> None:
    pl, en = outcome.label("pl"), outcome.label("en")
    assert pl and en and pl != en and pl != outcome.value


def test_the_derived_lists_partition_the_catalogue() -> None:
    assert set(REPLY_OUTCOMES).isdisjoint(NO_REPLY_OUTCOMES)
    assert set(REPLY_OUTCOMES) | set(NO_REPLY_OUTCOMES) == set(Outcome)
    assert CODE_OUTCOMES == {Outcome.ISSUED, Outcome.ALREADY_RECEIVED}
    assert CODE_OUTCOMES <= set(REPLY_OUTCOMES)
    # The report's columns follow the chain (a service not offered is asked first, the
    # pool last: not ready before exhausted); the silent rate limit is counted too.
    assert REFUSALS[0] == Outcome.SERVICE_NOT_OFFERED and REFUSALS[-1] == Outcome.RATE_LIMITED
    assert REFUSALS.index(Outcome.POOL_NOT_READY) + 1 == REFUSALS.index(Outcome.POOL_EXHAUSTED)
    assert Outcome.ISSUED not in REFUSALS and Outcome.ELIGIBILITY_TEST not in REFUSALS


def test_outcomes_are_the_strings_the_database_stores() -> None:
    assert Outcome("pool_exhausted") is Outcome.POOL_EXHAUSTED
    assert f"{Outcome.DEBT}" == str(Outcome.DEBT) == "debt"
