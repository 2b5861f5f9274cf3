"""The reply as mail clients read it: compose writes MIME by hand, so parse it back.

Every outcome in both languages must come back through the standard library's parser
(``email.policy.default``, as strict as a modern client) with exactly the rendered text and
HTML, decoded headers, lines within RFC 5322's limits and no defects.
"""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.respond.compose import compose_reply
from mailbot.respond.render import REPLY_OUTCOMES, render_reply

from tests.respond.test_templates import full_context

NOW = datetime(2026, 11, 2, 9, 30, 5, tzinfo=UTC)
LIBRARY = "Miejska Biblioteka Publiczna w Łodzi — Filia nr 5"


def compose(outcome: str = "issued", **overrides: object):
    args: dict[str, object] = dict(
        outcome=outcome, context=full_context(), languages=("pl", "en"),
        library_name=LIBRARY, mailbox_address="ebooki@biblioteka.test",
        to="zofia@patron.test", original_subject="Prośba o kod LEGIMI – listopad",
        original_message_id="<req-1@patron.test>",
        original_references=[f"<ref{i}@a-rather-long-domain.example.com>" for i in range(12)],
        request_key="box|1|7|<req-1@patron.test>", now=NOW,
    )
    args.update(overrides)
    return compose_reply(**args)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.mark.parametrize("languages", [("pl", "en"), ("en",)])
@pytest.mark.parametrize("outcome", REPLY_OUTCOMES)
def test_bodies_parse_back_to_exactly_what_was_rendered(outcome: str,
                                                        languages: tuple[str, ...]) -> None:
    context = full_context()
    reply = compose(outcome, context=context, languages=languages)
    rendered = render_reply(outcome, context, languages=languages)
    msg = parse(reply.message)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = list(msg.iter_parts())
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    # format=flowed (tests/respond/test_flowed.py): lines starting with a space, ">" or
    # "From " are space-stuffed; unstuffed, the text is exactly the rendered one.
    assert plain.get_param("format") == "flowed"
    content = plain.get_content()
    assert not re.search(r"(?m)^(>|From )", content)
    assert re.sub(r"(?m)^ ", "", content) == rendered.text
    assert html.get_content() == rendered.html
    assert msg.defects == [] and plain.defects == [] and html.defects == []
    for line in reply.message.split(b"\n"):
        assert len(line) <= 78, line


def test_headers_decode_and_thread_under_the_request() -> None:
    reply = compose()
    msg = parse(reply.message)
    assert msg["From"].addresses[0].display_name == LIBRARY
    assert msg["From"].addresses[0].addr_spec == "ebooki@biblioteka.test"
    assert msg["To"] == "zofia@patron.test"
    assert msg["Subject"] == "Re: Prośba o kod LEGIMI – listopad"
    assert msg["Message-ID"] == reply.message_id
    assert reply.message_id.startswith("<mailbot.") and reply.message_id.endswith(
        "@biblioteka.test>")
    assert msg["In-Reply-To"] == "<req-1@patron.test>"
    # The last ten references (nine of the patron's, then the request itself), folded.
    refs = str(msg["References"]).split()
    assert refs == [f"<ref{i}@a-rather-long-domain.example.com>" for i in range(3, 12)] + [
        "<req-1@patron.test>"]
    assert b"\nReferences: <ref3@" in reply.message and b"\n <ref" in reply.message
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailbot-Outcome"] == "issued"
    assert msg["Content-Language"] == "pl, en"
    assert msg["MIME-Version"] == "1.0"
    assert email.utils.parsedate_to_datetime(msg["Date"]) == NOW


def test_a_notice_has_its_own_subject_and_is_auto_generated() -> None:
    msg = parse(compose("reminder", subject="Przypomnienie: kod do Legimi wygasa",
                        original_message_id=None, original_references=()).message)
    assert msg["Subject"] == "Przypomnienie: kod do Legimi wygasa"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_the_same_request_gives_the_same_bytes() -> None:
    # A resend after a crash is byte-identical (the outbox stores the bytes; composing
    # again must agree too, boundary included).
    assert compose().message == compose().message
    assert compose().message != compose(request_key="box|1|8|<x@y>").message


@pytest.mark.parametrize("field", ["original_subject", "original_message_id"])
def test_line_breaks_in_patron_text_cannot_add_headers(field: str) -> None:
    evil = "LEGIMI\r\nBcc: everyone@evil.test\r\n\r\nforged body"
    raw = compose(**{field: evil}).message
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert b"\nBcc:" not in raw


def test_a_long_ascii_subject_is_folded_not_cut() -> None:
    subject = "LEGIMI " + " ".join(f"word{i}" for i in range(40))
    raw = compose(original_subject=subject).message
    assert parse(raw)["Subject"] == f"Re: {subject}"
    assert all(len(line) <= 78 for line in raw.split(b"\n"))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "\t", ".", "=", "ż", "—", "\n", "\n", "\r", "\x00",
                                 "x" * 90, "ą" * 30, "=\n", " \n"]), max_size=40).map("".join))
def test_line_by_line_quoted_printable_is_b2a_qp_of_the_whole_body(body: str) -> None:
    import binascii

    from mailbot.respond.compose import quoted_printable

    assert quoted_printable(body) == binascii.b2a_qp(body.encode("utf-8"), istext=True)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab ć>\t\r\nF=rom.-"), max_size=200))
def test_stuffed_quoted_printable_is_b2a_qp_of_the_stuffed_body(body: str) -> None:
    # The text part stuffs line by line inside the cached encoding: the same bytes as
    # stuffing the whole text (RFC 3676 4.4), then encoding it whole.
    import binascii

    from mailbot.respond.compose import quoted_printable, space_stuffed

    stuffed = space_stuffed(body)
    assert quoted_printable(body, stuffed=True) == binascii.b2a_qp(stuffed.encode("utf-8"),
                                                                    istext=True)
    lines = stuffed.split("\n")
    assert all(not line.startswith((">", "From ")) for line in lines)
    assert [line[1:] if line.startswith(" ") else line for line in lines] == body.split("\n")
