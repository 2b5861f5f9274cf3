"""The text part is ``format=flowed`` (RFC 3676), read back by an RFC 3676 reader.

A phone's mail client joins the lines that end in a space (soft breaks) and re-wraps the
paragraph to its screen; a line without one ends its paragraph. Read back here, each
paragraph must be exactly what the template wrote as one line (the reply rendered with
no wrapping at all), the code must come back whole on its own line, and the lines on the
wire must stay within 78 columns. The reader below is written from the RFC, not from
compose.py.
"""

from __future__ import annotations

import email
import itertools
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from mailbot.respond import shapes, wrap
from mailbot.respond.compose import compose_reply
from mailbot.respond.render import NOTICES, REPLY_OUTCOMES, render_plainly

from tests.test_golden_replies import _context


def full_context(service: str = "legimi", **overrides: Any) -> dict[str, Any]:
    """Every variable any template reads (the golden replies' context)."""
    return {**_context(service), **overrides}

LONG_CODE = "LGM7Q2X9KD4PLZQX7CODE4242ABCDEFGHJKMNPQRSTUV"  # 44 characters, no break point
LONG_URL = "https://www.legimi.pl/" + "czytelnicy-biblioteki-publicznej-" * 3 + "aktywacja/"


def unflow(text: str) -> list[str]:
    """RFC 3676, DelSp=No: each line unstuffed (one leading space removed); a line ending
    in a space (but not the signature separator "-- ") continues in the next; a line
    without one ends the paragraph. The paragraphs, in order."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]
        current.append(line)
        if not (line.endswith(" ") and line != "-- "):
            paragraphs.append("".join(current))
            current = []
    if current:
        paragraphs.append("".join(current))
    return paragraphs


def _compose(outcome: str, context: dict[str, Any], languages: tuple[str, ...] = ("pl", "en"),
             notice: bool = False) -> EmailMessage:
    reply = compose_reply(
        outcome=outcome, context=context, languages=languages,
        library_name="Biblioteka Publiczna im. Z. Łazarskiego",
        mailbox_address="ebooki@biblioteka.test", to="zofia@patron.test",
        original_subject="Legimi – prośba o kod", original_message_id="<req@patron.test>",
        request_key=f"flowed/{outcome}", now=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        subject="Przypomnienie" if notice else None,
    )
    msg = email.message_from_bytes(reply.message, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _plain(msg: EmailMessage) -> tuple[EmailMessage, str]:
    plain = next(part for part in msg.iter_parts() if part.get_content_type() == "text/plain")
    assert isinstance(plain, EmailMessage)
    return plain, plain.get_content()


def _unwrapped(outcome: str, context: dict[str, Any], languages: tuple[str, ...],
               monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reply's text as the templates wrote it: every paragraph on one line."""
    with monkeypatch.context() as m:
        m.setattr(wrap, "TEXT_WIDTH", 10**6)
        text = render_plainly(outcome, context, languages=languages).text
    return text.rstrip("\n").split("\n")


@pytest.mark.parametrize("service", ["legimi", "empik_go"])
@pytest.mark.parametrize("outcome", REPLY_OUTCOMES + NOTICES)
def test_flowed_text_reads_back_as_the_templates_paragraphs(
        outcome: str, service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    context = full_context(service)
    shapes.clear()
    msg = _compose(outcome, context, notice=outcome in NOTICES)
    plain, text = _plain(msg)
    assert plain.get_content_type() == "text/plain"
    assert plain.get_param("format") == "flowed"
    assert plain.get_param("delsp") == "no"
    assert plain.get_content_charset() == "utf-8"
    paragraphs = unflow(text.rstrip("\n"))
    intended = _unwrapped(outcome, context, ("pl", "en"), monkeypatch)
    assert paragraphs == intended
    # It really flows: the long paragraphs were soft-broken, on the wire within 78 columns.
    lines = text.rstrip("\n").split("\n")
    assert any(line.endswith(" ") for line in lines)
    for line in lines:
        assert len(line) <= 78 or " " not in line.strip(), line
        # A soft break is one space after a word; no hard line ends in a space.
        assert not line.endswith("  "), line


@pytest.mark.parametrize("outcome", ["issued", "already_received", "reminder"])
def test_a_long_code_and_a_long_url_are_never_broken(
        outcome: str, monkeypatch: pytest.MonkeyPatch) -> None:
    context = full_context(code=LONG_CODE, activation_url=LONG_URL)
    shapes.clear()
    for _ in range(3):  # the first, the shape-building and a cached-shape reply
        msg = _compose(outcome, context, notice=outcome in NOTICES)
        _plain_part, text = _plain(msg)
        lines = text.split("\n")
        # The code on a line of its own (stuffed: it is indented), no soft break after it.
        assert lines.count("     " + LONG_CODE) == 2  # Polish and English
        paragraphs = unflow(text.rstrip("\n"))
        assert paragraphs.count("    " + LONG_CODE) == 2
        assert sum(LONG_URL in p for p in paragraphs) == 2
        assert any(line.rstrip() == LONG_URL or line.startswith(LONG_URL) for line in lines)
        assert paragraphs == _unwrapped(outcome, context, ("pl", "en"), monkeypatch)


def test_lines_starting_with_a_space_from_or_quote_are_space_stuffed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The library's contact text is printed line by line: a line starting with "From " or
    # ">" would be read as a quote or mangled to ">From " by mail stores.
    contact = "From Monday to Friday 10:00–16:00\n> ask at the desk\n tel. 22 123 45 67"
    context = full_context(library_contact=contact)
    msg = _compose("debt", context, languages=("en",))
    _part, text = _plain(msg)
    lines = text.split("\n")
    assert " From Monday to Friday 10:00–16:00" in lines
    assert " > ask at the desk" in lines
    assert not any(line.startswith(("From ", ">")) for line in lines)
    paragraphs = unflow(text.rstrip("\n"))
    assert "From Monday to Friday 10:00–16:00" in paragraphs
    assert "> ask at the desk" in paragraphs
    assert paragraphs == _unwrapped("debt", context, ("en",), monkeypatch)


def test_a_list_item_flows_as_one_paragraph_with_its_marker() -> None:
    # The activation steps are list items: each comes back as one paragraph, starting
    # with its number; continuation lines are not indented (a flowing client would keep
    # the indent as spaces inside the paragraph).
    msg = _compose("issued", full_context(), languages=("pl",))
    _part, text = _plain(msg)
    paragraphs = unflow(text.rstrip("\n"))
    steps = [p for p in paragraphs if re.match(r"  \d\. ", p)]
    assert len(steps) == 3
    assert steps[0].startswith("  1. Na stronie https://www.legimi.pl/mazowieckie/ prosimy")
    assert all("  " not in step.strip() for step in steps)


def test_soft_breaks_come_only_from_wrapping() -> None:
    # A trailing space in a template line is tidied away: it must not join two lines.
    ctx = full_context()
    for outcome, service in itertools.product(("issued", "debt"), ("legimi", "empik_go")):
        text = render_plainly(outcome, dict(ctx, service=service)).text
        for line in text.split("\n"):
            if line.endswith(" "):
                assert len(line) > 40 and not line.endswith("  "), line
        assert wrap.SOFT_BREAK not in text
