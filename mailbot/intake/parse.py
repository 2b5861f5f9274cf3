"""One patron mail as plain values: ``parse_mail`` turns raw RFC 5322 bytes into a
``ParsedMail``, putting together the generic reading of ``mailbot.intake.mail`` (charset,
headers, senders, dates, MIME, HTML, quotes).

What the library-specific stages read out of a ``ParsedMail`` lives beside this module:
``subjects`` (the service asked for), ``cards`` and ``names`` (put together by
``reading``), ``loops`` (mail that must get no reply). ``parse_cache`` keeps a parse
for the next stage of the same process and parses bursts on the worker processes.

Pure: nothing here touches a socket, a file or a database, and nothing raises on bad mail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from typing import TYPE_CHECKING

from mailbot.intake.mail.dates import parse_date
from mailbot.intake.mail.headers import Headers, collapse, message_ids
from mailbot.intake.mail.html import html_to_text
from mailbot.intake.mail.mime import media_type, read_message, text_parts
from mailbot.intake.mail.plaintext import plain, quote_lines
from mailbot.intake.mail.quotes import split_quotes
from mailbot.intake.mail.senders import parse_address, return_path

if TYPE_CHECKING:
    from mailbot.intake.reading import MailReading

__all__ = [
    "DEFAULT_CARD_PATTERN",
    "DEFAULT_MAX_BYTES",
    "OWN_MESSAGE_ID_PREFIX",
    "ParsedMail",
    "parse_mail",
]

DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_CARD_PATTERN = r"[0-9]{5,14}"
OWN_MESSAGE_ID_PREFIX = "<mailbot."


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """Everything mailbot needs to know about one mail, as plain values."""

    message_id: str | None
    subject: str
    from_address: str | None
    from_name: str | None
    reply_to: str | None
    return_path: str | None  # None: header absent; "": the null path <>
    date: datetime | None  # always aware; -0000 and zone-less dates are UTC
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str  # the body as plain text, quoted parts marked with "> "
    unquoted: str  # what the sender wrote now
    quoted: str  # what they quoted (earlier mails, forwarded messages)
    content_type: str
    truncated: bool  # the mail was larger than max_bytes; only its start was read
    headers: Headers = field(default_factory=Headers, compare=False, repr=False)
    # read_mail's answer for one card pattern, when the parsing workers already worked it
    # out (parse_messages); the mail's content is the same either way.
    reading: MailReading | None = field(default=None, compare=False, repr=False)


def parse_mail(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedMail:
    """Parse raw RFC 5322 bytes; reads at most max_bytes of them.

    Bad mail never raises: what cannot be read is left empty (a body the stdlib parser
    gives up on, e.g. hundreds of nested multiparts, leaves text == "" but the headers).
    """
    truncated = len(raw) > max_bytes
    data = bytes(raw[:max_bytes]) if truncated or not isinstance(raw, bytes) else raw
    msg, body_ok = read_message(data)
    headers = Headers(msg.raw_items())
    text = _body_text(msg) if body_ok else ""
    unquoted, quoted = split_quotes(text)

    sender = parse_address(headers.raw("from"))
    reply_to = parse_address(headers.raw("reply-to"))
    return ParsedMail(
        message_id=next(iter(message_ids(headers.get("message-id"))), None),
        subject=collapse(headers.get("subject", "")),
        from_address=(sender[1] or None) if sender else None,
        from_name=(sender[0] or None) if sender else None,
        reply_to=(reply_to[1] or None) if reply_to else None,
        return_path=return_path(headers.raw("return-path")),
        date=parse_date(headers.get("date")),
        in_reply_to=next(iter(message_ids(headers.get("in-reply-to"))), None),
        references=tuple(message_ids(headers.get("references"))),
        text=text,
        unquoted=unquoted,
        quoted=quoted,
        content_type=media_type(headers.raw("content-type")),
        truncated=truncated,
        headers=headers,
    )


def _body_text(msg: Message) -> str:
    """The text parts a reader would see as plain text, one after the other; those of a
    forwarded message marked as quoted."""
    try:
        chunks = []
        for part in text_parts(msg):
            chunk = html_to_text(part.body) if part.html else plain(part.body)
            if chunk.strip():
                chunks.append(quote_lines(chunk) if part.quoted else chunk)
        return "\n\n".join(chunks)
    except (RecursionError, MemoryError):
        return ""
