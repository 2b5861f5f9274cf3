"""Property and stress tests for parsing a mail (mailbot.intake.parse, mailbot.intake.mail
and the readers of its result): no input makes them raise or run away."""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable, Mapping
from datetime import datetime
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbot.intake.cards import find_cards
from mailbot.intake.loops import loop_reason
from mailbot.intake.mail.html import html_to_text
from mailbot.intake.mail.quotes import split_quotes
from mailbot.intake.parse import DEFAULT_CARD_PATTERN, DEFAULT_MAX_BYTES, ParsedMail, parse_mail
from mailbot.intake.reading import extract_name
from mailbot.intake.subjects import match_service, match_test_service
from mailbot.text import surname_matches

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_well_formed(parsed: ParsedMail) -> None:
    """Every field has its declared type, and the derived helpers accept the result."""
    assert isinstance(parsed, ParsedMail)
    for name in ("subject", "text", "unquoted", "quoted", "content_type"):
        assert isinstance(getattr(parsed, name), str), name
    for name in ("message_id", "from_address", "from_name", "reply_to", "return_path"):
        assert getattr(parsed, name) is None or isinstance(getattr(parsed, name), str), name
    assert parsed.in_reply_to is None or isinstance(parsed.in_reply_to, str)
    assert parsed.date is None or (isinstance(parsed.date, datetime) and parsed.date.tzinfo)
    assert all(isinstance(r, str) for r in parsed.references)
    assert isinstance(parsed.headers, Mapping)
    for key in parsed.headers:
        assert isinstance(parsed.headers[key], str)
    assert isinstance(parsed.truncated, bool)
    result = find_cards(parsed)
    assert result.card is None or result.card in result.candidates
    name = extract_name(parsed)
    assert name is None or isinstance(name, str)
    reason = loop_reason(parsed, own_addresses=["legimi@biblioteka.pl"])
    assert reason is None or isinstance(reason, str)
    assert match_service(parsed.subject) in (None, "legimi", "empik_go")


# --------------------------------------------------------------------------- raw bytes


@FAST
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw):
    # any bytes at all parse into a well-formed ParsedMail
    assert_well_formed(parse_mail(raw))


MIME_PIECES = [
    b"Content-Type: multipart/mixed; boundary=x",
    b"Content-Type: multipart/alternative; boundary=\"x\"",
    b"Content-Type: message/rfc822",
    b"Content-Type: text/html; charset=windows-1250",
    b"Content-Type: text/plain; charset=x-unknown; format=flowed; delsp=yes",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Disposition: attachment",
    b"Subject: =?utf-8?b?TEVHSU1J?= =?iso-8859-2?q?=B1?=",
    b"From: =?utf-8?q?=C5=81?= <a@b>",
    b"Return-Path: <>",
    b"Date: Sun, 1 Nov 2026 10:00:00 -0000",
    b"--x",
    b"--x--",
    b"",
    b"<html><blockquote><p>0012345<br>",
    b"<script>",
    b"> W dniu 1.11.2026 Jan <a@b> napisa\xc5\x82(a):",
    b"-----Original Message-----",
    b"From: a\r\nSent: b",
    b"Karta: 0012345 tel. 600123456",
    b"=C5=82=\r\n",
    b"\xff\xfe\x00",
]


@FAST
@given(st.lists(st.sampled_from(MIME_PIECES) | st.binary(max_size=30), max_size=40))
def test_mime_shaped_garbage_never_raises(pieces):
    # lines built from MIME headers, boundaries, HTML and junk never break parsing
    assert_well_formed(parse_mail(b"\r\n".join(pieces)))


# --------------------------------------------------------------------------- text bodies

BODY_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"), blacklist_characters="\u2028\u2029"
    )
    | st.sampled_from("\n ąćęłńóśźżĄĆĘŁŃÓŚŹŻ0123456789>:-"),
    max_size=400,
)


