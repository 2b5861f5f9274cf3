"""Outcome -> reply message bytes (multipart plain + HTML), threaded under the request.

The message is written out directly rather than through ``email.mime``: in a burst the
generator's pure-Python quoted-printable encoding and header folding cost about a
millisecond a reply, more than rendering and sending together. Bodies are encoded with
``binascii.b2a_qp`` (C), headers folded at 78 characters and non-ASCII header text put in
RFC 2047 encoded words by ``email.header``; the result parses back to the same text
(tests/respond/test_compose.py).

The text part is ``format=flowed`` (RFC 3676), also by hand: wrap.py already knows which
line breaks it made (soft) and which the template wrote (hard), and what must never be
broken (codes, URLs, dates); here the lines are only space-stuffed. Neither the standard
library nor PyPI has a flowed encoder that could take that over (``formatflowed``, last
released in 2016, re-wraps text by its own rules); decoding it back is
tests/respond/test_flowed.py.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from email.charset import QP, Charset
from email.header import Header
from email.utils import format_datetime, formataddr
from datetime import datetime
from typing import Any, Mapping, Sequence

from mailbot.addresses import header_form
from mailbot.respond.render import render_reply

_UTF8_QP = Charset("utf-8")
_UTF8_QP.header_encoding = QP
_UTF8_QP.body_encoding = QP
_RE_PREFIX = re.compile(r"^\s*(re|odp)\s*:", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"[\r\n]+")
_STUFF_FIRST = (" ", ">")
MAX_HEADER_LINE = 78


@dataclass(frozen=True)
class Reply:
    message_id: str
    mail_from: str
    to: str
    message: bytes


def reply_message_id(*, request_key: str, domain: str) -> str:
    """Stable per request: a resend after a crash carries the same Message-ID, so clients
    and our own loop detection recognise it (our IDs start with ``<mailbot.``)."""
    token = hashlib.sha256(request_key.encode()).hexdigest()[:20]
    return f"<mailbot.{token}@{domain}>"


def reply_message_id_for(mailbox_address: str, request_key: str) -> str:
    """The Message-ID compose_reply gives the reply to ``request_key`` from this mailbox."""
    domain = mailbox_address.rpartition("@")[2] or "mailbot.invalid"
    return reply_message_id(request_key=request_key, domain=domain)


def reply_subject(original: str) -> str:
    original = " ".join(original.split())
    return original if _RE_PREFIX.match(original) else f"Re: {original}".rstrip()


def _one_line(value: str) -> str:
    """Header values never carry a line break of their own (no header injection)."""
    return _LINE_BREAKS.sub(" ", value)


def _fold(name: str, value: str) -> str:
    """``Name: value`` folded at whitespace to 78 columns; non-ASCII text as encoded
    words (RFC 2047), which email.header folds itself."""
    value = _one_line(value)
    if not value.isascii():
        encoded = Header(value, _UTF8_QP, maxlinelen=MAX_HEADER_LINE,
                         header_name=name).encode(linesep="\n")
        return f"{name}: {encoded}"
    line = f"{name}: {value}"
    if len(line) <= MAX_HEADER_LINE:
        return line
    lines: list[str] = []
    head = current = f"{name}:"
    for word in value.split():
        if current != head and len(current) + 1 + len(word) > MAX_HEADER_LINE:
            lines.append(current)
            current = ""  # the continuation line starts with the space added below
        current += " " + word
    lines.append(current)
    return "\n".join(lines)


def _to_header(to: str) -> str:
    """``To: address``. An RFC 2047 word is no address (mail clients read it as a name or
    not at all): an ASCII local part at a Unicode domain is written with A-labels; a
    non-ASCII local part as UTF-8 (RFC 6532), as the reply only goes out with SMTPUTF8."""
    form = header_form(to) if not to.isascii() else to
    if form is None:  # no usable address: the sender refuses it, as before
        return _fold("To", to)
    return _fold("To", form) if form.isascii() else f"To: {form}"


def _from_header(name: str, address: str) -> str:
    """``From: Library name <address>``; a non-ASCII name as folded encoded words."""
    name = _one_line(name)
    if name.isascii():
        return _fold("From", formataddr((name, address)))
    # A name that does not fit after "From: " starts on the next line, so that a usual
    # library name stays one encoded word (some parsers put a space between two).
    encoded = Header(name, _UTF8_QP).encode(maxlinelen=MAX_HEADER_LINE - 1, linesep="\n ")
    first = encoded.partition("\n")[0]
    head = ("From: " if len(first) + 6 <= MAX_HEADER_LINE else "From:\n ") + encoded
    last = head.rpartition("\n")[2]
    joiner = " " if len(last) + len(address) + 3 <= MAX_HEADER_LINE else "\n "
    return f"{head}{joiner}<{address}>"


def quoted_printable(body: str, stuffed: bool = False) -> bytes:
    """``body`` in quoted-printable (b2a_qp, istext: line breaks stay line breaks; soft
    breaks keep every line under 77 bytes), with the encoding of each paragraph and line
    cached. b2a_qp encodes each line on its own, and all but a few lines of a reply are the
    same for every patron (~0.15 ms a reply saved). A body with a carriage return is
    encoded whole. ``stuffed``: of ``space_stuffed(body)``, stuffed line by line in the
    cached encoding (a regular expression over the whole text cost ~35 µs a reply)."""
    if "\r" in body:
        return binascii.b2a_qp((space_stuffed(body) if stuffed else body).encode("utf-8"),
                               istext=True)
    *paragraphs, last = body.split("\n\n")
    # The last paragraph line by line: an HTML body is one paragraph, most of whose
    # lines are the same in every reply too.
    *lines, final = last.split("\n")
    if stuffed:
        lines, final = [_stuffed(line) for line in lines], _stuffed(final)
    return b"".join([_qp_lines(p + "\n\n", stuffed) for p in paragraphs]
                    + [_qp_line(line) for line in lines]
                    + [binascii.b2a_qp(final.encode("utf-8"), istext=True)])


@lru_cache(maxsize=2048)
def _qp_lines(lines: str, stuffed: bool) -> bytes:
    # Complete lines only (``lines`` ends with a line break): where b2a_qp may break a
    # line depends on what follows it. A paragraph holding a patron's value is new each
    # time; its other lines are not.
    *each, _ = lines.split("\n")
    if stuffed:
        return b"".join([_qp_line(_stuffed(line)) for line in each])
    return b"".join([_qp_line(line) for line in each])


@lru_cache(maxsize=4096)
def _qp_line(line: str) -> bytes:
    return binascii.b2a_qp(line.encode("utf-8") + b"\n", istext=True)


def space_stuffed(text: str) -> str:
    """``text`` space-stuffed (RFC 3676 4.4): a space before each line that starts with a
    space, ">" (a flowed reader would take it for a quote) or "From " (which some mail
    stores rewrite as ">From "); a flowed reader removes it again. The soft breaks, a
    space at a line's end, are wrap.py's."""
    return "\n".join([_stuffed(line) for line in text.split("\n")])


def _stuffed(line: str) -> str:
    return " " + line if line[:1] in _STUFF_FIRST or line.startswith("From ") else line


def _text_part(body: str, subtype: str) -> bytes:
    encoded = quoted_printable(body)
    return (f"Content-Type: text/{subtype}; charset=\"utf-8\"\n"
            "Content-Transfer-Encoding: quoted-printable\n\n").encode("ascii") + encoded


def _flowed_part(text: str) -> bytes:
    """The plain-text part as ``format=flowed`` (RFC 3676): a phone's client joins the
    lines that end in a space and re-wraps the paragraph to its screen, so no reply is
    read as 78-column lines broken again at 40. Quoted-printable keeps the trailing spaces
    (as ``=20``), which a relay could otherwise strip."""
    return (b"Content-Type: text/plain; charset=\"utf-8\"; format=flowed; delsp=no\n"
            b"Content-Transfer-Encoding: quoted-printable\n\n") + quoted_printable(
                text, stuffed=True)


def compose_reply(
    *,
    outcome: str,
    context: Mapping[str, Any],
    languages: Sequence[str],
    library_name: str,
    mailbox_address: str,
    to: str,
    original_subject: str,
    original_message_id: str | None,
    original_references: Sequence[str] = (),
    request_key: str,
    now: datetime,
    templates_dir: Any = None,
    subject: str | None = None,
    texts_dir: Any = None,
) -> Reply:
    """Renders ``outcome`` (or a notice such as ``reminder``) into a threaded message.

    ``subject`` replaces the default ``Re: <original subject>`` (for notices);
    ``texts_dir`` is the library's own texts folder (render.render_reply)."""
    rendered = render_reply(outcome, context, languages=languages, templates_dir=templates_dir,
                            texts_dir=texts_dir)
    message_id = reply_message_id_for(mailbox_address, request_key)

    # "=_" never occurs in quoted-printable text, so the boundary cannot clash with a body.
    boundary = f"=_mailbot_{message_id[9:29]}"
    headers = [
        f"Content-Type: multipart/alternative; boundary=\"{boundary}\"",
        "MIME-Version: 1.0",
        _from_header(library_name, mailbox_address),
        _to_header(to),
        _fold("Subject", subject or reply_subject(original_subject)),
        "Date: " + format_datetime(now),
        _fold("Message-ID", message_id),
    ]
    if original_message_id:
        headers.append(_fold("In-Reply-To", original_message_id))
        refs = [r for r in original_references if r] + [original_message_id]
        headers.append(_fold("References", " ".join(refs[-10:])))
    # RFC 3834: an answer to a mail is auto-replied; a notice of our own is auto-generated.
    headers.append("Auto-Submitted: " + ("auto-generated" if subject else "auto-replied"))
    # Asks Exchange and friends not to answer our answer with an out-of-office note.
    headers.append("X-Auto-Response-Suppress: All")
    headers.append(_fold("X-Mailbot-Outcome", outcome))
    headers.append(_fold("Content-Language", ", ".join(languages)))
    delimiter = f"\n--{boundary}\n".encode("ascii")
    message = b"".join((
        # UTF-8 only in an EAI address's To header (_to_header); every other header is ASCII.
        "\n".join(headers).encode("utf-8"), b"\n\nThis is a multipart message in MIME format.\n",
        delimiter, _flowed_part(rendered.text),
        delimiter, _text_part(rendered.html, "html"),
        f"\n--{boundary}--\n".encode("ascii"),
    ))
    return Reply(message_id=message_id, mail_from=mailbox_address, to=to,
                 message=message)
