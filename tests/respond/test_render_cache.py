"""Rendering once per reply shape (respond/shapes.py) gives exactly the plain render.

A burst renders each outcome once with markers for the per-patron strings and fills them
in per reply; every outcome, language set and kind of value must come out byte-identical to
rendering the templates for that reply alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbot.respond import shapes
from mailbot.respond.render import (DEFAULT_TEMPLATES_DIR, NOTICES, REPLY_OUTCOMES,
                                    render_plainly, render_reply, variables_used)
from mailbot.respond.shapes import Fill

from tests.respond.test_templates import full_context

PATRONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "html-like": {"patron_name": 'Ala <b>&amp;</b> "Kot"', "subject": "LEGIMI <script>x</script> & co",
                  "card_number": "00<1>"},
    # Long enough to move where the text wraps: filling in must come before wrapping.
    "long": {"patron_name": "Maria Konstancja Przybysławska-Wierzchowińska-Kołłątajówna",
             "subject": "Prośba o kod do Legimi na listopad, bardzo proszę, " * 3},
    "absent": {"patron_name": None, "card_number": None, "patron_first_name": None},
    "empty": {"patron_name": "", "card_number": "", "subject": ""},
    "first-name": {"patron_first_name": "Zofia"},
    # Patron text that looks like our own markers is only text.
    "marker-like": {"subject": "\ue1000\ue101 \ue1020\ue103 LEGIMI", "patron_name": "\ue100"},
}


@pytest.mark.parametrize("languages", [("pl", "en"), ("en", "pl"), ("pl",)])
@pytest.mark.parametrize("patron", sorted(PATRONS))
@pytest.mark.parametrize("outcome", REPLY_OUTCOMES + NOTICES)
def test_cached_render_is_the_slow_render(outcome: str, patron: str,
                                          languages: tuple[str, ...]) -> None:
    context = full_context(**PATRONS[patron])
    slow = render_plainly(outcome, context, languages=languages)
    # Twice: the first call renders the shape, the second fills the cached one in.
    assert render_reply(outcome, context, languages=languages) == slow
    assert render_reply(outcome, context, languages=languages) == slow


def test_a_burst_of_issued_replies_renders_the_templates_once() -> None:
    shapes.clear()
    for i in range(50):
        render_reply("issued", full_context(code=f"CODE-{i:04d}", patron_name=f"Ala Kot{i}",
                                            card_number=f"{i:07d}", subject=f"LEGIMI {i}"))
    assert shapes.cached() == [Fill.PLANNED]


@pytest.mark.parametrize(("expression", "shown"), [
    ("patron_name[:3]", "Zof"),
    ("patron_name[:2]", "Zo"),
    ("patron_name|upper", "ZOFIA ŻÓŁKIEWSKA"),
    ("patron_name|length", "16"),
    ("card_number|int", "12345"),
    ("subject|title", "Legimi Prośba"),
])
def test_a_value_a_template_looks_into_is_not_cached(tmp_path, expression: str,
                                                     shown: str) -> None:
    # A template that slices, measures or changes a per-patron value: that shape must
    # fall back to the slow render (and so still be right).
    import shutil

    shutil.copytree(DEFAULT_TEMPLATES_DIR, tmp_path / "t")
    issued = tmp_path / "t" / "email" / "pl" / "issued.txt.j2"
    issued.write_text(issued.read_text(encoding="utf-8") + f"\nX: {{{{ {expression} }}}} :X\n",
                      encoding="utf-8")
    shapes.clear()
    context = full_context(subject="LEGIMI prośba")
    for _ in range(2):
        reply = render_reply("issued", context, templates_dir=tmp_path / "t")
        assert f"X: {shown} :X" in reply.text
    assert shapes.cached() == [Fill.NONE]


def test_values_that_differ_per_patron_outside_the_filled_strings_stay_right() -> None:
    # already_received shows when the earlier code was issued; debt shows the balance:
    # every reply must carry its own, however many replies of that shape came before.
    from datetime import datetime, timedelta
    from decimal import Decimal

    shapes.clear()
    base = datetime(2026, 11, 1, 10, 5, tzinfo=full_context()["received_at"].tzinfo)
    for i in range(6):
        for outcome, extra in (("already_received", {"previous_issued_at": base + timedelta(hours=i)}),
                               ("debt", {"balance_due": Decimal(f"{i}.50")})):
            context = full_context(patron_name=f"Ala Kot{i % 2}", **extra)
            assert render_reply(outcome, context) == render_plainly(outcome, context)


def test_a_template_that_includes_another_is_keyed_on_the_whole_context(tmp_path) -> None:
    import shutil

    shutil.copytree(DEFAULT_TEMPLATES_DIR, tmp_path / "t")
    (tmp_path / "t" / "email" / "pl" / "extra.txt.j2").write_text("Otrzymano: {{ received_at }}\n")
    issued = tmp_path / "t" / "email" / "pl" / "issued.txt.j2"
    issued.write_text(issued.read_text(encoding="utf-8") + '\n{% include "email/pl/extra.txt.j2" %}\n',
                      encoding="utf-8")
    assert "received_at" in variables_used("issued", ("pl", "en"), tmp_path / "t")
    from datetime import timedelta

    first = full_context()
    for hours in range(4):
        context = dict(first, received_at=first["received_at"] + timedelta(hours=hours))
        reply = render_reply("issued", context, templates_dir=tmp_path / "t")
        assert f"Otrzymano: {context['received_at']}" in reply.text


_VALUE_TEXT = st.lists(st.sampled_from(list("aZż ółĄ-–.<&>\"'\n\t") + [
    "słowo ", "x" * 40, "https://x.pl/" + "a" * 70]), min_size=1, max_size=12).map("".join)


@pytest.mark.parametrize("outcome", REPLY_OUTCOMES + NOTICES)
def test_every_shape_of_the_default_templates_has_a_plan(outcome: str) -> None:
    # The planned fill is the fast one; every outcome of our own templates must have one,
    # or a burst silently takes the slower general fill.
    shapes.clear()
    for i in range(3):
        render_reply(outcome, full_context(code=f"K-{i}", patron_name=f"Ala Kot{i}",
                                           card_number=f"{i:07d}", subject=f"LEGIMI {i}",
                                           patron_first_name="Ala"))
    assert shapes.cached() == [Fill.PLANNED]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outcome=st.sampled_from(["issued", "already_received", "name_mismatch", "pool_exhausted",
                                 "reminder"]),
       languages=st.sampled_from([("pl", "en"), ("en",), ("pl",)]),
       values=st.fixed_dictionaries({k: _VALUE_TEXT for k in (
           "code", "patron_name", "patron_first_name", "card_number", "subject")}))
def test_planned_and_general_fills_give_the_slow_render_for_any_values(
        outcome: str, languages: tuple[str, ...], values: dict[str, str]) -> None:
    # Values that wrap lines differently, look like HTML, or carry spaces and line breaks
    # at their ends (those take the general fill): always byte-identical to the slow way.
    values = {k: v if v.strip() else "x" + v for k, v in values.items()}  # keep one shape
    context = full_context(**values)
    slow = render_plainly(outcome, context, languages=languages)
    warm = full_context(code="K-1", patron_name="Ala Kot", card_number="0000001",
                        subject="LEGIMI", patron_first_name="Ala")
    for _ in range(2):
        render_reply(outcome, warm, languages=languages)  # the shape is built and cached
    assert render_reply(outcome, context, languages=languages) == slow