def raw_text_mail(body: bytes, charset: str, encoding: str) -> bytes:
    import base64
    import quopri

    if encoding == "base64":
        payload = base64.encodebytes(body)
    elif encoding == "quoted-printable":
        payload = quopri.encodestring(body)
    else:
        payload = body
    return (
        b"From: a@example.pl\r\nSubject: LEGIMI\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + payload
    )


NO_BREAK_SPACES = {0xA0: " ", 0x202F: " ", 0x2007: " "}  # read as plain spaces


def expected_text(text: str) -> str:
    # what parse_mail promises for a plain body: unified line ends, no trailing spaces
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip(" \t") for line in text.split("\n")).strip("\n")


@FAST
@given(BODY_TEXT, st.sampled_from(["8bit", "base64", "quoted-printable"]))
def test_utf8_bodies_round_trip(text, encoding):
    # any UTF-8 text body comes back as written, whatever the transfer encoding
    parsed = parse_mail(raw_text_mail(text.encode(), "utf-8", encoding))
    assert parsed.text == expected_text(text.translate(NO_BREAK_SPACES))


POLISH = st.text(
    alphabet=st.sampled_from("abcdefghijklmnoprstuwyz ąćęłńóśźżĄĆĘŁŃÓŚŹŻ\n0123456789.,"),
    max_size=300,
)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FAST
@given(POLISH, st.sampled_from(["cp1250", "iso-8859-2"]), st.sampled_from(["8bit", "base64"]))
def test_polish_single_byte_bodies_round_trip(text, charset, encoding):
    # Polish text in cp1250 or iso-8859-2 decodes right, declared or not, unless its bytes
    # also happen to be valid UTF-8 (then no decoder could know)
    body = text.encode(charset)
    if is_utf8(body) and not body.isascii():
        return
    assert parse_mail(raw_text_mail(body, charset, encoding)).text == expected_text(text)
    assert parse_mail(raw_text_mail(body, "x-unknown", encoding)).text in (
        expected_text(text),
        expected_text(body.decode("cp1250" if charset == "iso-8859-2" else "iso-8859-2")),
    )


# --------------------------------------------------------------------------- MIME trees


def text_part(text: str, subtype: str, charset: str) -> MIMEText:
    try:
        return MIMEText(text, subtype, charset)
    except (UnicodeError, LookupError):
        return MIMEText(text, subtype, "utf-8")


LEAF = st.one_of(
    st.builds(
        text_part,
        BODY_TEXT,
        st.sampled_from(["plain", "html"]),
        st.sampled_from(["utf-8", "iso-8859-2", "windows-1250", "us-ascii"]),
    ),
    st.builds(lambda data: MIMEApplication(data), st.binary(max_size=200)),
)


def multipart(subtype: str, children: list) -> MIMEMultipart:
    container = MIMEMultipart(subtype)
    for child in children:
        container.attach(child)
    return container


TREE = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.builds(
            multipart,
            st.sampled_from(["mixed", "alternative", "related"]),
            st.lists(children, min_size=1, max_size=4),
        ),
        st.builds(MIMEMessage, children),
    ),
    max_leaves=12,
)


@FAST
@given(TREE, st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60))
def test_random_mime_trees_never_raise(tree, subject):
    # any tree of text, HTML, attachments and forwarded messages parses; subjects round-trip
    tree["Subject"] = subject
    tree["From"] = "Jan Kowalski <jan@example.pl>"
    parsed = parse_mail(tree.as_bytes())
    assert_well_formed(parsed)
    assert parsed.from_address == "jan@example.pl"
    assert parsed.subject == " ".join(subject.split())


@FAST
@given(BODY_TEXT)
def test_single_text_part_is_the_body(text):
    # a lone text/plain part built by email.mime is read back as its text
    parsed = parse_mail(MIMEText(text, "plain", "utf-8").as_bytes())
    assert parsed.text.split() == text.split()


# --------------------------------------------------------------------------- pure helpers


