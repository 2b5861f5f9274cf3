"""Outcome -> reply message bytes (multipart plain + HTML), threaded under the request.

Built with the ``compat32`` MIME classes: they are several times cheaper than
``EmailMessage.set_content`` and a burst means thousands of replies in seconds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr
from datetime import datetime
from typing import Any, Mapping, Sequence

from mailbot.respond.render import render_reply

_UTF8_QP = Charset("utf-8")
_UTF8_QP.header_encoding = QP
_UTF8_QP.body_encoding = QP
_RE_PREFIX = re.compile(r"^\s*(re|odp)\s*:", re.IGNORECASE)


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


def reply_subject(original: str) -> str:
    original = " ".join(original.split())
    return original if _RE_PREFIX.match(original) else f"Re: {original}".rstrip()


def _text_part(body: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(body, charset=_UTF8_QP)
    return part


def _header(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


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
) -> Reply:
    """Renders ``outcome`` (or a notice such as ``reminder``) into a threaded message.

    ``subject`` replaces the default ``Re: <original subject>`` (for notices)."""
    rendered = render_reply(outcome, context, languages=languages, templates_dir=templates_dir)
    domain = mailbox_address.rpartition("@")[2] or "mailbot.invalid"
    message_id = reply_message_id(request_key=request_key, domain=domain)

    msg = MIMEMultipart("alternative")
    msg["From"] = formataddr((str(_header(library_name)), mailbox_address))
    msg["To"] = to
    msg["Subject"] = _header(subject or reply_subject(original_subject))
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if original_message_id:
        msg["In-Reply-To"] = original_message_id
        refs = [r for r in original_references if r] + [original_message_id]
        msg["References"] = " ".join(refs[-10:])
    # RFC 3834: an answer to a mail is auto-replied; a notice of our own is auto-generated.
    msg["Auto-Submitted"] = "auto-generated" if subject else "auto-replied"
    # Asks Exchange and friends not to answer our answer with an out-of-office note.
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Mailbot-Outcome"] = outcome
    msg["Content-Language"] = ", ".join(languages)
    msg.attach(_text_part(rendered.text, "plain"))
    msg.attach(_text_part(rendered.html, "html"))
    return Reply(message_id=message_id, mail_from=mailbox_address, to=to,
                 message=msg.as_bytes())
