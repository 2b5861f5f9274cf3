"""The ``Name <address>`` reading of a From value: the same answers as the regex it
replaced, in linear time however the spaces fall."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.intake.mail.senders import _NAME_ADDRESS, parse_address
from mailbot.intake.parse import parse_mail

# The earlier pattern (lazy name, backtracking spaces), kept as the specification.
LAZY = re.compile(r"\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^<>\"]*?))\s*<\s*([^\s<>]*)\s*>\s*")


def _new(value: str) -> tuple[str | None, str | None, str] | None:
    match = _NAME_ADDRESS.fullmatch(value)
    if match is None:
        return None
    quoted, bare, address = match.groups()
    return quoted, bare if bare is None else bare.rstrip(), address


def _old(value: str) -> tuple[str | None, str | None, str] | None:
    match = LAZY.fullmatch(value)
    return None if match is None else match.groups()


# Short values made of the characters the pattern cares about, so that every branch and
# every way of failing comes up.
PIECES = st.text(alphabet=' \t"\\<>@a.b,\u00a0\u2003Ł', max_size=24)


@settings(max_examples=3000, deadline=None)
@given(PIECES)
def test_names_and_addresses_read_as_the_lazy_pattern_read_them(value: str) -> None:
    assert _new(value) == _old(value)


def test_the_usual_forms() -> None:
    assert parse_address("Jan Kowalski  <jan@example.pl>") == ("Jan Kowalski", "jan@example.pl")
    assert parse_address('"Kowalski, Jan" <jan@example.pl>') == ("Kowalski, Jan",
                                                                  "jan@example.pl")
    assert parse_address("  <jan@example.pl>  ") == ("", "jan@example.pl")


def test_a_from_of_spaces_is_read_in_milliseconds() -> None:
    # Under the 2,000-character cap the lazy pattern took 1.8 s for the first of these (a
    # mail a second would have held intake); the possessive one takes well under 1 ms.
    # The bound is two orders of magnitude above that, for a busy machine.
    shapes = [b"a" + b" " * 995 + b"<" + b" " * 995,
              b"a" + b" " * 990 + b"<" + b" " * 990 + b"> x",
              b"a" + b" " * 1990 + b"<",
              b'"' + b" " * 1990 + b'" <a@b']
    for shape in shapes:
        raw = b"From: " + shape + b"\r\nSubject: LEGIMI\r\n\r\nbody\r\n"
        start = time.perf_counter()
        parse_mail(raw)
        assert time.perf_counter() - start < 0.15, shape[:20]