@FAST
@given(st.text(max_size=2000))
def test_helpers_never_raise_on_any_text(text):
    # every text helper accepts any text
    html_to_text(text)
    unquoted, quoted = split_quotes(text)
    assert isinstance(unquoted, str) and isinstance(quoted, str)
    result = find_cards(text)
    assert all(re.fullmatch(DEFAULT_CARD_PATTERN, c) for c in result.candidates)
    match_service(text)
    match_test_service(text)
    surname_matches(text, text[:20])


@FAST
@given(st.text(alphabet=st.sampled_from("<>/!-abdipqrtylockquesmh =\"'\n&;#0123"), max_size=500))
def test_html_soup_never_raises(html):
    # tag soup of brackets, quotes, comments and entities converts to text without error
    assert isinstance(html_to_text(html), str)


PREFIXES = [
    "Re: ", "RE:", "Odp: ", "ODP:", "Fwd: ", "Fw: ", "PD: ", "Wg: ", "AW: ",
    "[EXT] ", "[External] ", "[x] ",
]  # fmt: skip
KEYWORDS = ["LEGIMI", "Legimi", "EMPIK GO", "empikgo", "Empik-Go", "EMPIK  GO", "Empik_Go"]


@FAST
@given(
    st.lists(st.sampled_from(PREFIXES), max_size=6),
    st.sampled_from(KEYWORDS),
    st.sampled_from(["", "!", ".", " ", "  !!", "?"]),
)
def test_any_prefix_chain_is_tolerated(prefixes, keyword, suffix):
    # any chain of reply/forward/tag prefixes and trailing punctuation still matches
    expected = "legimi" if "legimi" in keyword.lower() else "empik_go"
    assert match_service("".join(prefixes) + keyword + suffix) == expected
    assert match_test_service("".join(prefixes) + "TEST " + keyword + suffix) == expected


# --------------------------------------------------------------------------- size and depth


def test_25_mb_message_is_read_only_up_to_max_bytes():
    # a 25 MB mail is cut at max_bytes: headers parsed, body truncated, no second full copy
    head = (
        b"From: Jan <jan@example.pl>\r\nSubject: LEGIMI\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nKarta 0012345\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    raw = head + (b"QUJD" * 19 + b"\r\n") * 330_000 + b"--b--\r\n"
    assert len(raw) > 25_000_000
    tracemalloc.start()
    try:
        parsed = parse_mail(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.truncated
    assert parsed.subject == "LEGIMI" and parsed.from_address == "jan@example.pl"
    assert find_cards(parsed).card == "0012345"
    # memory follows max_bytes (the stdlib parser needs ~9x for short lines), not the mail
    assert peak < 10 * DEFAULT_MAX_BYTES < len(raw)
    assert not parse_mail(raw[:DEFAULT_MAX_BYTES]).truncated


def test_10000_line_body():
    # a 10,000-line body parses and its card is still found
    body = "\r\n".join(f"linia {i}: tekst bez numeru" for i in range(10_000))
    raw = f"Subject: LEGIMI\r\n\r\nNumer karty: 0012345\r\n{body}\r\n".encode()
    parsed = parse_mail(raw)
    assert parsed.text.count("\n") == 10_000
    assert find_cards(parsed).card == "0012345"


def nested_multipart(depth: int) -> bytes:
    parts = [b"Subject: LEGIMI\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    for i in range(depth):
        parts.append(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1))
    parts.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\nKarta 0012345\r\n" % depth)
    parts.extend(b"--b%d--\r\n" % i for i in range(depth, -1, -1))
    return b"".join(parts)


def test_200_level_nested_multipart():
    # 200 nested multiparts do not recurse out; parts below the depth cap are ignored
    parsed = parse_mail(nested_multipart(200))
    assert parsed.subject == "LEGIMI"
    assert parsed.text == ""


def test_shallow_nesting_is_read():
    # a few levels of nesting are normal and fully read
    assert find_cards(parse_mail(nested_multipart(5))).card == "0012345"


def test_5000_level_nested_multipart_keeps_headers():
    # nesting deep enough to break the stdlib parser still yields the headers
    parsed = parse_mail(nested_multipart(5000))
    assert parsed.subject == "LEGIMI" and parsed.text == ""


def test_nesting_that_breaks_the_stdlib_parser_keeps_headers():
    # nesting past Python's recursion limit (boundary spelled to dodge the cheap guard)
    raw = nested_multipart(1500).replace(b"boundary=", b"BOUNDARY=")
    parsed = parse_mail(raw)
    assert parsed.subject == "LEGIMI" and parsed.text == ""


# Inputs built to make naive regexes quadratic, as a function of their size: at 10 they
# are what a quadratic regex would spend minutes on.
PATHOLOGICAL = {
    "From of spaces": lambda k: parse_mail(
        b"From: a" + b" " * 50_000 * k + b"b\r\nSubject: x\r\n\r\n"),
    "Content-Type of spaces": lambda k: parse_mail(
        b"Content-Type: text/plain; a=b" + b" " * 50_000 * k + b"\r\n\r\nx" + b" " * 50_000 * k
        + b"y\n"),
    "subject of tags": lambda k: match_service("[x]" * 10_000 * k + "LEGIMI"),
    "many numbers": lambda k: find_cards(" ".join(f"{i:07d}" for i in range(10_000 * k))),
    "numbers with dots": lambda k: find_cards("1234567." * 10_000 * k),
    "empty lines before a name": lambda k: extract_name(
        parse_mail(b"Subject: x\r\n\r\n" + b"\n" * 50_000 * k + b"Imie: Jan")),
    "unclosed tags": lambda k: html_to_text("<a " * 20_000 * k + "<!--" * 5_000 * k),
    "header-like lines": lambda k: split_quotes(("-" * 100 + ":\n") * 2_000 * k),
}


def _best_of_3(run: Callable[[int], object], size: int) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run(size)
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize("shape", PATHOLOGICAL)
def test_pathological_inputs_stay_linear(shape):
    # Ten times the input takes about ten times as long, not a hundred (quadratic). The
    # 0.1 s allows for what caches and a busy machine do to short runs: a quadratic
    # shape at these sizes takes minutes.
    run = PATHOLOGICAL[shape]
    small, large = _best_of_3(run, 1), _best_of_3(run, 10)
    assert large < 30 * small + 0.1, (
        f"{shape}: {small * 1e3:.1f} ms, ten times the input {large * 1e3:.1f} ms")


def _surname_regex_oracle(text: str, surname: str) -> bool:
    """The name check as it was written first, one regular expression per surname."""
    from mailbot.text import fold

    parts = [p for p in re.split(r"[\s\-\u2010-\u2015]+", fold(surname).strip(" .,;'\"")) if p]
    if not parts:
        return False
    forms = [r"[\s\-\u2010-\u2015]+".join(map(re.escape, parts))]
    if len(parts) > 1:
        forms.extend(re.escape(p) for p in parts if len(p) >= 3)
    regex = re.compile(rf"(?<![^\W_])(?:{'|'.join(forms)})(?![^\W_])")
    return regex.search(fold(text)) is not None


NAMEISH = st.text(alphabet=st.sampled_from("abnowkslŁłżŻóÓ -–‐_.'\"\t\n0123Ä"), max_size=40)


@FAST
@given(NAMEISH, NAMEISH)
def test_surname_search_agrees_with_the_regular_expression(text, surname):
    assert surname_matches(text, surname) is _surname_regex_oracle(text, surname)


@pytest.mark.parametrize(("text", "surname"), [
    ("Zofia Nowak-Kowalska 0012345", "Nowak-Kowalska"), ("zofia nowak  –  kowalska", "Nowak-Kowalska"),
    ("kowalska", "Nowak-Kowalska"), ("Nowakowska", "Nowak"), ("x_nowak", "Nowak"),
    ("ŻÓŁĆ", "Zolc"), ("nowak2", "Nowak"), ("o'neil", "O'Neil"), ("", ""), ("Ala", "."),
])
def test_surname_search_agrees_on_known_cases(text, surname):
    assert surname_matches(text, surname) is _surname_regex_oracle(text, surname)
